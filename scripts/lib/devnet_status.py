"""The devnet's live status table (run by scripts/devnet.sh; not a tool of its own).

    devnet_status.py STATE_DIR MODE EVERY_S DURATION_S STARTED NAME:KIND:TARGET... -- HINT...

One row per clnode (KIND leader or member, TARGET its health port) from /health?format=json and
/metrics. TX/S is the increase of clnode_transactions_committed_total (counted by the node that
committed the block, i.e. the leader) over the last 5 s; the header sums the nodes. LAG for
leader-mode nodes is the highest committed head any node reports minus this node's EL head; for
members their own lag_blocks (lag_seconds). MODE tty redraws in place, plain prints a line every
EVERY_S seconds.
With DEVNET_PROM_URL set (the devnet's Prometheus), a line under the table says how many of its
clnode targets are up and which alerts fire (from /api/v1/targets and /api/v1/alerts).

Other KINDs are services, drawn in a SERVICES table under the clnode one (SERVICE, KIND, ROLE,
HEALTH, DETAIL; in plain mode appended to each line as "NAME ROLE HEALTH (DETAIL)"), one row each:

    NAME:etcd:PORT                 GET /health ({"health":"true"}), role from /v2/stats/self
    NAME:patroni:REST_PORT         GET /patroni (state, role) and /cluster (primary, sync standby,
                                   replica; lag); ok while the state is running
    NAME:redis:PORT                ROLE over RESP: master (replicas) or replica (master, link)
    NAME:sentinel:PORT:MASTER      SENTINEL get-master-addr-by-name and SENTINEL master (s_down,
                                   o_down flags into HEALTH)
    NAME:pgbouncer:PORT            a TCP connect; DETAIL from SHOW POOLS when psql is found
                                   ($DEVNET_PG_BINDIR/psql, else psql on PATH)
    NAME:haproxy:SOCKET_PATH       "show stat" on the stats socket: each backend's servers UP/DOWN;
                                   ok while every backend has a server UP
    NAME:prometheus:PORT           GET /-/ready

Every probe gives up after 0.8 s (a SIGSTOPped server shows "no answer"); a service that does not
answer and whose process (STATE_DIR/pids/NAME) is gone shows "down", like a clnode.

The pure parts (cells, fitting a line to the terminal, parsing each service's answer) are tested
by test_devnet_status.py.
"""

import collections
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

WINDOW_S = 5.0
COLS = [("NODE", "name", 9), ("ROLE", "role", 9), ("TERM", "term", 5), ("COMMITTED", "committed", 10),
        ("EL HEAD", "el", 8), ("LAG", "lag", 10), ("TX/S", "tps", 6), ("LAST FAILOVER", "failover", 25),
        ("HEALTH", "health", 0)]
SERVICE_COLS = [("SERVICE", "name", 12), ("KIND", "kind", 10), ("ROLE", "role", 12), ("HEALTH", "health", 13),
                ("DETAIL", "detail", 0)]
NODE_KINDS = ("leader", "member")
SERVICE_KINDS = ("etcd", "patroni", "redis", "sentinel", "pgbouncer", "haproxy", "prometheus")
PROBE_TIMEOUT_S = 0.8
ELLIPSIS = "\u2026"


# --- pure parts -------------------------------------------------------------------------------

def dash(v):
    return "-" if v is None else str(v)


