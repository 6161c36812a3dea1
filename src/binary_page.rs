//! The compact page encoding a member asks for with `format=binary`
//! (`GET /blocks?...&format=binary`, answered as `application/octet-stream`).
//! curl users get readable JSON by default; members get their blocks in
//! about the bytes the blocks themselves take, where JSON carries each
//! payload as hex inside JSON inside base64 (2.7× the raw bytes).
//!
//! No new crate: the encoding is length-prefixed fields, and the payload
//! text is "hex-packed": every JSON string `"0x…"` of lowercase hex digits
//! is replaced by its bytes. Packing is lossless for any text, so the member
//! rebuilds exactly the text the leader stored, hence exactly the JSON
//! record (`StoredBlock::to_wire_json`): both signatures (the serving node's
//! HMAC and the committing leader's Ed25519) are checked on that record as
//! before, over the same bytes.
//!
//! Layout (all integers big-endian):
//! ```text
//! page    := "CLNB" version:u8(=1) head:u64 record*        (to the end of the body)
//! record  := length:u32 fields                             (length = bytes of fields)
//! fields  := block_number:u64 timestamp:u64 payload_version:u8 term:u64
//!            text(block_hash) text(parent_hash) text(parent_beacon_block_root)
//!            packed(payload_json) packed(requests_json) packed(blob_versioned_hashes_json)
//!            optional(leader_signature) optional(signature)
//! text    := length:u32 UTF-8 bytes
//! packed  := length:u32 hex-packed bytes
//! optional:= 0:u8 | 1:u8 text
//! hex-packed: byte 0x01, LEB128 n, n bytes  = the text "0x<2n lowercase hex digits>" with its quotes
//!             byte 0x02, b                  = the byte b (escapes 0x01 and 0x02 themselves)
//!             any other byte                = itself
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::block::{StoredBlock, LEADER_SIGNATURE_FIELD, SIGNATURE_FIELD};

/// The body's first bytes.
pub const MAGIC: &[u8; 4] = b"CLNB";
pub const VERSION: u8 = 1;
/// Magic, version and head.
pub const HEADER_LEN: usize = 4 + 1 + 8;
/// The content type of a binary page.
pub const CONTENT_TYPE: &str = "application/octet-stream";

const PACKED_HEX: u8 = 0x01;
const ESCAPED: u8 = 0x02;

/// The value of each byte as a lowercase hex digit, [`NOT_HEX`] otherwise.
const HEX_VALUES: [u8; 256] = {
    let mut values = [NOT_HEX; 256];
    let mut digit: u8 = 0;
    while digit < 16 {
        let character = b"0123456789abcdef"[digit as usize];
        values[character as usize] = digit;
        digit += 1;
    }
    values
};
const NOT_HEX: u8 = 0xff;

/// Hex-packs `text` onto `out` (see the module's layout). Runs of text
/// between quotes are copied whole and hex strings converted by table: a
/// byte-at-a-time loop here was most of the cost of a binary page.
pub fn hexpack(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len() / 2 + 16);
    let mut i = 0;
    while i < text.len() {
        // Copy everything up to the next quote (or marker byte) at once.
        let run =
            text[i..].iter().position(|&b| b == b'"' || b == PACKED_HEX || b == ESCAPED).unwrap_or(text.len() - i);
        out.extend_from_slice(&text[i..i + run]);
        i += run;
        let Some(&byte) = text.get(i) else { break };
        if byte == b'"' && text.get(i + 1) == Some(&b'0') && text.get(i + 2) == Some(&b'x') {
            let digits = count_hex_digits(text.get(i + 3..).unwrap_or_default());
            if digits.is_multiple_of(2) && text.get(i + 3 + digits) == Some(&b'"') {
                out.push(PACKED_HEX);
                push_leb128(out, (digits / 2) as u64);
                push_hex_bytes(text.get(i + 3..i + 3 + digits).unwrap_or_default(), out);
                i += 3 + digits + 1;
                continue;
            }
        }
        if byte == PACKED_HEX || byte == ESCAPED {
            out.push(ESCAPED);
        }
        out.push(byte);
        i += 1;
    }
}

// Hex digits eight at a time in a u64 (SWAR): a table lookup per digit
// was 13 times the cost of copying the text (1.3 ms per 1.4 MB block), most
// of a binary page's rendering. Safe Rust, no intrinsics; checked against
// the digit-at-a-time reference in the tests.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const LOW_BYTES_OF_LANES: u64 = 0x00ff_00ff_00ff_00ff;

