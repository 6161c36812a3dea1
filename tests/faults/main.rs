//! Fault injection: every case of the failure matrix
//! (docs/FAULTS.md; the matrix numbers 1-13 are quoted per case) on real
//! Redis, PostgreSQL, geth and clnode processes on loopback, under a
//! transaction load, with the same outside checks after every case:
//!
//! - no height with two different hashes, in the leader PostgreSQL, in
//!   every member PostgreSQL and on every execution client;
//! - no gap, every block linked to its parent;
//! - no term acquired by two nodes (every leader-mode node's "acquired
//!   term" lines);
//! - no execution client's canonical head is a block that is not committed;
//! - a committed block never changes or disappears;
//! - every execution client and every member catches up with the chain;
//! - every transaction in a committed block keeps its receipt, in that block,
//!   on every execution client;
//! - no clnode process exits on its own.
//!
//! `cargo test` runs the quick subset (a few minutes); `make faults`
//! (`CLNODE_FAULTS=full`) runs everything many times and writes the figures
//! to target/faults-report.json. `CLNODE_FAULT_SEED=N` replays the random
//! choices of a run (the seed is printed at the start of every test).
//! `CLNODE_FAULT_CASES=name1,name2` runs only the named cases (`selected`).
//! Tests in this crate run one at a time whatever `--test-threads` says.
//!
//! The crate, by concept: `cluster` (the fault cluster and the checks run
//! after every case), `load` (the transaction load), `ledger` (the committed
//! chain as seen from outside), `report` (figures and the report file),
//! `cases` (the failure matrix), `partitions` (one link of one node cut,
//! blackholed or one-way), `startup` (#13) and `random` (the randomized
//! mode). The processes, the proxy, the PRNG and the percentile
//! are shared with the other tests, in tests/support.

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

#[path = "../support/mod.rs"]
mod support;

mod acks;
mod backup;
mod cases;
mod cluster;
mod ledger;
mod load;
mod partitions;
mod patroni;
mod random;
mod report;
mod sentinel;
mod startup;

// Each module takes the others' items with `use crate::*` (and the
// harness's with `use crate::support::*`).
use cluster::*;
use ledger::*;
use load::*;
use report::*;

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Settings

/// The lease every leader-mode node runs with (the defaults, pinned).
pub const LEASE_TTL_MS: i64 = 2000;
pub const LEADER_FLAGS: [&str; 8] = [
    "--lease-ttl",
    "2s",
    "--lease-renew-interval",
    "400ms",
    "--lease-safety-margin",
    "300ms",
    // Block time may run ahead of the clock (as in the other integration
    // tests), so the chain grows with the load instead of one block a second.
    "--max-timestamp-lead",
    "60m",
];
/// Members: short long polls (a stopped source costs wait + 10 s) and small
/// pages (so a catch-up spans several batches).
pub const MEMBER_FLAGS: [&str; 4] = ["--sync-wait", "1s", "--sync-batch-limit", "10"];
/// Transactions per second sent to each leader-mode node's geth.
pub const LOAD_RATE: u32 = 2;
pub const STEPS: [&str; 5] = ["build", "payload", "execute", "commit", "canonical"];
pub const PROBE: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Depth {
    Quick,
    Full,
}

pub fn depth() -> Depth {
    match std::env::var("CLNODE_FAULTS").as_deref() {
        Ok("full") => Depth::Full,
        Ok("quick") | Ok("") | Err(_) => Depth::Quick,
        Ok(other) => panic!("CLNODE_FAULTS={other:?}: expected quick or full"),
    }
}

pub fn base_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("CLNODE_FAULT_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("CLNODE_FAULT_SEED={text:?}: expected a number"))
        }
        Err(_) => {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
            (nanos ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000_000_000
        }
    })
}

/// The generator of one test: its choices follow from the run's seed.
pub fn rng_for_test(name: &str) -> support::Rng {
    support::Rng::for_name(base_seed(), name)
}

/// One test at a time: each starts a whole cluster of its own.
pub fn serial() -> MutexGuard<'static, ()> {
    static SUITE: Mutex<()> = Mutex::new(());
    SUITE.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

pub fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

// ---------------------------------------------------------------------------
// Choosing cases: CLNODE_FAULT_CASES

/// Every case name `CLNODE_FAULT_CASES` accepts, and whether the quick run
/// has it. A matrix case is named by its kind (`sigkill` selects every
/// `sigkill#i`) or by its full name (`sigkill#1`); `startup` is the
/// `startup_faults` test, `random` the randomized mode.
pub const CASES: [(&str, bool); 50] = [
    ("bad-http", true),
    ("sigkill", true),
    ("sigterm", true),
    ("frozen-build", true),
    ("frozen-payload", true),
    ("frozen-execute", true),
    ("frozen-commit", true),
    ("frozen-canonical", true),
    ("sigstop", true),
    ("sigkill-at-build", true),
    ("sigkill-at-payload", true),
    ("sigkill-at-execute", true),
    ("sigkill-at-commit", true),
    ("sigkill-at-canonical", true),
    ("redis-kill", true),
    ("redis-stop", false),
    ("redis-wipe", false),
    ("postgres-kill", true),
    ("postgres-stop", true),
    ("leader-geth-kill", true),
    ("leader-geth-stop", false),
    ("leader-geth-restart", true),
    ("standby-far-behind", true),
    ("member-killed-timing", false),
    ("member-killed-frozen-el", true),
    ("member-killed-power-loss", false),
    ("member-services", true),
    ("sync-sources", true),
    ("followed-node-dies", true),
    // Partitions (tests/faults/partitions.rs, `PARTITIONS`).
    ("partition-leader-postgres-cut", true),
    ("partition-leader-postgres-blackhole", true),
    ("partition-leader-postgres-oneway", false),
    ("partition-leader-redis-cut", true),
    ("partition-leader-redis-blackhole", true),
    ("partition-leader-redis-oneway", false),
    ("partition-leader-el-cut", false),
    ("partition-leader-el-blackhole", true),
    ("partition-standby-postgres-cut", true),
    ("startup", true),
    // Redis Sentinel (tests/faults/sentinel.rs).
    ("redis-sentinel-kill", true),
    ("redis-sentinel-stop", true),
    // Patroni (tests/faults/patroni.rs).
    ("pg-primary-kill", true),
    ("pg-primary-stop", true),
    ("pg-cut", true),
    ("pg-switchover", true),
    ("pg-async-kill", true),
    // Backups and restores (tests/faults/backup.rs).
    ("restore-latest", true),
    ("restore-older", true),
    ("patroni-restore-latest", false),
    ("patroni-restore-older", false),
];

