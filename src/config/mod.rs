//! Command line and environment: parsed with lexopt, then validated into a
//! [`Config`] that is passed explicitly to every role.
//!
//! Precedence: flag, then environment variable (the seed's names), then the
//! seed's default. Every error is one readable line; no secret is echoed.
//!
//! `flags` holds the one definition of each flag (name, variable, default,
//! kind, help); `values` reads one flag by its definition; this file checks
//! flags against each other and builds [`Config`].

pub mod flags;
mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::jwt::JwtSecret;
use crate::leader::redis_target::{parse_redis_addr, parse_sentinels, RedisTarget};
use crate::secret::Secret;
use crate::signing::{parse_public_keys, BlockSigningKey, KeygenArgs, RecordTrust};
pub use flags::usage;
use flags::{Kind, ADMIN_FLAGS, FLAGS, STATUS_FLAGS};
pub use values::duration;
use values::Input;

/// The least default `--engine-stall-limit` (see `leader_config`).
const MIN_DEFAULT_ENGINE_STALL_LIMIT: Duration = Duration::from_secs(1);
/// The least default `--database-stall-limit` (`default_database_stall_limit`).
const MIN_DEFAULT_DATABASE_STALL_LIMIT: Duration = Duration::from_secs(1);

/// `--database-stall-limit` when not given: half the TTL, but never under a
/// second. The guard is for a database that is gone for this leader (cut
/// off, hung), not for a slow commit: on a shared disk one WAL flush took
/// 165-410 ms under load (docs/BENCHMARKS.md, "Soak"), and a standby writes
/// to the same PostgreSQL, so releasing the lease on that gains nothing and
/// costs a failover. It need not be below the TTL: the fence, not the
/// lease, keeps a commit still in flight from a released term out of the
/// chain, so the limit only decides how soon a standby takes over.
fn default_database_stall_limit(lease_ttl: Duration) -> Duration {
    (lease_ttl / 2).max(MIN_DEFAULT_DATABASE_STALL_LIMIT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Member,
}

/// Settings every node has.
#[derive(Debug, Clone)]
pub struct Config {
    pub instance_id: String,
    pub mode: Mode,
    /// `debug` adds one line per committed or applied block, with the time
    /// of each step.
    pub log_level: crate::log::Level,
    pub log_format: crate::log::Format,
    pub eth_client_url: String,
    pub jwt_secret: JwtSecret,
    /// Where the JWT secret came from, when it was a file (checked for
    /// loose permissions at start).
    pub jwt_secret_path: Option<PathBuf>,
    /// Where the block-signing key came from (checked for loose
    /// permissions at start, as the JWT secret file is).
    pub signing_key_path: Option<PathBuf>,
    pub health_addr: SocketAddr,
    /// Leader-mode nodes always serve the sync API; members only when given.
    pub api_addr: Option<SocketAddr>,
    pub postgres_url: String,
    /// Bearer token the sync API requires (when set).
    pub api_token: Option<Secret>,
    /// Bearer token for /admin/* on the health port (admin is off without it).
    pub admin_token: Option<Secret>,
    /// Keys for signing served records and verifying fetched ones.
    pub sync_keys: SyncKeys,
    /// The record encoding the sync API serves (leader) or reads (member).
    pub sync_wire: SyncWire,
    pub leader: LeaderConfig,
    pub member: MemberConfig,
}

/// The sync API's record encoding (`--sync-wire`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncWire {
    /// clnode's records: JSON payloads, term, leader signature.
    Json,
    /// The seed's records (`seed::wire`): msgpack payloads, nothing else.
    Seed,
}

/// The record-signing keys: sign with `current`; accept `current` or
/// `previous` (so a rotation needs no flag day).
#[derive(Debug, Clone, Default)]
pub struct SyncKeys {
    pub current: Option<Secret>,
    pub previous: Option<Secret>,
}

/// Settings only leader-mode nodes use.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// `--redis-addr`, or the master `--redis-sentinel` names.
    pub redis: RedisTarget,
    pub redis_password: Option<Secret>,
    pub redis_stream: String,
    pub redis_stream_max_len: u64,
    pub fee_recipient: [u8; 20],
    pub build_delay: Duration,
    pub lease_ttl: Duration,
    pub lease_renew_interval: Duration,
    /// The lease is treated as lost this long before Redis would expire it,
    /// to absorb clock-rate differences and the renew round trip.
    pub lease_safety_margin: Duration,
    /// A leader whose database calls have failed or hung this long releases
    /// the lease (it cannot commit; a standby that can should lead).
    pub database_stall_limit: Duration,
    /// A leader whose Engine API call in flight has not answered this long
    /// releases the lease (`leader::lease`, `held_lease_action`).
    pub engine_stall_limit: Duration,
    pub min_block_interval: Duration,
    /// Zero: never build empty blocks. Otherwise build one when no block has
    /// been committed for this long (a heartbeat).
    pub empty_block_interval: Duration,
    /// How often an idle leader builds to look for new transactions.
    pub idle_poll_interval: Duration,
    /// How far block timestamps may run ahead of the cluster's clock
    /// (PostgreSQL's); the fenced commit refuses a block beyond it.
    pub max_timestamp_lead: Duration,
    /// How far this node's wall clock may disagree with PostgreSQL's before
    /// the node reports it and stops leading.
    pub max_clock_skew: Duration,
    /// Signs every committed block; `None` only with
    /// `--insecure-unsigned-records`.
    pub signing_key: Option<BlockSigningKey>,
    /// `--preferred-leaders`: instance ids, most preferred first (empty:
    /// the lease stays wherever it is).
    pub preferred_leaders: Vec<String>,
}

/// Settings only members use.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub leader_urls: Vec<String>,
    /// Bearer token sent to the sync API.
    pub sync_token: Option<Secret>,
    pub batch_limit: u32,
    /// The byte budget asked for with each page (`max_bytes`).
    pub page_bytes: u64,
    pub long_poll_wait: Duration,
    /// Whose signatures a record needs before anything is executed.
    pub record_trust: RecordTrust,
    /// The encoding of the records the sync URLs serve.
    pub wire: SyncWire,
    /// `--max-lag-blocks`, `--max-lag-ms`: /health's readiness threshold
    /// (none set: not judged).
    pub lag_limits: crate::member::lag_limit::LagLimits,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Status(crate::status_cli::StatusArgs),
    Admin(crate::admin_cli::AdminArgs),
    Keygen(KeygenArgs),
    Help,
    Version,
}

/// One readable line: what is wrong and with which flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

