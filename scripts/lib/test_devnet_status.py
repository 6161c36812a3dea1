"""Tests of the devnet status table's pure parts: python3 -m unittest discover -s scripts/lib
(tests/devnet.rs runs them in `make test`)."""

import unittest

from devnet_status import (COLS, ELLIPSIS, SERVICE_COLS, Incomplete, RespError, etcd_cell, failover_cell, fit,
                           haproxy_cell, parse_spec, patroni_cell, pgbouncer_detail, prometheus_line, redis_cell,
                           resp_command, resp_parse, sentinel_cell, service_part, table)


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


# Answers recorded from the real servers the scripts start (redis.sh, redis-sentinel.sh, etcd.sh,
# patroni.sh with Patroni 3.0.2, pgbouncer.sh, haproxy.sh), Debian bookworm packages.

REDIS_MASTER = b"*3\r\n$6\r\nmaster\r\n:582\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$5\r\n47051\r\n$3\r\n448\r\n"
REDIS_MASTER_ALONE = b"*3\r\n$6\r\nmaster\r\n:13601\r\n*0\r\n"
REDIS_REPLICA = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:36797\r\n$9\r\nconnected\r\n:582\r\n"
REDIS_REPLICA_CUT_OFF = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:41357\r\n$7\r\nconnect\r\n:-1\r\n"
SENTINEL_ADDR = b"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n36797\r\n"
SENTINEL_NO_SUCH_MASTER = b"*-1\r\n"  # get-master-addr-by-name of a name it does not monitor
SENTINEL_MASTER_ERROR = b"-ERR No such master with that name\r\n"


def sentinel_master(flags):
    """SENTINEL master mymaster as recorded, with FLAGS as the field flags (the recorded values
    were master; s_down,o_down,master,failover_in_progress; master,disconnected)."""
    fields = ["name", "mymaster", "ip", "127.0.0.1", "port", "36797", "runid", "ee7ec18f1afc1377967fcd412d32ed98be7892c7",
              "flags", flags, "link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0",
              "last-ok-ping-reply", "204", "last-ping-reply", "204", "down-after-milliseconds", "1000",
              "info-refresh", "9541", "role-reported", "master", "role-reported-time", "9545", "config-epoch", "0",
              "num-slaves", "1", "num-other-sentinels", "0", "quorum", "1", "failover-timeout", "5000",
              "parallel-syncs", "1"]
    return resp_command(*fields)


PATRONI_PRIMARY = {"state": "running", "postmaster_start_time": "2026-12-02 14:37:14.919704+00:00", "role": "master",
                   "server_version": 150018, "xlog": {"location": 50615896}, "timeline": 1,
                   "replication": [{"usename": "replicator", "application_name": "pg-2", "client_addr": "127.0.0.1",
                                    "state": "streaming", "sync_state": "sync", "sync_priority": 1}],
                   "dcs_last_seen": 1796222346, "database_system_identifier": "7714715752580383068",
                   "patroni": {"version": "3.0.2", "scope": "clnode"}}
PATRONI_REPLICA = {"state": "running", "postmaster_start_time": "2026-12-02 14:37:32.145054+00:00", "role": "replica",
                   "server_version": 150018,
                   "xlog": {"received_location": 50331728, "replayed_location": 50331728,
                            "replayed_timestamp": "2026-12-02 14:37:34.064647+00:00", "paused": False},
                   "sync_standby": True, "timeline": 1, "dcs_last_seen": 1796222261,
                   "database_system_identifier": "7714715752580383068", "patroni": {"version": "3.0.2", "scope": "clnode"}}
PATRONI_CLUSTER = {"members": [
    {"name": "pg-1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:51527/patroni",
     "host": "127.0.0.1", "port": 45579, "timeline": 1},
    {"name": "pg-2", "role": "sync_standby", "state": "running", "api_url": "http://127.0.0.1:34699/patroni",
     "host": "127.0.0.1", "port": 45683, "timeline": 1, "lag": 0}]}

