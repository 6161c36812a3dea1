//! Where the shared Redis is, and a connection to it: one fixed address
//! (`--redis-addr`), or whichever server a set of Redis Sentinels names the
//! master of `--redis-master` (`--redis-sentinel`).
//!
//! With Sentinel, every connection is made afresh through the sentinels:
//! the roles drop their connection after any failed call
//! ([`Reconnecting`](crate::reconnect::Reconnecting)), so after a failover
//! the next call asks the sentinels again and reaches the new master. The
//! address a sentinel gives is checked with `ROLE` before it is used, as
//! the Sentinel client guidelines ask: a sentinel that has not seen the
//! failover yet can name a server that is a replica now, and writing the
//! lease there would fail anyway (READONLY), but reading it would not.
//!
//! TLS (`rediss://` on `--redis-addr` or `--redis-sentinel`) covers every
//! connection: the server, or the sentinels and the master they name (one
//! setting for the whole deployment, as Redis's own TLS set-up configures
//! sentinels like servers). The certificate is always verified, name
//! included: against `--redis-ca-file`, read at every connect, or the
//! Mozilla roots compiled in (`tls.rs`).
//!
//! Safety does not rest on this: Redis replication is asynchronous, so a
//! promoted replica may lack the last lease renewal or term. The fence in
//! PostgreSQL keeps one block per height whatever Redis says
//! (ARCHITECTURE.md, "Redis Sentinel").

use std::path::PathBuf;
use std::time::Duration;

use redis::IntoConnectionInfo;

use super::lease::{RedisError, RedisErrorKind, REDIS_IO_TIMEOUT};
use crate::secret::Secret;

/// Most sentinels `--redis-sentinel` may list: each failed one costs a
/// connect timeout before the next is asked.
pub const MAX_SENTINELS: usize = 9;

/// Where the lease, the term counter and the block stream live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server at HOST:PORT.
    Direct { addr: String, tls: Option<RedisTls> },
    /// The master the sentinels name for `master`.
    Sentinel { sentinels: Vec<String>, master: String, tls: Option<RedisTls> },
}

/// TLS to every Redis server of a target (`rediss://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// `--redis-ca-file`: the servers' certificates must chain to these
    /// (PEM); `None`: to the Mozilla roots compiled in.
    pub ca_file: Option<PathBuf>,
}

impl RedisTarget {
    /// How errors and logs name this target.
    pub fn label(&self) -> String {
        let scheme = if self.tls().is_some() { "rediss://" } else { "" };
        match self {
            RedisTarget::Direct { addr, .. } => format!("{scheme}{addr}"),
            RedisTarget::Sentinel { sentinels, master, .. } => {
                format!("master {master} via sentinels {scheme}{}", sentinels.join(","))
            }
        }
    }

    pub fn tls(&self) -> Option<&RedisTls> {
        match self {
            RedisTarget::Direct { tls, .. } | RedisTarget::Sentinel { tls, .. } => tls.as_ref(),
        }
    }

    /// `--redis-ca-file`: only with TLS (a CA file on a plaintext target
    /// would protect nothing while seeming to).
    pub fn set_ca_file(&mut self, path: PathBuf) -> Result<(), String> {
        match self {
            RedisTarget::Direct { tls: Some(tls), .. } | RedisTarget::Sentinel { tls: Some(tls), .. } => {
                tls.ca_file = Some(path);
                Ok(())
            }
            _ => Err("--redis-ca-file needs TLS: give the address as rediss://HOST:PORT".to_owned()),
        }
    }
}

/// `rediss://` (TLS) or `redis://` (plaintext) in front of one address, or
/// neither (plaintext); `None` for no scheme.
fn split_scheme(text: &str) -> (Option<bool>, &str) {
    if let Some(rest) = text.strip_prefix("rediss://") {
        (Some(true), rest)
    } else if let Some(rest) = text.strip_prefix("redis://") {
        (Some(false), rest)
    } else {
        (None, text)
    }
}

/// `--redis-addr [redis://|rediss://]HOST:PORT[/]`. A password in the
/// address is refused (without quoting it): `--redis-password` takes it,
/// from a file if need be; so is a database number (clnode uses 0).
pub fn parse_redis_addr(text: &str) -> Result<RedisTarget, String> {
    let (scheme, rest) = split_scheme(text.trim());
    let addr = rest.strip_suffix('/').unwrap_or(rest);
    if addr.contains('@') {
        return Err("--redis-addr: give the password as --redis-password (@PATH reads it from a file), \
                    not in the address"
            .to_owned());
    }
    if addr.is_empty() || addr.contains('/') {
        return Err(format!("--redis-addr {text:?}: expected [redis://|rediss://]HOST:PORT"));
    }
    let tls = scheme.unwrap_or(false).then(RedisTls::default);
    Ok(RedisTarget::Direct { addr: addr.to_owned(), tls })
}

