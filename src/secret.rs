//! Shared secrets other than the Engine API's: the sync API bearer token,
//! the record-signing key, the admin token and the Redis and PostgreSQL
//! passwords; and `read_capped`, the one bounded read of a small file
//! (secrets, keys, CA bundles). Never printed; compared in constant time.

use std::fmt;
use std::path::Path;

/// A secret byte string. Debug and Display are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Shortest secret accepted: shorter ones are guessable.
pub const MIN_SECRET_LEN_BYTES: usize = 16;
/// A secret file larger than this is not a secret file.
const MAX_SECRET_FILE_BYTES: u64 = 4096;

impl Secret {
    /// `@PATH` reads the secret from a file (trailing whitespace removed);
    /// anything else is the secret itself.
    pub fn parse(flag: &str, value: &str) -> Result<Secret, String> {
        let bytes = match value.strip_prefix('@') {
            Some(path) => read_secret_file(Path::new(path)).map_err(|e| format!("--{flag}: {e}"))?,
            None => value.as_bytes().to_vec(),
        };
        if bytes.len() < MIN_SECRET_LEN_BYTES {
            return Err(format!("--{flag}: a secret needs at least {MIN_SECRET_LEN_BYTES} bytes"));
        }
        Ok(Secret(bytes))
    }

    /// A password (Redis, PostgreSQL): any length, the operator's or the
    /// provider's. `@PATH` reads it from a file, without its trailing line
    /// break only (a password may end in a space); an empty one is refused.
    pub fn password(flag: &str, value: &str) -> Result<Secret, String> {
        let Some(path) = value.strip_prefix('@') else {
            return Ok(Secret(value.as_bytes().to_vec()));
        };
        let mut bytes = read_file(Path::new(path)).map_err(|e| format!("--{flag}: {e}"))?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(format!("--{flag}: {path} holds no password"));
        }
        Ok(Secret(bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison with presented bytes (a token from a request).
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.0, presented)
    }
}

fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    let text = read_file(path)?;
    let end = text.iter().rposition(|b| !b.is_ascii_whitespace()).map(|i| i + 1).unwrap_or(0);
    Ok(text[..end].to_vec())
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    read_capped(path, MAX_SECRET_FILE_BYTES).map_err(|e| match e {
        CappedReadError::Io(e) => format!("cannot read {}: {e}", path.display()),
        CappedReadError::TooLarge => {
            format!("{} is more than {MAX_SECRET_FILE_BYTES} bytes, larger than any secret", path.display())
        }
    })
}

/// Why [`read_capped`] gave nothing.
#[derive(Debug)]
pub enum CappedReadError {
    Io(std::io::Error),
    /// More than the cap: the file is not what it was named as.
    TooLarge,
}

/// A whole small file (a secret, a key, a CA bundle), reading at most
/// `max_bytes` + 1 whatever the file claims to be: a FIFO, a device or a
/// file that grows after `metadata` would otherwise be read without end.
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, CappedReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(CappedReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(CappedReadError::Io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max_bytes {
        return Err(CappedReadError::TooLarge);
    }
    Ok(bytes)
}

/// A whole small text file (a JWT secret, a signing key) read with
/// [`read_capped`]; the error is the reason alone, for the caller to put in
/// its own error with the path ("file is more than N bytes, larger than any
/// WHAT", the I/O error, or "not UTF-8 text").
pub fn read_capped_text(path: &Path, max_bytes: u64, what: &str) -> Result<String, String> {
    let bytes = read_capped(path, max_bytes).map_err(|e| match e {
        CappedReadError::Io(e) => e.to_string(),
        CappedReadError::TooLarge => format!("file is more than {max_bytes} bytes, larger than any {what}"),
    })?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Equal-length inputs are compared without an early exit; lengths are not
/// secret (the expected token's length is fixed by the operator).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= x ^ y;
    }
    // black_box keeps the optimiser from short-circuiting the loop.
    std::hint::black_box(difference) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Warns (once, at start) when a secret file can be read by other users.
pub fn warn_if_world_readable(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            crate::log::warn(&format!(
                "{what} {} is readable by group or others (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reads_stop_at_the_cap_whatever_the_file_claims() {
        // A device that never ends and says it is empty.
        assert!(matches!(read_capped(Path::new("/dev/zero"), 16), Err(CappedReadError::TooLarge)));
        let path = std::env::temp_dir().join(format!("clnode-capped-read-{}", std::process::id()));
        std::fs::write(&path, b"0123456789abcdef").unwrap();
        assert_eq!(read_capped(&path, 16).unwrap(), b"0123456789abcdef");
        assert!(matches!(read_capped(&path, 15), Err(CappedReadError::TooLarge)));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read_capped(&path, 16), Err(CappedReadError::Io(_))));
    }

    #[test]
    fn comparison_and_redaction() {
        let secret = Secret::parse("api-token", "correct horse battery staple").unwrap();
        assert!(secret.matches(b"correct horse battery staple"));
        assert!(!secret.matches(b"correct horse battery stapler"));
        assert!(!secret.matches(b"Correct horse battery staple"));
        assert!(!format!("{secret:?} {secret}").contains("horse"));
        assert!(Secret::parse("api-token", "short").unwrap_err().contains("at least"));
    }

    #[test]
    fn secrets_can_come_from_files() {
        let path = std::env::temp_dir().join(format!("clnode-secret-test-{}", std::process::id()));
        std::fs::write(&path, "a-secret-from-a-file-0123\n").unwrap();
        let secret = Secret::parse("sync-secret", &format!("@{}", path.display())).unwrap();
        assert!(secret.matches(b"a-secret-from-a-file-0123"));
        std::fs::remove_file(&path).unwrap();
        let error = Secret::parse("sync-secret", &format!("@{}", path.display())).unwrap_err();
        assert!(error.starts_with("--sync-secret: cannot read"), "{error}");
    }

    #[test]
    fn passwords_come_as_given_or_from_files_without_their_line_break() {
        let path = std::env::temp_dir().join(format!("clnode-password-test-{}", std::process::id()));
        let file = format!("@{}", path.display());
        // (the file, the password read or the end of the error)
        type Case = (&'static [u8], Result<&'static [u8], &'static str>);
        let cases: &[Case] = &[
            (b"pw\n", Ok(b"pw")),
            (b"pw\r\n", Ok(b"pw")),
            (b"pw", Ok(b"pw")),
            (b"pw \n", Ok(b"pw ")),
            (b"p w\n\n", Ok(b"p w\n")),
            (b"\n", Err("holds no password")),
            (b"", Err("holds no password")),
        ];
        for (content, expected) in cases {
            std::fs::write(&path, content).unwrap();
            let got = Secret::password("redis-password", &file);
            match expected {
                Ok(bytes) => assert_eq!(got.map(|s| s.expose().to_vec()), Ok(bytes.to_vec()), "{content:?}"),
                Err(end) => {
                    let error = got.unwrap_err();
                    assert!(error.starts_with("--redis-password: ") && error.ends_with(end), "{error}");
                }
            }
        }
        std::fs::remove_file(&path).unwrap();
        let error = Secret::password("postgres-password", &file).unwrap_err();
        assert!(error.starts_with("--postgres-password: cannot read"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        // Short and literal values are the operator's choice.
        assert_eq!(Secret::password("redis-password", "pw").unwrap().expose(), b"pw");
        assert!(!format!("{:?}", Secret::password("redis-password", "hunter2").unwrap()).contains("hunter2"));
    }
}