HAPROXY_SHOW_STAT = (
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,\n'
    'members_rpc,FRONTEND,,,0,0,200,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n'
    'members,member-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,203,203,,1,3,1,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,127.0.0.1:41357,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'members,member-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,203,0,,1,3,2,,0,,2,0,,0,L7OK,200,10,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:51527,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'members,BACKEND,0,0,0,0,20,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,203,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,810,810,136576,9696,0,0,\n'
    'pg,FRONTEND,,,0,0,200,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,4,0,,,,0,0,0,0,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,0,0,0,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n'
    'pg,pg-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,203,0,,1,4,1,,0,,2,0,,0,L7OK,200,2,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:45579,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'pg,pg-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,203,203,,1,4,2,,0,,2,0,,0,L7STS,503,1,,,,,,,,,,,0,0,,,,,-1,Service Unavailable,,0,0,0,0,,,,Layer7 wrong status,,2,2,0,,,,127.0.0.1:45683,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'pg,BACKEND,0,0,0,0,20,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,203,0,,1,4,0,,0,,1,0,,0,,,,,,,,,,,,,,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,806,806,292547,20150,0,0,\n'
    '\n'
)

PGBOUNCER_POOLS = """database,user,cl_active,cl_waiting,cl_active_cancel_req,cl_waiting_cancel_req,sv_active,sv_active_cancel,sv_being_canceled,sv_idle,sv_used,sv_tested,sv_login,maxwait,maxwait_us,pool_mode
pgbouncer,pgbouncer,1,0,0,0,0,0,0,0,0,0,0,0,0,statement
postgres,postgres,0,0,0,0,0,0,0,1,0,0,0,0,0,session
"""


def resp(raw):
    value, end = resp_parse(raw)
    assert end == len(raw), (raw, end)
    return value


class Spec(unittest.TestCase):
    def test_name_kind_target(self):
        cases = [
            ("leader-1:leader:8080", dict(name="leader-1", kind="leader", health="8080")),
            ("member-1:member:8081", dict(name="member-1", kind="member", health="8081")),
            ("etcd:etcd:2379", dict(name="etcd", kind="etcd", target="2379")),
            ("pg-1:patroni:8008", dict(name="pg-1", kind="patroni", target="8008")),
            ("redis-1:redis:6380", dict(name="redis-1", kind="redis", target="6380")),
            ("sentinel-1:sentinel:26379:mymaster", dict(name="sentinel-1", kind="sentinel", target="26379", master="mymaster")),
            ("pgbouncer:pgbouncer:6432", dict(name="pgbouncer", kind="pgbouncer", target="6432")),
            ("haproxy:haproxy:/tmp/x/haproxy.sock", dict(name="haproxy", kind="haproxy", target="/tmp/x/haproxy.sock")),
            ("prometheus:prometheus:9095", dict(name="prometheus", kind="prometheus", target="9095")),
        ]
        for spec, expected in cases:
            with self.subTest(spec=spec):
                self.assertEqual(parse_spec(spec), expected)

    def test_refuses_what_it_cannot_probe(self):
        for spec in ["leader-1:leader", "x:mysql:3306", "s:sentinel:26379", "s:sentinel:mymaster:26379",
                     "r:redis:localhost", ":redis:6379", "h:haproxy:", "leader-1:leader:port"]:
            with self.subTest(spec=spec):
                with self.assertRaises(ValueError):
                    parse_spec(spec)


class Resp(unittest.TestCase):
    def test_parses_replies_and_asks_for_more_when_cut(self):
        cases = [
            (b"+OK\r\n", "OK"),
            (b":42\r\n", 42),
            (b"$-1\r\n", None),
            (b"*-1\r\n", None),
            (b"$0\r\n\r\n", ""),
            (REDIS_REPLICA, ["slave", "127.0.0.1", 36797, "connected", 582]),
            (REDIS_MASTER, ["master", 582, [["127.0.0.1", "47051", "448"]]]),
        ]
        for raw, expected in cases:
            with self.subTest(raw=raw):
                self.assertEqual(resp(raw), expected)
        err = resp(SENTINEL_MASTER_ERROR)
        self.assertIsInstance(err, RespError)
        self.assertEqual(err, "ERR No such master with that name")
        for cut in range(len(REDIS_MASTER)):
            with self.assertRaises(Incomplete):
                resp_parse(REDIS_MASTER[:cut])
        with self.assertRaises(ValueError):
            resp_parse(b"HTTP/1.1 400\r\n")

    def test_two_pipelined_replies(self):
        raw = SENTINEL_ADDR + sentinel_master("master")
        first, pos = resp_parse(raw)
        second, end = resp_parse(raw, pos)
        self.assertEqual(first, ["127.0.0.1", "36797"])
        self.assertEqual((second[0], second[1], end), ("name", "mymaster", len(raw)))

    def test_command_encoding(self):
        self.assertEqual(resp_command("SENTINEL", "master", "mymaster"),
                         b"*3\r\n$8\r\nSENTINEL\r\n$6\r\nmaster\r\n$8\r\nmymaster\r\n")


