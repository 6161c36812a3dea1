//! The Engine API client: the only code in clnode that speaks JSON-RPC to an
//! execution client.
//!
//! Every method has its own timeout (the spec's recommendation where it gives
//! one), every failure is an [`EngineError`] naming the URL and the method,
//! and every answer is parsed into a typed value before it leaves this module.

mod error;
pub mod jwt;
pub mod types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use error::{rpc_code, EngineError, EngineErrorKind};
pub use jwt::JwtSecret;
pub use types::{
    BlockHeader, BuiltPayload, ExecutionPayload, ForkchoiceState, ForkchoiceUpdated, PayloadAttributes, PayloadStatus,
};

use crate::codec::{decode_quantity, encode_quantity, Hash32};
use crate::metrics::Metrics;

/// execution-apis: forkchoiceUpdated timeout is 8 s.
pub const FORKCHOICE_UPDATED_TIMEOUT: Duration = Duration::from_secs(8);
/// execution-apis: newPayload timeout is 8 s.
pub const NEW_PAYLOAD_TIMEOUT: Duration = Duration::from_secs(8);
/// execution-apis: getPayload timeout is 1 s.
pub const GET_PAYLOAD_TIMEOUT: Duration = Duration::from_secs(1);
/// execution-apis: exchangeCapabilities timeout is 1 s.
pub const EXCHANGE_CAPABILITIES_TIMEOUT: Duration = Duration::from_secs(1);
/// Plain `eth_` reads answer from the client's database; 2 s is generous.
pub const ETH_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// A loopback connect that takes longer than this is a dead client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest answer accepted: a full block with a blobs bundle stays far
/// below this; anything larger is a broken or hostile client.
pub const MAX_RESPONSE_BYTES: u64 = 128 * 1024 * 1024;
/// Error bodies are quoted in errors and logs; keep them short.
const MAX_ERROR_BODY_CHARS: usize = 300;

/// The Engine API methods clnode calls, announced in exchangeCapabilities.
pub const CLNODE_CAPABILITIES: [&str; 4] =
    ["engine_forkchoiceUpdatedV3", "engine_getPayloadV4", "engine_getPayloadV5", "engine_newPayloadV4"];

/// Which block `eth_getBlockByNumber` should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTag {
    Latest,
    Number(u64),
}

/// Which getPayload version a block needs, learnt from `eth_config`
/// (EIP-7910): Osaka is the fork that activates the P256VERIFY precompile
/// (EIP-7951), and `next` tells when a scheduled fork starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkSchedule {
    pub current_version: u8,
    /// (activation timestamp, version) of the next fork, if one is scheduled.
    pub next: Option<(u64, u8)>,
}

impl ForkSchedule {
    pub fn version_at(&self, timestamp: u64) -> u8 {
        match self.next {
            Some((activation, version)) if timestamp >= activation => version,
            _ => self.current_version,
        }
    }

    /// Reads an `eth_config` answer; `None` when it is not one.
    pub fn from_eth_config(config: &Value) -> Option<ForkSchedule> {
        let version_of = |fork: &Value| -> Option<u8> {
            let precompiles = fork.get("precompiles")?.as_object()?;
            Some(if precompiles.contains_key("P256VERIFY") { 5 } else { 4 })
        };
        let current_version = version_of(config.get("current")?)?;
        let next = config.get("next").filter(|n| !n.is_null()).and_then(|next| {
            let activation = next.get("activationTime")?.as_u64()?;
            Some((activation, version_of(next)?))
        });
        Some(ForkSchedule { current_version, next })
    }
}

/// How long a fork schedule read from the client is used before asking
/// again. A client's chain config changes only when it restarts (a fork
/// scheduled on a running chain: `geth init` with the new genesis, or
/// `--override.osaka`), which clnode does not see; asked once for good, a
/// node would keep building with the schedule the client had before, and
/// geth answers getPayloadV4 for an Osaka block instead of refusing it, so
/// the record would say V4. Asking again this often bounds how long that
/// lasts, at one cheap call per this many seconds of building; an operator
/// schedules a fork well ahead of it (docs/OPERATIONS.md).
pub const FORK_SCHEDULE_MAX_AGE: Duration = Duration::from_secs(10);

