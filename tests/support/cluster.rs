//! The one cluster builder: Redis, the leader PostgreSQL and leader-mode
//! nodes each with its own execution client, as the integration tests, the
//! fault suite and the benchmarks start them; members on top.

use std::time::Duration;

use super::patroni::PgHa;
use super::pgbouncer::PgBouncer;
use super::proxy::{ProxyMode, TcpProxy};
use super::sentinel::RedisHa;
use super::{
    assert_continuous, send_transactions, send_transactions_at, stored_chain, wait_for, El, ElKind, ElPeer, Node,
    Postgres, Redis, TestDir, FAST_LEADER,
};

/// How to start a cluster: `Cluster::builder(name)`, then what differs from
/// the defaults (one leader-mode node on geth with the osaka genesis, no
/// extra flags), then `start()`.
pub struct ClusterBuilder {
    name: String,
    leaders: usize,
    kind: ElKind,
    /// Per node, when the clients differ (`mixed`); else every node runs `kind`.
    kinds: Vec<ElKind>,
    genesis: String,
    flags: Vec<String>,
    /// The leader-mode nodes' block-signing key (hex).
    signing_key: &'static str,
    links: bool,
    peered: bool,
    sentinel: bool,
    pgbouncer: bool,
    patroni: Option<&'static str>,
    wal_archive: bool,
    osaka_at: Option<Option<u64>>,
}

impl ClusterBuilder {
    /// The block-signing key of this cluster's leader-mode nodes, when it
    /// is not `keys::SIGNING_KEY` (another cluster, whose blocks the default
    /// test member refuses).
    pub fn signing_key(mut self, signing_key: &'static str) -> ClusterBuilder {
        self.signing_key = signing_key;
        self
    }

    /// Every leader-mode node reaches Redis, PostgreSQL and its execution
    /// client's Engine API through a proxy of its own (`Cluster::links`), so
    /// a test can cut or blackhole any one link. The client's plain RPC
    /// port (transactions, checks) stays direct.
    pub fn links(mut self) -> ClusterBuilder {
        self.links = true;
        self
    }

    /// The execution clients peer with each other over devp2p on loopback
    /// (static peers, no discovery: the launchers' EL_P2P_ADDR and
    /// EL_PEERS), so a transaction sent to any of them reaches the leader's.
    /// Members join with `Member::start_peered(.., &cluster.el_enodes())`.
    pub fn peered(mut self) -> ClusterBuilder {
        self.peered = true;
        self
    }

    /// The nodes reach Redis through Sentinel (`Cluster::redis_ha`: a
    /// master, a replica, three sentinels) instead of `Cluster::redis`.
    pub fn sentinel(mut self) -> ClusterBuilder {
        self.sentinel = true;
        self
    }

    /// The nodes reach PostgreSQL through PgBouncer in session mode
    /// (`Cluster::pgbouncer`) instead of directly.
    pub fn pgbouncer(mut self) -> ClusterBuilder {
        self.pgbouncer = true;
        self
    }

    /// The nodes' PostgreSQL is a Patroni cluster (`Cluster::pg_ha`: etcd,
    /// a primary and a standby; `mode` "sync" or "async"), reached through
    /// its multi-host URL, instead of `Cluster::postgres`.
    pub fn patroni(mut self, mode: &'static str) -> ClusterBuilder {
        self.patroni = Some(mode);
        self
    }

    /// The leader PostgreSQL archives its WAL into `<dir>/wal-archive`
    /// (postgres.sh `PG_ARCHIVE_DIR`), for backup and restore drills; with
    /// `patroni()`, the Patroni cluster's primary does (patroni.sh
    /// `PATRONI_ARCHIVE_DIR`) instead.
    pub fn wal_archive(mut self) -> ClusterBuilder {
        self.wal_archive = true;
        self
    }

    /// The clients start from a genesis that activates Osaka at this Unix
    /// time (Prague before it; `None`: Osaka not scheduled), written into
    /// the cluster's directory (`El::genesis`, for the members' clients
    /// too).
    pub fn osaka_at(mut self, timestamp: Option<u64>) -> ClusterBuilder {
        self.osaka_at = Some(timestamp);
        self
    }

    /// How many leader-mode nodes (each with its own execution client).
    pub fn leaders(mut self, count: usize) -> ClusterBuilder {
        self.leaders = count;
        self
    }

    /// The leader-mode nodes' execution client and genesis.
    pub fn el(mut self, kind: ElKind, genesis: &str) -> ClusterBuilder {
        self.kind = kind;
        self.genesis = genesis.to_owned();
        self
    }

