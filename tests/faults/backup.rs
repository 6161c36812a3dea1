//! Backups and restores (issue 17, §6): the leader PostgreSQL archives its
//! WAL (postgres.sh `PG_ARCHIVE_DIR`), a base backup is taken under load
//! (scripts/pg-backup.sh), the chain grows past it, and the database is
//! then lost and restored (scripts/pg-restore.sh):
//!
//! - `restore-latest`: the drill an operator runs: the leader-mode nodes
//!   stopped, the last WAL segment archived, the database restored to the
//!   latest point the archive holds; the nodes started again continue the
//!   chain with nothing lost (every block they logged as committed is
//!   there, hash for hash);
//! - `restore-older`: the database replaced, under running nodes, by the
//!   base backup alone (an older point): every node stops loudly (the
//!   head-regression guard) and nothing is committed at the lost heights.
//!
//! The same two drills on a Patroni cluster (`patroni_restore_drills`):
//! the primary archives (patroni.sh `PATRONI_ARCHIVE_DIR`), the base backup
//! is taken from it under load, a switchover makes the other member the
//! primary (the archive then holds both members' WAL across a timeline
//! switch), and the whole cluster is lost (both members' data and etcd's)
//! and bootstrapped anew from the backup (patroni.sh `PATRONI_RESTORE_FROM`:
//! Patroni's custom bootstrap running pg-restore.sh), the second member
//! cloning the restored primary:
//!
//! - `patroni-restore-latest`: after the nodes stopped; nothing lost, no
//!   fork, production resumes;
//! - `patroni-restore-older`: to the base backup, under running nodes:
//!   every node stops loudly, nothing is committed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::patroni::{check_nothing_lost, first_block_after, primary_chain, primary_client, start_under_load};
use crate::support::*;
use crate::*;

/// Empty blocks every 200 ms, and a log line per committed block.
const FLAGS: [&str; 4] = ["--empty-block-interval", "200ms", "--log-level", "debug"];

/// The `backup_restore_drills` test.
pub fn backup_restore_drills() {
    let _serial = serial();
    let (latest, older) = (runs("restore-latest"), runs("restore-older"));
    if !latest && !older {
        eprintln!("backup_restore_drills: not in this run, skipped");
        return;
    }
    let mut cluster =
        Cluster::builder("faults-backup").leaders(2).wal_archive().flags(&LEADER_FLAGS).flags(&FLAGS).start();
    cluster.wait_for_leader(Duration::from_secs(60));
    wait_for(Duration::from_secs(60), "10 blocks", || (cluster.head().0 >= 10).then_some(()));
    let backup = cluster.dir.join("base-backup");
    take_backup(cluster.postgres.port, "postgres", &backup);
    let base_head = cluster.head().0;
    wait_for(Duration::from_secs(60), "15 blocks past the backup", || {
        (cluster.head().0 >= base_head + 15).then_some(())
    });
    let mut report = json!({"base_backup_head": base_head});
    if latest {
        // The drill: stop writing, archive the last segment, lose the data, restore.
        for node in &mut cluster.nodes {
            assert_eq!(node.proc.terminate(Duration::from_secs(20)), Some(0), "{} did not stop cleanly", node.id);
        }
        let acked = acknowledged(&cluster);
        let head_before = cluster.head().0;
        archive_current_segment(&mut cluster.postgres.client());
        restore(&mut cluster, &backup, "latest", "pgdata.lost-1");
        assert_restored_whole(&stored_chain(&cluster.postgres), head_before, &acked);
        for node in &mut cluster.nodes {
            node.proc.start();
        }
        cluster.wait_for_leader(Duration::from_secs(60));
        wait_for(Duration::from_secs(60), "5 blocks after the restore", || {
            (cluster.head().0 >= head_before + 5).then_some(())
        });
        assert_continuous(&stored_chain(&cluster.postgres));
        eprintln!(
            "restore-latest: {} acknowledged blocks all restored (head {head_before}); production continued",
            acked.len()
        );
        report["latest"] = json!({"acknowledged": acked.len(), "restored_head": head_before});
    }
    if older {
        let head_before = cluster.head().0;
        restore(&mut cluster, &backup, "base", "pgdata.lost-2");
        let restored = cluster.head().0;
        assert!(restored < head_before, "the older restore holds {restored} blocks, not fewer than {head_before}");
        wait_all_went_back(&cluster, Instant::now());
        assert_nothing_committed(restored, || cluster.head().0);
        eprintln!("restore-older: restored to block {restored} under nodes that saw {head_before}; every node stopped");
        report["older"] = json!({"seen_head": head_before, "restored_head": restored});
    }
    write_report("backup_restore", report);
}

