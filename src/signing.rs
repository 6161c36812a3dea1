//! Committed-block signatures: proof that a leader-mode node of the cluster
//! committed a record, not merely that some node served it.
//!
//! The cluster's leader-mode nodes share one Ed25519 key pair. The leader
//! signs each block when it commits it (before the fenced insert, so the
//! signature is stored with the row and every node serves the same one);
//! members pin the public key (`--leader-public-key`, a list so the key can
//! be rotated) and refuse any record no pinned key signed. A sync source, or
//! anyone on the path, can then withhold blocks but not feed a member a
//! different chain: it cannot sign one. The message is the one block.rs
//! builds for the HMAC (every field a member uses, each length-prefixed),
//! under its own domain. Keys are 32 bytes of hex in the project's own file
//! format, made by `clnode keygen`.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::Value;

use crate::block::{committed_message, StoredBlock, LEADER_SIGNATURE_FIELD};
use crate::codec::{decode_data, decode_hex_digits, encode_data};

/// Ed25519 secret seeds and public keys are 32 bytes.
pub const KEY_LEN_BYTES: usize = 32;
/// Ed25519 signatures are 64 bytes.
pub const SIGNATURE_LEN_BYTES: usize = 64;
/// Pinned public keys a member accepts at once: the current key and the
/// ones a rotation is moving away from.
pub const MAX_PINNED_KEYS: usize = 8;
/// A key file is 64 hex digits and a newline; anything large is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The file could not be read or written; carries the path and the OS error text.
    File {
        path: String,
        reason: String,
    },
    NotHex(String),
    WrongLength {
        actual_bytes: usize,
    },
    /// 32 bytes, but not a valid Ed25519 public key (not a curve point).
    NotAPublicKey,
    /// The operating system's random source failed.
    NoRandomness(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::File { path, reason } => write!(f, "key file {path}: {reason}"),
            KeyError::NotHex(reason) => write!(f, "key is not hex: {reason}"),
            KeyError::WrongLength { actual_bytes } => {
                write!(f, "key must be {KEY_LEN_BYTES} bytes (64 hex digits), got {actual_bytes} bytes")
            }
            KeyError::NotAPublicKey => f.write_str("not an Ed25519 public key"),
            KeyError::NoRandomness(reason) => write!(f, "cannot read /dev/urandom: {reason}"),
        }
    }
}

impl std::error::Error for KeyError {}

fn key_bytes(text: &str) -> Result<[u8; KEY_LEN_BYTES], KeyError> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
    let bytes = decode_hex_digits(digits).map_err(|e| KeyError::NotHex(e.to_string()))?;
    bytes.as_slice().try_into().map_err(|_| KeyError::WrongLength { actual_bytes: bytes.len() })
}

/// The cluster's block-signing key (leader-mode nodes only). Never printed.
#[derive(Clone)]
pub struct BlockSigningKey(SigningKey);

impl BlockSigningKey {
    pub fn from_hex(text: &str) -> Result<BlockSigningKey, KeyError> {
        Ok(BlockSigningKey(SigningKey::from_bytes(&key_bytes(text)?)))
    }

    pub fn from_file(path: &Path) -> Result<BlockSigningKey, KeyError> {
        let fail = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        let text = crate::secret::read_capped_text(path, MAX_KEY_FILE_BYTES, "key").map_err(fail)?;
        BlockSigningKey::from_hex(&text)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<BlockSigningKey, KeyError> {
        let mut seed = [0u8; KEY_LEN_BYTES];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut seed))
            .map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        Ok(BlockSigningKey(SigningKey::from_bytes(&seed)))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature over a block as it is stored and served, `0x` hex.
    pub fn sign(&self, block: &StoredBlock) -> String {
        // `to_wire_json` writes every signed field (the tests below verify
        // what this signs), so the message is never the empty fallback.
        let message = committed_message(&block.to_wire_json()).unwrap_or_default();
        encode_data(&self.0.sign(&message).to_bytes())
    }