    /// Node i runs `kinds[i]` (a cluster of mixed clients, e.g. geth and
    /// EthereumJS on the Prague genesis); as many nodes as kinds. The
    /// clients are named by kind and index (`geth0`, `ejs1`).
    pub fn mixed(mut self, kinds: &[ElKind]) -> ClusterBuilder {
        self.kinds = kinds.to_vec();
        self.leaders = kinds.len();
        self
    }

    /// Block time may run far ahead of the clock (`FAST_LEADER`), so
    /// hundreds of blocks take seconds, not minutes.
    pub fn fast(self) -> ClusterBuilder {
        self.flags(&FAST_LEADER)
    }

    /// Flags for every leader-mode node, after the ones given before.
    pub fn flags(mut self, flags: &[&str]) -> ClusterBuilder {
        self.flags.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    /// Starts the services and the nodes; does not wait for a leader.
    pub fn start(self) -> Cluster {
        let dir = TestDir::new(&self.name);
        let genesis = match self.osaka_at {
            Some(timestamp) => super::fork::osaka_genesis_at(&dir, timestamp),
            None => self.genesis.clone(),
        };
        let redis = Redis::start(&dir);
        let redis_ha = self.sentinel.then(|| RedisHa::start(&dir));
        let archive = dir.join("wal-archive").display().to_string();
        // One archive, one writer: the Patroni cluster's when there is one.
        let single_archives = self.wal_archive && self.patroni.is_none();
        let env: Vec<(&str, &str)> = if single_archives { vec![("PG_ARCHIVE_DIR", &archive)] } else { Vec::new() };
        let postgres = Postgres::start_with_env(&dir, "pg", &env);
        let pgbouncer = self.pgbouncer.then(|| PgBouncer::start(&dir, "pgbouncer", &postgres, "session"));
        let ha_archive = self.wal_archive.then(|| dir.join("wal-archive"));
        let pg_ha = self.patroni.map(|mode| PgHa::start(&dir, mode, ha_archive));
        let kinds: Vec<ElKind> = (0..self.leaders).map(|i| self.kinds.get(i).copied().unwrap_or(self.kind)).collect();
        let names: Vec<String> = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| match kind {
                ElKind::Geth => format!("geth{i}"),
                ElKind::EthereumJs => format!("ejs{i}"),
            })
            .collect();
        let peers: Vec<ElPeer> =
            if self.peered { names.iter().map(|name| ElPeer::new(&dir, name)).collect() } else { Vec::new() };
        let els: Vec<El> = names
            .iter()
            .enumerate()
            .map(|(i, name)| match peers.get(i) {
                Some(me) => {
                    let others: Vec<String> =
                        peers.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| p.enode.clone()).collect();
                    El::start_peered(&dir, name, kinds[i], &genesis, me, &others)
                }
                None => El::start(&dir, name, kinds[i], &genesis),
            })
            .collect();
        let key_file = super::signing_key_file(&dir, self.signing_key);
        let unsigned = self.flags.iter().any(|flag| flag == "--insecure-unsigned-records");
        let mut base: Vec<String> = if unsigned { Vec::new() } else { vec!["--signing-key-file".to_owned(), key_file] };
        base.extend(redis_ha.iter().flat_map(RedisHa::flags));
        // After `Node::leader`'s own --postgres-url: the last one counts.
        base.extend(pgbouncer.iter().flat_map(|bouncer| ["--postgres-url".to_owned(), bouncer.url()]));
        base.extend(pg_ha.iter().flat_map(|ha| ["--postgres-url".to_owned(), ha.url()]));
        base.extend(self.flags.iter().cloned());
        let links: Vec<NodeLinks> = if self.links {
            els.iter().map(|el| NodeLinks::start(el, &postgres, &redis, pg_ha.as_ref())).collect()
        } else {
            Vec::new()
        };
        let nodes = (0..self.leaders)
            .map(|i| {
                let mut flags: Vec<String> = base.clone();
                if let Some(link) = links.get(i) {
                    flags.extend(link.flags());
                }
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                Node::leader(&dir, &format!("leader-{i}"), &els[i], &postgres, &redis, &flags)
            })
            .collect();
        Cluster { nodes, links, els, peers, redis_ha, pgbouncer, pg_ha, postgres, redis, dir }
    }
}

