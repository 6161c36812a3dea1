#!/usr/bin/env bash
# devnet-ha.sh [run|stop|clean|leader|pg-primary|redis-master|kill NAME|restart NAME] — the
# replicated devnet (`make run-ha`): scripts/devnet.sh with its state in <repo>/.devnet-ha (or
# DEVNET_DIR), where `run` (the default) starts the run-ha topology (scripts/lib/devnet_ha.sh)
# and every other command is devnet.sh's own, on that state dir. DEVNET_* variables as for
# devnet.sh (its header lists them, and the run-ha ports in HA_PORT_VARS).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEVNET_DEFAULT_DIR="${here%/scripts}/.devnet-ha" DEVNET_HELPER="$here/devnet-ha.sh"
case ${1:-run} in
  run) [[ $# -le 1 ]] || { echo "usage: $0 [run|stop|clean|leader|pg-primary|redis-master|kill NAME|restart NAME]" >&2 && exit 2; } && exec "$here/devnet.sh" run-ha ;;
  run-ha) echo "$0: the command is run (the default)" >&2 && exit 2 ;;
  *) exec "$here/devnet.sh" "$@" ;;
esac
