//! The cases of the failure matrix (numbers 1-12; #13 is in `startup`),
//! and the test that runs them on one cluster.

use std::collections::BTreeSet;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;
use crate::*;

impl FaultCluster {
    /// #1: SIGKILL the producing leader at a random moment; a standby commits the next block.
    pub fn sigkill_leader(&mut self, label: &str) -> Option<i64> {
        let (leader, term) = self.wait_producing_leader(Duration::from_secs(60));
        sleep(self.rng.millis(0, 1000));
        let killed_at = now_ms();
        self.nodes[leader].proc.kill();
        let (number, new_term, at) =
            self.wait_block_with_term_above(term, Duration::from_secs(30), "a standby to commit after SIGKILL");
        let failover = at - killed_at;
        eprintln!(
            "    {label}: SIGKILL {} (term {term}) -> block {number} by term {new_term} after {failover} ms",
            self.nodes[leader].id
        );
        assert!(failover < 20_000, "SIGKILL failover took {failover} ms");
        self.figures.failover("sigkill", failover);
        self.nodes[leader].proc.start();
        self.wait_follows(leader, label);
        Some(at)
    }

    /// #3: SIGTERM the producing leader: clean exit, lease released at once.
    pub fn sigterm_leader(&mut self, label: &str) -> Option<i64> {
        let (leader, term) = self.wait_producing_leader(Duration::from_secs(60));
        sleep(self.rng.millis(0, 1000));
        let log_from = self.nodes[leader].proc.log_len();
        let stopped_at = now_ms();
        let code = self.nodes[leader].proc.terminate(Duration::from_secs(15));
        assert_eq!(code, Some(0), "{label}: a SIGTERMed leader exits with 0");
        let (number, new_term, at) =
            self.wait_block_with_term_above(term, Duration::from_secs(30), "a standby to commit after SIGTERM");
        let failover = at - stopped_at;
        eprintln!(
            "    {label}: SIGTERM {} (term {term}) -> block {number} by term {new_term} after {failover} ms",
            self.nodes[leader].id
        );
        assert!(failover < 20_000, "SIGTERM failover took {failover} ms");
        let log = self.nodes[leader].proc.log_since(log_from);
        assert!(
            log.contains(&format!("lease: released term {term}")),
            "{label}: the lease was not released on SIGTERM:\n{log}"
        );
        self.figures.failover("sigterm", failover);
        self.nodes[leader].proc.start();
        self.wait_follows(leader, label);
        Some(at)
    }

    /// Restarts standby `x` with the failpoint armed at `step` and hands it
    /// the lease (the other standbys are held with SIGSTOP meanwhile, the
    /// leader leaves with SIGTERM and comes back). Returns x's term.
    pub fn arm_and_hand_over(&mut self, x: usize, step: &str) -> u64 {
        let (leader, _) = self.wait_producing_leader(Duration::from_secs(60));
        assert_ne!(leader, x);
        self.nodes[x].proc.kill();
        self.nodes[x].proc.start_with_env(&[("CLNODE_FAILPOINT_STOP_AT", step)]);
        self.wait_standby_ready(x, Duration::from_secs(60));
        let held: Vec<usize> = (0..self.nodes.len()).filter(|&i| i != x && i != leader).collect();
        for &i in &held {
            self.nodes[i].proc.signal("STOP");
        }
        let code = self.nodes[leader].proc.terminate(Duration::from_secs(15));
        assert_eq!(code, Some(0), "the leader exits with 0 on SIGTERM");
        let x_id = self.nodes[x].id.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let term = loop {
            let (term, holder) = self.fence();
            if holder == x_id {
                break term;
            }
            assert!(Instant::now() < deadline, "{x_id} did not take the lease (fence: term {term}, {holder})");
            sleep(Duration::from_millis(10));
        };
        self.nodes[leader].proc.start();
        for &i in &held {
            self.nodes[i].proc.signal("CONT");
        }
        term
    }

    pub fn wait_self_stopped(&self, x: usize, step: &str) -> i64 {
        let node = &self.nodes[x];
        poll(
            Duration::from_secs(30),
            Duration::from_millis(5),
            &format!("{} to stop itself at {step}", node.id),
            || node.proc.is_stopped().then(now_ms),
        );
        let log = node.proc.log_text();
        assert!(
            log.contains(&format!("failpoint: stopping the process at step {step}")),
            "no failpoint line in {}",
            node.id
        );
        now_ms()
    }