/// 0x80 in each byte of `word` that lies in `low..=high`, 0 elsewhere.
/// Every byte of `word` must be below 0x80 (so no sum carries).
const fn bytes_in_range(word: u64, low: u8, high: u8) -> u64 {
    let at_least_low = word + ONES * (0x80 - low as u64);
    let above_high = word + ONES * (0x7f - high as u64);
    at_least_low & !above_high & HIGH_BITS
}

/// Eight bytes are all lowercase hex digits.
const fn all_hex_digits(word: u64) -> bool {
    word & HIGH_BITS == 0 && (bytes_in_range(word, b'0', b'9') | bytes_in_range(word, b'a', b'f')) == HIGH_BITS
}

/// How many lowercase hex digits `text` starts with.
fn count_hex_digits(text: &[u8]) -> usize {
    let mut counted = 0;
    // Thirty-two at a time while all are digits (one branch per block).
    for block in text.chunks_exact(32) {
        let all = block
            .chunks_exact(8)
            .all(|chunk| <[u8; 8]>::try_from(chunk).is_ok_and(|bytes| all_hex_digits(u64::from_le_bytes(bytes))));
        if !all {
            break;
        }
        counted += 32;
    }
    for chunk in text.get(counted..).unwrap_or_default().chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { break };
        if !all_hex_digits(u64::from_le_bytes(bytes)) {
            break;
        }
        counted += 8;
    }
    let rest = text.get(counted..).unwrap_or_default();
    counted + rest.iter().take_while(|&&b| HEX_VALUES[usize::from(b)] != NOT_HEX).count()
}

/// The bytes of `hex`: an even number of lowercase hex digits (checked by
/// [`count_hex_digits`]).
fn push_hex_bytes(hex: &[u8], out: &mut Vec<u8>) {
    let chunks = hex.chunks_exact(8);
    let rest = chunks.remainder();
    // Zeroed first, then written in place: no capacity check per chunk.
    let start = out.len();
    out.resize(start + chunks.len() * 4, 0);
    let targets = out.get_mut(start..).unwrap_or_default().chunks_exact_mut(4);
    for (chunk, target) in chunks.zip(targets) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { break };
        let word = u64::from_le_bytes(bytes);
        // Each digit's value: its low nibble, plus 9 for a letter.
        let letters = bytes_in_range(word, b'a', b'f') >> 7;
        let nibbles = (word & (ONES * 0x0f)) + letters * 9;
        // Pairs (first digit in the lower byte) into bytes, then the four
        // bytes together.
        let mut packed = ((nibbles & LOW_BYTES_OF_LANES) << 4) | ((nibbles >> 8) & LOW_BYTES_OF_LANES);
        packed = (packed | (packed >> 8)) & 0x0000_ffff_0000_ffff;
        packed = (packed | (packed >> 16)) & 0xffff_ffff;
        target.copy_from_slice(&packed.to_le_bytes()[..4]);
    }
    out.extend(
        rest.chunks_exact(2).map(|pair| (HEX_VALUES[usize::from(pair[0])] << 4) | HEX_VALUES[usize::from(pair[1])]),
    );
}

/// The text [`hexpack`] packed.
pub fn hexunpack(packed: &[u8]) -> Result<Vec<u8>, String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(packed.len() * 2);
    let mut reader = Reader { bytes: packed, at: 0 };
    while reader.at < packed.len() {
        match reader.u8()? {
            PACKED_HEX => {
                let len = usize::try_from(reader.leb128()?).map_err(|_| "packed hex length overflows")?;
                let bytes = reader.take(len)?;
                out.extend_from_slice(b"\"0x");
                out.extend(bytes.iter().flat_map(|&byte| [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0f)]]));
                out.push(b'"');
            }
            ESCAPED => out.push(reader.u8()?),
            byte => out.push(byte),
        }
    }
    Ok(out)
}

fn push_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// The page's header; records follow it.
pub fn push_header(out: &mut Vec<u8>, head: u64) {
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&head.to_be_bytes());
}

