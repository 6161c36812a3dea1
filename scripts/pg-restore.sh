#!/usr/bin/env bash
# pg-restore.sh BACKUP_DIR ARCHIVE_DIR PGDATA latest|base — prepare PGDATA (which must not exist,
# or be an empty directory)
# for a point-in-time restore: a copy of the base backup, recovery.signal, and a restore_command
# reading ARCHIVE_DIR. `latest` replays every archived WAL segment (the latest point the archive
# holds); `base` stops as soon as the backup is consistent (recovery_target=immediate: an older
# point). Either way the server promotes itself at the end. Start it with postgres.sh on the
# directory holding PGDATA (postgres.sh expects DIR/pgdata), or let Patroni run it as its custom
# bootstrap (patroni.sh PATRONI_RESTORE_FROM).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
usage="BACKUP_DIR ARCHIVE_DIR PGDATA latest|base"
[[ $# -eq 4 ]] || usage_error "$usage"
backup=$(abspath "$1") archive=$(abspath "$2") pgdata=$(abspath "$3") target=$4
[[ -f $backup/PG_VERSION ]] || die "$backup is not a base backup (no PG_VERSION)"
[[ -d $archive ]] || die "$archive is not a directory"
if [[ -d $pgdata && -z $(ls -A "$pgdata") ]]; then rmdir "$pgdata"; fi
[[ ! -e $pgdata ]] || die "$pgdata exists; restore into a new directory"
case $target in
  latest) target_conf="" ;;
  base) target_conf="recovery_target = 'immediate'" ;;
  *) usage_error "$usage" ;;
esac
cp -a "$backup" "$pgdata"
touch "$pgdata/recovery.signal"
cat >>"$pgdata/postgresql.auto.conf" <<CONF
restore_command = 'cp $archive/%f %p'
recovery_target_action = 'promote'
$target_conf
CONF
chmod 700 "$pgdata"
if [[ $(id -u) -eq 0 ]] && id -u postgres >/dev/null 2>&1; then chown -R postgres:postgres "$pgdata"; fi
echo "pg-restore: $pgdata from $backup, WAL from $archive, target $target"
