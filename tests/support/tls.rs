//! TLS test servers: a self-signed CA with a server certificate
//! (scripts/test-certs.sh, the openssl CLI), PostgreSQL with ssl=on and a
//! TLS-only Redis (scripts/postgres.sh and scripts/redis.sh with their TLS
//! variables), and a Redis client that speaks TLS to check the server side.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{free_port, script, wait_for, Postgres, Proc, Redis, TestDir};

/// A CA and the server certificate it signed, in `dir/<name>`.
pub struct TestCa {
    pub dir: PathBuf,
}

impl TestCa {
    /// `names`: the server certificate's subjectAltName list
    /// (`DNS:localhost`, `IP:127.0.0.1`, ...).
    pub fn new(dir: &TestDir, name: &str, names: &str) -> TestCa {
        let path = dir.join(name);
        let output = Command::new(script("test-certs.sh")).arg(&path).arg(names).output().unwrap();
        assert!(output.status.success(), "test-certs.sh failed: {}", String::from_utf8_lossy(&output.stderr));
        TestCa { dir: path }
    }

    /// The CA certificate (sslrootcert, --redis-ca-file).
    pub fn ca(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    pub fn cert(&self) -> String {
        self.dir.join("server.pem").display().to_string()
    }

    pub fn key(&self) -> String {
        self.dir.join("server.key").display().to_string()
    }
}

impl Postgres {
    /// A server with ssl=on presenting `ca`'s server certificate; it still
    /// takes plaintext connections (the harness's own `client()`).
    pub fn start_tls(dir: &TestDir, name: &str, ca: &TestCa) -> Postgres {
        let port = free_port();
        let args = [dir.join(name).display().to_string(), port.to_string()];
        let env = [("PG_TLS_CERT", ca.cert()), ("PG_TLS_KEY", ca.key())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let proc = Proc::spawn_with_env(name, dir.join(format!("{name}.log")), &script("postgres.sh"), &args, &env);
        let postgres = Postgres { proc, port };
        postgres.wait_ready();
        postgres
    }
}

impl Redis {
    /// A TLS-only server (no plaintext port) presenting `ca`'s server
    /// certificate.
    pub fn start_tls(dir: &TestDir, name: &str, ca: &TestCa) -> Redis {
        let port = free_port();
        let args = [dir.join(name).display().to_string(), port.to_string()];
        let env = [("REDIS_TLS_CERT", ca.cert()), ("REDIS_TLS_KEY", ca.key()), ("REDIS_TLS_CA", ca.ca())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let proc = Proc::spawn_with_env(name, dir.join(format!("{name}.log")), &script("redis.sh"), &args, &env);
        let redis = Redis { proc, port };
        redis.wait_ready();
        redis
    }

    /// A TLS connection to this server as `host` (verified against `ca`).
    pub fn tls_connection(&self, host: &str, ca: &TestCa, password: Option<&str>) -> redis::Connection {
        use redis::IntoConnectionInfo as _;
        clnode::tls::install_default_provider();
        let mut info = format!("rediss://{host}:{}/", self.port).into_connection_info().unwrap();
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let root_cert = Some(std::fs::read(ca.ca()).unwrap());
        let client =
            redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert }).unwrap();
        wait_for(Duration::from_secs(10), "a TLS connection to redis", || {
            client.get_connection_with_timeout(Duration::from_secs(1)).ok()
        })
    }
}