    /// #2: the leader freezes itself at `step` (failpoint); a standby takes
    /// over; on SIGCONT the old leader commits nothing with its old term
    /// (at `commit` its attempt is refused by the fence) and follows.
    pub fn frozen_at_step(&mut self, step: &str, label: &str) -> Option<i64> {
        let (leader, _) = self.wait_producing_leader(Duration::from_secs(60));
        let candidates = self.standbys(leader);
        let x = self.rng.pick(&candidates);
        let term = self.arm_and_hand_over(x, step);
        let frozen_at = self.wait_self_stopped(x, step);
        let committed_in_term = self.blocks_with_term(term);
        let (number, new_term, at) = self.wait_block_with_term_above(
            term,
            Duration::from_secs(30),
            "a standby to commit while the leader is frozen",
        );
        self.figures.failover("sigstop_takeover", at - frozen_at);
        // Frozen well past its lease, then resumed.
        let until = frozen_at + LEASE_TTL_MS + 500 + self.rng.below(1500) as i64;
        sleep(Duration::from_millis(until.saturating_sub(now_ms()).max(0) as u64));
        let log_from = self.nodes[x].proc.log_len();
        self.nodes[x].proc.signal("CONT");
        let resumed_at = now_ms();
        self.wait_follows(x, label);
        let refusals = self.nodes[x].metric_within("clnode_commit_refusals_total", PROBE).expect("metrics");
        let log = self.nodes[x].proc.log_since(log_from);
        eprintln!(
            "    {label}: {} frozen at {step} in term {term} for {} ms; block {number} by term {new_term} {} ms after the freeze; refusals {refusals}",
            self.nodes[x].id,
            resumed_at - frozen_at,
            at - frozen_at
        );
        assert_eq!(
            self.blocks_with_term(term),
            committed_in_term,
            "{label}: the frozen leader committed with its old term {term}"
        );
        match step {
            "commit" => {
                assert_eq!(refusals, 1.0, "{label}: the stale commit must be refused exactly once:\n{log}");
                assert!(
                    log.contains(&format!("with term {term} refused: the fence holds term")),
                    "{label}: no fenced refusal in the log:\n{log}"
                );
            }
            _ => assert_eq!(refusals, 0.0, "{label}: at step {step} no commit may even be attempted:\n{log}"),
        }
        if matches!(step, "payload" | "execute") {
            assert!(log.contains(&format!("lease for term {term} lapsed before committing")), "{label}: {log}");
        }
        self.check_safety(label);
        self.figures.frozen_iterations += 1;
        Some(resumed_at)
    }

    /// #2: a plain SIGSTOP of the producing leader at a random moment.
    pub fn frozen_external(&mut self, label: &str) -> Option<i64> {
        let (leader, term) = self.wait_producing_leader(Duration::from_secs(60));
        sleep(self.rng.millis(0, 1000));
        let refusals_before = self.nodes[leader].metric_within("clnode_commit_refusals_total", PROBE).expect("metrics");
        let log_from = self.nodes[leader].proc.log_len();
        self.nodes[leader].proc.signal("STOP");
        let frozen_at = now_ms();
        let (_, _, at) = self.wait_block_with_term_above(
            term,
            Duration::from_secs(30),
            "a standby to commit while the leader is stopped",
        );
        self.figures.failover("sigstop_takeover", at - frozen_at);
        sleep(self.rng.millis(0, 1500));
        let committed_in_term = self.blocks_with_term(term);
        self.nodes[leader].proc.signal("CONT");
        let resumed_at = now_ms();
        self.wait_follows(leader, label);
        let refusals =
            self.nodes[leader].metric_within("clnode_commit_refusals_total", PROBE).expect("metrics") - refusals_before;
        let log = self.nodes[leader].proc.log_since(log_from);
        assert!(refusals == 0.0 || refusals == 1.0, "{label}: {refusals} refusals after one pause:\n{log}");
        if refusals == 1.0 {
            assert!(log.contains(&format!("with term {term} refused")), "{label}: {log}");
        }
        assert_eq!(
            self.blocks_with_term(term),
            committed_in_term,
            "{label}: the stopped leader committed with its old term {term}"
        );
        eprintln!(
            "    {label}: {} stopped {} ms (term {term}); refusals {refusals}",
            self.nodes[leader].id,
            resumed_at - frozen_at
        );
        self.figures.frozen_iterations += 1;
        Some(resumed_at)
    }

    /// #1 at a chosen step: the leader freezes at `step`, then is SIGKILLed;
    /// the block in flight is committed once or never.
    pub fn sigkill_at_step(&mut self, step: &str, label: &str) -> Option<i64> {
        let (leader, _) = self.wait_producing_leader(Duration::from_secs(60));
        let candidates = self.standbys(leader);
        let x = self.rng.pick(&candidates);
        let term = self.arm_and_hand_over(x, step);
        self.wait_self_stopped(x, step);
        let killed_at = now_ms();
        self.nodes[x].proc.kill();
        let in_term = self.blocks_with_term(term);
        let (number, _, at) =
            self.wait_block_with_term_above(term, Duration::from_secs(30), "a standby to commit after the kill");
        eprintln!(
            "    {label}: {} killed at {step} (term {term}, {in_term} blocks) -> block {number} after {} ms",
            self.nodes[x].id,
            at - killed_at
        );
        self.figures.failover("sigkill_at_step", at - killed_at);
        if step == "canonical" {
            assert!(in_term >= 1, "{label}: at step canonical the block was committed");
        }
        self.nodes[x].proc.start();
        self.wait_follows(x, label);
        Some(at)
    }

