#!/usr/bin/env bash
# etcd.sh DIR CLIENT_PORT PEER_PORT — run a one-member etcd (Debian etcd-server, 3.4) in the
# foreground (exec) on 127.0.0.1: clients on CLIENT_PORT, peers on PEER_PORT, data in DIR/data.
# Patroni's store of the PostgreSQL leader key (scripts/patroni.sh), which reaches it through the
# v2 API (--enable-v2): Debian's Patroni 3.0.2 with the v3 API can get stuck on a stale cache
# after a failover, logging "Synchronous replication key updated by someone else" every loop and
# never naming a synchronous standby again (patroni/patroni#2779, fixed in Patroni 3.1.0).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 3 ]] || usage_error "DIR CLIENT_PORT PEER_PORT"
dir=$(abspath "$1") client_port=$2 peer_port=$3
require_port CLIENT_PORT "$client_port"
require_port PEER_PORT "$peer_port"
etcd_bin=$(command -v etcd || true)
[[ -n $etcd_bin ]] || die "etcd not found (run scripts/deps.sh patroni)"
mkdir -p "$dir"
exec "$etcd_bin" \
  --name clnode-etcd \
  --data-dir "$dir/data" \
  --listen-client-urls "http://127.0.0.1:$client_port" \
  --advertise-client-urls "http://127.0.0.1:$client_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "clnode-etcd=http://127.0.0.1:$peer_port" \
  --initial-cluster-state new \
  --enable-v2=true \
  --log-level warn