/// A fork schedule and when it was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KnownSchedule {
    schedule: ForkSchedule,
    asked_at: Instant,
    /// The client has no `eth_config` (EthereumJS): asking again would only
    /// count an error every time; its "unsupported fork" answer is the
    /// only signal.
    no_eth_config: bool,
}

/// The schedule to use without asking the client: the known one while it
/// is younger than [`FORK_SCHEDULE_MAX_AGE`], or for good from a client
/// without `eth_config`.
fn fresh_schedule(known: Option<KnownSchedule>, now: Instant) -> Option<ForkSchedule> {
    known
        .filter(|k| k.no_eth_config || now.saturating_duration_since(k.asked_at) < FORK_SCHEDULE_MAX_AGE)
        .map(|k| k.schedule)
}

/// What to use after asking: the client's answer; without one (no
/// `eth_config`, or the call failed) the schedule known before, rather
/// than a guess over a schedule the client did give; else Prague.
fn schedule_after_asking(answer: Option<ForkSchedule>, known: Option<KnownSchedule>) -> ForkSchedule {
    answer.or(known.map(|k| k.schedule)).unwrap_or(ForkSchedule { current_version: 4, next: None })
}

pub struct EngineClient {
    url: String,
    secret: JwtSecret,
    agent: ureq::Agent,
    /// Unknown until the first build, then asked again every
    /// [`FORK_SCHEDULE_MAX_AGE`]; see [`ForkSchedule`].
    fork_schedule: Mutex<Option<KnownSchedule>>,
    next_request_id: AtomicU64,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for EngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClient").field("url", &self.url).field("secret", &self.secret).finish()
    }
}

