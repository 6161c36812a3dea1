//! Replicated PostgreSQL (issue 17, §1): two leader-mode nodes reach a
//! Patroni cluster (etcd, a primary and a synchronous standby) through a
//! multi-host URL with `target_session_attrs=read-write`, each through
//! proxies of its own, under a transaction load. The faults:
//!
//! - `pg-primary-kill`: the primary's host dies (Patroni and every
//!   PostgreSQL process SIGKILLed at once); it is started again afterwards
//!   and rejoins as a replica;
//! - `pg-primary-stop`: the primary's PostgreSQL hangs (every process of
//!   it SIGSTOPped; Patroni on that host runs on), SIGCONT after the
//!   failover; Patroni demotes it. (Hanging Patroni too was tried first:
//!   Patroni 3.0.2 then never managed to write its synchronous-standby key
//!   to etcd again, "Synchronous replication key updated by someone else"
//!   every second, so the cluster ran without a synchronous standby: safe,
//!   Patroni then promotes nothing, but no second failover could follow);
//! - `pg-cut`: the leading node's links to the primary are cut (refused,
//!   open connections broken) while the other node still reaches it;
//!   healed after production resumed;
//! - `pg-switchover`: a manual switchover through Patroni's REST API;
//! - `pg-async-kill` (its own cluster, the standby asynchronous): the
//!   standby's PostgreSQL is hung while 60 MB of other WAL and then
//!   blocks commit, then the primary's host
//!   dies and the standby, resumed, is promoted without them. The
//!   head-regression guard must stop every node loudly: no block is
//!   committed again at a height a lost block had.
//!
//! Measured: fault → the first block committed after it. Checked after
//! every synchronous case: every block a node logged as committed is on
//! the new primary, hash for hash (0 acknowledged blocks lost), the chain
//! is continuous, and both geths hold its last 20 blocks (no fork).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::cluster::ClusterBuilder;
use crate::support::keys::{DEV_KEYS, LOAD_KEYS};
use crate::support::patroni::PgHa;
use crate::support::*;
use crate::*;

/// Empty blocks every 200 ms besides the load's, and a log line per
/// committed block (the acknowledged blocks are read from it).
const FLAGS: [&str; 4] = ["--empty-block-interval", "200ms", "--log-level", "debug"];

const SYNC_KINDS: [&str; 4] = ["pg-primary-kill", "pg-primary-stop", "pg-cut", "pg-switchover"];

/// The `postgres_failovers` test.
pub fn postgres_failovers() {
    let _serial = serial();
    let rounds = if depth() == Depth::Full { 4 } else { 1 };
    let kinds: Vec<&str> = SYNC_KINDS.into_iter().filter(|kind| runs(kind)).collect();
    let mut figures = Figures::default();
    if !kinds.is_empty() {
        synchronous_failovers(&kinds, rounds, &mut figures);
    }
    let mut async_report = json!(null);
    if runs("pg-async-kill") {
        async_report = asynchronous_failover(&mut figures);
    }
    if kinds.is_empty() && !runs("pg-async-kill") {
        eprintln!("postgres_failovers: not in CLNODE_FAULT_CASES, skipped");
        return;
    }
    let failovers: serde_json::Map<String, serde_json::Value> =
        figures.failover_ms.iter().map(|(kind, samples)| (kind.clone(), summary(samples))).collect();
    write_report(
        "patroni",
        json!({
            "fault_to_next_block": failovers,
            "async_standby": async_report,
            "patroni_timings": {"ttl_s": 10, "loop_wait_s": 1, "retry_timeout_s": 4},
            "notes": figures.notes,
        }),
    );
}

fn start(name: &str, mode: &'static str) -> (Cluster, Vec<Proc>) {
    start_under_load(Cluster::builder(name).patroni(mode))
}

