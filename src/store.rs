//! PostgreSQL: the committed chain, the fence, and the fenced commit.
//!
//! The database is the authority on what is committed. This module owns every
//! SQL statement; callers see typed outcomes, never rows. Each thread that
//! needs the database owns its own [`Store`] (one connection), so no lock is
//! shared between roles.

use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::block::StoredBlock;
use crate::codec::Hash32;
use crate::pg_url::{PgTls, PgUrl};
use crate::reconnect::ConnectionError;

pub const SCHEMA_SQL: &str = include_str!("../schema.sql");
/// Serialises schema application between nodes starting together
/// (concurrent CREATE ... IF NOT EXISTS can collide in the catalog).
pub const SCHEMA_LOCK_KEY: i64 = 0x636c_6e6f_6465; // "clnode"

fn locked_schema_sql() -> String {
    format!("BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {SCHEMA_SQL}; COMMIT;")
}

/// A connect that takes longer than this finds no database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Server-side cap on any one statement.
pub const STATEMENT_TIMEOUT_MS: u64 = 5_000;
/// A transaction left open this long is ended by the server, its locks
/// (the fence row's) released.
pub const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 10_000;
/// Every session's settings, sent right after the connect.
fn session_settings_sql() -> String {
    format!(
        "SET statement_timeout = {STATEMENT_TIMEOUT_MS}; \
         SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
}
/// Unacknowledged data older than this breaks the connection (Linux).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// The sync API's upper bound on blocks per request.
pub const MAX_BLOCKS_PER_QUERY: u32 = 1000;

/// The committed head: the newest committed block, or genesis when none is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub number: u64,
    pub hash: Hash32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The fence holds another term: this producer is no longer the leader.
    Fenced {
        fence_term: u64,
    },
    /// The block's parent is not the committed head (someone else committed).
    NotHead {
        head_number: i64,
        head_hash: String,
    },
    /// The block's timestamp is more than the lead cap ahead of the
    /// database's clock, the cluster's time reference: this leader's idea
    /// of the time is wrong.
    Clock {
        /// The database's `now()` at the commit, whole seconds since the epoch.
        database_now_s: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceOutcome {
    /// The fence now holds this term for this holder (raised now, or already
    /// raised by this same holder: a retry after a lost reply).
    Raised,
    /// The fence holds a higher term, or this term for another holder.
    AlreadyAt { fence_term: u64 },
}

/// What kind of failure a [`StoreError`] is: callers decide on this, never
/// on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The database URL does not parse.
    Url,
    /// No usable connection: connecting, applying the schema or preparing
    /// the statements on a new connection failed.
    Connect,
    /// The connection failed in TLS (rustls said so): the server's
    /// certificate was refused (`sslmode=verify-ca|verify-full` and a chain
    /// or name that does not match `sslrootcert`), the handshake failed, or
    /// the CA file cannot be read. Waited out like `Connect`: a rotated
    /// certificate or CA file (read at every connect) can fix it. (A server
    /// without TLS where the URL requires it is `Connect`, its text
    /// "error performing TLS handshake: server does not support TLS": the
    /// postgres crate gives that no type to tell it by.)
    Tls,
    /// The server says the database in the URL does not exist (SQLSTATE
    /// 3D000, invalid_catalog_name): no retry creates it.
    NoDatabase,
    /// The server refused the URL's user or password (SQLSTATE 28P01
    /// invalid_password, 28000 invalid_authorization_specification, e.g.
    /// no pg_hba.conf entry).
    Credentials,
    /// The connection broke during a statement (I/O error, closed, or the
    /// server ending the session): reconnect before retrying.
    ConnectionLost,
    /// The server refused or failed a statement on a working connection
    /// (constraint, statement timeout, permissions...).
    Query,
    /// A value read from the database is out of range or unparsable (a
    /// negative number, a malformed hash, an unknown outcome).
    Corrupt,
    /// A value to be written does not fit its column.
    OutOfRange,
    /// `ensure_chain`: the database records another chain than the
    /// execution client's.
    ChainMismatch,
    /// No chain is recorded yet (`chain_meta` is empty: `ensure_chain` has
    /// not run on this database).
    NoChain,
    /// A write does not extend the stored chain (a page that does not link
    /// to the stored head, or within itself).
    NotHead,
    /// The database holds the seed's table and it cannot be migrated
    /// (`seed::migrate`); nothing was changed, and retrying cannot help.
    SeedMigration,
}

impl StoreErrorKind {
    /// From the server's SQLSTATE when a connection attempt failed (`None`:
    /// no answer from the server: refused, timed out, unreachable).
    pub fn of_failed_connect(sqlstate: Option<&SqlState>) -> StoreErrorKind {
        match sqlstate {
            Some(code) if *code == SqlState::INVALID_CATALOG_NAME => StoreErrorKind::NoDatabase,
            Some(code)
                if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                StoreErrorKind::Credentials
            }
            _ => StoreErrorKind::Connect,
        }
    }

    /// The server refused this node's settings (the database name or the
    /// credentials in its URL): waiting does not fix that, an operator does.
    pub fn is_refused_configuration(self) -> bool {
        matches!(self, StoreErrorKind::NoDatabase | StoreErrorKind::Credentials)
    }

    /// From what the postgres crate says about a failed statement: whether
    /// the connection is closed, and the server's SQLSTATE when the server
    /// answered (`None`: the failure was the client's or the socket's).
    pub fn of_failed_statement(closed: bool, sqlstate: Option<&SqlState>) -> StoreErrorKind {
        let Some(code) = sqlstate else {
            // No answer from the server (I/O error, protocol error): the
            // connection is in an unknown state and is not reused.
            return StoreErrorKind::ConnectionLost;
        };
        let session_ended = code.code().starts_with("08") // connection exception
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::IDLE_SESSION_TIMEOUT,
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            ]
            .contains(code);
        if closed || session_ended {
            StoreErrorKind::ConnectionLost
        } else {
            StoreErrorKind::Query
        }
    }
}

