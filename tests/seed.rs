//! Coming from the seed (the Go tutorial's `03-member-nodes`, which clnode
//! replaces node by node): its flags and variables are taken or refused
//! with one line, its PostgreSQL is migrated in place or refused untouched,
//! and its wire (msgpack records) is followed and served, checked against
//! tools/seedwire (a Go program of this project built on go-ethereum's
//! engine types and vmihailenco/msgpack/v5, as the seed is).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod support;

use support::*;

#[test]
fn the_seeds_flags_and_variables_are_refused_with_one_line_naming_clnodes_equivalent() {
    let jwt = "ab".repeat(32);
    let base = ["--instance-id", "leader-1", "--jwt-secret", &jwt, "--insecure-unsigned-records"];
    let with = |more: &[&'static str]| base.iter().copied().chain(more.iter().copied()).collect::<Vec<&str>>();
    type Case<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (
            with(&["--evm-build-delay-empty-block", "1m"]),
            &[],
            "--evm-build-delay-empty-block is the seed's flag, not clnode's: clnode commits no empty block",
        ),
        (
            with(&["--tx-pool-polling-interval", "5ms"]),
            &[],
            "--tx-pool-polling-interval is the seed's flag, not clnode's: use --idle-poll-interval",
        ),
        (
            with(&[]),
            &[("EVM_BUILD_DELAY_EMPTY_BLOCK", "banana")],
            "EVM_BUILD_DELAY_EMPTY_BLOCK is the seed's variable (--evm-build-delay-empty-block), not clnode's",
        ),
        (
            with(&[]),
            &[("TX_POOL_POLLING_INTERVAL", "5ms")],
            "TX_POOL_POLLING_INTERVAL is the seed's variable (--tx-pool-polling-interval), not clnode's",
        ),
        // The seed's own run line: it defaulted to a published JWT secret.
        (
            vec!["--instance-id", "leader-1", "--mode", "leader", "--health-addr", ":8080", "--api-addr", ":8090"],
            &[],
            "an Engine API secret is required: --jwt-secret-file PATH (or JWT_SECRET_FILE), the file your execution \
             client reads (geth --authrpc.jwtsecret); clnode has no built-in secret, unlike the seed",
        ),
    ];
    for (args, env, expected) in cases {
        let (code, _, stderr) = run_clnode_env(&args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: not one line: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
    }
}