/// `--redis-sentinel HOST:PORT[,HOST:PORT...]` with `--redis-master NAME`:
/// a list of 1 to [`MAX_SENTINELS`] distinct addresses, and a master name
/// Sentinel accepts (no spaces: it is one word of a Sentinel command).
pub fn parse_sentinels(list: &str, master: &str) -> Result<RedisTarget, String> {
    // The first address's scheme is the list's; a later one may repeat it.
    let mut tls = None;
    let mut sentinels = Vec::new();
    for entry in list.split(',') {
        let (scheme, addr) = split_scheme(entry.trim());
        match (tls, scheme) {
            (None, scheme) => tls = Some(scheme.unwrap_or(false)),
            (Some(list_tls), Some(scheme)) if scheme != list_tls => {
                return Err("--redis-sentinel mixes redis:// and rediss://: TLS is one setting for every sentinel \
                            and server"
                    .to_owned())
            }
            _ => {}
        }
        sentinels.push(addr.to_owned());
    }
    if sentinels.len() > MAX_SENTINELS {
        return Err(format!("--redis-sentinel lists {} addresses; at most {MAX_SENTINELS}", sentinels.len()));
    }
    for (index, addr) in sentinels.iter().enumerate() {
        let port = addr.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(1..))) if !host.is_empty() && !host.contains('/')) {
            return Err(format!("--redis-sentinel {addr:?}: expected HOST:PORT[,HOST:PORT...]"));
        }
        if sentinels[..index].contains(addr) {
            return Err(format!("--redis-sentinel names {addr} twice"));
        }
    }
    let name_ok = (1..=128).contains(&master.len()) && master.bytes().all(|b| b.is_ascii_graphic());
    if !name_ok {
        return Err(format!("--redis-master {master:?}: expected 1 to 128 printable characters, no spaces"));
    }
    let tls = tls.unwrap_or(false).then(RedisTls::default);
    Ok(RedisTarget::Sentinel { sentinels, master: master.to_owned(), tls })
}

/// Opens a connection to the target's current master with connect, read
/// and write timeouts.
pub fn connect_redis(
    target: &RedisTarget,
    password: Option<&Secret>,
    read_timeout: Duration,
) -> Result<redis::Connection, RedisError> {
    match target {
        RedisTarget::Direct { addr, tls } => connect_addr(addr, tls.as_ref(), password, read_timeout),
        RedisTarget::Sentinel { sentinels, master, tls } => {
            let addr = master_addr(sentinels, master, tls.as_ref())?;
            let mut connection = connect_addr(&addr, tls.as_ref(), password, read_timeout)?;
            check_is_master(&mut connection, &addr)?;
            Ok(connection)
        }
    }
}

/// One server at `addr`, over TLS when `tls` is given. The TLS handshake
/// runs within the connect timeout (the redis crate's set-up of a new
/// connection does).
fn connect_addr(
    addr: &str,
    tls: Option<&RedisTls>,
    password: Option<&Secret>,
    read_timeout: Duration,
) -> Result<redis::Connection, RedisError> {
    let scheme = if tls.is_some() { "rediss" } else { "redis" };
    // Errors name the scheme with TLS, so a refused certificate reads as one.
    let shown = if tls.is_some() { format!("rediss://{addr}") } else { addr.to_owned() };
    let fail = |what: &'static str, e: redis::RedisError| RedisError::new(&shown, what, &e);
    let mut info = format!("{scheme}://{addr}/").into_connection_info().map_err(|e| fail("address", e))?;
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(String::from_utf8_lossy(password.expose()));
        info = info.set_redis_settings(settings);
    }
    let client = match tls {
        None => redis::Client::open(info),
        Some(RedisTls { ca_file }) => {
            crate::tls::install_default_provider();
            let root_cert = match ca_file {
                Some(path) => Some(crate::tls::read_ca_pem(path).map_err(|detail| RedisError {
                    kind: RedisErrorKind::Tls,
                    addr: shown.clone(),
                    what: "connect",
                    detail,
                })?),
                None => None,
            };
            redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert })
        }
    }
    .map_err(|e| fail("address", e))?;
    let connection = client.get_connection_with_timeout(REDIS_IO_TIMEOUT).map_err(|e| fail("connect", e))?;
    connection.set_read_timeout(Some(read_timeout)).map_err(|e| fail("connect", e))?;
    connection.set_write_timeout(Some(REDIS_IO_TIMEOUT)).map_err(|e| fail("connect", e))?;
    Ok(connection)
}

