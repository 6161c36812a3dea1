//! Ethereum JSON-RPC value encodings: QUANTITY, DATA and 32-byte hashes.
//!
//! Every value that crosses the Engine API or the sync API is parsed here, so
//! malformed input is refused in one place with one error type. Nothing here
//! panics on input.

use std::fmt;

/// A 32-byte hash (block hash, beacon root, versioned hash).
///
/// Kept as bytes so comparisons are exact; rendered as lowercase `0x` hex,
/// which is how the sync API and PostgreSQL store it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub const ZERO: Hash32 = Hash32([0u8; 32]);

    /// Parses `0x` followed by exactly 64 hex digits, either case.
    pub fn parse(text: &str) -> Result<Hash32, CodecError> {
        let bytes = decode_data(text)?;
        let array: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| CodecError::WrongLength { expected: 32, actual: bytes.len() })?;
        Ok(Hash32(array))
    }

    pub fn to_hex(&self) -> String {
        encode_data(&self.0)
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    MissingPrefix,
    OddLength,
    BadHexDigit(char),
    LeadingZero,
    Empty,
    Overflow,
    WrongLength { expected: usize, actual: usize },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::MissingPrefix => write!(f, "missing 0x prefix"),
            CodecError::OddLength => write!(f, "odd number of hex digits"),
            CodecError::BadHexDigit(c) => write!(f, "invalid hex digit {c:?}"),
            CodecError::LeadingZero => write!(f, "quantity has a leading zero"),
            CodecError::Empty => write!(f, "quantity has no digits"),
            CodecError::Overflow => write!(f, "quantity does not fit in 64 bits"),
            CodecError::WrongLength { expected, actual } => {
                write!(f, "expected {expected} bytes, got {actual}")
            }
        }
    }
}

impl std::error::Error for CodecError {}

/// QUANTITY: `0x` + hex without leading zeros; zero is `0x0`.
pub fn encode_quantity(value: u64) -> String {
    format!("0x{value:x}")
}

/// Parses a QUANTITY strictly (geth rejects leading zeros, so we do too).
pub fn decode_quantity(text: &str) -> Result<u64, CodecError> {
    let digits = text.strip_prefix("0x").ok_or(CodecError::MissingPrefix)?;
    if digits.is_empty() {
        return Err(CodecError::Empty);
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(CodecError::LeadingZero);
    }
    if digits.len() > 16 {
        return Err(CodecError::Overflow);
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        let nibble = c.to_digit(16).ok_or(CodecError::BadHexDigit(c))?;
        value = (value << 4) | u64::from(nibble);
    }
    Ok(value)
}

/// DATA: `0x` + even-length lowercase hex.
pub fn encode_data(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Parses DATA (`0x` prefix required, either case accepted).
pub fn decode_data(text: &str) -> Result<Vec<u8>, CodecError> {
    let digits = text.strip_prefix("0x").ok_or(CodecError::MissingPrefix)?;
    decode_hex_digits(digits)
}

/// Decodes bare hex digits (no prefix), as found in JWT secret files.
pub fn decode_hex_digits(digits: &str) -> Result<Vec<u8>, CodecError> {
    let bytes = digits.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(CodecError::OddLength);
    }
    let nibble = |b: u8| -> Result<u8, CodecError> {
        match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            // Non-ASCII bytes are reported as the replacement character.
            other => Err(CodecError::BadHexDigit(if other.is_ascii() { char::from(other) } else { '\u{fffd}' })),
        }
    };
    bytes.chunks_exact(2).map(|pair| Ok((nibble(pair[0])? << 4) | nibble(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_round_trips_and_uses_no_leading_zeros() {
        assert_eq!(encode_quantity(0), "0x0");
        assert_eq!(encode_quantity(1), "0x1");
        assert_eq!(encode_quantity(0x400), "0x400");
        assert_eq!(encode_quantity(u64::MAX), "0xffffffffffffffff");
        for value in [0u64, 1, 15, 16, 255, 256, 1_700_000_000, u64::MAX] {
            assert_eq!(decode_quantity(&encode_quantity(value)), Ok(value));
        }
    }

    #[test]
    fn quantity_rejects_malformed_input() {
        assert_eq!(decode_quantity("0x01"), Err(CodecError::LeadingZero));
        assert_eq!(decode_quantity("0x"), Err(CodecError::Empty));
        assert_eq!(decode_quantity("12"), Err(CodecError::MissingPrefix));
        assert_eq!(decode_quantity("0xg"), Err(CodecError::BadHexDigit('g')));
        assert_eq!(decode_quantity("0x10000000000000000"), Err(CodecError::Overflow));
        assert_eq!(decode_quantity("0xABC"), Ok(0xabc));
    }

    #[test]
    fn data_round_trips() {
        let bytes = [0x00, 0x01, 0xab, 0xff];
        assert_eq!(encode_data(&bytes), "0x0001abff");
        assert_eq!(decode_data("0x0001ABff").unwrap(), bytes.to_vec());
        assert_eq!(decode_data("0x").unwrap(), Vec::<u8>::new());
        assert_eq!(decode_data("0x123"), Err(CodecError::OddLength));
        assert_eq!(decode_data("0xzz"), Err(CodecError::BadHexDigit('z')));
        assert_eq!(decode_data("0xé0"), Err(CodecError::OddLength));
        assert_eq!(decode_data("0xéé"), Err(CodecError::BadHexDigit('\u{fffd}')));
    }

    #[test]
    fn hash32_requires_exactly_32_bytes() {
        let text = format!("0x{}", "ab".repeat(32));
        assert_eq!(Hash32::parse(&text).unwrap().to_hex(), text);
        assert_eq!(
            Hash32::parse(&format!("0x{}", "AB".repeat(32))).unwrap().to_hex(),
            text,
            "hashes are case-insensitive and rendered lowercase"
        );
        assert_eq!(Hash32::parse("0xabcd"), Err(CodecError::WrongLength { expected: 32, actual: 2 }));
    }
}
