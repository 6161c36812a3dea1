"""The devnet's live status table (run by scripts/devnet.sh; not a tool of its own).

    devnet_status.py STATE_DIR MODE EVERY_S DURATION_S STARTED NAME:KIND:HEALTH_PORT... -- HINT...

One row per clnode from /health?format=json and /metrics. TX/S is the increase of
clnode_transactions_committed_total (counted by the node that committed the block, i.e. the
leader) over the last 5 s; the header sums the nodes. LAG for leader-mode nodes is the highest
committed head any node reports minus this node's EL head; for members their own lag_blocks
(lag_seconds). MODE tty redraws in place, plain prints a line every EVERY_S seconds.
With DEVNET_PROM_URL set (the devnet's Prometheus), a line under the table says how many of its
clnode targets are up and which alerts fire (from /api/v1/targets and /api/v1/alerts).

The pure parts (cells, fitting a line to the terminal) are tested by test_devnet_status.py.
"""

import collections
import concurrent.futures
import json
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request

WINDOW_S = 5.0
COLS = [("NODE", "name", 9), ("ROLE", "role", 9), ("TERM", "term", 5), ("COMMITTED", "committed", 10),
        ("EL HEAD", "el", 8), ("LAG", "lag", 10), ("TX/S", "tps", 6), ("LAST FAILOVER", "failover", 25),
        ("HEALTH", "health", 0)]
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


def table(rows, width=None):
    """The table's lines; with WIDTH, the last column (HEALTH) is fitted to what is left of the
    line at a word boundary instead of being cut off mid-word by the terminal."""
    def fmt(cells):
        parts = [c.ljust(w) if w else c for c, (_, _, w) in zip(cells, COLS)]
        if width is not None:
            offset = sum(w + 1 for _, _, w in COLS[:-1])
            parts[-1] = fit(parts[-1], width - offset)
        return " ".join(parts).rstrip()
    return [fmt([title for title, _, _ in COLS])] + [fmt([cell(r, k) for _, k, _ in COLS]) for r in rows]


# --- sampling and drawing ---------------------------------------------------------------------

def main(argv):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state_dir, mode, every_s, duration_s, started = argv[0], argv[1], float(argv[2]), int(argv[3]), int(argv[4])
    rest = argv[5:]
    split = rest.index("--")
    nodes = [dict(zip(("name", "kind", "health"), spec.split(":"))) for spec in rest[:split]]
    hints = rest[split + 1:]
    history = {n["name"]: collections.deque() for n in nodes}
    prom_url = os.environ.get("DEVNET_PROM_URL", "")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(nodes) + 2)

    def get(url):
        try:
            with urllib.request.urlopen(url, timeout=0.8) as r:
                return r.read()
        except urllib.error.HTTPError as e:  # /health answers 503 with its JSON when unhealthy
            return e.read()
        except Exception:
            return None

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
        return rows, chain, total

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
        rows, chain, total = collect()
        prom = prom.result()
        if mode == "tty":
            width = shutil.get_terminal_size((120, 40)).columns
            lines = [header(chain, total), ""] + table(rows, width) + [change_line() or ""] + ([prom] if prom else []) + [""] + hints
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
            if prom:
                parts.append(prom)
            print(f"{time.strftime('%H:%M:%S')} chain head {dash(chain)}, {total:.1f} tx/s | " + " | ".join(parts), flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


if __name__ == "__main__":
    main(sys.argv[1:])
