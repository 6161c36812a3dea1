#!/usr/bin/env bash
# postgres.sh DIR PORT — run a PostgreSQL server in the foreground (exec: the PID is the
# postmaster) on 127.0.0.1:PORT. Cluster in DIR/pgdata (created on first start: trust auth,
# superuser "postgres", UTF8, no locale), unix socket in DIR.
# Connect with postgres://postgres@127.0.0.1:PORT/postgres.
# As root, the server runs as the "postgres" OS user: DIR is chowned to it and its parent
# directories get o+x where needed so that user can reach DIR.
# PG_ARCHIVE_DIR: WAL archiving on (archive_mode, a cp archive_command that never overwrites),
# every completed WAL segment copied into that directory (scripts/pg-backup.sh, pg-restore.sh).
# PG_TLS_CERT and PG_TLS_KEY (both or neither): TLS on (ssl=on) with that certificate and key,
# copied into DIR/tls owned by the server's user with the key at mode 600 (PostgreSQL refuses a key
# others can read); plaintext connections are still accepted (pg_hba: host, trust).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 2 ]] || usage_error "DIR PORT"
dir=$(abspath "$1") port=$2
require_port PORT "$port"
bindir=$(pg_bindir) || die "PostgreSQL server binaries not found (run scripts/deps.sh postgres)"
pgdata=$dir/pgdata
mkdir -p "$dir"

as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user (run scripts/deps.sh postgres)"
  command -v setpriv >/dev/null || die "setpriv (util-linux) is needed to drop root privileges"
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env)
  # Let the postgres user traverse every ancestor of DIR (e.g. a 0700 temp dir under /tmp).
  d=$(dirname "$dir")
  while [[ $d != / ]]; do
    if ! "${as_pg[@]}" test -x "$d"; then
      chmod o+x "$d"
      echo "postgres.sh: added o+x to $d so the postgres user can reach $dir" >&2
    fi
    d=$(dirname "$d")
  done
  if [[ $(stat -c %U "$dir") != postgres ]]; then
    chown postgres:postgres "$dir"
  fi
  if [[ -d $pgdata && $(stat -c %U "$pgdata") != postgres ]]; then
    chown -R postgres:postgres "$pgdata"
  fi
  "${as_pg[@]}" test -w "$dir" || die "the postgres user cannot write $dir"
fi

if [[ ! -f $pgdata/PG_VERSION ]]; then
  [[ ! -e $pgdata ]] || die "$pgdata exists but is not a PostgreSQL cluster; move it away"
  # initdb into a scratch dir and rename it, so an interrupted initdb leaves no half cluster.
  rm -rf "$dir/pgdata.initdb"
  "${as_pg[@]}" "$bindir/initdb" -D "$dir/pgdata.initdb" -U postgres -A trust \
    -E UTF8 --no-locale --no-instructions >&2
  mv "$dir/pgdata.initdb" "$pgdata"
fi

tls=()
if [[ -n ${PG_TLS_CERT:-}${PG_TLS_KEY:-} ]]; then
  [[ -f ${PG_TLS_CERT:-} && -f ${PG_TLS_KEY:-} ]] || die "PG_TLS_CERT and PG_TLS_KEY must both name files"
  mkdir -p "$dir/tls"
  install -m 644 "$PG_TLS_CERT" "$dir/tls/server.pem"
  install -m 600 "$PG_TLS_KEY" "$dir/tls/server.key"
  if ((${#as_pg[@]})); then
    chown -R postgres:postgres "$dir/tls"
  fi
  tls=(-c ssl=on -c ssl_cert_file="$dir/tls/server.pem" -c ssl_key_file="$dir/tls/server.key")
fi

archive=()
if [[ -n ${PG_ARCHIVE_DIR:-} ]]; then
  archive_dir=$(abspath "$PG_ARCHIVE_DIR")
  mkdir -p "$archive_dir"
  if ((${#as_pg[@]})); then chown postgres:postgres "$archive_dir"; fi
  archive=(-c wal_level=replica -c archive_mode=on
    -c "archive_command=test ! -f $archive_dir/%f && cp %p $archive_dir/%f")
fi

exec "${as_pg[@]}" "$bindir/postgres" -D "$pgdata" \
  -p "$port" \
  -k "$dir" \
  -c listen_addresses=127.0.0.1 \
  -c fsync=on \
  -c shared_buffers=64MB \
  -c max_connections=100 \
  -c track_commit_timestamp=on \
  -c log_line_prefix='%m [%p] ' \
  "${tls[@]}" "${archive[@]}"
