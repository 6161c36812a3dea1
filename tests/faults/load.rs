//! The transaction load.
//!
//! One sendtx.mjs per leader-mode node's geth, each with its
//! own key (only the current leader's geth includes them at once; the others
//! hold theirs until that node leads).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::support::*;

pub struct Load {
    senders: Vec<(Child, JoinHandle<()>)>,
    sent: Arc<AtomicU64>,
    /// Every transaction hash the senders reported, in order.
    hashes: Arc<Mutex<Vec<String>>>,
}

impl Load {
    pub fn start(dir: &TestDir, rpc_urls: &[String], rate: u32) -> Load {
        let sent = Arc::new(AtomicU64::new(0));
        let hashes = Arc::new(Mutex::new(Vec::new()));
        let senders = rpc_urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let log = std::fs::File::create(dir.join(format!("load-{i}.log"))).unwrap();
                let mut child = Command::new("node")
                    .arg(script("node/sendtx.mjs"))
                    .args(["--rpc", url, "--duration-s", "86400", "--rate", &rate.to_string()])
                    .args(["--key", keys::key(&keys::LOAD_KEYS, i), "--timeout-ms", "3000"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log)
                    .spawn()
                    .expect("cannot start sendtx.mjs");
                let stdout = child.stdout.take().unwrap();
                let (sent, hashes) = (Arc::clone(&sent), Arc::clone(&hashes));
                let reader = std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let parsed = serde_json::from_str::<serde_json::Value>(&line).ok();
                        if let Some(hash) = parsed.as_ref().and_then(|v| v["hash"].as_str()) {
                            sent.fetch_add(1, Ordering::Relaxed);
                            hashes.lock().unwrap_or_else(PoisonError::into_inner).push(hash.to_owned());
                        }
                    }
                });
                (child, reader)
            })
            .collect();
        Load { senders, sent, hashes }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The hashes sent after the first `from`.
    pub fn hashes_since(&self, from: usize) -> Vec<String> {
        let hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
        hashes.get(from..).map(<[String]>::to_vec).unwrap_or_default()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for (mut child, reader) in self.senders.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
        }
    }
}
