//! The part of MessagePack (github.com/msgpack/msgpack spec) the seed's
//! records use: nil, booleans, integers, strings, binary, arrays and maps.
//! Extensions and floats are refused. Decoding is bounded: nesting depth,
//! and every length is checked against the bytes that remain before
//! anything is allocated.
//!
//! Written here rather than taken from a crate: the seed's records need
//! about 150 lines of it, and the crate candidates (rmp, rmpv) would add
//! a dependency tree for what is a fixed, tested subset.

use std::fmt;

/// How deep arrays and maps may nest (the seed's payload nests three deep:
/// payload, withdrawals, one withdrawal).
pub const MAX_DEPTH: usize = 8;

/// One decoded value. Maps keep their order (the seed's are Go structs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Nil,
    Bool(bool),
    /// Every non-negative integer, whatever width it was written with.
    Uint(u64),
    /// A negative integer.
    Int(i64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// The value of `key` in a map with string keys.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// What kind of value this is, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "a boolean",
            Value::Uint(_) | Value::Int(_) => "an integer",
            Value::Str(_) => "a string",
            Value::Bin(_) => "binary",
            Value::Array(_) => "an array",
            Value::Map(_) => "a map",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgpackError {
    /// The input ends inside a value.
    Truncated,
    /// Bytes remain after the value.
    TrailingBytes(usize),
    /// A type byte outside the subset (an extension, a float, reserved 0xc1).
    Unsupported(u8),
    TooDeep,
    InvalidUtf8,
}

impl fmt::Display for MsgpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgpackError::Truncated => write!(f, "msgpack ends inside a value"),
            MsgpackError::TrailingBytes(n) => write!(f, "{n} bytes after the msgpack value"),
            MsgpackError::Unsupported(byte) => write!(f, "msgpack type 0x{byte:02x} is not supported"),
            MsgpackError::TooDeep => write!(f, "msgpack nests deeper than {MAX_DEPTH}"),
            MsgpackError::InvalidUtf8 => write!(f, "msgpack string is not UTF-8"),
        }
    }
}

impl std::error::Error for MsgpackError {}

/// Decodes exactly one value that fills `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, MsgpackError> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.value(0)?;
    match bytes.len() - reader.at {
        0 => Ok(value),
        rest => Err(MsgpackError::TrailingBytes(rest)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], MsgpackError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or(MsgpackError::Truncated)?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn uint(&mut self, width: usize) -> Result<u64, MsgpackError> {
        Ok(self.take(width)?.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)))
    }

    fn int(&mut self, width: usize) -> Result<i64, MsgpackError> {
        let raw = self.uint(width)?;
        // Sign-extend from `width` (1 to 8) bytes.
        let shift = 64 - 8 * u32::try_from(width).unwrap_or(8);
        Ok((raw << shift).cast_signed() >> shift)
    }

    fn length(&mut self, width: usize) -> Result<usize, MsgpackError> {
        usize::try_from(self.uint(width)?).map_err(|_| MsgpackError::Truncated)
    }

    /// A count of items, each at least one byte: more than remain is a
    /// truncated input, refused before allocating for it.
    fn count(&mut self, width: usize, bytes_per_item: usize) -> Result<usize, MsgpackError> {
        let count = self.length(width)?;
        let remaining = self.bytes.len() - self.at;
        if count.saturating_mul(bytes_per_item) > remaining {
            return Err(MsgpackError::Truncated);
        }
        Ok(count)
    }

    fn str(&mut self, len: usize) -> Result<Value, MsgpackError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map(Value::Str).map_err(|_| MsgpackError::InvalidUtf8)
    }

    fn array(&mut self, count: usize, depth: usize) -> Result<Value, MsgpackError> {
        (0..count).map(|_| self.value(depth + 1)).collect::<Result<_, _>>().map(Value::Array)
    }

    fn map(&mut self, count: usize, depth: usize) -> Result<Value, MsgpackError> {
        (0..count)
            .map(|_| Ok((self.value(depth + 1)?, self.value(depth + 1)?)))
            .collect::<Result<_, _>>()
            .map(Value::Map)
    }

    fn value(&mut self, depth: usize) -> Result<Value, MsgpackError> {
        if depth > MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        let byte = self.take(1)?[0];
        match byte {
            0x00..=0x7f => Ok(Value::Uint(u64::from(byte))),
            0x80..=0x8f => self.map(usize::from(byte & 0x0f), depth),
            0x90..=0x9f => self.array(usize::from(byte & 0x0f), depth),
            0xa0..=0xbf => self.str(usize::from(byte & 0x1f)),
            0xc0 => Ok(Value::Nil),
            0xc2 => Ok(Value::Bool(false)),
            0xc3 => Ok(Value::Bool(true)),
            0xc4..=0xc6 => {
                let len = self.length(1 << (byte - 0xc4))?;
                Ok(Value::Bin(self.take(len)?.to_vec()))
            }
            0xcc..=0xcf => self.uint(1 << (byte - 0xcc)).map(Value::Uint),
            0xd0..=0xd3 => self.int(1 << (byte - 0xd0)).map(|n| u64::try_from(n).map_or(Value::Int(n), Value::Uint)),
            0xd9..=0xdb => {
                let len = self.length(1 << (byte - 0xd9))?;
                self.str(len)
            }
            0xdc | 0xdd => {
                let count = self.count(if byte == 0xdc { 2 } else { 4 }, 1)?;
                self.array(count, depth)
            }
            0xde | 0xdf => {
                let count = self.count(if byte == 0xde { 2 } else { 4 }, 2)?;
                self.map(count, depth)
            }
            0xe0..=0xff => Ok(Value::Int(i64::from(byte.cast_signed()))),
            other => Err(MsgpackError::Unsupported(other)),
        }
    }
}