    /// #4: Redis killed (or stopped, or wiped) for a while: no block is
    /// committed once the lease has lapsed; production resumes afterwards.
    pub fn redis_outage(&mut self, how: &str, label: &str) -> Option<i64> {
        self.wait_producing_leader(Duration::from_secs(60));
        let down_at = now_ms();
        match how {
            "kill" => self.redis.proc.kill(),
            "stop" => self.redis.proc.signal("STOP"),
            "wipe" => {
                self.redis.proc.kill();
                std::fs::remove_dir_all(self.dir.join("redis")).unwrap();
            }
            _ => unreachable!(),
        }
        let mut health_says_redis = false;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            for node in &self.nodes {
                if let Some((_, line)) = node.health_within(Duration::from_millis(500)) {
                    health_says_redis |= line.to_lowercase().contains("redis");
                }
            }
            sleep(Duration::from_millis(200));
        }
        let up_at = now_ms();
        match how {
            "stop" => self.redis.proc.signal("CONT"),
            _ => {
                self.redis.proc.start();
                self.redis.wait_ready();
            }
        }
        self.refresh(label);
        let late: Vec<(u64, i64)> = self
            .ledger
            .blocks
            .iter()
            .filter(|b| b.at_ms > down_at + LEASE_TTL_MS + 500 && b.at_ms < up_at)
            .map(|b| (b.number, b.at_ms - down_at))
            .collect();
        assert!(
            late.is_empty(),
            "{label}: blocks committed without a valid lease (number, ms after Redis went): {late:?}"
        );
        if !health_says_redis {
            self.figures.note(format!(
                "Redis {how} for 5 s: no leader-mode node's /health mentioned Redis (all said OK while nobody could lead)"
            ));
        }
        let (number, term, at) =
            self.wait_block_after(up_at, Duration::from_secs(60), "production after Redis returned");
        eprintln!(
            "    {label}: Redis {how} for {} ms; block {number} (term {term}) {} ms after it returned",
            up_at - down_at,
            at - up_at
        );
        Some(at)
    }

    /// #5: the leader PostgreSQL killed (or stopped) for a while: nothing
    /// becomes canonical on any leader-mode geth without being stored.
    pub fn postgres_outage(&mut self, how: &str, label: &str) -> Option<i64> {
        let (leader, _) = self.wait_producing_leader(Duration::from_secs(60));
        self.db = None;
        let down_at = now_ms();
        match how {
            "kill" => self.postgres.proc.kill(),
            "stop" => signal_tree(&self.postgres.proc, "STOP"),
            _ => unreachable!(),
        }
        let mut seen: BTreeSet<(u64, String)> = BTreeSet::new();
        let mut health_says_database = false;
        let until = Instant::now() + Duration::from_secs(5);
        let mut probes = 0;
        while Instant::now() < until {
            for el in &self.els {
                if let Some(head) = el_head(el) {
                    seen.insert(head);
                }
            }
            probes += 1;
            if probes % 5 == 0 {
                if let Some((status, line)) = self.nodes[leader].health_within(Duration::from_millis(500)) {
                    health_says_database |= status == 503 && line.contains("database");
                }
            }
            sleep(Duration::from_millis(50));
        }
        let up_at = now_ms();
        match how {
            "stop" => signal_tree(&self.postgres.proc, "CONT"),
            _ => {
                self.postgres.proc.start();
                self.postgres.wait_ready();
            }
        }
        let head = self.refresh(label);
        for (number, hash) in &seen {
            assert!(
                *number <= head && self.ledger.hash(*number) == hash,
                "{label}: a geth made block {number} ({hash}) canonical without it being committed"
            );
        }
        if how == "kill" {
            assert!(health_says_database, "{label}: the leader's /health never said the database was down");
        }
        let (number, _, at) =
            self.wait_block_after(up_at, Duration::from_secs(60), "production after PostgreSQL returned");
        eprintln!(
            "    {label}: PostgreSQL {how} for {} ms; {} geth heads seen, all committed; block {number} {} ms after",
            up_at - down_at,
            seen.len(),
            at - up_at
        );
        Some(at)
    }

    /// #6: the leader's geth down, restarted, or hung.
    pub fn leader_el_outage(&mut self, how: &str, label: &str) -> Option<i64> {
        let (leader, term) = self.wait_producing_leader(Duration::from_secs(60));
        let down_at = now_ms();
        let recovered = match how {
            "kill" => {
                self.els[leader].proc.kill();
                let mut health_says_el = false;
                let (number, _, at) = {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        if let Some((503, line)) = self.nodes[leader].health_within(Duration::from_millis(500)) {
                            health_says_el |= line.contains("execution client");
                        }
                        if let Some(block) = self.first_block("term > $1", term as i64) {
                            break block;
                        }
                        assert!(Instant::now() < deadline, "{label}: nobody took over from a leader without its geth");
                        sleep(Duration::from_millis(50));
                    }
                };
                eprintln!("    {label}: geth{leader} killed; block {number} by another node after {} ms", at - down_at);
                self.figures.failover("el_down_takeover", at - down_at);
                assert!(
                    health_says_el,
                    "{label}: /health of {} never named the execution client",
                    self.nodes[leader].id
                );
                sleep(Duration::from_millis(500));
                self.els[leader].proc.start();
                self.els[leader].wait_ready();
                at
            }
            "restart" => {
                self.els[leader].restart();
                let (number, _, at) =
                    self.wait_block_after(now_ms(), Duration::from_secs(60), "production after the geth restart");
                eprintln!("    {label}: geth{leader} restarted; block {number} {} ms after the kill", at - down_at);
                at
            }
            "stop" => {
                self.els[leader].proc.signal("STOP");
                let (number, _, at) = self.wait_block_with_term_above(
                    term,
                    Duration::from_secs(120),
                    "a takeover from a leader whose geth hangs",
                );
                eprintln!(
                    "    {label}: geth{leader} stopped; block {number} by another node after {} ms",
                    at - down_at
                );
                self.figures.failover("el_hang_takeover", at - down_at);
                self.els[leader].proc.signal("CONT");
                at
            }
            _ => unreachable!(),
        };
        self.receipts_checked.remove(&format!("geth{leader}"));
        // Leading again or following: either way healthy and at the head.
        let node = &self.nodes[leader];
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while last.as_ref().is_none_or(|(status, _)| *status != 200) {
            if let Some(answer) = node.health_within(PROBE) {
                last = Some(answer);
            }
            assert!(
                Instant::now() < deadline,
                "{label}: {} recovered but /health still says {:?} after 60 s",
                node.id,
                last.as_ref().map(|(_, line)| line.trim())
            );
            sleep(Duration::from_millis(100));
        }
        let head = self.refresh(label);
        let hash = self.ledger.hash(head).to_owned();
        let el = &self.els[leader];
        poll(
            Duration::from_secs(60),
            Duration::from_millis(50),
            &format!("{label}: geth{leader} at block {head}"),
            || {
                let block = rpc(&el.rpc_url(), "eth_getBlockByNumber", json!([format!("0x{head:x}"), false])).ok()?;
                (block["hash"].as_str() == Some(hash.as_str())).then_some(())
            },
        );
        Some(recovered)
    }

    /// #7: a standby whose geth lost everything wins the lease (the only
    /// candidate): it replays the committed chain before building.
    pub fn standby_far_behind(&mut self, grow: u64, label: &str) -> Option<i64> {
        let (leader, _) = self.wait_producing_leader(Duration::from_secs(60));
        let standbys = self.standbys(leader);
        let x = self.rng.pick(&standbys);
        self.nodes[x].proc.kill();
        self.els[x].proc.kill();
        std::fs::remove_dir_all(self.dir.join(format!("geth{x}"))).unwrap();
        let target = self.refresh(label) + grow;
        while self.refresh(label) < target {
            let missing = target - self.ledger.head();
            self.burst(missing.clamp(20, 200) as usize * 2);
        }
        self.els[x].proc.start();
        self.els[x].wait_ready();
        assert_eq!(el_head(&self.els[x]).unwrap().0, 0, "the wiped geth starts at genesis");
        let held: Vec<usize> = standbys.iter().copied().filter(|&i| i != x).collect();
        for &i in &held {
            self.nodes[i].proc.signal("STOP");
        }
        let code = self.nodes[leader].proc.terminate(Duration::from_secs(15));
        assert_eq!(code, Some(0));
        let head = self.refresh(label);
        let log_from = self.nodes[x].proc.log_len();
        let started_at = now_ms();
        self.nodes[x].proc.start();
        let x_id = self.nodes[x].id.clone();
        let term = poll(Duration::from_secs(120), Duration::from_millis(20), "the far-behind standby to lead", || {
            let (term, holder) = self.fence();
            (holder == x_id).then_some(term)
        });
        let (number, _, at) =
            self.wait_block_with_term_above(term - 1, Duration::from_secs(60), "the far-behind standby's first block");
        assert_eq!(number, head + 1, "{label}: its first block follows the committed head");
        let log = self.nodes[x].proc.log_since(log_from);
        assert!(
            log.contains(&format!("leader: term {term}, building on block {head} ")),
            "{label}: {x_id} did not build on the committed head {head}:\n{log}"
        );
        let replayed = self.nodes[x].metric_within("clnode_blocks_replayed_total", PROBE).unwrap_or(0.0);
        assert!(replayed >= head as f64, "{label}: replayed only {replayed} of {head} blocks");
        eprintln!(
            "    {label}: {x_id} from genesis to block {head}, first block {number} after {} ms",
            at - started_at
        );
        self.receipts_checked.remove(&format!("geth{x}"));
        self.nodes[leader].proc.start();
        for &i in &held {
            self.nodes[i].proc.signal("CONT");
        }
        self.wait_follows(leader, label);
        Some(at)
    }

    /// Quickly adds about `count` transactions' worth of blocks (a burst to the leader's geth).
    pub fn burst(&mut self, count: usize) {
        let (leader, _) = self.wait_producing_leader(Duration::from_secs(60));
        let hashes = send_transactions_at(&self.els[leader].rpc_url(), count, 60, 0).join().unwrap();
        let last = hashes.last().unwrap().clone();
        let el = &self.els[leader];
        poll(Duration::from_secs(60), Duration::from_millis(50), "the burst committed", || el.receipt_block(&last));
    }

    /// #8: a member killed while catching up: `frozen-el` (its geth stopped
    /// while the member executes a page, so the kill lands inside a batch),
    /// `timing` (a random moment of the catch-up) or `power-loss` (the member
    /// and its geth SIGKILLed together).
    pub fn member_killed_mid_batch(&mut self, m: usize, how: &str, label: &str) -> Option<i64> {
        let id = self.members[m].node.id.clone();
        self.members[m].node.proc.kill();
        self.burst(300);
        let head = self.refresh(label);
        let stored = stored_chain(&self.members[m].postgres).len() as u64;
        self.members[m].node.proc.start();
        let delay = if how == "timing" { self.rng.millis(0, 150) } else { Duration::ZERO };
        let started = Instant::now();
        let node = &self.members[m].node;
        let progress =
            poll(Duration::from_secs(60), Duration::from_millis(2), &format!("{id} to start catching up"), || {
                let h = node.synced_height_within()?;
                ((h > stored && started.elapsed() >= delay) || h >= head).then_some(h)
            });
        if how == "frozen-el" {
            self.members[m].el.proc.signal("STOP");
            sleep(Duration::from_millis(300));
        }
        self.members[m].node.proc.kill();
        match how {
            "frozen-el" => self.members[m].el.proc.signal("CONT"),
            "power-loss" => {
                self.members[m].el.proc.kill();
                self.members[m].el.proc.start();
                self.members[m].el.wait_ready();
                self.receipts_checked.remove(&format!("member-{m}-el"));
            }
            _ => {}
        }
        let el_at = el_head(&self.members[m].el).map(|h| h.0).unwrap_or(0);
        let stored_at = stored_chain(&self.members[m].postgres).len() as u64;
        if progress >= head || stored_at >= head {
            self.figures.note(format!("{label} ({how}): {id} caught up before it could be killed mid-way"));
        }
        eprintln!(
            "    {label}: {id} killed ({how}) during its catch-up {stored}..{head}; at restart its geth is at {el_at}, its database at {stored_at}"
        );
        self.members[m].node.proc.start();
        let member = &self.members[m];
        poll(Duration::from_secs(120), Duration::from_millis(100), &format!("{id} to catch up"), || {
            (stored_chain(&member.postgres).len() as u64 >= head).then_some(())
        });
        // Members' chains are checked whole in settle; here the count: nothing stored twice or skipped.
        let chain = stored_chain(&self.members[m].postgres);
        assert_continuous(&chain);
        assert_prefix(&self.ledger, &chain[..head as usize], &id, label);
        None
    }

    /// #9: a member's geth, then its PostgreSQL, down for a while.
    pub fn member_services_outage(&mut self, m: usize, label: &str) -> Option<i64> {
        let id = self.members[m].node.id.clone();
        for what in ["execution client", "database"] {
            let down_at = now_ms();
            match what {
                "execution client" => self.members[m].el.proc.kill(),
                _ => self.members[m].postgres.proc.kill(),
            }
            let node = &self.members[m].node;
            let line = poll(
                Duration::from_secs(20),
                Duration::from_millis(50),
                &format!("{id} /health to name its {what}"),
                || {
                    node.health_within(PROBE)
                        .filter(|(status, line)| *status == 503 && line.contains(what))
                        .map(|(_, l)| l)
                },
            );
            eprintln!("    {label}: {what} down -> {}", line.trim());
            sleep(Duration::from_secs(2));
            match what {
                "execution client" => {
                    self.members[m].el.proc.start();
                    self.members[m].el.wait_ready();
                    self.receipts_checked.remove(&format!("member-{m}-el"));
                }
                _ => {
                    self.members[m].postgres.proc.start();
                    self.members[m].postgres.wait_ready();
                }
            }
            let head = self.refresh(label);
            let member = &self.members[m];
            poll(
                Duration::from_secs(120),
                Duration::from_millis(100),
                &format!("{id} to catch up after its {what} returned"),
                || (member.node.synced_height_within()? >= head).then_some(()),
            );
            let node = &self.members[m].node;
            poll(Duration::from_secs(20), Duration::from_millis(100), &format!("{id} healthy again"), || {
                node.health_within(PROBE).filter(|(s, _)| *s == 200)
            });
            eprintln!("    {label}: {what} back, caught up {} ms after it went down", now_ms() - down_at);
        }
        None
    }

    /// #10: member m's sync sources unreachable, hung or serving garbage.
    pub fn sync_sources_faults(&mut self, m: usize, hang: bool, label: &str) -> Option<i64> {
        let id = self.members[m].node.id.clone();
        // Garbage from the URL in use: refused, nothing stored, next URL.
        let in_use = self.member_source(m);
        let refusals = self.members[m].node.metric_within("clnode_sync_refusals_total", PROBE).unwrap_or(0.0);
        self.proxies[m][in_use].set(ProxyMode::Garbage, false);
        let node = &self.members[m].node;
        let line =
            poll(Duration::from_secs(30), Duration::from_millis(10), &format!("{id} to report the garbage"), || {
                node.health_within(PROBE).filter(|(s, l)| *s == 503 && l.contains("sync record")).map(|(_, l)| l)
            });
        eprintln!("    {label}: garbage from {} -> {}", self.nodes[in_use].id, line.trim());
        assert!(self.members[m].node.metric_within("clnode_sync_refusals_total", PROBE).unwrap() > refusals);
        self.check_safety(label);
        self.wait_member_moves(m, in_use, label);
        self.proxies[m][in_use].set(ProxyMode::Pass, false);

        // Every source unreachable: backs off, says so, keeps its chain.
        for proxy in &self.proxies[m] {
            proxy.set(ProxyMode::Refuse, true);
        }
        let node = &self.members[m].node;
        let line =
            poll(Duration::from_secs(30), Duration::from_millis(50), &format!("{id} to report no sync source"), || {
                node.health_within(PROBE)
                    .filter(|(s, l)| *s == 503 && l.contains("no sync URL answers"))
                    .map(|(_, l)| l)
            });
        eprintln!("    {label}: all sources cut -> {}", line.trim());
        let kept = stored_chain(&self.members[m].postgres);
        sleep(Duration::from_secs(2));
        assert_eq!(stored_chain(&self.members[m].postgres), kept, "{label}: the member's chain changed with no source");
        self.check_safety(label);
        for proxy in &self.proxies[m] {
            proxy.set(ProxyMode::Pass, false);
        }
        self.wait_member_caught_up(m, label);

        if hang {
            // The link to the source in use is blackholed (a partition: new
            // connections hang, open ones go silent): the member gives up on
            // it and moves on.
            let in_use = self.member_source(m);
            self.proxies[m][in_use].set(ProxyMode::Blackhole, false);
            let hung_at = now_ms();
            self.wait_member_moves(m, in_use, label);
            eprintln!("    {label}: source {} hung; moved on after {} ms", self.nodes[in_use].id, now_ms() - hung_at);
            self.proxies[m][in_use].set(ProxyMode::Pass, true);
        }
        None
    }

    /// The leader-mode node whose proxy member m currently syncs through.
    pub fn member_source(&self, m: usize) -> usize {
        let node = &self.members[m].node;
        let url = poll(Duration::from_secs(20), Duration::from_millis(50), "the member's sync URL", || {
            node.health_json_within(PROBE)?["sync_url"].as_str().map(str::to_owned)
        });
        self.proxies[m].iter().position(|p| p.url() == url).unwrap_or_else(|| panic!("unknown sync URL {url}"))
    }

    /// Waits until member m syncs from a source other than `from` and has a newer block.
    pub fn wait_member_moves(&mut self, m: usize, from: usize, label: &str) {
        let head = self.refresh(label);
        let url = self.proxies[m][from].url();
        let node = &self.members[m].node;
        poll(
            Duration::from_secs(60),
            Duration::from_millis(50),
            &format!("{label}: {} to move off {url}", node.id),
            || {
                let health = node.health_json_within(PROBE)?;
                (health["sync_url"].as_str() != Some(url.as_str()) && health["last_synced"].as_u64()? > head)
                    .then_some(())
            },
        );
    }

    pub fn wait_member_caught_up(&mut self, m: usize, label: &str) {
        let head = self.refresh(label);
        let node = &self.members[m].node;
        poll(Duration::from_secs(120), Duration::from_millis(100), &format!("{label}: {} at {head}", node.id), || {
            (node.synced_height_within()? >= head).then_some(())
        });
    }

    /// #11: the leader-mode node member m is syncing from dies.
    pub fn followed_node_dies(&mut self, m: usize, label: &str) -> Option<i64> {
        let first = self.member_source(m);
        let switches = self.members[m].node.metric_within("clnode_sync_url_switches_total", PROBE).unwrap_or(0.0);
        let was_leader = self.nodes[first].health_json_within(PROBE).is_some_and(|h| h["role"] == "leader");
        self.nodes[first].proc.kill();
        let killed_at = now_ms();
        self.wait_member_moves(m, first, label);
        let moved_after = now_ms() - killed_at;
        assert!(self.members[m].node.metric_within("clnode_sync_url_switches_total", PROBE).unwrap() > switches);
        eprintln!(
            "    {label}: {} ({}) killed; {} synced on from another URL after {moved_after} ms",
            self.nodes[first].id,
            if was_leader { "the leader" } else { "a standby" },
            self.members[m].node.id
        );
        self.figures.failover("member_url_switch", moved_after);
        self.nodes[first].proc.start();
        self.wait_follows(first, label);
        None
    }

    /// #12: malformed and hostile HTTP at the sync API and health ports of a
    /// leader-mode node and a member: 4xx with a JSON error, no crash, no effect.
    pub fn bad_http(&mut self, label: &str) -> Option<i64> {
        let (leader, _) = self.wait_producing_leader(Duration::from_secs(60));
        let before = self.refresh(label);
        let long_target = format!("/blocks?after=1&x={}", "a".repeat(10_000));
        let huge_header = format!(
            "GET /blocks/latest HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(200_000)
        );
        let body_request =
            "POST /blocks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_owned();
        let mut parseable: Vec<(String, Vec<u16>)> =
            vec![(format!("GET {long_target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), vec![414, 431])];
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
            parseable.push((
                format!(
                    "{method} /blocks/latest HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                vec![405],
            ));
        }
        parseable.push((body_request, vec![405, 413]));
        for path in [
            "/blocks?after=99999999999999999999999",
            "/blocks?wait_ms=30001",
            "/blocks?after=%00",
            "/blocks/%ff%fe",
            "/blocks/-1",
            "/blocks/0x",
            "/blocks/latest/extra",
            "/../../etc/passwd",
            "/blocks?after=1&&&&",
        ] {
            parseable.push((format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), vec![400, 404]));
        }
        let garbage: Vec<Vec<u8>> = vec![
            b"GARBAGE\r\n\r\n".to_vec(),
            b"\x00\x01\x02\x03\xff\xfe\r\n\r\n".to_vec(),
            huge_header.into_bytes(),
            b"GET /blocks/latest HTTP/9.9\r\n\r\n".to_vec(),
            b"GET\r\n\r\n".to_vec(),
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "\u{00e9}".repeat(100)).into_bytes(),
        ];
        let ports = [
            (self.nodes[leader].id.clone() + " api", self.nodes[leader].api_port.unwrap()),
            (self.nodes[leader].id.clone() + " health", self.nodes[leader].health_port),
            (self.members[0].node.id.clone() + " api", self.members[0].node.api_port.unwrap()),
        ];
        for (who, port) in &ports {
            for (request, allowed) in &parseable {
                let (status, body) = raw_http(*port, request.as_bytes(), Duration::from_secs(10));
                let first_line = request.lines().next().unwrap_or("");
                let shown = &first_line[..first_line.len().min(80)];
                let status = status.unwrap_or_else(|| panic!("{label}: {who}: no answer to {shown:?}"));
                let is_health = who.ends_with("health");
                // The health port has other routes; 404 is its answer to API paths.
                let ok = allowed.contains(&status)
                    || (is_health && status == 404)
                    || (status == 414 && request.len() > 2048);
                assert!(
                    ok,
                    "{label}: {who}: {shown:?} answered {status} (expected one of {allowed:?}): {}",
                    excerpt(&body)
                );
                let json_error =
                    serde_json::from_str::<Value>(&body).ok().and_then(|v| v["error"].as_str().map(str::to_owned));
                assert!(
                    json_error.is_some_and(|e| !e.is_empty()),
                    "{label}: {who}: {shown:?} answered {status} without a JSON error: {:?}",
                    excerpt(&body)
                );
            }
            for bytes in &garbage {
                let (status, body) = raw_http(*port, bytes, Duration::from_secs(10));
                let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
                let json_error =
                    serde_json::from_str::<Value>(&body).ok().and_then(|v| v["error"].as_str().map(str::to_owned));
                assert!(
                    status.is_some_and(|code| (400..500).contains(&code)) && json_error.is_some_and(|e| !e.is_empty()),
                    "{label}: {who}: {shown:?} answered {status:?} {:?}, not a 4xx with a JSON error",
                    excerpt(&body)
                );
            }
            // Many broken connections at once: still answers afterwards.
            let floods: Vec<JoinHandle<()>> = (0..40)
                .map(|i| {
                    let port = *port;
                    std::thread::spawn(move || {
                        let _ = raw_http(
                            port,
                            if i % 2 == 0 {
                                b"\xff\xff\xff\r\n\r\n"
                            } else {
                                b"GET /blocks?after=abc HTTP/1.1\r\n\r\n"
                            },
                            Duration::from_secs(10),
                        );
                    })
                })
                .collect();
            for flood in floods {
                flood.join().unwrap();
            }
        }
        for (who, port) in &ports {
            let url = if who.ends_with("health") {
                format!("http://127.0.0.1:{port}/health")
            } else {
                format!("http://127.0.0.1:{port}/blocks/latest")
            };
            let (status, _) = http_get_within(&url, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{label}: {who} stopped answering: {e}"));
            assert_eq!(status, 200, "{label}: {who} after the bad requests");
        }
        self.check_safety(label);
        let after = self.refresh(label);
        assert!(after >= before);
        None
    }
}

pub fn excerpt(text: &str) -> &str {
    let end = text.char_indices().nth(300).map(|(i, _)| i).unwrap_or(text.len());
    &text[..end]
}

/// The `failure_matrix` test: every chosen case in turn on one cluster.
pub fn failure_matrix() {
    let _serial = serial();
    let depth = depth();
    if !CASES.iter().any(|(name, _)| *name != "startup" && selected(name)) {
        eprintln!("failure_matrix: no matrix case in CLNODE_FAULT_CASES, skipped");
        return;
    }
    eprintln!("failure_matrix: {depth:?} run, seed {} (replay with CLNODE_FAULT_SEED={})", base_seed(), base_seed());
    let mut c = FaultCluster::start("faults-matrix", 3, 2, rng_for_test("failure_matrix"));
    let full = depth == Depth::Full;
    let rounds = |quick: usize, full_count: usize| if full { full_count } else { quick };

    c.case("bad-http", &[12], |c| c.bad_http("bad-http"));
    for i in 0..rounds(2, 12) {
        c.case(&format!("sigkill#{i}"), &[1], |c| c.sigkill_leader(&format!("sigkill#{i}")));
        c.case(&format!("sigterm#{i}"), &[3], |c| c.sigterm_leader(&format!("sigterm#{i}")));
    }
    // Frozen leaders: each failpoint step, plus plain SIGSTOPs, interleaved.
    let frozen_rounds = rounds(1, 9);
    for round in 0..frozen_rounds {
        for step in STEPS {
            c.case(&format!("frozen-{step}#{round}"), &[2], |c| {
                c.frozen_at_step(step, &format!("frozen-{step}#{round}"))
            });
        }
        c.case(&format!("sigstop#{round}"), &[2], |c| c.frozen_external(&format!("sigstop#{round}")));
    }
    // SIGKILL while frozen at a step: the block in flight is committed once or never.
    // The quick run picks one step at random, unless steps are named.
    let named_steps: Vec<&str> = STEPS.iter().copied().filter(|s| named(&format!("sigkill-at-{s}"))).collect();
    let kill_steps: Vec<&str> = if full {
        STEPS.to_vec()
    } else if named_steps.is_empty() {
        vec![STEPS[c.rng.below(5) as usize]]
    } else {
        named_steps
    };
    for step in kill_steps {
        c.case(&format!("sigkill-at-{step}"), &[1], |c| c.sigkill_at_step(step, &format!("sigkill-at-{step}")));
    }
    for how in variants(&["kill", "stop", "wipe"], &["kill"], |how| format!("redis-{how}")) {
        c.case(&format!("redis-{how}"), &[4], |c| c.redis_outage(how, &format!("redis-{how}")));
    }
    for how in ["kill", "stop"] {
        c.case(&format!("postgres-{how}"), &[5], |c| c.postgres_outage(how, &format!("postgres-{how}")));
    }
    // #6: the leader's geth killed and left down (the leader steps down), hung
    // (full run), restarted at once (it recovers, leading or following).
    for how in variants(&["kill", "stop"], &["kill"], |how| format!("leader-geth-{how}")) {
        c.case(&format!("leader-geth-{how}"), &[6], |c| c.leader_el_outage(how, &format!("leader-geth-{how}")));
    }
    for i in 0..rounds(1, 2) {
        c.case(&format!("leader-geth-restart#{i}"), &[6], |c| {
            c.leader_el_outage("restart", &format!("leader-geth-restart#{i}"))
        });
    }
    c.case("standby-far-behind", &[7], |c| c.standby_far_behind(rounds(20, 150) as u64, "standby-far-behind"));
    let member_kills =
        variants(&["timing", "frozen-el", "power-loss"], &["frozen-el"], |how| format!("member-killed-{how}"));
    for how in member_kills {
        c.case(&format!("member-killed-{how}"), &[8], |c| {
            c.member_killed_mid_batch(0, how, &format!("member-killed-{how}"))
        });
    }
    c.case("member-services", &[9], |c| c.member_services_outage(1, "member-services"));
    c.case("sync-sources", &[10], |c| c.sync_sources_faults(0, full, "sync-sources"));
    c.case("followed-node-dies", &[11], |c| c.followed_node_dies(1, "followed-node-dies"));
    crate::partitions::run_partitions(&mut c, rounds(1, 3));

    let figures = c.finish("failure_matrix");
    write_report("failure_matrix", figures);
}
