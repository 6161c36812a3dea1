//! HAProxy in front of members, as an operator runs it (docs/OPERATIONS.md,
//! deploy/haproxy/members.cfg): the config written to the test's
//! directory, a loopback port from the tests' allocator, a health check on
//! each member's clnode `/health`, and the stats socket to read each
//! server's state from. Started through scripts/haproxy.sh; SIGKILLed on
//! drop like every `Proc`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::{free_port, script, wait_for, Proc, TestDir};

/// One server of the backend: where reads go, and where its check goes.
pub struct HaproxyServer {
    pub name: String,
    /// The traffic port (a member's execution-client RPC).
    pub port: u16,
    /// The member's clnode health port (`check port`).
    pub check_port: u16,
}

/// How the backend checks its servers.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    /// The request target, e.g. `/health?max_lag_ms=1500`.
    pub path: String,
    pub inter: Duration,
    /// Failed checks in a row that take a server out.
    pub fall: u32,
    /// Passed checks in a row that bring it back.
    pub rise: u32,
}

pub struct Haproxy {
    pub proc: Proc,
    /// The frontend: `http://127.0.0.1:{port}`.
    pub port: u16,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Haproxy {
    /// HAProxy `name` balancing `servers` round robin behind one loopback
    /// port; returns once its stats socket answers.
    pub fn start(dir: &TestDir, name: &str, servers: &[HaproxyServer], check: &HealthCheck) -> Haproxy {
        let port = free_port();
        let socket = dir.join(format!("{name}.sock"));
        let config = dir.join(format!("{name}.cfg"));
        let inter = check.inter.as_millis();
        let mut text = format!(
            "global\n\
             \x20   log stderr format raw local0 info\n\
             \x20   stats socket {socket} mode 600 level admin\n\
             \x20   maxconn 2000\n\
             \n\
             defaults\n\
             \x20   mode http\n\
             \x20   log global\n\
             \x20   option httplog\n\
             \x20   option dontlog-normal\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 30s\n\
             \x20   timeout server 30s\n\
             \x20   timeout check 1s\n\
             \x20   retries 2\n\
             \x20   option redispatch\n\
             \n\
             frontend members_rpc\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend members\n\
             \n\
             backend members\n\
             \x20   balance roundrobin\n\
             \x20   option httpchk GET {path}\n\
             \x20   http-check expect status 200\n\
             \x20   http-response set-header X-Served-By %[srv_name]\n\
             \x20   default-server inter {inter}ms fastinter {inter}ms downinter {inter}ms fall {fall} rise {rise}\n",
            socket = socket.display(),
            path = check.path,
            fall = check.fall,
            rise = check.rise,
        );
        for server in servers {
            text.push_str(&format!(
                "    server {} 127.0.0.1:{} check port {}\n",
                server.name, server.port, server.check_port
            ));
        }
        std::fs::write(&config, text).unwrap();
        let proc =
            Proc::spawn(name, dir.join(format!("{name}.log")), &script("haproxy.sh"), &[config.display().to_string()]);
        let haproxy = Haproxy { proc, port, socket, config };
        wait_for(Duration::from_secs(20), "haproxy's stats socket", || {
            haproxy.servers().ok().filter(|s| !s.is_empty())
        });
        haproxy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `show stat` on the stats socket: one map of column to value per
    /// server of the backend, by server name.
    pub fn servers(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        stream.write_all(b"show stat\n").map_err(|e| e.to_string())?;
        let mut text = String::new();
        stream.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let mut lines = text.lines();
        let header: Vec<&str> =
            lines.next().and_then(|l| l.strip_prefix("# ")).ok_or("no header")?.split(',').collect();
        let mut servers = BTreeMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let row: BTreeMap<String, String> =
                header.iter().zip(line.split(',')).map(|(k, v)| ((*k).to_owned(), v.to_owned())).collect();
            let is_server = row.get("pxname").is_some_and(|p| p == "members")
                && row.get("svname").is_some_and(|s| s != "FRONTEND" && s != "BACKEND");
            if is_server {
                servers.insert(row["svname"].clone(), row);
            }
        }
        Ok(servers)
    }

    /// A server's state as HAProxy shows it: `UP`, `DOWN`, `UP 1/2` (failing,
    /// still in), `DOWN 1/2` (passing, still out), `MAINT`...
    pub fn status(&self, server: &str) -> Option<String> {
        self.servers().ok()?.get(server).and_then(|row| row.get("status").cloned())
    }

    /// The last check's result for a server (`L7OK`, `L7STS`, `L4CON`...).
    pub fn check_status(&self, server: &str) -> Option<String> {
        self.servers().ok()?.get(server).and_then(|row| row.get("check_status").cloned())
    }
}