/// A failed database operation: its kind, and the context to report it.
#[derive(Debug, Clone)]
pub struct StoreError {
    pub kind: StoreErrorKind,
    /// The database URL with its password removed.
    pub url: String,
    /// What was being done ("commit", "read head", ...).
    pub what: &'static str,
    /// The block concerned, where there is one.
    pub block: Option<u64>,
    /// The server's message, or what was wrong with a value.
    pub detail: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, url: &str, what: &'static str, detail: impl Into<String>) -> StoreError {
        StoreError { kind, url: url.to_owned(), what, block: None, detail: detail.into() }
    }

    /// The same error, about block `number`.
    pub fn at_block(mut self, number: u64) -> StoreError {
        self.block = Some(number);
        self
    }

    /// True when the connection is unusable (or none was made): drop it and
    /// connect again before retrying.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Url
                | StoreErrorKind::Connect
                | StoreErrorKind::Tls
                | StoreErrorKind::NoDatabase
                | StoreErrorKind::Credentials
                | StoreErrorKind::ConnectionLost
        )
    }
}

impl ConnectionError for StoreError {
    fn is_connection_lost(&self) -> bool {
        StoreError::is_connection_lost(self)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgreSQL {}", self.what)?;
        if let Some(number) = self.block {
            write!(f, " of block {number}")?;
        }
        write!(f, " ({}): {}", self.url, self.detail)
    }
}

impl std::error::Error for StoreError {}

/// A number read from `column` as BIGINT that must not be negative.
fn column_u64(url: &str, what: &'static str, column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::new(StoreErrorKind::Corrupt, url, what, format!("{column} is {value}, out of range")))
}

/// A number to be written as BIGINT.
fn to_bigint(url: &str, what: &'static str, name: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::new(StoreErrorKind::OutOfRange, url, what, format!("{name} {value} does not fit BIGINT"))
    })
}

pub struct Store {
    client: Client,
    url: String,
    statements: Statements,
}

struct Statements {
    block_by_number: Statement,
    block_by_hash: Statement,
    blocks_after: Statement,
    latest_block: Statement,
    head: Statement,
    commit: Statement,
    fence_term: Statement,
    append_replica: Statement,
    clock: Statement,
}

const BLOCK_COLUMNS: &str = "block_number, block_hash, parent_hash, payload_data, requests_data, timestamp, \
                             parent_beacon_block_root, blob_versioned_hashes, payload_version, term, \
                             leader_signature";

/// Removes the password from a `postgres://user:password@host/db` URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// One connection to `url`, TLS as its `sslmode` and `sslrootcert` say
/// (`pg_url.rs`), with `configure`'s settings.
fn open(url: &str, redacted: &str, configure: impl FnOnce(&mut postgres::Config)) -> Result<Client, StoreError> {
    let url_error = |detail: String| StoreError::new(StoreErrorKind::Url, redacted, "URL", detail);
    let target = PgUrl::parse(url).map_err(url_error)?;
    let mut config = postgres::Config::from_str(&target.client_url).map_err(|e| url_error(e.to_string()))?;
    configure(&mut config);
    let connected = match &target.tls {
        PgTls::Off => config.connect(NoTls),
        PgTls::On { verify, .. } => {
            let tls = crate::tls::postgres_client_config(verify)
                .map_err(|detail| StoreError::new(StoreErrorKind::Tls, redacted, "connect", detail))?;
            config.connect(MakeRustlsConnect::new(tls))
        }
    };
    connected.map_err(|e| {
        let kind = if crate::tls::is_tls_failure(&e) {
            StoreErrorKind::Tls
        } else {
            StoreErrorKind::of_failed_connect(e.code())
        };
        StoreError::new(kind, redacted, "connect", error_text(&e))
    })
}

/// One host's whole connect (TCP, TLS, startup, session settings,
/// statements) must finish within this; a server process that hangs
/// answers the TCP connect and then nothing (`deadline.rs`).
pub const HOST_CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// A call on a guarded connection ([`GuardedStore`]) must answer within
/// this: longer than the server-side `statement_timeout`, so a slow
/// statement is the server's error first.
pub const CALL_DEADLINE: Duration = Duration::from_millis(STATEMENT_TIMEOUT_MS + 2_000);
/// Most hosts a `--postgres-url` may list.
pub const MAX_HOSTS: usize = 8;

/// `postgres://[user[:password]@]h1[:p1],h2[:p2]/db?params` as one URL per
/// host, in order, each with the same user, database and parameters
/// (`target_session_attrs` included, which the postgres crate checks per
/// connection). One host: the URL itself.
pub fn single_host_urls(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else { return vec![url.to_owned()] };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, tail) = rest.split_at(split_at);
    let prefix = match userinfo {
        Some(userinfo) => format!("{scheme}://{userinfo}@"),
        None => format!("{scheme}://"),
    };
    hosts.split(',').map(|host| format!("{prefix}{host}{tail}")).collect()
}

/// For each multi-host URL, the host that answered last: tried first next
/// time, so that after a failover every connect does not wait for the old
/// primary first. Keyed by the redacted URL; a handful of entries.
static LAST_GOOD_HOST: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());

fn last_good_host(redacted: &str) -> usize {
    let hosts = LAST_GOOD_HOST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    hosts.iter().find(|(url, _)| url == redacted).map_or(0, |(_, index)| *index)
}

fn remember_good_host(redacted: &str, index: usize) {
    let mut hosts = LAST_GOOD_HOST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(entry) = hosts.iter_mut().find(|(url, _)| url == redacted) {
        entry.1 = index;
    } else if hosts.len() < 64 {
        hosts.push((redacted.to_owned(), index));
    }
}

/// A call that gave no answer in time, as a store error: the connection
/// is given up (`ConnectionLost`), so the caller connects afresh.
fn late_error(url: &str, what: &'static str, late: crate::deadline::Late<StoreError>) -> StoreError {
    use crate::deadline::Late;
    match late {
        Late::Failed(error) => error,
        Late::TimedOut(within) => StoreError::new(
            StoreErrorKind::ConnectionLost,
            url,
            what,
            format!("no answer within {} ms (the server may hang); giving the connection up", within.as_millis()),
        ),
        Late::TooManyHanging(count) => StoreError::new(
            StoreErrorKind::Connect,
            url,
            what,
            format!("{count} earlier calls still hang on the database; not connecting again until they end"),
        ),
        Late::Gone => StoreError::new(StoreErrorKind::ConnectionLost, url, what, "the connection's worker is gone"),
    }
}

