//! Figures of a run and the report file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::support::*;
use crate::*;

#[derive(Default)]
pub struct Figures {
    /// Signal to the next committed block (by the next leader), per kind.
    pub failover_ms: BTreeMap<String, Vec<i64>>,
    /// Longest time without a commit, per fault kind (max over occurrences).
    pub pause_ms: BTreeMap<String, i64>,
    pub cases: Vec<Value>,
    pub frozen_iterations: u64,
    pub notes: Vec<String>,
}

impl Figures {
    pub fn failover(&mut self, kind: &str, ms: i64) {
        self.failover_ms.entry(kind.to_owned()).or_default().push(ms);
    }

    pub fn pause(&mut self, kind: &str, ms: i64) {
        let entry = self.pause_ms.entry(kind.to_owned()).or_insert(0);
        *entry = (*entry).max(ms);
    }

    pub fn note(&mut self, note: String) {
        eprintln!("NOTE: {note}");
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

pub fn summary(samples: &[i64]) -> Value {
    if samples.is_empty() {
        return json!({"n": 0});
    }
    // Nearest rank (`support::stats`): with a dozen trials p99 is the maximum.
    let rank = |p: f64| percentile(samples, p);
    json!({
        "n": samples.len(),
        "p50_ms": rank(50.0),
        "p99_ms": rank(99.0),
        "max_ms": rank(100.0),
        "min_ms": rank(0.0),
        "samples_ms": samples,
    })
}

/// Merges one test's section into the report file (full and quick runs
/// write different files).
pub fn write_report(section: &str, value: Value) {
    let name = match depth() {
        Depth::Full => "faults-report.json",
        Depth::Quick => "faults-report-quick.json",
    };
    let path = PathBuf::from(REPO).join("target").join(name);
    let mut report: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    report["mode"] = json!(format!("{:?}", depth()).to_lowercase());
    report["command"] = json!(match depth() {
        Depth::Full => format!(
            "CLNODE_FAULTS=full CLNODE_FAULT_SEED={} cargo test --release --test faults -- --test-threads=1 --nocapture",
            base_seed()
        ),
        Depth::Quick => format!("CLNODE_FAULT_SEED={} cargo test --test faults -- --nocapture", base_seed()),
    });
    if let Some(chosen) = chosen_cases() {
        // A run of chosen cases only: say so next to its figures and in the command.
        let chosen = chosen.join(",");
        let command = report["command"].as_str().unwrap_or_default().to_owned();
        report["command"] = json!(format!("CLNODE_FAULT_CASES={chosen} {command}"));
        report["cases_chosen"] = json!(chosen);
    } else if let Some(map) = report.as_object_mut() {
        map.remove("cases_chosen");
    }
    report[section] = value;
    report[section]["seed"] = json!(base_seed());
    report[section]["finished_unix_s"] = json!(now_ms() / 1000);
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();
    eprintln!("figures written to {}", path.display());
}
