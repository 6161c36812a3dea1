#!/usr/bin/env bash
# devnet.sh [run|run-ha|stop|clean|...] — a local clnode cluster in the foreground (what `make run`
# and `make run-ha` run).
#
#   run (default)  build clnode (cargo build --release), start Redis, the leaders' PostgreSQL,
#                  one geth per node on genesis/osaka.json (the geths peer with each other
#                  over devp2p on 127.0.0.1, so a transaction sent to any of them reaches the
#                  leader's), clnode leader-1 and leader-2 (--preferred-leaders leader-1,leader-2:
#                  leader-1 leads once ready, and again after a failover) (and member-1 with its
#                  own geth and PostgreSQL), one transaction load generator per geth, Prometheus
#                  scraping every clnode with deploy/prometheus/alerts.yml loaded (its URL is
#                  printed), then show a live status table until Ctrl-C / SIGTERM /
#                  DEVNET_DURATION_S, and stop everything it started.
#   run-ha         the replicated topology (scripts/lib/devnet_ha.sh; `make run-ha`, through
#                  scripts/devnet-ha.sh, whose state dir is <repo>/.devnet-ha): etcd, two
#                  Patroni-managed PostgreSQL (synchronous), two Redis watched by three sentinels,
#                  PgBouncer, HAProxy (in front of the PostgreSQL primary and of the members' RPC),
#                  leader-1 and leader-2 (through PgBouncer and the sentinels), member-1 and member-2,
#                  Prometheus; the live table adds a row per service with its role and health.
#   stop           stop a devnet of this DEVNET_DIR that is still running (e.g. after the
#                  script itself was SIGKILLed and left its servers behind).
#   clean          remove DEVNET_DIR (refused while a devnet from it runs).
#   leader         print the name of the node that leads now (leader-1 or leader-2), from their
#                  /health; exit 1 with a line when none does (e.g. during a failover).
#   pg-primary     (run-ha) print the Patroni member whose PostgreSQL is the primary now (pg-1 or
#                  pg-2), from Patroni's REST API; exit 1 with a line when none is.
#   redis-master   (run-ha) print the Redis the sentinels name as master now (redis-1 or redis-2).
#   kill NAME      SIGKILL NAME as a host crash would: its process group and, for a Patroni member,
#                  the PostgreSQL it runs (Patroni starts it in a session of its own).
#   restart NAME   start NAME (leader-1, geth-l2, redis, pg-leader, member-1, ...) again with the
#                  command line the running devnet started it with (cmds/NAME), after it was
#                  killed; its pid file is rewritten, so Ctrl-C of the devnet stops it too.
#
# All state lives in DEVNET_DIR (default <repo>/.devnet): data dirs, logs/*.log, jwt/*.hex,
# signing/leader.key (the devnet's block-signing key, made once by `clnode keygen`; both
# leaders sign with it) and signing/leader.pub (its public key, which member-1 pins),
# pids/<name> (one PID per file, e.g. `kill -9 $(cat .devnet/pids/$(scripts/devnet.sh leader))`),
# cmds/<name> (each command line, for restart), nodes (names and health ports, for leader).
# A second run on the same directory resumes the same chain.
#
# Environment (defaults in brackets; every port binds to 127.0.0.1):
#   DEVNET_DIR              state directory [<repo>/.devnet]
#   DEVNET_DURATION_S       stop after this many seconds once ready; 0 = run until signalled [0]
#   DEVNET_MEMBER           1 = also start member-1 with its own geth and PostgreSQL [1]
#   DEVNET_PEERING          1 = the geths peer with each other (devp2p on 127.0.0.1, static
#                           peers, no discovery); 0 = isolated geths, as before issue 15:
#                           a transaction waits in the pool it was sent to [1]
#   DEVNET_TX_RATE          transactions per second of each load generator; 0 = no load (and
#                           no blocks: clnode makes no empty blocks by default) [5]
#   DEVNET_PROMETHEUS       1 = also start Prometheus (scripts/prometheus.sh; data in DIR/prometheus) [1]
#   DEVNET_BUILD            0 = skip `cargo build --release` [1]
#   CLNODE_BIN              clnode binary [<repo>/target/release/clnode]
#   DEVNET_CLNODE_FLAGS     extra flags for every clnode, split on spaces (e.g. "--lease-ttl 3s")
#   DEVNET_READY_TIMEOUT_S  seconds each readiness wait may take [60]
#   DEVNET_STATUS           tty | plain | off: live table, a line every few seconds, or none
#                           [tty when stdout is a terminal, else plain]
#   DEVNET_STATUS_EVERY_S   seconds between plain status lines [5]
#   Ports:
#   DEVNET_REDIS_PORT [6379]     DEVNET_PG_PORT [5432]        DEVNET_M1_PG_PORT [5433]
#   DEVNET_L1_ENGINE [8551]      DEVNET_L1_RPC [8545]         (geth of leader-1)
#   DEVNET_L2_ENGINE [8561]      DEVNET_L2_RPC [8555]         (geth of leader-2)
#   DEVNET_M1_ENGINE [8552]      DEVNET_M1_RPC [8546]         (geth of member-1)
#   DEVNET_L1_HEALTH [8080]      DEVNET_L1_API [8090]         (clnode leader-1)
#   DEVNET_L2_HEALTH [8082]      DEVNET_L2_API [8092]         (clnode leader-2)
#   DEVNET_M1_HEALTH [8081]      DEVNET_M1_API [8091]         (clnode member-1)
#   DEVNET_L1_P2P [30311]   DEVNET_L2_P2P [30312]   DEVNET_M1_P2P [30313]   (geth devp2p, TCP)
#   DEVNET_PROM_PORT [9095]      (Prometheus; not 9090, where a system Prometheus may run)
#   run-ha also uses (not DEVNET_PG_PORT): DEVNET_ETCD_PORT [2479] DEVNET_ETCD_PEER_PORT [2480]
#   DEVNET_PG1_PORT [5441] DEVNET_PG1_REST [8018] DEVNET_PG2_PORT [5442] DEVNET_PG2_REST [8019]
#   (Patroni pg-1, pg-2: PostgreSQL, REST API)   DEVNET_PG_PRIMARY_PORT [5440] (HAProxy: the
#   primary)   DEVNET_PGBOUNCER_PORT [6442]   DEVNET_MEMBERS_RPC [8645] (HAProxy: the members'
#   RPC)   DEVNET_REDIS2_PORT [6380]   DEVNET_SENTINEL{1,2,3}_PORT [26479, 26480, 26481]
#   member-2: DEVNET_M2_PG_PORT [5435] DEVNET_M2_ENGINE [8572] DEVNET_M2_RPC [8566]
#   DEVNET_M2_HEALTH [8083] DEVNET_M2_API [8093] DEVNET_M2_P2P [30314]
#
# Exit status: 0 after DEVNET_DURATION_S, Ctrl-C (SIGINT) or a clean `stop`/`clean`; 143/129
# after SIGTERM/SIGHUP (everything stopped); 1 when something could not start (nothing left
# running).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
SELF=$KIT_DIR/devnet.sh

