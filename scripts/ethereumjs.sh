#!/usr/bin/env bash
# ethereumjs.sh DATADIR GENESIS_JSON JWT_FILE AUTH_PORT HTTP_PORT
# Run the EthereumJS client (npm @ethereumjs/client, pinned in scripts/node) in the
# foreground (exec: the PID is node itself): Engine API (JWT) on 127.0.0.1:AUTH_PORT,
# JSON-RPC on 127.0.0.1:HTTP_PORT, no peers, no discovery. State lives in
# DATADIR/<genesis file name without .json>; a restart on DATADIR resumes it.
# Use a Prague genesis (scripts/genesis/prague.json): EthereumJS's "osaka" is not geth's.
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

# --port 0: devp2p TCP/UDP on ephemeral ports (no clash between nodes); loopback-only.mjs
# keeps them on 127.0.0.1. --no-logFile: logs go to stdout only (yargs reads
# "--logFile false" as a file named "false" in the cwd).
exec "$node_bin" --import "$KIT_DIR/node/loopback-only.mjs" "$cli" \
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
  --maxPeers 0 \
  --discDns false \
  --discV4 false \
  --port 0 \
  --no-logFile \
  --logLevel info
