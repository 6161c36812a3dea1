# shellcheck shell=bash
# smoke.sh — what scripts/devnet-smoke.sh and scripts/devnet-ha-smoke.sh share: the temporary
# state dir and the exit that stops the devnet, free ports, JSON and JSON-RPC reads, and the check
# that a stopped devnet left nothing behind. Sourced after lib/common.sh; then smoke_start NAME.

# smoke_start NAME: the state dir (WORK, STATE=WORK/devnet, OUT=WORK/devnet.out: the devnet's
# output), say/pass/fail with NAME as prefix, and the traps: on any exit the devnet (DEVNET_PID,
# set by the caller once started) is stopped, and anything left by its pid files; the state is
# kept on failure (and with SMOKE_KEEP=1), else removed.
SMOKE_NAME='' WORK='' STATE='' OUT='' DEVNET_PID='' FAILED=0
smoke_start() {
  SMOKE_NAME=$1
  WORK=$(mktemp -d "/tmp/clnode-$SMOKE_NAME.XXXXXX")
  STATE=$WORK/devnet
  OUT=$WORK/devnet.out
  trap smoke_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
say() { printf '%s: %s\n' "$SMOKE_NAME" "$*"; }
pass() { say "ok   $*"; }
fail() {
  FAILED=1
  echo "$SMOKE_NAME: FAIL $*" >&2
  exit 1
}
now_s() { date +%s; }
smoke_exit() {
  local rc=$?
  set +e
  if [[ -n $DEVNET_PID ]] && kill -0 "$DEVNET_PID" 2>/dev/null; then
    kill -TERM "$DEVNET_PID"
    wait "$DEVNET_PID" 2>/dev/null
  fi
  # Anything left behind (e.g. the devnet script was killed): stop it by its pid files.
  [[ ! -d $STATE/pids ]] || DEVNET_DIR=$STATE "$KIT_DIR/devnet.sh" stop >/dev/null 2>&1
  if ((rc != 0 || FAILED)); then
    echo "$SMOKE_NAME: devnet output (last 30 lines of $OUT, cut at 400 characters):" >&2
    tail -n 30 "$OUT" 2>/dev/null | cut -c1-400 >&2
    echo "$SMOKE_NAME: state and logs kept in $STATE" >&2
  elif [[ ${SMOKE_KEEP:-0} == 1 ]]; then
    say "state kept in $STATE"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# free_ports N: N distinct free ports on 127.0.0.1, outside the usual ephemeral range
# (32768-60999), so an outgoing connection is unlikely to take one between this check and the
# devnet's own; printed on one line.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
want, got = int(sys.argv[1]), []
for port in random.sample(range(20000, 32000), 2000):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        got.append(port)
    except OSError:
        pass
    finally:
        s.close()
    if len(got) == want:
        break
print(*got)
PY
}

# json URL EXPR: fetch URL and print the Python expression EXPR of its JSON `j` (any HTTP status;
# txs(block) counts a sync record's transactions).
json() {
  python3 - "$1" "$2" <<'PY'
import base64, json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        j = json.load(r)
except urllib.error.HTTPError as e:
    j = json.load(e)
except Exception:
    sys.exit(1)
txs = lambda block: len(json.loads(base64.b64decode(block["payload_data"]))["transactions"])
print(eval(sys.argv[2], {"j": j, "txs": txs}))
PY
}

# rpc PORT METHOD PARAMS_JSON: a JSON-RPC result (geth's, or through HAProxy) as JSON text.
rpc() {
  curl -s --max-time 3 -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" "http://127.0.0.1:$1" |
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin).get("result")))'
}

# latest API_PORT: the block number of a sync API's /blocks/latest.
latest() { json "http://127.0.0.1:$1/blocks/latest" 'j["block_number"]'; }

# descendants PID...: these processes and all their descendants, one line.
descendants() {
  ps -e -o pid=,ppid= | python3 -c '
import sys
kids = {}
for line in sys.stdin:
    pid, ppid = line.split()
    kids.setdefault(ppid, []).append(pid)
todo, seen = list(sys.argv[1:]), []
while todo:
    p = todo.pop()
    seen.append(p)
    todo += kids.get(p, [])
print(*sorted(set(seen), key=int))' "$@"
}

# started_processes STATE: every process the devnet in STATE wrote a pid file for, with their
# children (PostgreSQL backends, the load generators' node processes), one line.
started_processes() {
  local f pids=()
  for f in "$1"/pids/*; do pids+=("$(<"$f")"); done
  descendants "${pids[@]}"
}

# check_nothing_left STATE PIDS PORT_VARS: after the devnet exited, none of PIDS (a line of
# pids) runs, none of the ports in the variables named in PORT_VARS (a line) accepts
# connections, no process names STATE; else fail.
check_nothing_left() {
  local state=$1 pid var left=()
  local pids vars
  read -ra pids <<<"$2"
  read -ra vars <<<"$3"
  for pid in "${pids[@]}"; do
    # A zombie (state Z) has exited; only its reaping is pending.
    local st
    st=$(sed 's/^.*) \(.\).*/\1/' "/proc/$pid/stat" 2>/dev/null) || continue
    [[ $st == Z ]] || left+=("$pid($st):$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)")
  done
  ((${#left[@]} == 0)) || fail "processes still running after the devnet exited: ${left[*]}"
  for var in "${vars[@]}"; do
    # shellcheck disable=SC2016  # $0 expands in the child bash
    if timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "${!var}" 2>/dev/null; then
      fail "port ${!var} ($var) still accepts connections after the devnet exited"
    fi
  done
  local strays
  strays=$(pgrep -f -- "$state" || true)
  [[ -z $strays ]] || fail "processes naming $state still running: $strays"
  pass "none of the ${#pids[@]} processes is left, no port is listening"
}

# check_clnode_logs STATE: no clnode log line says "panicked"; prints the count of ERROR lines.
check_clnode_logs() {
  if grep -l 'panicked' "$1"/logs/leader-*.log "$1"/logs/member-*.log 2>/dev/null; then
    fail "a clnode panicked (see the files above)"
  fi
  local errors
  errors=$(cat "$1"/logs/leader-*.log "$1"/logs/member-*.log 2>/dev/null | grep -c ' ERROR ' || true)
  pass "no clnode panic; $errors ERROR lines in the clnode logs"
}