impl EngineClient {
    pub fn new(url: &str, secret: JwtSecret) -> EngineClient {
        let agent = crate::http::client::agent(CONNECT_TIMEOUT, 4);
        EngineClient {
            url: url.trim_end_matches('/').to_owned(),
            secret,
            agent,
            fork_schedule: Mutex::new(None),
            next_request_id: AtomicU64::new(1),
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> EngineClient {
        self.metrics = Some(metrics);
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, method: &'static str, kind: EngineErrorKind) -> EngineError {
        EngineError { url: self.url.clone(), method, kind }
    }

    /// One JSON-RPC 2.0 call with a fresh JWT; returns the `result` member.
    fn call(&self, method: &'static str, params: Value, timeout: Duration) -> Result<Value, EngineError> {
        let started = Instant::now();
        let outcome = self.call_uninstrumented(method, params, timeout);
        if let Some(metrics) = &self.metrics {
            metrics.observe_engine_call(method, started.elapsed());
            if let Err(err) = &outcome {
                metrics.count_error(&format!("engine_{}", err.kind_label()));
            }
        }
        outcome
    }

    fn call_uninstrumented(
        &self,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, EngineError> {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut response = self
            .agent
            .post(&self.url)
            .header("Authorization", &format!("Bearer {}", self.secret.token_now()))
            .header("Content-Type", "application/json")
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body.as_bytes())
            .map_err(|e| self.error(method, transport_kind(e, timeout_ms)))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| self.error(method, transport_kind(e, timeout_ms)))?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(self.error(method, EngineErrorKind::Auth { status, body: shorten(&text) }));
            }
            _ => {
                return Err(self.error(method, EngineErrorKind::HttpStatus { status, body: shorten(&text) }));
            }
        }
        let mut reply: Value = serde_json::from_str(&text)
            .map_err(|e| self.error(method, EngineErrorKind::Malformed(format!("not JSON: {e}"))))?;
        if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
            // Still the client's refusal without an integer code (the spec
            // requires one): 0 is no JSON-RPC code, so it matches nothing.
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = error.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
            return Err(self.error(method, EngineErrorKind::Rpc { code, message: shorten(&message) }));
        }
        if reply.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(self.error(method, EngineErrorKind::Malformed(format!("reply id is not {id}"))));
        }
        match reply.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(self.error(method, EngineErrorKind::Malformed("no result and no error".into()))),
        }
    }

    fn malformed(&self, method: &'static str, reason: String) -> EngineError {
        self.error(method, EngineErrorKind::Malformed(reason))
    }

    pub fn exchange_capabilities(&self) -> Result<Vec<String>, EngineError> {
        const METHOD: &str = "engine_exchangeCapabilities";
        let result = self.call(METHOD, json!([CLNODE_CAPABILITIES]), EXCHANGE_CAPABILITIES_TIMEOUT)?;
        let list = result.as_array().ok_or_else(|| self.malformed(METHOD, "not a list".into()))?;
        Ok(list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
    }

    pub fn forkchoice_updated(
        &self,
        state: &ForkchoiceState,
        attributes: Option<&PayloadAttributes>,
    ) -> Result<ForkchoiceUpdated, EngineError> {
        const METHOD: &str = "engine_forkchoiceUpdatedV3";
        let attrs_json = attributes.map(PayloadAttributes::to_json).unwrap_or(Value::Null);
        let result = self.call(METHOD, json!([state.to_json(), attrs_json]), FORKCHOICE_UPDATED_TIMEOUT)?;
        let payload_status = result
            .get("payloadStatus")
            .ok_or_else(|| self.malformed(METHOD, "no payloadStatus".into()))
            .and_then(|s| PayloadStatus::from_json(s).map_err(|e| self.malformed(METHOD, e)))?;
        let payload_id = match result.get("payloadId") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(other) => return Err(self.malformed(METHOD, format!("payloadId is not a string: {other}"))),
        };
        Ok(ForkchoiceUpdated { payload_status, payload_id })
    }

    /// The fork schedule from `eth_config`, asked again once it is
    /// [`FORK_SCHEDULE_MAX_AGE`] old. A client without `eth_config` is taken
    /// to be on Prague; if it then refuses V4 with "unsupported fork",
    /// [`EngineClient::get_payload`] switches.
    fn fork_schedule(&self) -> ForkSchedule {
        let known = *self.fork_schedule.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(schedule) = fresh_schedule(known, Instant::now()) {
            return schedule;
        }
        let asked = self.call("eth_config", json!([]), ETH_QUERY_TIMEOUT);
        let no_eth_config = matches!(&asked, Err(err) if err.rpc_code() == Some(rpc_code::METHOD_NOT_FOUND));
        let schedule = schedule_after_asking(asked.ok().as_ref().and_then(ForkSchedule::from_eth_config), known);
        self.remember_schedule(schedule, no_eth_config);
        schedule
    }

    fn remember_schedule(&self, schedule: ForkSchedule, no_eth_config: bool) {
        let known = KnownSchedule { schedule, asked_at: Instant::now(), no_eth_config };
        *self.fork_schedule.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(known);
    }

    /// `getPayloadV4` on Prague, `getPayloadV5` on Osaka, chosen by the
    /// block's timestamp against the fork schedule.
    pub fn get_payload(&self, payload_id: &str, timestamp: u64) -> Result<BuiltPayload, EngineError> {
        let schedule = self.fork_schedule();
        let mut version = schedule.version_at(timestamp);
        // One switch at most: a client that refuses both versions is broken.
        for attempt in 0..2 {
            let method: &'static str = if version == 5 { "engine_getPayloadV5" } else { "engine_getPayloadV4" };
            match self.call(method, json!([payload_id]), GET_PAYLOAD_TIMEOUT) {
                Ok(result) => return self.parse_built_payload(method, result, version),
                Err(err)
                    if attempt == 0
                        && matches!(err.rpc_code(), Some(rpc_code::UNSUPPORTED_FORK | rpc_code::METHOD_NOT_FOUND)) =>
                {
                    version = if version == 5 { 4 } else { 5 };
                    // The schedule was wrong (no eth_config): remember what worked.
                    let no_eth_config = self
                        .fork_schedule
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .is_some_and(|k| k.no_eth_config);
                    self.remember_schedule(ForkSchedule { current_version: version, next: None }, no_eth_config);
                }
                Err(err) => return Err(err),
            }
        }
        Err(self.malformed("engine_getPayloadV4", "client refused getPayload V4 and V5".into()))
    }

    fn parse_built_payload(
        &self,
        method: &'static str,
        mut result: Value,
        version: u8,
    ) -> Result<BuiltPayload, EngineError> {
        let payload_json = result
            .get_mut("executionPayload")
            .map(Value::take)
            .ok_or_else(|| self.malformed(method, "no executionPayload".into()))?;
        let payload = ExecutionPayload::from_json(payload_json).map_err(|e| self.malformed(method, e))?;
        let blob_versioned_hashes =
            types::versioned_hashes_of_bundle(result.get("blobsBundle")).map_err(|e| self.malformed(method, e))?;
        let execution_requests =
            types::execution_requests_of(result.get("executionRequests")).map_err(|e| self.malformed(method, e))?;
        Ok(BuiltPayload { payload, blob_versioned_hashes, execution_requests, get_payload_version: version })
    }

    pub fn new_payload(
        &self,
        payload: &ExecutionPayload,
        blob_versioned_hashes: &[Hash32],
        parent_beacon_block_root: &Hash32,
        execution_requests: &[String],
    ) -> Result<PayloadStatus, EngineError> {
        const METHOD: &str = "engine_newPayloadV4";
        let hashes: Vec<String> = blob_versioned_hashes.iter().map(Hash32::to_hex).collect();
        let params = json!([payload.json(), hashes, parent_beacon_block_root.to_hex(), execution_requests]);
        let result = self.call(METHOD, params, NEW_PAYLOAD_TIMEOUT)?;
        PayloadStatus::from_json(&result).map_err(|e| self.malformed(METHOD, e))
    }

    pub fn block_by_number(&self, tag: BlockTag) -> Result<Option<BlockHeader>, EngineError> {
        const METHOD: &str = "eth_getBlockByNumber";
        let tag_json = match tag {
            BlockTag::Latest => json!("latest"),
            BlockTag::Number(n) => json!(encode_quantity(n)),
        };
        let result = self.call(METHOD, json!([tag_json, false]), ETH_QUERY_TIMEOUT)?;
        self.parse_optional_header(METHOD, &result)
    }

    pub fn block_by_hash(&self, hash: &Hash32) -> Result<Option<BlockHeader>, EngineError> {
        const METHOD: &str = "eth_getBlockByHash";
        let result = self.call(METHOD, json!([hash.to_hex(), false]), ETH_QUERY_TIMEOUT)?;
        self.parse_optional_header(METHOD, &result)
    }

    fn parse_optional_header(&self, method: &'static str, result: &Value) -> Result<Option<BlockHeader>, EngineError> {
        if result.is_null() {
            return Ok(None);
        }
        BlockHeader::from_json(result).map(Some).map_err(|e| self.malformed(method, e))
    }

    /// The client's head block; every client has at least genesis.
    pub fn latest_header(&self) -> Result<BlockHeader, EngineError> {
        self.block_by_number(BlockTag::Latest)?
            .ok_or_else(|| self.malformed("eth_getBlockByNumber", "no latest block".into()))
    }

    /// Starts a pending-transaction filter (`eth_newPendingTransactionFilter`,
    /// served on geth's authenticated port); returns its id.
    pub fn new_pending_transaction_filter(&self) -> Result<String, EngineError> {
        const METHOD: &str = "eth_newPendingTransactionFilter";
        let result = self.call(METHOD, json!([]), ETH_QUERY_TIMEOUT)?;
        result.as_str().map(str::to_owned).ok_or_else(|| self.malformed(METHOD, "filter id is not a string".into()))
    }

    /// Whether any transaction entered the pool since the filter's last
    /// poll (`eth_getFilterChanges`). Only the count matters, so the hashes
    /// are not parsed.
    pub fn pending_transactions_arrived(&self, filter_id: &str) -> Result<bool, EngineError> {
        const METHOD: &str = "eth_getFilterChanges";
        let result = self.call(METHOD, json!([filter_id]), ETH_QUERY_TIMEOUT)?;
        let changes = result.as_array().ok_or_else(|| self.malformed(METHOD, "not a list".into()))?;
        Ok(!changes.is_empty())
    }

    pub fn chain_id(&self) -> Result<u64, EngineError> {
        const METHOD: &str = "eth_chainId";
        let result = self.call(METHOD, json!([]), ETH_QUERY_TIMEOUT)?;
        let text = result.as_str().ok_or_else(|| self.malformed(METHOD, "not a string".into()))?;
        decode_quantity(text).map_err(|e| self.malformed(METHOD, e.to_string()))
    }
}

