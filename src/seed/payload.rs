//! The seed's execution payload and requests, as its builder writes them
//! (`msgpack.Marshal` of go-ethereum's `engine.ExecutableData` and of the
//! `[][]byte` requests) and its syncer reads them, to and from the Engine
//! API JSON clnode stores and executes.
//!
//! Go's msgpack writes a struct as a map of its field names. Fields whose
//! Go type has a text form (hashes, addresses, the base fee) are written as
//! that text in a binary value: `0x`-hex for hashes and addresses, decimal
//! for the base fee; plain byte slices (logs bloom, extra data,
//! transactions) as raw binary; integers as integers.

use serde_json::{json, Map, Value as Json};

use super::msgpack::{self, Value};
use crate::codec::{decode_data, decode_quantity, encode_data, encode_quantity, Hash32};

/// How one field of `ExecutableData` is written.
#[derive(Clone, Copy)]
enum Form {
    /// `common.Hash`: its `0x` text.
    Hash,
    /// `common.Address`: its `0x` text.
    Address,
    /// `[]byte`: raw.
    Bytes,
    /// `uint64`.
    Quantity,
    /// `*big.Int`: its decimal text.
    BigDecimal,
    /// `[][]byte`: raw, each.
    ByteList,
    /// `[]*types.Withdrawal`, nil allowed.
    Withdrawals,
    /// `*uint64`, nil allowed.
    OptionalQuantity,
}

/// `ExecutableData`'s fields in go-ethereum v1.16's order: Go name, Engine
/// API name, form. `ExecutionWitness` (always nil here) follows them.
const FIELDS: [(&str, &str, Form); 17] = [
    ("ParentHash", "parentHash", Form::Hash),
    ("FeeRecipient", "feeRecipient", Form::Address),
    ("StateRoot", "stateRoot", Form::Hash),
    ("ReceiptsRoot", "receiptsRoot", Form::Hash),
    ("LogsBloom", "logsBloom", Form::Bytes),
    ("Random", "prevRandao", Form::Hash),
    ("Number", "blockNumber", Form::Quantity),
    ("GasLimit", "gasLimit", Form::Quantity),
    ("GasUsed", "gasUsed", Form::Quantity),
    ("Timestamp", "timestamp", Form::Quantity),
    ("ExtraData", "extraData", Form::Bytes),
    ("BaseFeePerGas", "baseFeePerGas", Form::BigDecimal),
    ("BlockHash", "blockHash", Form::Hash),
    ("Transactions", "transactions", Form::ByteList),
    ("Withdrawals", "withdrawals", Form::Withdrawals),
    ("BlobGasUsed", "blobGasUsed", Form::OptionalQuantity),
    ("ExcessBlobGas", "excessBlobGas", Form::OptionalQuantity),
];
const WITNESS_FIELD: &str = "ExecutionWitness";

/// `types.Withdrawal`'s fields: Go name, Engine API name, and whether the
/// value is the address (text) rather than a number.
const WITHDRAWAL_FIELDS: [(&str, &str, bool); 4] = [
    ("Index", "index", false),
    ("Validator", "validatorIndex", false),
    ("Address", "address", true),
    ("Amount", "amount", false),
];

/// The seed's msgpack payload as Engine API JSON (the keys geth writes).
pub fn payload_json_from_msgpack(bytes: &[u8]) -> Result<Json, String> {
    let value = msgpack::decode(bytes).map_err(|e| e.to_string())?;
    if !matches!(value, Value::Map(_)) {
        return Err(format!("payload is {}, not a map", value.kind()));
    }
    match value.get(WITNESS_FIELD) {
        None | Some(Value::Nil) => {}
        Some(_) => return Err("payload carries an execution witness (not supported)".into()),
    }
    let mut out = Map::new();
    for (go_name, json_name, form) in FIELDS {
        let field = value.get(go_name);
        let json = field_json(field, form).map_err(|e| format!("{go_name}: {e}"))?;
        out.insert(json_name.to_owned(), json);
    }
    Ok(Json::Object(out))
}