# --- configuration -----------------------------------------------------------------------
# scripts/devnet-ha.sh runs this script with its own default state dir and its own name (for the
# hints it prints).
DEFAULT_DIR=$(abspath "${DEVNET_DEFAULT_DIR:-$REPO_ROOT/.devnet}")
HELPER=${DEVNET_HELPER:-$SELF}
DIR=$(abspath "${DEVNET_DIR:-$DEFAULT_DIR}")
DIR=${DIR%/}
DURATION_S=${DEVNET_DURATION_S:-0}
MEMBER=${DEVNET_MEMBER:-1}
TX_RATE=${DEVNET_TX_RATE:-5}
PEERING=${DEVNET_PEERING:-1}
PROMETHEUS=${DEVNET_PROMETHEUS:-1}
BUILD=${DEVNET_BUILD:-1}
CLNODE=${CLNODE_BIN:-$REPO_ROOT/target/release/clnode}
READY_TIMEOUT_S=${DEVNET_READY_TIMEOUT_S:-60}
STATUS_EVERY_S=${DEVNET_STATUS_EVERY_S:-5}
GENESIS=$KIT_DIR/genesis/osaka.json

# Port variables and defaults (ENV_VAR:DEFAULT); load_ports sets each ENV_VAR.
PORT_VARS=(
  DEVNET_REDIS_PORT:6379 DEVNET_PG_PORT:5432
  DEVNET_L1_ENGINE:8551 DEVNET_L1_RPC:8545 DEVNET_L2_ENGINE:8561 DEVNET_L2_RPC:8555
  DEVNET_L1_HEALTH:8080 DEVNET_L1_API:8090 DEVNET_L2_HEALTH:8082 DEVNET_L2_API:8092
  DEVNET_L1_P2P:30311 DEVNET_L2_P2P:30312
)
MEMBER_PORT_VARS=(
  DEVNET_M1_PG_PORT:5433 DEVNET_M1_ENGINE:8552 DEVNET_M1_RPC:8546
  DEVNET_M1_HEALTH:8081 DEVNET_M1_API:8091 DEVNET_M1_P2P:30313
)
PROM_PORT_VARS=(DEVNET_PROM_PORT:9095)
# run-ha's own ports (scripts/lib/devnet_ha.sh); it uses PORT_VARS and MEMBER_PORT_VARS too,
# apart from DEVNET_PG_PORT (its PostgreSQL is the Patroni pair behind HAProxy and PgBouncer).
# Not the standard ports of etcd (2379), Patroni (8008), PgBouncer (6432) or Sentinel (26379):
# Debian's packages of these start system services there where an init system runs.
HA_PORT_VARS=(
  DEVNET_ETCD_PORT:2479 DEVNET_ETCD_PEER_PORT:2480
  DEVNET_PG1_PORT:5441 DEVNET_PG1_REST:8018 DEVNET_PG2_PORT:5442 DEVNET_PG2_REST:8019
  DEVNET_PG_PRIMARY_PORT:5440 DEVNET_PGBOUNCER_PORT:6442 DEVNET_MEMBERS_RPC:8645
  DEVNET_REDIS2_PORT:6380 DEVNET_SENTINEL1_PORT:26479 DEVNET_SENTINEL2_PORT:26480
  DEVNET_SENTINEL3_PORT:26481
  DEVNET_M2_PG_PORT:5435 DEVNET_M2_ENGINE:8572 DEVNET_M2_RPC:8566
  DEVNET_M2_HEALTH:8083 DEVNET_M2_API:8093 DEVNET_M2_P2P:30314
)

# Dev keys from the `test test … junk` mnemonic (prefunded in the genesis alloc). Each geth
# gets its own sender so the two load generators never compete for nonces.
KEY_L1=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 # 0xf39F…2266
KEY_L2=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a # 0x3C44…93BC
KEY_M1=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d # 0x7099…79C8

# Stop order: what uses a service stops before the service. Each entry: SIGNAL:NAMES.
# PostgreSQL gets SIGINT (fast shutdown: no waiting for clients); the rest SIGTERM.
# Names only run-ha starts are skipped when not running. Patroni (pg-1, pg-2) stops its own
# PostgreSQL on SIGTERM, before etcd, which holds its leader key, stops.
STOP_STAGES=(
  "TERM:status prometheus"
  "TERM:member-1 member-2 leader-1 leader-2"
  "TERM:haproxy pgbouncer"
  "TERM:loadgen-1 loadgen-2 loadgen-m1"
  "TERM:geth-l1 geth-l2 geth-m1 geth-m2"
  "INT:pg-leader pg-member pg-member-2"
  "TERM:pg-1 pg-2"
  "TERM:sentinel-1 sentinel-2 sentinel-3"
  "TERM:redis redis-1 redis-2"
  "TERM:etcd"
)
STOP_TIMEOUT_S=30 # per stage, then SIGKILL to the process group

# shellcheck source-path=SCRIPTDIR source=lib/devnet_ha.sh
. "$KIT_DIR/lib/devnet_ha.sh"