/// Appends one record for `block`; `signature` is the serving node's HMAC
/// over the JSON record (`block::sign_wire_record`), if it signs.
pub fn push_record(out: &mut Vec<u8>, block: &StoredBlock, signature: Option<&str>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]); // the length, filled in below
    out.extend_from_slice(&block.number.to_be_bytes());
    out.extend_from_slice(&block.timestamp.to_be_bytes());
    out.push(block.payload_version);
    out.extend_from_slice(&block.term.to_be_bytes());
    for text in [&block.hash, &block.parent_hash, &block.parent_beacon_block_root] {
        push_text(out, text.as_bytes());
    }
    for text in [&block.payload_json, &block.requests_json, &block.blob_versioned_hashes_json] {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        hexpack(text.as_bytes(), out);
        fill_length(out, at);
    }
    for optional in [block.leader_signature.as_deref(), signature] {
        match optional {
            None => out.push(0),
            Some(text) => {
                out.push(1);
                push_text(out, text.as_bytes());
            }
        }
    }
    fill_length(out, start);
}

fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    // Fields are bounded by the database's text limit (1 GB): they fit.
    out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(text);
}

/// Writes the bytes after the 4-byte length at `at` into that length.
fn fill_length(out: &mut [u8], at: usize) {
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Decodes a binary page into (head, JSON records), each exactly the record
/// the JSON encoding serves, so that the member checks the same fields and
/// signatures whichever encoding it received.
pub fn decode_page(body: &[u8]) -> Result<(u64, Vec<Value>), String> {
    let mut reader = Reader { bytes: body, at: 0 };
    if reader.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err("not a binary page (no CLNB header)".into());
    }
    let version = reader.u8()?;
    if version != VERSION {
        return Err(format!("binary page version {version}, this node reads {VERSION}"));
    }
    let head = reader.u64()?;
    let mut records = Vec::new();
    while reader.at < body.len() {
        let len = reader.u32()? as usize;
        let mut record = Reader { bytes: reader.take(len)?, at: 0 };
        let value = decode_record(&mut record).map_err(|e| format!("record {}: {e}", records.len()))?;
        if record.at != len {
            return Err(format!("record {}: {} bytes left over", records.len(), len - record.at));
        }
        records.push(value);
    }
    Ok((head, records))
}

fn decode_record(reader: &mut Reader<'_>) -> Result<Value, String> {
    let number = reader.u64()?;
    let timestamp = reader.u64()?;
    let payload_version = reader.u8()?;
    let term = reader.u64()?;
    let hash = reader.text()?;
    let parent_hash = reader.text()?;
    let beacon_root = reader.text()?;
    let payload_json = hexunpack(reader.field()?)?;
    let requests_json = hexunpack(reader.field()?)?;
    let hashes_json = hexunpack(reader.field()?)?;
    let versioned_hashes: Value =
        serde_json::from_slice(&hashes_json).map_err(|e| format!("blob_versioned_hashes is not JSON: {e}"))?;
    let mut wire = json!({
        "block_number": number,
        "block_hash": hash,
        "parent_hash": parent_hash,
        "payload_data": BASE64.encode(&payload_json),
        "requests_data": BASE64.encode(&requests_json),
        "timestamp": timestamp,
        "parent_beacon_block_root": beacon_root,
        "blob_versioned_hashes": versioned_hashes,
        "payload_version": payload_version,
        "term": term,
    });
    for name in [LEADER_SIGNATURE_FIELD, SIGNATURE_FIELD] {
        match reader.u8()? {
            0 => {}
            1 => wire[name] = Value::String(reader.text()?),
            other => return Err(format!("{name}: presence byte {other}")),
        }
    }
    Ok(wire)
}

