#!/usr/bin/env bash
# redis.sh DIR PORT — run redis-server in the foreground (exec) on 127.0.0.1:PORT, data in DIR.
# Append-only file on (fsync every second), no RDB snapshots: a restart on DIR keeps the keys.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 2 ]] || usage_error "DIR PORT"
dir=$(abspath "$1") port=$2
require_port PORT "$port"
redis_bin=${REDIS_BIN:-$(command -v redis-server || true)}
[[ -n $redis_bin && -x $redis_bin ]] || die "redis-server not found (run scripts/deps.sh redis)"
mkdir -p "$dir"

exec "$redis_bin" \
  --port "$port" \
  --bind 127.0.0.1 \
  --protected-mode yes \
  --dir "$dir" \
  --save "" \
  --appendonly yes \
  --appendfsync everysec \
  --daemonize no \
  --logfile ""
