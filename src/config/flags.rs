//! The one definition of every flag: name, environment variable, default,
//! value kind with its bounds, and help text. Parsing, validation, `--help`
//! and README.md's flag table all come from [`FLAGS`] and [`STATUS_FLAGS`],
//! so a flag cannot say one thing in the help and do another.

/// One flag of the `clnode` binary or of `clnode status`.
#[derive(Debug)]
pub struct Flag {
    /// Without the leading `--`.
    pub name: &'static str,
    /// The environment variable used when the flag is absent (the seed's
    /// names); `None` for flags only the command line sets.
    pub env: Option<&'static str>,
    /// Placeholder for the value in the help (`DURATION`, `URL`); empty for
    /// a switch.
    pub value: &'static str,
    pub default: DefaultValue,
    pub kind: Kind,
    pub group: Group,
    pub help: &'static str,
}

/// What a flag is when it is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Validation fails without it.
    Required,
    /// Absent: the feature it enables is off (or another flag stands in).
    Unset,
    Value(&'static str),
    /// Leader and member nodes differ; `None` means unset in that mode.
    PerMode {
        leader: Option<&'static str>,
        member: Option<&'static str>,
    },
}

/// How a value is read and what it may be. Bounds live here, not in
/// validation code, so the help can state them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// 1 to 64 letters, digits, `-`, `_` or `.`.
    InstanceId,
    /// One of `options`; with `ignore_case`, matched in lower case.
    Choice { options: &'static [&'static str], ignore_case: bool },
    /// An `http://` URL (https needs a TLS proxy in front).
    HttpUrl,
    /// Comma-separated `http://` URLs, 1 to `max`; `noun` names them in the
    /// count error.
    HttpUrls { max: usize, noun: &'static str },
    /// `postgres://` or `postgresql://`.
    PostgresUrl,
    /// An address to listen on; `:PORT` means loopback.
    Listen,
    /// `HOST:PORT` to connect to, resolved when connecting (for Redis,
    /// with an optional `redis://` or `rediss://` in front).
    HostPort,
    /// A file path.
    Path,
    /// Hex bytes (the Engine API's JWT secret).
    Hex,
    /// A 20-byte hex address.
    Address,
    /// `250ms`, `2s`, `1m` or bare milliseconds; bounds in milliseconds.
    Duration(Bounds),
    /// A whole number within bounds.
    Count(Bounds),
    /// At least 16 bytes, or `@PATH` to read it from a file.
    Secret,
    /// A secret with no length rule (a Redis or PostgreSQL password), or `@PATH`.
    Password,
    /// Present or not; takes no value.
    Switch,
}

/// Inclusive bounds of a number (milliseconds for durations), and why the
/// limit exists when the reason is not obvious (shown in the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
    pub why: Option<&'static str>,
}

impl Bounds {
    pub const ANY: Bounds = Bounds { min: 0, max: u64::MAX, why: None };

    const fn between(min: u64, max: u64) -> Bounds {
        Bounds { min, max, why: None }
    }

    const fn at_least(min: u64) -> Bounds {
        Bounds { min, max: u64::MAX, why: None }
    }

    const fn at_most(max: u64, why: &'static str) -> Bounds {
        Bounds { min: 0, max, why: Some(why) }
    }

    /// "between 1 and 1000", "at least 1", "at most 10s"; `None` when
    /// unbounded. `unit` writes one bound.
    pub fn describe(&self, unit: UnitText) -> Option<String> {
        match (self.min > 0, self.max < u64::MAX) {
            (true, true) => Some(format!("between {} and {}", unit(self.min), unit(self.max))),
            (true, false) => Some(format!("at least {}", unit(self.min))),
            (false, true) => Some(format!("at most {}", unit(self.max))),
            (false, false) => None,
        }
    }
}

/// Writes one bound with its unit (`10s`, `1000`).
pub type UnitText = fn(u64) -> String;

/// Writes a bound in milliseconds as the shortest duration text: `10s`,
/// `200ms`.
pub fn millis_text(ms: u64) -> String {
    if ms > 0 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

pub fn count_text(n: u64) -> String {
    n.to_string()
}

impl Kind {
    /// The bounds and how to write them, for kinds that have them.
    pub fn bounds(&self) -> Option<(Bounds, UnitText)> {
        match *self {
            Kind::Duration(bounds) => Some((bounds, millis_text)),
            Kind::Count(bounds) => Some((bounds, count_text)),
            _ => None,
        }
    }
}

/// Where a flag is listed in the help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Common,
    Leader,
    Member,
    Security,
    Status,
    Admin,
}

impl Group {
    const ALL: [Group; 6] = [Group::Common, Group::Leader, Group::Member, Group::Security, Group::Status, Group::Admin];

    fn heading(self) -> &'static str {
        match self {
            Group::Common => "COMMON:",
            Group::Leader => "LEADER:",
            Group::Member => "MEMBER:",
            Group::Security => {
                "SECURITY (a SECRET is the value itself, or @PATH to read it from a file; at least 16 bytes):"
            }
            Group::Status => "STATUS (clnode status [FLAGS]: the cluster view from nodes' /health):",
            Group::Admin => {
                "ADMIN (clnode admin [FLAGS] status|step-down|transfer --to ID|pause|resume: leadership control):"
            }
        }
    }
}