/// `clnode`'s arguments and environment into a node's settings, or help.
/// `args` excludes the program name.
pub fn parse<I>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = OsString>,
{
    use lexopt::prelude::*;
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|first| first == "status") {
        args.next();
        return parse_status(args, env);
    }
    if args.peek().is_some_and(|first| first == "admin") {
        args.next();
        return parse_admin(args, env);
    }
    if args.peek().is_some_and(|first| first == "keygen") {
        args.next();
        return parse_keygen(args);
    }
    let mut input = Input::new(FLAGS, "");
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| ConfigError(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long(name) => {
                let Some(flag) = flags::find(FLAGS, name) else {
                    if let Some(instead) = flags::seed_refusal(name) {
                        return err(format!("--{name} is the seed's flag, not clnode's: {instead}"));
                    }
                    return err(format!("unknown flag --{name} (see --help)"));
                };
                let value = if flag.kind == Kind::Switch { String::new() } else { flag_value(&mut parser, flag.name)? };
                input.set(flag, value);
            }
            Short(c) => return err(format!("unknown flag -{c} (see --help)")),
            Value(value) => {
                return err(format!("unexpected argument {:?} (see --help)", value.to_string_lossy()));
            }
        }
    }
    // An empty variable counts as unset, as a shell's `VAR=` usually means.
    let env = |var: &str| env(var).filter(|value| !value.is_empty());
    refuse_seed_variables(&env)?;
    input.fill_from_env(env);
    validate(input).map(|config| Command::Run(Box::new(config)))
}

/// The seed's variables clnode does not read are errors, not ignored: a
/// node started from the seed's environment would otherwise run with
/// another meaning than its operator set.
fn refuse_seed_variables(env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    for seed in flags::SEED_FLAGS {
        if let (flags::SeedMapping::Refused { instead }, Some(_)) = (seed.mapping, env(seed.env)) {
            return err(format!("{} is the seed's variable (--{}), not clnode's: {instead}", seed.env, seed.name));
        }
    }
    Ok(())
}

fn flag_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, ConfigError> {
    parser
        .value()
        .map_err(|_| ConfigError(format!("--{flag} needs a value")))?
        .into_string()
        .map_err(|_| ConfigError(format!("--{flag}: value is not valid UTF-8")))
}

/// `clnode status [--url URL[,URL...]] [--watch] [--interval DURATION]`.
fn parse_status<I>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = OsString>,
{
    use lexopt::prelude::*;
    let mut input = Input::new(STATUS_FLAGS, "status: ");
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| ConfigError(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long(name) => match flags::find(STATUS_FLAGS, name) {
                Some(flag) if flag.kind == Kind::Switch => input.set(flag, String::new()),
                Some(flag) => {
                    let value = flag_value(&mut parser, flag.name)?;
                    input.set(flag, value);
                }
                None => {
                    let known: Vec<String> = STATUS_FLAGS.iter().map(|flag| format!("--{}", flag.name)).collect();
                    return err(format!("status: unknown flag --{name} (use {})", known.join(", ")));
                }
            },
            Short(c) => return err(format!("status: unknown flag -{c}")),
            Value(v) => return err(format!("status: unexpected argument {:?}", v.to_string_lossy())),
        }
    }
    // Unlike a node's, an empty CLNODE_STATUS_URLS is kept: it has always
    // been an error (no URLs), not a silent fall-back to the default.
    input.fill_from_env(env);
    let urls = input.url_list("url")?;
    let watch = input.given("watch").is_some();
    let interval = input.duration("interval")?;
    Ok(Command::Status(crate::status_cli::StatusArgs { urls, watch, interval }))
}

/// `clnode admin [--url URL[,URL...]] --token SECRET ACTION [--to ID]`.
fn parse_admin<I>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = OsString>,
{
    use crate::admin_cli::{AdminAction, AdminArgs};
    use lexopt::prelude::*;
    let usage =
        "admin: usage: clnode admin [--url URL[,URL...]] --token SECRET status|step-down|transfer --to ID|pause|resume";
    let mut input = Input::new(ADMIN_FLAGS, "admin: ");
    let mut action: Option<String> = None;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| ConfigError(format!("admin: {e}")))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long(name) => match flags::find(ADMIN_FLAGS, name) {
                Some(flag) => {
                    let value = flag_value(&mut parser, flag.name)?;
                    input.set(flag, value);
                }
                None => return err(format!("admin: unknown flag --{name} ({usage})")),
            },
            Value(value) if action.is_none() => action = Some(value.to_string_lossy().into_owned()),
            _ => return err(usage),
        }
    }
    input.fill_from_env(|var| env(var).filter(|value| !value.is_empty()));
    let to = input.given("to").map(str::to_owned);
    let action = match (action.as_deref(), to) {
        (Some("status"), None) => AdminAction::Status,
        (Some("step-down"), None) => AdminAction::StepDown,
        (Some("pause"), None) => AdminAction::Pause,
        (Some("resume"), None) => AdminAction::Resume,
        (Some("transfer"), Some(to)) => {
            let valid =
                (1..=64).contains(&to.len()) && to.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid {
                return err(format!("admin: --to {to:?} is not an instance id"));
            }
            AdminAction::Transfer { to }
        }
        (Some("transfer"), None) => return err("admin: transfer needs --to ID (the node to hand the lease to)"),
        (Some(_), Some(_)) => return err("admin: --to goes with transfer only"),
        _ => return err(usage),
    };
    let urls = input.url_list("url")?;
    let Some(token) = input.secret("token")? else {
        return err("admin: --token is required (or set CLNODE_ADMIN_TOKEN; @PATH reads it from a file)");
    };
    Ok(Command::Admin(AdminArgs { urls, token, action }))
}

/// `clnode keygen PATH` (a new key file) or `clnode keygen --public PATH`.
fn parse_keygen<I>(args: I) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = OsString>,
{
    use lexopt::prelude::*;
    let usage = "keygen: usage: clnode keygen [--public] PATH";
    let (mut path, mut public_only) = (None, false);
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| ConfigError(format!("keygen: {e}")))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("public") => public_only = true,
            Value(value) if path.is_none() => path = Some(PathBuf::from(value)),
            _ => return err(usage),
        }
    }
    match path {
        Some(path) => Ok(Command::Keygen(KeygenArgs { path, public_only })),
        None => err(usage),
    }
}