/// One leader-mode node's links to its services, each a proxy the test can
/// switch (`ClusterBuilder::links`).
pub struct NodeLinks {
    pub redis: TcpProxy,
    pub postgres: TcpProxy,
    /// To each Patroni member's PostgreSQL (`pg_members[i]` to
    /// `pg_ha.members[i]`), when the cluster has one: the node's URL then
    /// names these instead of `postgres`.
    pub pg_members: Vec<TcpProxy>,
    /// To the execution client's Engine API (authenticated port).
    pub engine: TcpProxy,
}

impl NodeLinks {
    pub fn start(el: &El, postgres: &Postgres, redis: &Redis, pg_ha: Option<&PgHa>) -> NodeLinks {
        let members = pg_ha.map(|ha| ha.members.as_slice()).unwrap_or_default();
        NodeLinks {
            redis: TcpProxy::start(redis.port, ProxyMode::Pass),
            postgres: TcpProxy::start(postgres.port, ProxyMode::Pass),
            pg_members: members.iter().map(|member| TcpProxy::start(member.pg_port, ProxyMode::Pass)).collect(),
            engine: TcpProxy::start(el.auth_port, ProxyMode::Pass),
        }
    }

    /// The flags that send the node through the proxies (after the
    /// defaults `Node::leader` gives: the last one counts).
    pub fn flags(&self) -> Vec<String> {
        let postgres_url = if self.pg_members.is_empty() {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.postgres.port)
        } else {
            let hosts: Vec<String> = self.pg_members.iter().map(|proxy| format!("127.0.0.1:{}", proxy.port)).collect();
            format!("postgres://postgres@{}/postgres?target_session_attrs=read-write", hosts.join(","))
        };
        vec![
            "--redis-addr".into(),
            format!("127.0.0.1:{}", self.redis.port),
            "--postgres-url".into(),
            postgres_url,
            "--eth-client-url".into(),
            self.engine.url(),
        ]
    }

    /// Every link by name, for the cases that pick one.
    pub fn get(&self, service: &str) -> &TcpProxy {
        match service {
            "redis" => &self.redis,
            "postgres" => &self.postgres,
            "engine" => &self.engine,
            other => panic!("no link to {other:?}"),
        }
    }
}

/// Leader-mode nodes `leader-i` on execution clients `els[i]`, sharing one
/// Redis and one PostgreSQL. Fields drop in order: processes first, the
/// proxies, the directory (kept on failure) last.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// `links[i]`: node i's proxies, when built with `links()` (else empty).
    pub links: Vec<NodeLinks>,
    pub els: Vec<El>,
    /// `peers[i]`: the devp2p identity of `els[i]`, when built with
    /// `peered()` (else empty).
    pub peers: Vec<ElPeer>,
    /// The Redis master, replica and sentinels, when built with
    /// `sentinel()` (the nodes then do not use `redis`).
    pub redis_ha: Option<RedisHa>,
    /// The nodes' PgBouncer, when built with `pgbouncer()`.
    pub pgbouncer: Option<PgBouncer>,
    /// The nodes' Patroni cluster, when built with `patroni()` (the nodes
    /// then do not use `postgres`).
    pub pg_ha: Option<PgHa>,
    pub postgres: Postgres,
    pub redis: Redis,
    pub dir: TestDir,
}

impl Cluster {
    pub fn builder(name: &str) -> ClusterBuilder {
        ClusterBuilder {
            name: name.to_owned(),
            leaders: 1,
            kind: ElKind::Geth,
            kinds: Vec::new(),
            genesis: "osaka".to_owned(),
            flags: Vec::new(),
            signing_key: super::keys::SIGNING_KEY,
            links: false,
            peered: false,
            sentinel: false,
            pgbouncer: false,
            patroni: None,
            wal_archive: false,
            osaka_at: None,
        }
    }