def duration(s):
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def fit(text, width):
    """TEXT cut to at most WIDTH characters at a word boundary, with an ellipsis when cut.

    A word longer than the whole width is cut inside (nothing else would show anything)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    room = width - 1  # for the ellipsis
    cut = text[:room + 1].rfind(" ")  # a space right after the last whole word counts too
    head = text[:cut] if cut > 0 else text[:room]
    return head.rstrip(" ;,:") + ELLIPSIS


def failover_cell(health):
    """LAST FAILOVER: the gap the node reported when it took over (last_failover_ms, see
    src/leader/failover.rs) and how long ago; '-' when it has led no failover since it started."""
    if health.get("last_failover_ms") is None:
        return "-"
    ago = health.get("now_unix_s", time.time()) - (health.get("last_failover_at_unix_s") or 0)
    return f"took {health['last_failover_ms'] / 1000:.2f}s, {duration(max(ago, 0))} ago"


def health_cell(health):
    problems = "; ".join(f"{k}: {v}" for k, v in (health.get("problems") or {}).items())
    return "ok" if health.get("healthy") else ("UNHEALTHY " + problems if problems else "UNHEALTHY")


def prometheus_line(url, targets, alerts):
    """The Prometheus line: URL, clnode targets up of all, the firing alerts (name and instance,
    or cluster for cluster-wide ones). TARGETS and ALERTS are the parsed answers of
    /api/v1/targets and /api/v1/alerts, None when Prometheus did not answer."""
    if targets is None or alerts is None:
        return f"prometheus {url}: no answer"
    active = [t for t in targets.get("data", {}).get("activeTargets", []) if t.get("labels", {}).get("job") == "clnode"]
    up = sum(1 for t in active if t.get("health") == "up")
    firing = sorted({(a["labels"].get("alertname", "?"), a["labels"].get("instance") or a["labels"].get("cluster", ""))
                     for a in alerts.get("data", {}).get("alerts", []) if a.get("state") == "firing"})
    names = ", ".join(f"{name} ({where})" if where else name for name, where in firing) or "none"
    return f"prometheus {url}: {up}/{len(active)} targets up, alerts firing: {names}"


def cell(row, key):
    if key not in row:  # a down node has only a name and a role
        return ""
    v = row[key]
    if key == "tps":
        return "-" if v is None else f"{v:.1f}"
    return dash(v)


def table(rows, width=None, cols=COLS):
    """The table's lines; with WIDTH, the last column (HEALTH; DETAIL for services) is fitted to
    what is left of the line at a word boundary instead of being cut off mid-word by the terminal."""
    def fmt(cells):
        parts = [c.ljust(w) if w else c for c, (_, _, w) in zip(cells, cols)]
        if width is not None:
            offset = sum(w + 1 for _, _, w in cols[:-1])
            parts[-1] = fit(parts[-1], width - offset)
        return " ".join(parts).rstrip()
    return [fmt([title for title, _, _ in cols])] + [fmt([cell(r, k) for _, k, _ in cols]) for r in rows]


# --- pure parts: the services' answers ---------------------------------------------------------

def parse_spec(spec):
    """One NAME:KIND:TARGET argument as a dict (name, kind, and health for clnode rows, target
    for services, plus master for sentinels); ValueError naming what is wrong."""
    parts = spec.split(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise ValueError(f"{spec!r}: expected NAME:KIND:TARGET")
    name, kind, target = parts
    if kind in NODE_KINDS:
        if not target.isdigit():
            raise ValueError(f"{spec!r}: the TARGET of a {kind} is its health port")
        return dict(name=name, kind=kind, health=target)
    if kind not in SERVICE_KINDS:
        raise ValueError(f"{spec!r}: unknown KIND {kind!r} (one of {', '.join(NODE_KINDS + SERVICE_KINDS)})")
    svc = dict(name=name, kind=kind, target=target)
    if kind == "sentinel":
        port, _, master = target.partition(":")
        if not port.isdigit() or not master:
            raise ValueError(f"{spec!r}: the TARGET of a sentinel is PORT:MASTER_NAME")
        svc.update(target=port, master=master)
    elif kind != "haproxy" and not target.isdigit():
        raise ValueError(f"{spec!r}: the TARGET of {kind} is a port")
    return svc


class RespError(str):
    """A RESP error reply (-ERR ...), kept apart from a simple string reply of the same text."""


class Incomplete(Exception):
    """The buffer ends inside a RESP reply: read more."""


def resp_command(*args):
    """ARGS as a RESP array of bulk strings (what redis-cli sends)."""
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
    return b"".join(out)


def resp_parse(buf, pos=0):
    """One RESP2 reply from BUF at POS: (value, next position). Simple strings and bulk strings
    become str, integers int, arrays lists, null bulk/array None, errors RespError; raises
    Incomplete when BUF ends inside the reply, ValueError on something that is not RESP."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete()
    kind, line, pos = buf[pos:pos + 1], buf[pos + 1:end].decode(errors="replace"), end + 2
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return RespError(line), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise Incomplete()
        return buf[pos:pos + n].decode(errors="replace"), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = resp_parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"not a RESP reply: {buf[pos - len(line) - 3:pos][:40]!r}")


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def redis_cell(reply):
    """(ROLE, HEALTH, DETAIL) from a Redis server's reply to ROLE: a master and how many
    replicas it streams to, or a replica, its master and the state of its link."""
    if isinstance(reply, RespError):
        return "?", "error", str(reply)
    if not isinstance(reply, list) or not reply:
        return "?", "bad answer", repr(reply)[:60]
    role = reply[0]
    if role == "master":
        replicas = reply[2] if len(reply) > 2 and isinstance(reply[2], list) else []
        where = ", ".join(f"{r[0]}:{r[1]}" for r in replicas if isinstance(r, list) and len(r) >= 2)
        return "master", "ok", plural(len(replicas), "replica") + (f": {where}" if where else "")
    if role in ("slave", "replica") and len(reply) >= 4:
        return "replica", "ok", f"of {reply[1]}:{reply[2]}, link {reply[3]}"
    if role == "sentinel":
        return "sentinel", "ok", "a sentinel, not a server"
    return str(role), "ok", "-"


