//! The fault cluster: Redis, the leader PostgreSQL, leader-mode nodes
//! with their geths, members syncing through proxies, the load; and the
//! outside checks run after every case and during them.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;
use crate::*;

// ---------------------------------------------------------------------------
// Plain JSON-RPC helpers

pub fn rpc_batch(url: &str, calls: &[(&str, Value)]) -> Result<Vec<Value>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into();
    let body: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(id, (method, params))| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .collect();
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(Value::Array(body).to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let text =
        response.body_mut().with_config().limit(256 * 1024 * 1024).read_to_string().map_err(|e| e.to_string())?;
    let answers: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| format!("{e}: {}", &text[..text.len().min(200)]))?;
    let mut results = vec![Value::Null; calls.len()];
    for answer in answers {
        let id = answer["id"].as_u64().ok_or("answer without id")? as usize;
        if let Some(error) = answer.get("error") {
            return Err(format!("{}: {error}", calls[id].0));
        }
        results[id] = answer["result"].clone();
    }
    Ok(results)
}

/// (number, hash) of the client's canonical head.
pub fn el_head(el: &El) -> Option<(u64, String)> {
    let block = rpc(&el.rpc_url(), "eth_getBlockByNumber", json!(["latest", false])).ok()?;
    Some((quantity(&block["number"]), block["hash"].as_str()?.to_owned()))
}

/// SIGSTOP or SIGCONT a whole server: the process and its descendants, by PID.
pub fn signal_tree(proc: &Proc, signal: &str) {
    signal_pids(&process_tree(proc.pid()), signal);
}

pub fn usable(proc: &Proc) -> bool {
    proc.is_running() && !proc.is_stopped()
}

/// Redis, the leader PostgreSQL, leader-mode nodes each with its own geth,
/// members each with their own geth and PostgreSQL (syncing through proxies
/// the test can cut), and the load. Fields drop in order: load and processes
/// first, the directory (kept on failure) last.
pub struct FaultCluster {
    pub load: Option<Load>,
    /// `proxies[m][i]`: member m's way to leader-mode node i's sync API.
    pub proxies: Vec<Vec<TcpProxy>>,
    pub members: Vec<Member>,
    pub nodes: Vec<Node>,
    /// `links[i]`: leader-mode node i's proxies to Redis, PostgreSQL and its
    /// Engine API (the partition cases switch them).
    pub links: Vec<NodeLinks>,
    pub els: Vec<El>,
    pub postgres: Postgres,
    pub redis: Redis,
    pub db: Option<postgres::Client>,
    pub ledger: Ledger,
    /// Per execution client ("geth0", "member-0-el"): receipts checked up to this block.
    pub receipts_checked: BTreeMap<String, u64>,
    /// The last Redis stream entry checked, and how many were.
    pub stream_checked: (String, u64),
    pub figures: Figures,
    pub rng: Rng,
    pub started: Instant,
    pub dir: TestDir,
}

