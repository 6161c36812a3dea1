//! Process metrics from `/proc/self`: CPU seconds, resident memory, open and
//! allowed file descriptors, start time, under the names every Prometheus
//! client library exports (`process_*`), so the usual dashboards and alerts
//! (restarts, leaks, descriptor exhaustion) work on clnode unchanged.
//!
//! Read at scrape time: the reads are the I/O, the parsing is pure functions
//! over each file's text (table-tested below). No crate: the files are small,
//! stable kernel ABI. A file that cannot be read or parsed costs the series
//! read from it, never the scrape: the series is left out and a comment line says
//! why.

use std::fmt::{self, Write as _};
use std::io;
use std::sync::OnceLock;

/// Clock ticks per second of `/proc/<pid>/stat`'s times (the kernel's
/// USER_HZ). Fixed at 100 by the kernel ABI on every architecture clnode
/// builds for (x86, ARM, RISC-V, POWER, s390), which is why Prometheus' own
/// procfs library hard-codes it too rather than call sysconf(_SC_CLK_TCK).
const USER_HZ: f64 = 100.0;

const STAT: &str = "/proc/self/stat";
const STATUS: &str = "/proc/self/status";
const LIMITS: &str = "/proc/self/limits";
const FD_DIR: &str = "/proc/self/fd";
const SYSTEM_STAT: &str = "/proc/stat";

/// Why one process metric could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcError {
    /// The file (or directory) could not be read.
    Read { file: &'static str, kind: io::ErrorKind },
    /// The file has no such field (a kernel without it, or not Linux).
    Missing { file: &'static str, field: &'static str },
    /// The field is there but is not what the kernel documents.
    Malformed { file: &'static str, field: &'static str },
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcError::Read { file, kind } => write!(f, "{file}: cannot read ({kind})"),
            ProcError::Missing { file, field } => write!(f, "{file}: no {field}"),
            ProcError::Malformed { file, field } => write!(f, "{file}: malformed {field}"),
        }
    }
}

impl std::error::Error for ProcError {}

/// The fields of `/proc/self/stat` the metrics use, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTimes {
    pub user_ticks: u64,
    pub system_ticks: u64,
    /// When the process started, in ticks after boot.
    pub start_ticks: u64,
}

impl StatTimes {
    pub fn cpu_seconds(&self) -> f64 {
        ticks_to_seconds(self.user_ticks.saturating_add(self.system_ticks))
    }
}

#[allow(clippy::cast_precision_loss)] // ticks stay far below 2^52 (a million years of CPU)
fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / USER_HZ
}

/// A soft resource limit as `/proc/self/limits` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

/// `/proc/self/stat`: utime, stime and starttime (fields 14, 15 and 22).
/// The command name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<StatTimes, ProcError> {
    let after_name =
        text.rfind(')').map(|i| &text[i + 1..]).ok_or(ProcError::Malformed { file: STAT, field: "command name" })?;
    // After the name, field 3 (state) is the first.
    let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
    let field = |number: usize, name: &'static str| -> Result<u64, ProcError> {
        let raw = fields.get(number - 3).ok_or(ProcError::Missing { file: STAT, field: name })?;
        raw.parse().map_err(|_| ProcError::Malformed { file: STAT, field: name })
    };
    Ok(StatTimes {
        user_ticks: field(14, "utime")?,
        system_ticks: field(15, "stime")?,
        start_ticks: field(22, "starttime")?,
    })
}

/// `/proc/self/status`: the `VmRSS:` line, in bytes (the kernel writes kB).
pub fn parse_resident_bytes(text: &str) -> Result<u64, ProcError> {
    const FIELD: &str = "VmRSS";
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .ok_or(ProcError::Missing { file: STATUS, field: FIELD })?;
    let mut words = value.split_ascii_whitespace();
    let malformed = ProcError::Malformed { file: STATUS, field: FIELD };
    let kib: u64 = words.next().and_then(|n| n.parse().ok()).ok_or(malformed.clone())?;
    if words.next() != Some("kB") || words.next().is_some() {
        return Err(malformed);
    }
    kib.checked_mul(1024).ok_or(malformed)
}

