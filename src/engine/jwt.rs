//! Engine API authentication: the shared secret and HS256 tokens, by hand.
//!
//! The secret is the only credential between clnode and its execution client,
//! so it lives in a type that never prints its bytes (Debug and Display are
//! redacted) and that refuses anything but exactly 32 bytes.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::codec::decode_hex_digits;

/// Exactly what EthereumJS accepts: it decodes the header strictly.
const JWT_HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Size of the Engine API secret in bytes (execution-apis authentication.md).
pub const JWT_SECRET_LEN_BYTES: usize = 32;

/// The 32-byte Engine API secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret([u8; JWT_SECRET_LEN_BYTES]);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtSecretError {
    /// The file could not be read; carries the path and the OS error text.
    Unreadable {
        path: String,
        reason: String,
    },
    NotHex(String),
    WrongLength {
        actual_bytes: usize,
    },
}

impl fmt::Display for JwtSecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtSecretError::Unreadable { path, reason } => {
                write!(f, "cannot read JWT secret file {path}: {reason}")
            }
            JwtSecretError::NotHex(reason) => write!(f, "JWT secret is not hex: {reason}"),
            JwtSecretError::WrongLength { actual_bytes } => write!(
                f,
                "JWT secret must be exactly {JWT_SECRET_LEN_BYTES} bytes (64 hex digits), got {actual_bytes} bytes"
            ),
        }
    }
}

impl std::error::Error for JwtSecretError {}

impl JwtSecret {
    /// Parses 64 hex digits, with an optional `0x` and surrounding whitespace.
    pub fn from_hex(text: &str) -> Result<JwtSecret, JwtSecretError> {
        let trimmed = text.trim();
        let digits = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
        let bytes = decode_hex_digits(digits).map_err(|e| JwtSecretError::NotHex(e.to_string()))?;
        let array: [u8; JWT_SECRET_LEN_BYTES] =
            bytes.as_slice().try_into().map_err(|_| JwtSecretError::WrongLength { actual_bytes: bytes.len() })?;
        Ok(JwtSecret(array))
    }

    pub fn from_file(path: &Path) -> Result<JwtSecret, JwtSecretError> {
        // A secret file is 64 hex digits; refuse to read anything large.
        const MAX_SECRET_FILE_BYTES: u64 = 4096;
        let unreadable = |reason: String| JwtSecretError::Unreadable { path: path.display().to_string(), reason };
        let text = crate::secret::read_capped_text(path, MAX_SECRET_FILE_BYTES, "secret").map_err(unreadable)?;
        JwtSecret::from_hex(&text)
    }

    /// A token for one request, issued now.
    pub fn token_now(&self) -> String {
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.token_at(now_s)
    }

    /// A token whose only claim is `iat` (the Engine API requires nothing else).
    pub fn token_at(&self, issued_at_s: u64) -> String {
        let claims = format!(r#"{{"iat":{issued_at_s}}}"#);
        hs256_token(&self.0, JWT_HEADER_JSON.as_bytes(), claims.as_bytes())
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

impl fmt::Display for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Builds `base64url(header).base64url(claims).base64url(HMAC-SHA256)` (RFC 7515).
pub fn hs256_token(key: &[u8], header_json: &[u8], claims_json: &[u8]) -> String {
    let mut token = String::with_capacity(160);
    token.push_str(&URL_SAFE_NO_PAD.encode(header_json));
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims_json));
    let signature = hs256(key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hs256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length (RFC 2104 hashes a long one and pads
    // a short one), so `new_from_slice` has no error to return here.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7515 appendix A.1: the HS256 example, with its exact header and
    /// claims bytes (including CRLFs) and its published signature.
    #[test]
    fn hs256_matches_rfc7515_appendix_a1() {
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let header = b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
        let claims = b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
        let token = hs256_token(&key, header, claims);
        assert_eq!(
            token,
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
             eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
             dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn engine_token_has_the_exact_header_and_an_iat_claim() {
        let secret = JwtSecret::from_hex(&"11".repeat(32)).unwrap();
        let token = secret.token_at(1_700_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), JWT_HEADER_JSON.as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[1]).unwrap(), br#"{"iat":1700000000}"#);
        let expected = hs256(&[0x11; 32], format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), expected);
    }

    #[test]
    fn secret_parsing_accepts_prefix_and_whitespace() {
        let hex = "ab".repeat(32);
        let plain = JwtSecret::from_hex(&hex).unwrap();
        assert_eq!(JwtSecret::from_hex(&format!("0x{hex}")).unwrap(), plain);
        assert_eq!(JwtSecret::from_hex(&format!("  0x{hex}\n")).unwrap(), plain);
        assert_eq!(JwtSecret::from_hex(&hex.to_uppercase()).unwrap(), plain);
    }

    #[test]
    fn secret_parsing_refuses_wrong_length_and_bad_hex() {
        assert_eq!(JwtSecret::from_hex(&"ab".repeat(31)), Err(JwtSecretError::WrongLength { actual_bytes: 31 }));
        assert_eq!(JwtSecret::from_hex(&"ab".repeat(33)), Err(JwtSecretError::WrongLength { actual_bytes: 33 }));
        assert_eq!(JwtSecret::from_hex(""), Err(JwtSecretError::WrongLength { actual_bytes: 0 }));
        assert!(matches!(JwtSecret::from_hex(&"zz".repeat(32)), Err(JwtSecretError::NotHex(_))));
        assert!(matches!(JwtSecret::from_hex(&"a".repeat(63)), Err(JwtSecretError::NotHex(_))));
    }

    #[test]
    fn secret_is_never_printed() {
        let secret = JwtSecret::from_hex(&"ab".repeat(32)).unwrap();
        let shown = format!("{secret:?} {secret}");
        assert!(!shown.contains("abab"), "secret bytes leaked: {shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn secret_file_errors_name_the_path() {
        let err = JwtSecret::from_file(Path::new("/nonexistent/jwt.hex")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/jwt.hex"), "{err}");
    }
}
