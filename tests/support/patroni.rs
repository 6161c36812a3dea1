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
    /// etcd's directory (its data in `data/`, scripts/etcd.sh).
    pub etcd_dir: std::path::PathBuf,
    etcd_port: u16,
    /// The WAL archive every primary copies into (patroni.sh
    /// `PATRONI_ARCHIVE_DIR`), when started with one.
    pub archive: Option<std::path::PathBuf>,
    /// The environment the members were last started with (patroni.sh's).
    env: Vec<(String, String)>,
}

impl PgHa {
    /// `mode`: "sync" (Patroni's synchronous_mode) or "async"; `archive`:
    /// the directory the primary archives its WAL into, if any.
    pub fn start(dir: &TestDir, mode: &str, archive: Option<std::path::PathBuf>) -> PgHa {
        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_dir = dir.join("etcd");
        let etcd_args = [etcd_dir.display().to_string(), client_port.to_string(), peer_port.to_string()];
        let etcd = Proc::spawn("etcd", dir.join("etcd.log"), &script("etcd.sh"), &etcd_args);
        let members = ["pg-a", "pg-b"]
            .iter()
            .map(|name| {
                let (pg_port, rest_port) = (free_port(), free_port());
                let args = [
                    dir.join(name).display().to_string(),
                    (*name).to_owned(),
                    pg_port.to_string(),
                    rest_port.to_string(),
                    format!("127.0.0.1:{client_port}"),
                    mode.to_owned(),
                ];
                // Not started yet (`start_members`): a `Proc` with no child.
                let proc = Proc::unstarted(name, dir.join(format!("{name}.log")), &script("patroni.sh"), &args);
                PatroniMember { name: (*name).to_owned(), proc, dir: dir.join(name), pg_port, rest_port }
            })
            .collect();
        let mut ha =
            PgHa { members, mode: mode.to_owned(), etcd, etcd_dir, etcd_port: client_port, archive, env: Vec::new() };
        ha.start_first(&[]);
        ha.start_second();
        ha
    }

    /// Waits for etcd, then starts the first member with `env` (besides
    /// the archive's), which bootstraps the cluster alone; `start_second`
    /// then starts the other with the same.
    fn start_first(&mut self, env: &[(&str, &str)]) {
        let etcd_health = format!("http://127.0.0.1:{}/health", self.etcd_port);
        wait_for(Duration::from_secs(20), "etcd answers", || {
            http_get(&etcd_health).ok().filter(|(code, _)| *code == 200)
        });
        self.env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Some(archive) = &self.archive {
            self.env.push(("PATRONI_ARCHIVE_DIR".to_owned(), archive.display().to_string()));
        }
        // Async: any replica may be promoted, however far behind (the
        // fault case that shows the head-regression guard needs one that is).
        if self.mode == "async" {
            self.env.push(("PATRONI_MAX_LAG_ON_FAILOVER".to_owned(), "1073741824".to_owned()));
        }
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.members[0].proc.start_with_env(&env);
    }

    /// Waits until the first member is primary, then starts the second
    /// (it clones the primary) and waits until it replicates. Returns when
    /// the first became primary.
    pub fn start_second(&mut self) -> std::time::Instant {
        wait_for(Duration::from_secs(90), "pg-a bootstrapped as primary", || self.primary());
        let primary_at = std::time::Instant::now();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.members[1].proc.start_with_env(&env);
        self.wait_replicating(Duration::from_secs(90));
        primary_at
    }

    /// The whole cluster lost: every member's host SIGKILLed and its data
    /// removed, etcd SIGKILLed and its data removed.
    pub fn lose_everything(&mut self) {
        for member in &mut self.members {
            member.signal_host("KILL");
            member.proc.kill();
        }
        self.etcd.kill();
        // The postmasters' children exit once they see it gone.
        std::thread::sleep(Duration::from_millis(500));
        for member in &self.members {
            std::fs::remove_dir_all(member.dir.join("data")).unwrap();
        }
        std::fs::remove_dir_all(self.etcd_dir.join("data")).unwrap();
    }

    /// Starts a new cluster from `backup` and the archive, on the same
    /// ports (patroni.sh `PATRONI_RESTORE_FROM`): etcd started empty, the
    /// first member bootstraps by restoring to `target` ("latest" or
    /// "base"). `start_second` then waits for it and adds the second
    /// member, which clones it.
    pub fn begin_restore(&mut self, backup: &std::path::Path, target: &str) {
        assert!(self.archive.is_some(), "a restore needs the WAL archive");
        self.etcd.start();
        let backup = backup.display().to_string();
        self.start_first(&[("PATRONI_RESTORE_FROM", &backup), ("PATRONI_RESTORE_TARGET", target)]);
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