say() { printf 'devnet: %s\n' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
elapsed_s() { awk -v ms=$(($(now_ms) - $1)) 'BEGIN { printf "%.1f", ms / 1000 }'; }

load_ports() {
  local spec var
  for spec in "${PORT_VARS[@]}" "${MEMBER_PORT_VARS[@]}" "${PROM_PORT_VARS[@]}" "${HA_PORT_VARS[@]}"; do
    var=${spec%%:*}
    printf -v "$var" '%s' "${!var:-${spec#*:}}"
    require_port "$var" "${!var}"
  done
}

# --- processes and pid files ---------------------------------------------------------------

# The program a pid file's process must be running (guards against a reused PID).
expected_program() {
  case $1 in
    devnet | loadgen-*) echo devnet.sh ;;
    status) echo python3 ;;
    prometheus) echo prometheus ;;
    redis | redis-[0-9]) echo redis-server ;;
    sentinel-*) echo redis-sentinel ;;
    pg-[0-9]) echo patroni ;;
    pg-*) echo postgres ;;
    etcd | pgbouncer | haproxy) echo "$1" ;;
    geth-*) echo geth ;;
    *) echo clnode ;;
  esac
}

# alive PID: the process exists and is not a zombie.
alive() {
  local state
  [[ -r /proc/$1/stat ]] || return 1
  state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# live_pid NAME: print the PID in pids/NAME if that process is alive and is what we started.
live_pid() {
  local file=$DIR/pids/$1 pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(expected_program "$1")" || return 1
  echo "$pid"
}

# running_list: "name(pid) ..." for every live process recorded in pids/.
running_list() {
  local file name pid out=()
  for file in "$DIR"/pids/*; do
    [[ -f $file ]] || continue
    name=${file##*/}
    if pid=$(live_pid "$name"); then out+=("$name($pid)"); fi
  done
  echo "${out[*]}"
}

# start NAME COMMAND...: run COMMAND in its own session (so a Ctrl-C in the terminal reaches
# only this script, which then stops everything in order), logging to logs/NAME.log.
# setsid does not fork here (a background job is not a group leader) and the launchers exec
# their server, so $! is the server's PID and also its process group id.
declare -A PID=()

# launch NAME COMMAND...: start COMMAND in its own session, appending to logs/NAME.log; write
# pids/NAME and set LAUNCHED to the PID.
LAUNCHED=
launch() {
  local name=$1
  shift
  echo "=== $(date -u +%FT%TZ) devnet.sh starts $name: $*" >>"$DIR/logs/$name.log"
  setsid "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  LAUNCHED=$!
  echo "$LAUNCHED" >"$DIR/pids/$name"
}

start() {
  local name=$1
  shift
  # The command line, for `devnet.sh restart NAME` (quoted so that it reads back word for word).
  printf '%q ' "$@" >"$DIR/cmds/$name"
  launch "$name" "$@"
  PID[$name]=$LAUNCHED
  # Stay quiet when a process is killed on purpose ("line N: PID Killed ..."); bash still
  # reaps it, and stopping goes by PID, not by job.
  disown "$!"
}

