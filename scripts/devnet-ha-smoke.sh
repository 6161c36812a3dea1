#!/usr/bin/env bash
# devnet-ha-smoke.sh — end-to-end check of `make run-ha` (scripts/devnet-ha.sh) and of the README
# tour's two replicated-service steps, from the outside.
#
# Runs the replicated devnet on free ports in a fresh temporary DEVNET_DIR and checks:
#   - every clnode answers /health 200, exactly one leads; blocks are committed, and the members'
#     RPC answers through HAProxy; a base backup was taken and the primary archives WAL;
#   - the live table has a row per service with its role: one Patroni primary and a synchronous
#     standby, etcd, the Redis master and its replica, three sentinels naming that master,
#     PgBouncer, HAProxy with a primary and both members up, Prometheus with 4/4 targets;
#   - "kill the PostgreSQL primary": `devnet-ha.sh kill $(devnet-ha.sh pg-primary)` (Patroni and
#     its PostgreSQL, SIGKILL); the other member becomes primary, blocks are committed again
#     (the time is printed), the block committed last before the kill is still there hash for
#     hash; `devnet-ha.sh restart` brings the killed member back as a replica;
#   - "kill the Redis master": `devnet-ha.sh kill $(devnet-ha.sh redis-master)`; the sentinels
#     name the replica, blocks are committed again (time printed);
#   - no fork: at heights across both faults, every geth (the leaders' and the members') holds
#     the block the sync API serves;
# then stops the devnet (SIGTERM: exit 143) and checks that nothing it started is left running
# and no port listens. Exit 0 when all pass, 1 with a "devnet-ha-smoke: FAIL ..." line otherwise
# (the state dir is then kept for inspection). SMOKE_KEEP=1 keeps it on success too.
# Environment: SMOKE_READY_TIMEOUT_S seconds until the devnet is ready, build included [300];
# DEVNET_BUILD and CLNODE_BIN pass through to devnet.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib/smoke.sh
. "$KIT_DIR/lib/smoke.sh"
[[ $# -eq 0 ]] || usage_error "(no arguments; see the header for SMOKE_* variables)"
READY_TIMEOUT_S=${SMOKE_READY_TIMEOUT_S:-300}
[[ $READY_TIMEOUT_S =~ ^[1-9][0-9]*$ ]] || die "SMOKE_READY_TIMEOUT_S must be a positive whole number"
# Bounds on each recovery (the figures measured are far below: docs/FAULTS.md, "make run-ha").
PG_FAILOVER_BOUND_S=45 REDIS_FAILOVER_BOUND_S=30 REJOIN_BOUND_S=90

smoke_start devnet-ha-smoke
now_ms() { echo $(($(date +%s%N) / 1000000)); }
ha() { DEVNET_DIR=$STATE "$KIT_DIR/devnet-ha.sh" "$@"; }

VARS=(DEVNET_REDIS_PORT DEVNET_M1_PG_PORT DEVNET_L1_ENGINE DEVNET_L1_RPC DEVNET_L2_ENGINE
  DEVNET_L2_RPC DEVNET_M1_ENGINE DEVNET_M1_RPC DEVNET_L1_HEALTH DEVNET_L1_API DEVNET_L2_HEALTH
  DEVNET_L2_API DEVNET_M1_HEALTH DEVNET_M1_API DEVNET_L1_P2P DEVNET_L2_P2P DEVNET_M1_P2P
  DEVNET_PROM_PORT DEVNET_ETCD_PORT DEVNET_ETCD_PEER_PORT DEVNET_PG1_PORT DEVNET_PG1_REST
  DEVNET_PG2_PORT DEVNET_PG2_REST DEVNET_PG_PRIMARY_PORT DEVNET_PGBOUNCER_PORT DEVNET_MEMBERS_RPC
  DEVNET_REDIS2_PORT DEVNET_SENTINEL1_PORT DEVNET_SENTINEL2_PORT DEVNET_SENTINEL3_PORT
  DEVNET_M2_PG_PORT DEVNET_M2_ENGINE DEVNET_M2_RPC DEVNET_M2_HEALTH DEVNET_M2_API DEVNET_M2_P2P)
read -ra PORTS <<<"$(free_ports "${#VARS[@]}")"
((${#PORTS[@]} == ${#VARS[@]})) || die "could not find ${#VARS[@]} free ports"
for i in "${!VARS[@]}"; do export "${VARS[$i]}=${PORTS[$i]}"; done
HEALTH_PORTS=("$DEVNET_L1_HEALTH" "$DEVNET_L2_HEALTH" "$DEVNET_M1_HEALTH" "$DEVNET_M2_HEALTH")

# status_line: the newest plain status line of the live table.
status_line() { grep '^[0-9][0-9]:[0-9][0-9]:[0-9][0-9] chain head' "$OUT" | tail -n 1; }
# row NAME: that service's part of the newest status line ("pg-1 primary ok (...)").
row() { status_line | tr '|' '\n' | sed 's/^ *//; s/ *$//' | grep "^$1 " | head -n 1; }
# wait_row NAME REGEX BOUND_S: until NAME's row matches REGEX, else fail.
wait_row() {
  local t0
  t0=$(now_s)
  until [[ $(row "$1") =~ $2 ]]; do
    (($(now_s) - t0 < $3)) || fail "the live table's $1 row is '$(row "$1")', not /$2/, after $3 s"
    sleep 1
  done
}

# head_now: the committed head as leader-1's or leader-2's sync API serves it.
head_now() { latest "$DEVNET_L1_API" 2>/dev/null || latest "$DEVNET_L2_API" 2>/dev/null; }
block_hash() { json "http://127.0.0.1:$DEVNET_L1_API/blocks/$1" 'j["block_hash"]' 2>/dev/null || json "http://127.0.0.1:$DEVNET_L2_API/blocks/$1" 'j["block_hash"]'; }

# production_pause HEIGHT WINDOW_S BOUND_S: watch the committed head (every 0.2 s) from now until
# it is 2 past HEIGHT and WINDOW_S have passed (the leader may commit a block or two on the lease
# it holds before the pause); print the longest time it did not grow, in seconds to a tenth. Fail
# when it is not 2 past HEIGHT within BOUND_S.
production_pause() {
  local t0 h last_h='' changed longest=0 now
  t0=$(now_ms)
  changed=$t0
  while :; do
    now=$(now_ms)
    if h=$(head_now) && [[ $h != "$last_h" ]]; then
      ((now - changed <= longest)) || longest=$((now - changed))
      last_h=$h changed=$now
    fi
    if [[ -n $h ]] && ((h >= $1 + 2 && now - t0 >= $2 * 1000)); then break; fi
    ((now - t0 < $3 * 1000)) || fail "no block committed past $1 within $3 s (head ${h:-none})"
    sleep 0.2
  done
  awk -v ms="$longest" 'BEGIN { printf "%.1f", ms / 1000 }'
}

# fail_over PART WINDOW_S BOUND_S: SIGKILL PART (devnet-ha.sh kill) with the committed head at
# KILLED_AT; PAUSE_S is the longest production pause after it (production_pause WINDOW_S
# BOUND_S); the block at KILLED_AT, committed before the kill, must keep its hash.
KILLED_AT='' PAUSE_S=''
fail_over() {
  local hash
  KILLED_AT=$(head_now) || fail "no sync API answers /blocks/latest before killing $1"
  hash=$(block_hash "$KILLED_AT")
  ha kill "$1" >/dev/null || fail "devnet-ha.sh kill $1 failed"
  PAUSE_S=$(production_pause "$KILLED_AT" "$2" "$3")
  [[ $(block_hash "$KILLED_AT") == "$hash" ]] ||
    fail "block $KILLED_AT, committed before $1 was killed, changed: $hash -> $(block_hash "$KILLED_AT")"
}

# check_one_leader WHEN: every clnode answers 200 and exactly one leader-mode node leads. Two
# leading at once fails at once; none (a hand-over to the preferred leader is under way) is
# retried for up to 10 s.
check_one_leader() {
  local port code leaders t0
  t0=$(now_s)
  for port in "${HEALTH_PORTS[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$port/health")
    [[ $code == 200 ]] || fail "$1: /health on :$port answered $code: $(curl -s --max-time 3 "http://127.0.0.1:$port/health")"
  done
  while :; do
    leaders=0
    for port in "$DEVNET_L1_HEALTH" "$DEVNET_L2_HEALTH"; do
      [[ $(json "http://127.0.0.1:$port/health?format=json" 'j["role"]') != leader ]] || leaders=$((leaders + 1))
    done
    ((leaders < 2)) || fail "$1: both leader-mode nodes lead"
    ((leaders == 0)) || break
    (($(now_s) - t0 < 10)) || fail "$1: no leader-mode node leads for 10 s"
    sleep 0.5
  done
  pass "$1: the four clnodes answer /health 200, one leads"
}

# archived_segments: how many WAL segments the primary archived into STATE/archive.
archived_segments() {
  local f n=0
  for f in "$STATE"/archive/*; do [[ ! ${f##*/} =~ ^[0-9A-F]{24}$ ]] || n=$((n + 1)); done
  echo "$n"
}

# --- run ----------------------------------------------------------------------------------
say "state in $STATE, ${#PORTS[@]} ports"
t0=$(now_s)
DEVNET_DIR=$STATE DEVNET_STATUS=plain DEVNET_STATUS_EVERY_S=1 "$KIT_DIR/devnet-ha.sh" >"$OUT" 2>&1 </dev/null &
DEVNET_PID=$!
until grep -q '^devnet: ready:' "$OUT" 2>/dev/null; do
  kill -0 "$DEVNET_PID" 2>/dev/null || fail "devnet-ha.sh exited before it was ready"
  (($(now_s) - t0 < READY_TIMEOUT_S)) || fail "devnet not ready after ${READY_TIMEOUT_S}s"
  sleep 0.5
done
pass "devnet ready after $(($(now_s) - t0))s ($(grep '^devnet: ready:' "$OUT" | sed 's/^devnet: ready: //'))"
read -ra STARTED <<<"$(started_processes "$STATE")"
check_one_leader "at start"

# --- continuous backup: a base backup taken at start, WAL archived by the primary --------------
backups=("$STATE"/backups/*/)
[[ -f ${backups[0]}/PG_VERSION ]] || fail "no base backup in $STATE/backups (see $STATE/logs/backup.log)"
t_archive=$(now_s)
until (($(archived_segments) > 0)); do
  (($(now_s) - t_archive < 20)) || fail "no WAL segment archived in $STATE/archive"
  sleep 0.5
done
pass "base backup ${backups[0]#"$STATE"/}, WAL archived: $(archived_segments) segment(s)"

# --- the live table: a row per service, with its role ---------------------------------------
wait_row etcd '^etcd leader ok' 20
wait_row pg-1 '^pg-1 (primary|sync standby) ok' 20
wait_row pg-2 '^pg-2 (primary|sync standby) ok' 20
[[ "$(row pg-1) $(row pg-2)" == *primary* ]] || fail "no Patroni member is primary: $(row pg-1); $(row pg-2)"
wait_row redis-1 '^redis-1 master ok' 20
wait_row redis-2 "^redis-2 replica ok \(of 127.0.0.1:$DEVNET_REDIS_PORT, link connected\)" 20
for i in 1 2 3; do wait_row "sentinel-$i" "^sentinel-$i sentinel ok \(sees master 127.0.0.1:$DEVNET_REDIS_PORT" 20; done
wait_row pgbouncer '^pgbouncer pool ok' 20
wait_row haproxy '^haproxy balancer ok .*members: member-1 UP, member-2 UP' 30
wait_row prometheus '^prometheus monitor ok' 20
[[ $(status_line) == *"4/4 targets up"* ]] || fail "Prometheus does not scrape the four clnodes: $(status_line | grep -o 'prometheus http[^|]*')"
pass "the live table: $(row pg-1); $(row pg-2); $(row redis-1); $(row haproxy)"

b0=$(head_now) || fail "no sync API answers /blocks/latest"
sleep 4
b1=$(head_now) || fail "no sync API answers /blocks/latest"
((b1 > b0)) || fail "no block committed in 4 s: /blocks/latest stayed at $b0"
via_lb=$(rpc "$DEVNET_MEMBERS_RPC" eth_blockNumber '[]') || fail "the members' RPC through HAProxy (:$DEVNET_MEMBERS_RPC) does not answer"
[[ $via_lb =~ ^\"0x[0-9a-f]+\"$ ]] || fail "eth_blockNumber through HAProxy answered $via_lb"
pass "blocks committed ($b0 -> $b1 in 4 s); the members' RPC through HAProxy answers eth_blockNumber $via_lb"

# --- the tour: kill the PostgreSQL primary ----------------------------------------------------
primary=$(ha pg-primary) || fail "devnet-ha.sh pg-primary named nobody"
if [[ $primary == pg-1 ]]; then other=pg-2; else other=pg-1; fi
fail_over "$primary" 0 "$PG_FAILOVER_BOUND_S"
h_pg=$KILLED_AT
[[ $(ha pg-primary 2>/dev/null) == "$other" ]] || fail "after killing $primary, devnet-ha.sh pg-primary does not name $other"
pass "killed the PostgreSQL primary $primary (head $h_pg): $other is primary, production paused ${PAUSE_S}s, block $h_pg kept"
wait_row "$primary" "^$primary down" 10
ha restart "$primary" >/dev/null || fail "devnet-ha.sh restart $primary failed"
STARTED+=("$(<"$STATE/pids/$primary")")
wait_row "$primary" "^$primary (sync standby|replica) ok" "$REJOIN_BOUND_S"
pass "devnet-ha.sh restart $primary: it rejoined as $(row "$primary" | cut -d' ' -f2-3)"
check_one_leader "after the PostgreSQL failover"

# --- the tour: kill the Redis master ----------------------------------------------------------
master=$(ha redis-master) || fail "devnet-ha.sh redis-master named nobody"
if [[ $master == redis-1 ]]; then replica=redis-2; else replica=redis-1; fi
fail_over "$master" 10 "$REDIS_FAILOVER_BOUND_S"
h_redis=$KILLED_AT
t_master=$(now_s)
until [[ $(ha redis-master 2>/dev/null) == "$replica" ]]; do
  (($(now_s) - t_master < 10)) || fail "the sentinels do not name $replica as master"
  sleep 0.5
done
pass "killed the Redis master $master (head $h_redis): the sentinels name $replica, production paused ${PAUSE_S}s, block $h_redis kept"
sleep 3
check_one_leader "after the Redis failover"

# --- no fork: every geth holds the block the sync API serves, across both faults --------------
h_end=$(head_now)
for n in $((h_pg - 1)) "$h_pg" $((h_pg + 1)) "$h_redis" $((h_redis + 1)) $((h_end - 3)); do
  want=$(block_hash "$n") || fail "the sync API does not serve block $n"
  for rpc_port in "$DEVNET_L1_RPC" "$DEVNET_L2_RPC" "$DEVNET_M1_RPC" "$DEVNET_M2_RPC"; do
    got=$(rpc "$rpc_port" eth_getBlockByNumber "[\"$(printf '0x%x' "$n")\", false]" |
      python3 -c 'import json, sys; b = json.load(sys.stdin); print(b["hash"] if b else "")')
    [[ $got == "$want" ]] || fail "block $n: the geth on :$rpc_port holds '${got}', the sync API serves $want"
  done
done
pass "no fork: the four geths hold the sync API's block at heights $((h_pg - 1))..$((h_pg + 1)), $h_redis, $((h_redis + 1)), $((h_end - 3))"

# --- stop -------------------------------------------------------------------------------------
kill -TERM "$DEVNET_PID"
rc=0
wait "$DEVNET_PID" || rc=$?
DEVNET_PID=
((rc == 143)) || fail "devnet-ha.sh exited with status $rc after SIGTERM (143 expected)"
grep -q '^devnet: stopped etcd' "$OUT" || fail "devnet-ha.sh did not report stopping etcd"
pass "devnet-ha.sh stopped everything on SIGTERM (exit 143)"
check_nothing_left "$STATE" "${STARTED[*]}" "${VARS[*]}"
check_clnode_logs "$STATE"
say "PASS in $(($(now_s) - t0))s"
