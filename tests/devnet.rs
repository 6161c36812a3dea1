//! `make run`'s and `make run-ha`'s devnets started and torn down for real:
//! scripts/devnet-smoke.sh runs scripts/devnet.sh on free ports in a
//! temporary state directory, checks blocks and transactions flow and
//! exactly one leader leads, and that nothing it started is left running
//! afterwards; scripts/devnet-ha-smoke.sh does the same for the replicated
//! topology and walks the README tour's "kill the PostgreSQL primary" and
//! "kill the Redis master".

// Test code: a failed unwrap, expect or panic is a failed test, and casts
// of measured figures are checked by the figures themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The two devnets run one at a time: together they would share the two cores between seven
/// geths, and each smoke test bounds how long a failover may take.
static ONE_DEVNET_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn the_devnet_starts_produces_and_leaves_nothing_behind() {
    let _one = ONE_DEVNET_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let output = Command::new(support::script("devnet-smoke.sh"))
        .env("CLNODE_BIN", support::clnode_binary())
        .env("DEVNET_BUILD", "0")
        .env("SMOKE_DURATION_S", "80")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "devnet smoke failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("PASS") || stderr.contains("PASS"), "no PASS line:\n{stdout}\n{stderr}");
}

#[test]
fn the_ha_devnet_survives_the_tour_and_leaves_nothing_behind() {
    let _one = ONE_DEVNET_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let output = Command::new(support::script("devnet-ha-smoke.sh"))
        .env("CLNODE_BIN", support::clnode_binary())
        .env("DEVNET_BUILD", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run-ha smoke failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("devnet-ha-smoke: PASS"), "no PASS line:\n{stdout}\n{stderr}");
}

/// The status table's pure parts (scripts/lib/devnet_status.py): cells, and the HEALTH reason
/// fitted to the terminal at a word boundary.
#[test]
fn the_devnet_status_table_fits_reasons_at_word_boundaries() {
    let output = Command::new("python3")
        .args(["-m", "unittest", "-v", "test_devnet_status"])
        .current_dir(support::script("lib"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python unit tests failed:\n{stderr}");
}