/// The `patroni_restore_drills` test.
pub fn patroni_restore_drills() {
    let _serial = serial();
    let (latest, older) = (runs("patroni-restore-latest"), runs("patroni-restore-older"));
    if !latest && !older {
        eprintln!("patroni_restore_drills: not in this run, skipped");
        return;
    }
    let (mut cluster, _load) =
        start_under_load(Cluster::builder("faults-patroni-backup").patroni("sync").wal_archive());
    cluster.wait_for_leader(Duration::from_secs(60));
    wait_for(Duration::from_secs(60), "10 blocks", || (ha_head(&cluster) >= 10).then_some(()));
    let ha = cluster.pg_ha.as_ref().unwrap();
    let primary = ha.wait_replicating(Duration::from_secs(90));
    let backup = cluster.dir.join("base-backup");
    // As replicator: Patroni's pg_hba lets only that role make replication connections.
    take_backup(ha.members[primary].pg_port, "replicator", &backup);
    let base_head = ha_head(&cluster);
    // The other member becomes primary: what follows is archived by it, on
    // the next timeline, so the restore replays both members' WAL.
    ha.switchover(1 - primary);
    let switched = ha.wait_replicating(Duration::from_secs(120));
    assert_eq!(switched, 1 - primary, "the switchover did not move the primary");
    // The promoted member archives too (archive_mode on, from its
    // promotion): the new timeline's history file is there.
    let archive = ha.archive.clone().unwrap();
    wait_for(Duration::from_secs(30), "the promoted member archived its timeline history", || {
        let names = std::fs::read_dir(&archive).ok()?;
        names
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".history"))
            .then_some(())
    });
    wait_for(Duration::from_secs(60), "15 blocks past the backup", || {
        (ha_head(&cluster) >= base_head + 15).then_some(())
    });
    let mut report = json!({"base_backup_head": base_head});
    if latest {
        for node in &mut cluster.nodes {
            assert_eq!(node.proc.terminate(Duration::from_secs(20)), Some(0), "{} did not stop cleanly", node.id);
        }
        let acked = acknowledged(&cluster);
        let head_before = ha_head(&cluster);
        let ha = cluster.pg_ha.as_mut().unwrap();
        archive_current_segment(&mut primary_client(ha).unwrap());
        ha.lose_everything();
        let started = Instant::now();
        ha.begin_restore(&backup, "latest");
        let primary_up = ha.start_second();
        let (primary_ms, restore_ms) = (ms_between(started, primary_up), started.elapsed().as_millis() as u64);
        let chain = primary_chain(ha).unwrap();
        assert_restored_whole(&chain, head_before, &acked);
        let (restarted, restarted_at) = (Instant::now(), now_ms());
        for node in &mut cluster.nodes {
            node.proc.start();
        }
        let ha = cluster.pg_ha.as_ref().unwrap();
        let production = wait_for(Duration::from_secs(60), "a block committed after the restore", || {
            first_block_after(ha, restarted_at).map(|_| restarted.elapsed())
        });
        wait_for(Duration::from_secs(60), "5 blocks after the restore", || {
            (ha_head(&cluster) >= head_before + 5).then_some(())
        });
        // Every acknowledged block (before and after) on the primary, no fork.
        check_nothing_lost(&cluster, "patroni-restore-latest");
        eprintln!(
            "patroni-restore-latest: restored primary up in {primary_ms} ms, both members in {restore_ms} ms, \
             with all {} acknowledged blocks (head {head_before}); a block {} ms after the nodes restarted",
            acked.len(),
            production.as_millis()
        );
        report["latest"] = json!({
            "acknowledged": acked.len(), "restored_head": head_before, "blocks_lost": 0,
            "primary_up_ms": primary_ms, "restore_ms": restore_ms,
            "restart_to_block_ms": production.as_millis() as u64,
        });
    }
    if older {
        let head_before = ha_head(&cluster);
        let ha = cluster.pg_ha.as_mut().unwrap();
        ha.lose_everything();
        let started = Instant::now();
        ha.begin_restore(&backup, "base");
        // From the start of the restore: the nodes see the restored
        // database as soon as it accepts connections.
        let went_back = wait_all_went_back(&cluster, started);
        let ha = cluster.pg_ha.as_mut().unwrap();
        let primary_up = ha.start_second();
        let (primary_ms, restore_ms) = (ms_between(started, primary_up), started.elapsed().as_millis() as u64);
        let restored = ha_head(&cluster);
        assert!(restored < head_before, "the older restore holds {restored} blocks, not fewer than {head_before}");
        assert_nothing_committed(restored, || ha_head(&cluster));
        eprintln!(
            "patroni-restore-older: every node stopped {} ms after the restore began; restored primary up in \
             {primary_ms} ms (both members {restore_ms} ms) at block {restored} under nodes that saw {head_before}",
            went_back.as_millis()
        );
        report["older"] = json!({
            "seen_head": head_before, "restored_head": restored, "primary_up_ms": primary_ms, "restore_ms": restore_ms,
            "all_went_back_ms": went_back.as_millis() as u64,
        });
    }
    write_report("patroni_backup_restore", report);
}

