//! Command line and environment: parsed with lexopt, then validated into a
//! [`Config`] that is passed explicitly to every role.
//!
//! Precedence: flag, then environment variable (the seed's names), then the
//! seed's default. Every error is one readable line; no secret is echoed.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::jwt::JwtSecret;
use crate::secret::Secret;

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
    pub eth_client_url: String,
    pub jwt_secret: JwtSecret,
    /// Where the JWT secret came from, when it was a file (checked for
    /// loose permissions at start).
    pub jwt_secret_path: Option<PathBuf>,
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
    pub leader: LeaderConfig,
    pub member: MemberConfig,
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
    pub redis_addr: String,
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
    pub min_block_interval: Duration,
    /// Zero: never build empty blocks. Otherwise build one when no block has
    /// been committed for this long (a heartbeat).
    pub empty_block_interval: Duration,
    /// How often an idle leader builds to look for new transactions.
    pub idle_poll_interval: Duration,
    /// How far block timestamps may run ahead of the wall clock.
    pub max_timestamp_lead: Duration,
}

/// Settings only members use.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub leader_urls: Vec<String>,
    /// Bearer token sent to the sync API.
    pub sync_token: Option<Secret>,
    pub batch_limit: u32,
    pub long_poll_wait: Duration,
}

pub const USAGE: &str = "\
clnode: a consensus-layer node for Ethereum execution clients

USAGE:
    clnode --instance-id ID --mode leader [FLAGS]
    clnode --instance-id ID --mode member --leader-url URL[,URL...] [FLAGS]
    clnode status [--url HEALTH_URL[,HEALTH_URL...]] [--watch] [--interval DURATION]
                                 the cluster view from nodes' /health (default http://127.0.0.1:8080)

Every flag can also be set by the environment variable in brackets.
Addresses written as :PORT bind to 127.0.0.1; give 0.0.0.0:PORT to expose.