const fn secs(n: u64) -> u64 {
    n * 1000
}

/// Every flag of `clnode` (running a node), in help order.
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "instance-id",
        env: Some("INSTANCE_ID"),
        value: "ID",
        default: DefaultValue::Required,
        kind: Kind::InstanceId,
        group: Group::Common,
        help: "unique node name: 1 to 64 letters, digits, '-', '_' or '.'",
    },
    Flag {
        name: "mode",
        env: Some("NODE_MODE"),
        value: "leader|member",
        default: DefaultValue::Value("leader"),
        kind: Kind::Choice { options: &["leader", "member"], ignore_case: false },
        group: Group::Common,
        help: "role",
    },
    Flag {
        name: "eth-client-url",
        env: Some("ETH_CLIENT_URL"),
        value: "URL",
        default: DefaultValue::Value("http://localhost:8551"),
        kind: Kind::HttpUrl,
        group: Group::Common,
        help: "execution client Engine API",
    },
    Flag {
        name: "jwt-secret-file",
        env: Some("JWT_SECRET_FILE"),
        value: "PATH",
        default: DefaultValue::Unset,
        kind: Kind::Path,
        group: Group::Common,
        help: "file holding the 32-byte hex Engine API secret (this or --jwt-secret is required)",
    },
    Flag {
        name: "jwt-secret",
        env: Some("JWT_SECRET"),
        value: "HEX",
        default: DefaultValue::Unset,
        kind: Kind::Hex,
        group: Group::Common,
        help: "the Engine API secret itself (prefer the file)",
    },
    Flag {
        name: "postgres-url",
        env: Some("POSTGRES_URL"),
        value: "URL",
        default: DefaultValue::PerMode {
            leader: Some("postgres://postgres:postgres@localhost:5432/consensus?sslmode=disable"),
            member: Some("postgres://postgres:postgres@localhost:5433/consensus?sslmode=disable"),
        },
        kind: Kind::PostgresUrl,
        group: Group::Common,
        help: "PostgreSQL holding the committed chain; TLS as libpq: sslmode=disable|prefer|require|verify-ca|\
               verify-full, sslrootcert=PATH|system (without it: the Mozilla roots built in)",
    },
    Flag {
        name: "postgres-password",
        env: Some("POSTGRES_PASSWORD"),
        value: "PASSWORD",
        default: DefaultValue::Unset,
        kind: Kind::Password,
        group: Group::Common,
        help: "password of --postgres-url's user, replacing one in the URL (any length; @PATH reads it from a file)",
    },
    Flag {
        name: "health-addr",
        env: Some("HEALTH_ADDR"),
        value: "ADDR",
        default: DefaultValue::Value(":8080"),
        kind: Kind::Listen,
        group: Group::Common,
        help: "/health and /metrics",
    },
    Flag {
        name: "api-addr",
        env: Some("API_ADDR"),
        value: "ADDR",
        default: DefaultValue::PerMode { leader: Some(":8090"), member: None },
        kind: Kind::Listen,
        group: Group::Common,
        help: "block sync API",
    },
    Flag {
        name: "log-level",
        env: Some("LOG_LEVEL"),
        value: "error|warn|info|debug",
        default: DefaultValue::Value("info"),
        // Case-insensitive: LOG_LEVEL is a name other programs use too.
        kind: Kind::Choice { options: &["error", "warn", "info", "debug"], ignore_case: true },
        group: Group::Common,
        help: "least severe level logged; debug adds a line per block with each step's time",
    },
    Flag {
        name: "log-format",
        env: Some("LOG_FORMAT"),
        value: "text|json",
        default: DefaultValue::Value("text"),
        kind: Kind::Choice { options: &["text", "json"], ignore_case: true },
        group: Group::Common,
        help: "json: one object per line (time, level, instance, component, message, fields)",
    },
    Flag {
        name: "redis-addr",
        env: Some("REDIS_ADDR"),
        value: "[rediss://]HOST:PORT",
        default: DefaultValue::Value("localhost:6379"),
        kind: Kind::HostPort,
        group: Group::Leader,
        help: "Redis holding the leader lease and the block stream; rediss:// for TLS (certificate and host name \
               verified)",
    },
    Flag {
        name: "redis-sentinel",
        env: Some("REDIS_SENTINEL"),
        value: "[rediss://]HOST:PORT[,...]",
        default: DefaultValue::Unset,
        kind: Kind::Text,
        group: Group::Leader,
        help: "find the Redis master through these Sentinels (1 to 9, asked in order) instead of --redis-addr; \
               follows a failover; rediss:// for TLS to the sentinels and the master",
    },
    Flag {
        name: "redis-master",
        env: Some("REDIS_MASTER"),
        value: "NAME",
        default: DefaultValue::Value("mymaster"),
        kind: Kind::Text,
        group: Group::Leader,
        help: "the master's name in the Sentinels' configuration (with --redis-sentinel)",
    },
    Flag {
        name: "redis-password",
        env: Some("REDIS_PASSWORD"),
        value: "PASSWORD",
        default: DefaultValue::Unset,
        kind: Kind::Password,
        group: Group::Leader,
        help: "Redis AUTH password (any length; @PATH reads it from a file)",
    },
    Flag {
        name: "redis-ca-file",
        env: Some("REDIS_CA_FILE"),
        value: "PATH",
        default: DefaultValue::Unset,
        kind: Kind::Path,
        group: Group::Leader,
        help: "with rediss://: the CA certificates (PEM) Redis's certificate must chain to, instead of the Mozilla \
               roots built in; read at every connect",
    },
    Flag {
        name: "redis-stream",
        env: Some("REDIS_STREAM"),
        value: "NAME",
        default: DefaultValue::Value("consensus:blocks"),
        kind: Kind::Text,
        group: Group::Leader,
        help: "stream of committed blocks",
    },
    Flag {
        name: "redis-stream-max-len",
        env: Some("REDIS_STREAM_MAX_LEN"),
        value: "N",
        default: DefaultValue::Value("10000"),
        kind: Kind::Count(Bounds::at_least(1)),
        group: Group::Leader,
        help: "approximate MAXLEN of that stream",
    },
    Flag {
        name: "priority-fee-recipient",
        env: Some("PRIORITY_FEE_RECIPIENT"),
        value: "ADDR",
        default: DefaultValue::Value("0x0000000000000000000000000000000000000000"),
        kind: Kind::Address,
        group: Group::Leader,
        help: "fee recipient of built blocks",
    },
    Flag {
        name: "evm-build-delay",
        env: Some("EVM_BUILD_DELAY"),
        value: "DURATION",
        default: DefaultValue::Value("20ms"),
        kind: Kind::Duration(Bounds::at_most(secs(10), "the payload would be discarded by the client")),
        group: Group::Leader,
        help: "wait between starting a build and fetching it (doubled, up to 500ms, while builds come back empty as transactions arrive)",
    },
    Flag {
        name: "lease-ttl",
        env: Some("LEASE_TTL"),
        value: "DURATION",
        default: DefaultValue::Value("1s"),
        kind: Kind::Duration(Bounds::between(200, secs(60))),
        group: Group::Leader,
        help: "leader lease TTL: a dead leader is replaced within about this long",
    },
    Flag {
        name: "lease-renew-interval",
        env: Some("LEASE_RENEW_INTERVAL"),
        value: "DURATION",
        default: DefaultValue::Value("200ms"),
        kind: Kind::Duration(Bounds::ANY),
        group: Group::Leader,
        help: "how often the leader renews its lease; above 0 and at most half of (TTL - safety margin)",
    },
    Flag {
        name: "lease-safety-margin",
        env: Some("LEASE_SAFETY_MARGIN"),
        value: "DURATION",
        default: DefaultValue::Value("200ms"),
        kind: Kind::Duration(Bounds::ANY),
        group: Group::Leader,
        help: "the lease counts as lost this long before Redis expires it; less than half of the TTL",
    },
    Flag {
        name: "database-stall-limit",
        env: Some("DATABASE_STALL_LIMIT"),
        value: "DURATION",
        default: DefaultValue::Unset,
        kind: Kind::Duration(Bounds::ANY),
        group: Group::Leader,
        help: "a leader whose database calls fail or hang this long releases the lease until it reaches \
               PostgreSQL again (default: half of --lease-ttl, at least 1s; a slow commit is not a dead database)",
    },
    Flag {
        name: "engine-stall-limit",
        env: Some("ENGINE_STALL_LIMIT"),
        value: "DURATION",
        default: DefaultValue::Unset,
        kind: Kind::Duration(Bounds::ANY),
        group: Group::Leader,
        help: "a leader whose Engine API call has not answered this long releases the lease until its execution \
               client answers (default: --lease-ttl, at least 1s; a full block's newPayload takes about 150 ms)",
    },
    Flag {
        name: "min-block-interval",
        env: Some("MIN_BLOCK_INTERVAL"),
        value: "DURATION",
        default: DefaultValue::Value("0"),
        kind: Kind::Duration(Bounds::ANY),
        group: Group::Leader,
        help: "shortest time from one block's build start to the next",
    },
    Flag {
        name: "empty-block-interval",
        env: Some("EMPTY_BLOCK_INTERVAL"),
        value: "DURATION",
        default: DefaultValue::Value("0"),
        kind: Kind::Duration(Bounds::ANY),
        group: Group::Leader,
        help: "heartbeat for empty blocks; 0 = never",
    },
    Flag {
        name: "idle-poll-interval",
        env: Some("IDLE_POLL_INTERVAL"),
        value: "DURATION",
        default: DefaultValue::Value("50ms"),
        kind: Kind::Duration(Bounds::between(1, secs(10))),
        group: Group::Leader,
        help: "how often an idle leader looks for transactions",
    },
    Flag {
        name: "max-timestamp-lead",
        env: Some("MAX_TIMESTAMP_LEAD"),
        value: "DURATION",
        default: DefaultValue::Value("2s"),
        kind: Kind::Duration(Bounds::at_most(secs(86_400), "the commit compares it with the database clock")),
        group: Group::Leader,
        help: "how far block time may run ahead of the cluster clock (PostgreSQL's); the commit refuses more",
    },
    Flag {
        name: "max-clock-skew",
        env: Some("MAX_CLOCK_SKEW"),
        value: "DURATION",
        default: DefaultValue::Value("1s"),
        kind: Kind::Duration(Bounds::between(10, secs(600))),
        group: Group::Leader,
        help: "how far this node's wall clock may disagree with PostgreSQL's; beyond it the node says so on /health \
               and does not lead",
    },
    Flag {
        name: "preferred-leaders",
        env: Some("PREFERRED_LEADERS"),
        value: "ID[,ID...]",
        default: DefaultValue::Unset,
        kind: Kind::Text,
        group: Group::Leader,
        help: "the same list on every leader-mode node, most preferred first (1 to 16 instance ids): the leader \
               hands the lease to a more preferred node once it has been healthy and caught up for two lease TTLs",
    },
    Flag {
        name: "leader-url",
        env: Some("LEADER_URL"),
        value: "URL[,URL...]",
        default: DefaultValue::Value("http://localhost:8090"),
        kind: Kind::HttpUrls { max: 16, noun: "URLs" },
        group: Group::Member,
        help: "sync API URLs, tried in order",
    },
    Flag {
        name: "sync-batch-limit",
        env: Some("SYNC_BATCH_LIMIT"),
        value: "N",
        default: DefaultValue::Value("100"),
        kind: Kind::Count(Bounds::between(1, 1000)),
        group: Group::Member,
        help: "blocks per request near the head; a member far behind asks for full pages of 1000",
    },
    Flag {
        name: "sync-page-bytes",
        env: Some("SYNC_PAGE_BYTES"),
        value: "BYTES",
        default: DefaultValue::Value("8388608"),
        kind: Kind::Count(Bounds::between(65536, 67108864)),
        group: Group::Member,
        help: "byte budget of each page a member asks for (max_bytes); a larger block still comes, alone",
    },
    Flag {
        name: "sync-wait",
        env: Some("SYNC_WAIT"),
        value: "DURATION",
        default: DefaultValue::Value("5s"),
        kind: Kind::Duration(Bounds::at_most(secs(30), "the server caps long polls there")),
        group: Group::Member,
        help: "long-poll wait per request",
    },
    Flag {
        name: "max-lag-blocks",
        env: Some("MAX_LAG_BLOCKS"),
        value: "N",
        default: DefaultValue::Unset,
        kind: Kind::Count(Bounds::between(1, crate::member::lag_limit::MAX_LAG_BLOCKS_LIMIT)),
        group: Group::Member,
        help: "readiness for a load balancer: /health answers 503 while the member is more than N blocks behind \
               its sync source (off unless set; /health?max_lag_blocks=N asks per request)",
    },
    Flag {
        name: "max-lag-ms",
        env: Some("MAX_LAG_MS"),
        value: "MS",
        default: DefaultValue::Unset,
        kind: Kind::Count(Bounds::between(1, crate::member::lag_limit::MAX_LAG_MS_LIMIT)),
        group: Group::Member,
        help: "readiness for a load balancer: /health answers 503 while the member has been behind, or without \
               word from its source, for more than MS milliseconds (off unless set; /health?max_lag_ms=MS asks per \
               request)",
    },
    Flag {
        name: "api-token",
        env: Some("API_TOKEN"),
        value: "SECRET",
        default: DefaultValue::Unset,
        kind: Kind::Secret,
        group: Group::Security,
        help: "bearer token the sync API requires",
    },
    Flag {
        name: "sync-token",
        env: Some("SYNC_TOKEN"),
        value: "SECRET",
        default: DefaultValue::Unset,
        kind: Kind::Secret,
        group: Group::Security,
        help: "member: bearer token sent to the sync API",
    },
    Flag {
        name: "signing-key-file",
        env: Some("SIGNING_KEY_FILE"),
        value: "PATH",
        default: DefaultValue::Unset,
        kind: Kind::Path,
        group: Group::Security,
        help: "leader mode: file holding the cluster's Ed25519 block-signing key (clnode keygen PATH makes one); \
               required unless --insecure-unsigned-records",
    },
    Flag {
        name: "leader-public-key",
        env: Some("LEADER_PUBLIC_KEY"),
        value: "HEX[,HEX...]",
        default: DefaultValue::Unset,
        kind: Kind::Text,
        group: Group::Security,
        help: "member: public keys of the block-signing key; only blocks they signed are executed (1 to 8, a list \
               for rotation); required unless --insecure-unsigned-records",
    },
    Flag {
        name: "insecure-unsigned-records",
        env: None,
        value: "",
        default: DefaultValue::Unset,
        kind: Kind::Switch,
        group: Group::Security,
        help: "INSECURE: a leader commits unsigned blocks, a member executes any chain a sync source serves; \
               only where every sync source and path is trusted",
    },
    Flag {
        name: "sync-secret",
        env: Some("SYNC_SECRET"),
        value: "SECRET",
        default: DefaultValue::Unset,
        kind: Kind::Secret,
        group: Group::Security,
        help: "HMAC key: serving nodes sign records, members verify them (authenticates the serving node, \
               not the commit)",
    },
    Flag {
        name: "sync-secret-previous",
        env: Some("SYNC_SECRET_PREVIOUS"),
        value: "SECRET",
        default: DefaultValue::Unset,
        kind: Kind::Secret,
        group: Group::Security,
        help: "also accepted when verifying, during a key rotation (needs --sync-secret)",
    },
    Flag {
        name: "admin-token",
        env: Some("ADMIN_TOKEN"),
        value: "SECRET",
        default: DefaultValue::Unset,
        kind: Kind::Secret,
        group: Group::Security,
        help: "enables /admin/* on the health port: clnode admin status, step-down, transfer, pause, resume",
    },
    Flag {
        name: "sync-wire",
        env: Some("SYNC_WIRE"),
        value: "json|seed",
        default: DefaultValue::Value("json"),
        kind: Kind::Choice { options: &["json", "seed"], ignore_case: false },
        group: Group::Common,
        help: "record encoding of the sync API: json (clnode's), or seed (the seed's msgpack records, no term and \
               no signatures: a leader serves them to seed members, a member follows a seed leader)",
    },
];