/// The given values and defaults into a node's settings; the first problem
/// found is the error.
fn validate(mut input: Input) -> Result<Config, ConfigError> {
    let instance_id = input.instance_id("instance-id")?;
    input.mode = match input.choice("mode")?.as_str() {
        "member" => Mode::Member,
        _ => Mode::Leader,
    };
    let log_level = match input.choice("log-level")?.as_str() {
        "error" => crate::log::Level::Error,
        "warn" => crate::log::Level::Warn,
        "debug" => crate::log::Level::Debug,
        _ => crate::log::Level::Info,
    };
    let log_format = match input.choice("log-format")?.as_str() {
        "json" => crate::log::Format::Json,
        _ => crate::log::Format::Text,
    };
    let eth_client_url = input.http_url("eth-client-url")?;
    let (jwt_secret, jwt_secret_path) = jwt_secret(&input)?;
    let mut config = Config {
        instance_id,
        mode: input.mode,
        log_level,
        log_format,
        eth_client_url,
        jwt_secret,
        jwt_secret_path,
        signing_key_path: None,
        postgres_url: postgres_url(&input)?,
        health_addr: input.listen("health-addr")?,
        api_addr: input.listen_if_set("api-addr")?,
        api_token: input.secret("api-token")?,
        admin_token: input.secret("admin-token")?,
        sync_keys: sync_keys(&input)?,
        sync_wire: sync_wire(&input)?,
        leader: leader(&input)?,
        member: member(&input)?,
    };
    // Last: every other mistake is reported before a missing key.
    (config.leader.signing_key, config.signing_key_path) = signing_key(&input)?;
    config.member.record_trust = record_trust(&input)?;
    check_seed_wire(&config)?;
    Ok(config)
}

const INSECURE: &str = "insecure-unsigned-records";

/// The seed's records carry neither the committing leader's signature nor
/// an HMAC: a member cannot be asked to check them, and a leader's HMAC
/// would reach no one (seed members do not read it).
fn check_seed_wire(config: &Config) -> Result<(), ConfigError> {
    if config.sync_wire != SyncWire::Seed {
        return Ok(());
    }
    if config.sync_keys.current.is_some() {
        return err("--sync-wire seed: the seed's records carry no HMAC signature; drop --sync-secret");
    }
    if config.mode == Mode::Member && config.member.record_trust != RecordTrust::Unverified {
        return err("--sync-wire seed: the seed's records carry no leader signature; a member following a seed \
             source runs with --insecure-unsigned-records instead of --leader-public-key");
    }
    Ok(())
}

/// Leader mode: the block-signing key, required unless the operator opted
/// out by name (its blocks would then be refused by every default member,
/// and an unsigned block, once committed, stays unsigned).
fn signing_key(input: &Input) -> Result<(Option<BlockSigningKey>, Option<PathBuf>), ConfigError> {
    if input.mode != Mode::Leader {
        return Ok((None, None));
    }
    match (input.given("signing-key-file"), input.given(INSECURE)) {
        (Some(_), Some(_)) => err("give --signing-key-file or --insecure-unsigned-records, not both"),
        (Some(path), None) => {
            let path = PathBuf::from(path);
            let key = BlockSigningKey::from_file(&path).map_err(|e| ConfigError(format!("--signing-key-file: {e}")))?;
            Ok((Some(key), Some(path)))
        }
        (None, Some(_)) => Ok((None, None)),
        (None, None) => err("leader mode needs --signing-key-file PATH (the cluster's block-signing key; \
             clnode keygen PATH makes one), or --insecure-unsigned-records to commit blocks no default member accepts"),
    }
}

/// Member mode: the pinned public keys, required unless the operator opted
/// out by name. Parsed in every mode so a bad value is always an error.
fn record_trust(input: &Input) -> Result<RecordTrust, ConfigError> {
    let pinned = input
        .given("leader-public-key")
        .map(|list| parse_public_keys(list).map_err(|e| ConfigError(format!("--leader-public-key: {e}"))))
        .transpose()?;
    match (pinned, input.given(INSECURE)) {
        (Some(_), Some(_)) if input.mode == Mode::Member => {
            err("give --leader-public-key or --insecure-unsigned-records, not both")
        }
        (Some(keys), _) => Ok(RecordTrust::Pinned(keys)),
        (None, Some(_)) => Ok(RecordTrust::Unverified),
        (None, None) if input.mode == Mode::Member => err("member mode needs --leader-public-key HEX[,HEX] (the \
             public key of the cluster's block-signing key), or --insecure-unsigned-records to execute whatever \
             chain a sync source serves"),
        (None, None) => Ok(RecordTrust::Unverified),
    }
}

/// Exactly one of the secret's file and the secret itself; the path is kept
/// so its permissions can be checked at start.
fn jwt_secret(input: &Input) -> Result<(JwtSecret, Option<PathBuf>), ConfigError> {
    match (input.given("jwt-secret-file"), input.given("jwt-secret")) {
        (Some(_), Some(_)) => err("give --jwt-secret-file or --jwt-secret, not both"),
        (Some(path), None) => {
            let path = PathBuf::from(path);
            let secret = JwtSecret::from_file(&path).map_err(|e| ConfigError(e.to_string()))?;
            Ok((secret, Some(path)))
        }
        (None, Some(hex)) => {
            let secret = JwtSecret::from_hex(hex).map_err(|e| ConfigError(format!("--jwt-secret: {e}")))?;
            Ok((secret, None))
        }
        (None, None) => err("an Engine API secret is required: --jwt-secret-file PATH (or JWT_SECRET_FILE), the file \
             your execution client reads (geth --authrpc.jwtsecret); clnode has no built-in secret, unlike the seed, \
             whose default was published"),
    }
}

fn sync_wire(input: &Input) -> Result<SyncWire, ConfigError> {
    Ok(match input.choice("sync-wire")?.as_str() {
        "seed" => SyncWire::Seed,
        _ => SyncWire::Json,
    })
}

/// A previous key alone would verify records nobody signs any more.
fn sync_keys(input: &Input) -> Result<SyncKeys, ConfigError> {
    let keys = SyncKeys { current: input.secret("sync-secret")?, previous: input.secret("sync-secret-previous")? };
    if keys.previous.is_some() && keys.current.is_none() {
        return err("--sync-secret-previous needs --sync-secret (the key in use)");
    }
    Ok(keys)
}

