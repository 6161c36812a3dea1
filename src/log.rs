//! Log lines on stderr, one per event, so operators can grep and ship them
//! as they are. Two formats (`--log-format`):
//!
//! - text: `<UTC time> <LEVEL> <instance> <message>`;
//! - json: one object per line, `{"time", "level", "instance", "component",
//!   "message", "fields"}`, for log shippers.
//!
//! The component is the message's `component: ` prefix (the convention every
//! call site follows: `lease: acquired term 3`), or `node` without one.
//! `fields` holds structured values a call site gives (`*_with`), e.g. each
//! step's time of a block; the text format shows the message only, which
//! already says them. Levels (`--log-level`): error < warn < info < debug.
//! Messages never contain secrets: the types that hold them do not print.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

static INSTANCE: OnceLock<String> = OnceLock::new();
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

/// How much is logged: each level includes the ones before it. `Info` is
/// the default; `Debug` adds a line per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// How a line is written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn set_format(format: Format) {
    JSON.store(u8::from(format == Format::Json), Ordering::Relaxed);
}

fn format() -> Format {
    if JSON.load(Ordering::Relaxed) == 1 {
        Format::Json
    } else {
        Format::Text
    }
}

fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Callers check this before formatting a per-block line, so that the
/// default level costs one atomic load per block.
pub fn debug_enabled() -> bool {
    enabled(Level::Debug)
}

/// Names this process in every line; set once at start.
pub fn set_instance(instance_id: &str) {
    let _ = INSTANCE.set(instance_id.to_owned());
}

pub fn debug(message: &str) {
    write(Level::Debug, message, &[]);
}

/// A debug line with structured values (the JSON format's `fields`).
pub fn debug_with(message: &str, fields: &[(&str, Value)]) {
    write(Level::Debug, message, fields);
}

pub fn info(message: &str) {
    write(Level::Info, message, &[]);
}

pub fn warn(message: &str) {
    write(Level::Warn, message, &[]);
}

pub fn error(message: &str) {
    write(Level::Error, message, &[]);
}

/// The last line of a node that stops on an error that will not heal:
/// `clnode: <message>` in the text format (what the binary has always
/// printed), an error object with `"fatal": true` in the JSON format.
pub fn fatal(message: &str) {
    let line = match format() {
        Format::Text => format!("clnode: {message}\n"),
        Format::Json => render_json(&utc_now(), Level::Error, instance(), message, &[("fatal", json!(true))]),
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn instance() -> &'static str {
    INSTANCE.get().map(String::as_str).unwrap_or("clnode")
}

fn write(level: Level, message: &str, fields: &[(&str, Value)]) {
    if !enabled(level) {
        return;
    }
    let line = match format() {
        Format::Text => render_text(&utc_now(), level, instance(), message),
        Format::Json => render_json(&utc_now(), level, instance(), message, fields),
    };
    // A failed write to stderr has nowhere better to go.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn render_text(time: &str, level: Level, instance: &str, message: &str) -> String {
    format!("{time} {} {instance} {message}\n", level.name().to_uppercase())
}

/// One JSON object and a newline; serde_json escapes quotes, backslashes
/// and control characters, so a message can never split the line.
fn render_json(time: &str, level: Level, instance: &str, message: &str, fields: &[(&str, Value)]) -> String {
    let (component, message) = split_component(message);
    let fields: Map<String, Value> = fields.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect();
    let object = json!({
        "time": time,
        "level": level.name(),
        "instance": instance,
        "component": component,
        "message": message,
        "fields": fields,
    });
    format!("{object}\n")
}

/// The `component: ` prefix of a message (lower-case letters, digits, '-'
/// or spaces, at most 24 characters), and the rest; `node` when there is none.
fn split_component(message: &str) -> (&str, &str) {
    let Some((prefix, rest)) = message.split_once(": ") else {
        return ("node", message);
    };
    let is_name = !prefix.is_empty()
        && prefix.len() <= 24
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b' ');
    if is_name {
        (prefix, rest)
    } else {
        ("node", message)
    }
}

/// Milliseconds with fractions, for per-block debug lines.
pub fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// RFC 3339 UTC with microseconds (per-block lines are milliseconds
/// apart), without a date library.
pub fn utc_now() -> String {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format_utc(since_epoch.as_secs(), since_epoch.subsec_micros())
}

fn format_utc(seconds: u64, micros: u32) -> String {
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        (second_of_day % 3600) / 60,
        second_of_day % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_every_field() {
        let line = render_json(
            "2026-11-25T02:34:56.000001Z",
            Level::Warn,
            "leader-1",
            "lease: Redis renew (127.0.0.1:6379): timed out",
            &[("term", json!(7)), ("hash", json!("0xab"))],
        );
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        let value: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(
            value,
            json!({
                "time": "2026-11-25T02:34:56.000001Z",
                "level": "warn",
                "instance": "leader-1",
                "component": "lease",
                "message": "Redis renew (127.0.0.1:6379): timed out",
                "fields": {"term": 7, "hash": "0xab"},
            })
        );
    }

    #[test]
    fn json_escapes_what_would_break_the_line() {
        let message = "member: refused \"page\"\\ at\nblock 5\t\u{1b}[31m é";
        let line = render_json("t", Level::Error, "m-1", message, &[]);
        assert_eq!(line.matches('\n').count(), 1, "a newline in a message stays inside the string: {line:?}");
        let value: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(value["message"], "refused \"page\"\\ at\nblock 5\t\u{1b}[31m é");
        assert_eq!(value["component"], "member");
        assert_eq!(value["fields"], json!({}));
    }

    #[test]
    fn the_component_is_a_short_lower_case_prefix_or_node() {
        let cases = [
            ("lease: acquired term 3", ("lease", "acquired term 3")),
            ("startup: chain 1337, genesis 0x12", ("startup", "chain 1337, genesis 0x12")),
            ("stopped", ("node", "stopped")),
            // Not a component: capitals, a URL, a long sentence.
            (
                "PostgreSQL connect (postgres://h/db): refused",
                ("node", "PostgreSQL connect (postgres://h/db): refused"),
            ),
            ("see http://h: x", ("node", "see http://h: x")),
            (": empty", ("node", ": empty")),
        ];
        for (message, expected) in cases {
            assert_eq!(split_component(message), expected, "{message}");
        }
    }

    #[test]
    fn text_lines_keep_their_shape() {
        assert_eq!(render_text("T", Level::Info, "leader-1", "lease: x"), "T INFO leader-1 lease: x\n");
        assert_eq!(render_text("T", Level::Debug, "m", "y"), "T DEBUG m y\n");
    }

    #[test]
    fn levels_include_the_more_severe_ones() {
        assert!(Level::Error < Level::Warn && Level::Warn < Level::Info && Level::Info < Level::Debug);
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_utc(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(format_utc(1_795_574_096, 999_999), "2026-11-25T02:34:56.999999Z");
    }
}