/// The head on the Patroni cluster's primary (0 while none answers).
fn ha_head(cluster: &Cluster) -> u64 {
    let chain = cluster.pg_ha.as_ref().and_then(primary_chain).unwrap_or_default();
    chain.last().map_or(0, |block| block.0)
}

/// A verified base backup (scripts/pg-backup.sh) of the server on `port`,
/// as `user`, into `backup`.
fn take_backup(port: u16, user: &str, backup: &Path) {
    let status = Command::new(script("pg-backup.sh"))
        .arg(format!("127.0.0.1:{port}"))
        .arg(backup)
        .env("PG_BACKUP_USER", user)
        .status()
        .unwrap();
    assert!(status.success(), "pg-backup.sh failed");
}

/// Forces a WAL segment switch on the server `client` is connected to
/// (the primary) and waits until its archiver copied that segment.
fn archive_current_segment(client: &mut postgres::Client) {
    let segment: String = client.query_one("SELECT pg_walfile_name(pg_switch_wal())", &[]).unwrap().get(0);
    wait_for(Duration::from_secs(30), "the last WAL segment archived", || {
        let row = client.query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[]).ok()?;
        let archived: Option<String> = row.get(0);
        archived.filter(|a| *a >= segment)
    });
}

/// A restore to the latest point holds the whole chain the nodes saw
/// (`head_before` blocks, continuous) and every block they acknowledged,
/// hash for hash.
fn assert_restored_whole(chain: &[(u64, String, String)], head_before: u64, acked: &BTreeMap<u64, String>) {
    assert_continuous(chain);
    assert_eq!(chain.len() as u64, head_before, "the restore to the latest point lost blocks");
    for (number, hash) in acked {
        assert_eq!(chain.get(*number as usize - 1).map(|b| &b.1), Some(hash), "acknowledged block {number} lost");
    }
}

/// Waits until every node says 503 "the database's head went back" (the
/// head-regression guard); returns how long after `since` that was.
fn wait_all_went_back(cluster: &Cluster, since: Instant) -> Duration {
    wait_for(Duration::from_secs(60), "every node reports the database went back", || {
        let all = cluster
            .nodes
            .iter()
            .all(|node| node.health().is_some_and(|(code, line)| code == 503 && line.contains("went back")));
        all.then(|| since.elapsed())
    })
}

fn ms_between(from: Instant, to: Instant) -> u64 {
    to.duration_since(from).as_millis() as u64
}

/// Nothing is committed for 5 s: the head stays at `restored`.
fn assert_nothing_committed(restored: u64, head: impl Fn() -> u64) {
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(head(), restored, "a block was committed after the database went back");
}

/// The leader PostgreSQL lost (SIGKILL, its data moved to `lost_name`)
/// and restored from `backup` and the archive to `target`.
fn restore(cluster: &mut Cluster, backup: &Path, target: &str, lost_name: &str) {
    cluster.postgres.proc.kill();
    let pg_dir = cluster.dir.join("pg");
    std::fs::rename(pg_dir.join("pgdata"), pg_dir.join(lost_name)).unwrap();
    let status = Command::new(script("pg-restore.sh"))
        .arg(backup)
        .arg(cluster.dir.join("wal-archive"))
        .arg(pg_dir.join("pgdata"))
        .arg(target)
        .status()
        .unwrap();
    assert!(status.success(), "pg-restore.sh failed");
    cluster.postgres.proc.start();
    cluster.postgres.wait_ready();
    wait_for(Duration::from_secs(60), "the restored server out of recovery", || {
        let row = cluster.postgres.client().query_one("SELECT pg_is_in_recovery()", &[]).ok()?;
        (!row.get::<_, bool>(0)).then_some(())
    });
}