fn leader(input: &Input) -> Result<LeaderConfig, ConfigError> {
    let leader = LeaderConfig {
        redis: redis_target(input)?,
        redis_password: input.password("redis-password")?,
        redis_stream: input.string("redis-stream"),
        redis_stream_max_len: input.count("redis-stream-max-len")?,
        fee_recipient: input.address("priority-fee-recipient")?,
        build_delay: input.duration("evm-build-delay")?,
        lease_ttl: input.duration("lease-ttl")?,
        lease_renew_interval: input.duration("lease-renew-interval")?,
        lease_safety_margin: input.duration("lease-safety-margin")?,
        database_stall_limit: match input.given("database-stall-limit") {
            Some(_) => input.duration("database-stall-limit")?,
            None => default_database_stall_limit(input.duration("lease-ttl")?),
        },
        // Default: one TTL (a takeover within two TTLs plus the build), but
        // never under a second: a full block's newPayload took 152 ms here
        // (1429 transfers, 30M gas, geth 1.16.8), and releasing during a
        // legitimate one would cost a failover for nothing.
        engine_stall_limit: match input.given("engine-stall-limit") {
            Some(_) => input.duration("engine-stall-limit")?,
            None => input.duration("lease-ttl")?.max(MIN_DEFAULT_ENGINE_STALL_LIMIT),
        },
        min_block_interval: input.duration("min-block-interval")?,
        empty_block_interval: input.duration("empty-block-interval")?,
        idle_poll_interval: input.duration("idle-poll-interval")?,
        max_timestamp_lead: input.duration("max-timestamp-lead")?,
        max_clock_skew: input.duration("max-clock-skew")?,
        signing_key: None,
        preferred_leaders: preferred_leaders(input.given("preferred-leaders"))?,
    };
    validate_lease(&leader)?;
    Ok(leader)
}

/// `--redis-addr`, or the sentinels of `--redis-sentinel`: not both, since
/// a node that wrote to a fixed address while its peers followed the
/// sentinels would hold a lease nobody else sees.
/// TLS (`rediss://`) is given with the address; `--redis-ca-file` only
/// with it.
fn redis_target(input: &Input) -> Result<RedisTarget, ConfigError> {
    let mut target = match (input.given("redis-sentinel"), input.given("redis-addr")) {
        (Some(_), Some(_)) => err("--redis-addr and --redis-sentinel exclude each other: give the sentinels alone"),
        (Some(list), None) => {
            parse_sentinels(list, input.text("redis-master").unwrap_or_default()).map_err(ConfigError)
        }
        (None, _) => {
            if input.given("redis-master").is_some() {
                return err("--redis-master needs --redis-sentinel (the sentinels that know that master)");
            }
            parse_redis_addr(input.text("redis-addr").unwrap_or_default()).map_err(ConfigError)
        }
    }?;
    if let Some(path) = input.ca_file("redis-ca-file")? {
        target.set_ca_file(path).map_err(ConfigError)?;
    }
    Ok(target)
}

/// `--postgres-url`, with `--postgres-password` put in it when given (the
/// URL is what every connection is made from; errors show it redacted).
fn postgres_url(input: &Input) -> Result<String, ConfigError> {
    let url = input.postgres_url("postgres-url")?;
    match input.password("postgres-password")? {
        Some(password) => crate::pg_url::with_password(&url, password.expose())
            .map_err(|e| ConfigError(format!("--postgres-password: {e}"))),
        None => Ok(url),
    }
}

/// Most preferred leaders for `--preferred-leaders`.
const MAX_PREFERRED_LEADERS: usize = 16;

/// `--preferred-leaders ID[,ID...]`: valid instance ids, no repeats.
fn preferred_leaders(given: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let Some(text) = given else {
        return Ok(Vec::new());
    };
    let ids: Vec<String> = text.split(',').map(|id| id.trim().to_owned()).collect();
    if ids.len() > MAX_PREFERRED_LEADERS {
        return err(format!("--preferred-leaders lists {} ids; at most {MAX_PREFERRED_LEADERS}", ids.len()));
    }
    for (index, id) in ids.iter().enumerate() {
        let valid =
            (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return err(format!(
                "--preferred-leaders {id:?}: each id is 1 to 64 letters, digits, '-', '_' or '.', separated by commas"
            ));
        }
        if ids[..index].contains(id) {
            return err(format!("--preferred-leaders names {id} twice"));
        }
    }
    Ok(ids)
}

/// The lease flags against each other (each one's own range is in the
/// table).
fn validate_lease(leader: &LeaderConfig) -> Result<(), ConfigError> {
    let ttl = leader.lease_ttl;
    if leader.lease_safety_margin >= ttl / 2 {
        return err("--lease-safety-margin must be less than half of --lease-ttl");
    }
    // Two renew attempts must fit in the usable part of the lease, so one
    // lost renew does not cost the lease.
    // Any length above 0, also above the TTL: it bounds how long a leader
    // cut off from PostgreSQL keeps the lease (liveness); the fence refuses
    // a hung commit of a released term whenever it lands (safety).
    if leader.database_stall_limit.is_zero() {
        return err("--database-stall-limit must be above 0");
    }
    if leader.engine_stall_limit.is_zero() {
        return err("--engine-stall-limit must be above 0");
    }
    let usable = ttl - leader.lease_safety_margin;
    if leader.lease_renew_interval.is_zero() || leader.lease_renew_interval * 2 > usable {
        return err(format!(
            "--lease-renew-interval must be above 0 and at most half of (--lease-ttl - --lease-safety-margin) = {} ms",
            usable.as_millis() / 2
        ));
    }
    Ok(())
}