/// A [`Store`] on a thread of its own whose every call answers within
/// [`CALL_DEADLINE`] (`deadline.rs` says why): for the roles that must
/// follow a database failover even when the old primary hangs. A call past
/// the deadline gives the connection up (`ConnectionLost`).
pub struct GuardedStore {
    worker: crate::deadline::OnWorker<Store>,
    url: String,
}

impl GuardedStore {
    pub fn connect(url: &str, application: &str) -> Result<GuardedStore, StoreError> {
        let redacted = redact_url(url);
        let hosts = single_host_urls(url).len().clamp(1, MAX_HOSTS);
        // Every host's attempt, and a second of slack.
        let within = HOST_CONNECT_DEADLINE * u32::try_from(hosts).unwrap_or(1) + Duration::from_secs(1);
        let (url, application) = (url.to_owned(), application.to_owned());
        let worker = crate::deadline::OnWorker::start("clnode-db", within, move || Store::connect(&url, &application))
            .map_err(|late| late_error(&redacted, "connect", late))?;
        Ok(GuardedStore { worker, url: redacted })
    }

    /// Runs `call` on the store within [`CALL_DEADLINE`].
    pub fn call<T: Send + 'static>(
        &mut self,
        call: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.worker.call(CALL_DEADLINE, call).map_err(|late| late_error(&self.url, "call", late)).and_then(|r| r)
    }
}

/// The reads a replay needs (`replay::catch_up_from_store`), from a plain
/// [`Store`] (members) or a [`GuardedStore`] (the producer).
pub trait BlockReads {
    fn block_by_number(&mut self, block: u64) -> Result<Option<StoredBlock>, StoreError>;
    fn blocks_after(&mut self, after: u64, limit: u32, max_payload_bytes: u64) -> Result<Vec<StoredBlock>, StoreError>;
    fn url(&self) -> &str;
}

impl BlockReads for Store {
    fn block_by_number(&mut self, block: u64) -> Result<Option<StoredBlock>, StoreError> {
        Store::block_by_number(self, block)
    }
    fn blocks_after(&mut self, after: u64, limit: u32, max_payload_bytes: u64) -> Result<Vec<StoredBlock>, StoreError> {
        Store::blocks_after(self, after, limit, max_payload_bytes)
    }
    fn url(&self) -> &str {
        Store::url(self)
    }
}

impl BlockReads for GuardedStore {
    fn block_by_number(&mut self, block: u64) -> Result<Option<StoredBlock>, StoreError> {
        self.call(move |store| store.block_by_number(block))
    }
    fn blocks_after(&mut self, after: u64, limit: u32, max_payload_bytes: u64) -> Result<Vec<StoredBlock>, StoreError> {
        self.call(move |store| store.blocks_after(after, limit, max_payload_bytes))
    }
    fn url(&self) -> &str {
        &self.url
    }
}

impl Store {
    /// Connects to the first host of the URL that accepts (for a
    /// multi-host URL with `target_session_attrs=read-write`: the
    /// primary), starting with the one that answered last; each host's
    /// attempt within [`HOST_CONNECT_DEADLINE`].
    pub fn connect(url: &str, application: &str) -> Result<Store, StoreError> {
        let redacted = redact_url(url);
        let hosts = single_host_urls(url);
        if hosts.len() > MAX_HOSTS {
            let detail = format!("{} hosts; at most {MAX_HOSTS}", hosts.len());
            return Err(StoreError::new(StoreErrorKind::Url, &redacted, "URL", detail));
        }
        let first = last_good_host(&redacted) % hosts.len();
        let mut last_error = None;
        for index in (first..hosts.len()).chain(0..first) {
            let (host_url, application) = (hosts[index].clone(), application.to_owned());
            let attempt = crate::deadline::run_within("clnode-db-connect", HOST_CONNECT_DEADLINE, move || {
                Store::connect_host(&host_url, &application)
            });
            let error = match attempt {
                Ok(Ok(store)) => {
                    remember_good_host(&redacted, index);
                    return Ok(store);
                }
                Ok(Err(error)) => error,
                Err(late) => late_error(&redact_url(&hosts[index]), "connect", late),
            };
            last_error = Some(error);
        }
        Err(last_error.unwrap_or_else(|| StoreError::new(StoreErrorKind::Url, &redacted, "URL", "no host")))
    }

    /// One host's connect (no deadline of its own: [`Store::connect`]
    /// gives it one).
    fn connect_host(url: &str, application: &str) -> Result<Store, StoreError> {
        let redacted = redact_url(url);
        let fail =
            |what: &'static str, detail: String| StoreError::new(StoreErrorKind::Connect, &redacted, what, detail);
        let mut client = open(url, &redacted, |config| {
            config
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_user_timeout(TCP_USER_TIMEOUT)
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(5))
                .application_name(application);
        })?;
        // Set on the session, not as the startup packet's `options`:
        // PgBouncer before 1.20 refuses that parameter, and one that
        // ignores it would drop the timeouts silently. In PgBouncer's
        // session mode (the one clnode supports) a SET stays with this
        // client's server connection until it disconnects.
        client.batch_execute(&session_settings_sql()).map_err(|e| fail("session settings", error_text(&e)))?;
        let statements = Statements::prepare(&mut client).map_err(|e| {
            // The schema may not exist yet; apply it and prepare again.
            fail("prepare", error_text(&e))
        });
        let statements = match statements {
            Ok(s) => s,
            Err(_) => {
                // A table the seed made is migrated by the node's start
                // (`migrate_seed_table`), never half-applied to here.
                if crate::seed::migrate::is_seed_table(&mut client).map_err(|e| fail("inspect", error_text(&e)))? {
                    return Err(fail("prepare", "payloads is the seed's table, not migrated yet".into()));
                }
                client.batch_execute(&locked_schema_sql()).map_err(|e| fail("apply schema", error_text(&e)))?;
                Statements::prepare(&mut client).map_err(|e| fail("prepare", error_text(&e)))?
            }
        };
        Ok(Store { client, url: redacted, statements })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// At a node's start, before any [`Store::connect`]: migrates a
    /// `payloads` table the seed made in place (`seed::migrate`), signing
    /// its blocks with `signer` when given; nothing to do on any other
    /// database. A table that cannot be migrated is a `SeedMigration` error.
    pub fn migrate_seed_table(url: &str, signer: Option<&crate::signing::BlockSigningKey>) -> Result<(), StoreError> {
        let redacted = redact_url(url);
        let mut client = open(url, &redacted, |config| {
            config
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_user_timeout(TCP_USER_TIMEOUT)
                .application_name("clnode-migrate");
        })?;
        if let Some(blocks) = crate::seed::migrate::migrate_if_seed(&mut client, &redacted, signer)? {
            crate::log::info(&format!(
                "database: migrated the seed's payloads table in place ({blocks} blocks, {}; {redacted})",
                if signer.is_some() { "signed with the block-signing key" } else { "unsigned" }
            ));
        }
        Ok(())
    }

