//! The seed's `payloads` table, migrated in place to clnode's, or refused
//! untouched.
//!
//! The seed's table has `block_number, block_hash, parent_hash,
//! payload_data, requests_data, timestamp, created_at`, payloads and
//! requests as base64 of msgpack. clnode's keeps them as JSON and adds the
//! replay fields (`parent_beacon_block_root`, `blob_versioned_hashes`,
//! `payload_version`, `term`, `leader_signature`). The migration derives
//! them as the seed's own member executes a block (`seed::wire`), after
//! checking every row decodes, agrees with its payload, and that the rows
//! form one chain from block 1. A leader-mode node signs every migrated
//! block with the cluster's block-signing key (the operator adopting the
//! seed's chain is the cluster committing it), so members that pin its
//! public key accept the seed's blocks too. All of it, and schema.sql, happen in one
//! transaction with the table locked: a failure leaves the seed's table
//! exactly as it was, never a half-applied schema. Once migrated, the
//! seed itself can no longer write there (its inserts lack the new
//! NOT NULL columns, and the table is append-only), so a seed leader left
//! running cannot fork the migrated chain.

use postgres::Client;

use super::wire::{record_from_seed_fields, SEED_PAYLOAD_VERSION, SEED_TERM};
use crate::block::StoredBlock;
use crate::signing::BlockSigningKey;
use crate::store::{StoreError, StoreErrorKind, SCHEMA_LOCK_KEY, SCHEMA_SQL};

/// The seed's columns (`requests_data` came in a later version of it).
const SEED_COLUMNS: [&str; 5] = ["block_number", "block_hash", "parent_hash", "payload_data", "timestamp"];
/// What clnode adds; all of them present means the table is clnode's.
const CLNODE_COLUMNS: [&str; 4] = ["parent_beacon_block_root", "blob_versioned_hashes", "payload_version", "term"];
/// Rows read, converted and written per statement.
const PAGE_ROWS: i64 = 1000;
/// The migration's statements may take longer than a node's usual 5 s
/// (`ALTER TABLE ... SET NOT NULL` reads the whole table).
const MIGRATION_STATEMENT_TIMEOUT: &str = "120s";

/// What a database's `payloads` table is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableShape {
    /// No table: schema.sql creates clnode's.
    Absent,
    Clnode,
    /// The seed's table; `has_requests` when it has `requests_data`.
    Seed {
        has_requests: bool,
    },
    /// Something else: clnode touches nothing.
    Unknown {
        missing: Vec<&'static str>,
    },
}

/// The shape of a `payloads` table with these columns.
pub fn table_shape(columns: &[String]) -> TableShape {
    let has = |name: &str| columns.iter().any(|column| column == name);
    if columns.is_empty() {
        return TableShape::Absent;
    }
    let missing_seed: Vec<&'static str> = SEED_COLUMNS.into_iter().filter(|c| !has(c)).collect();
    let clnode_present = CLNODE_COLUMNS.iter().filter(|c| has(c)).count();
    match (missing_seed.is_empty(), clnode_present) {
        (true, n) if n == CLNODE_COLUMNS.len() => TableShape::Clnode,
        (true, 0) => TableShape::Seed { has_requests: has("requests_data") },
        (true, _) => TableShape::Unknown { missing: CLNODE_COLUMNS.into_iter().filter(|c| !has(c)).collect() },
        (false, _) => TableShape::Unknown { missing: missing_seed },
    }
}

/// One row of the seed's table, as stored.
#[derive(Debug, Clone)]
pub struct SeedRow {
    pub number: i64,
    pub hash: String,
    pub parent_hash: String,
    pub payload_data: String,
    pub requests_data: String,
    pub timestamp: i64,
}