/// The master's HOST:PORT from the first sentinel, in the given order,
/// that knows it. Sentinels take no password here (Sentinel's own
/// `requirepass` is not supported yet: ARCHITECTURE.md).
fn master_addr(sentinels: &[String], master: &str, tls: Option<&RedisTls>) -> Result<String, RedisError> {
    let mut last_error = None;
    for sentinel in sentinels.iter().take(MAX_SENTINELS) {
        let answer = connect_addr(sentinel, tls, None, REDIS_IO_TIMEOUT).and_then(|mut connection| {
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query::<Option<(String, u16)>>(&mut connection)
                .map_err(|e| RedisError::new(sentinel, "ask sentinel", &e))
        });
        match answer {
            Ok(Some((host, port))) => return Ok(host_port(&host, port)),
            Ok(None) => {
                last_error = Some(RedisError {
                    kind: RedisErrorKind::NotMaster,
                    addr: sentinel.clone(),
                    what: "ask sentinel",
                    detail: format!("this sentinel monitors no master named {master:?}"),
                })
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| RedisError {
        kind: RedisErrorKind::Address,
        addr: String::new(),
        what: "ask sentinel",
        detail: "no sentinel given".to_owned(),
    }))
}

/// An IPv6 host in brackets, so that the address parses back.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `ROLE`'s first word must be "master": a sentinel that has not seen a
/// failover yet names the old master, which may be back as a replica.
fn check_is_master(connection: &mut redis::Connection, addr: &str) -> Result<(), RedisError> {
    let role: Vec<redis::Value> =
        redis::cmd("ROLE").query(connection).map_err(|e| RedisError::new(addr, "check role", &e))?;
    let name = match role.first() {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(redis::Value::SimpleString(text)) => text.clone(),
        _ => String::new(),
    };
    if name == "master" {
        return Ok(());
    }
    Err(RedisError {
        kind: RedisErrorKind::NotMaster,
        addr: addr.to_owned(),
        what: "check role",
        detail: format!("the sentinels name it master but it says it is {name:?}; waiting for the failover"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_lists_and_master_names() {
        let sentinel = |list: &[&str], master: &str| RedisTarget::Sentinel {
            sentinels: list.iter().map(|s| s.to_string()).collect(),
            master: master.to_owned(),
            tls: None,
        };
        let tls = |list: &[&str], master: &str| RedisTarget::Sentinel {
            sentinels: list.iter().map(|s| s.to_string()).collect(),
            master: master.to_owned(),
            tls: Some(RedisTls::default()),
        };
        let cases: &[(&str, &str, Result<RedisTarget, &str>)] = &[
            ("127.0.0.1:26379", "mymaster", Ok(sentinel(&["127.0.0.1:26379"], "mymaster"))),
            ("a:1, b:2 ,c:3", "m", Ok(sentinel(&["a:1", "b:2", "c:3"], "m"))),
            ("[::1]:26379", "m", Ok(sentinel(&["[::1]:26379"], "m"))),
            ("redis://a:1,b:2", "m", Ok(sentinel(&["a:1", "b:2"], "m"))),
            ("rediss://a:1,b:2", "m", Ok(tls(&["a:1", "b:2"], "m"))),
            ("rediss://a:1, rediss://b:2", "m", Ok(tls(&["a:1", "b:2"], "m"))),
            (
                "rediss://a:1,redis://b:2",
                "m",
                Err("--redis-sentinel mixes redis:// and rediss://: TLS is one setting for every sentinel and server"),
            ),
            (
                "a:1,rediss://b:2",
                "m",
                Err("--redis-sentinel mixes redis:// and rediss://: TLS is one setting for every sentinel and server"),
            ),
            ("a:1,a:1", "m", Err("--redis-sentinel names a:1 twice")),
            ("a", "m", Err("--redis-sentinel \"a\": expected HOST:PORT[,HOST:PORT...]")),
            ("a:0", "m", Err("--redis-sentinel \"a:0\": expected HOST:PORT[,HOST:PORT...]")),
            (":1", "m", Err("--redis-sentinel \":1\": expected HOST:PORT[,HOST:PORT...]")),
            ("a:1,", "m", Err("--redis-sentinel \"\": expected HOST:PORT[,HOST:PORT...]")),
            ("a:70000", "m", Err("--redis-sentinel \"a:70000\": expected HOST:PORT[,HOST:PORT...]")),
            (
                "a:1",
                "my master",
                Err("--redis-master \"my master\": expected 1 to 128 printable characters, no spaces"),
            ),
            ("a:1", "", Err("--redis-master \"\": expected 1 to 128 printable characters, no spaces")),
            ("a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1,j:1", "m", Err("--redis-sentinel lists 10 addresses; at most 9")),
        ];
        for (list, master, expected) in cases {
            let expected = expected.clone().map_err(str::to_owned);
            assert_eq!(parse_sentinels(list, master), expected, "{list:?} {master:?}");
        }
    }

    #[test]
    fn addresses_with_and_without_tls() {
        let direct =
            |addr: &str, tls: bool| RedisTarget::Direct { addr: addr.into(), tls: tls.then(RedisTls::default) };
        let bad = |text: &str| Err(format!("--redis-addr {text:?}: expected [redis://|rediss://]HOST:PORT"));
        let in_address =
            "--redis-addr: give the password as --redis-password (@PATH reads it from a file), not in the \
                          address";
        let cases: &[(&str, Result<RedisTarget, String>)] = &[
            ("localhost:6379", Ok(direct("localhost:6379", false))),
            ("redis://r:6379", Ok(direct("r:6379", false))),
            ("redis://r:6379/", Ok(direct("r:6379", false))),
            ("rediss://r.example:6380", Ok(direct("r.example:6380", true))),
            ("rediss://[::1]:6380/", Ok(direct("[::1]:6380", true))),
            ("rediss://r:6380/0", bad("rediss://r:6380/0")),
            ("rediss://", bad("rediss://")),
            ("", bad("")),
            ("http://r:1", bad("http://r:1")),
            ("rediss://:hunter2@r:6380", Err(in_address.to_owned())),
            ("rediss://default:hunter2@r:6380", Err(in_address.to_owned())),
        ];
        for (text, expected) in cases {
            assert_eq!(&parse_redis_addr(text), expected, "{text:?}");
        }
    }

    #[test]
    fn a_ca_file_needs_tls() {
        let mut plain = parse_redis_addr("r:1").unwrap();
        assert_eq!(
            plain.set_ca_file("/ca.pem".into()),
            Err("--redis-ca-file needs TLS: give the address as rediss://HOST:PORT".to_owned())
        );
        let mut tls = parse_sentinels("rediss://a:1", "m").unwrap();
        tls.set_ca_file("/ca.pem".into()).unwrap();
        assert_eq!(tls.tls(), Some(&RedisTls { ca_file: Some("/ca.pem".into()) }));
    }

    #[test]
    fn labels_name_the_server_or_the_sentinels() {
        assert_eq!(parse_redis_addr("r:6379").unwrap().label(), "r:6379");
        assert_eq!(parse_redis_addr("rediss://r:6380").unwrap().label(), "rediss://r:6380");
        let target = parse_sentinels("a:1,b:2", "m").unwrap();
        assert_eq!(target.label(), "master m via sentinels a:1,b:2");
        let target = parse_sentinels("rediss://a:1,b:2", "m").unwrap();
        assert_eq!(target.label(), "master m via sentinels rediss://a:1,b:2");
    }

    #[test]
    fn ipv6_hosts_from_sentinel_keep_their_brackets() {
        assert_eq!(host_port("::1", 6379), "[::1]:6379");
        assert_eq!(host_port("10.0.0.1", 6379), "10.0.0.1:6379");
    }

    #[test]
    fn a_closed_port_is_refused() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let target = RedisTarget::Direct { addr: "127.0.0.1:1".into(), tls: None };
        let error = connect_redis(&target, None, REDIS_IO_TIMEOUT).err();
        assert_eq!(error.as_ref().map(|e| (e.kind, e.what)), Some((RedisErrorKind::Refused, "connect")), "{error:?}");
    }

    #[test]
    fn no_sentinel_reachable_is_a_typed_error_naming_the_last_one() {
        // Port 1 on loopback: nothing listens there, so the connect is refused at once.
        let error = master_addr(&["127.0.0.1:1".to_owned()], "m", None).unwrap_err();
        assert_eq!((error.kind, error.addr.as_str()), (RedisErrorKind::Refused, "127.0.0.1:1"));
    }
}
