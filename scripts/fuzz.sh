#!/usr/bin/env bash
# fuzz.sh SECONDS — runs every cargo-fuzz target for SECONDS each, from the
# committed seeds (fuzz/seeds/<target>) plus the local corpus. Installs
# cargo-fuzz if missing. Fuzzing needs unstable rustc flags; RUSTC_BOOTSTRAP
# enables them on the stable toolchain (no nightly is reachable here), and
# the sanitizer is off for the same reason (libFuzzer's coverage still runs).
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number" >&2; exit 2; }
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz 0.13.2"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none
for target in request_parsing record_decoding engine_answers seed_records; do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run -s none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E "^Done|stat::number_of_executed_units|ERROR|panicked|SUMMARY" || true
  if compgen -G "fuzz/artifacts/$target/crash-*" >/dev/null; then
    echo "fuzz: $target crashed; inputs in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