/// The block after `previous` (number and hash; `None` before the first
/// row) as clnode stores it, or why the seed's chain cannot be migrated.
pub fn convert_row(previous: Option<(u64, &str)>, row: &SeedRow) -> Result<StoredBlock, String> {
    let number = u64::try_from(row.number).map_err(|_| format!("block_number {} is negative", row.number))?;
    let timestamp =
        u64::try_from(row.timestamp).map_err(|_| format!("block {number}: timestamp {} is negative", row.timestamp))?;
    let record =
        record_from_seed_fields(number, &row.hash, &row.parent_hash, &row.payload_data, &row.requests_data, timestamp)
            .map_err(|e| e.to_string())?;
    let stored = record.to_stored();
    match previous {
        // clnode's chain starts at genesis: block 1's parent is checked
        // against the execution client's genesis at start (`ensure_chain`).
        None if number != 1 => {
            Err(format!("the seed's rows start at block {number}, not 1; clnode keeps the chain from genesis"))
        }
        Some((previous_number, _)) if number != previous_number + 1 => {
            Err(format!("block {} is missing (the rows jump from {previous_number} to {number})", previous_number + 1))
        }
        Some((previous_number, previous_hash)) if stored.parent_hash != previous_hash => Err(format!(
            "block {number}'s parent {} is not block {previous_number} ({previous_hash})",
            stored.parent_hash
        )),
        _ => Ok(stored),
    }
}

/// Whether `payloads` is the seed's table (migrated only at a node's
/// start, where the signing key is at hand).
pub fn is_seed_table(client: &mut Client) -> Result<bool, postgres::Error> {
    Ok(matches!(table_shape(&columns(client)?), TableShape::Seed { .. }))
}

