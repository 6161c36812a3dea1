//! Acknowledged transactions (issue 14, item 8): every transaction for
//! which any execution client's RPC returned a receipt, with the block it
//! named; at the end each must be in the committed chain, in that block.
//! A receipt is what a user takes as "done": losing one would be losing a
//! block a node reported.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::*;

/// At most this many open transactions asked about per client and poll
/// (bounded work between two actions of the randomized mode).
const MAX_ASKED_PER_POLL: usize = 2000;

/// A receipt seen: block number, block hash, and which client answered.
pub struct Ack {
    pub number: u64,
    pub hash: String,
    pub client: String,
}

#[derive(Default)]
pub struct Acknowledged {
    /// Load hashes taken so far (`Load::hashes_since`; a resent
    /// transaction shows up again with the same hash).
    taken: usize,
    /// Sent, no receipt seen yet.
    open: BTreeSet<String>,
    pub acks: BTreeMap<String, Ack>,
}

impl Acknowledged {
    /// Asks every running client for the receipts of the open transactions;
    /// records the first receipt of each. A client that does not answer
    /// (killed, restarting) is skipped this time.
    pub fn poll(&mut self, c: &FaultCluster) {
        if let Some(load) = &c.load {
            let new = load.hashes_since(self.taken);
            self.taken += new.len();
            self.open.extend(new);
        }
        for (name, el) in c.all_els() {
            if self.open.is_empty() || !usable(&el.proc) {
                continue;
            }
            let asked: Vec<String> = self.open.iter().take(MAX_ASKED_PER_POLL).cloned().collect();
            let calls: Vec<(&str, Value)> = asked.iter().map(|h| ("eth_getTransactionReceipt", json!([h]))).collect();
            let Ok(receipts) = rpc_batch(&el.rpc_url(), &calls) else { continue };
            for (tx, receipt) in asked.iter().zip(&receipts) {
                let (Some(number), Some(hash)) = (receipt["blockNumber"].as_str(), receipt["blockHash"].as_str())
                else {
                    continue;
                };
                let number = u64::from_str_radix(number.trim_start_matches("0x"), 16).unwrap();
                self.open.remove(tx);
                self.acks.insert(tx.clone(), Ack { number, hash: hash.to_owned(), client: name.clone() });
            }
        }
    }

    /// Every acknowledged transaction is in the committed chain (as the
    /// ledger indexed it: `verify` with `full` indexes every height) in
    /// the block its receipt named. Returns the figures.
    pub fn check(&self, c: &FaultCluster, context: &str) -> Value {
        let mut by_client: BTreeMap<&str, u64> = BTreeMap::new();
        for (tx, ack) in &self.acks {
            let committed = c.ledger.tx_block.get(tx).copied();
            assert_eq!(
                committed,
                Some(ack.number),
                "{context}: {} acknowledged {tx} in block {} ({}); the committed chain has it in {committed:?}",
                ack.client,
                ack.number,
                ack.hash
            );
            assert_eq!(
                c.ledger.hash(ack.number),
                ack.hash,
                "{context}: {} acknowledged {tx} in block {} {}, the committed block there is another",
                ack.client,
                ack.number,
                ack.hash
            );
            *by_client.entry(ack.client.as_str()).or_default() += 1;
        }
        json!({
            "acknowledged": self.acks.len(),
            "checked_in_same_committed_block": self.acks.len(),
            "distinct_sent": self.acks.len() + self.open.len(),
            "never_acknowledged": self.open.len(),
            "first_receipt_from": by_client,
        })
    }
}