def sentinel_cell(addr, master, master_name):
    """(ROLE, HEALTH, DETAIL) of a Sentinel from its replies to SENTINEL get-master-addr-by-name
    and SENTINEL master (a flat list of field, value): the master it sees, and the master's
    s_down/o_down flags (this sentinel's own view, or the quorum's) in HEALTH."""
    if isinstance(addr, RespError) or addr is None:
        return "sentinel", "no master", f"does not monitor {master_name}"
    if not isinstance(addr, list) or len(addr) < 2:
        return "sentinel", "bad answer", repr(addr)[:60]
    fields = dict(zip(master[0::2], master[1::2])) if isinstance(master, list) else {}
    flags = [f for f in str(fields.get("flags", "")).split(",") if f]
    down = [f for f in ("o_down", "s_down") if f in flags]
    health = "master " + down[0] if down else "failover" if "failover_in_progress" in flags else "ok"
    detail = f"sees master {addr[0]}:{addr[1]}"
    if fields:
        detail += (f", {plural(int(fields.get('num-slaves', 0)), 'replica')}"
                   f", {plural(int(fields.get('num-other-sentinels', 0)), 'other sentinel')}"
                   f", quorum {fields.get('quorum', '?')}")
    return "sentinel", health, detail


PATRONI_ROLES = {"leader": "primary", "master": "primary", "primary": "primary", "sync_standby": "sync standby",
                 "replica": "replica", "standby_leader": "standby leader"}


