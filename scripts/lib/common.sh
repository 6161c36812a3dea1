# shellcheck shell=bash
# Shared helpers for the scripts in scripts/. Source it; do not run it.
#   KIT_DIR    absolute path of scripts/
#   REPO_ROOT  absolute path of the repository root

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
REPO_ROOT=$(cd "$KIT_DIR/.." && pwd -P)
# shellcheck disable=SC2034  # used by the scripts that source this file
TOOLS_BIN="$REPO_ROOT/.tools/bin"

# die MESSAGE: one clear line on stderr, exit 1.
die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

# usage_error USAGE_LINE: print usage on stderr, exit 2.
usage_error() {
  echo "usage: $(basename "$0") $*" >&2
  exit 2
}

# require_port NAME VALUE: VALUE must be an integer in 1..65535.
require_port() {
  if [[ ! $2 =~ ^[1-9][0-9]{0,4}$ ]] || (($2 > 65535)); then
    die "$1 must be a TCP port number (1-65535), got '$2'"
  fi
}

# abspath PATH: absolute form of PATH (the path itself need not exist yet).
abspath() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}

# pg_bindir: print the directory holding PostgreSQL's initdb and postgres.
# Order: $PG_BINDIR, the newest /usr/lib/postgresql/*/bin (Debian), then PATH.
pg_bindir() {
  local d
  if [[ -n ${PG_BINDIR:-} ]]; then
    [[ -x $PG_BINDIR/postgres && -x $PG_BINDIR/initdb ]] ||
      { echo "PG_BINDIR=$PG_BINDIR has no postgres/initdb" >&2; return 1; }
    printf '%s\n' "$PG_BINDIR"
    return 0
  fi
  while IFS= read -r d; do
    if [[ -x $d/postgres && -x $d/initdb ]]; then
      printf '%s\n' "$d"
      return 0
    fi
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -t/ -k5,5 -V -r)
  if command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v postgres)"
    return 0
  fi
  return 1
}

# postgres_user_dir DIR: as root, set the array as_pg to the prefix that runs a command as the
# "postgres" OS user (PostgreSQL, Patroni and PgBouncer refuse root), let that user reach DIR
# (o+x on its ancestors) and own DIR; otherwise leave as_pg empty. Callers: "${as_pg[@]}" cmd.
as_pg=()
postgres_user_dir() {
  local dir=$1 d
  as_pg=()
  [[ $(id -u) -eq 0 ]] || return 0
  id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user (run scripts/deps.sh postgres)"
  command -v setpriv >/dev/null || die "setpriv (util-linux) is needed to drop root privileges"
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env)
  d=$dir
  while [[ $d != / ]]; do
    "${as_pg[@]}" test -x "$d" || chmod o+x "$d"
    d=$(dirname "$d")
  done
  chown postgres:postgres "$dir"
}