    fn fail(&self, what: &'static str, error: &postgres::Error) -> StoreError {
        let closed = self.client.is_closed() || error.is_closed();
        StoreError::new(StoreErrorKind::of_failed_statement(closed, error.code()), &self.url, what, error_text(error))
    }

    fn error(&self, kind: StoreErrorKind, what: &'static str, detail: impl Into<String>) -> StoreError {
        StoreError::new(kind, &self.url, what, detail)
    }

    /// Applies schema.sql (idempotent).
    pub fn apply_schema(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute(&locked_schema_sql()).map_err(|e| self.fail("apply schema", &e))
    }

    /// Records which chain this database holds, or checks it is the same one.
    pub fn ensure_chain(&mut self, genesis_hash: Hash32, chain_id: u64) -> Result<(), StoreError> {
        let chain_id_i64 = to_bigint(&self.url, "chain check", "chain id", chain_id)?;
        self.client
            .execute(
                "INSERT INTO chain_meta (id, genesis_hash, chain_id) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
                &[&genesis_hash.to_hex(), &chain_id_i64],
            )
            .map_err(|e| self.fail("chain check", &e))?;
        let row = self
            .client
            .query_one("SELECT genesis_hash, chain_id FROM chain_meta WHERE id = 1", &[])
            .map_err(|e| self.fail("chain check", &e))?;
        let stored_genesis: String = row.get(0);
        let stored_chain_id: i64 = row.get(1);
        // Block 1 links to this genesis (rows migrated from the seed's
        // table arrive without chain_meta; a clnode commit always linked).
        let first_parent = self
            .client
            .query("SELECT parent_hash FROM payloads WHERE block_number = 1", &[])
            .map_err(|e| self.fail("chain check", &e))?;
        if let Some(parent) = first_parent.first().map(|row| row.get::<_, String>(0)) {
            if parent != genesis_hash.to_hex() {
                return Err(self.error(
                    StoreErrorKind::ChainMismatch,
                    "chain check",
                    format!("block 1's parent is {parent}, but the execution client's genesis is {genesis_hash}"),
                ));
            }
        }
        if stored_genesis != genesis_hash.to_hex() || stored_chain_id != chain_id_i64 {
            return Err(self.error(
                StoreErrorKind::ChainMismatch,
                "chain check",
                format!(
                    "database holds chain {stored_chain_id} with genesis {stored_genesis}, \
                     but the execution client has chain {chain_id} with genesis {genesis_hash}"
                ),
            ));
        }
        Ok(())
    }

    /// The committed head; genesis (from `chain_meta`) when nothing is committed.
    pub fn committed_head(&mut self) -> Result<ChainHead, StoreError> {
        let rows = self.client.query(&self.statements.head, &[]).map_err(|e| self.fail("read head", &e))?;
        let row = rows.first().ok_or_else(|| {
            self.error(StoreErrorKind::NoChain, "read head", "no chain recorded yet (chain_meta is empty)")
        })?;
        let number = column_u64(&self.url, "read head", "block_number", row.get(0))?;
        let hash: String = row.get(1);
        let hash = Hash32::parse(&hash).map_err(|e| {
            self.error(StoreErrorKind::Corrupt, "read head", format!("block_hash {hash:?}: {e}")).at_block(number)
        })?;
        Ok(ChainHead { number, hash })
    }

    /// The term that committed block `number` and when (ms since the epoch,
    /// the database's clock).
    pub fn commit_time(&mut self, block: u64) -> Result<Option<(u64, f64)>, StoreError> {
        let Ok(number) = i64::try_from(block) else { return Ok(None) };
        let rows = self
            .client
            .query(
                "SELECT term, (extract(epoch FROM created_at) * 1000)::FLOAT8 FROM payloads WHERE block_number = $1",
                &[&number],
            )
            .map_err(|e| self.fail("read commit time", &e))?;
        let Some(row) = rows.first() else { return Ok(None) };
        let term = column_u64(&self.url, "read commit time", "term", row.get(0)).map_err(|e| e.at_block(block))?;
        Ok(Some((term, row.get(1))))
    }

    /// The hash of the committed block at `number` (genesis from
    /// `chain_meta` for 0), if there is one.
    pub fn hash_at(&mut self, number: u64) -> Result<Option<Hash32>, StoreError> {
        if number == 0 {
            return self.genesis_hash().map(Some);
        }
        let Some(block) = self.block_by_number(number)? else { return Ok(None) };
        Hash32::parse(&block.hash).map(Some).map_err(|e| {
            self.error(StoreErrorKind::Corrupt, "read block", format!("block_hash {:?}: {e}", block.hash))
                .at_block(number)
        })
    }

