"""Tests of the devnet status table's pure parts: python3 -m unittest discover -s scripts/lib
(tests/devnet.rs runs them in `make test`)."""

import unittest

from devnet_status import COLS, ELLIPSIS, failover_cell, fit, prometheus_line, table


class Fit(unittest.TestCase):
    def test_cuts_at_a_word_boundary_with_an_ellipsis(self):
        reason = "UNHEALTHY redis: Redis renew (127.0.0.1:6379): timed out"
        cases = [
            (reason, 200, reason),                       # fits: unchanged
            (reason, len(reason), reason),
            (reason, 30, "UNHEALTHY redis: Redis renew" + ELLIPSIS),
            (reason, 20, "UNHEALTHY redis" + ELLIPSIS),  # the ':' before the cut goes too
            ("UNHEALTHY", 5, "UNHE" + ELLIPSIS),         # one long word: cut inside it
            ("ok", 0, ""),
            ("a b", 2, "a" + ELLIPSIS),
        ]
        for text, width, expected in cases:
            with self.subTest(text=text, width=width):
                got = fit(text, width)
                self.assertEqual(got, expected)
                self.assertLessEqual(len(got), max(width, 0))

    def test_never_ends_inside_a_word_when_a_space_exists(self):
        text = "UNHEALTHY execution client: Engine API eth_chainId (http://127.0.0.1:8551): connection refused"
        for width in range(12, len(text)):
            got = fit(text, width)
            words = text.split(" ")
            kept = got.rstrip(ELLIPSIS).rstrip(" ;,:").split(" ")
            # Every kept word is a whole word of the text (punctuation trimmed at the end).
            self.assertTrue(all(w in words or w + ":" in words or w + ";" in words or w + "," in words
                                for w in kept), (width, got))


class Table(unittest.TestCase):
    def test_the_health_cell_is_fitted_to_the_terminal(self):
        row = dict(name="leader-2", role="standby", term=4, committed=120, el=120, lag="0", tps=0.0, failover="-",
                   health="UNHEALTHY execution client: Engine API eth_blockNumber (http://127.0.0.1:8561): timed out")
        offset = sum(w + 1 for _, _, w in COLS[:-1])
        lines = table([row], offset + 40)
        self.assertTrue(all(len(line) <= offset + 40 for line in lines), lines)
        self.assertTrue(lines[1].endswith("Engine API" + ELLIPSIS), lines[1])
        self.assertIn("eth_blockNumber", table([row])[1])  # no width: nothing cut (plain mode)


class Failover(unittest.TestCase):
    def test_shows_what_the_node_reported_or_a_dash(self):
        self.assertEqual(failover_cell({"last_failover_ms": None}), "-")
        self.assertEqual(failover_cell({}), "-")
        cell = failover_cell({"last_failover_ms": 1350, "last_failover_at_unix_s": 100, "now_unix_s": 165})
        self.assertEqual(cell, "took 1.35s, 1m05s ago")


if __name__ == "__main__":
    unittest.main()


class Prometheus(unittest.TestCase):
    def test_counts_clnode_targets_up_and_names_firing_alerts(self):
        url = "http://127.0.0.1:9095"
        target = lambda instance, health, job="clnode": {"labels": {"job": job, "instance": instance}, "health": health}
        alert = lambda name, state, **labels: {"labels": {"alertname": name, **labels}, "state": state}
        targets = {"status": "success", "data": {"activeTargets": [
            target("leader-1", "up"), target("leader-2", "down"), target("member-1", "up"), target("x", "up", job="other")]}}
        alerts = {"status": "success", "data": {"alerts": [
            alert("ClnodeDown", "firing", instance="leader-2", cluster="devnet"),
            alert("ClnodeNoLeader", "firing", cluster="devnet"),
            alert("ClnodeCommitRefused", "pending", instance="leader-1"),
        ]}}
        cases = [
            (targets, alerts, f"prometheus {url}: 2/3 targets up, alerts firing: ClnodeDown (leader-2), ClnodeNoLeader (devnet)"),
            (targets, {"data": {"alerts": []}}, f"prometheus {url}: 2/3 targets up, alerts firing: none"),
            ({"data": {"activeTargets": []}}, {"data": {"alerts": []}}, f"prometheus {url}: 0/0 targets up, alerts firing: none"),
            (None, alerts, f"prometheus {url}: no answer"),
            (targets, None, f"prometheus {url}: no answer"),
        ]
        for t, a, expected in cases:
            with self.subTest(expected=expected):
                self.assertEqual(prometheus_line(url, t, a), expected)
