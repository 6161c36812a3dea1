# shellcheck shell=bash
# devnet_ha.sh — `scripts/devnet.sh run-ha` (what `make run-ha` runs through scripts/devnet-ha.sh):
# the replicated topology of docs/OPERATIONS.md on one machine. Sourced by scripts/devnet.sh,
# whose process handling (start, stop stages, pid files, restart, the status table) it uses.
#
#   etcd ── Patroni pg-1 ─┐ (synchronous replication; either may be primary)
#        └─ Patroni pg-2 ─┴─ HAProxy :5000 (only the member whose GET /primary answers 200)
#                                └─ PgBouncer :6432 (session mode) ── leader-1, leader-2
#   redis-1 (master at start), redis-2 (replica) ── sentinel-1..3 ── leader-1, leader-2
#   member-1, member-2 (each with its own geth and PostgreSQL) ── HAProxy :8645 (their geths' RPC,
#   checked on each member's /health with a lag threshold)
#   Prometheus scraping the four clnodes, with deploy/prometheus/alerts.yml loaded.
#
# A second run on the same directory resumes the same chain: Patroni finds its data and its leader
# key; the Redis pair starts again as redis-1 master and redis-2 its replica, with sentinels that
# start afresh (a lease lost that way is what clnode's fence is for: docs/OPERATIONS.md).

# The Redis master's name at the sentinels (clnode's --redis-master).
HA_REDIS_MASTER=mymaster

# ha_port_vars: the port variables run-ha uses.
ha_port_vars() {
  local spec
  for spec in "${PORT_VARS[@]}" "${MEMBER_PORT_VARS[@]}" "${HA_PORT_VARS[@]}"; do
    [[ ${spec%%:*} == DEVNET_PG_PORT ]] || echo "${spec%%:*}"
  done
  if ((PROMETHEUS)); then port_vars "${PROM_PORT_VARS[@]}"; fi
}

# patroni_role PG_NAME: the role Patroni's REST API reports for that member (primary, replica,
# ...), or nothing when it does not answer. GET /primary answers 200 on the primary only.
patroni_rest_port() { case $1 in pg-1) echo "$DEVNET_PG1_REST" ;; pg-2) echo "$DEVNET_PG2_REST" ;; esac; }
is_pg_primary() {
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(patroni_rest_port "$1")/primary" 2>/dev/null) == 200 ]]
}
any_pg_primary() { is_pg_primary pg-1 || is_pg_primary pg-2; }