/// Every flag of `clnode status`.
pub const STATUS_FLAGS: &[Flag] = &[
    Flag {
        name: "url",
        env: Some("CLNODE_STATUS_URLS"),
        value: "URL[,URL...]",
        default: DefaultValue::Value("http://127.0.0.1:8080"),
        kind: Kind::HttpUrls { max: 64, noun: "health URLs" },
        group: Group::Status,
        help: "health addresses of the nodes to show",
    },
    Flag {
        name: "watch",
        env: None,
        value: "",
        default: DefaultValue::Unset,
        kind: Kind::Switch,
        group: Group::Status,
        help: "redraw every interval, with transactions per second",
    },
    Flag {
        name: "interval",
        env: None,
        value: "DURATION",
        default: DefaultValue::Value("1s"),
        kind: Kind::Duration(Bounds::at_least(100)),
        group: Group::Status,
        help: "time between redraws with --watch",
    },
];

/// What clnode does with one flag of the seed (the Go tutorial's
/// `03-member-nodes`, which clnode replaces node by node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedMapping {
    /// clnode's flag of the same name and variable does the same job;
    /// `note` says where it differs (a default, a format).
    Same { note: &'static str },
    /// Refused, flag and variable alike, with this line naming clnode's
    /// equivalent: silently ignored, it would run with another meaning.
    Refused { instead: &'static str },
}

/// One flag of the seed and its environment variable.
#[derive(Debug)]
pub struct SeedFlag {
    pub name: &'static str,
    pub env: &'static str,
    pub mapping: SeedMapping,
}

const fn same(name: &'static str, env: &'static str, note: &'static str) -> SeedFlag {
    SeedFlag { name, env, mapping: SeedMapping::Same { note } }
}

/// Every flag of the seed, in its order, with what clnode makes of it.
/// README.md's seed table is checked against this list.
pub const SEED_FLAGS: &[SeedFlag] = &[
    same("instance-id", "INSTANCE_ID", ""),
    same("mode", "NODE_MODE", ""),
    same("eth-client-url", "ETH_CLIENT_URL", ""),
    same(
        "jwt-secret",
        "JWT_SECRET",
        "no built-in default (the seed's was a published secret): give your execution client's, \
         preferably as --jwt-secret-file PATH",
    ),
    same("priority-fee-recipient", "PRIORITY_FEE_RECIPIENT", ""),
    same("evm-build-delay", "EVM_BUILD_DELAY", "default 20ms (the seed's 1ms)"),
    SeedFlag {
        name: "evm-build-delay-empty-block",
        env: "EVM_BUILD_DELAY_EMPTY_BLOCK",
        mapping: SeedMapping::Refused {
            instead: "clnode commits no empty block unless --empty-block-interval is set, and an idle leader looks \
                      for transactions every --idle-poll-interval (default 50ms); use those",
        },
    },
    SeedFlag {
        name: "tx-pool-polling-interval",
        env: "TX_POOL_POLLING_INTERVAL",
        mapping: SeedMapping::Refused {
            instead: "use --idle-poll-interval DURATION (IDLE_POLL_INTERVAL): how often an idle leader looks for \
                      transactions, default 50ms",
        },
    },
    same("health-addr", "HEALTH_ADDR", ""),
    same("api-addr", "API_ADDR", "a member serves the sync API only when it is given"),
    same("redis-addr", "REDIS_ADDR", ""),
    same("redis-password", "REDIS_PASSWORD", "a value starting with @ names a file to read it from"),
    same("redis-stream", "REDIS_STREAM", ""),
    same("postgres-url", "POSTGRES_URL", "member default port 5433 (the seed's member defaults to 5432)"),
    same("leader-url", "LEADER_URL", "also a comma-separated list, tried in order"),
];

/// The seed's refused flag of this name, and what to use instead.
pub fn seed_refusal(name: &str) -> Option<&'static str> {
    SEED_FLAGS.iter().find(|flag| flag.name == name).and_then(|flag| match flag.mapping {
        SeedMapping::Refused { instead } => Some(instead),
        SeedMapping::Same { .. } => None,
    })
}