/// The cases' cluster from `builder` (which names it and its Patroni
/// mode): two leader-mode nodes, peered, each through proxies of its own,
/// with a load on both geths.
pub fn start_under_load(builder: ClusterBuilder) -> (Cluster, Vec<Proc>) {
    let cluster = builder.leaders(2).peered().links().flags(&LEADER_FLAGS).flags(&FLAGS).start();
    cluster.wait_for_leader(Duration::from_secs(60));
    let load = cluster
        .els
        .iter()
        .enumerate()
        .map(|(i, el)| {
            let name = format!("load-{i}");
            load_generator(&cluster.dir, &name, &el.rpc_url(), DEV_KEYS[LOAD_KEYS[i]], f64::from(LOAD_RATE), 900.0)
        })
        .collect();
    (cluster, load)
}

fn synchronous_failovers(kinds: &[&str], rounds: usize, figures: &mut Figures) {
    let (mut cluster, _load) = start("faults-patroni", "sync");
    for round in 0..rounds {
        for kind in kinds {
            let context = format!("{kind} round {round}");
            let ha = cluster.pg_ha.as_ref().unwrap();
            let primary = ha.wait_replicating(Duration::from_secs(90));
            let standby = 1 - primary;
            wait_for(Duration::from_secs(30), "blocks committed before the fault", || {
                primary_chain(ha).filter(|chain| !chain.is_empty())
            });
            let fault_at = now_ms();
            let started = Instant::now();
            let leader = match *kind {
                "pg-primary-kill" => {
                    ha.members[primary].signal_host("KILL");
                    None
                }
                "pg-primary-stop" => {
                    ha.members[primary].signal_postgres("STOP");
                    None
                }
                "pg-cut" => {
                    let leader = cluster.wait_for_leader(Duration::from_secs(30));
                    cluster.links[leader].pg_members[primary].set(ProxyMode::Refuse, true);
                    Some(leader)
                }
                _ => {
                    ha.switchover(standby);
                    None
                }
            };
            let resumed =
                wait_for(Duration::from_secs(90), &format!("{context}: a block committed after the fault"), || {
                    first_block_after(ha, fault_at).map(|_| started.elapsed())
                });
            eprintln!("{context}: primary {primary}, a block committed {} ms after the fault", resumed.as_millis());
            figures.failover(kind, i64::try_from(resumed.as_millis()).unwrap());
            // Heal.
            match *kind {
                "pg-primary-kill" => cluster.pg_ha.as_mut().unwrap().members[primary].crash_and_restart(),
                "pg-primary-stop" => cluster.pg_ha.as_ref().unwrap().members[primary].signal_postgres("CONT"),
                "pg-cut" => cluster.links[leader.unwrap()].pg_members[primary].set(ProxyMode::Pass, false),
                _ => {}
            }
            let ha = cluster.pg_ha.as_ref().unwrap();
            ha.wait_replicating(Duration::from_secs(120));
            check_nothing_lost(&cluster, &context);
        }
    }
    assert_no_panics(&cluster);
}