    /// The enode URLs of the cluster's execution clients (`peered()`), for
    /// a member's client to dial.
    pub fn el_enodes(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.enode.clone()).collect()
    }

    /// Waits until every pair of the cluster's clients is connected.
    pub fn wait_peered(&self, timeout: Duration) {
        let want = u64::try_from(self.els.len() - 1).unwrap();
        wait_for(timeout, "the cluster's execution clients peered", || {
            self.els.iter().all(|el| el.peer_count() >= want).then_some(())
        });
    }

    /// Index of a node that reports itself leader (the first found).
    pub fn leader(&self) -> usize {
        wait_for(Duration::from_secs(30), "a leader", || (0..self.nodes.len()).find(|&i| self.nodes[i].is_leader()))
    }

    /// Index of the node that reports itself leader, once exactly one does.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        wait_for(timeout, "exactly one leader", || {
            let leaders: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_leader()).collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
    }

    /// (number, hash) of the committed head; (0, "") before the first block.
    pub fn head(&self) -> (u64, String) {
        let chain = stored_chain(&self.postgres);
        chain.last().map(|(n, h, _)| (*n, h.clone())).unwrap_or((0, String::new()))
    }

    /// Sends `count` transactions to node `index`'s client (with the key of
    /// that index) and waits until each is in a block.
    pub fn commit_transactions(&self, index: usize, count: usize, timeout: Duration) -> Vec<String> {
        let hashes = send_transactions(&self.els[index].rpc_url(), count, index);
        for hash in &hashes {
            wait_for(timeout, &format!("transaction {hash} committed"), || self.els[index].receipt_block(hash));
        }
        hashes
    }

    /// Every execution client reaches the head of `chain` (the committed
    /// chain, in order) and holds its last 20 blocks, hash for hash: no
    /// client is on a fork.
    pub fn assert_clients_hold(&self, chain: &[(u64, String, String)], context: &str) {
        let Some((head, _, _)) = chain.last() else { return };
        for el in &self.els {
            wait_for(Duration::from_secs(60), &format!("{context}: {} at block {head}", el.proc.name), || {
                (el.head().0 >= *head).then_some(())
            });
            for (number, hash, _) in chain.iter().rev().take(20) {
                assert_eq!(
                    el.block_hash(*number).as_ref(),
                    Some(hash),
                    "{context}: {} differs at {number}",
                    el.proc.name
                );
            }
        }
    }

    /// Commits blocks (bursts of transactions at 25/s to the leader) until
    /// the chain has at least `blocks` of them.
    pub fn grow_to(&self, blocks: u64) {
        while self.head().0 < blocks {
            let leader = self.leader();
            let missing = usize::try_from(blocks - self.head().0).unwrap();
            let sender = send_transactions_at(&self.els[leader].rpc_url(), missing, 25, 0);
            let hashes = sender.join().unwrap();
            if let Some(last) = hashes.last() {
                wait_for(Duration::from_secs(60), "last transaction committed", || {
                    self.els[leader].receipt_block(last)
                });
            }
        }
    }
}

/// A member with its own execution client (`<id>-el`) and database (`<id>-pg`).
pub struct Member {
    pub node: Node,
    pub el: El,
    pub postgres: Postgres,
}

impl Member {
    pub fn start(dir: &TestDir, id: &str, kind: ElKind, genesis: &str, urls: &[String], extra: &[&str]) -> Member {
        let el = El::start(dir, &format!("{id}-el"), kind, genesis);
        let postgres = Postgres::start(dir, &format!("{id}-pg"));
        let node = Node::member(dir, id, &el, &postgres, urls, extra);
        Member { node, el, postgres }
    }

    /// `start` with the member's client peered to `enodes` (the cluster's
    /// clients, `Cluster::el_enodes`): a transaction sent to it reaches them.
    pub fn start_peered(
        dir: &TestDir,
        id: &str,
        kind: ElKind,
        genesis: &str,
        urls: &[String],
        extra: &[&str],
        enodes: &[String],
    ) -> Member {
        let name = format!("{id}-el");
        let me = ElPeer::new(dir, &name);
        let el = El::start_peered(dir, &name, kind, genesis, &me, enodes);
        let postgres = Postgres::start(dir, &format!("{id}-pg"));
        let node = Node::member(dir, id, &el, &postgres, urls, extra);
        Member { node, el, postgres }
    }

    /// Waits until the member's client and database both hold `head`.
    pub fn wait_caught_up(&self, head: &(u64, String), timeout: Duration) {
        wait_for(timeout, &format!("{} at block {}", self.node.id, head.0), || {
            (self.el.head() == *head && stored_chain(&self.postgres).last().map(|b| b.0) == Some(head.0)).then_some(())
        });
    }

    /// The member's chain is a prefix of the cluster's, in its database and
    /// (for its last 20 blocks) on its client.
    pub fn assert_same_chain(&self, cluster: &Cluster) {
        let leader_chain = stored_chain(&cluster.postgres);
        let member_chain = stored_chain(&self.postgres);
        assert_continuous(&member_chain);
        assert_eq!(member_chain, leader_chain[..member_chain.len()], "{} stored a different chain", self.node.id);
        for (number, hash, _) in member_chain.iter().rev().take(20) {
            assert_eq!(self.el.block_hash(*number).as_ref(), Some(hash), "{} client differs at {number}", self.node.id);
        }
    }
}