COMMON:
    --instance-id ID             unique node name (required) [INSTANCE_ID]
    --mode leader|member         role (default leader) [NODE_MODE]
    --eth-client-url URL         execution client Engine API (default http://localhost:8551) [ETH_CLIENT_URL]
    --jwt-secret-file PATH       file holding the 32-byte hex Engine API secret [JWT_SECRET_FILE]
    --jwt-secret HEX             the secret itself (prefer the file) [JWT_SECRET]
    --postgres-url URL           PostgreSQL (leader default ...@localhost:5432/consensus,
                                 member default ...@localhost:5433/consensus) [POSTGRES_URL]
    --health-addr ADDR           /health and /metrics (default :8080) [HEALTH_ADDR]
    --api-addr ADDR              block sync API (leader default :8090; member: off unless set) [API_ADDR]
    --log-level info|debug       debug adds a line per block with each step's time (default info) [LOG_LEVEL]

LEADER:
    --redis-addr HOST:PORT       (default localhost:6379) [REDIS_ADDR]
    --redis-password PASSWORD    [REDIS_PASSWORD]
    --redis-stream NAME          stream of committed blocks (default consensus:blocks) [REDIS_STREAM]
    --redis-stream-max-len N     approximate MAXLEN of that stream (default 10000) [REDIS_STREAM_MAX_LEN]
    --priority-fee-recipient ADDR  fee recipient (default the zero address) [PRIORITY_FEE_RECIPIENT]
    --evm-build-delay DURATION   wait between starting a build and fetching it (default 20ms) [EVM_BUILD_DELAY]
    --lease-ttl DURATION         leader lease TTL (default 1s) [LEASE_TTL]
    --lease-renew-interval DURATION  (default 200ms) [LEASE_RENEW_INTERVAL]
    --lease-safety-margin DURATION   (default 200ms) [LEASE_SAFETY_MARGIN]
    --min-block-interval DURATION    shortest time from one block's build start to the next (default 0) [MIN_BLOCK_INTERVAL]
    --empty-block-interval DURATION  heartbeat for empty blocks; 0 = never (default 0) [EMPTY_BLOCK_INTERVAL]
    --idle-poll-interval DURATION    how often an idle leader looks for transactions (default 50ms) [IDLE_POLL_INTERVAL]
    --max-timestamp-lead DURATION    how far block time may run ahead of the clock (default 2s) [MAX_TIMESTAMP_LEAD]

MEMBER:
    --leader-url URL[,URL...]    sync API URLs, tried in order (default http://localhost:8090) [LEADER_URL]
    --sync-batch-limit N         blocks per request near the head, 1..1000 (default 100); a member
                                 far behind asks for full pages of 1000 [SYNC_BATCH_LIMIT]
    --sync-wait DURATION         long-poll wait per request (default 5s) [SYNC_WAIT]

SECURITY (a SECRET is the value itself, or @PATH to read it from a file; at least 16 bytes):
    --api-token SECRET           bearer token the sync API requires [API_TOKEN]
    --sync-token SECRET          member: bearer token sent to the sync API [SYNC_TOKEN]
    --sync-secret SECRET         HMAC key: serving nodes sign records, members verify them [SYNC_SECRET]
    --sync-secret-previous SECRET  also accepted when verifying, during a key rotation [SYNC_SECRET_PREVIOUS]
    --admin-token SECRET         enables /admin/status and /admin/step-down on the health port [ADMIN_TOKEN]

DURATION is a number with a unit: 250ms, 2s, 1m (a bare number means milliseconds).

    -h, --help                   print this help
    -V, --version                print the version
";

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Status(crate::status_cli::StatusArgs),
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

/// Raw values as given, before validation. Each names its flag in errors.
#[derive(Default)]
struct RawArgs {
    values: std::collections::BTreeMap<&'static str, String>,
}

/// (flag, environment variable). The flag is the key in `RawArgs`.
const FLAGS: [(&str, &str); 30] = [
    ("instance-id", "INSTANCE_ID"),
    ("mode", "NODE_MODE"),
    ("eth-client-url", "ETH_CLIENT_URL"),
    ("jwt-secret-file", "JWT_SECRET_FILE"),
    ("jwt-secret", "JWT_SECRET"),
    ("postgres-url", "POSTGRES_URL"),
    ("health-addr", "HEALTH_ADDR"),
    ("api-addr", "API_ADDR"),
    ("log-level", "LOG_LEVEL"),
    ("redis-addr", "REDIS_ADDR"),
    ("redis-password", "REDIS_PASSWORD"),
    ("redis-stream", "REDIS_STREAM"),
    ("redis-stream-max-len", "REDIS_STREAM_MAX_LEN"),
    ("priority-fee-recipient", "PRIORITY_FEE_RECIPIENT"),
    ("evm-build-delay", "EVM_BUILD_DELAY"),
    ("lease-ttl", "LEASE_TTL"),
    ("lease-renew-interval", "LEASE_RENEW_INTERVAL"),
    ("lease-safety-margin", "LEASE_SAFETY_MARGIN"),
    ("min-block-interval", "MIN_BLOCK_INTERVAL"),
    ("empty-block-interval", "EMPTY_BLOCK_INTERVAL"),
    ("idle-poll-interval", "IDLE_POLL_INTERVAL"),
    ("max-timestamp-lead", "MAX_TIMESTAMP_LEAD"),
    ("leader-url", "LEADER_URL"),
    ("sync-batch-limit", "SYNC_BATCH_LIMIT"),
    ("sync-wait", "SYNC_WAIT"),
    ("api-token", "API_TOKEN"),
    ("sync-token", "SYNC_TOKEN"),
    ("sync-secret", "SYNC_SECRET"),
    ("sync-secret-previous", "SYNC_SECRET_PREVIOUS"),
    ("admin-token", "ADMIN_TOKEN"),
];

impl RawArgs {
    fn get(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }
}

/// Parses `args` (without the program name) and the environment.
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
    let mut raw = RawArgs::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| ConfigError(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long(name) => {
                let Some((flag, _)) = FLAGS.iter().find(|(f, _)| *f == name) else {
                    return err(format!("unknown flag --{name} (see --help)"));
                };
                let value = flag_value(&mut parser, flag)?;
                raw.values.insert(flag, value);
            }
            Short(c) => return err(format!("unknown flag -{c} (see --help)")),
            Value(value) => {
                return err(format!("unexpected argument {:?} (see --help)", value.to_string_lossy()));
            }
        }
    }
    for (flag, var) in FLAGS {
        if !raw.values.contains_key(flag) {
            if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                raw.values.insert(flag, value);
            }
        }
    }
    validate(&raw).map(|config| Command::Run(Box::new(config)))
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
    let mut parser = lexopt::Parser::from_args(args);
    let mut urls = env("CLNODE_STATUS_URLS").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let mut watch = false;
    let mut interval = Duration::from_secs(1);
    while let Some(arg) = parser.next().map_err(|e| ConfigError(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("url") => urls = flag_value(&mut parser, "url")?,
            Long("watch") => watch = true,
            Long("interval") => interval = duration("interval", &flag_value(&mut parser, "interval")?)?,
            Long(other) => return err(format!("status: unknown flag --{other} (use --url, --watch, --interval)")),
            Short(c) => return err(format!("status: unknown flag -{c}")),
            Value(v) => return err(format!("status: unexpected argument {:?}", v.to_string_lossy())),
        }
    }
    let urls = url_list("url", &urls, 64, "status: --url needs between 1 and 64 comma-separated health URLs")?;
    if interval < Duration::from_millis(100) {
        return err("status: --interval must be at least 100ms");
    }
    Ok(Command::Status(crate::status_cli::StatusArgs { urls, watch, interval }))
}