/// Every flag of `clnode admin`.
pub const ADMIN_FLAGS: &[Flag] = &[
    Flag {
        name: "url",
        env: Some("CLNODE_ADMIN_URLS"),
        value: "URL[,URL...]",
        default: DefaultValue::Value("http://127.0.0.1:8080"),
        kind: Kind::HttpUrls { max: 64, noun: "health URLs" },
        group: Group::Admin,
        help: "health addresses of the nodes; step-down and transfer go to whichever of them leads",
    },
    Flag {
        name: "token",
        env: Some("CLNODE_ADMIN_TOKEN"),
        value: "SECRET",
        default: DefaultValue::Required,
        kind: Kind::Secret,
        group: Group::Admin,
        help: "the nodes' --admin-token (prefer @PATH)",
    },
    Flag {
        name: "to",
        env: None,
        value: "ID",
        default: DefaultValue::Unset,
        kind: Kind::Text,
        group: Group::Admin,
        help: "transfer: the instance id of the node to hand the lease to",
    },
];

/// The definition of `--name` in `table`.
pub fn find(table: &'static [Flag], name: &str) -> Option<&'static Flag> {
    table.iter().find(|flag| flag.name == name)
}

impl DefaultValue {
    /// The default in `mode`, `None` when the flag is unset there.
    pub fn for_mode(&self, leader: bool) -> Option<&'static str> {
        match *self {
            DefaultValue::Required | DefaultValue::Unset => None,
            DefaultValue::Value(value) => Some(value),
            DefaultValue::PerMode { leader: l, member: m } => {
                if leader {
                    l
                } else {
                    m
                }
            }
        }
    }

    /// As written in the help: `default 1s`, `required`; `None` when unset.
    fn help_text(&self) -> Option<String> {
        match *self {
            DefaultValue::Required => Some("required".to_owned()),
            DefaultValue::Unset => None,
            DefaultValue::Value(value) => Some(format!("default {value}")),
            DefaultValue::PerMode { leader, member } => {
                let one = |mode: &str, value: Option<&str>| match value {
                    Some(value) => format!("{mode} default {value}"),
                    None => format!("{mode}: off unless set"),
                };
                Some(format!("{}; {}", one("leader", leader), one("member", member)))
            }
        }
    }

    /// As written in README.md's default column.
    pub fn readme_text(&self) -> String {
        match *self {
            DefaultValue::Required => "required".to_owned(),
            DefaultValue::Unset => "unset".to_owned(),
            DefaultValue::Value(value) => format!("`{value}`"),
            DefaultValue::PerMode { leader, member } => {
                let one = |value: Option<&str>| value.map_or_else(|| "unset".to_owned(), |v| format!("`{v}`"));
                format!("leader {}, member {}", one(leader), one(member))
            }
        }
    }
}