    fn genesis_hash(&mut self) -> Result<Hash32, StoreError> {
        let rows = self
            .client
            .query("SELECT genesis_hash FROM chain_meta WHERE id = 1", &[])
            .map_err(|e| self.fail("read genesis", &e))?;
        let row = rows.first().ok_or_else(|| {
            self.error(StoreErrorKind::NoChain, "read genesis", "no chain recorded yet (chain_meta is empty)")
        })?;
        let hash: String = row.get(0);
        Hash32::parse(&hash)
            .map_err(|e| self.error(StoreErrorKind::Corrupt, "read genesis", format!("genesis_hash {hash:?}: {e}")))
    }

    /// The database's clock (`clock_timestamp()`: the moment the statement
    /// reads it, not the transaction's start), since the epoch.
    pub fn database_time(&mut self) -> Result<Duration, StoreError> {
        let row = self.client.query_one(&self.statements.clock, &[]).map_err(|e| self.fail("read clock", &e))?;
        let seconds: f64 = row.get(0);
        Duration::try_from_secs_f64(seconds).map_err(|_| {
            self.error(
                StoreErrorKind::Corrupt,
                "read clock",
                format!("clock_timestamp() is {seconds} s since the epoch"),
            )
        })
    }

    pub fn fence_term(&mut self) -> Result<u64, StoreError> {
        let row = self.client.query_one(&self.statements.fence_term, &[]).map_err(|e| self.fail("read fence", &e))?;
        column_u64(&self.url, "read fence", "fence.term", row.get(0))
    }

    /// Raises the fence to `term` for `holder`. After this returns `Raised`,
    /// no commit with a lower term can succeed (commits re-read the fence
    /// under its lock). It succeeds only for a higher term, or for the term
    /// the fence holds already when `holder` holds it: two nodes never hold
    /// one term, even if Redis lost its counter and handed it out twice.
    pub fn raise_fence(&mut self, term: u64, holder: &str) -> Result<FenceOutcome, StoreError> {
        let term_i64 = to_bigint(&self.url, "raise fence", "term", term)?;
        let rows = self
            .client
            .query(
                "UPDATE fence SET term = $1, holder = $2, updated_at = NOW() \
                 WHERE id = 1 AND (term < $1 OR (term = $1 AND holder = $2)) RETURNING term",
                &[&term_i64, &holder],
            )
            .map_err(|e| self.fail("raise fence", &e))?;
        if rows.is_empty() {
            return Ok(FenceOutcome::AlreadyAt { fence_term: self.fence_term()? });
        }
        Ok(FenceOutcome::Raised)
    }

    /// The fenced commit (schema.sql `clnode_commit_block`), one round trip.
    /// `max_lead` is `--max-timestamp-lead`: the database refuses a block
    /// whose timestamp is further ahead of its own clock.
    pub fn commit_block(
        &mut self,
        term: u64,
        block: &StoredBlock,
        max_lead: Duration,
    ) -> Result<CommitOutcome, StoreError> {
        let at_block = |e: StoreError| e.at_block(block.number);
        let term_i64 = to_bigint(&self.url, "commit", "term", term).map_err(at_block)?;
        let max_lead_ms = u64::try_from(max_lead.as_millis()).unwrap_or(u64::MAX);
        let max_lead_ms = to_bigint(&self.url, "commit", "timestamp lead", max_lead_ms).map_err(at_block)?;
        let number = to_bigint(&self.url, "commit", "block number", block.number).map_err(at_block)?;
        let timestamp = to_bigint(&self.url, "commit", "timestamp", block.timestamp).map_err(at_block)?;
        let version = i16::from(block.payload_version);
        let row = self
            .client
            .query_one(
                &self.statements.commit,
                &[
                    &term_i64,
                    &number,
                    &block.hash,
                    &block.parent_hash,
                    &block.payload_json,
                    &block.requests_json,
                    &timestamp,
                    &block.parent_beacon_block_root,
                    &block.blob_versioned_hashes_json,
                    &version,
                    &max_lead_ms,
                    &block.leader_signature,
                ],
            )
            .map_err(|e| self.fail("commit", &e).at_block(block.number))?;
        let outcome: String = row.get(0);
        parse_commit_outcome(&outcome).ok_or_else(|| {
            self.error(StoreErrorKind::Corrupt, "commit", format!("unexpected outcome {outcome:?}"))
                .at_block(block.number)
        })
    }

    pub fn block_by_number(&mut self, block: u64) -> Result<Option<StoredBlock>, StoreError> {
        let Ok(number) = i64::try_from(block) else {
            return Ok(None);
        };
        let rows = self
            .client
            .query(&self.statements.block_by_number, &[&number])
            .map_err(|e| self.fail("read block", &e).at_block(block))?;
        rows.first().map(|row| self.stored_block(row)).transpose()
    }

    /// `hash` must be lowercase `0x` hex (the API normalises it).
    pub fn block_by_hash(&mut self, hash: &str) -> Result<Option<StoredBlock>, StoreError> {
        let rows =
            self.client.query(&self.statements.block_by_hash, &[&hash]).map_err(|e| self.fail("read block", &e))?;
        rows.first().map(|row| self.stored_block(row)).transpose()
    }

    pub fn latest_block(&mut self) -> Result<Option<StoredBlock>, StoreError> {
        let rows = self.client.query(&self.statements.latest_block, &[]).map_err(|e| self.fail("read block", &e))?;
        rows.first().map(|row| self.stored_block(row)).transpose()
    }

    /// Up to `limit` (capped at [`MAX_BLOCKS_PER_QUERY`]) blocks after
    /// `after`, in order, and no more than `max_payload_bytes` of payload
    /// text before the last one: a page's rendering (`api/page.rs`) is cut
    /// at its byte budget, and the database never sends the rows past that
    /// cut. Always the first block, however large.
    pub fn blocks_after(
        &mut self,
        after: u64,
        limit: u32,
        max_payload_bytes: u64,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        // Query bounds, not values: nothing is stored after i64::MAX.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::from(limit.clamp(1, MAX_BLOCKS_PER_QUERY));
        let budget = i64::try_from(max_payload_bytes).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(&self.statements.blocks_after, &[&after, &limit, &budget])
            .map_err(|e| self.fail("read blocks", &e))?;
        rows.iter().map(|row| self.stored_block(row)).collect()
    }