/// The standby asynchronous and hung while blocks commit; the primary
/// dies; the standby comes back and is promoted without those blocks.
fn asynchronous_failover(figures: &mut Figures) -> serde_json::Value {
    let (cluster, _load) = start("faults-patroni-async", "async");
    let ha = cluster.pg_ha.as_ref().unwrap();
    let primary = ha.wait_replicating(Duration::from_secs(90));
    let standby = 1 - primary;
    ha.members[standby].signal_postgres("STOP");
    // Fill the replication connection's socket buffers with WAL the stopped
    // standby cannot read (about 60 MB), so that what follows stays on the
    // primary alone: blocks the standby never receives.
    let mut primary_db = postgres::Client::connect(&ha.member_url(primary), postgres::NoTls).unwrap();
    primary_db
        .batch_execute("CREATE TABLE wal_filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 250000) g")
        .unwrap();
    let before = primary_chain(ha).map(|c| c.len()).unwrap_or(0);
    wait_for(Duration::from_secs(30), "ten blocks committed past the hung standby", || {
        primary_chain(ha).filter(|chain| chain.len() >= before + 10)
    });
    let acked = acknowledged(&cluster);
    let highest = acked.keys().next_back().copied().unwrap();
    ha.members[primary].signal_host("KILL");
    ha.members[standby].signal_postgres("CONT");
    let started = Instant::now();
    // Every node stops loudly: /health 503 naming the regression.
    let stopped = wait_for(Duration::from_secs(90), "every node reports the database went back", || {
        let all = cluster
            .nodes
            .iter()
            .all(|node| node.health().is_some_and(|(code, line)| code == 503 && line.contains("went back")));
        all.then(|| started.elapsed())
    });
    let promoted = primary_chain(ha).unwrap_or_default();
    let kept = promoted.len() as u64;
    // Nothing is committed at the lost heights while they stay stopped.
    std::thread::sleep(Duration::from_secs(5));
    let after = primary_chain(ha).unwrap_or_default();
    assert_eq!(after.len() as u64, kept, "a block was committed after the database went back");
    assert!(kept < highest, "the promoted standby kept every block ({kept} >= {highest}): no regression to see");
    let note = format!(
        "async standby: the promoted standby holds {kept} blocks, {} acknowledged blocks were lost with the old \
         primary; every node stopped {} ms after the failover began, and nothing was committed at those heights",
        highest - kept,
        stopped.as_millis()
    );
    figures.note(note);
    json!({"acknowledged_head": highest, "promoted_head": kept, "all_stopped_ms": stopped.as_millis() as u64})
}

/// A connection to the member Patroni's REST API calls primary (its own
/// URL, not the multi-host one: a hung old primary would hold a
/// multi-host connect at its first host).
pub fn primary_client(ha: &PgHa) -> Option<postgres::Client> {
    let primary = ha.primary()?;
    let mut config: postgres::Config = ha.member_url(primary).parse().ok()?;
    config.connect_timeout(Duration::from_secs(2));
    config.connect(postgres::NoTls).ok()
}

/// The chain on the primary; None while no primary answers.
pub fn primary_chain(ha: &PgHa) -> Option<Vec<(u64, String, String)>> {
    let mut client = primary_client(ha)?;
    let rows = client.query("SELECT block_number, block_hash, parent_hash FROM payloads ORDER BY block_number", &[]);
    Some(rows.ok()?.iter().map(|row| (row.get::<_, i64>(0) as u64, row.get(1), row.get(2))).collect())
}

/// The first block the primary committed after `at_ms` (its server clock,
/// the same machine's).
pub fn first_block_after(ha: &PgHa, at_ms: i64) -> Option<u64> {
    let mut client = primary_client(ha)?;
    let row = client
        .query_one(
            "SELECT MIN(block_number) FROM payloads WHERE created_at > to_timestamp($1::float8 / 1000)",
            &[&(at_ms as f64)],
        )
        .ok()?;
    row.get::<_, Option<i64>>(0).map(|n| n as u64)
}

/// 0 acknowledged blocks lost, a continuous chain, both geths on it.
pub fn check_nothing_lost(cluster: &Cluster, context: &str) {
    let ha = cluster.pg_ha.as_ref().unwrap();
    let chain = wait_for(Duration::from_secs(30), "the primary's chain", || primary_chain(ha));
    assert_continuous(&chain);
    let by_number: BTreeMap<u64, &String> = chain.iter().map(|(n, h, _)| (*n, h)).collect();
    let acked = acknowledged(cluster);
    assert!(!acked.is_empty(), "{context}: no block acknowledged at all");
    for (number, hash) in &acked {
        assert_eq!(by_number.get(number).copied(), Some(hash), "{context}: acknowledged block {number} lost");
    }
    let head = chain.last().map(|(n, _, _)| *n).unwrap_or(0);
    cluster.assert_clients_hold(&chain, context);
    eprintln!("{context}: {} acknowledged blocks all on the primary; head {head}", acked.len());
}

fn assert_no_panics(cluster: &Cluster) {
    for node in &cluster.nodes {
        let log = node.proc.log_text();
        assert!(!log.contains("panicked"), "{}: {log}", node.id);
    }
}