impl Flag {
    /// `--name VALUE`, as the help and README.md write it.
    pub fn synopsis(&self) -> String {
        if self.value.is_empty() {
            format!("--{}", self.name)
        } else {
            format!("--{} {}", self.name, self.value)
        }
    }

    /// The values the kind allows, when it limits them: "between 1 and
    /// 1000", "1 to 16".
    pub fn range(&self) -> Option<String> {
        match self.kind {
            Kind::HttpUrls { max, .. } => Some(format!("1 to {max}")),
            kind => kind.bounds().and_then(|(bounds, unit)| bounds.describe(unit)),
        }
    }

    /// The help text with the range, as README.md's meaning column has it.
    pub fn meaning(&self) -> String {
        match self.range() {
            Some(range) => format!("{} ({range})", self.help),
            None => self.help.to_owned(),
        }
    }

    /// One entry of the help: text, range, default, environment variable.
    fn help_entry(&self) -> String {
        let notes: Vec<String> = self.range().into_iter().chain(self.default.help_text()).collect();
        let mut text = self.help.to_owned();
        if !notes.is_empty() {
            text.push_str(&format!(" ({})", notes.join("; ")));
        }
        if let Some(env) = self.env {
            text.push_str(&format!(" [{env}]"));
        }
        text
    }
}

