//! Redis with Sentinel: a master, a replica and three sentinels, started by
//! the project's launchers (scripts/redis.sh, scripts/redis-sentinel.sh) as
//! the Redis failover tests and `make faults` use them.

use std::time::{Duration, Instant};

use super::{assert_continuous, free_port, script, stored_chain, wait_for, Cluster, Proc, Redis, TestDir};

/// The name the sentinels know the master by (clnode's `--redis-master`
/// default).
pub const MASTER_NAME: &str = "mymaster";

/// Sentinel timings for tests: a master silent for 1 s is down; a failover
/// not done in 3 s is retried.
const DOWN_AFTER_MS: &str = "1000";
const FAILOVER_TIMEOUT_MS: &str = "3000";

pub struct Sentinel {
    pub proc: Proc,
    pub port: u16,
}

/// `servers[0]` starts as the master, `servers[1]` as its replica.
pub struct RedisHa {
    pub servers: Vec<Redis>,
    pub sentinels: Vec<Sentinel>,
}

impl RedisHa {
    pub fn start(dir: &TestDir) -> RedisHa {
        let master = Redis::start_named(dir, "redis-a", None);
        let replica = Redis::start_named(dir, "redis-b", Some(master.port));
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let name = format!("sentinel-{i}");
                let args = [
                    dir.join(&name).display().to_string(),
                    port.to_string(),
                    MASTER_NAME.to_owned(),
                    master.addr(),
                    "2".to_owned(),
                ];
                let env =
                    [("SENTINEL_DOWN_AFTER_MS", DOWN_AFTER_MS), ("SENTINEL_FAILOVER_TIMEOUT_MS", FAILOVER_TIMEOUT_MS)];
                let proc = Proc::spawn_with_env(
                    &name,
                    dir.join(format!("{name}.log")),
                    &script("redis-sentinel.sh"),
                    &args,
                    &env,
                );
                Sentinel { proc, port }
            })
            .collect();
        let ha = RedisHa { servers: vec![master, replica], sentinels };
        ha.wait_settled(Duration::from_secs(30));
        ha
    }

    /// clnode's flags to reach the master through the sentinels.
    pub fn flags(&self) -> Vec<String> {
        let list: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        vec!["--redis-sentinel".into(), list.join(","), "--redis-master".into(), MASTER_NAME.into()]
    }

    /// The master's port as sentinel `i` sees it (None: no answer).
    pub fn master_port_seen_by(&self, i: usize) -> Option<u16> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinels[i].port)).ok()?;
        let mut connection = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
        connection.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        let (_, port): (String, u16) =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER_NAME).query(&mut connection).ok()?;
        Some(port)
    }

    /// Index in `servers` of the master every sentinel names.
    pub fn master(&self) -> Option<usize> {
        let ports: Vec<Option<u16>> = (0..self.sentinels.len()).map(|i| self.master_port_seen_by(i)).collect();
        let first = ports[0]?;
        ports.iter().all(|p| *p == Some(first)).then(|| self.servers.iter().position(|s| s.port == first))?
    }

    /// Waits until every sentinel names the same master, knows the other
    /// sentinels and the replica, and the replica is in sync: a failover
    /// can then be carried out.
    pub fn wait_settled(&self, timeout: Duration) -> usize {
        wait_for(timeout, "sentinels agree, know each other and the replica in sync", || {
            let master = self.master()?;
            let port = self.servers[master].port;
            let ready = (0..self.sentinels.len()).all(|i| {
                let fields = self.sentinel_master_fields(i);
                let field = |name: &str| fields.iter().position(|f| f == name).and_then(|at| fields.get(at + 1));
                field("num-other-sentinels").map(String::as_str) == Some("2")
                    && field("num-slaves").map(String::as_str) == Some("1")
                    && field("port").map(String::as_str) == Some(&port.to_string())
                    && field("flags").map(String::as_str) == Some("master")
            });
            (ready && self.replica_in_sync(master)).then_some(master)
        })
    }

    /// `SENTINEL MASTER name`: a flat list of field, value, field, value...
    fn sentinel_master_fields(&self, i: usize) -> Vec<String> {
        let ask = || -> Option<Vec<String>> {
            let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.sentinels[i].port)).ok()?;
            let mut connection = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
            connection.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
            redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME).query(&mut connection).ok()
        };
        ask().unwrap_or_default()
    }

    /// The master has one replica online at the master's own offset.
    fn replica_in_sync(&self, master: usize) -> bool {
        let info = || -> Option<String> {
            let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.servers[master].port)).ok()?;
            let mut connection = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
            connection.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
            redis::cmd("INFO").arg("replication").query(&mut connection).ok()
        };
        let Some(info) = info() else { return false };
        let value = |key: &str| info.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).map(str::to_owned);
        let offset = value("master_repl_offset:");
        let replica = value("slave0:");
        matches!((offset, replica), (Some(offset), Some(replica))
            if replica.contains("state=online") && replica.contains(&format!("offset={offset},")))
    }
}

/// (number, term) of the last block committed in `cluster`'s PostgreSQL.
pub fn last_block(cluster: &Cluster) -> (u64, u64) {
    let row = cluster
        .postgres
        .client()
        .query_opt("SELECT block_number, term FROM payloads ORDER BY block_number DESC LIMIT 1", &[])
        .unwrap();
    row.map(|row| (u64::try_from(row.get::<_, i64>(0)).unwrap(), u64::try_from(row.get::<_, i64>(1)).unwrap()))
        .unwrap_or((0, 0))
}

/// What one Redis failover showed from outside.
pub struct Failover {
    /// Fault → the first block committed under a newer term.
    pub resumed: Duration,
    /// Samples (every 50 ms, until that block) in which two nodes said
    /// they lead at once.
    pub both_leading: usize,
    pub samples: usize,
}

/// Applies `fault` and waits (up to `timeout`) for a block under a term
/// newer than the one in force before it, sampling the nodes' roles
/// meanwhile.
pub fn through_failover(cluster: &Cluster, timeout: Duration, fault: impl FnOnce()) -> Failover {
    let (_, term_before) = wait_for(Duration::from_secs(20), "blocks committed before the fault", || {
        Some(last_block(cluster)).filter(|(number, _)| *number > 0)
    });
    let started = Instant::now();
    fault();
    let (mut both_leading, mut samples) = (0, 0);
    let resumed = wait_for(timeout, "a block under a newer term after the Redis fault", || {
        samples += 1;
        if cluster.nodes.iter().filter(|node| node.is_leader()).count() > 1 {
            both_leading += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
        (last_block(cluster).1 > term_before).then(|| started.elapsed())
    });
    Failover { resumed, both_leading, samples }
}

/// The committed chain is continuous (one block per height, each linked
/// to its parent) and every execution client holds its last 20 blocks:
/// no fork.
pub fn stored_chain_is_one(cluster: &Cluster) {
    let chain = stored_chain(&cluster.postgres);
    assert_continuous(&chain);
    cluster.assert_clients_hold(&chain, "after the Redis failover");
}