    /// Member: appends verified, executed blocks in one statement; the first
    /// must link to the stored head. Returns the new head number. The write
    /// is not flushed before this returns (see `clnode_append_replica` in
    /// schema.sql for why a member may lose its last rows, and how it repairs
    /// that).
    ///
    /// A page of more than [`APPEND_STATEMENT_BYTES`] is written in several
    /// statements, each extending the one before (a failure part-way leaves
    /// a shorter stored chain, the case `E > D` of the resume rules).
    pub fn append_replica_batch(&mut self, blocks: &[StoredBlock]) -> Result<u64, StoreError> {
        if blocks.is_empty() {
            return self.committed_head().map(|head| head.number);
        }
        // The page links within itself; the database checks each
        // statement's first block against the stored head, in the same
        // statement as the insert.
        if let Err(reason) = page_links(blocks) {
            return Err(self.error(StoreErrorKind::NotHead, "append", reason));
        }
        let mut head = 0;
        for statement in statement_chunks(blocks, APPEND_STATEMENT_BYTES) {
            head = self.append_statement(statement)?;
        }
        Ok(head)
    }

    /// One `clnode_append_replica` statement for `blocks` (not empty, linked).
    fn append_statement(&mut self, blocks: &[StoredBlock]) -> Result<u64, StoreError> {
        let Some(first) = blocks.first() else {
            return self.committed_head().map(|head| head.number);
        };
        // One statement for the whole page: column arrays, unnested.
        let bigints = |name: &str, value: fn(&StoredBlock) -> u64| -> Result<Vec<i64>, StoreError> {
            blocks
                .iter()
                .map(|b| to_bigint(&self.url, "append", name, value(b)).map_err(|e| e.at_block(b.number)))
                .collect()
        };
        let numbers = bigints("block number", |b| b.number)?;
        let hashes: Vec<&str> = blocks.iter().map(|b| b.hash.as_str()).collect();
        let parents: Vec<&str> = blocks.iter().map(|b| b.parent_hash.as_str()).collect();
        let payloads: Vec<&str> = blocks.iter().map(|b| b.payload_json.as_str()).collect();
        let requests: Vec<&str> = blocks.iter().map(|b| b.requests_json.as_str()).collect();
        let timestamps = bigints("timestamp", |b| b.timestamp)?;
        let roots: Vec<&str> = blocks.iter().map(|b| b.parent_beacon_block_root.as_str()).collect();
        let versioned: Vec<&str> = blocks.iter().map(|b| b.blob_versioned_hashes_json.as_str()).collect();
        let versions: Vec<i16> = blocks.iter().map(|b| i16::from(b.payload_version)).collect();
        let terms = bigints("term", |b| b.term)?;
        let signatures: Vec<Option<&str>> = blocks.iter().map(|b| b.leader_signature.as_deref()).collect();
        let row = self
            .client
            .query_one(
                &self.statements.append_replica,
                &[
                    &numbers,
                    &hashes,
                    &parents,
                    &payloads,
                    &requests,
                    &timestamps,
                    &roots,
                    &versioned,
                    &versions,
                    &terms,
                    &signatures,
                ],
            )
            .map_err(|e| self.fail("append", &e).at_block(first.number))?;
        let outcome: String = row.get(0);
        let unexpected = || {
            self.error(StoreErrorKind::Corrupt, "append", format!("unexpected outcome {outcome:?}"))
                .at_block(first.number)
        };
        if let Some(number) = outcome.strip_prefix("appended:") {
            return number.parse().map_err(|_| unexpected());
        }
        match parse_commit_outcome(&outcome) {
            Some(CommitOutcome::NotHead { head_number, head_hash }) => Err(self.error(
                StoreErrorKind::NotHead,
                "append",
                format!(
                    "block {} ({}) does not extend stored head {head_number} ({head_hash})",
                    first.number, first.hash
                ),
            )),
            _ => Err(unexpected()),
        }
    }

    fn stored_block(&self, row: &Row) -> Result<StoredBlock, StoreError> {
        let number: i64 = row.get(0);
        let timestamp: i64 = row.get(5);
        let version: i16 = row.get(8);
        let term: i64 = row.get(9);
        let number = column_u64(&self.url, "read block", "block_number", number)?;
        let non_negative =
            |value: i64, name: &str| column_u64(&self.url, "read block", name, value).map_err(|e| e.at_block(number));
        // Served as a JSON list (`StoredBlock::to_wire_json`): checked here,
        // where it leaves the database, rather than rendered as an empty list.
        let versioned_hashes: String = row.get(7);
        // Nearly every block has none: "[]" needs no parsing.
        if versioned_hashes != "[]"
            && !matches!(serde_json::from_str(&versioned_hashes), Ok(serde_json::Value::Array(_)))
        {
            return Err(self
                .error(
                    StoreErrorKind::Corrupt,
                    "read block",
                    format!("blob_versioned_hashes {versioned_hashes:?} is not a JSON list"),
                )
                .at_block(number));
        }
        Ok(StoredBlock {
            number,
            hash: row.get(1),
            parent_hash: row.get(2),
            payload_json: row.get(3),
            requests_json: row.get(4),
            timestamp: non_negative(timestamp, "timestamp")?,
            parent_beacon_block_root: row.get(6),
            blob_versioned_hashes_json: versioned_hashes,
            payload_version: u8::try_from(version).map_err(|_| {
                self.error(StoreErrorKind::Corrupt, "read block", format!("payload_version is {version}, out of range"))
                    .at_block(number)
            })?,
            term: non_negative(term, "term")?,
            leader_signature: row.get(10),
        })
    }

