//! The one error type of the Engine API client.

use std::fmt;

/// A failed Engine API or `eth_` call, always naming the URL and the method.
#[derive(Debug, Clone)]
pub struct EngineError {
    pub url: String,
    pub method: &'static str,
    pub kind: EngineErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineErrorKind {
    /// Connection refused, reset, DNS, or any other I/O failure.
    Transport(String),
    /// The method's timeout elapsed.
    Timeout { timeout_ms: u64 },
    /// 401/403: the JWT was refused; carries the client's own text
    /// (geth says "missing token", "stale token", "signature is invalid", ...).
    Auth { status: u16, body: String },
    /// Any other non-200 HTTP status.
    HttpStatus { status: u16, body: String },
    /// A JSON-RPC error object.
    Rpc { code: i64, message: String },
    /// The answer was not the JSON-RPC or the shape the method promises.
    Malformed(String),
}

/// JSON-RPC error codes of the Engine API (execution-apis src/engine/common.md).
pub mod rpc_code {
    pub const UNKNOWN_PAYLOAD: i64 = -38001;
    pub const INVALID_FORKCHOICE_STATE: i64 = -38002;
    pub const INVALID_PAYLOAD_ATTRIBUTES: i64 = -38003;
    pub const UNSUPPORTED_FORK: i64 = -38005;
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

impl EngineError {
    pub fn rpc_code(&self) -> Option<i64> {
        match self.kind {
            EngineErrorKind::Rpc { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Stable short label for metrics (`errors_total{kind=...}`).
    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            EngineErrorKind::Transport(_) => "transport",
            EngineErrorKind::Timeout { .. } => "timeout",
            EngineErrorKind::Auth { .. } => "auth",
            EngineErrorKind::HttpStatus { .. } => "http_status",
            EngineErrorKind::Rpc { .. } => "rpc",
            EngineErrorKind::Malformed(_) => "malformed",
        }
    }

    /// True when the execution client could not be reached at all, as
    /// opposed to reached and refusing; used to report "EL unreachable".
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, EngineErrorKind::Transport(_) | EngineErrorKind::Timeout { .. })
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}: ", self.method, self.url)?;
        match &self.kind {
            EngineErrorKind::Transport(reason) => write!(f, "transport error: {reason}"),
            EngineErrorKind::Timeout { timeout_ms } => write!(f, "timed out after {timeout_ms} ms"),
            EngineErrorKind::Auth { status, body } => {
                write!(f, "authentication refused (HTTP {status}): {body}")
            }
            EngineErrorKind::HttpStatus { status, body } => write!(f, "HTTP {status}: {body}"),
            EngineErrorKind::Rpc { code, message } => write!(f, "JSON-RPC error {code}: {message}"),
            EngineErrorKind::Malformed(reason) => write!(f, "malformed response: {reason}"),
        }
    }
}

impl std::error::Error for EngineError {}