fn field_json(field: Option<&Value>, form: Form) -> Result<Json, String> {
    let nil_allowed = matches!(form, Form::Withdrawals | Form::OptionalQuantity);
    let field = match field {
        None | Some(Value::Nil) if nil_allowed => return Ok(Json::Null),
        None => return Err("missing".into()),
        Some(field) => field,
    };
    Ok(match form {
        Form::Hash => json!(Hash32::parse(&text_of(field)?).map_err(|e| e.to_string())?.to_hex()),
        Form::Address => json!(address(&text_of(field)?)?),
        Form::Bytes => json!(encode_data(bytes_of(field)?)),
        Form::Quantity | Form::OptionalQuantity => json!(encode_quantity(uint_of(field)?)),
        Form::BigDecimal => json!(decimal_to_quantity(&text_of(field)?)?),
        Form::ByteList => Json::Array(
            list_of(field)?
                .iter()
                .map(|item| bytes_of(item).map(|b| json!(encode_data(b))))
                .collect::<Result<_, _>>()?,
        ),
        Form::Withdrawals => Json::Array(list_of(field)?.iter().map(withdrawal_json).collect::<Result<_, _>>()?),
    })
}

fn withdrawal_json(value: &Value) -> Result<Json, String> {
    let mut out = Map::new();
    for (go_name, json_name, is_address) in WITHDRAWAL_FIELDS {
        let field = value.get(go_name).ok_or_else(|| format!("withdrawal {go_name} missing"))?;
        let json = if is_address { json!(address(&text_of(field)?)?) } else { json!(encode_quantity(uint_of(field)?)) };
        out.insert(json_name.to_owned(), json);
    }
    Ok(Json::Object(out))
}

/// Engine API JSON as the seed's msgpack payload, byte for byte what Go's
/// msgpack writes for the same `ExecutableData`. Fields the seed's struct
/// does not have (EthereumJS's `requestsHash`) are not carried: the seed
/// cannot carry them either.
pub fn payload_msgpack_from_json(payload: &Json) -> Result<Vec<u8>, String> {
    let object = payload.as_object().ok_or("payload is not a JSON object")?;
    let mut entries = Vec::with_capacity(FIELDS.len() + 1);
    for (go_name, json_name, form) in FIELDS {
        let value = field_msgpack(object.get(json_name), form).map_err(|e| format!("{json_name}: {e}"))?;
        entries.push((Value::Str(go_name.to_owned()), value));
    }
    entries.push((Value::Str(WITNESS_FIELD.to_owned()), Value::Nil));
    Ok(msgpack::encode(&Value::Map(entries)))
}

fn field_msgpack(field: Option<&Json>, form: Form) -> Result<Value, String> {
    let nil_allowed = matches!(form, Form::Withdrawals | Form::OptionalQuantity);
    let field = match field {
        None | Some(Json::Null) if nil_allowed => return Ok(Value::Nil),
        None | Some(Json::Null) => return Err("missing".into()),
        Some(field) => field,
    };
    let text = || field.as_str().ok_or_else(|| "not a string".to_owned());
    Ok(match form {
        Form::Hash => Value::Bin(Hash32::parse(text()?).map_err(|e| e.to_string())?.to_hex().into_bytes()),
        Form::Address => Value::Bin(address(text()?)?.into_bytes()),
        Form::Bytes => Value::Bin(decode_data(text()?).map_err(|e| e.to_string())?),
        Form::Quantity | Form::OptionalQuantity => Value::Uint(decode_quantity(text()?).map_err(|e| e.to_string())?),
        Form::BigDecimal => Value::Bin(quantity_to_decimal(text()?)?.into_bytes()),
        Form::ByteList => Value::Array(
            field
                .as_array()
                .ok_or("not a list")?
                .iter()
                .map(|item| {
                    let text = item.as_str().ok_or("an item is not a string")?;
                    decode_data(text).map(Value::Bin).map_err(|e| e.to_string())
                })
                .collect::<Result<_, String>>()?,
        ),
        Form::Withdrawals => Value::Array(
            field.as_array().ok_or("not a list")?.iter().map(withdrawal_msgpack).collect::<Result<_, _>>()?,
        ),
    })
}

