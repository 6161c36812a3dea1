//! What clnode reads from a PostgreSQL URL before the postgres crate sees
//! it: libpq's `sslmode` and `sslrootcert`, and the password that
//! `--postgres-password` puts in. The crate takes `sslmode=disable|prefer|
//! require` and no CA at all; managed databases ask for `verify-full` with
//! the provider's CA file, so clnode interprets both parameters itself
//! (libpq's meanings) and hands the crate the rest of the URL with the
//! `sslmode` its connect needs. Pure: no file is read here (`tls.rs` reads
//! the CA when it connects).

use std::path::PathBuf;

/// What a connection does about TLS, from `sslmode` and `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTls {
    /// `sslmode=disable`: plaintext.
    Off,
    /// TLS when the server offers it (`prefer`, libpq's default and the
    /// postgres crate's), or always (`required`: `require`, `verify-ca`,
    /// `verify-full`; a server without TLS is refused).
    On { required: bool, verify: Verify },
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Nothing (`prefer`, `require` without `sslrootcert`): encrypted
    /// against eavesdropping, not against a man in the middle, as in libpq.
    Nothing,
    /// The chain up to a trusted root, not the name (`verify-ca`; also
    /// `prefer` and `require` with a `sslrootcert` file, as in libpq).
    Chain(Roots),
    /// The chain and that the certificate names the host connected to
    /// (`verify-full`).
    Full(Roots),
}

/// The roots a certificate chain must end in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// `sslrootcert=PATH`: the PEM certificates in that file, and only them.
    File(PathBuf),
    /// No `sslrootcert`, or `sslrootcert=system`: the Mozilla root program's
    /// certificates compiled into clnode (webpki-roots). libpq would read
    /// `~/.postgresql/root.crt` instead and fail without it.
    Builtin,
}

/// A URL split into what the postgres crate parses and what clnode does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// The URL without `sslrootcert`, its `sslmode` one the crate knows.
    pub client_url: String,
    pub tls: PgTls,
}

/// Parameters of libpq's TLS family that clnode does not implement: a
/// URL naming one is refused rather than connecting with less than asked.
const UNSUPPORTED_SSL_PARAMS: &str = "sslcert, sslkey, sslpassword, sslcrl, sslcrldir, sslsni, sslcertmode, \
                                      ssl_min_protocol_version, ssl_max_protocol_version, sslcompression";

impl PgUrl {
    /// Splits `url` (`postgres://` or `postgresql://`). Errors are one line
    /// and never quote the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<PgUrl, String> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let mut kept: Vec<&str> = Vec::new();
        let (mut mode, mut root_cert) = (None::<String>, None::<String>);
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key).map_err(|e| format!("a parameter name {e}"))?;
            match key.as_str() {
                // A later occurrence replaces an earlier one, as in the crate.
                "sslmode" => mode = Some(percent_decode(value).map_err(|e| format!("sslmode {e}"))?),
                "sslrootcert" => root_cert = Some(percent_decode(value).map_err(|e| format!("sslrootcert {e}"))?),
                "sslnegotiation" => kept.push(pair),
                other if other.starts_with("ssl") => {
                    return Err(format!(
                        "{other} is not supported (clnode reads sslmode and sslrootcert; not {UNSUPPORTED_SSL_PARAMS})"
                    ))
                }
                _ => kept.push(pair),
            }
        }
        let tls = tls_of(mode.as_deref(), root_cert.as_deref())?;
        // The crate's own mode: whether to ask for TLS and whether to insist.
        kept.push(match &tls {
            PgTls::Off => "sslmode=disable",
            PgTls::On { required: false, .. } => "sslmode=prefer",
            PgTls::On { required: true, .. } => "sslmode=require",
        });
        Ok(PgUrl { client_url: format!("{base}?{}", kept.join("&")), tls })
    }
}