/// Bounds-checked reads; every error names what ran out.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or_else(|| {
            format!("truncated: {len} bytes wanted at offset {}, {} there", self.at, self.bytes.len() - self.at)
        })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn field(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, String> {
        let bytes = self.field()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a text field is not UTF-8".to_owned())
    }

    fn leb128(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("packed hex length is longer than 64 bits".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{sign_wire_record, verify_wire_record};
    use crate::secret::Secret;

    fn round_trip(text: &[u8]) -> Vec<u8> {
        let mut packed = Vec::new();
        hexpack(text, &mut packed);
        let unpacked = hexunpack(&packed).unwrap();
        assert_eq!(unpacked, text, "{:?}", String::from_utf8_lossy(text));
        packed
    }

    #[test]
    fn hex_packing_is_lossless_and_halves_hex() {
        for text in [
            &b""[..],
            b"\"0x\"",
            b"{\"a\":\"0x00ff\",\"b\":\"0xABCD\",\"c\":\"0x123\",\"d\":\"0x12\"}",
            b"\"0x12",
            b"\"0",
            b"\"0x",
            b"\x01\x02\x03\"0x01\"\x01",
            b"\"0x0a\"\"0x0b\"",
            "é \"0xé\"".as_bytes(),
        ] {
            round_trip(text);
        }
        let calldata = format!("{{\"transactions\":[\"0x{}\"]}}", "5a".repeat(100_000));
        let packed = round_trip(calldata.as_bytes());
        assert!(packed.len() < 100_000 + 40, "packed to {} bytes", packed.len());
    }

    /// The digit-at-a-time conversion the SWAR one replaced.
    fn reference_hex(text: &[u8]) -> (usize, Vec<u8>) {
        let digits = text.iter().take_while(|&&b| HEX_VALUES[usize::from(b)] != NOT_HEX).count();
        let bytes = text[..digits - digits % 2]
            .chunks_exact(2)
            .map(|pair| (HEX_VALUES[usize::from(pair[0])] << 4) | HEX_VALUES[usize::from(pair[1])])
            .collect();
        (digits, bytes)
    }

    #[test]
    fn eight_digits_at_a_time_matches_one_at_a_time() {
        // Every digit, every length around the 8-byte steps, and a stop
        // byte (each ASCII neighbour of the digit ranges, uppercase, high
        // bytes) at every position.
        let digits = b"0123456789abcdef";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for stop in [b'"', b'/', b':', b'`', b'g', b'A', b'F', b'0' + 0x80, 0xff, 0x00] {
            for len in 0..40 {
                for stop_at in (0..len).chain([len]) {
                    let mut text: Vec<u8> = (0..len)
                        .map(|_| {
                            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                            digits[(seed >> 60) as usize]
                        })
                        .collect();
                    if stop_at < len {
                        text[stop_at] = stop;
                    }
                    let (count, bytes) = reference_hex(&text);
                    assert_eq!(count_hex_digits(&text), count, "{text:?}");
                    let mut out = Vec::new();
                    push_hex_bytes(&text[..count - count % 2], &mut out);
                    assert_eq!(out, bytes, "{text:?}");
                }
            }
        }
        let all: Vec<u8> =
            (0..=255u8).flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]]).collect();
        let mut out = Vec::new();
        push_hex_bytes(&all, &mut out);
        assert_eq!(out, (0..=255u8).collect::<Vec<_>>(), "every byte value");
    }

    #[test]
    fn unpacking_refuses_truncated_input() {
        assert!(hexunpack(&[PACKED_HEX]).is_err());
        assert!(hexunpack(&[PACKED_HEX, 5, 1, 2]).is_err());
        assert!(hexunpack(&[ESCAPED]).is_err());
        assert!(hexunpack(&[PACKED_HEX, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    fn sample_block(number: u64) -> StoredBlock {
        let record = crate::block::tests::sample_record(number, crate::codec::Hash32([7; 32]));
        StoredBlock { leader_signature: Some(format!("0x{}", "ab".repeat(64))), ..record.to_stored() }
    }

    #[test]
    fn records_decode_to_exactly_the_json_records_and_signatures_still_verify() {
        let key = Secret::from_bytes(b"sync secret");
        let blocks = [sample_block(5), StoredBlock { leader_signature: None, ..sample_block(6) }];
        let mut body = Vec::new();
        push_header(&mut body, 42);
        let mut expected = Vec::new();
        for block in &blocks {
            let mut wire = block.to_wire_json();
            sign_wire_record(&key, &mut wire);
            push_record(&mut body, block, wire[SIGNATURE_FIELD].as_str());
            expected.push(wire);
        }
        let (head, records) = decode_page(&body).unwrap();
        assert_eq!(head, 42);
        assert_eq!(records, expected);
        for record in &records {
            verify_wire_record(&[&key], record).unwrap();
        }
        // The JSON page carries the same records in more bytes.
        let json_len = Value::Array(expected).to_string().len();
        assert!(body.len() * 3 < json_len * 2, "binary {} vs JSON {json_len}", body.len());
    }

    #[test]
    fn malformed_pages_are_refused_with_a_reason() {
        let mut body = Vec::new();
        push_header(&mut body, 1);
        push_record(&mut body, &sample_block(2), None);
        assert!(decode_page(&body[..body.len() - 1]).unwrap_err().contains("truncated"));
        assert!(decode_page(b"{\"blocks\":[]}").unwrap_err().contains("CLNB"));
        let mut wrong_version = body.clone();
        wrong_version[4] = 9;
        assert!(decode_page(&wrong_version).unwrap_err().contains("version 9"));
        let mut empty = Vec::new();
        push_header(&mut empty, 3);
        assert_eq!(decode_page(&empty).unwrap(), (3, Vec::new()));
    }
}