    /// The key file's text: only `clnode keygen` writes it.
    fn file_text(&self) -> String {
        format!("{}\n", encode_data(self.0.as_bytes()))
    }
}

impl fmt::Debug for BlockSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlockSigningKey(<redacted>)")
    }
}

/// A public key members pin. Prints as `0x` hex.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = key_bytes(text)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPublicKey)?;
        // A weak (small-order) key would verify forged signatures.
        if key.is_weak() {
            return Err(KeyError::NotAPublicKey);
        }
        Ok(PublicKey(key))
    }

    pub fn to_hex(&self) -> String {
        encode_data(self.0.as_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Comma-separated public keys, 1 to [`MAX_PINNED_KEYS`].
pub fn parse_public_keys(list: &str) -> Result<Vec<PublicKey>, String> {
    let parts: Vec<&str> = list.split(',').map(str::trim).filter(|part| !part.is_empty()).collect();
    if parts.is_empty() || parts.len() > MAX_PINNED_KEYS {
        return Err(format!("needs between 1 and {MAX_PINNED_KEYS} comma-separated public keys"));
    }
    parts.iter().map(|part| PublicKey::from_hex(part).map_err(|e| e.to_string())).collect()
}

/// What a member accepts from its sync sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordTrust {
    /// Only records a pinned key signed (the default: a member must pin).
    Pinned(Vec<PublicKey>),
    /// Anything that decodes and links (`--insecure-unsigned-records`).
    Unverified,
}

/// Checks a wire record's leader signature against the pinned keys.
pub fn verify_committed(keys: &[PublicKey], wire: &Value) -> Result<(), String> {
    let presented = wire.get(LEADER_SIGNATURE_FIELD).and_then(Value::as_str).ok_or(
        "record carries no leader signature (this member accepts only blocks signed by a pinned --leader-public-key)",
    )?;
    let bytes = decode_data(presented).map_err(|e| format!("leader signature is not hex: {e}"))?;
    let bytes: [u8; SIGNATURE_LEN_BYTES] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("leader signature is {} bytes, not {SIGNATURE_LEN_BYTES}", bytes.len()))?;
    let signature = Signature::from_bytes(&bytes);
    let message = committed_message(wire)?;
    if keys.iter().any(|key| key.0.verify_strict(&message, &signature).is_ok()) {
        Ok(())
    } else {
        Err("leader signature does not verify with any pinned --leader-public-key (not a block this cluster committed)"
            .into())
    }
}

/// `clnode keygen PATH` writes a new key file (mode 600, never over an
/// existing file) and prints its public key; `clnode keygen --public PATH`
/// prints the public key of an existing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeygenArgs {
    pub path: PathBuf,
    pub public_only: bool,
}

/// Runs `clnode keygen`; the public key goes to stdout, errors to stderr.
pub fn run_keygen(args: &KeygenArgs) -> Result<String, KeyError> {
    if args.public_only {
        return Ok(BlockSigningKey::from_file(&args.path)?.public_key().to_hex());
    }
    let key = BlockSigningKey::generate()?;
    write_new_key_file(&args.path, &key)?;
    Ok(key.public_key().to_hex())
}

