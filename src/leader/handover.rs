//! Leadership control on the wire: the readiness records leader-mode nodes
//! publish in Redis, the release that designates a successor, and the
//! mailbox through which the admin endpoint asks the lease thread for a
//! transfer.
//!
//! A hand-over is the graceful release of SIGTERM (delete the lease, wake a
//! standby) plus a designation: for a short while only the named node may
//! acquire, and it is woken on a list of its own. The lease thread owns
//! the Redis connection; the decision is `leader::preference`.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::Script;

use super::lease::HANDOFF_KEY;
use super::preference::{Ineligible, Readiness};

/// `consensus:leader:ready:<id>`: one node's readiness record (JSON).
pub const READY_KEY_PREFIX: &str = "consensus:leader:ready:";
/// The ids with a live record, scored by when it expires (Redis ms), so a
/// reader finds every node without scanning the key space.
pub const READY_INDEX_KEY: &str = "consensus:leader:ready-index";
/// Who alone may acquire the lease next, for a short while after a
/// hand-over.
pub const DESIGNATED_KEY: &str = "consensus:leader:designated";
/// Records read at once: more leader-mode nodes than this are not chosen
/// (a cluster has two or three).
pub const MAX_RECORDS: usize = 32;
/// How long the admin endpoint waits for the lease thread's answer.
pub const ADMIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The wake-up list of one node (a designated successor pops it).
pub fn handoff_key_of(id: &str) -> String {
    format!("{HANDOFF_KEY}:{id}")
}

pub fn ready_key_of(id: &str) -> String {
    format!("{READY_KEY_PREFIX}{id}")
}

/// Writes this node's record with a TTL and indexes it; drops index
/// entries whose record has expired. Redis's own clock scores the index.
pub const PUBLISH_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return 1
";

/// The live records, at most `ARGV[2]` of them.
pub const READ_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local value = redis.call('GET', ARGV[1] .. id)
  if value then table.insert(out, value) end
end
return out
";

/// Releases the lease if this holder still has it, designates the
/// successor for `ARGV[3]` ms and wakes it on its own list.
pub const RELEASE_TO_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  redis.call('LPUSH', KEYS[3], ARGV[1])
  redis.call('LTRIM', KEYS[3], 0, 0)
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return 1
end
return 0
";

pub fn publish_script() -> Script {
    Script::new(PUBLISH_LUA)
}

/// Parses what `READ_LUA` returned; unreadable records are skipped.
pub fn parse_records(values: &[String]) -> Vec<Readiness> {
    values
        .iter()
        .filter_map(|text| serde_json::from_str(text).ok())
        .filter_map(|value| Readiness::from_json(&value))
        .take(MAX_RECORDS)
        .collect()
}

/// A transfer the lease thread has handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    pub term: u64,
    pub to: String,
}

/// Why a transfer did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferRefused {
    NotLeader,
    Ineligible {
        to: String,
        why: Ineligible,
    },
    Redis(String),
    /// Another admin request is being handled.
    Busy,
    /// The lease thread did not answer within [`ADMIN_ANSWER_TIMEOUT`].
    TimedOut,
}

impl std::fmt::Display for TransferRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferRefused::NotLeader => f.write_str("this node is not the leader"),
            TransferRefused::Ineligible { to, why } => write!(f, "{to} {why}"),
            TransferRefused::Redis(error) => write!(f, "{error}"),
            TransferRefused::Busy => f.write_str("another admin request is in progress; try again"),
            TransferRefused::TimedOut => f.write_str("the lease thread did not answer in time"),
        }
    }
}

impl TransferRefused {
    /// The HTTP status the admin endpoint answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            TransferRefused::Ineligible { why: Ineligible::Unknown, .. } => 404,
            TransferRefused::NotLeader | TransferRefused::Ineligible { .. } | TransferRefused::Busy => 409,
            TransferRefused::Redis(_) => 503,
            TransferRefused::TimedOut => 504,
        }
    }
}

pub type TransferAnswer = Result<HandedOver, TransferRefused>;

/// A transfer waiting for the lease thread.
pub struct TransferRequest {
    pub to: String,
    pub reply: SyncSender<TransferAnswer>,
}

/// One request at a time, from the admin endpoint to the lease thread.
#[derive(Default)]
pub struct Mailbox {
    slot: Mutex<Option<TransferRequest>>,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Option<TransferRequest>> {
        self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Posts a request; the receiver gets the answer. `Busy` if one waits.
    pub fn post(&self, to: String) -> Result<Receiver<TransferAnswer>, TransferRefused> {
        let mut slot = self.lock();
        if slot.is_some() {
            return Err(TransferRefused::Busy);
        }
        let (reply, answer) = sync_channel(1);
        *slot = Some(TransferRequest { to, reply });
        Ok(answer)
    }

    pub fn take(&self) -> Option<TransferRequest> {
        self.lock().take()
    }

    pub fn is_pending(&self) -> bool {
        self.lock().is_some()
    }
}

impl TransferRequest {
    /// The asker may have given up; nothing to do then.
    pub fn answer(self, answer: TransferAnswer) {
        let _ = self.reply.try_send(answer);
    }
}
