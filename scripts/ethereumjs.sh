#!/usr/bin/env bash
# ethereumjs.sh DATADIR GENESIS_JSON JWT_FILE AUTH_PORT HTTP_PORT
# Run the EthereumJS client (npm @ethereumjs/client, pinned in scripts/node) in the
# foreground (exec: the PID is node itself): Engine API (JWT) on 127.0.0.1:AUTH_PORT,
# JSON-RPC on 127.0.0.1:HTTP_PORT, no discovery, no peers unless EL_P2P_ADDR is set. State lives in
# DATADIR/<genesis file name without .json>; a restart on DATADIR resumes it.
# Use a Prague genesis (scripts/genesis/prague.json): EthereumJS's "osaka" is not geth's.
# Peering among the cluster's own execution clients: EL_P2P_ADDR, EL_PEERS, EL_NETRESTRICT and
# EL_MAXPEERS as for geth.sh (the node key is DATADIR/clnode-nodekey; node/cluster-p2p.mjs
# adds the static peers and the address filter EthereumJS lacks).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 5 ]] || usage_error "DATADIR GENESIS_JSON JWT_FILE AUTH_PORT HTTP_PORT"
datadir=$(abspath "$1") genesis=$(abspath "$2") jwt=$(abspath "$3") auth_port=$4 http_port=$5
require_port AUTH_PORT "$auth_port"
require_port HTTP_PORT "$http_port"
[[ $auth_port != "$http_port" ]] || die "AUTH_PORT and HTTP_PORT must differ"
node_bin=${NODE_BIN:-$(command -v node || true)}
[[ -n $node_bin ]] || die "node not found (install Node.js >= 18)"
cli=$KIT_DIR/node/node_modules/@ethereumjs/client/dist/esm/bin/cli.js
[[ -f $cli ]] || die "EthereumJS client not installed at $cli (run scripts/deps.sh ejs)"
[[ -f $genesis ]] || die "genesis file not found: $genesis"
[[ -r $jwt ]] || die "JWT secret not readable: $jwt (create it with scripts/jwt.sh)"
mkdir -p "$datadir"

# Without EL_P2P_ADDR: --port 0 (devp2p TCP on an ephemeral port, no clash between nodes),
# no peers. loopback-only.mjs keeps every listener on 127.0.0.1 (or EL_P2P_ADDR's address).
p2p_opts=(--maxPeers 0 --port 0)
preload=(--import "$KIT_DIR/node/loopback-only.mjs")
if [[ -n ${EL_P2P_ADDR:-} ]]; then
  [[ $EL_P2P_ADDR =~ ^([0-9.]+):([1-9][0-9]{0,4})$ ]] || die "EL_P2P_ADDR must be IP:PORT, got '$EL_P2P_ADDR'"
  p2p_host=${BASH_REMATCH[1]} p2p_port=${BASH_REMATCH[2]}
  "$KIT_DIR/enode.sh" "$datadir" "$EL_P2P_ADDR" >"$datadir/clnode-enode" || die "could not make the node key in $datadir"
  peers=()
  if [[ -n ${EL_PEERS:-} ]]; then IFS=, read -ra peers <<<"$EL_PEERS"; fi
  maxpeers=${EL_MAXPEERS:-$((${#peers[@]} + 8))}
  [[ $maxpeers =~ ^[1-9][0-9]{0,2}$ ]] || die "EL_MAXPEERS must be a number from 1 to 999, got '$maxpeers'"
  export CLNODE_BIND_HOST=$p2p_host CLNODE_NODEKEY_FILE=$datadir/clnode-nodekey
  export CLNODE_STATIC_PEERS=${EL_PEERS:-} CLNODE_NETRESTRICT=${EL_NETRESTRICT:-127.0.0.0/8}
  p2p_opts=(--maxPeers "$maxpeers" --port "$p2p_port")
  preload+=(--import "$KIT_DIR/node/cluster-p2p.mjs")
fi

# --no-logFile: logs go to stdout only (yargs reads "--logFile false" as a file named "false"
# in the cwd). Discovery (discv4, DNS) stays off either way.
exec "$node_bin" "${preload[@]}" "$cli" \
  --gethGenesis "$genesis" \
  --dataDir "$datadir" \
  --sync full \
  --rpcEngine \
  --rpcEngineAddr 127.0.0.1 \
  --rpcEnginePort "$auth_port" \
  --jwtSecret "$jwt" \
  --rpc \
  --rpcAddr 127.0.0.1 \
  --rpcPort "$http_port" \
  --isSingleNode \
  "${p2p_opts[@]}" \
  --discDns false \
  --discV4 false \
  --no-logFile \
  --logLevel info