/// libpq's rules for the two parameters, with the built-in roots where
/// libpq would read `~/.postgresql/root.crt`.
fn tls_of(mode: Option<&str>, root_cert: Option<&str>) -> Result<PgTls, String> {
    let system = root_cert == Some("system");
    let roots = match root_cert {
        None | Some("system") => Roots::Builtin,
        Some("") => return Err("sslrootcert is empty: give a PEM file or `system`".to_owned()),
        Some(path) => Roots::File(PathBuf::from(path)),
    };
    let file_given = matches!(roots, Roots::File(_));
    // libpq 16: with the system's roots anyone can get a certificate from
    // them, so only the name check makes them mean anything.
    let mode = mode.unwrap_or(if system { "verify-full" } else { "prefer" });
    if system && mode != "verify-full" {
        return Err(format!("sslmode={mode} with sslrootcert=system: use sslmode=verify-full (as libpq requires)"));
    }
    let weak = |required: bool| PgTls::On {
        required,
        verify: if file_given { Verify::Chain(roots.clone()) } else { Verify::Nothing },
    };
    match mode {
        "disable" => Ok(PgTls::Off),
        "prefer" => Ok(weak(false)),
        "require" => Ok(weak(true)),
        "verify-ca" => Ok(PgTls::On { required: true, verify: Verify::Chain(roots) }),
        "verify-full" => Ok(PgTls::On { required: true, verify: Verify::Full(roots) }),
        "allow" => Err("sslmode=allow is not supported: use disable, prefer, require, verify-ca or verify-full".into()),
        other => Err(format!("sslmode {other:?}: expected disable, prefer, require, verify-ca or verify-full")),
    }
}

/// `url` with its password set to `password` (percent-encoded), replacing
/// any there was. The URL must name a user: the postgres crate has no
/// default user to attach a password to.
pub fn with_password(url: &str, password: &[u8]) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    // Where the postgres crate looks for credentials: up to the first '@'.
    let (user, host) = match rest.split_once('@') {
        Some((credentials, host)) => (credentials.split_once(':').map_or(credentials, |(user, _)| user), host),
        None => ("", rest),
    };
    if user.is_empty() {
        return Err("a password needs a user in the URL (postgres://USER@HOST/DB)".to_owned());
    }
    Ok(format!("{scheme}://{user}:{}@{host}", percent_encode(password)))
}