class Redis(unittest.TestCase):
    def test_role_cells(self):
        cases = [
            (REDIS_MASTER, ("master", "ok", "1 replica: 127.0.0.1:47051")),
            (REDIS_MASTER_ALONE, ("master", "ok", "0 replicas")),
            (REDIS_REPLICA, ("replica", "ok", "of 127.0.0.1:36797, link connected")),
            (REDIS_REPLICA_CUT_OFF, ("replica", "ok", "of 127.0.0.1:41357, link connect")),
            (b"-LOADING Redis is loading the dataset in memory\r\n",
             ("?", "error", "LOADING Redis is loading the dataset in memory")),
        ]
        for raw, expected in cases:
            with self.subTest(raw=raw):
                self.assertEqual(redis_cell(resp(raw)), expected)


class Sentinel(unittest.TestCase):
    def test_the_master_it_sees_and_its_flags(self):
        seen = "sees master 127.0.0.1:36797, 1 replica, 0 other sentinels, quorum 1"
        cases = [
            (SENTINEL_ADDR, sentinel_master("master"), ("sentinel", "ok", seen)),
            (SENTINEL_ADDR, sentinel_master("s_down,master"), ("sentinel", "master s_down", seen)),
            (SENTINEL_ADDR, sentinel_master("s_down,o_down,master,failover_in_progress"),
             ("sentinel", "master o_down", seen)),
            (SENTINEL_ADDR, sentinel_master("master,failover_in_progress"), ("sentinel", "failover", seen)),
            (SENTINEL_ADDR, sentinel_master("master,disconnected"), ("sentinel", "ok", seen)),
            (SENTINEL_ADDR, SENTINEL_MASTER_ERROR, ("sentinel", "ok", "sees master 127.0.0.1:36797")),
            (SENTINEL_NO_SUCH_MASTER, SENTINEL_MASTER_ERROR, ("sentinel", "no master", "does not monitor mymaster")),
        ]
        for addr, master, expected in cases:
            with self.subTest(master=master[:200]):
                self.assertEqual(sentinel_cell(resp(addr), resp(master), "mymaster"), expected)


class Patroni(unittest.TestCase):
    def test_roles_from_the_cluster_view_and_its_own(self):
        stopped = dict(PATRONI_REPLICA, state="stopped")
        lagging = {"members": [PATRONI_CLUSTER["members"][0],
                               dict(PATRONI_CLUSTER["members"][1], role="replica", lag=3 * 1024 * 1024)]}
        unknown_lag = {"members": [PATRONI_CLUSTER["members"][0], dict(PATRONI_CLUSTER["members"][1], lag="unknown")]}
        cases = [
            (PATRONI_PRIMARY, PATRONI_CLUSTER, 51527, ("primary", "ok", "timeline 1, sync standby pg-2")),
            (PATRONI_REPLICA, PATRONI_CLUSTER, 34699, ("sync standby", "ok", "timeline 1, lag 0 B")),
            (PATRONI_REPLICA, lagging, 34699, ("replica", "ok", "timeline 1, lag 3.0 MB")),
            (PATRONI_REPLICA, unknown_lag, 34699, ("sync standby", "ok", "timeline 1, lag unknown")),
            (PATRONI_PRIMARY, lagging, 51527, ("primary", "ok", "timeline 1, no sync standby")),
            # /cluster did not answer: the member's own view
            (PATRONI_PRIMARY, None, 51527, ("primary", "ok", "timeline 1, sync standby pg-2")),
            (PATRONI_REPLICA, None, 34699, ("sync standby", "ok", "timeline 1")),
            (dict(PATRONI_REPLICA, sync_standby=False), None, 34699, ("replica", "ok", "timeline 1")),
            (stopped, None, 34699, ("sync standby", "stopped", "timeline 1")),
            (dict(PATRONI_PRIMARY, role="primary", pause=True), None, 51527,
             ("primary", "ok", "timeline 1, sync standby pg-2, paused")),
        ]
        for me, cluster, port, expected in cases:
            with self.subTest(expected=expected):
                self.assertEqual(patroni_cell(me, cluster, port), expected)


