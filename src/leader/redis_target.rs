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
//! Safety does not rest on this: Redis replication is asynchronous, so a
//! promoted replica may lack the last lease renewal or term. The fence in
//! PostgreSQL keeps one block per height whatever Redis says
//! (ARCHITECTURE.md, "Redis Sentinel").

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
    Direct { addr: String },
    /// The master the sentinels name for `master`.
    Sentinel { sentinels: Vec<String>, master: String },
}

impl RedisTarget {
    /// How errors and logs name this target.
    pub fn label(&self) -> String {
        match self {
            RedisTarget::Direct { addr } => addr.clone(),
            RedisTarget::Sentinel { sentinels, master } => {
                format!("master {master} via sentinels {}", sentinels.join(","))
            }
        }
    }
}

/// `--redis-sentinel HOST:PORT[,HOST:PORT...]` with `--redis-master NAME`:
/// a list of 1 to [`MAX_SENTINELS`] distinct addresses, and a master name
/// Sentinel accepts (no spaces: it is one word of a Sentinel command).
pub fn parse_sentinels(list: &str, master: &str) -> Result<RedisTarget, String> {
    let sentinels: Vec<String> = list.split(',').map(|addr| addr.trim().to_owned()).collect();
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
    Ok(RedisTarget::Sentinel { sentinels, master: master.to_owned() })
}

/// Opens a connection to the target's current master with connect, read
/// and write timeouts.
pub fn connect_redis(
    target: &RedisTarget,
    password: Option<&Secret>,
    read_timeout: Duration,
) -> Result<redis::Connection, RedisError> {
    match target {
        RedisTarget::Direct { addr } => connect_addr(addr, password, read_timeout),
        RedisTarget::Sentinel { sentinels, master } => {
            let addr = master_addr(sentinels, master)?;
            let mut connection = connect_addr(&addr, password, read_timeout)?;
            check_is_master(&mut connection, &addr)?;
            Ok(connection)
        }
    }
}

/// One server at `addr`.
fn connect_addr(
    addr: &str,
    password: Option<&Secret>,
    read_timeout: Duration,
) -> Result<redis::Connection, RedisError> {
    let fail = |what: &'static str, e: redis::RedisError| RedisError::new(addr, what, &e);
    let mut info = format!("redis://{addr}/").into_connection_info().map_err(|e| fail("address", e))?;
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(String::from_utf8_lossy(password.expose()));
        info = info.set_redis_settings(settings);
    }
    let client = redis::Client::open(info).map_err(|e| fail("address", e))?;
    let connection = client.get_connection_with_timeout(REDIS_IO_TIMEOUT).map_err(|e| fail("connect", e))?;
    connection.set_read_timeout(Some(read_timeout)).map_err(|e| fail("connect", e))?;
    connection.set_write_timeout(Some(REDIS_IO_TIMEOUT)).map_err(|e| fail("connect", e))?;
    Ok(connection)
}

/// The master's HOST:PORT from the first sentinel, in the given order,
/// that knows it. Sentinels take no password here (Sentinel's own
/// `requirepass` is not supported yet: ARCHITECTURE.md).
fn master_addr(sentinels: &[String], master: &str) -> Result<String, RedisError> {
    let mut last_error = None;
    for sentinel in sentinels.iter().take(MAX_SENTINELS) {
        let answer = connect_addr(sentinel, None, REDIS_IO_TIMEOUT).and_then(|mut connection| {
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
        };
        let cases: &[(&str, &str, Result<RedisTarget, &str>)] = &[
            ("127.0.0.1:26379", "mymaster", Ok(sentinel(&["127.0.0.1:26379"], "mymaster"))),
            ("a:1, b:2 ,c:3", "m", Ok(sentinel(&["a:1", "b:2", "c:3"], "m"))),
            ("[::1]:26379", "m", Ok(sentinel(&["[::1]:26379"], "m"))),
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
    fn labels_name_the_server_or_the_sentinels() {
        assert_eq!(RedisTarget::Direct { addr: "r:6379".into() }.label(), "r:6379");
        let target = parse_sentinels("a:1,b:2", "m").unwrap();
        assert_eq!(target.label(), "master m via sentinels a:1,b:2");
    }

    #[test]
    fn ipv6_hosts_from_sentinel_keep_their_brackets() {
        assert_eq!(host_port("::1", 6379), "[::1]:6379");
        assert_eq!(host_port("10.0.0.1", 6379), "10.0.0.1:6379");
    }

    #[test]
    fn a_closed_port_is_refused() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let target = RedisTarget::Direct { addr: "127.0.0.1:1".into() };
        let error = connect_redis(&target, None, REDIS_IO_TIMEOUT).err();
        assert_eq!(error.as_ref().map(|e| (e.kind, e.what)), Some((RedisErrorKind::Refused, "connect")), "{error:?}");
    }

    #[test]
    fn no_sentinel_reachable_is_a_typed_error_naming_the_last_one() {
        // Port 1 on loopback: nothing listens there, so the connect is refused at once.
        let error = master_addr(&["127.0.0.1:1".to_owned()], "m").unwrap_err();
        assert_eq!((error.kind, error.addr.as_str()), (RedisErrorKind::Refused, "127.0.0.1:1"));
    }
}