/// Reads the columns of `payloads` (none when there is no such table).
fn columns(client: &mut impl postgres::GenericClient) -> Result<Vec<String>, postgres::Error> {
    let rows = client.query(
        "SELECT attname::TEXT FROM pg_attribute WHERE attrelid = to_regclass('payloads') AND attnum > 0 \
         AND NOT attisdropped",
        &[],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// How many blocks were migrated, when the table was the seed's.
pub type Migrated = Option<u64>;

/// Migrates the seed's table in place when that is what `payloads` is;
/// `Ok(None)` when it is absent or clnode's already. Called before
/// schema.sql is applied on a connection whose statements did not prepare.
pub fn migrate_if_seed(
    client: &mut Client,
    url: &str,
    signer: Option<&BlockSigningKey>,
) -> Result<Migrated, StoreError> {
    let what = "migrate the seed's payloads table";
    let lost = |e: postgres::Error| {
        let kind = StoreErrorKind::of_failed_statement(e.is_closed(), e.code());
        StoreError::new(kind, url, what, error_text(&e))
    };
    let refuse = |detail: String| {
        StoreError::new(
            StoreErrorKind::SeedMigration,
            url,
            what,
            format!(
                "{detail}; nothing was changed. Repair or drop the seed's rows, or start clnode on an empty \
                 database and let it sync from a source (--sync-wire seed to follow a seed leader)"
            ),
        )
    };
    match table_shape(&columns(client).map_err(lost)?) {
        TableShape::Absent | TableShape::Clnode => return Ok(None),
        TableShape::Unknown { missing } => {
            return Err(refuse(format!(
                "payloads is neither the seed's table nor clnode's (it lacks {})",
                missing.join(", ")
            )))
        }
        TableShape::Seed { .. } => {}
    }
    let mut tx = client.transaction().map_err(lost)?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = '{MIGRATION_STATEMENT_TIMEOUT}'; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); \
         LOCK TABLE payloads IN ACCESS EXCLUSIVE MODE"
    ))
    .map_err(lost)?;
    // Looked at again under the locks: another node may have migrated it.
    let has_requests = match table_shape(&columns(&mut tx).map_err(lost)?) {
        TableShape::Seed { has_requests } => has_requests,
        _ => return Ok(None),
    };
    if !has_requests {
        tx.batch_execute("ALTER TABLE payloads ADD COLUMN requests_data TEXT NOT NULL DEFAULT ''").map_err(lost)?;
    }
    tx.batch_execute(
        "ALTER TABLE payloads ADD COLUMN parent_beacon_block_root TEXT, \
         ADD COLUMN blob_versioned_hashes TEXT NOT NULL DEFAULT '[]', ADD COLUMN payload_version SMALLINT, \
         ADD COLUMN term BIGINT, ADD COLUMN IF NOT EXISTS leader_signature TEXT",
    )
    .map_err(lost)?;
    let mut previous: Option<(u64, String)> = None;
    let mut migrated = 0u64;
    loop {
        // Numbers came from BIGINT and were checked non-negative: they fit.
        let after = previous.as_ref().map_or(0, |(number, _)| i64::try_from(*number).unwrap_or(i64::MAX));
        let rows = tx
            .query(
                "SELECT block_number, block_hash, parent_hash, payload_data, requests_data, timestamp FROM payloads \
                 WHERE block_number > $1 ORDER BY block_number LIMIT $2",
                &[&after, &PAGE_ROWS],
            )
            .map_err(lost)?;
        if rows.is_empty() && previous.is_none() {
            // Also a row at or below 0, which no chain has.
            let below: i64 = tx.query_one("SELECT count(*) FROM payloads", &[]).map_err(lost)?.get(0);
            if below > 0 {
                return Err(refuse(format!("{below} rows have a block_number of 0 or less")));
            }
        }
        if rows.is_empty() {
            break;
        }
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let seed = SeedRow {
                number: row.get(0),
                hash: row.get(1),
                parent_hash: row.get(2),
                payload_data: row.get(3),
                requests_data: row.get(4),
                timestamp: row.get(5),
            };
            let mut stored = convert_row(previous.as_ref().map(|(n, h)| (*n, h.as_str())), &seed).map_err(refuse)?;
            stored.leader_signature = signer.map(|key| key.sign(&stored));
            previous = Some((stored.number, stored.hash.clone()));
            page.push(stored);
        }
        let numbers: Vec<i64> = page.iter().map(|b| i64::try_from(b.number).unwrap_or(i64::MAX)).collect();
        let hashes: Vec<&str> = page.iter().map(|b| b.hash.as_str()).collect();
        let parents: Vec<&str> = page.iter().map(|b| b.parent_hash.as_str()).collect();
        let payloads: Vec<&str> = page.iter().map(|b| b.payload_json.as_str()).collect();
        let requests: Vec<&str> = page.iter().map(|b| b.requests_json.as_str()).collect();
        let roots: Vec<&str> = page.iter().map(|b| b.parent_beacon_block_root.as_str()).collect();
        let signatures: Vec<Option<&str>> = page.iter().map(|b| b.leader_signature.as_deref()).collect();
        tx.execute(
            "UPDATE payloads p SET block_hash = u.hash, parent_hash = u.parent, payload_data = u.payload, \
             requests_data = u.requests, parent_beacon_block_root = u.root, payload_version = $7, term = $8, \
             leader_signature = u.signature \
             FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $9::TEXT[]) \
             AS u(number, hash, parent, payload, requests, root, signature) WHERE p.block_number = u.number",
            &[
                &numbers,
                &hashes,
                &parents,
                &payloads,
                &requests,
                &roots,
                &i16::from(SEED_PAYLOAD_VERSION),
                &i64::try_from(SEED_TERM).unwrap_or(0),
                &signatures,
            ],
        )
        .map_err(lost)?;
        migrated += page.len() as u64;
    }
    tx.batch_execute(
        "ALTER TABLE payloads ALTER COLUMN parent_beacon_block_root SET NOT NULL, \
         ALTER COLUMN payload_version SET NOT NULL, ALTER COLUMN term SET NOT NULL, \
         ALTER COLUMN requests_data SET DEFAULT '[]', ADD CHECK (block_number >= 1)",
    )
    .map_err(lost)?;
    tx.batch_execute(SCHEMA_SQL).map_err(lost)?;
    tx.commit().map_err(lost)?;
    Ok(Some(migrated))
}