    /// Direct access for the notifier (LISTEN) and tests.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Statements, postgres::Error> {
        Ok(Statements {
            block_by_number: client
                .prepare(&format!("SELECT {BLOCK_COLUMNS} FROM payloads WHERE block_number = $1"))?,
            block_by_hash: client.prepare(&format!("SELECT {BLOCK_COLUMNS} FROM payloads WHERE block_hash = $1"))?,
            // The window sums the payload text before each row (octet_length
            // reads the stored size; nothing is detoasted for rows cut off),
            // so a page stops at its byte budget plus one block (the first
            // block that reaches the budget; the renderer cuts exactly).
            blocks_after: client.prepare(&format!(
                "SELECT {BLOCK_COLUMNS} FROM (SELECT {BLOCK_COLUMNS}, \
                 sum(octet_length(payload_data)) OVER (ORDER BY block_number ROWS UNBOUNDED PRECEDING) \
                 - octet_length(payload_data) AS bytes_before \
                 FROM payloads WHERE block_number > $1 ORDER BY block_number LIMIT $2) AS page \
                 WHERE bytes_before < $3::BIGINT ORDER BY block_number"
            ))?,
            latest_block: client
                .prepare(&format!("SELECT {BLOCK_COLUMNS} FROM payloads ORDER BY block_number DESC LIMIT 1"))?,
            // The newest block, or genesis (number 0) when none is committed.
            head: client.prepare(
                "(SELECT block_number, block_hash FROM payloads ORDER BY block_number DESC LIMIT 1) \
                 UNION ALL (SELECT 0::BIGINT, genesis_hash FROM chain_meta WHERE id = 1) \
                 ORDER BY 1 DESC LIMIT 1",
            )?,
            commit: client.prepare(
                "SELECT clnode_commit_block($1::BIGINT, $2::BIGINT, $3::TEXT, $4::TEXT, $5::TEXT, $6::TEXT, \
                 $7::BIGINT, $8::TEXT, $9::TEXT, $10::SMALLINT, $11::BIGINT, $12::TEXT)",
            )?,
            fence_term: client.prepare("SELECT term FROM fence WHERE id = 1")?,
            append_replica: client.prepare(
                "SELECT clnode_append_replica($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                 $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::SMALLINT[], $10::BIGINT[], $11::TEXT[])",
            )?,
            clock: client.prepare("SELECT extract(epoch FROM clock_timestamp())::FLOAT8")?,
        })
    }
}

/// A member writes a page in statements of at most this many bytes of
/// block text (one larger block goes alone). The postgres client keeps the
/// buffers it encoded and sent a statement in, at that statement's size,
/// for as long as the connection lives: after a catch-up of 8 MiB pages a
/// member held 21 MB in them (docs/BENCHMARKS.md, M1). A few statements
/// per megabyte cost a round trip each, next to executing the megabyte.
pub const APPEND_STATEMENT_BYTES: u64 = 1024 * 1024;