/// The names in `CLNODE_FAULT_CASES` (`None`: every case), checked against
/// `CASES` and `random` so a typo fails instead of running nothing.
pub fn chosen_cases() -> Option<&'static [String]> {
    static CHOSEN: OnceLock<Option<Vec<String>>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| {
            let text = std::env::var("CLNODE_FAULT_CASES").ok()?;
            let names: Vec<String> =
                text.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_owned).collect();
            for name in &names {
                let kind = case_kind(name);
                assert!(
                    kind == "random" || CASES.iter().any(|(known, _)| *known == kind),
                    "CLNODE_FAULT_CASES names {name:?}, which is no case; the cases: {}, random",
                    CASES.map(|(known, _)| known).join(", ")
                );
            }
            Some(names)
        })
        .as_deref()
}

/// The kind of a case: its name up to `#` (`sigkill#1` -> `sigkill`).
pub fn case_kind(name: &str) -> &str {
    name.split(['#', ' ']).next().unwrap_or(name)
}

/// Whether case `name` runs: always without `CLNODE_FAULT_CASES`, else when
/// the list holds its full name or its kind.
pub fn selected(name: &str) -> bool {
    chosen_cases().is_none_or(|chosen| chosen.iter().any(|c| c == name || c == case_kind(name)))
}

/// Whether `CLNODE_FAULT_CASES` names this case (by kind or name) itself:
/// such a case runs even where the quick run would not have it.
pub fn named(name: &str) -> bool {
    chosen_cases().is_some_and(|chosen| chosen.iter().any(|c| c == name || case_kind(c) == name))
}

/// Whether case `kind` runs in this run: selected, and in the quick run
/// only if the quick run has it (`CASES`) or `CLNODE_FAULT_CASES` names it.
pub fn runs(kind: &str) -> bool {
    selected(kind) && (depth() == Depth::Full || CASES.iter().any(|(c, quick)| *c == kind && *quick) || named(kind))
}

/// The variants of a case to run: all of `full` in the full run; in the
/// quick run those of `quick`, and any of `full` that `CLNODE_FAULT_CASES` names.
pub fn variants<'a>(full: &[&'a str], quick: &[&'a str], name: impl Fn(&str) -> String) -> Vec<&'a str> {
    full.iter().copied().filter(|v| depth() == Depth::Full || quick.contains(v) || named(&name(v))).collect()
}

// ---------------------------------------------------------------------------
// The tests (their bodies are in the modules)

/// Every case of the failure matrix (except #13, below) on one cluster:
/// Redis, the leader PostgreSQL, three leader-mode nodes with their geths,
/// two members with their geths and databases, under load.
#[test]
fn failure_matrix() {
    cases::failure_matrix();
}

/// #13: bad flags, an unreadable or malformed JWT secret and a taken port
/// give one line and a non-zero exit; services that are not up yet are
/// waited for, and /health says which one is missing meanwhile.
#[test]
fn startup_faults() {
    startup::startup_faults();
}

/// Redis behind three sentinels: the master SIGKILLed and SIGSTOPped in
/// turn under load; production resumes, one block per height.
#[test]
fn redis_sentinel_failovers() {
    sentinel::redis_sentinel_failovers();
}

/// PostgreSQL replicated by Patroni: the primary killed, hung, cut from
/// the leader, switched over; an asynchronous standby promoted without the
/// last blocks.
#[test]
fn postgres_failovers() {
    patroni::postgres_failovers();
}

/// WAL archiving and a base backup; the database restored to the latest
/// point (nothing lost) and to an older one (every node stops loudly).
#[test]
fn backup_restore_drills() {
    backup::backup_restore_drills();
}

/// The same on a Patroni cluster: the primary archives, a base backup
/// under load, a switchover, the whole cluster lost and bootstrapped anew
/// from the backup (latest point: nothing lost; older: every node stops).
#[test]
fn patroni_restore_drills() {
    backup::patroni_restore_drills();
}

/// In the spirit of Arbitrum Nitro's competing-coordinator test: leader-mode
/// nodes SIGKILLed, SIGSTOPped and resumed, SIGTERMed, restarted (some with
/// a failpoint armed), their geths restarted, members killed, at random for
/// a set time under load; safety checked all along, everything at the end.
#[test]
fn randomized_competing_leaders() {
    random::randomized_competing_leaders();
}
