//! Reading one flag's value: what was given (flag, then environment), else
//! the table's default, parsed by the flag's kind and held to its bounds.
//! Every error is one line naming the flag and never holds a secret.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::flags::{self, Bounds, Flag, Kind};
use super::{err, ConfigError, Mode};
use crate::pg_url::{PgTls, PgUrl, Roots, Verify};
use crate::secret::Secret;

/// One command's values as given, with its flag table behind them.
pub(super) struct Input {
    table: &'static [Flag],
    given: BTreeMap<&'static str, String>,
    /// Chooses between per-mode defaults; set once `--mode` is read.
    pub mode: Mode,
    /// Put before bound and count errors: `clnode status` always said
    /// "status: " there.
    prefix: &'static str,
}

impl Input {
    pub fn new(table: &'static [Flag], prefix: &'static str) -> Input {
        Input { table, given: BTreeMap::new(), mode: Mode::Leader, prefix }
    }

    /// A later occurrence of a flag replaces an earlier one.
    pub fn set(&mut self, flag: &'static Flag, value: String) {
        self.given.insert(flag.name, value);
    }

    /// Environment variables for the flags the command line left out.
    pub fn fill_from_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        for flag in self.table {
            if let Some(var) = flag.env.filter(|_| !self.given.contains_key(flag.name)) {
                if let Some(value) = env(var) {
                    self.given.insert(flag.name, value);
                }
            }
        }
    }

    // Names here are the program's own, never the user's: a miss is a bug
    // that every validation test would hit, so it is a panic, not an error.
    #[allow(clippy::panic)]
    fn def(&self, name: &str) -> &'static Flag {
        flags::find(self.table, name).unwrap_or_else(|| panic!("--{name} is read but not defined"))
    }

    /// The value given by flag or environment, without the default.
    pub fn given(&self, name: &str) -> Option<&str> {
        self.given.get(name).map(String::as_str)
    }

    /// The given value, else the default for the current mode.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.given(name).or_else(|| self.def(name).default.for_mode(self.mode == Mode::Leader))
    }

    /// A flag with `DefaultValue::Required`.
    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        match (self.text(name), self.def(name).env) {
            (Some(value), _) => Ok(value),
            (None, Some(env)) => err(format!("--{name} is required (or set {env})")),
            (None, None) => err(format!("--{name} is required")),
        }
    }

    /// One of the kind's options (lower-cased when the kind ignores case).
    /// Asking for a flag of another kind is the program's bug (a panic).
    #[allow(clippy::panic)]
    pub fn choice(&self, name: &str) -> Result<String, ConfigError> {
        let Kind::Choice { options, ignore_case } = self.def(name).kind else {
            panic!("--{name} is not a choice");
        };
        let text = self.text(name).unwrap_or_default();
        let text = if ignore_case { text.to_ascii_lowercase() } else { text.to_owned() };
        if options.contains(&text.as_str()) {
            return Ok(text);
        }
        err(format!("--{name} {text:?}: expected {}", options.join(" or ")))
    }

    pub fn http_url(&self, name: &str) -> Result<String, ConfigError> {
        http_url(name, self.text(name).unwrap_or_default())
    }

    /// A comma-separated list of 1 to the kind's `max` http URLs. Asking
    /// for a flag of another kind is the program's bug (a panic).
    #[allow(clippy::panic)]
    pub fn url_list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        let Kind::HttpUrls { max, noun } = self.def(name).kind else {
            panic!("--{name} is not a URL list");
        };
        let urls = self
            .text(name)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| http_url(name, u))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() || urls.len() > max {
            return err(format!("{}--{name} needs between 1 and {max} comma-separated {noun}", self.prefix));
        }
        Ok(urls)
    }

    /// An address the node always listens on (the flag has a default).
    pub fn listen(&self, name: &str) -> Result<SocketAddr, ConfigError> {
        socket_addr(name, self.required(name)?)
    }

    /// `None` when the flag is unset in this mode.
    pub fn listen_if_set(&self, name: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.text(name).map(|text| socket_addr(name, text)).transpose()
    }

    pub fn string(&self, name: &str) -> String {
        self.text(name).unwrap_or_default().to_owned()
    }

    /// Passwords are the operator's choice: no length rule (an empty
    /// environment variable is dropped by the environment filter; an empty
    /// command-line value is used as given); `@PATH` reads one from a file
    /// (now).
    pub fn password(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        self.text(name).map(|value| Secret::password(name, value).map_err(ConfigError)).transpose()
    }

    /// The scheme, and the TLS parameters clnode reads itself (`pg_url.rs`):
    /// a bad `sslmode` or an unreadable `sslrootcert` stops the start.
    pub fn postgres_url(&self, name: &str) -> Result<String, ConfigError> {
        let url = self.text(name).unwrap_or_default();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return err(format!("--{name} must start with postgres:// or postgresql://"));
        }
        let parsed = PgUrl::parse(url).map_err(|e| ConfigError(format!("--{name}: {e}")))?;
        if let PgTls::On { verify: Verify::Chain(Roots::File(path)) | Verify::Full(Roots::File(path)), .. } =
            &parsed.tls
        {
            crate::tls::read_ca_file(path).map_err(|e| ConfigError(format!("--{name}: sslrootcert: {e}")))?;
        }
        Ok(url.to_owned())
    }

    /// A CA file (PEM), read and checked now; `None` when unset.
    pub fn ca_file(&self, name: &str) -> Result<Option<std::path::PathBuf>, ConfigError> {
        let Some(path) = self.text(name) else { return Ok(None) };
        let path = std::path::PathBuf::from(path);
        crate::tls::read_ca_file(&path).map_err(|e| ConfigError(format!("--{name}: {e}")))?;
        Ok(Some(path))
    }

    pub fn duration(&self, name: &str) -> Result<Duration, ConfigError> {
        let value = duration(name, self.text(name).unwrap_or("0"))?;
        self.within(name, u64::try_from(value.as_millis()).unwrap_or(u64::MAX))?;
        Ok(value)
    }

    pub fn count(&self, name: &str) -> Result<u64, ConfigError> {
        let value = number(name, self.text(name).unwrap_or("0"))?;
        self.within(name, value)?;
        Ok(value)
    }

    /// `None` when unset: the feature it bounds is off.
    pub fn count_if_set(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        self.text(name).map(|_| self.count(name)).transpose()
    }

    /// The kind's bounds: out of range is an error, never a silent clamp.
    fn within(&self, name: &str, value: u64) -> Result<(), ConfigError> {
        let Some((bounds, unit)) = self.def(name).kind.bounds() else {
            return Ok(());
        };
        if (bounds.min..=bounds.max).contains(&value) {
            return Ok(());
        }
        let Bounds { why, .. } = bounds;
        let range = bounds.describe(unit).unwrap_or_default();
        match why {
            Some(why) => err(format!("{}--{name} must be {range} ({why})", self.prefix)),
            None => err(format!("{}--{name} must be {range}", self.prefix)),
        }
    }

    /// At least 16 bytes, or `@PATH` (read now); `None` when unset.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        self.text(name).map(|value| Secret::parse(name, value).map_err(ConfigError)).transpose()
    }

    pub fn address(&self, name: &str) -> Result<[u8; 20], ConfigError> {
        let text = self.text(name).unwrap_or_default();
        let bytes = crate::codec::decode_data(text).map_err(|e| ConfigError(format!("--{name} {text:?}: {e}")))?;
        bytes.try_into().map_err(|_| ConfigError(format!("--{name} {text:?}: an address is 20 bytes")))
    }

    pub fn instance_id(&self, name: &str) -> Result<String, ConfigError> {
        let id = self.required(name)?;
        let valid =
            (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return err(format!("--{name} {id:?}: use 1 to 64 characters of letters, digits, '-', '_' or '.'"));
        }
        Ok(id.to_owned())
    }
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