impl FaultCluster {
    pub fn start(name: &str, leaders: usize, members: usize, rng: Rng) -> FaultCluster {
        let started = Instant::now();
        let Cluster { nodes, links, els, peers: _, redis_ha: _, pgbouncer: _, pg_ha: _, postgres, redis, dir } =
            Cluster::builder(name).leaders(leaders).flags(&LEADER_FLAGS).links().start();
        let proxies: Vec<Vec<TcpProxy>> = (0..members)
            .map(|_| nodes.iter().map(|n| TcpProxy::start(n.api_port.unwrap(), ProxyMode::Pass)).collect())
            .collect();
        let member_order: Vec<Vec<usize>> =
            (0..members).map(|m| (0..leaders).map(|i| (m + i) % leaders).collect()).collect();
        let members = (0..members)
            .map(|m| {
                let urls: Vec<String> = member_order[m].iter().map(|&i| proxies[m][i].url()).collect();
                Member::start(&dir, &format!("member-{m}"), ElKind::Geth, "osaka", &urls, &MEMBER_FLAGS)
            })
            .collect();
        let load = Load::start(&dir, &els.iter().map(El::rpc_url).collect::<Vec<_>>(), LOAD_RATE);
        let mut cluster = FaultCluster {
            load: Some(load),
            proxies,
            members,
            nodes,
            links,
            els,
            postgres,
            redis,
            db: None,
            ledger: Ledger::default(),
            receipts_checked: BTreeMap::new(),
            stream_checked: ("-".to_owned(), 0),
            figures: Figures::default(),
            rng,
            started,
            dir,
        };
        cluster.wait_producing_leader(Duration::from_secs(60));
        let target = cluster.refresh("start") + 5;
        poll(Duration::from_secs(60), Duration::from_millis(100), "the first blocks", || {
            (cluster.refresh("start") >= target).then_some(())
        });
        cluster.settle("start");
        eprintln!(
            "cluster {name}: {leaders} leader-mode nodes, {} members, ready after {:.1} s (files in {})",
            cluster.members.len(),
            cluster.started.elapsed().as_secs_f64(),
            cluster.dir.path.display()
        );
        cluster
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    // -- the leader database ------------------------------------------------

    pub fn db(&mut self) -> &mut postgres::Client {
        if self.db.as_mut().is_none_or(|db| db.is_valid(Duration::from_secs(2)).is_err()) {
            let url = self.postgres.url();
            self.db = Some(poll(Duration::from_secs(60), Duration::from_millis(100), "the leader database", || {
                let mut config = postgres::Config::from_str(&url).unwrap();
                config.connect_timeout(Duration::from_secs(3));
                let mut client = config.connect(postgres::NoTls).ok()?;
                client.simple_query("SELECT 1").ok()?;
                Some(client)
            }));
        }
        self.db.as_mut().unwrap()
    }

    /// Re-reads the committed chain (all checks of `Ledger::refresh`); returns the head.
    pub fn refresh(&mut self, context: &str) -> u64 {
        for _ in 0..100 {
            let mut ledger = std::mem::take(&mut self.ledger);
            let result = ledger.refresh(self.db(), context);
            self.ledger = ledger;
            match result {
                Ok(_) => return self.ledger.head(),
                Err(error) => {
                    eprintln!("{context}: reading the leader database: {error}; retrying");
                    self.db = None;
                    sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("{context}: cannot read the leader database");
    }

    pub fn fence(&mut self) -> (u64, String) {
        let row = self.db().query_one("SELECT term, holder FROM fence WHERE id = 1", &[]).unwrap();
        (row.get::<_, i64>(0) as u64, row.get(1))
    }

    /// (number, term, at_ms) of the first block satisfying `condition` ($1: i64).
    pub fn first_block(&mut self, condition: &str, value: i64) -> Option<(u64, u64, i64)> {
        let sql = format!(
            "SELECT block_number, term, (EXTRACT(EPOCH FROM created_at) * 1000)::BIGINT FROM payloads \
             WHERE {condition} ORDER BY block_number LIMIT 1"
        );
        let rows = self.db().query(sql.as_str(), &[&value]).ok()?;
        rows.first().map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64, row.get(2)))
    }

    /// The first block committed with a term above `term` (a new leader's).
    pub fn wait_block_with_term_above(&mut self, term: u64, timeout: Duration, what: &str) -> (u64, u64, i64) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(block) = self.first_block("term > $1", term as i64) {
                return block;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {timeout:?} waiting for {what}: no block with a term above {term}");
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// The first block committed at or after `at_ms` (production resumed).
    pub fn wait_block_after(&mut self, at_ms: i64, timeout: Duration, what: &str) -> (u64, u64, i64) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(block) = self.first_block("created_at >= to_timestamp($1::BIGINT / 1000.0)", at_ms) {
                return block;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {timeout:?} waiting for {what}: no block committed since {at_ms}");
            }
            sleep(Duration::from_millis(20));
        }
    }

    pub fn blocks_with_term(&mut self, term: u64) -> i64 {
        self.db().query_one("SELECT count(*) FROM payloads WHERE term = $1", &[&(term as i64)]).unwrap().get(0)
    }

    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// The node that holds the fence, says it leads, and has committed in
    /// its term: (index, term).
    pub fn wait_producing_leader(&mut self, timeout: Duration) -> (usize, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            let (term, holder) = self.fence();
            if let Some(i) = self.node_index(&holder).filter(|&i| usable(&self.nodes[i].proc)) {
                let committed = self.first_block("term = $1", term as i64).is_some();
                let leads = self.nodes[i].health_json_within(PROBE).is_some_and(|h| h["role"] == "leader");
                if committed && leads {
                    return (i, term);
                }
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {timeout:?} waiting for a producing leader (fence: term {term}, {holder})");
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// A standby that is ready to lead: its client is at the committed head.
    pub fn wait_standby_ready(&self, i: usize, timeout: Duration) {
        let node = &self.nodes[i];
        poll(timeout, Duration::from_millis(50), &format!("{} ready as a standby", node.id), || {
            let health = node.health_json_within(PROBE)?;
            (health["role"] == "standby"
                && !health["el_head"].is_null()
                && health["el_head"] == health["committed_head"])
                .then_some(())
        });
    }

    pub fn dump_logs(&self) {
        for node in self.nodes.iter().chain(self.members.iter().map(|m| &m.node)) {
            eprintln!("---- last lines of {} ----\n{}", node.id, node.proc.log_tail(25));
        }
    }

    // -- the checks -----------------------------------------------------------

    /// Every execution client, by name: leader-mode nodes' then members'.
    pub fn all_els(&self) -> Vec<(String, &El)> {
        let leaders = self.els.iter().enumerate().map(|(i, el)| (format!("geth{i}"), el));
        let members = self.members.iter().enumerate().map(|(m, member)| (format!("member-{m}-el"), &member.el));
        leaders.chain(members).collect()
    }

    /// No clnode process (nor a service) exited unless the test stopped it.
    pub fn assert_alive(&mut self, context: &str) {
        let mut dead = Vec::new();
        let procs = self
            .nodes
            .iter_mut()
            .map(|n| &mut n.proc)
            .chain(self.els.iter_mut().map(|e| &mut e.proc))
            .chain(self.members.iter_mut().flat_map(|m| [&mut m.node.proc, &mut m.el.proc, &mut m.postgres.proc]))
            .chain([&mut self.postgres.proc, &mut self.redis.proc]);
        for proc in procs {
            if let Some(status) = proc.exited() {
                dead.push(format!("{} exited by itself ({status}); last lines:\n{}", proc.name, proc.log_tail(30)));
            }
        }
        assert!(dead.is_empty(), "{context}: {}", dead.join("\n"));
    }

    /// The cheap safety checks, safe to run at any moment (skips whatever is
    /// down or stopped): heads first, then the databases.
    pub fn check_safety(&mut self, context: &str) {
        let logs: Vec<(String, String)> = self.nodes.iter().map(|n| (n.id.clone(), n.proc.log_text())).collect();
        super::ledger::assert_terms_held_once(&logs, context);
        let heads: Vec<(String, u64, String)> = self
            .all_els()
            .into_iter()
            .filter(|(_, el)| usable(&el.proc))
            .filter_map(|(name, el)| el_head(el).map(|(n, h)| (name, n, h)))
            .collect();
        let member_chains: Vec<(String, Chain)> = self
            .members
            .iter()
            .filter(|m| usable(&m.postgres.proc))
            .filter_map(|m| {
                let mut client = postgres::Client::connect(&m.postgres.url(), postgres::NoTls).ok()?;
                let rows = client
                    .query("SELECT block_number, block_hash, parent_hash FROM payloads ORDER BY block_number", &[])
                    .ok()?;
                let chain = rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1), r.get(2))).collect();
                Some((m.node.id.clone(), chain))
            })
            .collect();
        if !usable(&self.postgres.proc) {
            return;
        }
        let head = self.refresh(context);
        for (name, number, hash) in heads {
            assert!(number <= head, "{context}: {name}'s canonical head is block {number}, only {head} are committed");
            assert_eq!(
                hash,
                self.ledger.hash(number),
                "{context}: {name}'s canonical block {number} is not the committed one"
            );
        }
        for (who, chain) in member_chains {
            assert_prefix(&self.ledger, &chain, &who, context);
        }
        self.assert_alive(context);
    }

