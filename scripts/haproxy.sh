#!/usr/bin/env bash
# haproxy.sh CONFIG — check CONFIG, then run haproxy in the foreground (exec) with it.
# The caller writes the config (tests/support/haproxy.rs: loopback ports, a stats socket in the
# test's directory); this only checks it first, so a bad file fails with haproxy's own message
# instead of a process that exits as it starts. No daemon, no master process: the PID you
# spawned is haproxy itself, and its log (`log stderr` in the config) goes to your stderr.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 1 ]] || usage_error "CONFIG"
config=$(abspath "$1")
[[ -f $config ]] || die "no config file $config"
haproxy_bin=${HAPROXY_BIN:-$(command -v haproxy || true)}
[[ -n $haproxy_bin && -x $haproxy_bin ]] || die "haproxy not found (run scripts/deps.sh haproxy)"
# -q would hide the errors too: the check's output goes to stderr, where the errors are.
"$haproxy_bin" -c -f "$config" >&2 || die "haproxy refuses $config (see above)"

exec "$haproxy_bin" -db -f "$config"
