#!/usr/bin/env bash
# redis.sh DIR PORT [MASTER_HOST:PORT] — run redis-server in the foreground (exec) on 127.0.0.1:PORT,
# data in DIR; with MASTER_HOST:PORT, as a replica of that master (Sentinel moves it from there).
# Append-only file on (fsync every second), no RDB snapshots: a restart on DIR keeps the keys.
# REDIS_TLS_CERT, REDIS_TLS_KEY and REDIS_TLS_CA (all or none): TLS only, on PORT (--tls-port PORT,
# --port 0: no plaintext listener), with that certificate, key and CA; clients need no certificate
# (--tls-auth-clients no). Debian's redis-server is built with TLS.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 2 || $# -eq 3 ]] || usage_error "DIR PORT [MASTER_HOST:PORT]"
dir=$(abspath "$1") port=$2
require_port PORT "$port"
replica=()
if [[ $# -eq 3 ]]; then
  [[ $3 == *:* ]] || usage_error "DIR PORT [MASTER_HOST:PORT]"
  require_port MASTER_PORT "${3##*:}"
  replica=(--replicaof "${3%:*}" "${3##*:}")
fi
redis_bin=${REDIS_BIN:-$(command -v redis-server || true)}
[[ -n $redis_bin && -x $redis_bin ]] || die "redis-server not found (run scripts/deps.sh redis)"
mkdir -p "$dir"

listen=(--port "$port")
if [[ -n ${REDIS_TLS_CERT:-}${REDIS_TLS_KEY:-}${REDIS_TLS_CA:-} ]]; then
  [[ -f ${REDIS_TLS_CERT:-} && -f ${REDIS_TLS_KEY:-} && -f ${REDIS_TLS_CA:-} ]] ||
    die "REDIS_TLS_CERT, REDIS_TLS_KEY and REDIS_TLS_CA must all name files"
  listen=(--port 0 --tls-port "$port" --tls-cert-file "$REDIS_TLS_CERT" --tls-key-file "$REDIS_TLS_KEY"
    --tls-ca-cert-file "$REDIS_TLS_CA" --tls-auth-clients no)
fi

exec "$redis_bin" \
  "${listen[@]}" \
  --bind 127.0.0.1 \
  --protected-mode yes \
  --dir "$dir" \
  --save "" \
  --appendonly yes \
  --appendfsync everysec \
  --daemonize no \
  --logfile "" \
  "${replica[@]}"
