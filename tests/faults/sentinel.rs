//! Redis Sentinel failovers (issue 17, §2): two leader-mode nodes reach
//! Redis through three sentinels (`--redis-sentinel`), a master and a
//! replica, under a transaction load. The master is SIGKILLed
//! (`redis-sentinel-kill`) or hung with SIGSTOP (`redis-sentinel-stop`),
//! alternately, and comes back as a replica each time. Measured per
//! failover: fault → the first block under a newer term, and how often two
//! nodes said they lead at once (replication is asynchronous: a promoted
//! replica may lack the last renewal). Checked after every failover: one
//! block per height, linked, on every execution client.

use std::time::Duration;

use serde_json::json;

use crate::support::keys::{DEV_KEYS, LOAD_KEYS};
use crate::support::sentinel::{stored_chain_is_one, through_failover};
use crate::support::*;
use crate::*;

/// Empty blocks every 200 ms besides the load's: a resumed chain shows at once.
const FLAGS: [&str; 2] = ["--empty-block-interval", "200ms"];

/// The `redis_sentinel_failovers` test.
pub fn redis_sentinel_failovers() {
    let _serial = serial();
    let rounds = match depth() {
        Depth::Full => 5,
        Depth::Quick => 1,
    };
    let kinds: Vec<&str> = ["redis-sentinel-kill", "redis-sentinel-stop"]
        .into_iter()
        .filter(|kind| {
            selected(kind)
                && (depth() == Depth::Full || CASES.iter().any(|(c, quick)| c == kind && *quick) || named(kind))
        })
        .collect();
    if kinds.is_empty() {
        eprintln!("redis_sentinel_failovers: not in CLNODE_FAULT_CASES, skipped");
        return;
    }
    let mut cluster =
        Cluster::builder("faults-sentinel").leaders(2).peered().sentinel().flags(&LEADER_FLAGS).flags(&FLAGS).start();
    cluster.wait_for_leader(Duration::from_secs(60));
    let seconds = 600.0;
    let _load: Vec<Proc> = cluster
        .els
        .iter()
        .enumerate()
        .map(|(i, el)| {
            let name = format!("load-{i}");
            load_generator(&cluster.dir, &name, &el.rpc_url(), DEV_KEYS[LOAD_KEYS[i]], f64::from(LOAD_RATE), seconds)
        })
        .collect();
    let mut figures = Figures::default();
    let (mut both_leading, mut samples) = (0, 0);
    for round in 0..rounds {
        for kind in &kinds {
            let ha = cluster.redis_ha.as_ref().unwrap();
            let master = ha.wait_settled(Duration::from_secs(60));
            let signal = if *kind == "redis-sentinel-kill" { "KILL" } else { "STOP" };
            let failover =
                through_failover(&cluster, Duration::from_secs(60), || ha.servers[master].proc.signal(signal));
            let context = format!("{kind} round {round}");
            let new_master = wait_for(Duration::from_secs(30), "the sentinels agree on a new master", || {
                cluster.redis_ha.as_ref().unwrap().master().filter(|m| *m != master)
            });
            stored_chain_is_one(&cluster);
            eprintln!(
                "{context}: master {master} -> {new_master}, production resumed after {} ms; two nodes said leader \
                 in {} of {} samples",
                failover.resumed.as_millis(),
                failover.both_leading,
                failover.samples
            );
            figures.failover(kind, i64::try_from(failover.resumed.as_millis()).unwrap());
            both_leading += failover.both_leading;
            samples += failover.samples;
            // The old master back: as a replica of the new one.
            let server = &mut cluster.redis_ha.as_mut().unwrap().servers[master];
            if signal == "KILL" {
                server.restart();
            } else {
                server.proc.signal("CONT");
            }
        }
    }
    cluster.redis_ha.as_ref().unwrap().wait_settled(Duration::from_secs(60));
    stored_chain_is_one(&cluster);
    let lines = cluster.nodes.iter().map(|n| n.proc.log_text()).collect::<Vec<_>>().join("\n");
    assert!(!lines.contains("panicked"), "{lines}");
    for (kind, samples) in &figures.failover_ms {
        // The goal is 10 s; the bound leaves room for a loaded machine and
        // catches a node that never asked the sentinels again.
        let worst = samples.iter().max().copied().unwrap_or(0);
        assert!(worst < 20_000, "{kind}: production resumed only after {worst} ms");
    }
    let failovers: serde_json::Map<String, serde_json::Value> =
        figures.failover_ms.iter().map(|(kind, samples)| (kind.clone(), summary(samples))).collect();
    write_report(
        "redis_sentinel",
        json!({
            "failover_to_next_term_block": failovers,
            "two_leaders_samples": both_leading,
            "role_samples": samples,
            "sentinel_timings": {"down_after_ms": 1000, "failover_timeout_ms": 3000},
        }),
    );
}