/// Every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` sequences decoded; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("has a malformed %-escape")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "postgres://u:p@db.example:5432/chain";

    fn file(path: &str) -> Roots {
        Roots::File(PathBuf::from(path))
    }

    #[test]
    fn sslmode_and_sslrootcert_as_libpq_reads_them() {
        let on = |required, verify| Ok(PgTls::On { required, verify });
        let cases: &[(&str, Result<PgTls, &str>, &str)] = &[
            // (query, what clnode does, the sslmode handed to the crate)
            ("", on(false, Verify::Nothing), "prefer"),
            ("?sslmode=disable", Ok(PgTls::Off), "disable"),
            ("?sslmode=disable&sslrootcert=/ca.pem", Ok(PgTls::Off), "disable"),
            ("?sslmode=prefer", on(false, Verify::Nothing), "prefer"),
            ("?sslmode=require", on(true, Verify::Nothing), "require"),
            ("?sslmode=require&sslrootcert=/ca.pem", on(true, Verify::Chain(file("/ca.pem"))), "require"),
            ("?sslrootcert=/ca.pem", on(false, Verify::Chain(file("/ca.pem"))), "prefer"),
            ("?sslmode=verify-ca", on(true, Verify::Chain(Roots::Builtin)), "require"),
            ("?sslmode=verify-ca&sslrootcert=/ca.pem", on(true, Verify::Chain(file("/ca.pem"))), "require"),
            ("?sslmode=verify-full", on(true, Verify::Full(Roots::Builtin)), "require"),
            (
                "?sslrootcert=%2Fetc%2Fca%20x.pem&sslmode=verify-full",
                on(true, Verify::Full(file("/etc/ca x.pem"))),
                "require",
            ),
            ("?sslrootcert=system", on(true, Verify::Full(Roots::Builtin)), "require"),
            ("?sslmode=verify-full&sslrootcert=system", on(true, Verify::Full(Roots::Builtin)), "require"),
            ("?sslmode=disable&sslmode=verify-full", on(true, Verify::Full(Roots::Builtin)), "require"),
            (
                "?sslmode=require&sslrootcert=system",
                Err("sslmode=require with sslrootcert=system: use sslmode=verify-full (as libpq requires)"),
                "",
            ),
            (
                "?sslmode=allow",
                Err("sslmode=allow is not supported: use disable, prefer, require, verify-ca or verify-full"),
                "",
            ),
            (
                "?sslmode=VERIFY-FULL",
                Err("sslmode \"VERIFY-FULL\": expected disable, prefer, require, verify-ca or verify-full"),
                "",
            ),
            ("?sslmode=verify-full&sslrootcert=", Err("sslrootcert is empty: give a PEM file or `system`"), ""),
            ("?sslrootcert=%zz", Err("sslrootcert has a malformed %-escape"), ""),
        ];
        for (query, expected, crate_mode) in cases {
            let parsed = PgUrl::parse(&format!("{BASE}{query}"));
            let expected = expected.clone().map_err(str::to_owned);
            assert_eq!(parsed.as_ref().map(|p| p.tls.clone()), expected.as_ref().cloned(), "{query}");
            if let Ok(parsed) = parsed {
                assert_eq!(parsed.client_url, format!("{BASE}?sslmode={crate_mode}"), "{query}");
            }
        }
    }

    #[test]
    fn other_parameters_reach_the_crate_unchanged() {
        let parsed = PgUrl::parse(&format!(
            "{BASE}?application_name=a%20b&sslmode=verify-full&connect_timeout=2&sslrootcert=/ca.pem&sslnegotiation=direct"
        ))
        .unwrap();
        assert_eq!(
            parsed.client_url,
            format!("{BASE}?application_name=a%20b&connect_timeout=2&sslnegotiation=direct&sslmode=require")
        );
        // What the crate is given, it parses.
        assert!(parsed.client_url.parse::<postgres::Config>().is_ok());
    }

    #[test]
    fn unsupported_tls_parameters_are_refused_by_name() {
        for param in ["sslcert=/c.pem", "sslkey=/k.pem", "sslcrl=/crl.pem", "ssl_min_protocol_version=TLSv1.3"] {
            let error = PgUrl::parse(&format!("{BASE}?sslmode=require&{param}")).unwrap_err();
            let name = param.split('=').next().unwrap();
            assert!(error.starts_with(&format!("{name} is not supported")), "{error}");
            assert!(!error.contains("u:p"), "{error}");
        }
    }

    #[test]
    fn a_password_is_set_percent_encoded_and_replaces_the_urls() {
        let cases: &[(&str, &[u8], Result<&str, &str>)] = &[
            ("postgres://clnode@db:5432/chain", b"s3cret", Ok("postgres://clnode:s3cret@db:5432/chain")),
            (
                "postgres://clnode:old@db/chain?sslmode=require",
                b"new",
                Ok("postgres://clnode:new@db/chain?sslmode=require"),
            ),
            ("postgresql://u@db/c", b"p@ss:w/rd?&%", Ok("postgresql://u:p%40ss%3Aw%2Frd%3F%26%25@db/c")),
            ("postgres://db:5432/chain", b"x", Err("a password needs a user in the URL (postgres://USER@HOST/DB)")),
            ("postgres://:old@db/chain", b"x", Err("a password needs a user in the URL (postgres://USER@HOST/DB)")),
        ];
        for (url, password, expected) in cases {
            let got = with_password(url, password);
            assert_eq!(got.as_deref(), expected.map_err(str::to_owned).as_deref(), "{url}");
            if let Ok(url) = got {
                let config: postgres::Config = url.parse().unwrap();
                assert_eq!(config.get_password(), Some(*password), "{url}");
            }
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Ok("a/b c"));
        assert_eq!(percent_decode("%").unwrap_err(), "has a malformed %-escape");
        assert_eq!(percent_decode("%ff").unwrap_err(), "is not UTF-8 once decoded");
    }
}