fn validate(raw: &RawArgs) -> Result<Config, ConfigError> {
    let instance_id = match raw.get("instance-id") {
        Some(id) if valid_instance_id(id) => id.to_owned(),
        Some(id) => {
            return err(format!("--instance-id {id:?}: use 1 to 64 characters of letters, digits, '-', '_' or '.'"))
        }
        None => return err("--instance-id is required (or set INSTANCE_ID)"),
    };
    let mode = match raw.get("mode").unwrap_or("leader") {
        "leader" => Mode::Leader,
        "member" => Mode::Member,
        other => return err(format!("--mode {other:?}: expected leader or member")),
    };
    // Case-insensitive: LOG_LEVEL is a name other programs use too.
    let log_level = match raw.get("log-level").unwrap_or("info").to_ascii_lowercase().as_str() {
        "info" => crate::log::Level::Info,
        "debug" => crate::log::Level::Debug,
        other => return err(format!("--log-level {other:?}: expected info or debug")),
    };
    let eth_client_url = http_url("eth-client-url", raw.get("eth-client-url").unwrap_or("http://localhost:8551"))?;
    let jwt_secret_path = raw.get("jwt-secret-file").map(PathBuf::from);
    let jwt_secret = match (raw.get("jwt-secret-file"), raw.get("jwt-secret")) {
        (Some(_), Some(_)) => return err("give --jwt-secret-file or --jwt-secret, not both"),
        (Some(path), None) => JwtSecret::from_file(&PathBuf::from(path)).map_err(|e| ConfigError(e.to_string()))?,
        (None, Some(hex)) => JwtSecret::from_hex(hex).map_err(|e| ConfigError(format!("--jwt-secret: {e}")))?,
        (None, None) => return err("an Engine API secret is required: --jwt-secret-file PATH (or JWT_SECRET_FILE)"),
    };
    let default_postgres = match mode {
        Mode::Leader => "postgres://postgres:postgres@localhost:5432/consensus?sslmode=disable",
        Mode::Member => "postgres://postgres:postgres@localhost:5433/consensus?sslmode=disable",
    };
    let postgres_url = raw.get("postgres-url").unwrap_or(default_postgres).to_owned();
    if !(postgres_url.starts_with("postgres://") || postgres_url.starts_with("postgresql://")) {
        return err("--postgres-url must start with postgres:// or postgresql://");
    }
    let health_addr = socket_addr("health-addr", raw.get("health-addr").unwrap_or(":8080"))?;
    let api_addr = match (mode, raw.get("api-addr")) {
        (_, Some(addr)) => Some(socket_addr("api-addr", addr)?),
        (Mode::Leader, None) => Some(socket_addr("api-addr", ":8090")?),
        (Mode::Member, None) => None,
    };

    let redis_stream_max_len = number("redis-stream-max-len", raw.get("redis-stream-max-len").unwrap_or("10000"))?;
    if redis_stream_max_len == 0 {
        return err("--redis-stream-max-len must be at least 1");
    }
    let secret = |flag: &str| -> Result<Option<Secret>, ConfigError> {
        raw.get(flag).map(|value| Secret::parse(flag, value).map_err(ConfigError)).transpose()
    };
    let api_token = secret("api-token")?;
    let admin_token = secret("admin-token")?;
    let sync_keys = SyncKeys { current: secret("sync-secret")?, previous: secret("sync-secret-previous")? };
    if sync_keys.previous.is_some() && sync_keys.current.is_none() {
        return err("--sync-secret-previous needs --sync-secret (the key in use)");
    }
    // Redis passwords are the operator's choice: no length rule (empty
    // values never reach here: the environment filter drops them).
    let redis_password = raw.get("redis-password").map(|value| Secret::from_bytes(value.as_bytes()));
    let leader = LeaderConfig {
        redis_addr: raw.get("redis-addr").unwrap_or("localhost:6379").to_owned(),
        redis_password,
        redis_stream: raw.get("redis-stream").unwrap_or("consensus:blocks").to_owned(),
        redis_stream_max_len,
        fee_recipient: address(
            "priority-fee-recipient",
            raw.get("priority-fee-recipient").unwrap_or("0x0000000000000000000000000000000000000000"),
        )?,
        build_delay: duration("evm-build-delay", raw.get("evm-build-delay").unwrap_or("20ms"))?,
        lease_ttl: duration("lease-ttl", raw.get("lease-ttl").unwrap_or("1s"))?,
        lease_renew_interval: duration("lease-renew-interval", raw.get("lease-renew-interval").unwrap_or("200ms"))?,
        lease_safety_margin: duration("lease-safety-margin", raw.get("lease-safety-margin").unwrap_or("200ms"))?,
        min_block_interval: duration("min-block-interval", raw.get("min-block-interval").unwrap_or("0"))?,
        empty_block_interval: duration("empty-block-interval", raw.get("empty-block-interval").unwrap_or("0"))?,
        idle_poll_interval: duration("idle-poll-interval", raw.get("idle-poll-interval").unwrap_or("50ms"))?,
        max_timestamp_lead: duration("max-timestamp-lead", raw.get("max-timestamp-lead").unwrap_or("2s"))?,
    };
    if leader.redis_addr.is_empty() || leader.redis_addr.contains('/') {
        return err(format!("--redis-addr {:?}: expected HOST:PORT", leader.redis_addr));
    }
    validate_lease(&leader)?;
    if leader.build_delay > Duration::from_secs(10) {
        return err("--evm-build-delay must be at most 10s (the payload would be discarded by the client)");
    }
    if leader.idle_poll_interval < Duration::from_millis(1) || leader.idle_poll_interval > Duration::from_secs(10) {
        return err("--idle-poll-interval must be between 1ms and 10s");
    }

    let leader_urls = url_list(
        "leader-url",
        raw.get("leader-url").unwrap_or("http://localhost:8090"),
        16,
        "--leader-url needs between 1 and 16 comma-separated URLs",
    )?;
    let batch_limit = number("sync-batch-limit", raw.get("sync-batch-limit").unwrap_or("100"))?;
    if !(1..=1000).contains(&batch_limit) {
        return err("--sync-batch-limit must be between 1 and 1000");
    }
    let long_poll_wait = duration("sync-wait", raw.get("sync-wait").unwrap_or("5s"))?;
    if long_poll_wait > Duration::from_secs(30) {
        return err("--sync-wait must be at most 30s (the server caps long polls there)");
    }
    let member = MemberConfig {
        leader_urls,
        sync_token: secret("sync-token")?,
        batch_limit: u32::try_from(batch_limit).unwrap_or(1000),
        long_poll_wait,
    };
    Ok(Config {
        instance_id,
        mode,
        log_level,
        eth_client_url,
        jwt_secret,
        jwt_secret_path,
        health_addr,
        api_addr,
        postgres_url,
        api_token,
        admin_token,
        sync_keys,
        leader,
        member,
    })
}

