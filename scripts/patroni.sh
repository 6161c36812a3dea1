#!/usr/bin/env bash
# patroni.sh DIR NAME PG_PORT REST_PORT ETCD_HOST:PORT [sync|async] — run one Patroni-managed
# PostgreSQL 15 member in the foreground (exec: the PID is Patroni's; it runs postgres as its child)
# of the cluster "clnode" whose leader key lives in etcd at ETCD_HOST:PORT (scripts/etcd.sh), through
# etcd's v2 API (the `etcd` section, not `etcd3`: scripts/etcd.sh says why).
# PostgreSQL on 127.0.0.1:PG_PORT (data in DIR/data, socket in DIR), Patroni's REST API on
# 127.0.0.1:REST_PORT (GET /primary answers 200 on the primary only: what HAProxy checks).
# The first member to start bootstraps the cluster (initdb, trust auth on loopback for "postgres",
# a "replicator" user); the others clone it with pg_basebackup and stream from it.
# sync (default): Patroni's synchronous_mode, a commit returns only once the synchronous standby
# flushed it, and Patroni promotes only that standby; async: the standby may lag (for showing
# what the head-regression guard does when a failover takes commits back).
# Timings chosen for a failover within about 15 s (docs/OPERATIONS.md, "Replicated PostgreSQL"):
#   PATRONI_TTL_S 10, PATRONI_LOOP_WAIT_S 1, PATRONI_RETRY_TIMEOUT_S 4 (loop_wait + 2 x retry <= ttl)
# PATRONI_MAX_LAG_ON_FAILOVER (bytes, default Patroni's 1048576): a replica further behind is not
# promoted (the async fault case raises it, to show what clnode does when one is).
# WAL archiving (both optional, not both): PATRONI_ARCHIVE_DIR=DIR archives every completed segment
# into DIR (created, a cp that never overwrites: postgres.sh's); PATRONI_ARCHIVE_COMMAND sets any
# other archive_command (default /bin/true). archive_mode is "on" on every member: only the primary
# archives, and a promoted standby from its promotion on (docs/OPERATIONS.md says why not "always").
# Restore (opt-in; the cluster lost, its etcd state too): PATRONI_RESTORE_FROM=BACKUP_DIR (from
# scripts/pg-backup.sh) with PATRONI_ARCHIVE_DIR makes the member that bootstraps a new cluster do
# it with Patroni's custom bootstrap (bootstrap.method) running scripts/pg-restore.sh: the backup
# plus the archived WAL to PATRONI_RESTORE_TARGET, latest (default: every archived segment) or
# base (where the backup is consistent: an older point). The other members clone it as usual.
# As root it runs as the "postgres" OS user (PostgreSQL refuses root), like postgres.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
usage="DIR NAME PG_PORT REST_PORT ETCD_HOST:PORT [sync|async]"
[[ $# -eq 5 || $# -eq 6 ]] || usage_error "$usage"
dir=$(abspath "$1") name=$2 pg_port=$3 rest_port=$4 etcd=$5 mode=${6:-sync}
require_port PG_PORT "$pg_port"
require_port REST_PORT "$rest_port"
[[ $etcd == *:* ]] || usage_error "$usage"
require_port ETCD_PORT "${etcd##*:}"
[[ $name =~ ^[a-z0-9-]{1,32}$ ]] || die "NAME $name: 1 to 32 lowercase letters, digits or '-'"
case $mode in
  sync) synchronous=true ;;
  async) synchronous=false ;;
  *) usage_error "$usage" ;;
esac
ttl=${PATRONI_TTL_S:-10} loop_wait=${PATRONI_LOOP_WAIT_S:-1} retry=${PATRONI_RETRY_TIMEOUT_S:-4}
max_lag=${PATRONI_MAX_LAG_ON_FAILOVER:-1048576}
[[ $max_lag =~ ^[0-9]{1,12}$ ]] || die "PATRONI_MAX_LAG_ON_FAILOVER must be whole bytes"
for v in "$ttl" "$loop_wait" "$retry"; do [[ $v =~ ^[1-9][0-9]{0,3}$ ]] || die "PATRONI_*_S must be whole seconds"; done
((loop_wait + 2 * retry <= ttl)) || die "PATRONI_LOOP_WAIT_S + 2 x PATRONI_RETRY_TIMEOUT_S must be <= PATRONI_TTL_S"
patroni_bin=$(command -v patroni || true)
[[ -n $patroni_bin ]] || die "patroni not found (run scripts/deps.sh patroni)"
bindir=$(pg_bindir) || die "PostgreSQL server binaries not found (run scripts/deps.sh postgres)"
mkdir -p "$dir"

