#!/usr/bin/env bash
# wait-port.sh HOST PORT TIMEOUT_SECONDS — wait until a TCP connect to HOST:PORT succeeds.
# Exit 0 when it does, 1 (with a message) when TIMEOUT_SECONDS (may be fractional) pass first.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 3 ]] || usage_error "HOST PORT TIMEOUT_SECONDS"
host=$1 port=$2 timeout_s=$3
require_port PORT "$port"
[[ $timeout_s =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "TIMEOUT_SECONDS must be a non-negative number, got '$timeout_s'"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
deadline=$(($(now_ms) + $(awk -v t="$timeout_s" 'BEGIN { printf "%d", t * 1000 }')))
while :; do
  # bash's /dev/tcp does the connect; timeout bounds a connect that hangs.
  # shellcheck disable=SC2016  # $0/$1 expand in the child bash
  if timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null; then
    exit 0
  fi
  if (($(now_ms) >= deadline)); then
    echo "wait-port.sh: timed out after ${timeout_s}s waiting for TCP $host:$port" >&2
    exit 1
  fi
  sleep 0.1
done