fn validate_lease(leader: &LeaderConfig) -> Result<(), ConfigError> {
    let ttl = leader.lease_ttl;
    if ttl < Duration::from_millis(200) || ttl > Duration::from_secs(60) {
        return err("--lease-ttl must be between 200ms and 60s");
    }
    if leader.lease_safety_margin >= ttl / 2 {
        return err("--lease-safety-margin must be less than half of --lease-ttl");
    }
    // Two renew attempts must fit in the usable part of the lease, so one
    // lost renew does not cost the lease.
    let usable = ttl - leader.lease_safety_margin;
    if leader.lease_renew_interval.is_zero() || leader.lease_renew_interval * 2 > usable {
        return err(format!(
            "--lease-renew-interval must be above 0 and at most half of (--lease-ttl - --lease-safety-margin) = {} ms",
            usable.as_millis() / 2
        ));
    }
    Ok(())
}

fn valid_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A comma-separated list of 1 to `max` http(s) URLs; `count_error` when
/// there are none or too many.
fn url_list(flag: &str, text: &str, max: usize, count_error: &str) -> Result<Vec<String>, ConfigError> {
    let urls = text
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| http_url(flag, u))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() || urls.len() > max {
        return err(count_error);
    }
    Ok(urls)
}

fn http_url(flag: &str, url: &str) -> Result<String, ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| ConfigError(format!("--{flag} {url:?}: expected an http:// URL")))?;
    if url.starts_with("https://") {
        return err(format!("--{flag} {url:?}: https is not built in; put a TLS proxy on loopback in front"));
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return err(format!("--{flag} {url:?}: missing host"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `:PORT` means loopback; `HOST:PORT` is resolved once, at start.
fn socket_addr(flag: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    let full = if text.starts_with(':') { format!("127.0.0.1{text}") } else { text.to_owned() };
    full.to_socket_addrs()
        .map_err(|e| ConfigError(format!("--{flag} {text:?}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError(format!("--{flag} {text:?}: resolves to no address")))
}

fn number(flag: &str, text: &str) -> Result<u64, ConfigError> {
    text.trim().parse::<u64>().map_err(|_| ConfigError(format!("--{flag} {text:?}: expected a whole number")))
}

/// Parses `250ms`, `2s`, `1m`, or a bare number of milliseconds.
pub fn duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let bad = || ConfigError(format!("--{flag} {text:?}: expected a duration such as 250ms, 2s or 1m"));
    let value: u64 = digits.parse().map_err(|_| bad())?;
    // One hour is far above any sensible setting and keeps the math in range.
    const MAX_MS: u64 = 3_600_000;
    let ms = match unit {
        "" | "ms" => Some(value),
        "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        _ => None,
    }
    .filter(|ms| *ms <= MAX_MS)
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

fn address(flag: &str, text: &str) -> Result<[u8; 20], ConfigError> {
    let bytes = crate::codec::decode_data(text).map_err(|e| ConfigError(format!("--{flag} {text:?}: {e}")))?;
    bytes.try_into().map_err(|_| ConfigError(format!("--{flag} {text:?}: an address is 20 bytes")))
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

    #[test]
    fn seed_defaults_apply() {
        let config = run(&["--instance-id", "leader-1", "--jwt-secret", SECRET]).unwrap();
        assert_eq!(config.mode, Mode::Leader);
        assert_eq!(config.eth_client_url, "http://localhost:8551");
        assert_eq!(config.health_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.api_addr, Some("127.0.0.1:8090".parse().unwrap()));
        assert_eq!(config.leader.redis_addr, "localhost:6379");
        assert_eq!(config.leader.redis_stream, "consensus:blocks");
        assert!(config.postgres_url.contains("5432/consensus"));
        // A killed leader's lease must lapse well inside the 1.5 s fail-over goal.
        assert_eq!(config.leader.lease_ttl, Duration::from_secs(1));
        assert!(config.leader.lease_renew_interval * 4 <= config.leader.lease_ttl);
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
            &[("INSTANCE_ID", "env-node"), ("JWT_SECRET", SECRET), ("HEALTH_ADDR", ":7000"), ("NODE_MODE", "member")],
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
            (&["--instance-id", "x", "--jwt-secret", SECRET, "--log-level", "warn"], "--log-level"),
        ];
        for (args, expected) in cases {
            let error = run(args).unwrap_err().to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
            assert!(!error.contains('\n'), "not one line: {error}");
            assert!(!error.contains("1111111111"), "secret echoed: {error}");
        }
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
    fn help_and_version() {
        let none = |_: &str| None;
        assert!(matches!(parse([OsString::from("--help")], &none), Ok(Command::Help)));
        assert!(matches!(parse([OsString::from("-V")], &none), Ok(Command::Version)));
    }
}