/// `/proc/self/limits`: the soft limit of `Max open files`.
pub fn parse_max_open_files(text: &str) -> Result<Limit, ProcError> {
    const FIELD: &str = "Max open files";
    let rest = text
        .lines()
        .find_map(|line| line.strip_prefix(FIELD))
        .ok_or(ProcError::Missing { file: LIMITS, field: FIELD })?;
    match rest.split_ascii_whitespace().next() {
        Some("unlimited") => Ok(Limit::Unlimited),
        Some(soft) => soft.parse().map(Limit::Value).map_err(|_| ProcError::Malformed { file: LIMITS, field: FIELD }),
        None => Err(ProcError::Malformed { file: LIMITS, field: FIELD }),
    }
}

/// `/proc/stat`: `btime`, the boot time in seconds since the Unix epoch.
pub fn parse_boot_time(text: &str) -> Result<u64, ProcError> {
    const FIELD: &str = "btime";
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .ok_or(ProcError::Missing { file: SYSTEM_STAT, field: FIELD })?;
    value.trim().parse().map_err(|_| ProcError::Malformed { file: SYSTEM_STAT, field: FIELD })
}

/// The process start time in seconds since the Unix epoch.
pub fn start_time_seconds(boot_time: u64, stat: &StatTimes) -> f64 {
    #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit in f64's 52 bits
    let boot = boot_time as f64;
    boot + ticks_to_seconds(stat.start_ticks)
}

fn read(file: &'static str) -> Result<String, ProcError> {
    std::fs::read_to_string(file).map_err(|e| ProcError::Read { file, kind: e.kind() })
}

/// Entries of `/proc/self/fd` (the directory read's own descriptor
/// included, as in every Prometheus client).
fn count_open_fds() -> Result<u64, ProcError> {
    let entries = std::fs::read_dir(FD_DIR).map_err(|e| ProcError::Read { file: FD_DIR, kind: e.kind() })?;
    let mut count = 0u64;
    for entry in entries {
        entry.map_err(|e| ProcError::Read { file: FD_DIR, kind: e.kind() })?;
        count += 1;
    }
    Ok(count)
}

/// One series: HELP and TYPE always, the sample when it was read, else a
/// comment saying why not.
fn render_one(out: &mut String, name: &str, kind: &str, help: &str, value: Result<String, ProcError>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    match value {
        Ok(value) => {
            let _ = writeln!(out, "{name} {value}");
        }
        Err(e) => {
            let _ = writeln!(out, "# {name} unavailable: {e}");
        }
    }
}

/// Appends the `process_*` series, read now.
pub fn render(out: &mut String) {
    let stat = read(STAT).and_then(|text| parse_stat(&text));
    render_one(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        stat.clone().map(|s| s.cpu_seconds().to_string()),
    );
    render_one(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        read(STATUS).and_then(|text| parse_resident_bytes(&text)).map(|b| b.to_string()),
    );
    render_one(
        out,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        count_open_fds().map(|n| n.to_string()),
    );
    render_one(
        out,
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors (the soft limit).",
        read(LIMITS).and_then(|text| parse_max_open_files(&text)).map(|limit| match limit {
            Limit::Value(n) => n.to_string(),
            Limit::Unlimited => "+Inf".to_owned(),
        }),
    );
    render_one(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        process_start_time(stat).map(|t| format!("{t:.2}")),
    );
}