postgres_user_dir "$dir"
if ((${#as_pg[@]})) && [[ -d $dir/data ]]; then chown -R postgres:postgres "$dir/data"; fi

archive_command=${PATRONI_ARCHIVE_COMMAND:-/bin/true}
if [[ -n ${PATRONI_ARCHIVE_DIR:-} ]]; then
  [[ -z ${PATRONI_ARCHIVE_COMMAND:-} ]] || die "PATRONI_ARCHIVE_DIR and PATRONI_ARCHIVE_COMMAND: give one"
  archive_dir=$(abspath "$PATRONI_ARCHIVE_DIR")
  mkdir -p "$archive_dir"
  if ((${#as_pg[@]})); then chown postgres:postgres "$archive_dir"; fi
  archive_command="test ! -f $archive_dir/%f && cp %p $archive_dir/%f"
fi

# The custom bootstrap (Patroni 3.0.2 bootstrap.py): Patroni runs `command` as is (no_params) when
# it bootstraps, keeps the recovery.signal and recovery settings pg-restore.sh wrote
# (keep_existing_recovery_conf), starts PostgreSQL, waits for the end of recovery (the promotion
# recovery_target_action asks for), and then drops those settings from postgresql.auto.conf.
bootstrap_method=""
if [[ -n ${PATRONI_RESTORE_FROM:-} ]]; then
  [[ -n ${archive_dir:-} ]] || die "PATRONI_RESTORE_FROM needs PATRONI_ARCHIVE_DIR (the WAL to replay)"
  backup=$(abspath "$PATRONI_RESTORE_FROM") target=${PATRONI_RESTORE_TARGET:-latest}
  [[ -f $backup/PG_VERSION ]] || die "PATRONI_RESTORE_FROM=$backup is not a base backup (no PG_VERSION)"
  [[ $target == latest || $target == base ]] || die "PATRONI_RESTORE_TARGET must be latest or base"
  # Patroni runs the restore as the postgres user: it must read the backup (pg-backup.sh run as
  # root leaves it root's, mode 700).
  if ((${#as_pg[@]})) && ! "${as_pg[@]}" test -r "$backup/PG_VERSION"; then
    chown -R postgres:postgres "$backup"
    echo "patroni.sh: chowned $backup to postgres so Patroni's restore can read it" >&2
  fi
  bootstrap_method="  method: restore
  restore:
    command: $KIT_DIR/pg-restore.sh $backup $archive_dir $dir/data $target
    no_params: true
    keep_existing_recovery_conf: true"
fi

cat >"$dir/patroni.yml" <<YAML
scope: clnode
name: $name
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$rest_port
  connect_address: 127.0.0.1:$rest_port
etcd:
  host: $etcd
bootstrap:
  dcs:
    ttl: $ttl
    loop_wait: $loop_wait
    retry_timeout: $retry
    maximum_lag_on_failover: $max_lag
    synchronous_mode: $synchronous
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        max_connections: 100
        track_commit_timestamp: "on"
        synchronous_commit: "on"
        archive_mode: "on"
        archive_command: "$archive_command"
$bootstrap_method
  initdb:
    - encoding: UTF8
    - no-locale
  pg_hba:
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
    - local all all trust
postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $dir/data
  bin_dir: $bindir
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: replicator
      password: replicator
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: $dir
    fsync: "on"
    shared_buffers: 64MB
tags:
  nofailover: false
  noloadbalance: false
YAML
[[ -z ${as_pg[*]} ]] || chown postgres:postgres "$dir/patroni.yml"
exec "${as_pg[@]}" "$patroni_bin" "$dir/patroni.yml"
