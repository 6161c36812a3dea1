#!/usr/bin/env bash
# devnet-smoke.sh — end-to-end check of scripts/devnet.sh, from the outside.
#
# Runs the devnet for SMOKE_DURATION_S seconds (DEVNET_DURATION_S) on free non-default ports in
# a fresh temporary DEVNET_DIR, and checks while it runs:
#   - both leaders' /health answer 200 "OK (mode=leader, ...)", exactly one of them leads;
#   - blocks are committed (/blocks/latest block_number grows on both sync APIs);
#   - transactions are included (committed payloads carry transactions, and a transaction each
#     load generator sent to its own geth, standby's and member's included, has a receipt on
#     the leader's geth: the geths gossip over devp2p);
#   - member-1 (when on) syncs, verifying the leaders' block signatures against the pinned key;
#   - Prometheus (make run's) scrapes every clnode (all targets up), has the alerts of
#     deploy/prometheus/alerts.yml loaded and evaluating without error, answers every query of
#     deploy/grafana/clnode.json with data, and saw the killed leader down;
#   - the README tour's failover: `devnet.sh leader` names the leader, which is SIGKILLed; the
#     other takes over and reports its failover gap; `devnet.sh restart` brings the killed node
#     back as a standby (and refuses to restart a running one);
# and after the devnet exits by itself: exit status 0, every process it wrote a pid file for
# (and their children) is gone, no port is still listening, no clnode log line says "panicked".
# Exit 0 when all pass, 1 with a "devnet-smoke: FAIL ..." line otherwise (the state dir is then
# kept for inspection). Prints one line per check.
#
# Environment: SMOKE_DURATION_S [60], SMOKE_READY_TIMEOUT_S seconds until the devnet is ready,
# build included [300], SMOKE_KEEP=1 keeps the state dir on success too. DEVNET_BUILD,
# CLNODE_BIN and DEVNET_MEMBER pass through to devnet.sh (default: build, member on).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib/smoke.sh
. "$KIT_DIR/lib/smoke.sh"
[[ $# -eq 0 ]] || usage_error "(no arguments; see the header for SMOKE_* variables)"

DURATION_S=${SMOKE_DURATION_S:-60}
READY_TIMEOUT_S=${SMOKE_READY_TIMEOUT_S:-300}
if [[ ! $DURATION_S =~ ^[0-9]+$ ]] || ((DURATION_S < 45)); then
  die "SMOKE_DURATION_S must be a whole number >= 45 (the checks take ~35 s), got '$DURATION_S'"
fi
[[ $READY_TIMEOUT_S =~ ^[1-9][0-9]*$ ]] || die "SMOKE_READY_TIMEOUT_S must be a positive whole number"

smoke_start devnet-smoke

# --- ports: 19 distinct free ports (free_ports, lib/smoke.sh).
VARS=(DEVNET_REDIS_PORT DEVNET_PG_PORT DEVNET_M1_PG_PORT DEVNET_L1_ENGINE DEVNET_L1_RPC
  DEVNET_L2_ENGINE DEVNET_L2_RPC DEVNET_M1_ENGINE DEVNET_M1_RPC DEVNET_L1_HEALTH DEVNET_L1_API
  DEVNET_L2_HEALTH DEVNET_L2_API DEVNET_M1_HEALTH DEVNET_M1_API
  DEVNET_L1_P2P DEVNET_L2_P2P DEVNET_M1_P2P DEVNET_PROM_PORT)
read -ra PORTS <<<"$(free_ports "${#VARS[@]}")"
((${#PORTS[@]} == ${#VARS[@]})) || die "could not find ${#VARS[@]} free ports"
for i in "${!VARS[@]}"; do export "${VARS[$i]}=${PORTS[$i]}"; done

# --- helpers --------------------------------------------------------------------------------

devnet_alive() { kill -0 "$DEVNET_PID" 2>/dev/null; }

PROM=http://127.0.0.1:$DEVNET_PROM_PORT
# prom_query EXPR: the instant query's result as JSON (exit 1 when it fails).
prom_query() {
  python3 - "$PROM" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[2]})
try:
    with urllib.request.urlopen(url, timeout=5) as r:
        print(json.dumps(json.load(r)["data"]["result"]))
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(1)
PY
}

# prometheus_targets_up WANT: exit 0 when Prometheus' clnode targets are WANT, all up; prints them.
prometheus_targets_up() {
  python3 - "$PROM" "$1" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/api/v1/targets?state=active", timeout=3) as r:
        targets = [t for t in json.load(r)["data"]["activeTargets"] if t["labels"].get("job") == "clnode"]
except Exception as e:
    print(f"no answer: {e}")
    sys.exit(1)
print(", ".join(sorted(f'{t["labels"]["instance"]}={t["health"]}' for t in targets)))
sys.exit(0 if len(targets) == int(sys.argv[2]) and all(t["health"] == "up" for t in targets) else 1)
PY
}

# roles: "leader standby" etc. for leader-1 and leader-2.
roles() {
  echo "$(json "http://127.0.0.1:$DEVNET_L1_HEALTH/health?format=json" 'j["role"]' || echo down)" \
    "$(json "http://127.0.0.1:$DEVNET_L2_HEALTH/health?format=json" 'j["role"]' || echo down)"
}


check_health_and_one_leader() { # check_health_and_one_leader WHEN
  local port code body r role leaders
  for port in "$DEVNET_L1_HEALTH" "$DEVNET_L2_HEALTH"; do
    body=$(curl -s --max-time 3 -w ' HTTP%{http_code}' "http://127.0.0.1:$port/health") || fail "/health on :$port does not answer ($1)"
    code=${body##* HTTP}
    [[ $code == 200 && $body == "OK (mode=leader, isLeader="* ]] || fail "/health on :$port answered '$body' ($1)"
  done
  read -ra r <<<"$(roles)"
  leaders=0
  for role in "${r[@]}"; do [[ $role == leader ]] && leaders=$((leaders + 1)); done
  ((leaders == 1)) || fail "expected exactly one leader, roles are leader-1=${r[0]} leader-2=${r[1]} ($1)"
  pass "both leaders' /health answer 200 OK, exactly one leads: leader-1=${r[0]} leader-2=${r[1]} ($1)"
}


# --- run ----------------------------------------------------------------------------------
say "state in $STATE, ports ${PORTS[*]} (${VARS[*]}), ${DURATION_S}s run"
t0=$(now_s)
DEVNET_DIR=$STATE DEVNET_DURATION_S=$DURATION_S DEVNET_STATUS=plain DEVNET_STATUS_EVERY_S=5 \
  "$KIT_DIR/devnet.sh" >"$OUT" 2>&1 </dev/null &
DEVNET_PID=$!

until grep -q '^devnet: ready:' "$OUT" 2>/dev/null; do
  devnet_alive || fail "devnet.sh exited before it was ready"
  (($(now_s) - t0 < READY_TIMEOUT_S)) || fail "devnet not ready after ${READY_TIMEOUT_S}s"
  sleep 0.5
done
pass "devnet ready after $(($(now_s) - t0))s ($(grep '^devnet: ready:' "$OUT" | sed 's/^devnet: ready: //'))"

# Every process the devnet wrote a pid file for, plus their children (postgres backends, the
# load generators' node processes), for the final check.
read -ra STARTED <<<"$(started_processes "$STATE")"
pass "pid files: $(cd "$STATE/pids" && echo *) (${#STARTED[@]} processes with children)"

check_health_and_one_leader "at start"

# --- Prometheus: every clnode a target, up; the alerts loaded --------------------------------
grep -q "^devnet: prometheus: $PROM " "$OUT" || fail "devnet.sh did not print Prometheus' URL ($PROM)"
want_targets=2
if [[ ${DEVNET_MEMBER:-1} == 1 ]]; then want_targets=3; fi
t_prom=$(now_s)
until targets=$(prometheus_targets_up "$want_targets"); do
  (($(now_s) - t_prom < 30)) || fail "Prometheus' clnode targets not all up after 30 s: $targets"
  sleep 1
done
pass "Prometheus at $PROM scrapes every clnode: $targets"
alerts_in_file=$(grep -c '^ *- alert: ' "$REPO_ROOT/deploy/prometheus/alerts.yml")
rules=$(python3 - "$PROM" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v1/rules", timeout=3) as r:
    groups = json.load(r)["data"]["groups"]
print(sum(len(g["rules"]) for g in groups if g["name"] == "clnode"))
PY
) || fail "Prometheus' /api/v1/rules does not answer"
((rules == alerts_in_file)) || fail "Prometheus loaded $rules clnode rules, deploy/prometheus/alerts.yml has $alerts_in_file"
pass "Prometheus loaded the $rules alerts of deploy/prometheus/alerts.yml"

b0=$(latest "$DEVNET_L1_API") || fail "/blocks/latest on :$DEVNET_L1_API does not answer"
sleep 10
b1=$(latest "$DEVNET_L1_API") || fail "/blocks/latest on :$DEVNET_L1_API does not answer"
b2=$(latest "$DEVNET_L2_API") || fail "/blocks/latest on :$DEVNET_L2_API does not answer"
((b1 > b0)) || fail "no block committed in 10 s: /blocks/latest stayed at $b0"
((b2 >= b1)) || fail "leader-2's sync API is behind: $b2 < $b1"
pass "blocks committed: /blocks/latest went from $b0 to $b1 in 10 s (leader-2's API: $b2)"

ntx=$(json "http://127.0.0.1:$DEVNET_L1_API/blocks?after=$b0&limit=1000" 'sum(txs(b) for b in j["blocks"])') ||
  fail "/blocks?after=$b0 does not answer"
((ntx > 0)) || fail "blocks $((b0 + 1))..$b1 carry no transactions"
pass "$ntx transactions in blocks $((b0 + 1))..$b1 ($(awk -v n="$ntx" 'BEGIN { printf "%.1f", n / 10 }') tx/s)"

# A transaction each load generator sent 5+ s ago (to its own geth: leader-1's, leader-2's,
# member-1's) must have a receipt on the leading node's geth: the geths gossip it there.
read -ra r <<<"$(roles)"
if [[ ${r[0]} == leader ]]; then n=1 rpc_port=$DEVNET_L1_RPC; else n=2 rpc_port=$DEVNET_L2_RPC; fi
loadgens=(loadgen-1 loadgen-2)
if [[ ${DEVNET_MEMBER:-1} == 1 ]]; then loadgens+=(loadgen-m1); fi
for loadgen in "${loadgens[@]}"; do
  tx_hash=$(python3 - "$STATE/logs/$loadgen.log" <<'PY'
import json, sys, time
best = None
for line in open(sys.argv[1]):
    if line.startswith("{"):
        tx = json.loads(line)
        if tx["sent_ms"] < (time.time() - 5) * 1000:
            best = tx["hash"]
print(best or "")
PY
  )
  [[ -n $tx_hash ]] || fail "$loadgen logged no transaction sent more than 5 s ago"
  receipt=$(rpc "$rpc_port" eth_getTransactionReceipt "[\"$tx_hash\"]")
  block=$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(int(r["blockNumber"], 16) if r else "")' "$receipt")
  [[ -n $block ]] || fail "transaction $tx_hash from $loadgen has no receipt on the leader's (leader-$n) geth (:$rpc_port)"
  pass "transaction $tx_hash from $loadgen is in block $block"
done

sleep 5
check_health_and_one_leader "15 s later"

# Every query of the Grafana dashboard, on 20+ s of the devnet's series: it parses and has data
# (the member's panels only with the member on); every alert rule evaluates without error.
dash=$(python3 - "$PROM" "$REPO_ROOT/deploy/grafana/clnode.json" "${DEVNET_MEMBER:-1}" <<'PY'
import json, sys, urllib.parse, urllib.request
prom, path, member = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
dashboard = json.load(open(path))
panels = [p for top in dashboard["panels"] for p in [top] + top.get("panels", [])]
exprs = [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
empty, failed = [], []
for title, expr in exprs:
    q = expr.replace("$__rate_interval", "20s").replace("$cluster", ".*").replace("$instance", ".*")
    try:
        with urllib.request.urlopen(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q}), timeout=5) as r:
            result = json.load(r)["data"]["result"]
    except Exception as e:
        failed.append(f"{title}: {q}: {e}")
        continue
    member_only = 'mode="member"' in q or "sync" in q or "execution_duration" in q
    if not result and (member or not member_only):
        empty.append(f"{title}: {q}")
with urllib.request.urlopen(prom + "/api/v1/rules", timeout=5) as r:
    bad_rules = [f'{rule["name"]}: {rule.get("lastError")}' for g in json.load(r)["data"]["groups"]
                 for rule in g["rules"] if rule.get("health") == "err"]
for line in failed + [f"no data: {e}" for e in empty] + [f"rule error: {b}" for b in bad_rules]:
    print(line)
print(f"{len(exprs)} queries")
sys.exit(1 if failed or empty or bad_rules else 0)
PY
) || fail "the dashboard's queries or the alert rules on the live Prometheus:
$dash"
pass "Prometheus answers all $(tail -n 1 <<<"$dash") of deploy/grafana/clnode.json with data; every alert rule evaluates"

# The member executes only blocks the leaders signed with the devnet's key (it pins its public key).
if [[ ${DEVNET_MEMBER:-1} == 1 ]]; then
  m1="http://127.0.0.1:$DEVNET_M1_HEALTH/health?format=json"
  synced=$(json "$m1" 'j["last_synced"]') || fail "member-1's /health does not answer"
  trust=$(json "$m1" 'j["record_signatures"]') || fail "member-1's /health does not answer"
  ((synced > 0)) || fail "member-1 synced nothing: $(curl -s --max-time 3 "http://127.0.0.1:$DEVNET_M1_HEALTH/health")"
  [[ $trust == verified* ]] || fail "member-1 does not verify leader signatures: record_signatures=$trust"
  pass "member-1 synced to block $synced, records $trust"
fi

# --- the tour's failover: kill whoever leads, then bring it back ----------------------------
devnet() { DEVNET_DIR=$STATE "$KIT_DIR/devnet.sh" "$@"; }
devnet_alive || fail "the devnet stopped (after SMOKE_DURATION_S=$DURATION_S) before the failover checks; give it more time"
read -ra r <<<"$(roles)"
first_leader=$(devnet leader) || fail "devnet.sh leader named nobody (roles: leader-1=${r[0]} leader-2=${r[1]})"
[[ $first_leader == leader-1 && ${r[0]} == leader || $first_leader == leader-2 && ${r[1]} == leader ]] ||
  fail "devnet.sh leader says $first_leader, but the roles are leader-1=${r[0]} leader-2=${r[1]}"
if [[ $first_leader == leader-1 ]]; then other=leader-2 other_port=$DEVNET_L2_HEALTH; else other=leader-1 other_port=$DEVNET_L1_HEALTH; fi
kill -9 "$(<"$STATE/pids/$first_leader")"
t_kill=$(now_s)
until [[ $(devnet leader 2>/dev/null) == "$other" ]]; do
  (($(now_s) - t_kill < 15)) || fail "$other did not lead within 15 s of killing $first_leader"
  sleep 0.2
done
head_at_kill=$(latest "$DEVNET_L1_API" 2>/dev/null || latest "$DEVNET_L2_API")
until [[ $(json "http://127.0.0.1:$other_port/health?format=json" 'j["last_failover_ms"]' 2>/dev/null) =~ ^[0-9]+$ ]]; do
  (($(now_s) - t_kill < 20)) || fail "$other reports no failover gap 20 s after taking over (head $head_at_kill)"
  sleep 0.2
done
gap_ms=$(json "http://127.0.0.1:$other_port/health?format=json" 'j["last_failover_ms"]')
pass "killed $first_leader; devnet.sh leader names $other within $(($(now_s) - t_kill))s; its failover gap ${gap_ms} ms"
devnet restart "$first_leader" >/dev/null || fail "devnet.sh restart $first_leader failed"
STARTED+=("$(<"$STATE/pids/$first_leader")")
until [[ $(roles) == *standby* ]]; do
  (($(now_s) - t_kill < 40)) || fail "$first_leader did not come back as a standby after devnet.sh restart (roles: $(roles))"
  sleep 0.5
done
out=$(devnet restart "$first_leader" 2>&1) && fail "devnet.sh restart of a running node succeeded"
[[ $out == *"is running"* ]] || fail "devnet.sh restart of a running node said: $out"
pass "devnet.sh restart $first_leader brought it back as a standby (roles: $(roles)); a second restart is refused"

# Prometheus saw the killed leader down, and scrapes it again.
seen_down=$(prom_query "min_over_time(up{job=\"clnode\",instance=\"$first_leader\"}[5m])") || fail "Prometheus does not answer"
[[ $seen_down == *'"0"]'* ]] || fail "Prometheus never saw $first_leader down: min_over_time(up[5m]) = $seen_down"
until targets=$(prometheus_targets_up "$want_targets"); do
  (($(now_s) - t_kill < 60)) || fail "Prometheus does not scrape $first_leader again after its restart: $targets"
  sleep 1
done
pass "Prometheus saw $first_leader down (up = 0) and scrapes it again: $targets"

# --- the tour's clnode admin line, with the devnet's admin token -----------------------------
clnode_bin=${CLNODE_BIN:-$REPO_ROOT/target/release/clnode}
admin_out=$("$clnode_bin" admin --url "http://127.0.0.1:$DEVNET_L1_HEALTH,http://127.0.0.1:$DEVNET_L2_HEALTH" \
  --token "@$STATE/signing/admin.token" status 2>&1) || fail "clnode admin status with the devnet's token failed: $admin_out"
pass "clnode admin status answers with the devnet's token"

# --- the devnet stops by itself -----------------------------------------------------------
deadline=$((t0 + READY_TIMEOUT_S + DURATION_S + 90))
while devnet_alive; do
  (($(now_s) < deadline)) || fail "devnet.sh still running $((DURATION_S + 90))s after it was ready"
  sleep 1
done
rc=0
wait "$DEVNET_PID" || rc=$?
DEVNET_PID=
((rc == 0)) || fail "devnet.sh exited with status $rc"
grep -q '^devnet: stopped redis' "$OUT" || fail "devnet.sh did not report stopping redis"
pass "devnet.sh stopped by itself after DEVNET_DURATION_S=$DURATION_S (exit 0)"

check_nothing_left "$STATE" "${STARTED[*]}" "${VARS[*]}"
check_clnode_logs "$STATE"
say "PASS in $(($(now_s) - t0))s"