class Etcd(unittest.TestCase):
    def test_health_and_raft_state(self):
        leader = {"name": "clnode-etcd", "id": "ab054d20ed093b53", "state": "StateLeader",
                  "startTime": "2026-12-02T14:37:10.870748692Z",
                  "leaderInfo": {"leader": "ab054d20ed093b53", "uptime": "3.866307274s",
                                 "startTime": "2026-12-02T14:37:10.972143572Z"},
                  "recvAppendRequestCnt": 0, "sendAppendRequestCnt": 0}
        cases = [
            ({"health": "true"}, leader, ("leader", "ok", "clnode-etcd")),
            ({"health": "true"}, dict(leader, state="StateFollower"), ("follower", "ok", "clnode-etcd")),
            ({"health": "true"}, None, ("member", "ok", "-")),
            ({"health": "false"}, None, ("member", "unhealthy", "-")),
            ({"health": "false", "reason": "RAFT NO LEADER"}, dict(leader, state="StateCandidate"),
             ("member", "unhealthy", "RAFT NO LEADER; clnode-etcd")),
        ]
        for health, stats, expected in cases:
            with self.subTest(expected=expected):
                self.assertEqual(etcd_cell(health, stats), expected)


class Haproxy(unittest.TestCase):
    def test_each_backends_servers(self):
        pg_down = HAPROXY_SHOW_STAT.replace("pg,pg-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP", "pg,pg-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN")
        failing = HAPROXY_SHOW_STAT.replace("pg,pg-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP", "pg,pg-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2")
        self.assertNotEqual(pg_down, HAPROXY_SHOW_STAT)
        cases = [
            (HAPROXY_SHOW_STAT, ("balancer", "ok", "members: member-1 DOWN, member-2 UP; pg: pg-1 UP, pg-2 DOWN")),
            (failing, ("balancer", "ok", "members: member-1 DOWN, member-2 UP; pg: pg-1 UP 1/2, pg-2 DOWN")),
            (pg_down, ("balancer", "pg none up", "members: member-1 DOWN, member-2 UP; pg: pg-1 DOWN, pg-2 DOWN")),
            ("Unknown command.\n", ("balancer", "bad answer", "Unknown command.")),
            ("", ("balancer", "bad answer", "empty answer")),
        ]
        for text, expected in cases:
            with self.subTest(expected=expected):
                self.assertEqual(haproxy_cell(text), expected)


class Pgbouncer(unittest.TestCase):
    def test_pools_without_its_admin_database(self):
        self.assertEqual(pgbouncer_detail(PGBOUNCER_POOLS), "postgres: clients 0 active 0 waiting, servers 0 active 1 idle")
        self.assertEqual(pgbouncer_detail(PGBOUNCER_POOLS.split("postgres,postgres")[0]), "no pools yet")
        self.assertEqual(pgbouncer_detail(""), "-")


class Services(unittest.TestCase):
    def test_the_detail_is_fitted_and_plain_lines_keep_it_whole(self):
        rows = [dict(name="haproxy", kind="haproxy", role="balancer", health="ok",
                     detail="members: member-1 DOWN, member-2 UP; pg: pg-1 UP, pg-2 DOWN"),
                dict(name="redis-1", kind="redis", role="down", health="down", detail="-")]
        offset = sum(w + 1 for _, _, w in SERVICE_COLS[:-1])
        lines = table(rows, offset + 30, SERVICE_COLS)
        self.assertTrue(lines[0].startswith("SERVICE") and lines[0].endswith("DETAIL"), lines[0])
        self.assertTrue(all(len(line) <= offset + 30 for line in lines), lines)
        self.assertTrue(lines[1].endswith("members: member-1 DOWN" + ELLIPSIS), lines[1])
        self.assertEqual(lines[2].split(), ["redis-1", "redis", "down", "down", "-"])
        self.assertEqual(service_part(rows[0]), "haproxy balancer ok (members: member-1 DOWN, member-2 UP; pg: pg-1 UP, pg-2 DOWN)")
        self.assertEqual(service_part(rows[1]), "redis-1 down down")


if __name__ == "__main__":
    unittest.main()
