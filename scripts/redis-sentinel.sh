#!/usr/bin/env bash
# redis-sentinel.sh DIR PORT MASTER_NAME MASTER_HOST:PORT [QUORUM] — run one Redis Sentinel in the
# foreground (exec) on 127.0.0.1:PORT, monitoring MASTER_NAME at MASTER_HOST:PORT (QUORUM sentinels,
# default 2, must agree it is down). Its config, which Sentinel rewrites as it learns the replicas,
# the other sentinels and failovers, is DIR/sentinel.conf: written only when absent, so a restarted
# sentinel keeps what it knew. Timings (milliseconds) from the environment:
#   SENTINEL_DOWN_AFTER_MS     1000  no answer for this long: the master is subjectively down
#   SENTINEL_FAILOVER_TIMEOUT_MS 5000  a failover not done in this time is retried (by another sentinel)
# REDIS_TLS_CERT, REDIS_TLS_KEY and REDIS_TLS_CA (all or none, as for redis.sh): TLS only on PORT, and
# TLS to the servers it monitors (tls-replication yes); taken when the config is first written.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 4 || $# -eq 5 ]] || usage_error "DIR PORT MASTER_NAME MASTER_HOST:PORT [QUORUM]"
dir=$(abspath "$1") port=$2 name=$3 master=$4 quorum=${5:-2}
require_port PORT "$port"
[[ $master == *:* ]] || usage_error "DIR PORT MASTER_NAME MASTER_HOST:PORT [QUORUM]"
require_port MASTER_PORT "${master##*:}"
[[ $name =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "MASTER_NAME $name: 1 to 64 letters, digits, '.', '_' or '-'"
[[ $quorum =~ ^[1-9]$ ]] || die "QUORUM $quorum: 1 to 9"
down_after=${SENTINEL_DOWN_AFTER_MS:-1000} failover_timeout=${SENTINEL_FAILOVER_TIMEOUT_MS:-5000}
[[ $down_after =~ ^[0-9]+$ && $failover_timeout =~ ^[0-9]+$ ]] || die "SENTINEL_*_MS must be whole milliseconds"
sentinel_bin=${REDIS_SENTINEL_BIN:-$(command -v redis-sentinel || true)}
[[ -n $sentinel_bin && -x $sentinel_bin ]] || die "redis-sentinel not found (run scripts/deps.sh sentinel)"
listen="port $port"
if [[ -n ${REDIS_TLS_CERT:-}${REDIS_TLS_KEY:-}${REDIS_TLS_CA:-} ]]; then
  [[ -f ${REDIS_TLS_CERT:-} && -f ${REDIS_TLS_KEY:-} && -f ${REDIS_TLS_CA:-} ]] ||
    die "REDIS_TLS_CERT, REDIS_TLS_KEY and REDIS_TLS_CA must all name files"
  listen="port 0
tls-port $port
tls-cert-file $REDIS_TLS_CERT
tls-key-file $REDIS_TLS_KEY
tls-ca-cert-file $REDIS_TLS_CA
tls-auth-clients no
tls-replication yes"
fi
mkdir -p "$dir"
conf=$dir/sentinel.conf
if [[ ! -f $conf ]]; then
  cat >"$conf" <<CONF
$listen
bind 127.0.0.1
protected-mode yes
daemonize no
logfile ""
dir $dir
sentinel monitor $name ${master%:*} ${master##*:} $quorum
sentinel down-after-milliseconds $name $down_after
sentinel failover-timeout $name $failover_timeout
sentinel parallel-syncs $name 1
CONF
fi
exec "$sentinel_bin" "$conf"