fn withdrawal_msgpack(value: &Json) -> Result<Value, String> {
    let mut entries = Vec::with_capacity(WITHDRAWAL_FIELDS.len());
    for (go_name, json_name, is_address) in WITHDRAWAL_FIELDS {
        let text = value
            .get(json_name)
            .and_then(Json::as_str)
            .ok_or_else(|| format!("withdrawal {json_name} is missing or not a string"))?;
        let item = if is_address {
            Value::Bin(address(text)?.into_bytes())
        } else {
            Value::Uint(decode_quantity(text).map_err(|e| format!("withdrawal {json_name}: {e}"))?)
        };
        entries.push((Value::Str(go_name.to_owned()), item));
    }
    Ok(Value::Map(entries))
}

/// The seed's requests (`[][]byte`, or nil, or the empty text its table
/// defaults to) as Engine API request strings.
pub fn requests_from_msgpack(bytes: &[u8]) -> Result<Vec<String>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    match msgpack::decode(bytes).map_err(|e| e.to_string())? {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|item| bytes_of(item).map(encode_data)).collect(),
        other => Err(format!("requests are {}, not a list", other.kind())),
    }
}

/// Engine API request strings as the seed's msgpack requests.
pub fn requests_msgpack(requests: &[String]) -> Result<Vec<u8>, String> {
    let items = requests
        .iter()
        .map(|text| decode_data(text).map(Value::Bin).map_err(|e| format!("request: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(msgpack::encode(&Value::Array(items)))
}

/// Text written as binary (Go's `MarshalText` output) or as a string.
fn text_of(value: &Value) -> Result<String, String> {
    match value {
        Value::Bin(bytes) => String::from_utf8(bytes.clone()).map_err(|_| "text is not UTF-8".to_owned()),
        Value::Str(text) => Ok(text.clone()),
        other => Err(format!("{} where text was expected", other.kind())),
    }
}

fn bytes_of(value: &Value) -> Result<&[u8], String> {
    match value {
        Value::Bin(bytes) => Ok(bytes),
        Value::Str(text) => Ok(text.as_bytes()),
        other => Err(format!("{} where bytes were expected", other.kind())),
    }
}

fn uint_of(value: &Value) -> Result<u64, String> {
    match value {
        Value::Uint(n) => Ok(*n),
        other => Err(format!("{} where an unsigned integer was expected", other.kind())),
    }
}

fn list_of(value: &Value) -> Result<&[Value], String> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(format!("{} where a list was expected", other.kind())),
    }
}

/// A 20-byte address as lowercase `0x` hex.
fn address(text: &str) -> Result<String, String> {
    let bytes = decode_data(text).map_err(|e| format!("address: {e}"))?;
    if bytes.len() != 20 {
        return Err(format!("address has {} bytes, not 20", bytes.len()));
    }
    Ok(encode_data(&bytes))
}

/// `big.Int`'s decimal text as a QUANTITY (at most 128 bits: a base fee).
fn decimal_to_quantity(text: &str) -> Result<String, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || (text.len() > 1 && text.starts_with('0')) {
        return Err(format!("{text:?} is not a decimal number"));
    }
    let value: u128 = text.parse().map_err(|_| format!("{text} does not fit 128 bits"))?;
    Ok(format!("0x{value:x}"))
}