# stop_stage SIGNAL NAME...: signal every live one, wait up to STOP_TIMEOUT_S, then SIGKILL
# the process group of whatever is left. Works for our children and for orphans alike.
stop_stage() {
  local sig=$1 name pid deadline
  shift
  local pids=() names=()
  for name in "$@"; do
    pid=$(live_pid "$name") || { rm -f "$DIR/pids/$name"; continue; }
    pids+=("$pid") names+=("$name")
    # Load generators are a bash loop plus node: signal the whole group.
    if [[ $name == loadgen-* ]]; then kill -"$sig" -- "-$pid" 2>/dev/null || true; else kill -"$sig" "$pid" 2>/dev/null || true; fi
  done
  ((${#pids[@]})) || return 0
  local t0
  t0=$(now_ms)
  deadline=$((t0 + STOP_TIMEOUT_S * 1000))
  local i left took=()
  while :; do
    left=()
    for i in "${!pids[@]}"; do
      if alive "${pids[$i]}"; then
        left+=("${names[$i]}(${pids[$i]})")
      elif [[ -z ${took[$i]:-} ]]; then
        took[i]="$(elapsed_s "$t0")s"
      fi
    done
    ((${#left[@]})) || break
    if (($(now_ms) >= deadline)); then
      echo "devnet: ${left[*]} did not stop within ${STOP_TIMEOUT_S}s after SIG$sig; sending SIGKILL" >&2
      for i in "${!pids[@]}"; do kill -KILL -- "-${pids[$i]}" 2>/dev/null || kill -KILL "${pids[$i]}" 2>/dev/null || true; done
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  for name in "${names[@]}"; do rm -f "$DIR/pids/$name"; done
  local done=()
  for i in "${!names[@]}"; do done+=("${names[$i]} (${took[$i]:-SIGKILL})"); done
  say "stopped ${done[*]}"
}

stop_everything() {
  local stage
  for stage in "${STOP_STAGES[@]}"; do
    # shellcheck disable=SC2086  # the names are a space-separated list on purpose
    stop_stage "${stage%%:*}" ${stage#*:}
  done
}

# --- checks before starting anything ------------------------------------------------------

refuse_if_running() {
  local running
  running=$(running_list)
  [[ -z $running ]] && return 0
  local rel=${DIR#"$PWD"/}
  die "a devnet from $rel is still running: $running. Stop it first (Ctrl-C in its terminal, or scripts/devnet.sh stop)."
}

# port_vars SPEC...: the variable names of ENV_VAR:DEFAULT specs, one per line.
port_vars() { local spec; for spec in "$@"; do echo "${spec%%:*}"; done; }

# check_ports VAR...: the ports in these variables must be distinct and free on 127.0.0.1, else
# one line naming the port and its variable, exit 1. Binding (with SO_REUSEADDR, as the servers
# do) is what the servers will do, so it catches listeners on 0.0.0.0 and [::] too.
check_ports() {
  local specs=("$@") var other
  local args=()
  declare -A owner=()
  for var in "${specs[@]}"; do
    other=${owner[${!var}]:-}
    [[ -z $other ]] || die "port ${!var} is given to both $other and $var; give each DEVNET_* port its own value"
    owner[${!var}]=$var
    args+=("$var=${!var}")
  done
  local taken
  taken=$(python3 - "${args[@]}" <<'PY'
import socket, sys
for arg in sys.argv[1:]:
    var, port = arg.split("=")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(port)))
    except OSError:
        print(f"{port} ({var})")
    finally:
        s.close()
PY
  )
  [[ -z $taken ]] || die "already in use: $(echo "$taken" | paste -sd, - | sed 's/,/, /g'). Nothing was started; free the port or set that variable to another port."
}

# --- readiness ------------------------------------------------------------------------------

# health_json PORT: /health?format=json of a clnode, or nothing.
health_json() { curl -s --max-time 1 "http://127.0.0.1:$1/health?format=json" 2>/dev/null || true; }

# json_get FIELD: read JSON on stdin, print FIELD (dotted path) or nothing.
json_get() {
  python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].split("."):
        v = v[k]
    print("" if v is None else v)
except Exception:
    pass' "$1"
}

# wait_until TIMEOUT_S WHAT COMMAND...: retry COMMAND every 0.2 s; fail naming WHAT.
wait_until() {
  local timeout_s=$1 what=$2
  shift 2
  local deadline=$(($(now_ms) + timeout_s * 1000))
  until "$@"; do
    (($(now_ms) < deadline)) || die "timed out after ${timeout_s}s waiting for $what (see $DIR/logs/)"
    sleep 0.2
  done
}

require_alive() {
  alive "${PID[$1]}" || die "$1 exited during startup; last lines of $DIR/logs/$1.log:
$(tail -n 5 "$DIR/logs/$1.log" | sed 's/^/  /')"
}

wait_port() { # wait_port NAME PORT
  require_alive "$1"
  "$KIT_DIR/wait-port.sh" 127.0.0.1 "$2" "$READY_TIMEOUT_S" || die "$1 did not open port $2 (see $DIR/logs/$1.log)"
}

pg_ready() { require_alive "$1" && "$PG_BINDIR_/pg_isready" -q -h 127.0.0.1 -p "$2" -U postgres -d postgres -t 1; }

has_role() { # has_role NAME PORT ROLE_REGEX
  require_alive "$1"
  local role
  role=$(health_json "$2" | json_get role)
  [[ $role =~ ^($3)$ ]]
}

any_leader() {
  local p
  for p in "$DEVNET_L1_HEALTH" "$DEVNET_L2_HEALTH"; do
    [[ $(health_json "$p" | json_get role) == leader ]] && return 0
  done
  return 1
}

prometheus_ready() {
  require_alive prometheus && curl -sf --max-time 1 "http://127.0.0.1:$DEVNET_PROM_PORT/-/ready" >/dev/null 2>&1
}

first_block() { curl -sf --max-time 1 "http://127.0.0.1:$DEVNET_L1_API/blocks/latest" >/dev/null 2>&1; }

# --- the load generator supervisor (runs as `devnet.sh __loadgen NAME RPC KEY RATE`) ------
# sendtx.mjs exits when its geth is unreachable at start (or after 24 h); a devnet where
# nodes get killed on purpose must not lose its load, so restart it after a short pause.
loadgen_main() {
  local name=$1 rpc=$2 key=$3 rate=$4 rc
  # Stopping signals the whole process group. Without this trap bash would die at once and
  # leave node to be reaped by init; with it bash first waits for node, then exits.
  trap 'exit 0' TERM INT
  while :; do
    rc=0
    node "$KIT_DIR/node/sendtx.mjs" --rpc "$rpc" --key "$key" --duration-s 86400 --rate "$rate" || rc=$?
    echo "$(date -u +%FT%TZ) $name: sendtx.mjs exited with status $rc; restarting in 2 s"
    sleep 2
  done
}

# --- the status monitor (scripts/lib/devnet_status.py) ----------------------------------------
start_status() { # start_status MODE NODE_SPEC... -- HINT_LINE...
  local mode=$1
  shift
  [[ $mode != off ]] || return 0
  DEVNET_PROM_URL=$PROM_URL python3 "$KIT_DIR/lib/devnet_status.py" "$DIR" "$mode" "$STATUS_EVERY_S" "$DURATION_S" "$(date +%s)" "$@" \
    2>>"$DIR/logs/status.log" &
  PID[status]=$!
  echo "$!" >"$DIR/pids/status"
  disown "$!"
}

# --- run ----------------------------------------------------------------------------------

# on_exit: stop whatever this run started (runs once, for errors, signals and the normal end).
PROM_URL=
STOPPING=0
on_exit() {
  local rc=$?
  ((STOPPING)) && return
  STOPPING=1
  set +e
  trap '' INT TERM HUP # a second Ctrl-C must not cut the ordered stop short
  rm -f "$DIR/pids/devnet"
  if ((${#PID[@]})); then
    echo
    say "stopping (Prometheus and clnode first, then load, geth, PostgreSQL, Redis) ..."
    stop_everything
    local left
    left=$(running_list)
    [[ -z $left ]] || echo "devnet: still running after stop: $left" >&2
  fi
  exit "$rc"
}

build() {
  ((BUILD)) || { [[ -x $CLNODE ]] || die "DEVNET_BUILD=0 but $CLNODE does not exist"; return 0; }
  local t0
  t0=$(now_ms)
  # Cargo's own progress (a line per crate, and its progress bar on a terminal): a first
  # build takes a minute or more, which must not look like a hang.
  say "building clnode (cargo build --release; a first build takes a minute or two) ..."
  # The commit goes into clnode_build_info (src/metrics.rs); none outside a git checkout.
  (cd "$REPO_ROOT" && CLNODE_GIT_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || true) cargo build --release) ||
    die "cargo build --release failed"
  [[ -x $CLNODE ]] || die "no clnode binary at $CLNODE after the build"
  say "build done in $(elapsed_s "$t0")s"
}

# signing_keys: the devnet's block-signing key pair, made once (a second run resumes the
# chain, so it keeps the key its blocks were signed with).
signing_keys() {
  mkdir -p "$DIR/signing"
  chmod 700 "$DIR/signing"
  if [[ ! -s $DIR/signing/leader.key ]]; then
    rm -f "$DIR/signing/leader.key"
    "$CLNODE" keygen "$DIR/signing/leader.key" >"$DIR/signing/leader.pub" || die "clnode keygen failed"
  else
    "$CLNODE" keygen --public "$DIR/signing/leader.key" >"$DIR/signing/leader.pub" ||
      die "$DIR/signing/leader.key is not a signing key (make clean starts over)"
  fi
  # The leaders' --admin-token (clnode admin): 32 random bytes in hex, made once.
  if [[ ! -s $DIR/signing/admin.token ]]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$DIR/signing/admin.token") ||
      die "cannot write $DIR/signing/admin.token"
  fi
}

# geth_peering NAME:P2P_PORT...: P2P_ADDR[NAME] and P2P_PEERS[NAME], the EL_P2P_ADDR and EL_PEERS
# that make each of these geths peer with the others: its own devp2p address and their enode
# URLs (scripts/enode.sh makes each node key once, in the geth's data directory). With
# DEVNET_PEERING=0 both are empty: devp2p off.
declare -A P2P_ADDR=() P2P_PEERS=()
geth_peering() {
  local names=() ports=() spec i j peers
  for spec in "$@"; do names+=("${spec%%:*}") ports+=("${spec#*:}"); done
  local enodes=()
  for i in "${!names[@]}"; do
    P2P_ADDR[${names[$i]}]="" P2P_PEERS[${names[$i]}]=""
    ((PEERING)) || continue
    enodes[i]=$("$KIT_DIR/enode.sh" "$DIR/${names[$i]}" "127.0.0.1:${ports[$i]}") || die "enode.sh failed for ${names[$i]}"
  done
  ((PEERING)) || return 0
  for i in "${!names[@]}"; do
    peers=()
    for j in "${!names[@]}"; do ((i == j)) || peers+=("${enodes[$j]}"); done
    P2P_ADDR[${names[$i]}]=127.0.0.1:${ports[$i]}
    P2P_PEERS[${names[$i]}]=$(IFS=,; echo "${peers[*]}")
  done
}

# start_geth NAME JWT_NAME ENGINE RPC: one geth on the devnet's genesis (peering from geth_peering).
start_geth() {
  start "$1" env "EL_P2P_ADDR=${P2P_ADDR[$1]}" "EL_PEERS=${P2P_PEERS[$1]}" \
    "$KIT_DIR/geth.sh" "$DIR/$1" "$GENESIS" "$DIR/jwt/$2.hex" "$3" "$4"
}

# leader_node NAME HEALTH API ENGINE: start one leader-mode clnode, on the shared PostgreSQL and
# Redis that LEADER_STORE_FLAGS name (--postgres-url and the Redis flags of this topology).
LEADER_STORE_FLAGS=()
leader_node() {
  start "$1" "$CLNODE" --instance-id "$1" --mode leader \
    --eth-client-url "http://127.0.0.1:$4" --jwt-secret-file "$DIR/jwt/$1.hex" \
    --signing-key-file "$DIR/signing/leader.key" "${LEADER_STORE_FLAGS[@]}" \
    --preferred-leaders leader-1,leader-2 --admin-token "@$DIR/signing/admin.token" \
    --health-addr ":$2" --api-addr ":$3" "${EXTRA_FLAGS[@]}"
}

# member_node NAME HEALTH API ENGINE PG_PORT: start one member, replaying the chain from both
# leaders' sync APIs (tried in order) into its own PostgreSQL on PG_PORT.
member_node() {
  start "$1" "$CLNODE" --instance-id "$1" --mode member \
    --leader-url "http://127.0.0.1:$DEVNET_L1_API,http://127.0.0.1:$DEVNET_L2_API" \
    --eth-client-url "http://127.0.0.1:$4" --jwt-secret-file "$DIR/jwt/$1.hex" \
    --leader-public-key "$(<"$DIR/signing/leader.pub")" \
    --postgres-url "postgres://postgres@127.0.0.1:$5/postgres" \
    --health-addr ":$2" --api-addr ":$3" "${EXTRA_FLAGS[@]}"
}

# prepare_run PORT_VAR... -- NODE...: check the settings, refuse to start over a running devnet
# or a taken port (of these variables), build clnode, set the traps that stop everything, make
# each NODE's JWT secret and the signing keys. Nothing is started before its checks pass. Sets
# EXTRA_FLAGS, STATUS_MODE and PG_BINDIR_.
STATUS_MODE=
prepare_run() {
  local ports=() nodes=()
  while (($#)) && [[ $1 != -- ]]; do ports+=("$1") && shift; done
  shift
  nodes=("$@")
  [[ $DURATION_S =~ ^[0-9]+$ ]] || die "DEVNET_DURATION_S must be a whole number of seconds, got '$DURATION_S'"
  [[ $MEMBER =~ ^[01]$ ]] || die "DEVNET_MEMBER must be 0 or 1, got '$MEMBER'"
  [[ $PEERING =~ ^[01]$ ]] || die "DEVNET_PEERING must be 0 or 1, got '$PEERING'"
  [[ $PROMETHEUS =~ ^[01]$ ]] || die "DEVNET_PROMETHEUS must be 0 or 1, got '$PROMETHEUS'"
  [[ $TX_RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "DEVNET_TX_RATE must be a number, got '$TX_RATE'"
  [[ $READY_TIMEOUT_S =~ ^[1-9][0-9]*$ ]] || die "DEVNET_READY_TIMEOUT_S must be a positive whole number, got '$READY_TIMEOUT_S'"
  read -ra EXTRA_FLAGS <<<"${DEVNET_CLNODE_FLAGS:-}"
  STATUS_MODE=${DEVNET_STATUS:-}
  if [[ -z $STATUS_MODE ]]; then
    STATUS_MODE=plain
    [[ ! -t 1 ]] || STATUS_MODE="tty"
  fi
  [[ $STATUS_MODE =~ ^(tty|plain|off)$ ]] || die "DEVNET_STATUS must be tty, plain or off, got '$STATUS_MODE'"
  command -v setsid >/dev/null || die "setsid (util-linux) not found"
  command -v python3 >/dev/null || die "python3 not found (the status table and port check use it)"
  command -v node >/dev/null || die "node not found (run scripts/deps.sh ejs)"
  PG_BINDIR_=$(pg_bindir) || die "PostgreSQL not found (run scripts/deps.sh postgres)"
  if ((PROMETHEUS)); then command -v prometheus >/dev/null || die "prometheus not found (run scripts/deps.sh prometheus, or DEVNET_PROMETHEUS=0)"; fi

  # Nothing may be started before these two checks pass.
  mkdir -p "$DIR"/{logs,pids,jwt,cmds}
  refuse_if_running
  check_ports "${ports[@]}"
  build
  # The build took time: check again so a port taken meanwhile still gets the clear message.
  refuse_if_running
  check_ports "${ports[@]}"

  trap on_exit EXIT
  # Ctrl-C is how an interactive devnet ends: after the ordered stop it exits 0, so `make run`
  # does not report "Error 130" for a run that ended as intended.
  trap 'exit 0' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  echo "$$" >"$DIR/pids/devnet"

  local n
  for n in "${nodes[@]}"; do "$KIT_DIR/jwt.sh" "$DIR/jwt/$n.hex"; done
  signing_keys
}

# wait_leaders_ready: both leader-mode nodes out of 'starting', one of them holding the lease.
wait_leaders_ready() {
  wait_port leader-1 "$DEVNET_L1_HEALTH"
  wait_port leader-2 "$DEVNET_L2_HEALTH"
  wait_until "$READY_TIMEOUT_S" "leader-1 to leave 'starting'" has_role leader-1 "$DEVNET_L1_HEALTH" 'leader|standby'
  wait_until "$READY_TIMEOUT_S" "leader-2 to leave 'starting'" has_role leader-2 "$DEVNET_L2_HEALTH" 'leader|standby'
  wait_until "$READY_TIMEOUT_S" "one node to take the lease" any_leader
}

# start_load NAME:RPC_PORT:KEY...: one transaction load generator per geth, as users would send
# it (the geths gossip it to whichever one leads; with DEVNET_PEERING=0 each transaction waits
# in its own pool until that node leads), then wait for the first committed block.
start_load() {
  if [[ $TX_RATE =~ ^0*(\.0*)?$ ]]; then
    say "DEVNET_TX_RATE=0: no load generators"
    return 0
  fi
  local spec name rest
  for spec in "$@"; do
    name=${spec%%:*} rest=${spec#*:}
    start "$name" "$SELF" __loadgen "$name" "http://127.0.0.1:${rest%%:*}" "${rest#*:}" "$TX_RATE"
  done
  # No empty blocks by default: the first committed block shows the whole path works.
  wait_until "$READY_TIMEOUT_S" "the first committed block on :$DEVNET_L1_API/blocks/latest" first_block
}

# wait_preferred_leader: leader-1 is preferred: if leader-2 won the first lease, it hands over
# two lease TTLs after leader-1 is ready. Wait for that (bounded; not fatal) so the tour's first
# check, 8080 says isLeader=true, holds when the hints are printed.
wait_preferred_leader() {
  local handover_deadline=$(($(now_ms) + 15000))
  until has_role leader-1 "$DEVNET_L1_HEALTH" leader || (($(now_ms) >= handover_deadline)); do
    sleep 0.2
  done
  has_role leader-1 "$DEVNET_L1_HEALTH" leader || say "leader-1 does not lead yet; $(helper_name) leader names who does"
}

# helper_name: this script as typed from here, the state dir named when it is not the default
# (for the hints).
helper_name() {
  local rel=${DIR#"$PWD"/} me=${HELPER#"$PWD"/}
  [[ $DIR == "${DEFAULT_DIR%/}" ]] || me="DEVNET_DIR=$rel $me"
  echo "$me"
}

# serve T_START T_SERVICES SPEC... -- HINT...: print the hints, start the status table on the
# SPECs (scripts/lib/devnet_status.py) and wait until DEVNET_DURATION_S or a signal.
serve() {
  local t_start=$1 t_services=$2 t_ready
  shift 2
  local specs=() hints
  while (($#)) && [[ $1 != -- ]]; do specs+=("$1") && shift; done
  shift
  hints=("$@")
  t_ready=$(now_ms)
  say "ready: $(elapsed_s "$t_services")s after the build, $(elapsed_s "$t_start")s after start"
  if ((PROMETHEUS)); then say "prometheus: $PROM_URL (scraping every clnode, alerts loaded)"; fi
  printf '%s\n' "${hints[@]}"
  start_status "$STATUS_MODE" "${specs[@]}" -- "${hints[@]}"

  # Sleep in short interruptible waits so Ctrl-C / SIGTERM run the trap at once.
  while ((DURATION_S == 0 || $(now_ms) - t_ready < DURATION_S * 1000)); do
    sleep 1 &
    wait $! || true
  done
  say "DEVNET_DURATION_S=$DURATION_S reached"
  exit 0
}

run() {
  local t_start t_services
  t_start=$(now_ms)
  local ports
  mapfile -t ports < <(port_vars "${PORT_VARS[@]}")
  if ((MEMBER)); then mapfile -t -O "${#ports[@]}" ports < <(port_vars "${MEMBER_PORT_VARS[@]}"); fi
  if ((PROMETHEUS)); then mapfile -t -O "${#ports[@]}" ports < <(port_vars "${PROM_PORT_VARS[@]}"); fi
  prepare_run "${ports[@]}" -- leader-1 leader-2 member-1

  t_services=$(now_ms)
  if ((PROMETHEUS)); then PROM_URL=http://127.0.0.1:$DEVNET_PROM_PORT; fi
  say "starting Redis, PostgreSQL, geth${PROM_URL:+ and Prometheus} in $DIR (logs in $DIR/logs/) ..."
  start redis "$KIT_DIR/redis.sh" "$DIR/redis" "$DEVNET_REDIS_PORT"
  start pg-leader "$KIT_DIR/postgres.sh" "$DIR/pg-leader" "$DEVNET_PG_PORT"
  local geths=(geth-l1:"$DEVNET_L1_P2P" geth-l2:"$DEVNET_L2_P2P")
  if ((MEMBER)); then geths+=(geth-m1:"$DEVNET_M1_P2P"); fi
  geth_peering "${geths[@]}"
  start_geth geth-l1 leader-1 "$DEVNET_L1_ENGINE" "$DEVNET_L1_RPC"
  start_geth geth-l2 leader-2 "$DEVNET_L2_ENGINE" "$DEVNET_L2_RPC"
  # ---- member hook (DEVNET_MEMBER=1): member-1's own geth and PostgreSQL ----
  # Prometheus scrapes each clnode's health address; a node not up yet is a target down.
  if ((PROMETHEUS)); then
    local targets=(leader-1=127.0.0.1:"$DEVNET_L1_HEALTH" leader-2=127.0.0.1:"$DEVNET_L2_HEALTH")
    if ((MEMBER)); then targets+=(member-1=127.0.0.1:"$DEVNET_M1_HEALTH"); fi
    start prometheus "$KIT_DIR/prometheus.sh" "$DIR/prometheus" "$DEVNET_PROM_PORT" "${targets[@]}"
  fi
  if ((MEMBER)); then
    start pg-member "$KIT_DIR/postgres.sh" "$DIR/pg-member" "$DEVNET_M1_PG_PORT"
    start_geth geth-m1 member-1 "$DEVNET_M1_ENGINE" "$DEVNET_M1_RPC"
  fi
  wait_port redis "$DEVNET_REDIS_PORT"
  wait_until "$READY_TIMEOUT_S" "PostgreSQL on port $DEVNET_PG_PORT" pg_ready pg-leader "$DEVNET_PG_PORT"
  wait_port geth-l1 "$DEVNET_L1_ENGINE"
  wait_port geth-l1 "$DEVNET_L1_RPC"
  wait_port geth-l2 "$DEVNET_L2_ENGINE"
  wait_port geth-l2 "$DEVNET_L2_RPC"
  if ((MEMBER)); then
    wait_until "$READY_TIMEOUT_S" "PostgreSQL on port $DEVNET_M1_PG_PORT" pg_ready pg-member "$DEVNET_M1_PG_PORT"
    wait_port geth-m1 "$DEVNET_M1_ENGINE"
  fi
  if ((PROMETHEUS)); then wait_until "$READY_TIMEOUT_S" "Prometheus on port $DEVNET_PROM_PORT" prometheus_ready; fi
  say "services ready in $(elapsed_s "$t_services")s; starting clnode ..."

  # Who answers /health where, for `devnet.sh leader`.
  {
    echo "leader-1 leader $DEVNET_L1_HEALTH"
    echo "leader-2 leader $DEVNET_L2_HEALTH"
    if ((MEMBER)); then echo "member-1 member $DEVNET_M1_HEALTH"; fi
  } >"$DIR/nodes"
  LEADER_STORE_FLAGS=(--postgres-url "postgres://postgres@127.0.0.1:$DEVNET_PG_PORT/postgres" --redis-addr "127.0.0.1:$DEVNET_REDIS_PORT")
  leader_node leader-1 "$DEVNET_L1_HEALTH" "$DEVNET_L1_API" "$DEVNET_L1_ENGINE"
  leader_node leader-2 "$DEVNET_L2_HEALTH" "$DEVNET_L2_API" "$DEVNET_L2_ENGINE"
  # ---- member hook: member-1 replays the chain from both leaders' sync APIs (tried in order) ----
  if ((MEMBER)); then member_node member-1 "$DEVNET_M1_HEALTH" "$DEVNET_M1_API" "$DEVNET_M1_ENGINE" "$DEVNET_M1_PG_PORT"; fi
  wait_leaders_ready
  if ((MEMBER)); then wait_port member-1 "$DEVNET_M1_HEALTH"; fi

  local load=(loadgen-1:"$DEVNET_L1_RPC":"$KEY_L1" loadgen-2:"$DEVNET_L2_RPC":"$KEY_L2")
  if ((MEMBER)); then load+=(loadgen-m1:"$DEVNET_M1_RPC":"$KEY_M1"); fi
  start_load "${load[@]}"
  wait_preferred_leader

  local rel=${DIR#"$PWD"/} me hints=() status_urls="http://127.0.0.1:$DEVNET_L1_HEALTH,http://127.0.0.1:$DEVNET_L2_HEALTH"
  me=$(helper_name)
  if ((MEMBER)); then status_urls+=",http://127.0.0.1:$DEVNET_M1_HEALTH"; fi
  hints=(
    "try:   curl localhost:$DEVNET_L1_HEALTH/health        curl \"localhost:$DEVNET_L1_HEALTH/health?format=json\""
    "       curl localhost:$DEVNET_L1_API/blocks/latest    curl \"localhost:$DEVNET_L1_API/blocks?after=100&limit=10\""
    "       curl localhost:$DEVNET_L2_HEALTH/metrics       (leader-2: health :$DEVNET_L2_HEALTH, api :$DEVNET_L2_API)"
    "who:   $me leader   (names the node that leads now, e.g. leader-1)"
    "break: kill -9 \$(cat $rel/pids/\$($me leader))     kill -STOP \$(cat $rel/pids/redis)   (-CONT resumes)"
    "       kill -9 \$(cat $rel/pids/geth-l1)     kill -9 \$(cat $rel/pids/pg-leader)"
    "heal:  $me restart NAME   (NAME: leader-1, geth-l1, redis, pg-leader, ...; as first started)"
    "move:  ${CLNODE#"$PWD"/} admin --url http://127.0.0.1:$DEVNET_L1_HEALTH,http://127.0.0.1:$DEVNET_L2_HEALTH --token @$rel/signing/admin.token transfer --to leader-2   (also: status, step-down, pause, resume)"
    "logs:  $rel/logs/        stop: Ctrl-C (stops everything, restarted processes too)"
    "also:  ${CLNODE#"$PWD"/} status --url $status_urls --watch"
  )
  if ((PROMETHEUS)); then
    hints+=("prom:  $PROM_URL   (/classic/targets, /classic/alerts: deploy/prometheus/alerts.yml; Grafana: deploy/grafana/clnode.json)")
  fi
  local specs=(leader-1:leader:"$DEVNET_L1_HEALTH" leader-2:leader:"$DEVNET_L2_HEALTH")
  if ((MEMBER)); then specs+=(member-1:member:"$DEVNET_M1_HEALTH"); fi
  serve "$t_start" "$t_services" "${specs[@]}" -- "${hints[@]}"
}

# --- leader, restart ----------------------------------------------------------------------

# leader_cmd: print the name of the node that leads now (from each leader-mode node's /health).
leader_cmd() {
  [[ -f $DIR/nodes ]] || die "no devnet state in $DIR (start one with make run)"
  local name kind port role leaders=() roles=()
  while read -r name kind port; do
    [[ $kind == leader ]] || continue
    role=$(health_json "$port" | json_get role)
    roles+=("$name=${role:-no answer}")
    [[ $role != leader ]] || leaders+=("$name")
  done <"$DIR/nodes"
  ((${#leaders[@]} == 1)) || die "no single node leads right now (${roles[*]}); try again in a second"
  echo "${leaders[0]}"
}

# restart_cmd NAME: start NAME again with the command line the running devnet started it with.
restart_cmd() {
  local name=$1 pid cmd names
  live_pid devnet >/dev/null || die "no devnet from $DIR is running (start one with make run)"
  names=$(cd "$DIR/cmds" 2>/dev/null && echo *)
  [[ $name =~ ^[a-z0-9-]+$ && -f $DIR/cmds/$name ]] || die "the devnet started no '$name'; names: $names"
  if pid=$(live_pid "$name"); then
    die "$name is running (pid $pid); kill it first (kill -9 $pid), or if it is stopped, kill -CONT $pid resumes it"
  fi
  cmd=$(<"$DIR/cmds/$name")
  eval "set -- $cmd"
  launch "$name" "$@"
  disown "$LAUNCHED"
  # A launcher that fails (a port still taken, a bad data dir) exits within a moment.
  sleep 1
  alive "$LAUNCHED" || die "$name exited at once; last lines of $DIR/logs/$name.log:
$(tail -n 5 "$DIR/logs/$name.log" | sed 's/^/  /')"
  say "restarted $name (pid $LAUNCHED, log $DIR/logs/$name.log); Ctrl-C of the devnet stops it too"
}

# kill_cmd NAME: SIGKILL NAME as a crash of its host would: its process group and, for a Patroni
# member, the PostgreSQL it runs, which Patroni starts in a session of its own (its postmaster's
# PID is the first line of data/postmaster.pid); the backends exit when their postmaster dies.
kill_cmd() {
  local name=$1 pid postmaster=
  live_pid devnet >/dev/null || die "no devnet from $DIR is running (start one with make run)"
  [[ $name =~ ^[a-z0-9-]+$ && -f $DIR/cmds/$name ]] || die "the devnet started no '$name'; names: $(cd "$DIR/cmds" 2>/dev/null && echo *)"
  pid=$(live_pid "$name") || die "$name is not running"
  if [[ $name == pg-[0-9] && -f $DIR/$name/data/postmaster.pid ]]; then
    postmaster=$(head -n 1 "$DIR/$name/data/postmaster.pid")
    [[ $postmaster =~ ^[0-9]+$ ]] || postmaster=
  fi
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || die "could not signal $name (pid $pid)"
  if [[ -n $postmaster ]]; then kill -KILL "$postmaster" 2>/dev/null || true; fi
  say "killed $name (pid $pid${postmaster:+ and its PostgreSQL, pid $postmaster}) with SIGKILL"
}

usage() { usage_error "[run|run-ha|stop|clean|leader|pg-primary|redis-master|kill NAME|restart NAME]   (see the header of scripts/devnet.sh for DEVNET_* variables)"; }

load_ports
case ${1:-run} in
  run)
    [[ $# -le 1 ]] || usage
    run
    ;;
  stop)
    [[ $# -eq 1 ]] || usage
    if pid=$(live_pid devnet); then
      say "asking the running devnet script ($pid) to stop ..."
      kill -TERM "$pid"
      # Its own ordered stop takes < 1 min (30 s per stage at worst); then finish the job here.
      waited=0
      while alive "$pid" && ((waited++ < 900)); do sleep 0.2; done
    fi
    stop_everything
    rm -f "$DIR/pids/devnet"
    ;;
  clean)
    [[ $# -eq 1 ]] || usage
    refuse_if_running
    # As root the PostgreSQL dirs belong to the postgres user; root removes them anyway.
    rm -rf "$DIR" || die "could not remove $DIR"
    say "removed $DIR"
    ;;
  leader)
    [[ $# -eq 1 ]] || usage
    leader_cmd
    ;;
  run-ha)
    [[ $# -eq 1 ]] || usage
    run_ha
    ;;
  pg-primary)
    [[ $# -eq 1 ]] || usage
    pg_primary_cmd
    ;;
  redis-master)
    [[ $# -eq 1 ]] || usage
    redis_master_cmd
    ;;
  kill)
    [[ $# -eq 2 ]] || usage
    kill_cmd "$2"
    ;;
  restart)
    [[ $# -eq 2 ]] || usage
    restart_cmd "$2"
    ;;
  __loadgen) shift && loadgen_main "$@" ;;
  -h | --help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//' ;;
  *) usage ;;
esac