/// Column where flag descriptions start, and the width they wrap at.
const DESCRIPTION_COLUMN: usize = 33;
const HELP_WIDTH: usize = 110;

/// `--help`: the fixed introduction, then every flag from the tables.
pub fn usage() -> String {
    let mut out = String::from(
        "\
clnode: a consensus-layer node for Ethereum execution clients

USAGE:
    clnode --instance-id ID --mode leader --signing-key-file PATH [FLAGS]
    clnode --instance-id ID --mode member --leader-url URL[,URL...] --leader-public-key HEX [FLAGS]
    clnode status [--url URL[,URL...]] [--watch] [--interval DURATION]
    clnode admin [--url URL[,URL...]] --token SECRET status|step-down|transfer --to ID|pause|resume
    clnode keygen PATH             write a new block-signing key (mode 600), print its public key
    clnode keygen --public PATH    print the public key of a block-signing key file

Every flag can also be set by the environment variable in brackets.
Addresses written as :PORT bind to 127.0.0.1; give 0.0.0.0:PORT to expose.
",
    );
    for group in Group::ALL {
        out.push('\n');
        out.push_str(group.heading());
        out.push('\n');
        for flag in FLAGS.iter().chain(STATUS_FLAGS).chain(ADMIN_FLAGS).filter(|flag| flag.group == group) {
            push_entry(&mut out, &flag.synopsis(), &flag.help_entry());
        }
    }
    out.push_str("\nDURATION is a number with a unit: 250ms, 2s, 1m (a bare number means milliseconds).\n\n");
    push_entry(&mut out, "-h, --help", "print this help");
    push_entry(&mut out, "-V, --version", "print the version");
    out
}