/// Encodes `value` the way Go's vmihailenco/msgpack/v5 writes the seed's
/// records by default: unsigned integers always as uint64 (0xcf), the
/// shortest header for strings, binary, arrays and maps.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Uint(n) => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Int(n) => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Str(s) => {
            let len = s.len();
            if let Some(short) = u8::try_from(len).ok().filter(|n| *n < 32) {
                out.push(0xa0 | short);
            } else {
                header(out, len, [0xd9, 0xda, 0xdb]);
            }
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bin(bytes) => {
            header(out, bytes.len(), [0xc4, 0xc5, 0xc6]);
            out.extend_from_slice(bytes);
        }
        Value::Array(items) => {
            if let Some(short) = u8::try_from(items.len()).ok().filter(|n| *n < 16) {
                out.push(0x90 | short);
            } else {
                header(out, items.len(), [0xdc, 0xdc, 0xdd]);
            }
            for item in items {
                write(out, item);
            }
        }
        Value::Map(entries) => {
            if let Some(short) = u8::try_from(entries.len()).ok().filter(|n| *n < 16) {
                out.push(0x80 | short);
            } else {
                header(out, entries.len(), [0xde, 0xde, 0xdf]);
            }
            for (key, item) in entries {
                write(out, key);
                write(out, item);
            }
        }
    }
}

/// A length after the type byte for 8-, 16- or 32-bit lengths (arrays and
/// maps have no 8-bit form: their first two entries are the same byte).
fn header(out: &mut Vec<u8>, len: usize, types: [u8; 3]) {
    if let Some(short) = u8::try_from(len).ok().filter(|_| types[0] != types[1]) {
        out.push(types[0]);
        out.push(short);
    } else if let Ok(medium) = u16::try_from(len) {
        out.push(types[1]);
        out.extend_from_slice(&medium.to_be_bytes());
    } else {
        out.push(types[2]);
        // Records are far below 4 GiB; a larger length would not decode anywhere.
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_type_round_trips() {
        let value = Value::Map(vec![
            (Value::Str("Number".into()), Value::Uint(5)),
            (Value::Str("Big".into()), Value::Uint(u64::MAX)),
            (Value::Str("Negative".into()), Value::Int(-300)),
            (Value::Str("Flag".into()), Value::Bool(true)),
            (Value::Str("Nothing".into()), Value::Nil),
            (Value::Str("Bytes".into()), Value::Bin(vec![7; 300])),
            (Value::Str("Long".into()), Value::Str("x".repeat(40))),
            (Value::Str("List".into()), Value::Array((0..20).map(Value::Uint).collect())),
        ]);
        assert_eq!(decode(&encode(&value)), Ok(value));
    }

    #[test]
    fn go_msgpack_forms_decode() {
        // Written by vmihailenco/msgpack/v5 (tools/seedwire): a struct as a
        // map of field names, a uint64, a bin8, an empty array and nil.
        let bytes = [
            0x84, 0xa6, b'N', b'u', b'm', b'b', b'e', b'r', 0xcf, 0, 0, 0, 0, 0, 0, 0, 5, 0xa9, b'E', b'x', b't', b'r',
            b'a', b'D', b'a', b't', b'a', 0xc4, 0x01, 0xab, 0xa4, b'L', b'i', b's', b't', 0x90, 0xa4, b'N', b'o', b'n',
            b'e', 0xc0,
        ];
        let value = decode(&bytes).unwrap();
        assert_eq!(value.get("Number"), Some(&Value::Uint(5)));
        assert_eq!(value.get("ExtraData"), Some(&Value::Bin(vec![0xab])));
        assert_eq!(value.get("List"), Some(&Value::Array(vec![])));
        assert_eq!(value.get("None"), Some(&Value::Nil));
        assert_eq!(encode(&value), bytes, "written back byte for byte");
        // Compact integer forms Go writes with UseCompactInts decode too.
        assert_eq!(decode(&[0xcc, 0xff]), Ok(Value::Uint(255)));
        assert_eq!(decode(&[0xcd, 0x01, 0x00]), Ok(Value::Uint(256)));
        assert_eq!(decode(&[0xd0, 0xff]), Ok(Value::Int(-1)));
        assert_eq!(decode(&[0xff]), Ok(Value::Int(-1)));
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic_or_a_huge_allocation() {
        let cases: [(&[u8], MsgpackError); 8] = [
            (&[], MsgpackError::Truncated),
            (&[0xc4, 0x05, 1, 2], MsgpackError::Truncated),
            (&[0xdd, 0xff, 0xff, 0xff, 0xff], MsgpackError::Truncated),
            (&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01], MsgpackError::Truncated),
            (&[0xc0, 0xc0], MsgpackError::TrailingBytes(1)),
            (&[0xc1], MsgpackError::Unsupported(0xc1)),
            (&[0xcb, 0, 0, 0, 0, 0, 0, 0, 0], MsgpackError::Unsupported(0xcb)),
            (&[0xa1, 0xff], MsgpackError::InvalidUtf8),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(bytes), Err(expected), "{bytes:02x?}");
        }
        let deep = [0x91u8; MAX_DEPTH + 2];
        assert_eq!(decode(&deep), Err(MsgpackError::TooDeep));
    }
}
