#!/usr/bin/env bash
# enode.sh DATADIR IP:PORT
# Print the enode URL of the execution client whose data directory is DATADIR and whose
# devp2p listens on IP:PORT, making its node key (DATADIR/clnode-nodekey, 32 random bytes
# as hex, mode 600) on first use. geth.sh and ethereumjs.sh use that key when EL_P2P_ADDR is
# set, so the URL can be handed to the other cluster ELs (EL_PEERS) before this one starts.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 2 ]] || usage_error "DATADIR IP:PORT"
datadir=$(abspath "$1")
command -v node >/dev/null || die "node not found (install Node.js >= 18)"
mkdir -p "$datadir"
exec node "$KIT_DIR/node/enode.mjs" "$datadir/clnode-nodekey" "$2"