/// One flag's lines: the synopsis, then the description wrapped at
/// `HELP_WIDTH` and indented to `DESCRIPTION_COLUMN`.
fn push_entry(out: &mut String, synopsis: &str, description: &str) {
    let mut line = format!("    {synopsis}");
    // Two spaces at least between a long synopsis and its description.
    let pad = DESCRIPTION_COLUMN.saturating_sub(line.len()).max(2);
    line.push_str(&" ".repeat(pad));
    let mut line_has_words = false;
    for word in description.split(' ') {
        if line_has_words && line.len() + 1 + word.len() > HELP_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(DESCRIPTION_COLUMN);
            line_has_words = false;
        }
        if line_has_words {
            line.push(' ');
        }
        line.push_str(word);
        line_has_words = true;
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const README_HEADER: &str = "| flag | environment | default | meaning |";

    /// README.md's flag tables (the node's, then `clnode status`'s) as the
    /// test expects them, for pasting into README.md when a flag changes.
    fn readme_tables() -> String {
        let mut out = String::new();
        for table in [FLAGS, STATUS_FLAGS] {
            out.push_str(&format!("\n{README_HEADER}\n|---|---|---|---|\n"));
            for flag in table {
                out.push_str(&format!("| {} |\n", readme_row(flag).join(" | ")));
            }
        }
        out
    }

    /// The rows of every table in `markdown` whose header is `README_HEADER`.
    fn table_rows(markdown: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut lines = markdown.lines();
        while let Some(line) = lines.next() {
            if line.trim() == README_HEADER {
                // The separator row, then rows until the table ends.
                lines.next();
                rows.extend(lines.by_ref().take_while(|line| line.trim_start().starts_with('|')).map(cells));
            }
        }
        rows
    }

    fn readme_row(flag: &Flag) -> [String; 4] {
        [
            format!("`{}`", flag.synopsis()).replace('|', "\\|"),
            flag.env.map_or_else(|| "none".to_owned(), |env| format!("`{env}`")),
            if flag.kind == Kind::Switch { "off".to_owned() } else { flag.default.readme_text() },
            flag.meaning().replace('|', "\\|"),
        ]
    }

    /// Splits a markdown table row on unescaped `|`.
    fn cells(line: &str) -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        let mut cells = vec![String::new()];
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    chars.next();
                    if let Some(cell) = cells.last_mut() {
                        cell.push_str("\\|");
                    }
                }
                '|' => cells.push(String::new()),
                _ => {
                    if let Some(cell) = cells.last_mut() {
                        cell.push(c);
                    }
                }
            }
        }
        cells.into_iter().map(|cell| cell.trim().to_owned()).collect()
    }

    #[test]
    fn readme_flag_table_matches_the_definitions() {
        let rows = table_rows(include_str!("../../README.md"));
        let expected = readme_tables();
        assert!(!rows.is_empty(), "README.md has no flag table; add these:\n{expected}");
        let all: Vec<&Flag> = FLAGS.iter().chain(STATUS_FLAGS).collect();
        for row in &rows {
            let flag = all
                .iter()
                .find(|flag| row.first() == Some(&readme_row(flag)[0]))
                .unwrap_or_else(|| panic!("README.md row {row:?} names no defined flag; the tables are:\n{expected}"));
            assert_eq!(
                row.as_slice(),
                readme_row(flag).as_slice(),
                "README.md row differs; the tables are:\n{expected}"
            );
        }
        for flag in &all {
            let synopsis = &readme_row(flag)[0];
            let count = rows.iter().filter(|row| row.first() == Some(synopsis)).count();
            assert_eq!(count, 1, "--{} appears {count} times in README.md; the tables are:\n{expected}", flag.name);
        }
    }

    /// `clnode admin`'s table has a header of its own (its `--url` is
    /// status's name with another variable).
    const ADMIN_README_HEADER: &str = "| admin flag | environment | default | meaning |";

    #[test]
    fn readme_admin_flag_table_matches_the_definitions() {
        let markdown = include_str!("../../README.md");
        let mut lines = markdown.lines().skip_while(|line| line.trim() != ADMIN_README_HEADER).skip(2);
        let rows: Vec<Vec<String>> =
            lines.by_ref().take_while(|line| line.trim_start().starts_with('|')).map(cells).collect();
        let expected: Vec<Vec<String>> = ADMIN_FLAGS.iter().map(|flag| readme_row(flag).to_vec()).collect();
        let text: Vec<String> = expected.iter().map(|row| format!("| {} |", row.join(" | "))).collect();
        assert_eq!(
            rows,
            expected,
            "README.md's admin table should read:\n{ADMIN_README_HEADER}\n|---|---|---|---|\n{}",
            text.join("\n")
        );
        let env: Vec<_> = ADMIN_FLAGS.iter().filter_map(|flag| flag.env).collect();
        assert!(FLAGS.iter().chain(STATUS_FLAGS).all(|flag| flag.env.is_none_or(|e| !env.contains(&e))));
    }

    #[test]
    fn names_and_environment_variables_are_unique() {
        let all: Vec<&Flag> = FLAGS.iter().chain(STATUS_FLAGS).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(a.env.is_none() || a.env != b.env, "{} and {} share {:?}", a.name, b.name, a.env);
            }
        }
    }

    #[test]
    fn help_lists_every_flag_with_its_variable_and_default() {
        let help = usage();
        for flag in FLAGS.iter().chain(STATUS_FLAGS).chain(ADMIN_FLAGS) {
            assert!(help.contains(&format!("    {}  ", flag.synopsis())), "--{} missing", flag.name);
            // The entry as a whole: wrapping may split it across lines.
            let entry = flag.help_entry();
            if let Some(env) = flag.env {
                assert!(entry.ends_with(&format!("[{env}]")), "{entry}");
            }
            if let DefaultValue::Value(value) = flag.default {
                assert!(entry.contains(&format!("default {value})")), "{entry}");
            }
        }
        assert!(help.lines().all(|line| line.len() <= HELP_WIDTH), "{help}");
    }

    const SEED_README_HEADER: &str = "| seed flag | seed environment | clnode |";

    fn seed_readme_row(flag: &SeedFlag) -> [String; 3] {
        let clnode = match flag.mapping {
            SeedMapping::Same { note: "" } => format!("`--{}`, the same", flag.name),
            SeedMapping::Same { note } => format!("`--{}`, the same; {note}", flag.name),
            SeedMapping::Refused { instead } => format!("refused: {instead}"),
        };
        [format!("`--{}`", flag.name), format!("`{}`", flag.env), clnode]
    }

    #[test]
    fn readme_seed_flag_table_matches_the_definitions() {
        let readme = include_str!("../../README.md");
        let expected: String =
            SEED_FLAGS.iter().map(|flag| format!("| {} |\n", seed_readme_row(flag).join(" | "))).collect();
        let mut lines = readme.lines().skip_while(|line| line.trim() != SEED_README_HEADER);
        assert!(
            lines.next().is_some(),
            "README.md has no seed flag table; add:\n{SEED_README_HEADER}\n|---|---|---|\n{expected}"
        );
        lines.next();
        let rows: Vec<Vec<String>> = lines.take_while(|line| line.trim_start().starts_with('|')).map(cells).collect();
        let wanted: Vec<Vec<String>> = SEED_FLAGS.iter().map(|flag| seed_readme_row(flag).to_vec()).collect();
        assert_eq!(rows, wanted, "README.md's seed flag table differs; it should read:\n{expected}");
    }

    #[test]
    fn every_seed_flag_clnode_keeps_is_a_flag_with_the_seeds_variable() {
        for seed in SEED_FLAGS {
            let kept = find(FLAGS, seed.name);
            match seed.mapping {
                SeedMapping::Same { .. } => {
                    assert_eq!(kept.and_then(|flag| flag.env), Some(seed.env), "--{}", seed.name)
                }
                SeedMapping::Refused { .. } => {
                    assert!(kept.is_none(), "--{} is refused and defined", seed.name);
                    assert!(FLAGS.iter().all(|flag| flag.env != Some(seed.env)), "{}", seed.env);
                }
            }
        }
    }

    #[test]
    fn bounds_read_as_the_errors_always_said() {
        let ms = |b: Bounds| b.describe(millis_text);
        assert_eq!(ms(Bounds::between(200, secs(60))).as_deref(), Some("between 200ms and 60s"));
        assert_eq!(ms(Bounds::between(1, secs(10))).as_deref(), Some("between 1ms and 10s"));
        assert_eq!(ms(Bounds::at_least(100)).as_deref(), Some("at least 100ms"));
        assert_eq!(Bounds::between(1, 1000).describe(count_text).as_deref(), Some("between 1 and 1000"));
        assert_eq!(Bounds::ANY.describe(count_text), None);
    }
}