    /// Waits until every execution client and every member holds the
    /// committed head as of now; returns that head.
    pub fn converge(&mut self, context: &str, timeout: Duration) -> u64 {
        let head = self.refresh(context);
        let hash = self.ledger.hash(head).to_owned();
        let target = json!([format!("0x{head:x}"), false]);
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            for (name, el) in self.all_els() {
                let at = rpc(&el.rpc_url(), "eth_getBlockByNumber", target.clone()).ok();
                if at.as_ref().and_then(|b| b["hash"].as_str()) != Some(hash.as_str()) {
                    behind.push(name);
                }
            }
            for member in &self.members {
                let stored = postgres::Client::connect(&member.postgres.url(), postgres::NoTls)
                    .ok()
                    .and_then(|mut c| c.query_one("SELECT count(*) FROM payloads", &[]).ok())
                    .map(|row| row.get::<_, i64>(0) as u64);
                if stored.is_none_or(|stored| stored < head) {
                    behind.push(format!("{} (stored {stored:?})", member.node.id));
                }
            }
            if behind.is_empty() {
                return head;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("{context}: not caught up with block {head} after {timeout:?}: {}", behind.join(", "));
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// After a case: everything back, production resumed, everyone caught
    /// up, and every check, with the per-height comparison on a window
    /// (`full`: on every height) and the receipts of new transactions.
    pub fn settle(&mut self, context: &str) -> u64 {
        self.assert_everything_up(context);
        let since = now_ms();
        self.wait_block_after(since, Duration::from_secs(60), &format!("{context}: production to resume"));
        let head = self.converge(context, Duration::from_secs(120));
        self.check_safety(context);
        self.verify(context, head, false);
        self.check_stream(context);
        head
    }

    pub fn assert_everything_up(&self, context: &str) {
        let procs = self
            .nodes
            .iter()
            .map(|n| &n.proc)
            .chain(self.els.iter().map(|e| &e.proc))
            .chain(self.members.iter().flat_map(|m| [&m.node.proc, &m.el.proc, &m.postgres.proc]))
            .chain([&self.postgres.proc, &self.redis.proc]);
        for proc in procs {
            assert!(usable(proc), "{context}: the case left {} down or stopped", proc.name);
        }
    }

    /// Heights `1..=head` (or a window) on every client, every member
    /// database, and the receipts of every transaction not checked yet.
    pub fn verify(&mut self, context: &str, head: u64, full: bool) {
        let heights: Vec<u64> = if full {
            (1..=head).collect()
        } else {
            let mut set: BTreeSet<u64> = (head.saturating_sub(64).max(1)..=head).collect();
            for _ in 0..32 {
                set.insert(1 + self.rng.below(head.max(1)));
            }
            set.into_iter().filter(|&n| n >= 1 && n <= head).collect()
        };
        for (name, el) in self.all_els() {
            for chunk in heights.chunks(200) {
                let calls: Vec<(&str, Value)> =
                    chunk.iter().map(|n| ("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))).collect();
                let blocks = rpc_batch(&el.rpc_url(), &calls).unwrap_or_else(|e| panic!("{context}: {name}: {e}"));
                for (n, block) in chunk.iter().zip(&blocks) {
                    assert_eq!(
                        block["hash"].as_str(),
                        Some(self.ledger.hash(*n)),
                        "{context}: {name} holds another block at height {n}"
                    );
                }
            }
        }
        // Members first, then the leader database: a member may not be ahead of what was read.
        let chains: Vec<(String, Chain)> =
            self.members.iter().map(|m| (m.node.id.clone(), stored_chain(&m.postgres))).collect();
        self.refresh(context);
        for (who, chain) in chains {
            assert!(chain.len() as u64 >= head, "{context}: {who} stored only {} blocks", chain.len());
            assert_prefix(&self.ledger, &chain, &who, context);
        }
        self.index_transactions(context, head);
        let names: Vec<String> = self.all_els().into_iter().map(|(name, _)| name).collect();
        for name in names {
            let from = if full { 0 } else { self.receipts_checked.get(&name).copied().unwrap_or(0) };
            self.check_receipts(context, &name, from, head);
            self.receipts_checked.insert(name, head);
        }
    }

    /// Every block announced on the Redis stream (news of commits) is a
    /// committed block, with the same hash and term.
    pub fn check_stream(&mut self, context: &str) {
        let client = redis::Client::open(format!("redis://{}/", self.redis.addr())).unwrap();
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
        loop {
            let start =
                if self.stream_checked.0 == "-" { "-".to_owned() } else { format!("({}", self.stream_checked.0) };
            let entries: Vec<(String, BTreeMap<String, String>)> = redis::cmd("XRANGE")
                .arg("consensus:blocks")
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(500)
                .query(&mut connection)
                .unwrap_or_else(|e| panic!("{context}: XRANGE: {e}"));
            let Some((last, _)) = entries.last() else { return };
            let last = last.clone();
            let newest =
                entries.iter().filter_map(|(_, f)| f.get("block_number")?.parse::<u64>().ok()).max().unwrap_or(0);
            if newest > self.ledger.head() {
                self.refresh(context);
            }
            for (id, fields) in &entries {
                let number: u64 = fields["block_number"].parse().unwrap();
                assert!(
                    number >= 1 && number <= self.ledger.head(),
                    "{context}: stream entry {id} announces block {number}, not committed"
                );
                let block = self.ledger.block(number);
                assert_eq!(
                    (fields["block_hash"].as_str(), fields["term"].parse::<u64>().unwrap()),
                    (block.hash.as_str(), block.term),
                    "{context}: stream entry {id} announces another block {number}"
                );
            }
            self.stream_checked = (last, self.stream_checked.1 + entries.len() as u64);
        }
    }

    /// Learns the transaction hashes of committed blocks up to `head` (from
    /// geth0, after checking the block's hash and transaction count).
    pub fn index_transactions(&mut self, context: &str, head: u64) {
        let from = self.ledger.indexed_to + 1;
        let numbers: Vec<u64> = (from..=head).collect();
        let url = self.els[0].rpc_url();
        for chunk in numbers.chunks(100) {
            let calls: Vec<(&str, Value)> =
                chunk.iter().map(|n| ("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))).collect();
            let blocks = rpc_batch(&url, &calls).unwrap_or_else(|e| panic!("{context}: geth0: {e}"));
            for (n, block) in chunk.iter().zip(&blocks) {
                let committed = self.ledger.block(*n);
                assert_eq!(block["hash"].as_str(), Some(committed.hash.as_str()), "{context}: geth0 block {n}");
                let txs = block["transactions"].as_array().cloned().unwrap_or_default();
                assert_eq!(txs.len(), committed.txs, "{context}: block {n}: transaction count");
                for tx in txs {
                    self.ledger.tx_block.insert(tx.as_str().unwrap().to_owned(), *n);
                }
            }
        }
        self.ledger.indexed_to = self.ledger.indexed_to.max(head);
    }

    /// Every transaction of blocks `(from, to]` has its receipt in that block on client `name`.
    pub fn check_receipts(&self, context: &str, name: &str, from: u64, to: u64) {
        let el = self.all_els().into_iter().find(|(n, _)| n == name).map(|(_, el)| el).unwrap();
        let txs: Vec<(&String, u64)> =
            self.ledger.tx_block.iter().filter(|(_, &n)| n > from && n <= to).map(|(h, &n)| (h, n)).collect();
        for chunk in txs.chunks(500) {
            let calls: Vec<(&str, Value)> =
                chunk.iter().map(|(h, _)| ("eth_getTransactionReceipt", json!([h]))).collect();
            let receipts = rpc_batch(&el.rpc_url(), &calls).unwrap_or_else(|e| panic!("{context}: {name}: {e}"));
            for ((hash, number), receipt) in chunk.iter().zip(&receipts) {
                assert!(!receipt.is_null(), "{context}: {name} lost the receipt of {hash} (block {number})");
                assert_eq!(
                    (quantity(&receipt["blockNumber"]), receipt["blockHash"].as_str()),
                    (*number, Some(self.ledger.hash(*number))),
                    "{context}: {name}: transaction {hash} moved"
                );
            }
        }
    }

    /// Lines in every leader-mode node's log where a commit was refused.
    pub fn refusals_in_logs(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                n.proc.log_text().lines().filter(|l| l.contains("refused:") && l.contains("commit of block")).count()
            })
            .sum()
    }

    /// Runs one case (if chosen, `selected`): prints it, times it, settles,
    /// records its pause.
    pub fn case(&mut self, name: &str, matrix: &[u8], body: impl FnOnce(&mut FaultCluster) -> Option<i64>) {
        if !selected(name) {
            return;
        }
        let started = Instant::now();
        let from_ms = now_ms();
        eprintln!("[{:7.1}s] case {name} (matrix {matrix:?})", self.elapsed());
        let recovered_ms = body(self).unwrap_or_else(now_ms);
        let head = self.settle(name);
        let pause = self.ledger.longest_pause_ms(from_ms, recovered_ms);
        let kind = name.split(['#', ' ']).next().unwrap_or(name).to_owned();
        self.figures.pause(&kind, pause);
        self.figures.cases.push(json!({
            "case": name,
            "matrix": matrix,
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "longest_pause_ms": pause,
            "head": head,
        }));
        eprintln!(
            "[{:7.1}s]   ok: {name} in {:.1} s, longest pause {pause} ms, head {head}",
            self.elapsed(),
            started.elapsed().as_secs_f64()
        );
    }

    pub fn figures_json(&self) -> Value {
        let failover: serde_json::Map<String, Value> =
            self.figures.failover_ms.iter().map(|(k, v)| (k.clone(), summary(v))).collect();
        json!({
            "failover": failover,
            "longest_pause_ms": self.figures.pause_ms,
            "refusals_seen": self.refusals_in_logs(),
            "cases": self.figures.cases.len(),
            "frozen_leader_iterations": self.figures.frozen_iterations,
            "blocks_committed": self.ledger.head(),
            "transactions_committed": self.ledger.tx_block.len(),
            "transactions_sent": self.load.as_ref().map(Load::sent),
            "stream_entries_checked": self.stream_checked.1,
            "notes": self.figures.notes,
            "seconds": self.started.elapsed().as_secs(),
            "case_list": self.figures.cases,
        })
    }

    /// Final checks: everything settled, every height and every receipt on every client.
    pub fn finish(&mut self, section: &str) -> Value {
        let head = self.settle("final");
        self.verify("final", head, true);
        let figures = self.figures_json();
        eprintln!("{section}: {}", serde_json::to_string_pretty(&figures).unwrap());
        figures
    }

    pub fn standbys(&self, leader: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| i != leader).collect()
    }

    pub fn wait_follows(&mut self, i: usize, context: &str) {
        self.wait_standby_ready(i, Duration::from_secs(60));
        let head = self.refresh(context);
        let hash = self.ledger.hash(head).to_owned();
        let el = &self.els[i];
        poll(
            Duration::from_secs(60),
            Duration::from_millis(50),
            &format!("{context}: geth{i} at block {head}"),
            || {
                let block = rpc(&el.rpc_url(), "eth_getBlockByNumber", json!([format!("0x{head:x}"), false])).ok()?;
                (block["hash"].as_str() == Some(hash.as_str())).then_some(())
            },
        );
    }
}

/// `last_synced` of a member, with the short probe timeout.
pub trait SyncedHeight {
    fn synced_height_within(&self) -> Option<u64>;
}

impl SyncedHeight for Node {
    fn synced_height_within(&self) -> Option<u64> {
        self.health_json_within(PROBE).and_then(|h| h["last_synced"].as_u64())
    }
}