/// `blocks` cut into consecutive runs of at most `budget` bytes of text
/// each (`page_budget::blocks_within`: a larger block is a run alone).
fn statement_chunks(blocks: &[StoredBlock], budget: u64) -> Vec<&[StoredBlock]> {
    let mut chunks = Vec::new();
    let mut rest = blocks;
    while !rest.is_empty() {
        let count = crate::page_budget::blocks_within(rest.iter().map(StoredBlock::text_bytes), budget).max(1);
        let (chunk, after) = rest.split_at(count.min(rest.len()));
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

/// Heights consecutive and parents linked within one page.
fn page_links(blocks: &[StoredBlock]) -> Result<(), String> {
    for pair in blocks.windows(2) {
        let (previous, block) = (&pair[0], &pair[1]);
        if block.number != previous.number + 1 || block.parent_hash != previous.hash {
            return Err(format!(
                "block {} ({}) does not extend block {} ({}) of the same page",
                block.number, block.hash, previous.number, previous.hash
            ));
        }
    }
    Ok(())
}

fn parse_commit_outcome(text: &str) -> Option<CommitOutcome> {
    if text == "committed" {
        return Some(CommitOutcome::Committed);
    }
    if let Some(term) = text.strip_prefix("fenced:") {
        // A negative term is no outcome the function can give: unparsable.
        return Some(CommitOutcome::Fenced { fence_term: term.parse().ok()? });
    }
    if let Some(now_s) = text.strip_prefix("clock:") {
        // A database clock before 1970 is no outcome either.
        return Some(CommitOutcome::Clock { database_now_s: now_s.parse().ok()? });
    }
    let rest = text.strip_prefix("not_head:")?;
    let (number, hash) = rest.split_once(':')?;
    Some(CommitOutcome::NotHead { head_number: number.parse().ok()?, head_hash: hash.to_owned() })
}

/// The server's message when there is one (the Display of postgres::Error
/// says only "db error").
fn error_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://postgres:hunter2@localhost:5432/consensus?sslmode=disable"),
            "postgres://postgres:***@localhost:5432/consensus?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://postgres@h/db"), "postgres://postgres@h/db");
    }

    #[test]
    fn failed_statements_are_classified_by_connection_state_and_sqlstate() {
        use StoreErrorKind::{ConnectionLost, Query};
        let code = SqlState::from_code;
        let cases: [(bool, Option<SqlState>, StoreErrorKind); 9] = [
            // No server answer (I/O, protocol): the connection is suspect.
            (false, None, ConnectionLost),
            (true, None, ConnectionLost),
            // The server refused the statement on a working connection.
            (false, Some(SqlState::UNIQUE_VIOLATION), Query),
            (false, Some(SqlState::QUERY_CANCELED), Query), // statement_timeout
            (false, Some(code("42P01")), Query),            // undefined table
            // ...unless the connection closed as well, or the server ends the session.
            (true, Some(SqlState::UNIQUE_VIOLATION), ConnectionLost),
            (false, Some(SqlState::ADMIN_SHUTDOWN), ConnectionLost),
            (false, Some(SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT), ConnectionLost),
            (false, Some(code("08006")), ConnectionLost), // connection failure
        ];
        for (closed, sqlstate, expected) in cases {
            assert_eq!(
                StoreErrorKind::of_failed_statement(closed, sqlstate.as_ref()),
                expected,
                "{closed} {sqlstate:?}"
            );
        }
    }

    #[test]
    fn refused_connections_are_classified_by_sqlstate() {
        use StoreErrorKind::{Connect, Credentials, NoDatabase};
        let code = SqlState::from_code;
        let cases = [
            (None, Connect), // refused, timed out: the server may come
            (Some(code("3D000")), NoDatabase),
            (Some(code("28P01")), Credentials),
            (Some(code("28000")), Credentials),            // no pg_hba.conf entry
            (Some(SqlState::CANNOT_CONNECT_NOW), Connect), // starting up, shutting down
            (Some(SqlState::TOO_MANY_CONNECTIONS), Connect),
        ];
        for (sqlstate, expected) in cases {
            assert_eq!(StoreErrorKind::of_failed_connect(sqlstate.as_ref()), expected, "{sqlstate:?}");
            assert_eq!(expected.is_refused_configuration(), expected != Connect);
        }
    }

    #[test]
    fn only_connection_kinds_drop_the_connection() {
        use StoreErrorKind::*;
        for (kind, lost) in [
            (Url, true),
            (Connect, true),
            (NoDatabase, true),
            (Credentials, true),
            (ConnectionLost, true),
            (Query, false),
            (Corrupt, false),
            (OutOfRange, false),
            (ChainMismatch, false),
            (NoChain, false),
            (NotHead, false),
            (SeedMigration, false),
        ] {
            assert_eq!(StoreError::new(kind, "u", "w", "d").is_connection_lost(), lost, "{kind:?}");
        }
    }

    #[test]
    fn unusable_urls_and_unreachable_servers_are_told_apart() {
        let error = Store::connect("postgres://u@localhost:port/db", "test").err().map(|e| e.kind);
        assert_eq!(error, Some(StoreErrorKind::Url));
        // Port 1 on loopback: refused at once, nothing listens there.
        let error = Store::connect("postgres://u:hunter2@127.0.0.1:1/db", "test").err();
        let error = error.as_ref().map(|e| (e.kind, e.is_connection_lost(), e.to_string().contains("hunter2")));
        assert_eq!(error, Some((StoreErrorKind::Connect, true, false)));
    }

    #[test]
    fn out_of_range_values_are_errors_never_zero() {
        assert_eq!(column_u64("u", "read head", "block_number", 7).ok(), Some(7));
        let error = column_u64("u", "read fence", "fence.term", -3).err();
        assert_eq!(error.as_ref().map(|e| e.kind), Some(StoreErrorKind::Corrupt));
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("fence.term") && text.contains("-3"), "{text}");
        assert_eq!(column_u64("u", "w", "term", i64::MIN).err().map(|e| e.kind), Some(StoreErrorKind::Corrupt));
        assert_eq!(to_bigint("u", "commit", "term", 9).ok(), Some(9));
        let error = to_bigint("u", "commit", "term", u64::MAX).err().map(|e| e.at_block(5));
        assert_eq!(error.as_ref().map(|e| e.kind), Some(StoreErrorKind::OutOfRange));
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("PostgreSQL commit of block 5 (u): term 18446744073709551615"), "{text}");
        assert_eq!(parse_commit_outcome("fenced:-1"), None, "a negative fence term is no outcome");
    }

    #[test]
    fn member_pages_are_written_in_bounded_statements() {
        let block = |number: u64, payload_len: usize| {
            let record = crate::block::tests::sample_record(number, Hash32([1; 32]));
            StoredBlock { payload_json: "x".repeat(payload_len), ..record.to_stored() }
        };
        let overhead = block(1, 0).text_bytes();
        let sizes = |blocks: &[StoredBlock], budget: u64| -> Vec<Vec<u64>> {
            statement_chunks(blocks, budget).iter().map(|chunk| chunk.iter().map(|b| b.number).collect()).collect()
        };
        // Blocks of 1,000 bytes of text each.
        let blocks: Vec<_> = (1..=5).map(|n| block(n, 1000 - overhead)).collect();
        assert_eq!(sizes(&blocks, 2500), [vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(sizes(&blocks, 5000), [vec![1, 2, 3, 4, 5]]);
        // A block larger than the budget goes alone, and nothing waits behind it.
        let mixed = [block(1, 1000), block(2, 100_000), block(3, 1000)];
        assert_eq!(sizes(&mixed, 10_000), [vec![1], vec![2], vec![3]]);
        assert_eq!(sizes(&[], 1000), Vec::<Vec<u64>>::new());
    }

    #[test]
    fn multi_host_urls_split_into_one_url_per_host() {
        let cases: &[(&str, &[&str])] = &[
            ("postgres://u@h:5432/db", &["postgres://u@h:5432/db"]),
            (
                "postgres://u:p@a:1,b:2/db?target_session_attrs=read-write",
                &[
                    "postgres://u:p@a:1/db?target_session_attrs=read-write",
                    "postgres://u:p@b:2/db?target_session_attrs=read-write",
                ],
            ),
            ("postgresql://a,b", &["postgresql://a", "postgresql://b"]),
            (
                "postgres://a:1,[::1]:2?sslmode=require",
                &["postgres://a:1?sslmode=require", "postgres://[::1]:2?sslmode=require"],
            ),
            // A password holding '@' or ',' : the host list starts after the last '@'.
            ("postgres://u:p@x,y@h1,h2/db", &["postgres://u:p@x,y@h1/db", "postgres://u:p@x,y@h2/db"]),
        ];
        for (url, expected) in cases {
            assert_eq!(single_host_urls(url), expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{url}");
        }
    }

    #[test]
    fn commit_outcomes_parse() {
        assert_eq!(parse_commit_outcome("committed"), Some(CommitOutcome::Committed));
        assert_eq!(parse_commit_outcome("fenced:7"), Some(CommitOutcome::Fenced { fence_term: 7 }));
        assert_eq!(
            parse_commit_outcome("not_head:5:0xab"),
            Some(CommitOutcome::NotHead { head_number: 5, head_hash: "0xab".into() })
        );
        assert_eq!(parse_commit_outcome("clock:1700000000"), Some(CommitOutcome::Clock { database_now_s: 1700000000 }));
        assert_eq!(parse_commit_outcome("clock:-5"), None, "a clock before the epoch is no outcome");
        assert_eq!(parse_commit_outcome("clock:"), None);
        assert_eq!(parse_commit_outcome("maybe"), None);
    }
}