fn member(input: &Input) -> Result<MemberConfig, ConfigError> {
    let leader_urls = input.url_list("leader-url")?;
    let batch_limit = input.count("sync-batch-limit")?;
    Ok(MemberConfig {
        leader_urls,
        // The table bounds it to 1..=1000; the check only guards the type.
        batch_limit: u32::try_from(batch_limit)
            .map_err(|_| ConfigError("--sync-batch-limit must be between 1 and 1000".to_owned()))?,
        page_bytes: input.count("sync-page-bytes")?,
        long_poll_wait: input.duration("sync-wait")?,
        sync_token: input.secret("sync-token")?,
        record_trust: RecordTrust::Unverified,
        wire: sync_wire(input)?,
        lag_limits: crate::member::lag_limit::LagLimits {
            max_blocks: input.count_if_set("max-lag-blocks")?,
            max_ms: input.count_if_set("max-lag-ms")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        run_env(args, &[])
    }

    fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match parse(args.iter().map(OsString::from), &lookup)? {
            Command::Run(config) => Ok(*config),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    const SECRET: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
    /// RFC 8032's first test key pair.
    const SIGNING_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC_KEY: &str = "0xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn record_signing_is_required_unless_opted_out_by_name() {
        let base = ["--instance-id", "x", "--jwt-secret", SECRET];
        let member = ["--instance-id", "x", "--jwt-secret", SECRET, "--mode", "member"];
        let with = |args: &[&str], more: &[&str]| -> Result<Config, ConfigError> {
            run(&args.iter().chain(more).copied().collect::<Vec<_>>())
        };
        let path = std::env::temp_dir().join(format!("clnode-signing-key-test-{}", std::process::id()));
        std::fs::write(&path, format!("{SIGNING_SEED}\n")).unwrap();
        let key_file = path.display().to_string();
        let leader = with(&base, &["--signing-key-file", &key_file]).unwrap();
        assert_eq!(leader.leader.signing_key.map(|k| k.public_key().to_hex()).as_deref(), Some(PUBLIC_KEY));
        assert_eq!(leader.signing_key_path, Some(path.clone()));
        let pinned = with(&member, &["--leader-public-key", &format!("{PUBLIC_KEY},{PUBLIC_KEY}")]).unwrap();
        assert!(matches!(&pinned.member.record_trust, RecordTrust::Pinned(keys) if keys.len() == 2));
        let open = with(&member, &["--insecure-unsigned-records"]).unwrap();
        assert_eq!(open.member.record_trust, RecordTrust::Unverified);
        assert!(with(&base, &["--insecure-unsigned-records"]).unwrap().leader.signing_key.is_none());
        let cases: [(&[&str], Vec<&str>, &str); 7] = [
            (&base, vec![], "leader mode needs --signing-key-file PATH"),
            (&member, vec![], "member mode needs --leader-public-key HEX[,HEX]"),
            (&base, vec!["--signing-key-file", &key_file, "--insecure-unsigned-records"], "not both"),
            (&member, vec!["--leader-public-key", PUBLIC_KEY, "--insecure-unsigned-records"], "not both"),
            (&member, vec!["--leader-public-key", "0x1234"], "--leader-public-key: key must be 32 bytes"),
            (&base, vec!["--signing-key-file", "/nonexistent/key"], "--signing-key-file: key file /nonexistent/key"),
            (&member, vec!["--leader-public-key", SIGNING_SEED.get(..10).unwrap()], "--leader-public-key"),
        ];
        for (args, more, expected) in cases {
            let error = with(args, &more).unwrap_err().to_string();
            assert!(error.contains(expected), "{more:?}: {error}");
            assert!(!error.contains('\n') && !error.contains(SIGNING_SEED), "{error}");
        }
        std::fs::remove_file(&path).unwrap();
        let none = |_: &str| None;
        let keygen = parse(["keygen", "--public", "k.key"].map(OsString::from), &none).unwrap();
        assert!(matches!(keygen, Command::Keygen(KeygenArgs { public_only: true, .. })));
        assert!(parse(["keygen"].map(OsString::from), &none).unwrap_err().to_string().contains("usage"));
    }

    #[test]
    fn seed_defaults_apply() {
        let config =
            run(&["--instance-id", "leader-1", "--jwt-secret", SECRET, "--insecure-unsigned-records"]).unwrap();
        assert_eq!(config.mode, Mode::Leader);
        assert_eq!(config.eth_client_url, "http://localhost:8551");
        assert_eq!(config.health_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.api_addr, Some("127.0.0.1:8090".parse().unwrap()));
        assert_eq!(config.leader.redis, RedisTarget::Direct { addr: "localhost:6379".into(), tls: None });
        assert_eq!(config.leader.redis_stream, "consensus:blocks");
        assert!(config.postgres_url.contains("5432/consensus"));
        // A killed leader's lease must lapse well inside the 1.5 s fail-over goal.
        assert_eq!(config.leader.lease_ttl, Duration::from_secs(1));
        assert!(config.leader.lease_renew_interval * 4 <= config.leader.lease_ttl);
    }

    #[test]
    fn the_database_stall_limit_defaults_to_half_the_ttl_but_at_least_a_second() {
        let ms = Duration::from_millis;
        // (--lease-ttl, default --database-stall-limit)
        let table = [
            (ms(200), ms(1000)),
            (ms(250), ms(1000)),
            (ms(500), ms(1000)),
            (ms(1000), ms(1000)),
            (ms(2000), ms(1000)),
            (ms(3000), ms(1500)),
            (ms(60_000), ms(30_000)),
        ];
        for (ttl, expected) in table {
            assert_eq!(default_database_stall_limit(ttl), expected, "{ttl:?}");
        }
        let base = ["--instance-id", "x", "--jwt-secret", SECRET, "--insecure-unsigned-records"];
        let with = |more: &[&str]| run(&[&base[..], more].concat());
        let short =
            with(&["--lease-ttl", "500ms", "--lease-renew-interval", "100ms", "--lease-safety-margin", "100ms"]);
        assert_eq!(short.unwrap().leader.database_stall_limit, ms(1000));
        // A limit above the TTL is accepted (the fence keeps safety)...
        let above = with(&["--lease-ttl", "500ms", "--lease-renew-interval", "100ms", "--database-stall-limit", "2s"]);
        assert_eq!(above.unwrap().leader.database_stall_limit, ms(2000));
        // ...zero is not.
        let zero = with(&["--database-stall-limit", "0ms"]).unwrap_err().to_string();
        assert!(zero.contains("--database-stall-limit"), "{zero}");
    }

    #[test]
    fn member_defaults_and_url_list() {
        let config = run(&[
            "--instance-id",
            "m1",
            "--mode",
            "member",
            "--jwt-secret",
            SECRET,
            "--leader-url",
            "http://a:8090, http://b:8092/",
            "--leader-public-key",
            PUBLIC_KEY,
        ])
        .unwrap();
        assert_eq!(config.mode, Mode::Member);
        assert_eq!(config.api_addr, None);
        assert!(config.postgres_url.contains("5433/consensus"));
        assert_eq!(config.member.leader_urls, vec!["http://a:8090".to_owned(), "http://b:8092".to_owned()]);
    }

    #[test]
    fn environment_fills_in_and_flags_win() {
        let config = run_env(
            &["--health-addr", ":9000"],
            &[
                ("INSTANCE_ID", "env-node"),
                ("JWT_SECRET", SECRET),
                ("HEALTH_ADDR", ":7000"),
                ("NODE_MODE", "member"),
                ("LEADER_PUBLIC_KEY", PUBLIC_KEY),
            ],
        )
        .unwrap();
        assert_eq!(config.instance_id, "env-node");
        assert_eq!(config.mode, Mode::Member);
        assert_eq!(config.health_addr.port(), 9000);
    }

    #[test]
    fn bad_input_gives_one_line_naming_the_flag() {
        let cases: [(&[&str], &str); 10] = [
            (&["--jwt-secret", SECRET], "--instance-id is required"),
            (&["--instance-id", "x"], "secret is required"),
            (&["--instance-id", "x", "--jwt-secret", "0x12"], "--jwt-secret"),
            (&["--instance-id", "x", "--jwt-secret", SECRET, "--mode", "boss"], "--mode"),
            (&["--instance-id", "x", "--jwt-secret", SECRET, "--lease-ttl", "fast"], "--lease-ttl"),
            (&["--instance-id", "x", "--jwt-secret", SECRET, "--bogus", "1"], "unknown flag --bogus"),
            (&["--instance-id", "x", "--jwt-secret", SECRET, "--eth-client-url", "localhost:8551"], "http://"),
            (&["--instance-id", "x", "--jwt-secret", SECRET, "--lease-renew-interval", "2s"], "--lease-renew-interval"),
            (&["--instance-id", "x y", "--jwt-secret", SECRET], "--instance-id"),
            (&["--instance-id", "x", "--jwt-secret", SECRET, "--log-level", "trace"], "--log-level"),
        ];
        for (args, expected) in cases {
            let error = run(args).unwrap_err().to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
            assert!(!error.contains('\n'), "not one line: {error}");
            assert!(!error.contains("1111111111"), "secret echoed: {error}");
        }
    }

    #[test]
    fn out_of_range_values_are_errors_naming_the_bound() {
        let cases: [(&str, &str, &str); 9] = [
            ("--sync-batch-limit", "0", "--sync-batch-limit must be between 1 and 1000"),
            ("--max-lag-blocks", "0", "--max-lag-blocks must be between 1 and 1000000000"),
            ("--max-lag-ms", "86400001", "--max-lag-ms must be between 1 and 86400000"),
            ("--sync-batch-limit", "1001", "--sync-batch-limit must be between 1 and 1000"),
            ("--redis-stream-max-len", "0", "--redis-stream-max-len must be at least 1"),
            ("--sync-wait", "31s", "--sync-wait must be at most 30s (the server caps long polls there)"),
            ("--lease-ttl", "100ms", "--lease-ttl must be between 200ms and 60s"),
            ("--idle-poll-interval", "0", "--idle-poll-interval must be between 1ms and 10s"),
            (
                "--evm-build-delay",
                "11s",
                "--evm-build-delay must be at most 10s (the payload would be discarded by the client)",
            ),
        ];
        for (flag, value, expected) in cases {
            let error = run(&["--instance-id", "x", "--jwt-secret", SECRET, flag, value]).unwrap_err();
            assert_eq!(error.to_string(), expected);
        }
        let none = |_: &str| None;
        let error = parse(["status", "--interval", "50ms"].map(OsString::from), &none).unwrap_err();
        assert_eq!(error.to_string(), "status: --interval must be at least 100ms");
        let error = parse(["status", "--url", ","].map(OsString::from), &none).unwrap_err();
        assert_eq!(error.to_string(), "status: --url needs between 1 and 64 comma-separated health URLs");
        let error = parse(["status", "--bogus"].map(OsString::from), &none).unwrap_err();
        assert_eq!(error.to_string(), "status: unknown flag --bogus (use --url, --watch, --interval)");
    }

    #[test]
    fn tls_and_passwords_for_postgres_and_redis() {
        let base = ["--instance-id", "x", "--jwt-secret", SECRET, "--insecure-unsigned-records"];
        let with = |extra: &[&str]| run(&[&base[..], extra].concat());
        let dir = std::env::temp_dir().join(format!("clnode-config-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        // Any certificate will do for a CA file's check at start.
        std::fs::write(&ca, crate::tls::tests_support::CA_PEM).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "p@ss word\n").unwrap();
        let (ca, not_pem, password) =
            (ca.display().to_string(), not_pem.display().to_string(), format!("@{}", password.display()));

        let redis = with(&["--redis-addr", "rediss://r.example:6380", "--redis-ca-file", &ca]).unwrap();
        assert_eq!(
            redis.leader.redis,
            RedisTarget::Direct {
                addr: "r.example:6380".into(),
                tls: Some(crate::leader::redis_target::RedisTls { ca_file: Some(ca.clone().into()) })
            }
        );
        let from_file = with(&["--redis-password", &password]).unwrap();
        assert_eq!(from_file.leader.redis_password.map(|p| p.expose().to_vec()), Some(b"p@ss word".to_vec()));
        let from_env = run_env(&base, &[("REDIS_PASSWORD", &password)]).unwrap();
        assert_eq!(from_env.leader.redis_password.map(|p| p.expose().to_vec()), Some(b"p@ss word".to_vec()));

        let url = format!("postgres://clnode@db:5432/chain?sslmode=verify-full&sslrootcert={ca}");
        let postgres = with(&["--postgres-url", &url, "--postgres-password", &password]).unwrap();
        assert_eq!(
            postgres.postgres_url,
            format!("postgres://clnode:p%40ss%20word@db:5432/chain?sslmode=verify-full&sslrootcert={ca}")
        );
        let require = with(&["--postgres-url", "postgres://u@db/c?sslmode=require"]).unwrap();
        assert!(require.postgres_url.ends_with("sslmode=require"));

        let refusals: Vec<(Vec<&str>, String)> = vec![
            (vec!["--redis-ca-file", &ca], "--redis-ca-file needs TLS: give the address as rediss://HOST:PORT".into()),
            (
                vec!["--redis-addr", "rediss://r:1", "--redis-ca-file", &not_pem],
                format!("--redis-ca-file: CA file {not_pem}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            ),
            (
                vec!["--redis-addr", "rediss://r:1", "--redis-ca-file", "/nonexistent/ca.pem"],
                "--redis-ca-file: cannot read CA file /nonexistent/ca.pem: No such file or directory (os error 2)"
                    .into(),
            ),
            (
                vec!["--redis-password", "@/nonexistent/pw"],
                "--redis-password: cannot read /nonexistent/pw: No such file or directory (os error 2)".into(),
            ),
            (
                vec!["--postgres-password", "@/nonexistent/pw"],
                "--postgres-password: cannot read /nonexistent/pw: No such file or directory (os error 2)".into(),
            ),
            (
                vec!["--postgres-url", "postgres://db/c", "--postgres-password", "pw"],
                "--postgres-password: a password needs a user in the URL (postgres://USER@HOST/DB)".into(),
            ),
            (
                vec!["--postgres-url", "postgres://u:secret@db/c?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"],
                "--postgres-url: sslrootcert: cannot read CA file /nonexistent/ca.pem: No such file or directory \
                 (os error 2)"
                    .into(),
            ),
            (
                vec!["--postgres-url", "postgres://u:secret@db/c?sslmode=verify_full"],
                "--postgres-url: sslmode \"verify_full\": expected disable, prefer, require, verify-ca or verify-full"
                    .into(),
            ),
            (
                vec!["--postgres-url", "postgres://u:secret@db/c?sslcert=/c.pem"],
                "--postgres-url: sslcert is not supported (clnode reads sslmode and sslrootcert; not sslcert, sslkey, \
                 sslpassword, sslcrl, sslcrldir, sslsni, sslcertmode, ssl_min_protocol_version, \
                 ssl_max_protocol_version, sslcompression)"
                    .into(),
            ),
        ];
        for (extra, expected) in refusals {
            let error = with(&extra).unwrap_err().to_string();
            assert_eq!(error, expected, "{extra:?}");
            assert!(!error.contains("secret") && !error.contains("p@ss"), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn redis_is_one_address_or_the_sentinels_never_both() {
        let base = ["--instance-id", "x", "--jwt-secret", SECRET, "--insecure-unsigned-records"];
        let with = |extra: &[&str]| run(&[&base[..], extra].concat());
        let sentinels = with(&["--redis-sentinel", "127.0.0.1:26379,127.0.0.1:26380"]).unwrap();
        assert_eq!(
            sentinels.leader.redis,
            RedisTarget::Sentinel {
                sentinels: vec!["127.0.0.1:26379".into(), "127.0.0.1:26380".into()],
                master: "mymaster".into(),
                tls: None,
            }
        );
        let named = with(&["--redis-sentinel", "s:1", "--redis-master", "chain"]).unwrap();
        assert_eq!(
            named.leader.redis,
            RedisTarget::Sentinel { sentinels: vec!["s:1".into()], master: "chain".into(), tls: None }
        );
        let refusals: [(&[&str], &str); 3] = [
            (
                &["--redis-sentinel", "s:1", "--redis-addr", "r:1"],
                "--redis-addr and --redis-sentinel exclude each other: give the sentinels alone",
            ),
            (
                &["--redis-master", "chain"],
                "--redis-master needs --redis-sentinel (the sentinels that know that master)",
            ),
            (&["--redis-sentinel", "s"], "--redis-sentinel \"s\": expected HOST:PORT[,HOST:PORT...]"),
        ];
        for (extra, expected) in refusals {
            assert_eq!(with(extra).unwrap_err().to_string(), expected, "{extra:?}");
        }
    }

    #[test]
    fn defaults_come_from_the_table() {
        let config = run(&["--instance-id", "x", "--jwt-secret", SECRET, "--insecure-unsigned-records"]).unwrap();
        assert_eq!(config.leader.redis_stream_max_len, 10_000);
        assert_eq!(config.leader.build_delay, Duration::from_millis(20));
        assert_eq!(config.leader.idle_poll_interval, Duration::from_millis(50));
        assert_eq!(config.leader.max_timestamp_lead, Duration::from_secs(2));
        assert_eq!(config.leader.max_clock_skew, Duration::from_secs(1));
        assert_eq!(config.leader.fee_recipient, [0; 20]);
        assert_eq!(config.member.batch_limit, 100);
        assert_eq!(config.member.page_bytes, crate::page_budget::MEMBER_PAGE_BYTES);
        assert_eq!(config.member.long_poll_wait, Duration::from_secs(5));
        assert_eq!(config.member.leader_urls, vec!["http://localhost:8090".to_owned()]);
        assert!(!config.member.lag_limits.is_set(), "no readiness threshold unless asked for");
        let limited = run_env(
            &["--instance-id", "x", "--jwt-secret", SECRET, "--insecure-unsigned-records", "--max-lag-blocks", "5"],
            &[("MAX_LAG_MS", "2000")],
        )
        .unwrap();
        assert_eq!(
            limited.member.lag_limits,
            crate::member::lag_limit::LagLimits { max_blocks: Some(5), max_ms: Some(2000) }
        );
        assert_eq!(config.log_level, crate::log::Level::Info);
        assert_eq!(config.log_format, crate::log::Format::Text);
        let base = ["--instance-id", "x", "--jwt-secret", SECRET, "--insecure-unsigned-records"];
        let json = run(&[&base[..], &["--log-format", "JSON", "--log-level", "warn"]].concat()).unwrap();
        assert_eq!((json.log_format, json.log_level), (crate::log::Format::Json, crate::log::Level::Warn));
        assert!(config.api_token.is_none() && config.leader.redis_password.is_none());
        let none = |_: &str| None;
        match parse([OsString::from("status")], &none).unwrap() {
            Command::Status(status) => {
                assert_eq!(status.urls, vec!["http://127.0.0.1:8080".to_owned()]);
                assert_eq!(status.interval, Duration::from_secs(1));
                assert!(!status.watch);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_seeds_flags_work_or_are_refused_naming_clnodes_equivalent() {
        let base = ["--instance-id", "x", "--jwt-secret", SECRET, "--insecure-unsigned-records"];
        let with =
            |more: &[&str], env: &[(&str, &str)]| run_env(&base.iter().chain(more).copied().collect::<Vec<_>>(), env);
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let refused: [Case<'_>; 4] = [
            (
                &["--evm-build-delay-empty-block", "1m"],
                &[],
                "--evm-build-delay-empty-block is the seed's flag, not clnode's: clnode commits no empty block \
                 unless --empty-block-interval",
            ),
            (&["--tx-pool-polling-interval", "5ms"], &[], "--tx-pool-polling-interval is the seed's flag, not clnode's: use --idle-poll-interval"),
            (
                &[],
                &[("EVM_BUILD_DELAY_EMPTY_BLOCK", "banana")],
                "EVM_BUILD_DELAY_EMPTY_BLOCK is the seed's variable (--evm-build-delay-empty-block), not clnode's",
            ),
            (&[], &[("TX_POOL_POLLING_INTERVAL", "5ms")], "TX_POOL_POLLING_INTERVAL is the seed's variable (--tx-pool-polling-interval), not clnode's: use --idle-poll-interval"),
        ];
        for (args, env, expected) in refused {
            let error = with(args, env).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{args:?} {env:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        // Empty counts as unset, as for every variable.
        assert!(with(&[], &[("TX_POOL_POLLING_INTERVAL", "")]).is_ok());
        // Every flag clnode keeps, from the seed's environment, with the seed's value formats.
        let seed_env = [
            ("INSTANCE_ID", "leader-1"),
            ("NODE_MODE", "leader"),
            ("ETH_CLIENT_URL", "http://localhost:8551"),
            ("JWT_SECRET", "688f5d737bad920bdfb2fc2f488d6b6209eebeb7b7f7710df3571de7fda67a32"),
            ("PRIORITY_FEE_RECIPIENT", "0x00000000000000000000000000000000000000aa"),
            ("EVM_BUILD_DELAY", "1ms"),
            ("HEALTH_ADDR", ":8080"),
            ("API_ADDR", ":8090"),
            ("REDIS_ADDR", "localhost:6379"),
            ("REDIS_PASSWORD", "pw"),
            ("REDIS_STREAM", "consensus:blocks"),
            ("POSTGRES_URL", "postgres://postgres:postgres@localhost:5432/consensus?sslmode=disable"),
            ("LEADER_URL", "http://localhost:8090"),
        ];
        let config = run_env(&["--insecure-unsigned-records"], &seed_env).unwrap();
        assert_eq!(config.leader.build_delay, Duration::from_millis(1));
        assert_eq!(config.leader.fee_recipient[19], 0xaa);
        assert_eq!(config.sync_wire, SyncWire::Json, "clnode's records stay the default");
    }

    #[test]
    fn the_seeds_run_lines_name_the_missing_secret_and_the_fix() {
        let error =
            run(&["--instance-id", "leader-1", "--mode", "leader", "--health-addr", ":8080", "--api-addr", ":8090"])
                .unwrap_err()
                .to_string();
        assert!(error.starts_with("an Engine API secret is required: --jwt-secret-file PATH"), "{error}");
        assert!(error.contains("no built-in secret, unlike the seed"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn the_seed_wire_is_chosen_by_flag_and_needs_no_signatures() {
        let member = ["--instance-id", "m", "--jwt-secret", SECRET, "--mode", "member", "--sync-wire", "seed"];
        let with = |more: &[&str]| run(&member.iter().chain(more).copied().collect::<Vec<_>>());
        assert_eq!(with(&["--insecure-unsigned-records"]).unwrap().sync_wire, SyncWire::Seed);
        let error = with(&["--leader-public-key", PUBLIC_KEY]).unwrap_err().to_string();
        assert!(error.contains("runs with --insecure-unsigned-records instead of --leader-public-key"), "{error}");
        let error =
            with(&["--insecure-unsigned-records", "--sync-secret", "0123456789abcdef0123"]).unwrap_err().to_string();
        assert!(error.contains("drop --sync-secret"), "{error}");
        let error = with(&["--insecure-unsigned-records", "--sync-wire", "msgpack"]).unwrap_err().to_string();
        assert_eq!(error, "--sync-wire \"msgpack\": expected json or seed");
        let leader = run_env(
            &["--instance-id", "l", "--jwt-secret", SECRET, "--insecure-unsigned-records"],
            &[("SYNC_WIRE", "seed")],
        )
        .unwrap();
        assert_eq!(leader.sync_wire, SyncWire::Seed);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration("x", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("x", "2s").unwrap(), Duration::from_secs(2));
        assert_eq!(duration("x", "1m").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("x", "40").unwrap(), Duration::from_millis(40));
        assert!(duration("x", "2h").is_err());
        assert!(duration("x", "-1s").is_err());
        assert!(duration("x", "99999999999999999999s").is_err());
    }

    #[test]
    fn status_subcommand() {
        let none = |_: &str| None;
        let args = ["status", "--url", "http://a:8080,http://b:8082/", "--watch"].map(OsString::from);
        match parse(args, &none).unwrap() {
            Command::Status(status) => {
                assert_eq!(status.urls, vec!["http://a:8080".to_owned(), "http://b:8082".to_owned()]);
                assert!(status.watch);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(["status", "--url", "a:8080"].map(OsString::from), &none).is_err());
        assert!(parse(["status", "--bogus"].map(OsString::from), &none).is_err());
    }

    #[test]
    fn admin_subcommand_and_preferred_leaders() {
        use crate::admin_cli::AdminAction;
        let token = "admin-token-0123456789abcdef";
        let env = |name: &str| (name == "CLNODE_ADMIN_TOKEN").then(|| token.to_owned());
        let admin = |args: &[&str]| parse(args.iter().map(OsString::from), &env);
        match admin(&["admin", "transfer", "--to", "leader-2"]).unwrap() {
            Command::Admin(args) => {
                assert_eq!(args.action, AdminAction::Transfer { to: "leader-2".into() });
                assert_eq!(args.urls, vec!["http://127.0.0.1:8080".to_owned()]);
                assert!(args.token.matches(token.as_bytes()));
            }
            other => panic!("{other:?}"),
        }
        let error = |args: &[&str]| admin(args).unwrap_err().to_string();
        assert!(error(&["admin", "transfer"]).contains("needs --to ID"));
        assert!(error(&["admin", "transfer", "--to", "a/b"]).contains("not an instance id"));
        assert!(error(&["admin", "pause", "--to", "x"]).contains("--to goes with transfer only"));
        assert!(error(&["admin", "dance"]).contains("usage"));
        let none = |_: &str| None;
        let no_token = parse(["admin", "status"].map(OsString::from), &none).unwrap_err().to_string();
        assert!(no_token.contains("--token is required"), "{no_token}");

        let base = ["--instance-id", "l1", "--jwt-secret", SECRET, "--insecure-unsigned-records"];
        let with = |list: &str| run(&[&base[..], &["--preferred-leaders", list]].concat());
        assert_eq!(with("l1, l2").unwrap().leader.preferred_leaders, vec!["l1".to_owned(), "l2".to_owned()]);
        assert!(with("l1,l1").unwrap_err().to_string().contains("names l1 twice"));
        assert!(with("l1,,l2").unwrap_err().to_string().contains("each id is 1 to 64"));
        assert!(run(&base).unwrap().leader.preferred_leaders.is_empty());
    }

    #[test]
    fn help_and_version() {
        let none = |_: &str| None;
        assert!(matches!(parse([OsString::from("--help")], &none), Ok(Command::Help)));
        assert!(matches!(parse([OsString::from("-V")], &none), Ok(Command::Version)));
    }
}
