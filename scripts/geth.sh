#!/usr/bin/env bash
# geth.sh DATADIR GENESIS_JSON JWT_FILE AUTH_PORT HTTP_PORT
# Run geth in the foreground (exec: the PID is geth itself) as an isolated devnet node driven
# through the Engine API on 127.0.0.1:AUTH_PORT, JSON-RPC on 127.0.0.1:HTTP_PORT.
# First start runs `geth init` with GENESIS_JSON; later starts resume DATADIR (a different
# genesis file than the one DATADIR was initialised with is refused).
# Binary: $GETH_BIN, else <repo>/.tools/bin/geth (scripts/deps.sh geth).
# $GETH_GCMODE: archive (the default: every block's state on disk) or full (geth's own
# default: recent state in memory, flushed on a clean shutdown only, so a SIGKILL loses it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 5 ]] || usage_error "DATADIR GENESIS_JSON JWT_FILE AUTH_PORT HTTP_PORT"
datadir=$(abspath "$1") genesis=$(abspath "$2") jwt=$(abspath "$3") auth_port=$4 http_port=$5
require_port AUTH_PORT "$auth_port"
require_port HTTP_PORT "$http_port"
[[ $auth_port != "$http_port" ]] || die "AUTH_PORT and HTTP_PORT must differ"
geth=${GETH_BIN:-$TOOLS_BIN/geth}
[[ -x $geth ]] || die "geth not found at $geth (run scripts/deps.sh geth, or set GETH_BIN)"
[[ -f $genesis ]] || die "genesis file not found: $genesis"
[[ -r $jwt ]] || die "JWT secret not readable: $jwt (create it with scripts/jwt.sh)"
gcmode=${GETH_GCMODE:-archive}
[[ $gcmode == archive || $gcmode == full ]] || die "GETH_GCMODE must be archive or full, got: $gcmode"
mkdir -p "$datadir"

# Crash safety (the harness SIGKILLs geth): LevelDB hands every write to the kernel at
# once, while geth's default Pebble buffers its WAL in memory (a SIGKILL loses the last
# blocks). The hash state scheme with --gcmode archive writes each block's state as it is
# imported (path scheme keeps up to 128 blocks of state in memory), and keeps old state
# readable. Both are fixed when the database is created, so init and run must agree.
db_opts=(--db.engine leveldb --state.scheme hash)

genesis_sum=$(sha256sum "$genesis" | cut -d' ' -f1)
marker=$datadir/clnode-genesis.sha256
if [[ -f $marker ]]; then
  [[ $(cat "$marker") == "$genesis_sum" ]] ||
    die "$datadir was initialised with a different genesis file than $genesis"
else
  # No marker: fresh datadir, or an init that did not finish. geth init is idempotent
  # for the same genesis and refuses an incompatible one.
  "$geth" init "${db_opts[@]}" --datadir "$datadir" "$genesis"
  echo "$genesis_sum" >"$marker"
fi

exec "$geth" \
  --config "$KIT_DIR/geth/p2p-off.toml" \
  --datadir "$datadir" \
  "${db_opts[@]}" \
  --networkid 1337 \
  --syncmode full \
  --gcmode "$gcmode" \
  --nodiscover \
  --maxpeers 0 \
  --nat none \
  --authrpc.addr 127.0.0.1 \
  --authrpc.port "$auth_port" \
  --authrpc.jwtsecret "$jwt" \
  --http \
  --http.addr 127.0.0.1 \
  --http.port "$http_port" \
  --http.api eth,net,web3,txpool,debug \
  --ipcdisable \
  --txpool.pricelimit 1 \
  --cache 256 \
  --verbosity 3
