//! The transaction load.
//!
//! One sendtx.mjs per leader-mode node's geth, each with its
//! own key (only the current leader's geth includes them at once; the others
//! hold theirs until that node leads).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::support::*;

pub struct Load {
    senders: Vec<(Child, JoinHandle<()>)>,
    sent: Arc<AtomicU64>,
}

impl Load {
    pub fn start(dir: &TestDir, rpc_urls: &[String], rate: u32) -> Load {
        let sent = Arc::new(AtomicU64::new(0));
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
                let sent = Arc::clone(&sent);
                let reader = std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if line.contains("\"hash\"") {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                (child, reader)
            })
            .collect();
        Load { senders, sent }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
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
