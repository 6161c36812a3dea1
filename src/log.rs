//! Log lines on stderr: `<UTC time> <LEVEL> <instance> <message>`.
//!
//! One line per event, so operators can grep and ship them as they are.
//! Messages never contain secrets: the types that hold them do not print.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static INSTANCE: OnceLock<String> = OnceLock::new();
static DEBUG: AtomicBool = AtomicBool::new(false);

/// `Info` is the default; `Debug` adds a line per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Debug,
}

pub fn set_level(level: Level) {
    DEBUG.store(level == Level::Debug, Ordering::Relaxed);
}

/// Callers check this before formatting a per-block line, so that the
/// default level costs one atomic load per block.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

pub fn debug(message: &str) {
    if debug_enabled() {
        write("DEBUG", message);
    }
}

/// Names this process in every line; set once at start.
pub fn set_instance(instance_id: &str) {
    let _ = INSTANCE.set(instance_id.to_owned());
}

pub fn info(message: &str) {
    write("INFO", message);
}

pub fn warn(message: &str) {
    write("WARN", message);
}

pub fn error(message: &str) {
    write("ERROR", message);
}

fn write(level: &str, message: &str) {
    let instance = INSTANCE.get().map(String::as_str).unwrap_or("clnode");
    let line = format!("{} {level} {instance} {message}\n", utc_now());
    // A failed write to stderr has nowhere better to go.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
    fn formats_known_instants() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_utc(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(format_utc(1_795_574_096, 999_999), "2026-11-25T02:34:56.999999Z");
    }
}