/// A QUANTITY of at most 128 bits as decimal text.
fn quantity_to_decimal(text: &str) -> Result<String, String> {
    let digits = text.strip_prefix("0x").ok_or("missing 0x prefix")?;
    if digits.is_empty() || digits.len() > 32 || (digits.len() > 1 && digits.starts_with('0')) {
        return Err(format!("{text:?} is not a quantity of at most 128 bits"));
    }
    u128::from_str_radix(digits, 16).map(|n| n.to_string()).map_err(|_| format!("{text:?} is not hex"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An Engine API payload as geth writes it, one withdrawal included.
    pub fn sample_payload(number: u64, parent: Hash32) -> Json {
        json!({
            "parentHash": parent.to_hex(),
            "feeRecipient": "0x00000000000000000000000000000000000000aa",
            "stateRoot": Hash32([2; 32]).to_hex(),
            "receiptsRoot": Hash32([3; 32]).to_hex(),
            "logsBloom": encode_data(&[0; 256]),
            "prevRandao": parent.to_hex(),
            "blockNumber": encode_quantity(number),
            "gasLimit": "0x1c9c380",
            "gasUsed": "0x5208",
            "timestamp": encode_quantity(1_700_000_000 + number),
            "extraData": "0xab",
            "baseFeePerGas": "0x3b9aca00",
            "blockHash": Hash32([u8::try_from(number % 256).unwrap(); 32]).to_hex(),
            "transactions": ["0x02f8"],
            "withdrawals": [{"index": "0x1", "validatorIndex": "0x2", "address": "0x00000000000000000000000000000000000000bb", "amount": "0x3"}],
            "blobGasUsed": "0x0",
            "excessBlobGas": "0x0",
        })
    }

    #[test]
    fn payloads_round_trip_and_are_what_go_writes() {
        let payload = sample_payload(5, Hash32([1; 32]));
        let bytes = payload_msgpack_from_json(&payload).unwrap();
        assert_eq!(payload_json_from_msgpack(&bytes).unwrap(), payload);
        // The start of what tools/seedwire (Go) writes for this payload:
        // map16 of 18 fields, ParentHash as the bin8 of its 66-byte text.
        let start =
            [0xde, 0x00, 0x12, 0xaa, b'P', b'a', b'r', b'e', b'n', b't', b'H', b'a', b's', b'h', 0xc4, 66, b'0', b'x'];
        assert_eq!(bytes[..start.len()], start);
        let decoded = msgpack::decode(&bytes).unwrap();
        assert_eq!(decoded.get("BaseFeePerGas"), Some(&Value::Bin(b"1000000000".to_vec())));
        assert_eq!(decoded.get("Number"), Some(&Value::Uint(5)));
        assert_eq!(decoded.get("ExecutionWitness"), Some(&Value::Nil));
    }

    #[test]
    fn absent_optional_fields_are_null_and_required_ones_errors() {
        let mut payload = sample_payload(5, Hash32([1; 32]));
        payload["withdrawals"] = Json::Null;
        payload["blobGasUsed"] = Json::Null;
        let bytes = payload_msgpack_from_json(&payload).unwrap();
        assert_eq!(payload_json_from_msgpack(&bytes).unwrap(), payload);
        let mut broken = sample_payload(5, Hash32([1; 32]));
        broken.as_object_mut().unwrap().remove("stateRoot");
        assert_eq!(payload_msgpack_from_json(&broken).unwrap_err(), "stateRoot: missing");
        broken["stateRoot"] = json!("0x12");
        assert!(payload_msgpack_from_json(&broken).unwrap_err().starts_with("stateRoot: expected 32 bytes"));
        assert!(payload_json_from_msgpack(&msgpack::encode(&Value::Array(vec![]))).unwrap_err().contains("not a map"));
    }

    #[test]
    fn requests_round_trip_from_every_form_the_seed_stores() {
        let requests = vec!["0x00aa".to_owned(), "0x01".to_owned()];
        assert_eq!(requests_from_msgpack(&requests_msgpack(&requests).unwrap()).unwrap(), requests);
        assert_eq!(requests_msgpack(&[]).unwrap(), [0x90]);
        assert_eq!(requests_from_msgpack(&[0xc0]).unwrap(), Vec::<String>::new(), "nil");
        assert_eq!(requests_from_msgpack(&[]).unwrap(), Vec::<String>::new(), "the table's default ''");
        assert!(requests_from_msgpack(&[0x01]).is_err());
    }

    #[test]
    fn base_fees_convert_between_decimal_and_hex() {
        assert_eq!(decimal_to_quantity("1000000000").unwrap(), "0x3b9aca00");
        assert_eq!(decimal_to_quantity("0").unwrap(), "0x0");
        assert_eq!(quantity_to_decimal("0x3b9aca00").unwrap(), "1000000000");
        for bad in ["", "-1", "01", "1e9", "340282366920938463463374607431768211456"] {
            assert!(decimal_to_quantity(bad).is_err(), "{bad}");
        }
        for bad in ["3b", "0x", "0x01", &format!("0x{}", "f".repeat(33))] {
            assert!(quantity_to_decimal(bad).is_err(), "{bad}");
        }
    }
}
