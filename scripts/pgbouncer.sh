#!/usr/bin/env bash
# pgbouncer.sh DIR PORT PG_HOST:PG_PORT [MODE] — run PgBouncer in the foreground (exec) on
# 127.0.0.1:PORT, pooling connections to the PostgreSQL server at PG_HOST:PG_PORT in MODE
# (session, the default and the only mode clnode supports with PgBouncer 1.18, or transaction,
# for showing why not; docs/OPERATIONS.md, "PgBouncer"). Every database name is passed through
# (`* = host=... port=...`), trust auth for the user "postgres" (loopback tests and the devnet),
# config and unix socket in DIR, log on stderr. As root it runs as the "postgres" OS
# user (PgBouncer refuses root), like postgres.sh.
#   PGBOUNCER_POOL_SIZE   50   server connections per database and user (session mode: one per client;
#                              a leader-mode node holds up to about 21: 16 API, producer, lease, notifier, clock)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
[[ $# -eq 3 || $# -eq 4 ]] || usage_error "DIR PORT PG_HOST:PG_PORT [session|transaction]"
dir=$(abspath "$1") port=$2 server=$3 mode=${4:-session}
require_port PORT "$port"
[[ $server == *:* ]] || usage_error "DIR PORT PG_HOST:PG_PORT [session|transaction]"
require_port PG_PORT "${server##*:}"
[[ $mode == session || $mode == transaction ]] || die "MODE $mode: session or transaction"
pool_size=${PGBOUNCER_POOL_SIZE:-50}
[[ $pool_size =~ ^[1-9][0-9]{0,3}$ ]] || die "PGBOUNCER_POOL_SIZE $pool_size: 1 to 9999"
bouncer_bin=$(command -v pgbouncer || true)
[[ -n $bouncer_bin ]] || die "pgbouncer not found (run scripts/deps.sh pgbouncer)"
mkdir -p "$dir"

postgres_user_dir "$dir"

cat >"$dir/users.txt" <<USERS
"postgres" ""
USERS
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=${server%:*} port=${server##*:}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/users.txt
pool_mode = $mode
default_pool_size = $pool_size
max_client_conn = 1000
server_reset_query = DISCARD ALL
server_connect_timeout = 3
server_login_retry = 1
query_wait_timeout = 10
admin_users = postgres
INI
[[ -z ${as_pg[*]} ]] || chown postgres:postgres "$dir/users.txt" "$dir/pgbouncer.ini"
exec "${as_pg[@]}" "$bouncer_bin" "$dir/pgbouncer.ini"
