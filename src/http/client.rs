//! The ureq agent behind every outgoing HTTP call (Engine API, sync pages,
//! `clnode status`).
//!
//! ureq's default resolver spawns a thread for every request that has a
//! timeout, even on a pooled keep-alive connection, so that DNS can be
//! abandoned. Every call clnode makes has a timeout, and a leader makes a
//! few hundred calls a second, so that was a thread per call (measured: the
//! idle leader's largest cost in a `perf` profile was thread creation). This
//! resolver answers IP literals directly and caches other names for
//! [`RESOLVED_NAME_TTL`]; only a cache miss goes to ureq's resolver.
//! *Never* holds its lock across a lookup.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// A name is looked up again after this long (an operator may move a host).
pub const RESOLVED_NAME_TTL: Duration = Duration::from_secs(60);
/// Names remembered; clnode talks to a handful of hosts.
const MAX_CACHED_NAMES: usize = 64;

/// An agent with `connect_timeout` and up to `idle_connections` kept open
/// per host; per-request timeouts are set on each request.
pub fn agent(connect_timeout: Duration, idle_connections: usize) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect_timeout))
        .max_idle_connections_per_host(idle_connections)
        .max_idle_age(Duration::from_secs(30))
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::default(), ThreadlessResolver::default())
}

#[derive(Debug, Default)]
struct ThreadlessResolver {
    names: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for ThreadlessResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        if let Some(ip) = ip_literal(host) {
            let mut addrs = self.empty();
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        let key = format!("{host}:{port}");
        let lock = || self.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, addrs)) = lock().get(&key) {
            if at.elapsed() < RESOLVED_NAME_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        let mut names = lock();
        if names.len() >= MAX_CACHED_NAMES {
            names.clear();
        }
        names.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// `127.0.0.1` or `[::1]` as an address; `None` for a name.
fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_answered_without_a_lookup_and_names_are_cached() {
        let resolver = ThreadlessResolver::default();
        let config = Config::default();
        let timeout = NextTimeout::default();
        let v4: Uri = "http://127.0.0.1:8551/".parse().unwrap();
        let addrs = resolver.resolve(&v4, &config, timeout).unwrap();
        assert_eq!(addrs.iter().copied().collect::<Vec<_>>(), vec!["127.0.0.1:8551".parse::<SocketAddr>().unwrap()]);
        let v6: Uri = "http://[::1]/x".parse().unwrap();
        let addrs = resolver.resolve(&v6, &config, timeout).unwrap();
        assert_eq!(addrs.iter().copied().collect::<Vec<_>>(), vec!["[::1]:80".parse::<SocketAddr>().unwrap()]);
        assert!(resolver.names.lock().unwrap().is_empty(), "literals are not cached");
        let name: Uri = "http://localhost:8551/".parse().unwrap();
        let first = resolver.resolve(&name, &config, timeout).unwrap();
        assert!(first.iter().all(|a| a.ip().is_loopback() && a.port() == 8551), "{first:?}");
        assert!(resolver.names.lock().unwrap().contains_key("localhost:8551"));
        assert_eq!(resolver.resolve(&name, &config, timeout).unwrap(), first);
    }
}