fn transport_kind(error: ureq::Error, timeout_ms: u64) -> EngineErrorKind {
    match error {
        ureq::Error::Timeout(_) => EngineErrorKind::Timeout { timeout_ms },
        ureq::Error::BodyExceedsLimit(limit) => {
            EngineErrorKind::Malformed(format!("response larger than {limit} bytes"))
        }
        other => EngineErrorKind::Transport(other.to_string()),
    }
}

fn shorten(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.chars().count() <= MAX_ERROR_BODY_CHARS {
        trimmed.to_owned()
    } else {
        let mut short: String = trimmed.chars().take(MAX_ERROR_BODY_CHARS).collect();
        short.push_str("...");
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_schedule_from_eth_config() {
        let prague = json!({"precompiles": {"ECREC": "0x01"}, "activationTime": 0});
        let osaka = json!({"precompiles": {"ECREC": "0x01", "P256VERIFY": "0x0100"}, "activationTime": 500});
        let now_osaka = ForkSchedule::from_eth_config(&json!({"current": osaka, "next": null})).unwrap();
        assert_eq!(now_osaka.version_at(0), 5);
        let scheduled = ForkSchedule::from_eth_config(&json!({"current": prague, "next": osaka})).unwrap();
        assert_eq!(scheduled.version_at(499), 4);
        assert_eq!(scheduled.version_at(500), 5);
        assert_eq!(ForkSchedule::from_eth_config(&json!({"current": {}})), None);
    }

    /// Issue 18.3: the schedule was asked once and kept for good, so a fork
    /// scheduled by restarting the client (clnode running) was never seen,
    /// and geth built the first Osaka blocks through getPayloadV4.
    #[test]
    fn a_known_schedule_is_used_until_it_is_old_then_asked_again() {
        let prague = ForkSchedule { current_version: 4, next: None };
        let now = Instant::now();
        let asked = |ago: Duration| {
            Some(KnownSchedule { schedule: prague, asked_at: now.checked_sub(ago).unwrap(), no_eth_config: false })
        };
        let without_eth_config = |ago: Duration| {
            Some(KnownSchedule { schedule: prague, asked_at: now.checked_sub(ago).unwrap(), no_eth_config: true })
        };
        let cases: [(Option<KnownSchedule>, Option<ForkSchedule>); 6] = [
            (None, None),
            (asked(Duration::ZERO), Some(prague)),
            (asked(FORK_SCHEDULE_MAX_AGE - Duration::from_millis(1)), Some(prague)),
            (asked(FORK_SCHEDULE_MAX_AGE), None),
            (asked(Duration::from_secs(60)), None),
            // Asking again would only fail again.
            (without_eth_config(Duration::from_secs(60)), Some(prague)),
        ];
        for (known, expected) in cases {
            assert_eq!(fresh_schedule(known, now), expected, "{known:?}");
        }
    }

    #[test]
    fn a_failed_ask_keeps_the_schedule_the_client_gave_before() {
        let prague = ForkSchedule { current_version: 4, next: None };
        let scheduled = ForkSchedule { current_version: 4, next: Some((500, 5)) };
        let known = Some(KnownSchedule { schedule: scheduled, asked_at: Instant::now(), no_eth_config: false });
        let cases = [
            (Some(prague), known, prague),
            (None, known, scheduled),
            (None, None, prague),
            (Some(scheduled), None, scheduled),
        ];
        for (answer, known, expected) in cases {
            assert_eq!(schedule_after_asking(answer, known), expected, "{answer:?} {known:?}");
        }
    }
}
