//! PostgreSQL replicated by Patroni: one etcd and two Patroni members, each
//! running its own PostgreSQL, started by the project's launchers
//! (scripts/etcd.sh, scripts/patroni.sh). clnode reaches the primary
//! through a multi-host URL with `target_session_attrs=read-write`.

use std::time::Duration;

use serde_json::Value;

use super::{free_port, http_get, process_tree, script, signal_pids, wait_for, Proc, TestDir};

/// One Patroni member: Patroni's process (its PostgreSQL is its child).
pub struct PatroniMember {
    pub name: String,
    /// Patroni's process. Patroni starts PostgreSQL detached (its
    /// postmaster's parent is init), so the postmaster is found through
    /// `data/postmaster.pid` under `dir`.
    pub proc: Proc,
    pub dir: std::path::PathBuf,
    pub pg_port: u16,
    pub rest_port: u16,
}

impl PatroniMember {
    /// Patroni's view of itself (`GET /patroni`).
    pub fn status(&self) -> Option<Value> {
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/patroni", self.rest_port)).ok()?;
        (code == 200 || code == 503).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// The PID of this member's postmaster, while its pid file names one.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Signals Patroni, its PostgreSQL postmaster and every process under
    /// either: a host that dies (KILL) or hangs (STOP) as a whole.
    pub fn signal_host(&self, signal: &str) {
        let mut pids: Vec<u32> = self.proc.child.as_ref().map(|c| process_tree(c.id())).unwrap_or_default();
        pids.extend(self.postmaster_pid().map(process_tree).unwrap_or_default());
        signal_pids(&pids, signal);
    }

    /// Signals this member's PostgreSQL (the postmaster and every process
    /// under it), not Patroni: a database that hangs (STOP) while its
    /// manager still runs.
    pub fn signal_postgres(&self, signal: &str) {
        signal_pids(&self.postmaster_pid().map(process_tree).unwrap_or_default(), signal);
    }

    /// SIGKILLs the whole member, then starts Patroni again on the same
    /// data (it rejoins as a replica, rewinding if it must).
    pub fn crash_and_restart(&mut self) {
        self.signal_host("KILL");
        self.proc.kill();
        // The postmaster's children exit once they see it gone; a new one
        // cannot start while they hold the shared memory.
        std::thread::sleep(Duration::from_millis(500));
        self.proc.start();
    }
}

impl Drop for PatroniMember {
    fn drop(&mut self) {
        // Patroni's PostgreSQL outlives Patroni: take both trees.
        self.signal_host("KILL");
    }
}

/// etcd and two Patroni members of the cluster "clnode".
pub struct PgHa {
    pub members: Vec<PatroniMember>,
    /// "sync" or "async" (scripts/patroni.sh).
    pub mode: String,
    pub etcd: Proc,
}

impl PgHa {
    /// `mode`: "sync" (Patroni's synchronous_mode) or "async".
    pub fn start(dir: &TestDir, mode: &str) -> PgHa {
        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_args = [dir.join("etcd").display().to_string(), client_port.to_string(), peer_port.to_string()];
        let etcd = Proc::spawn("etcd", dir.join("etcd.log"), &script("etcd.sh"), &etcd_args);
        wait_for(Duration::from_secs(20), "etcd answers", || {
            http_get(&format!("http://127.0.0.1:{client_port}/health")).ok().filter(|(code, _)| *code == 200)
        });
        let start = |name: &str| {
            let (pg_port, rest_port) = (free_port(), free_port());
            let args = [
                dir.join(name).display().to_string(),
                name.to_owned(),
                pg_port.to_string(),
                rest_port.to_string(),
                format!("127.0.0.1:{client_port}"),
                mode.to_owned(),
            ];
            // Async: any replica may be promoted, however far behind (the
            // fault case that shows the head-regression guard needs one that is).
            let env: &[(&str, &str)] =
                if mode == "async" { &[("PATRONI_MAX_LAG_ON_FAILOVER", "1073741824")] } else { &[] };
            let proc = Proc::spawn_with_env(name, dir.join(format!("{name}.log")), &script("patroni.sh"), &args, env);
            PatroniMember { name: name.to_owned(), proc, dir: dir.join(name), pg_port, rest_port }
        };
        // The first bootstraps the cluster alone; the second clones it.
        let first = start("pg-a");
        let ha = PgHa { members: vec![first], mode: mode.to_owned(), etcd };
        wait_for(Duration::from_secs(60), "pg-a bootstrapped as primary", || ha.primary());
        let mut ha = ha;
        ha.members.push(start("pg-b"));
        ha.wait_replicating(Duration::from_secs(60));
        ha
    }

    /// The URL clnode is given: every member, the primary chosen by
    /// `target_session_attrs=read-write`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.members.iter().map(|m| format!("127.0.0.1:{}", m.pg_port)).collect();
        format!("postgres://postgres@{}/postgres?target_session_attrs=read-write", hosts.join(","))
    }

    /// A member's own URL.
    pub fn member_url(&self, i: usize) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.members[i].pg_port)
    }

    /// The index of the member whose REST API says it is the primary
    /// (`GET /primary` answers 200 there only).
    pub fn primary(&self) -> Option<usize> {
        let primaries: Vec<usize> = (0..self.members.len())
            .filter(|&i| {
                let url = format!("http://127.0.0.1:{}/primary", self.members[i].rest_port);
                matches!(super::http_get_within(&url, Duration::from_millis(500)), Ok((200, _)))
            })
            .collect();
        (primaries.len() == 1).then(|| primaries[0])
    }

    /// Waits until one member is primary and every other streams from it
    /// with no lag (in sync mode: as the synchronous standby, the only
    /// kind Patroni promotes); returns the primary.
    pub fn wait_replicating(&self, timeout: Duration) -> usize {
        wait_for(timeout, "a primary with its standby streaming", || {
            let primary = self.primary()?;
            let url = format!("http://127.0.0.1:{}/cluster", self.members[primary].rest_port);
            let (_, body) = http_get(&url).ok()?;
            let cluster: Value = serde_json::from_str(&body).ok()?;
            let members = cluster["members"].as_array()?;
            let streaming = members
                .iter()
                .filter(|m| {
                    let role = m["role"].as_str();
                    let wanted =
                        if self.mode == "sync" { role == Some("sync_standby") } else { role == Some("replica") };
                    wanted
                        && matches!(m["state"].as_str(), Some("running" | "streaming"))
                        && m["lag"].as_u64() == Some(0)
                })
                .count();
            (members.len() == self.members.len() && streaming == self.members.len() - 1).then_some(primary)
        })
    }

    /// A manual switchover to `candidate` through Patroni's REST API.
    pub fn switchover(&self, candidate: usize) {
        let primary = self.primary().expect("no primary to switch over from");
        let body = serde_json::json!({"leader": self.members[primary].name, "candidate": self.members[candidate].name});
        let url = format!("http://127.0.0.1:{}/switchover", self.members[primary].rest_port);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.post(&url).send(body.to_string()).unwrap();
        let (code, text) = (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default());
        assert_eq!(code, 200, "switchover refused: {text}");
    }
}