# pg_primary_cmd: print the Patroni member that is primary now.
pg_primary_cmd() {
  [[ -f $DIR/cmds/pg-1 ]] || die "no run-ha devnet state in $DIR (start one with make run-ha)"
  local name primaries=()
  for name in pg-1 pg-2; do if is_pg_primary "$name"; then primaries+=("$name"); fi; done
  ((${#primaries[@]} == 1)) || die "no single PostgreSQL is primary right now (${#primaries[@]} answer /primary); try again in a few seconds"
  echo "${primaries[0]}"
}

# redis_cli PORT ARGS...: one bounded redis-cli call.
redis_cli() { timeout 2 redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

# redis_master_cmd: print the Redis (redis-1 or redis-2) the sentinels name as master now (the
# first sentinel that answers).
redis_master_cmd() {
  [[ -f $DIR/cmds/sentinel-1 ]] || die "no run-ha devnet state in $DIR (start one with make run-ha)"
  local port addr
  for port in "$DEVNET_SENTINEL1_PORT" "$DEVNET_SENTINEL2_PORT" "$DEVNET_SENTINEL3_PORT"; do
    addr=$(redis_cli "$port" SENTINEL get-master-addr-by-name "$HA_REDIS_MASTER" | sed -n 2p) || continue
    case $addr in
      "$DEVNET_REDIS_PORT") echo redis-1 && return 0 ;;
      "$DEVNET_REDIS2_PORT") echo redis-2 && return 0 ;;
    esac
  done
  die "no sentinel names a master right now; try again in a second"
}

# sentinels_know_master: every sentinel answers with a master address.
sentinels_know_master() {
  local port
  for port in "$DEVNET_SENTINEL1_PORT" "$DEVNET_SENTINEL2_PORT" "$DEVNET_SENTINEL3_PORT"; do
    [[ -n $(redis_cli "$port" SENTINEL get-master-addr-by-name "$HA_REDIS_MASTER") ]] || return 1
  done
}

# write_haproxy_config FILE: HAProxy in front of the PostgreSQL primary (TCP, checked on
# Patroni's GET /primary) and of the members' RPC (HTTP, checked on clnode's /health with the
# balancer's lag threshold, as deploy/haproxy/members.cfg).
write_haproxy_config() {
  cat >"$1" <<CFG
# Written by scripts/devnet.sh run-ha at each start; edits are lost.
global
    log stderr format raw local0 info
    stats socket $DIR/haproxy.sock mode 600 level admin
    maxconn 2000

defaults
    log global
    option dontlognull
    timeout connect 2s
    timeout check 1s
    retries 2

# Only the member whose Patroni answers 200 on /primary takes connections. A server marked down
# (a switchover, a failover) has its sessions cut, so PgBouncer and clnode reconnect through here
# to the new primary instead of writing on into a demoted one (which would refuse the writes).
# Idle sessions (a LISTEN between blocks) stay up to an hour, with TCP keepalives.
listen postgres_primary
    mode tcp
    bind 127.0.0.1:$DEVNET_PG_PRIMARY_PORT
    timeout client 1h
    timeout server 1h
    option clitcpka
    option srvtcpka
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1 on-marked-down shutdown-sessions
    server pg-1 127.0.0.1:$DEVNET_PG1_PORT check port $DEVNET_PG1_REST
    server pg-2 127.0.0.1:$DEVNET_PG2_PORT check port $DEVNET_PG2_REST

# The members' RPC: a member more than 10 blocks or 3 s behind answers 503 on this /health and
# leaves the pool; it comes back once caught up (docs/OPERATIONS.md, "Members behind a load balancer").
frontend members_rpc
    mode http
    bind 127.0.0.1:$DEVNET_MEMBERS_RPC
    timeout client 30s
    default_backend members

backend members
    mode http
    timeout server 30s
    balance leastconn
    option redispatch
    option httpchk GET "/health?max_lag_blocks=10&max_lag_ms=3000"
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 3
    server member-1 127.0.0.1:$DEVNET_M1_RPC check port $DEVNET_M1_HEALTH
    server member-2 127.0.0.1:$DEVNET_M2_RPC check port $DEVNET_M2_HEALTH
CFG
}

haproxy_ready() { require_alive haproxy && [[ -S $DIR/haproxy.sock ]]; }

# start_patroni NAME PG_PORT REST_PORT: one Patroni member (synchronous mode), archiving WAL into
# DIR/archive from whichever member is primary (the archive a restore replays:
# docs/OPERATIONS.md, "Backing up and restoring a Patroni cluster").
start_patroni() {
  start "$1" env "PATRONI_ARCHIVE_DIR=$DIR/archive" \
    "$KIT_DIR/patroni.sh" "$DIR/$1" "$1" "$2" "$3" "127.0.0.1:$DEVNET_ETCD_PORT" sync
}

# base_backup: a base backup of the primary, through HAProxy, into DIR/backups/<UTC time>; with
# DIR/archive, the start of a point-in-time restore. Not fatal: the devnet runs without it.
base_backup() {
  local dest
  dest=$DIR/backups/$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$DIR/backups"
  if PG_BACKUP_USER=replicator timeout 60 "$KIT_DIR/pg-backup.sh" "127.0.0.1:$DEVNET_PG_PRIMARY_PORT" "$dest" >>"$DIR/logs/backup.log" 2>&1; then
    say "base backup of the primary in ${dest#"$PWD"/} (WAL archived in ${DIR#"$PWD"/}/archive)"
  else
    say "the base backup failed (see $DIR/logs/backup.log); the devnet goes on without it"
  fi
}

# start_ha_postgres: etcd, then the Patroni pair. On a first run pg-1 bootstraps the cluster
# before pg-2 starts (and clones it), so pg-1 is the first primary; on a later run both start at
# once and Patroni keeps whichever led (it promotes only the synchronous standby otherwise).
start_ha_postgres() {
  start etcd "$KIT_DIR/etcd.sh" "$DIR/etcd" "$DEVNET_ETCD_PORT" "$DEVNET_ETCD_PEER_PORT"
  wait_port etcd "$DEVNET_ETCD_PORT"
  local fresh=0
  [[ -d $DIR/pg-1/data ]] || fresh=1
  start_patroni pg-1 "$DEVNET_PG1_PORT" "$DEVNET_PG1_REST"
  if ((fresh)); then
    say "pg-1 bootstraps the PostgreSQL cluster (initdb) before pg-2 clones it ..."
    wait_until "$READY_TIMEOUT_S" "pg-1 to become the PostgreSQL primary (Patroni)" is_pg_primary pg-1
  fi
  start_patroni pg-2 "$DEVNET_PG2_PORT" "$DEVNET_PG2_REST"
}

# start_ha_redis: the Redis pair (redis-1 master, redis-2 its replica) and three sentinels, each
# with a fresh config naming redis-1 (a quorum of 2 agrees the master is down).
start_ha_redis() {
  start redis-1 "$KIT_DIR/redis.sh" "$DIR/redis-1" "$DEVNET_REDIS_PORT"
  start redis-2 "$KIT_DIR/redis.sh" "$DIR/redis-2" "$DEVNET_REDIS2_PORT" "127.0.0.1:$DEVNET_REDIS_PORT"
  wait_port redis-1 "$DEVNET_REDIS_PORT"
  local i ports=("$DEVNET_SENTINEL1_PORT" "$DEVNET_SENTINEL2_PORT" "$DEVNET_SENTINEL3_PORT")
  for i in 1 2 3; do
    rm -f "$DIR/sentinel-$i/sentinel.conf"
    start "sentinel-$i" "$KIT_DIR/redis-sentinel.sh" "$DIR/sentinel-$i" "${ports[$((i - 1))]}" \
      "$HA_REDIS_MASTER" "127.0.0.1:$DEVNET_REDIS_PORT" 2
  done
}

run_ha() {
  local t_start t_services
  t_start=$(now_ms)
  local n
  for n in patroni etcd redis-sentinel redis-cli pgbouncer haproxy; do
    command -v "$n" >/dev/null || die "$n not found (run make deps, or scripts/deps.sh patroni sentinel pgbouncer haproxy)"
  done
  local ports
  mapfile -t ports < <(ha_port_vars)
  prepare_run "${ports[@]}" -- leader-1 leader-2 member-1 member-2

  t_services=$(now_ms)
  if ((PROMETHEUS)); then PROM_URL=http://127.0.0.1:$DEVNET_PROM_PORT; fi
  say "starting etcd, Patroni, Redis with sentinels, HAProxy, PgBouncer, geth${PROM_URL:+ and Prometheus} in $DIR (logs in $DIR/logs/) ..."
  start_ha_postgres
  start_ha_redis
  write_haproxy_config "$DIR/haproxy.cfg"
  start haproxy "$KIT_DIR/haproxy.sh" "$DIR/haproxy.cfg"
  start pgbouncer "$KIT_DIR/pgbouncer.sh" "$DIR/pgbouncer" "$DEVNET_PGBOUNCER_PORT" "127.0.0.1:$DEVNET_PG_PRIMARY_PORT" session
  geth_peering geth-l1:"$DEVNET_L1_P2P" geth-l2:"$DEVNET_L2_P2P" geth-m1:"$DEVNET_M1_P2P" geth-m2:"$DEVNET_M2_P2P"
  start_geth geth-l1 leader-1 "$DEVNET_L1_ENGINE" "$DEVNET_L1_RPC"
  start_geth geth-l2 leader-2 "$DEVNET_L2_ENGINE" "$DEVNET_L2_RPC"
  start_geth geth-m1 member-1 "$DEVNET_M1_ENGINE" "$DEVNET_M1_RPC"
  start_geth geth-m2 member-2 "$DEVNET_M2_ENGINE" "$DEVNET_M2_RPC"
  start pg-member "$KIT_DIR/postgres.sh" "$DIR/pg-member" "$DEVNET_M1_PG_PORT"
  start pg-member-2 "$KIT_DIR/postgres.sh" "$DIR/pg-member-2" "$DEVNET_M2_PG_PORT"
  if ((PROMETHEUS)); then
    start prometheus "$KIT_DIR/prometheus.sh" "$DIR/prometheus" "$DEVNET_PROM_PORT" \
      leader-1=127.0.0.1:"$DEVNET_L1_HEALTH" leader-2=127.0.0.1:"$DEVNET_L2_HEALTH" \
      member-1=127.0.0.1:"$DEVNET_M1_HEALTH" member-2=127.0.0.1:"$DEVNET_M2_HEALTH"
  fi

  wait_until "$READY_TIMEOUT_S" "a PostgreSQL primary (Patroni pg-1 or pg-2)" any_pg_primary
  wait_until "$READY_TIMEOUT_S" "HAProxy's stats socket" haproxy_ready
  wait_until "$READY_TIMEOUT_S" "PostgreSQL through PgBouncer and HAProxy on port $DEVNET_PGBOUNCER_PORT" pg_ready pgbouncer "$DEVNET_PGBOUNCER_PORT"
  wait_until "$READY_TIMEOUT_S" "the three sentinels to name the Redis master" sentinels_know_master
  local geth
  for geth in geth-l1:"$DEVNET_L1_ENGINE" geth-l2:"$DEVNET_L2_ENGINE" geth-m1:"$DEVNET_M1_ENGINE" geth-m2:"$DEVNET_M2_ENGINE"; do
    wait_port "${geth%%:*}" "${geth#*:}"
  done
  wait_until "$READY_TIMEOUT_S" "PostgreSQL on port $DEVNET_M1_PG_PORT" pg_ready pg-member "$DEVNET_M1_PG_PORT"
  wait_until "$READY_TIMEOUT_S" "PostgreSQL on port $DEVNET_M2_PG_PORT" pg_ready pg-member-2 "$DEVNET_M2_PG_PORT"
  if ((PROMETHEUS)); then wait_until "$READY_TIMEOUT_S" "Prometheus on port $DEVNET_PROM_PORT" prometheus_ready; fi
  say "services ready in $(elapsed_s "$t_services")s; starting clnode ..."

  {
    echo "leader-1 leader $DEVNET_L1_HEALTH"
    echo "leader-2 leader $DEVNET_L2_HEALTH"
    echo "member-1 member $DEVNET_M1_HEALTH"
    echo "member-2 member $DEVNET_M2_HEALTH"
  } >"$DIR/nodes"
  # shellcheck disable=SC2034 # read by leader_node (scripts/devnet.sh)
  LEADER_STORE_FLAGS=(
    --postgres-url "postgres://postgres@127.0.0.1:$DEVNET_PGBOUNCER_PORT/postgres"
    --redis-sentinel "127.0.0.1:$DEVNET_SENTINEL1_PORT,127.0.0.1:$DEVNET_SENTINEL2_PORT,127.0.0.1:$DEVNET_SENTINEL3_PORT"
    --redis-master "$HA_REDIS_MASTER"
  )
  leader_node leader-1 "$DEVNET_L1_HEALTH" "$DEVNET_L1_API" "$DEVNET_L1_ENGINE"
  leader_node leader-2 "$DEVNET_L2_HEALTH" "$DEVNET_L2_API" "$DEVNET_L2_ENGINE"
  member_node member-1 "$DEVNET_M1_HEALTH" "$DEVNET_M1_API" "$DEVNET_M1_ENGINE" "$DEVNET_M1_PG_PORT"
  member_node member-2 "$DEVNET_M2_HEALTH" "$DEVNET_M2_API" "$DEVNET_M2_ENGINE" "$DEVNET_M2_PG_PORT"
  wait_leaders_ready
  wait_port member-1 "$DEVNET_M1_HEALTH"
  wait_port member-2 "$DEVNET_M2_HEALTH"

  start_load loadgen-1:"$DEVNET_L1_RPC":"$KEY_L1" loadgen-2:"$DEVNET_L2_RPC":"$KEY_L2" \
    loadgen-m1:"$DEVNET_MEMBERS_RPC":"$KEY_M1"
  wait_preferred_leader
  base_backup

  local rel=${DIR#"$PWD"/} me
  me=$(helper_name)
  local hints=(
    "try:   curl localhost:$DEVNET_L1_HEALTH/health      curl localhost:$DEVNET_L1_API/blocks/latest      (leader-2: :$DEVNET_L2_HEALTH, :$DEVNET_L2_API)"
    "       curl -s localhost:$DEVNET_MEMBERS_RPC -H content-type:application/json -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\"}'   (the members' RPC, through HAProxy)"
    "who:   $me leader    $me pg-primary    $me redis-master"
    "break: $me kill \$($me pg-primary)      (the PostgreSQL primary's host: Patroni and its PostgreSQL)"
    "       $me kill \$($me redis-master)    (the Redis master)      $me kill \$($me leader)"
    "       kill -STOP \$(cat $rel/pids/member-2)   (member-2 stops syncing and leaves HAProxy's pool; -CONT brings it back)"
    "heal:  $me restart NAME   (NAME: pg-1, redis-2, leader-1, ...: rejoins as a replica / standby)"
    "backup: PG_BACKUP_USER=replicator scripts/pg-backup.sh 127.0.0.1:$DEVNET_PG_PRIMARY_PORT $rel/backups/NEW   (WAL: $rel/archive; restore: docs/OPERATIONS.md)"
    "logs:  $rel/logs/        stop: Ctrl-C (stops everything, restarted processes too)"
  )
  if ((PROMETHEUS)); then
    hints+=("prom:  $PROM_URL   (/classic/targets, /classic/alerts: deploy/prometheus/alerts.yml; Grafana: deploy/grafana/clnode.json)")
  fi
  local specs=(
    leader-1:leader:"$DEVNET_L1_HEALTH" leader-2:leader:"$DEVNET_L2_HEALTH"
    member-1:member:"$DEVNET_M1_HEALTH" member-2:member:"$DEVNET_M2_HEALTH"
    etcd:etcd:"$DEVNET_ETCD_PORT" pg-1:patroni:"$DEVNET_PG1_REST" pg-2:patroni:"$DEVNET_PG2_REST"
    redis-1:redis:"$DEVNET_REDIS_PORT" redis-2:redis:"$DEVNET_REDIS2_PORT"
    sentinel-1:sentinel:"$DEVNET_SENTINEL1_PORT":"$HA_REDIS_MASTER"
    sentinel-2:sentinel:"$DEVNET_SENTINEL2_PORT":"$HA_REDIS_MASTER"
    sentinel-3:sentinel:"$DEVNET_SENTINEL3_PORT":"$HA_REDIS_MASTER"
    pgbouncer:pgbouncer:"$DEVNET_PGBOUNCER_PORT" haproxy:haproxy:"$DIR/haproxy.sock"
  )
  if ((PROMETHEUS)); then specs+=(prometheus:prometheus:"$DEVNET_PROM_PORT"); fi
  serve "$t_start" "$t_services" "${specs[@]}" -- "${hints[@]}"
}
