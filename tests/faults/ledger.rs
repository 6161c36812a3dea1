//! The committed chain as seen from outside, and what must never change.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::*;
use crate::*;

#[derive(Clone, Debug)]
pub struct Block {
    pub number: u64,
    pub hash: String,
    pub parent: String,
    pub term: u64,
    pub at_ms: i64,
    pub txs: usize,
}

#[derive(Default)]
pub struct Ledger {
    pub genesis: String,
    pub blocks: Vec<Block>,
    /// Transaction hash -> block number, for committed blocks up to `indexed_to`.
    pub tx_block: BTreeMap<String, u64>,
    pub indexed_to: u64,
}

impl Ledger {
    pub fn head(&self) -> u64 {
        self.blocks.len() as u64
    }

    pub fn hash(&self, number: u64) -> &str {
        if number == 0 {
            &self.genesis
        } else {
            &self.blocks[number as usize - 1].hash
        }
    }

    pub fn block(&self, number: u64) -> &Block {
        &self.blocks[number as usize - 1]
    }

    /// Reads the leader database: every block seen before must still be
    /// there unchanged; new ones must extend the chain with no gap, linked.
    /// (Terms along the chain are not checked here: the fenced commit alone
    /// guarantees they never go down, so such a check could not fail; what
    /// can fail is checked by `assert_terms_held_once`.)
    pub fn refresh(&mut self, db: &mut postgres::Client, context: &str) -> Result<usize, String> {
        if self.genesis.is_empty() {
            let row =
                db.query_one("SELECT genesis_hash FROM chain_meta WHERE id = 1", &[]).map_err(|e| e.to_string())?;
            self.genesis = row.get(0);
        }
        let rows = db
            .query("SELECT block_number, block_hash FROM payloads ORDER BY block_number", &[])
            .map_err(|e| e.to_string())?;
        assert!(
            rows.len() >= self.blocks.len(),
            "{context}: the leader database holds {} blocks, {} were committed before",
            rows.len(),
            self.blocks.len()
        );
        for (block, row) in self.blocks.iter().zip(&rows) {
            let (number, hash): (i64, String) = (row.get(0), row.get(1));
            assert_eq!(
                (number as u64, hash.as_str()),
                (block.number, block.hash.as_str()),
                "{context}: committed block {} changed",
                block.number
            );
        }
        let rows = db
            .query(
                "SELECT block_number, block_hash, parent_hash, term, \
                 (EXTRACT(EPOCH FROM created_at) * 1000)::BIGINT, payload_data \
                 FROM payloads WHERE block_number > $1 ORDER BY block_number",
                &[&(self.head() as i64)],
            )
            .map_err(|e| e.to_string())?;
        let added = rows.len();
        for row in rows {
            let payload: String = row.get(5);
            let payload: Value = serde_json::from_str(&payload).expect("payload_data is JSON");
            let block = Block {
                number: row.get::<_, i64>(0) as u64,
                hash: row.get(1),
                parent: row.get(2),
                term: row.get::<_, i64>(3) as u64,
                at_ms: row.get(4),
                txs: payload["transactions"].as_array().map(Vec::len).unwrap_or(0),
            };
            let expected = self.head() + 1;
            assert_eq!(block.number, expected, "{context}: gap in the committed chain before block {}", block.number);
            assert_eq!(
                block.parent,
                self.hash(expected - 1),
                "{context}: block {expected} does not link to its parent"
            );
            self.blocks.push(block);
        }
        Ok(added)
    }

    /// The longest time without a commit from `from_ms` to the first block
    /// committed at or after `until_ms`.
    pub fn longest_pause_ms(&self, from_ms: i64, until_ms: i64) -> i64 {
        let mut last = from_ms;
        let mut longest = 0;
        for block in self.blocks.iter().filter(|b| b.at_ms > from_ms) {
            longest = longest.max(block.at_ms - last);
            last = block.at_ms;
            if block.at_ms >= until_ms {
                return longest;
            }
        }
        longest.max(now_ms() - last)
    }
}

/// A database's chain as `stored_chain` reads it: (number, hash, parent).
pub type Chain = Vec<(u64, String, String)>;

/// Asserts `chain` (a member database) is the leader chain's prefix.
pub fn assert_prefix(ledger: &Ledger, chain: &[(u64, String, String)], who: &str, context: &str) {
    assert_continuous(chain);
    assert!(
        chain.len() as u64 <= ledger.head(),
        "{context}: {who} stored {} blocks, the leader database has {}",
        chain.len(),
        ledger.head()
    );
    for (number, hash, _) in chain {
        assert_eq!(hash, ledger.hash(*number), "{context}: {who} stored a different block {number}");
    }
}

/// No term was acquired by two nodes: every "lease: acquired term N" line of
/// every leader-mode node's log names a term no other node acquired. Unlike
/// the order of terms along the chain, this can fail: a Redis that lost its
/// counter handed the current leader's term to a standby whose floor was
/// stale, before the fresh fence read and the fence's holder check.
pub fn assert_terms_held_once(logs: &[(String, String)], context: &str) {
    let mut holders: std::collections::BTreeMap<u64, String> = std::collections::BTreeMap::new();
    for (node, log) in logs {
        for line in log.lines() {
            let Some(term) = line.split("lease: acquired term ").nth(1) else { continue };
            let Ok(term) = term.trim().parse::<u64>() else { continue };
            if let Some(other) = holders.insert(term, node.clone()) {
                assert_eq!(&other, node, "{context}: term {term} was acquired by {other} and by {node}");
            }
        }
    }
}

/// Every block a node logged as committed ("leader: committed block N
/// (HASH, ..."), by number.
pub fn acknowledged(cluster: &Cluster) -> BTreeMap<u64, String> {
    let mut blocks = BTreeMap::new();
    for node in &cluster.nodes {
        for line in node.proc.log_text().lines() {
            let Some(rest) = line.split("leader: committed block ").nth(1) else { continue };
            let Some((number, rest)) = rest.split_once(" (") else { continue };
            let Some(hash) = rest.split([',', ')']).next() else { continue };
            if let Ok(number) = number.parse::<u64>() {
                let previous = blocks.insert(number, hash.to_owned());
                assert!(previous.is_none_or(|p| p == hash), "two blocks acknowledged at height {number}");
            }
        }
    }
    blocks
}
