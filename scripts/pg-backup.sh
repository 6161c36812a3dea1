#!/usr/bin/env bash
# pg-backup.sh HOST:PORT BACKUP_DIR — a base backup of the PostgreSQL server at HOST:PORT (user
# PG_BACKUP_USER, default postgres; a Patroni member takes replicator: its pg_hba lets only that
# user make replication connections) into BACKUP_DIR, which must not exist: pg_basebackup with a
# fast checkpoint, the WAL
# the backup needs included (-X fetch), checked with pg_verifybackup. With WAL archiving on
# (postgres.sh PG_ARCHIVE_DIR) it is the start of a point-in-time restore (pg-restore.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 2 ]] || usage_error "HOST:PORT BACKUP_DIR"
server=$1 backup=$(abspath "$2")
[[ $server == *:* ]] || usage_error "HOST:PORT BACKUP_DIR"
require_port PORT "${server##*:}"
[[ ! -e $backup ]] || die "$backup exists; a backup goes into a new directory"
bindir=$(pg_bindir) || die "PostgreSQL binaries not found (run scripts/deps.sh postgres)"
user=${PG_BACKUP_USER:-postgres}
[[ $user =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "PG_BACKUP_USER: a PostgreSQL role name, got '$user'"
"$bindir/pg_basebackup" -h "${server%:*}" -p "${server##*:}" -U "$user" -D "$backup" \
  -X fetch -c fast --no-password
"$bindir/pg_verifybackup" -q "$backup"
echo "pg-backup: $backup ($(du -sh "$backup" | cut -f1)) from $server"