/// The start time, read once: the kernel derives `btime` from the wall
/// clock minus the uptime, so it can move by a second when NTP adjusts the
/// clock, and a start time that changed without a restart would count as
/// one (`changes(process_start_time_seconds[..])`).
fn process_start_time(stat: Result<StatTimes, ProcError>) -> Result<f64, ProcError> {
    static START: OnceLock<f64> = OnceLock::new();
    if let Some(start) = START.get() {
        return Ok(*start);
    }
    let start = start_time_seconds(read(SYSTEM_STAT).and_then(|text| parse_boot_time(&text))?, &stat?);
    Ok(*START.get_or_init(|| start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_LINE: &str = "11643 (cat) R 11640 11640 4617 0 -1 4194304 102 0 0 0 250 75 0 0 20 0 1 0 33778 \
                             3133440 389 18446744073709551615 94896739721216 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let times = StatTimes { user_ticks: 250, system_ticks: 75, start_ticks: 33778 };
        let cases: [(&str, Result<StatTimes, ProcError>); 6] = [
            (STAT_LINE, Ok(times)),
            // A command name with spaces and parentheses does not shift the fields.
            (&STAT_LINE.replace("(cat)", "(a) b (c))"), Ok(times)),
            ("", Err(ProcError::Malformed { file: STAT, field: "command name" })),
            ("1 (x) R 0 0", Err(ProcError::Missing { file: STAT, field: "utime" })),
            (&STAT_LINE.replace(" 250 ", " -1 "), Err(ProcError::Malformed { file: STAT, field: "utime" })),
            (&STAT_LINE.replace(" 33778 ", " x "), Err(ProcError::Malformed { file: STAT, field: "starttime" })),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_stat(text), expected, "{text:?}");
        }
        assert!((times.cpu_seconds() - 3.25).abs() < 1e-9);
    }

    #[test]
    fn resident_memory_is_vm_rss_in_bytes() {
        let malformed = Err(ProcError::Malformed { file: STATUS, field: "VmRSS" });
        let cases = [
            ("Name:\tclnode\nVmHWM:\t  9000 kB\nVmRSS:\t    2180 kB\nThreads:\t50\n", Ok(2180 * 1024)),
            ("VmRSS:\t0 kB\n", Ok(0)),
            ("Name:\tkthreadd\n", Err(ProcError::Missing { file: STATUS, field: "VmRSS" })),
            ("VmRSS:\t2180 MB\n", malformed.clone()),
            ("VmRSS:\t2180\n", malformed.clone()),
            ("VmRSS:\tlots kB\n", malformed.clone()),
            ("VmRSS:\t18446744073709551615 kB\n", malformed),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_resident_bytes(text), expected, "{text:?}");
        }
    }

    #[test]
    fn max_fds_is_the_soft_limit_of_open_files() {
        let header = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n";
        let cases = [
            (
                format!("{header}Max open files            20000                524288               files     \n"),
                Ok(Limit::Value(20000)),
            ),
            (
                format!("{header}Max open files            unlimited            unlimited            files     \n"),
                Ok(Limit::Unlimited),
            ),
            (header.to_owned(), Err(ProcError::Missing { file: LIMITS, field: "Max open files" })),
            (
                format!("{header}Max open files            many                 many                 files\n"),
                Err(ProcError::Malformed { file: LIMITS, field: "Max open files" }),
            ),
            (format!("{header}Max open files\n"), Err(ProcError::Malformed { file: LIMITS, field: "Max open files" })),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_max_open_files(&text), expected, "{text:?}");
        }
    }

    #[test]
    fn start_time_is_boot_time_plus_start_ticks() {
        let cases = [
            ("cpu  1 2 3\nintr 5\nbtime 1796211133\nprocesses 9\n", Ok(1_796_211_133)),
            ("cpu  1 2 3\n", Err(ProcError::Missing { file: SYSTEM_STAT, field: "btime" })),
            ("btime soon\n", Err(ProcError::Malformed { file: SYSTEM_STAT, field: "btime" })),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_boot_time(text), expected, "{text:?}");
        }
        let stat = StatTimes { user_ticks: 0, system_ticks: 0, start_ticks: 33778 };
        assert!((start_time_seconds(1_796_211_133, &stat) - 1_796_211_470.78).abs() < 1e-3);
    }

    #[test]
    fn render_reads_this_process() {
        let mut out = String::new();
        render(&mut out);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let line =
                out.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}:\n{out}"));
            let value: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
            assert!(value >= 0.0, "{line}");
        }
        assert!(!out.contains("unavailable"), "{out}");
    }
}