fn error_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Hash32;
    use crate::seed::payload::tests::sample_payload;
    use crate::seed::wire::seed_wire_json;

    #[test]
    fn tables_are_told_apart_by_their_columns() {
        let cols = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let seed =
            ["block_number", "block_hash", "parent_hash", "payload_data", "requests_data", "timestamp", "created_at"];
        assert_eq!(table_shape(&[]), TableShape::Absent);
        assert_eq!(table_shape(&cols(&seed)), TableShape::Seed { has_requests: true });
        assert_eq!(
            table_shape(&cols(&seed[..4].iter().chain(&seed[5..]).copied().collect::<Vec<_>>())),
            TableShape::Seed { has_requests: false }
        );
        let clnode: Vec<&str> = seed.iter().copied().chain(CLNODE_COLUMNS).collect();
        assert_eq!(table_shape(&cols(&clnode)), TableShape::Clnode);
        let half: Vec<&str> = seed.iter().copied().chain(["term"]).collect();
        assert_eq!(
            table_shape(&cols(&half)),
            TableShape::Unknown {
                missing: vec!["parent_beacon_block_root", "blob_versioned_hashes", "payload_version"]
            }
        );
        assert_eq!(table_shape(&cols(&["id", "name"])), TableShape::Unknown { missing: SEED_COLUMNS.to_vec() });
    }

    /// A seed row for block `number` after `parent`, as the seed stores it.
    fn seed_row(number: u64, parent: Hash32) -> SeedRow {
        let payload = crate::engine::ExecutionPayload::from_json(sample_payload(number, parent)).unwrap();
        let stored = crate::block::BlockRecord {
            payload,
            execution_requests: vec![],
            parent_beacon_block_root: parent,
            blob_versioned_hashes: vec![],
            payload_version: 5,
            term: 0,
            leader_signature: None,
        }
        .to_stored();
        let wire = seed_wire_json(&stored).unwrap();
        SeedRow {
            number: i64::try_from(number).unwrap(),
            hash: stored.hash,
            parent_hash: stored.parent_hash,
            payload_data: wire["payload_data"].as_str().unwrap().to_owned(),
            requests_data: wire["requests_data"].as_str().unwrap().to_owned(),
            timestamp: i64::try_from(stored.timestamp).unwrap(),
        }
    }

    #[test]
    fn rows_convert_only_as_one_chain_from_block_one() {
        let one = seed_row(1, Hash32([7; 32]));
        let first = convert_row(None, &one).unwrap();
        assert_eq!(first.parent_beacon_block_root, Hash32([7; 32]).to_hex());
        assert_eq!((first.payload_version, first.term, first.blob_versioned_hashes_json.as_str()), (5, 0, "[]"));
        let two = seed_row(2, Hash32([1; 32]));
        assert!(convert_row(Some((1, &first.hash)), &two).is_ok());
        let cases = [
            (None, seed_row(2, Hash32([1; 32])), "the seed's rows start at block 2, not 1"),
            (Some((1, first.hash.as_str())), seed_row(3, Hash32([2; 32])), "block 2 is missing"),
            (Some((1, first.hash.as_str())), seed_row(2, Hash32([9; 32])), "block 2's parent 0x0909"),
        ];
        for (previous, row, expected) in cases {
            let error = convert_row(previous, &row).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
        let mut bad = seed_row(1, Hash32([7; 32]));
        bad.payload_data = "e30=".into();
        assert!(convert_row(None, &bad).unwrap_err().contains("not the seed's msgpack payload"));
        bad = seed_row(1, Hash32([7; 32]));
        bad.timestamp = -1;
        assert!(convert_row(None, &bad).unwrap_err().contains("negative"));
    }
}
