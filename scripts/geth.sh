#!/usr/bin/env bash
# geth.sh DATADIR GENESIS_JSON JWT_FILE AUTH_PORT HTTP_PORT
# Run geth in the foreground (exec: the PID is geth itself) as a devnet node driven
# through the Engine API on 127.0.0.1:AUTH_PORT, JSON-RPC on 127.0.0.1:HTTP_PORT.
# First start runs `geth init` with GENESIS_JSON; later starts resume DATADIR (a different
# genesis file than the one DATADIR was initialised with is refused).
# Binary: $GETH_BIN, else <repo>/.tools/bin/geth (scripts/deps.sh geth).
# $GETH_GCMODE: archive (the default: every block's state on disk) or full (geth's own
# default: recent state in memory, flushed on a clean shutdown only, so a SIGKILL loses it).
# Peering among the cluster's own execution clients (so a transaction sent to any of them
# reaches whichever one leads; off unless EL_P2P_ADDR is set; see scripts/README.md):
#   EL_P2P_ADDR     IP:PORT this geth's devp2p listens on (TCP only, no discovery)
#   EL_PEERS        comma-separated enode URLs of the other cluster ELs (scripts/enode.sh
#                   prints each one's), dialled as static and trusted peers
#   EL_NETRESTRICT  CIDR list geth may talk devp2p with [127.0.0.0/8]
#   EL_MAXPEERS     peer limit [number of EL_PEERS + 8: room for the members' ELs]
# The node key is DATADIR/clnode-nodekey (made on first use, mode 600).
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
# geth reads every GETH_* variable as a flag and warns about this one (no --bin flag).
unset GETH_BIN
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

# devp2p: off (no listener, no dialing), or on among the cluster's own ELs only.
p2p_opts=(--config "$KIT_DIR/geth/p2p-off.toml" --maxpeers 0)
if [[ -n ${EL_P2P_ADDR:-} ]]; then
  p2p_config=$datadir/clnode-p2p.toml
  "$KIT_DIR/enode.sh" "$datadir" "$EL_P2P_ADDR" >"$datadir/clnode-enode" || die "could not make the node key in $datadir"
  peers=()
  if [[ -n ${EL_PEERS:-} ]]; then IFS=, read -ra peers <<<"$EL_PEERS"; fi
  toml_peers=""
  for peer in "${peers[@]}"; do
    [[ $peer =~ ^enode://[0-9a-f]{128}@[0-9.]+:[0-9]+$ ]] || die "EL_PEERS: not an enode URL with an IPv4 address: $peer"
    toml_peers+="${toml_peers:+, }\"$peer\""
  done
  maxpeers=${EL_MAXPEERS:-$((${#peers[@]} + 8))}
  [[ $maxpeers =~ ^[1-9][0-9]{0,2}$ ]] || die "EL_MAXPEERS must be a number from 1 to 999, got '$maxpeers'"
  # geth's --port listens on every interface; the config file's ListenAddr takes an address.
  # Static peers are redialled whenever they drop; trusted ones are let in above MaxPeers.
  cat >"$p2p_config" <<TOML
# Written by scripts/geth.sh on every start from EL_P2P_ADDR and EL_PEERS; edits are lost.
[Node.P2P]
MaxPeers = $maxpeers
NoDiscovery = true
DiscoveryV4 = false
DiscoveryV5 = false
ListenAddr = "$EL_P2P_ADDR"
StaticNodes = [$toml_peers]
TrustedNodes = [$toml_peers]
TOML
  p2p_opts=(--config "$p2p_config" --nodekey "$datadir/clnode-nodekey" --maxpeers "$maxpeers"
    --netrestrict "${EL_NETRESTRICT:-127.0.0.0/8}" --discovery.dns "")
fi

exec "$geth" \
  "${p2p_opts[@]}" \
  --datadir "$datadir" \
  "${db_opts[@]}" \
  --networkid 1337 \
  --syncmode full \
  --gcmode "$gcmode" \
  --nodiscover \
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
  --txpool.globalslots 5120 \
  --txpool.globalqueue 1024 \
  --txpool.accountslots 16 \
  --txpool.accountqueue 64 \
  --cache 256 \
  --verbosity 3
