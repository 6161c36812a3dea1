#!/usr/bin/env bash
# Print the PostgreSQL server bin dir (initdb, postgres, pg_ctl, psql), even when it is not on PATH.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 0 ]] || usage_error "(no arguments)"
pg_bindir || die "PostgreSQL server binaries not found (run scripts/deps.sh postgres)"