fn write_new_key_file(path: &Path, key: &BlockSigningKey) -> Result<(), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |e: std::io::Error| KeyError::File { path: path.display().to_string(), reason: e.to_string() };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(fail)?;
    file.write_all(key.file_text().as_bytes()).and_then(|()| file.sync_all()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::tests::sample_record;
    use crate::block::BlockRecord;
    use crate::codec::Hash32;

    const SEED: &str = "0x9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    fn signed_wire(key: &BlockSigningKey) -> Value {
        let mut stored = sample_record(7, Hash32([9; 32])).to_stored();
        stored.leader_signature = Some(key.sign(&stored));
        stored.to_wire_json()
    }

    #[test]
    fn only_a_pinned_key_verifies_and_every_field_is_covered() {
        let key = BlockSigningKey::from_hex(SEED).unwrap();
        let other = BlockSigningKey::generate().unwrap();
        let wire = signed_wire(&key);
        assert!(verify_committed(&[key.public_key()], &wire).is_ok());
        assert!(verify_committed(&[other.public_key(), key.public_key()], &wire).is_ok(), "rotation list");
        let error = verify_committed(&[other.public_key()], &wire).unwrap_err();
        assert!(error.contains("does not verify"), "{error}");
        let tampered_fields: [(&str, Value); 10] = [
            ("block_number", serde_json::json!(8)),
            ("timestamp", serde_json::json!(1)),
            ("payload_version", serde_json::json!(5)),
            ("term", serde_json::json!(4)),
            ("block_hash", serde_json::json!(Hash32([1; 32]).to_hex())),
            ("parent_hash", serde_json::json!(Hash32([1; 32]).to_hex())),
            ("payload_data", serde_json::json!("e30=")),
            ("requests_data", serde_json::json!("W10=")),
            ("parent_beacon_block_root", serde_json::json!(Hash32([1; 32]).to_hex())),
            ("blob_versioned_hashes", serde_json::json!([])),
        ];
        for (field, value) in tampered_fields {
            let mut tampered = wire.clone();
            tampered[field] = value;
            assert!(verify_committed(&[key.public_key()], &tampered).is_err(), "{field} is not covered");
        }
        let mut unsigned = wire.clone();
        unsigned.as_object_mut().unwrap().remove(LEADER_SIGNATURE_FIELD);
        assert!(verify_committed(&[key.public_key()], &unsigned).unwrap_err().contains("no leader signature"));
        let mut short = wire;
        short[LEADER_SIGNATURE_FIELD] = serde_json::json!("0x0102");
        assert!(verify_committed(&[key.public_key()], &short).unwrap_err().contains("not 64"));
    }

    #[test]
    fn a_relayed_record_keeps_a_signature_that_verifies() {
        // A member decodes a record, stores it and serves it again: the
        // signature it passes on must still cover the bytes it serves.
        let key = BlockSigningKey::from_hex(SEED).unwrap();
        let wire = signed_wire(&key);
        let relayed = BlockRecord::from_wire_json(&wire).unwrap().to_stored().to_wire_json();
        assert_eq!(relayed, wire);
        assert!(verify_committed(&[key.public_key()], &relayed).is_ok());
    }

    #[test]
    fn keys_parse_strictly_and_never_print() {
        let key = BlockSigningKey::from_hex(SEED).unwrap();
        // RFC 8032 test vector 1: this seed's public key.
        assert_eq!(key.public_key().to_hex(), "0xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert!(!format!("{key:?}").contains("9d61"));
        assert_eq!(BlockSigningKey::from_hex("0x1234").unwrap_err(), KeyError::WrongLength { actual_bytes: 2 });
        assert!(matches!(BlockSigningKey::from_hex("zz"), Err(KeyError::NotHex(_))));
        let keys = parse_public_keys(&format!("{}, {}", key.public_key(), key.public_key())).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(parse_public_keys(" , ").unwrap_err().contains("between 1 and 8"));
        // The identity point is a weak key: it would accept forgeries.
        let identity = format!("0x01{}", "00".repeat(31));
        assert!(parse_public_keys(&identity).unwrap_err().contains("not an Ed25519 public key"));
    }

    #[test]
    fn keygen_writes_a_private_file_once_and_reads_it_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::env::temp_dir().join(format!("clnode-keygen-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let public = run_keygen(&KeygenArgs { path: path.clone(), public_only: false }).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(run_keygen(&KeygenArgs { path: path.clone(), public_only: true }).unwrap(), public);
        let again = run_keygen(&KeygenArgs { path: path.clone(), public_only: false });
        assert!(matches!(again, Err(KeyError::File { .. })), "an existing key is never overwritten");
        std::fs::remove_file(&path).unwrap();
    }
}