def size(n):
    """Bytes as B, kB, MB or GB (1024 steps, one decimal above B)."""
    for unit in ("B", "kB", "MB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def patroni_cell(me, cluster, rest_port):
    """(ROLE, HEALTH, DETAIL) of one Patroni member from its GET /patroni answer ME and, when it
    answered, GET /cluster (CLUSTER, None otherwise): its role as the cluster sees it (the member
    whose api_url has REST_PORT), the timeline, the primary's synchronous standbys, a replica's lag
    in bytes. HEALTH is ok while PostgreSQL runs (state running; streaming in later Patroni)."""
    members = (cluster or {}).get("members") or []
    mine = next((m for m in members if f":{rest_port}/" in str(m.get("api_url", ""))), None)
    raw = (mine or {}).get("role") or me.get("role", "?")
    role = PATRONI_ROLES.get(raw, raw)
    if mine is None and role == "replica" and me.get("sync_standby"):
        role = "sync standby"
    state = me.get("state", "?")
    health = "ok" if state in ("running", "streaming") else state
    detail = [f"timeline {me['timeline']}"] if me.get("timeline") is not None else []
    if role == "primary":
        syncs = [m["name"] for m in members if m.get("role") == "sync_standby" and m.get("name")]
        if not members:  # no /cluster: the primary's own view of its walsenders
            syncs = [r.get("application_name", "?") for r in me.get("replication") or [] if r.get("sync_state") == "sync"]
        detail.append(f"sync standby {', '.join(syncs)}" if syncs else "no sync standby")
    elif mine is not None and "lag" in mine:
        lag = mine["lag"]
        detail.append(f"lag {size(lag)}" if isinstance(lag, (int, float)) else f"lag {lag}")
    if me.get("pause"):
        detail.append("paused")
    if me.get("pending_restart"):
        detail.append("pending restart")
    return role, health, ", ".join(detail) or "-"


def etcd_cell(health, stats):
    """(ROLE, HEALTH, DETAIL) of an etcd member from GET /health and, when it answered, GET
    /v2/stats/self (STATS, None otherwise): leader or follower from the latter, else member."""
    role = {"StateLeader": "leader", "StateFollower": "follower"}.get((stats or {}).get("state"), "member")
    ok = str(health.get("health")).lower() == "true"
    detail = (stats or {}).get("name") or "-"
    if not ok and health.get("reason"):
        detail = f"{health['reason']}; {detail}"
    return role, "ok" if ok else "unhealthy", detail


def haproxy_cell(csv_text):
    """(ROLE, HEALTH, DETAIL) of HAProxy from its stats socket's "show stat" CSV: each backend's
    servers with their state (UP, DOWN, UP 1/2 when failing but still in, MAINT...). HEALTH is ok
    while every backend that has servers has one UP (or one without checks)."""
    lines = [l for l in csv_text.splitlines() if l.strip()]
    if not lines or not lines[0].startswith("# "):
        return "balancer", "bad answer", (lines[0] if lines else "empty answer")[:60]
    header = lines[0][2:].split(",")
    backends = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        backends.setdefault(row.get("pxname", "?"), []).append((row["svname"], row.get("status", "?")))
    if not backends:
        return "balancer", "no servers", "-"

    def up(status):
        return status.startswith("UP") or status == "no check"
    empty = [px for px, servers in backends.items() if not any(up(st) for _, st in servers)]
    detail = "; ".join(f"{px}: " + ", ".join(f"{sv} {st}" for sv, st in servers) for px, servers in backends.items())
    return "balancer", "ok" if not empty else f"{empty[0]} none up", detail


def pgbouncer_detail(csv_text):
    """DETAIL of PgBouncer from `SHOW POOLS` printed by psql -A -F, (a header line, one line per
    pool): per database, clients active and waiting, server connections active and idle. Its own
    admin database (pgbouncer) is left out."""
    lines = [l for l in csv_text.splitlines() if l.strip() and not l.startswith("(")]
    if not lines:
        return "-"
    header = lines[0].split(",")
    pools = []
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("database") in ("pgbouncer", None):
            continue
        pools.append(f"{row['database']}: clients {row.get('cl_active', '?')} active {row.get('cl_waiting', '?')} waiting,"
                     f" servers {row.get('sv_active', '?')} active {row.get('sv_idle', '?')} idle")
    return "; ".join(pools) or "no pools yet"


def service_part(row):
    """A service in a plain-mode line: NAME ROLE HEALTH (DETAIL)."""
    detail = row.get("detail", "-")
    return f"{row['name']} {row['role']} {row['health']}" + ("" if detail in ("", "-") else f" ({detail})")


# --- sampling and drawing ---------------------------------------------------------------------

def main(argv):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state_dir, mode, every_s, duration_s, started = argv[0], argv[1], float(argv[2]), int(argv[3]), int(argv[4])
    rest = argv[5:]
    split = rest.index("--")
    try:
        specs = [parse_spec(spec) for spec in rest[:split]]
    except ValueError as e:  # a wrong spec from the caller: say which, exit as the scripts do on usage errors
        print(f"devnet_status.py: {e}", file=sys.stderr)
        sys.exit(2)
    nodes = [s for s in specs if s["kind"] in NODE_KINDS]
    services = [s for s in specs if s["kind"] not in NODE_KINDS]
    hints = rest[split + 1:]
    history = {n["name"]: collections.deque() for n in nodes}
    prom_url = os.environ.get("DEVNET_PROM_URL", "")
    pg_bindir = os.environ.get("DEVNET_PG_BINDIR", "")
    psql = os.path.join(pg_bindir, "psql") if pg_bindir else shutil.which("psql")
    # Every task that waits on others (a node's sample, a service's probe, the Prometheus line)
    # and each of the at most two requests it makes gets its own thread, so that probes that all
    # time out still finish within one timeout instead of queueing behind each other.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=3 * len(nodes) + 3 * len(services) + 3)

    def get_status(url):
        """(HTTP status, body), or None when nothing answered within the timeout."""
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:  # /health answers 503 with its JSON when unhealthy
            return e.code, e.read()
        except Exception:
            return None

    def get(url):
        answer = get_status(url)
        return None if answer is None else answer[1]

    def get_json(url):
        try:
            return json.loads(get(url))
        except Exception:
            return None

    def exchange(connect, request, complete):
        """Sends REQUEST on the socket CONNECT() opens and reads until COMPLETE(bytes read) says
        the answer is whole (or the peer closes); None when that takes over the timeout."""
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        try:
            with connect() as sock:
                sock.settimeout(PROBE_TIMEOUT_S)
                sock.sendall(request)
                buf = b""
                while not complete(buf):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    sock.settimeout(left)
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                return buf
        except OSError:  # refused, reset, timed out
            return None

    def resp_call(port, *commands):
        """The replies to COMMANDS (each a tuple of arguments), pipelined on one connection to a
        Redis server or Sentinel on PORT; None when it does not answer them all in time."""
        def replies(buf):
            out, pos = [], 0
            while len(out) < len(commands):
                value, pos = resp_parse(buf, pos)
                out.append(value)
            return out

        def complete(buf):
            try:
                replies(buf)
                return True
            except Incomplete:
                return False
        buf = exchange(lambda: socket.create_connection(("127.0.0.1", int(port)), timeout=PROBE_TIMEOUT_S),
                       b"".join(resp_command(*c) for c in commands), complete)
        return None if buf is None or not complete(buf) else replies(buf)

    def haproxy_stat(path):
        def connect():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(PROBE_TIMEOUT_S)
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            return sock
        buf = exchange(connect, b"show stat\n", lambda _: False)  # HAProxy closes after answering
        return None if buf is None else buf.decode(errors="replace")

    def pgbouncer_probe(port):
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=PROBE_TIMEOUT_S).close()
        except OSError:
            return None
        detail = "-"
        if psql and deadline - time.monotonic() > 0.1:
            try:
                out = subprocess.run([psql, "-X", "-A", "-F", ",", "-P", "footer=off", "-h", "127.0.0.1", "-p", str(port),
                                      "-U", "postgres", "-d", "pgbouncer", "-c", "SHOW POOLS"],
                                     capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                     timeout=deadline - time.monotonic(), env=dict(os.environ, PGCONNECT_TIMEOUT="1"))
                if out.returncode == 0:
                    detail = pgbouncer_detail(out.stdout)
            except (OSError, subprocess.TimeoutExpired):
                pass  # the TCP check decided the health; the pools are only detail
        return "pool", "ok", detail

    def probe(svc):
        """(ROLE, HEALTH, DETAIL) of one service, None when it does not answer."""
        kind, target, base = svc["kind"], svc["target"], f"http://127.0.0.1:{svc['target']}"
        if kind == "etcd":
            health, stats = pool.submit(get_json, base + "/health"), pool.submit(get_json, base + "/v2/stats/self")
            return None if health.result() is None else etcd_cell(health.result(), stats.result())
        if kind == "patroni":
            me, cluster = pool.submit(get_json, base + "/patroni"), pool.submit(get_json, base + "/cluster")
            return None if me.result() is None else patroni_cell(me.result(), cluster.result(), target)
        if kind == "redis":
            replies = resp_call(target, ("ROLE",))
            return None if replies is None else redis_cell(replies[0])
        if kind == "sentinel":
            replies = resp_call(target, ("SENTINEL", "get-master-addr-by-name", svc["master"]),
                                ("SENTINEL", "master", svc["master"]))
            return None if replies is None else sentinel_cell(replies[0], replies[1], svc["master"])
        if kind == "pgbouncer":
            return pgbouncer_probe(target)
        if kind == "haproxy":
            text = haproxy_stat(target)
            return None if text is None else haproxy_cell(text)
        if kind == "prometheus":
            answer = get_status(base + "/-/ready")
            return None if answer is None else ("monitor", "ok" if answer[0] == 200 else "not ready", "-")
        return None

    def service_row(svc):
        try:
            answer = probe(svc)
        except Exception as e:  # an answer of a shape the parsers do not know: say so, keep drawing
            answer = ("?", "bad answer", f"{type(e).__name__}: {e}")
        if answer is None:
            answer = ("down", "down", "-") if not alive(svc["name"]) else ("-", "no answer", "-")
        return dict(name=svc["name"], kind=svc["kind"], role=answer[0], health=answer[1], detail=answer[2])

    def alive(name):
        try:
            pid = open(f"{state_dir}/pids/{name}").read().strip()
            stat = open(f"/proc/{pid}/stat").read()
            return stat.rsplit(")", 1)[1].split()[0] != "Z"
        except Exception:
            return False

    def sample(node):
        base = f"http://127.0.0.1:{node['health']}"
        h, m = pool.submit(get, base + "/health?format=json"), pool.submit(get, base + "/metrics")
        try:
            health = json.loads(h.result())
        except Exception:
            health = None
        txs = None
        for line in (m.result() or b"").decode(errors="replace").splitlines():
            if line.startswith("clnode_transactions_committed_total "):
                txs = float(line.split()[1])
        return health, txs

    def tx_rate(name, now, txs):
        q = history[name]
        if txs is None or (q and txs < q[-1][1]):  # down, or restarted (counter reset)
            q.clear()
        if txs is None:
            return None
        q.append((now, txs))
        while len(q) > 2 and now - q[1][0] >= WINDOW_S:
            q.popleft()
        if len(q) < 2 or q[-1][0] - q[0][0] < 0.5:
            return 0.0
        return (q[-1][1] - q[0][1]) / (q[-1][0] - q[0][0])

    def prometheus():
        if not prom_url:
            return None
        t, a = pool.submit(get, prom_url + "/api/v1/targets?state=active"), pool.submit(get, prom_url + "/api/v1/alerts")
        try:
            return prometheus_line(prom_url, json.loads(t.result()), json.loads(a.result()))
        except Exception:
            return prometheus_line(prom_url, None, None)

    def num(head):
        return head["number"] if isinstance(head, dict) else None

    def collect():
        service_rows = [pool.submit(service_row, svc) for svc in services]
        now = time.monotonic()
        results = list(zip(nodes, pool.map(sample, nodes)))
        chain = max((num(h.get("committed_head")) or 0 for _, (h, _) in results if h), default=None)
        rows, total = [], 0.0
        for node, (h, txs) in results:
            rate = tx_rate(node["name"], now, txs)
            total += rate or 0.0
            if h is None:
                rows.append(dict(name=node["name"], role="down" if not alive(node["name"]) else "no answer"))
                continue
            committed, el = num(h.get("committed_head")), num(h.get("el_head"))
            if h.get("mode") == "member":
                lag = f"{h.get('lag_blocks') or 0} ({h.get('lag_seconds') or 0:.1f}s)"
                committed = h.get("last_synced", committed)
            else:
                lag = dash(None if el is None or chain is None else chain - el)
            rows.append(dict(name=node["name"], role=h.get("role", "?"), term=h.get("term"), committed=committed,
                             el=el, lag=lag, tps=rate, failover=failover_cell(h), health=health_cell(h)))
        watch_leader(rows, chain)
        return rows, chain, total, [f.result() for f in service_rows]

    # Leader changes as seen from here, 1 s resolution: from the last head increase under the
    # old leader to the first one under the new leader.
    seen = dict(leader=None, head=None, advanced_at=None, change=None, stall=None)

    def watch_leader(rows, chain):
        leaders = [r["name"] for r in rows if r.get("role") == "leader"]
        now = time.time()
        if len(leaders) == 1 and seen["leader"] not in (None, leaders[0]):
            seen["change"] = (seen["leader"], leaders[0], now, seen["advanced_at"])
            seen["stall"] = None
        if len(leaders) == 1:
            seen["leader"] = leaders[0]
        if chain is not None and (seen["head"] is None or chain > seen["head"]):
            if seen["change"] and seen["stall"] is None and seen["head"] is not None and seen["change"][3]:
                seen["stall"] = now - seen["change"][3]
            seen["head"], seen["advanced_at"] = chain, now

    def change_line():
        if not seen["change"]:
            return None
        old, new, at, _ = seen["change"]
        stall = "waiting for its first block" if seen["stall"] is None else f"no new block for ~{seen['stall']:.0f}s"
        return f"leader change seen: {old} -> {new} at {time.strftime('%H:%M:%S', time.localtime(at))}, {stall}"

    def header(chain, total):
        up = time.time() - started
        left = f", stops in {duration(max(duration_s - up, 0))}" if duration_s else ""
        return (f"clnode devnet  {state_dir}  up {duration(up)}{left}  |  chain head {dash(chain)}"
                f"  |  {total:.1f} tx/s committed  |  {time.strftime('%H:%M:%S')}")

    first, last_plain = True, 0.0
    while True:
        tick = time.monotonic()
        prom = pool.submit(prometheus)
        rows, chain, total, service_rows = collect()
        prom = prom.result()
        if mode == "tty":
            width = shutil.get_terminal_size((120, 40)).columns
            services_table = [""] + table(service_rows, width, SERVICE_COLS) if service_rows else []
            lines = ([header(chain, total), ""] + table(rows, width) + services_table + [change_line() or ""]
                     + ([prom] if prom else []) + [""] + hints)
            out = ("\x1b[H\x1b[2J" if first else "\x1b[H") + "".join(fit(l, width) + "\x1b[K\n" for l in lines) + "\x1b[J"
            sys.stdout.write(out)
            sys.stdout.flush()
            first = False
        elif tick - last_plain >= every_s - 0.05:
            last_plain = tick
            parts = [f"{r['name']} {r['role']}" + ("" if "term" not in r else
                     f" term={dash(r['term'])} head={dash(r['committed'])} el={dash(r['el'])} lag={r['lag']}"
                     f" tx/s={cell(r, 'tps')} {r['health']}" + ("" if r["failover"] == "-" else f" failover {r['failover']}"))
                     for r in rows]
            if change_line() and change_line() != seen.get("printed"):
                seen["printed"] = change_line()
                parts.append(change_line())
            parts += [service_part(r) for r in service_rows]
            if prom:
                parts.append(prom)
            print(f"{time.strftime('%H:%M:%S')} chain head {dash(chain)}, {total:.1f} tx/s | " + " | ".join(parts), flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


if __name__ == "__main__":
    main(sys.argv[1:])
