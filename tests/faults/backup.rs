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

use std::process::Command;
use std::time::Duration;

use serde_json::json;

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
    let server = format!("127.0.0.1:{}", cluster.postgres.port);
    let status = Command::new(script("pg-backup.sh")).arg(&server).arg(&backup).status().unwrap();
    assert!(status.success(), "pg-backup.sh failed");
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
        archive_current_segment(&cluster);
        restore(&mut cluster, &backup, "latest", "pgdata.lost-1");
        let chain = stored_chain(&cluster.postgres);
        assert_continuous(&chain);
        assert_eq!(chain.len() as u64, head_before, "the restore to the latest point lost blocks");
        for (number, hash) in &acked {
            assert_eq!(chain.get(*number as usize - 1).map(|b| &b.1), Some(hash), "acknowledged block {number} lost");
        }
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
        wait_for(Duration::from_secs(60), "every node reports the database went back", || {
            cluster
                .nodes
                .iter()
                .all(|node| node.health().is_some_and(|(code, line)| code == 503 && line.contains("went back")))
                .then_some(())
        });
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(cluster.head().0, restored, "a block was committed after the database went back");
        eprintln!("restore-older: restored to block {restored} under nodes that saw {head_before}; every node stopped");
        report["older"] = json!({"seen_head": head_before, "restored_head": restored});
    }
    write_report("backup_restore", report);
}

/// Forces a WAL segment switch and waits until the archiver copied it.
fn archive_current_segment(cluster: &Cluster) {
    let mut client = cluster.postgres.client();
    let segment: String = client.query_one("SELECT pg_walfile_name(pg_switch_wal())", &[]).unwrap().get(0);
    wait_for(Duration::from_secs(30), "the last WAL segment archived", || {
        let row = client.query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[]).ok()?;
        let archived: Option<String> = row.get(0);
        archived.filter(|a| *a >= segment)
    });
}

/// The leader PostgreSQL lost (SIGKILL, its data moved to `lost_name`)
/// and restored from `backup` and the archive to `target`.
fn restore(cluster: &mut Cluster, backup: &std::path::Path, target: &str, lost_name: &str) {
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
