//! Test harness: real Redis, PostgreSQL, geth, EthereumJS and clnode
//! processes on loopback, each in its own temporary directory.
//!
//! Every process is started through the project's own launchers in
//! scripts/ (the same ones the devnet uses) and is SIGKILLed when its handle
//! drops, so a failing test leaves nothing running. A failing test keeps its
//! directory (logs included) and prints where it is.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod blobs;
pub mod cluster;
pub mod engine_relay;
pub mod fork;
pub mod haproxy;
pub mod http;
pub mod keys;
pub mod patroni;
pub mod pgbouncer;
pub mod proxy;
pub mod rng;
pub mod sentinel;
pub mod stats;
pub mod tls;

// The test crates `use support::*`: the parts they share, by name (each
// crate uses some of them).
#[allow(unused_imports)]
pub use cluster::{Cluster, Member, NodeLinks};
#[allow(unused_imports)]
pub use haproxy::{Haproxy, HaproxyServer, HealthCheck};
#[allow(unused_imports)]
pub use http::{hold_connections, http_get, http_get_within, http_request, raw_http, rss_kib};
#[allow(unused_imports)]
pub use proxy::{Fault, ProxyMode, TcpProxy};
#[allow(unused_imports)]
pub use rng::Rng;
#[allow(unused_imports)]
pub use stats::percentile;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub fn script(name: &str) -> PathBuf {
    Path::new(REPO).join("scripts").join(name)
}

/// tools/seedwire, built by `scripts/deps.sh seedwire` (`make deps`).
pub fn seedwire_binary() -> PathBuf {
    let path = Path::new(REPO).join(".tools/bin/seedwire");
    assert!(path.exists(), "{} is missing: run make deps (scripts/deps.sh seedwire)", path.display());
    path
}

/// scripts/genesis/<name>.json, or `name` itself when it is a file's path
/// (a test's own genesis: `fork::osaka_genesis_at`).
pub fn genesis(name: &str) -> PathBuf {
    if fork::is_genesis_file(name) {
        return PathBuf::from(name);
    }
    Path::new(REPO).join("scripts/genesis").join(format!("{name}.json"))
}

/// A scratch directory, removed when the test passes.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("clnode-test-{name}-{}-{unique}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("CLNODE_KEEP_TEST_DIRS").is_some() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A port nothing listens on, never handed out before in this process:
/// taken from 10000..32000, below Linux's ephemeral range (32768-60999): a
/// port the kernel hands out for binds to port 0 is also what it picks as
/// the local port of outgoing connections, so between this call and the
/// server's bind an HTTP client (a member fetching a page, an Engine API
/// call) could take it, and the server would fail with "Address already in
/// use". Each process starts at its own offset (from its pid and the
/// clock), so two test processes rarely probe the same ports.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut offset = next.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        (std::process::id().wrapping_mul(7919) ^ nanos) % COUNT
    });
    for _ in 0..COUNT {
        let port = u16::try_from(FIRST + offset).expect("below 32000");
        offset = (offset + 1) % COUNT;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            *next = Some(offset);
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// A child process whose output goes to a log file; SIGKILLed on drop.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
    command: Vec<String>,
}

impl Proc {
    pub fn spawn(name: &str, log: PathBuf, program: &Path, args: &[String]) -> Proc {
        Proc::spawn_with_env(name, log, program, args, &[])
    }

    /// `spawn` with extra environment variables for its first start (a
    /// restart with `start` goes without them).
    pub fn spawn_with_env(name: &str, log: PathBuf, program: &Path, args: &[String], env: &[(&str, &str)]) -> Proc {
        let mut proc = Proc::unstarted(name, log, program, args);
        proc.start_with_env(env);
        proc
    }

    /// The handle of a command not started yet (`start` runs it).
    pub fn unstarted(name: &str, log: PathBuf, program: &Path, args: &[String]) -> Proc {
        let mut command = vec![program.display().to_string()];
        command.extend(args.iter().cloned());
        Proc { name: name.to_owned(), child: None, log, command }
    }

    /// (Re)starts the same command, appending to the same log.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// SIGKILL and reap (so a restarted server finds its lock files free).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait up to `timeout` for a clean exit; returns the code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{} did not exit within {timeout:?} of SIGTERM", self.name);
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The process and all its descendants, parents first (PostgreSQL serves
/// every connection from a child of the postmaster).
pub fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let ppid = stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    tree
}

/// `kill -SIGNAL` to each of `pids` (a process tree, `process_tree`);
/// one that is already gone is no failure.
pub fn signal_pids(pids: &[u32], signal: &str) {
    for pid in pids {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
    }
}

/// Polls `check` every 20 ms until it returns Some, or panics after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll(timeout, Duration::from_millis(20), what, check)
}

/// Polls `check` every `every` until it returns Some, or panics after `timeout`.
pub fn poll<T>(timeout: Duration, every: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(every);
    }
}

pub struct Redis {
    pub proc: Proc,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &TestDir) -> Redis {
        Redis::start_named(dir, "redis", None)
    }

    /// A server with its own name (data directory and log), a replica of
    /// the server on `replica_of` when given.
    pub fn start_named(dir: &TestDir, name: &str, replica_of: Option<u16>) -> Redis {
        let port = free_port();
        let data = dir.join(name);
        let mut args = vec![data.display().to_string(), port.to_string()];
        args.extend(replica_of.map(|master| format!("127.0.0.1:{master}")));
        let proc = Proc::spawn(name, dir.join(format!("{name}.log")), &script("redis.sh"), &args);
        let redis = Redis { proc, port };
        redis.wait_ready();
        redis
    }

    pub fn wait_ready(&self) {
        wait_for(Duration::from_secs(20), "redis", || std::net::TcpStream::connect(("127.0.0.1", self.port)).ok());
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc.start();
        self.wait_ready();
    }
}

pub struct Postgres {
    pub proc: Proc,
    pub port: u16,
}

impl Postgres {
    pub fn start(dir: &TestDir, name: &str) -> Postgres {
        Postgres::start_with_env(dir, name, &[])
    }

    /// `start` with environment variables for postgres.sh (e.g.
    /// `PG_ARCHIVE_DIR`); a restart with `proc.start()` goes without them.
    pub fn start_with_env(dir: &TestDir, name: &str, env: &[(&str, &str)]) -> Postgres {
        let port = free_port();
        let data = dir.join(name);
        let proc = Proc::spawn_with_env(
            name,
            dir.join(format!("{name}.log")),
            &script("postgres.sh"),
            &[data.display().to_string(), port.to_string()],
            env,
        );
        let postgres = Postgres { proc, port };
        postgres.wait_ready();
        postgres
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn wait_ready(&self) {
        let url = self.url();
        wait_for(Duration::from_secs(60), "postgres", || postgres::Client::connect(&url, postgres::NoTls).ok());
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }

    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc.start();
        self.wait_ready();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElKind {
    Geth,
    EthereumJs,
}

/// An execution client with its Engine API and plain JSON-RPC ports.
pub struct El {
    pub kind: ElKind,
    pub proc: Proc,
    pub auth_port: u16,
    pub http_port: u16,
    pub jwt: PathBuf,
    env: Vec<(String, String)>,
    /// Its genesis: a name in scripts/genesis or a file's path (a member's
    /// client starts from its cluster's: `cluster.els[0].genesis`).
    pub genesis: String,
}

impl El {
    pub fn start(dir: &TestDir, name: &str, kind: ElKind, genesis_name: &str) -> El {
        El::start_with_env(dir, name, kind, genesis_name, &[])
    }

    /// `start` with environment variables for the launcher script, kept
    /// for restarts (e.g. `GETH_GCMODE=full`).
    pub fn start_with_env(dir: &TestDir, name: &str, kind: ElKind, genesis_name: &str, env: &[(&str, &str)]) -> El {
        let jwt = dir.join(format!("{name}-jwt.hex"));
        let status = Command::new(script("jwt.sh")).arg(&jwt).status().unwrap();
        assert!(status.success(), "jwt.sh failed");
        let (auth_port, http_port) = (free_port(), free_port());
        let launcher = match kind {
            ElKind::Geth => "geth.sh",
            ElKind::EthereumJs => "ethereumjs.sh",
        };
        let args = [
            dir.join(name).display().to_string(),
            genesis(genesis_name).display().to_string(),
            jwt.display().to_string(),
            auth_port.to_string(),
            http_port.to_string(),
        ];
        let proc = Proc::spawn_with_env(name, dir.join(format!("{name}.log")), &script(launcher), &args, env);
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let el = El { kind, proc, auth_port, http_port, jwt, env, genesis: genesis_name.to_owned() };
        el.wait_ready();
        el
    }

    pub fn wait_ready(&self) {
        let url = self.rpc_url();
        wait_for(Duration::from_secs(60), &format!("{} RPC", self.proc.name), || {
            rpc(&url, "eth_chainId", json!([])).ok()
        });
    }

    pub fn restart(&mut self) {
        self.proc.kill();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.proc.start_with_env(&env);
        self.wait_ready();
    }

    /// A clean stop (SIGTERM), then a start with `extra` added to the
    /// launcher's environment for this and later restarts (e.g. geth's
    /// `GETH_OVERRIDE_OSAKA`: a fork scheduled on a running chain).
    pub fn restart_with_env(&mut self, extra: &[(&str, &str)]) {
        self.proc.terminate(Duration::from_secs(30));
        self.env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.proc.start_with_env(&env);
        self.wait_ready();
    }

    pub fn engine_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.auth_port)
    }

    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn engine(&self) -> clnode::engine::EngineClient {
        let secret = clnode::engine::JwtSecret::from_file(&self.jwt).unwrap();
        clnode::engine::EngineClient::new(&self.engine_url(), secret)
    }

    pub fn head(&self) -> (u64, String) {
        let block = rpc(&self.rpc_url(), "eth_getBlockByNumber", json!(["latest", false])).unwrap();
        (quantity(&block["number"]), block["hash"].as_str().unwrap().to_owned())
    }

    pub fn block_hash(&self, number: u64) -> Option<String> {
        let block = rpc(&self.rpc_url(), "eth_getBlockByNumber", json!([format!("0x{number:x}"), false])).ok()?;
        block["hash"].as_str().map(str::to_owned)
    }

    pub fn balance(&self, address: &str) -> String {
        rpc(&self.rpc_url(), "eth_getBalance", json!([address, "latest"])).unwrap().as_str().unwrap().to_owned()
    }

    /// The block number a transaction was included in, if it was.
    pub fn receipt_block(&self, tx_hash: &str) -> Option<u64> {
        let receipt = rpc(&self.rpc_url(), "eth_getTransactionReceipt", json!([tx_hash])).ok()?;
        receipt.get("blockNumber").filter(|n| !n.is_null()).map(quantity)
    }
}

/// One execution client's devp2p identity within the cluster (`scripts/enode.sh`
/// made its node key in its data directory), for `El::start_peered`.
#[derive(Clone, Debug)]
pub struct ElPeer {
    /// `127.0.0.1:PORT` its devp2p listens on.
    pub addr: String,
    pub enode: String,
}

impl ElPeer {
    /// The identity of the client `name` will be in `dir`: a free port and a
    /// node key made now, so the other clients can list it before it starts.
    pub fn new(dir: &TestDir, name: &str) -> ElPeer {
        let addr = format!("127.0.0.1:{}", free_port());
        let output = Command::new(script("enode.sh")).arg(dir.join(name)).arg(&addr).output().unwrap();
        assert!(output.status.success(), "enode.sh failed: {}", String::from_utf8_lossy(&output.stderr));
        let enode = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        ElPeer { addr, enode }
    }
}

impl El {
    /// `start` with devp2p on at `me.addr`, dialling `peers` (the launchers'
    /// EL_P2P_ADDR and EL_PEERS), kept for restarts.
    pub fn start_peered(
        dir: &TestDir,
        name: &str,
        kind: ElKind,
        genesis_name: &str,
        me: &ElPeer,
        peers: &[String],
    ) -> El {
        let peers = peers.join(",");
        El::start_with_env(dir, name, kind, genesis_name, &[("EL_P2P_ADDR", &me.addr), ("EL_PEERS", &peers)])
    }

    /// How many devp2p peers the client has (`net_peerCount`).
    pub fn peer_count(&self) -> u64 {
        rpc(&self.rpc_url(), "net_peerCount", json!([])).map(|count| quantity(&count)).unwrap_or(0)
    }

    /// Whether the transaction is in this client's pool or in a block.
    pub fn knows_transaction(&self, tx_hash: &str) -> bool {
        rpc(&self.rpc_url(), "eth_getTransactionByHash", json!([tx_hash])).is_ok_and(|tx| !tx.is_null())
    }
}

pub fn quantity(value: &Value) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a quantity: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// Plain JSON-RPC (no JWT) to an execution client's HTTP port.
pub fn rpc(url: &str, method: &str, params: Value) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut response =
        agent.post(url).header("Content-Type", "application/json").send(body.as_bytes()).map_err(|e| e.to_string())?;
    let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if let Some(error) = value.get("error") {
        return Err(error.to_string());
    }
    Ok(value["result"].clone())
}

/// Signs and sends `count` value transfers with the project's tx tool;
/// returns their hashes. `key_index` picks one of the funded dev accounts
/// (`keys::SEND_KEYS`) so concurrent senders do not share nonces.
pub fn send_transactions(rpc_url: &str, count: usize, key_index: usize) -> Vec<String> {
    send_calldata_transactions(rpc_url, count, key_index, 0)
}

/// `send_transactions` with `data_bytes` of random calldata in each (full
/// blocks: 100 kB each is 4 M gas, so 7 fill a 30 M-gas block).
pub fn send_calldata_transactions(rpc_url: &str, count: usize, key_index: usize, data_bytes: usize) -> Vec<String> {
    let output = Command::new("node")
        .arg(script("node/sendtx.mjs"))
        .args(["--rpc", rpc_url, "--count", &count.to_string(), "--key", keys::key(&keys::SEND_KEYS, key_index)])
        .args(["--data-bytes", &data_bytes.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "sendtx failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["hash"].as_str().unwrap().to_owned())
        .collect()
}

/// A clnode process.
pub struct Node {
    pub proc: Proc,
    pub health_port: u16,
    pub api_port: Option<u16>,
    pub id: String,
}

pub fn clnode_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clnode"))
}

/// Runs the binary with `args` and no environment, for command lines that
/// must end on their own (bad flags, bad secrets); returns (exit code,
/// stdout, stderr). Panics if it still runs after 20 s.
pub fn run_clnode(args: &[&str]) -> (Option<i32>, String, String) {
    run_clnode_env(args, &[])
}

/// [`run_clnode`] with only the environment variables `env`.
pub fn run_clnode_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let child = Command::new(clnode_binary())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out, err) = wait_with_output(child, Duration::from_secs(20), &format!("clnode {args:?}"));
    (status.code(), out, err)
}

/// Waits up to `timeout` for a child spawned with piped stdout and stderr,
/// draining both on threads (a child that fills a pipe would block before
/// it exits); kills it and fails the test past the timeout.
pub fn wait_with_output(mut child: Child, timeout: Duration, what: &str) -> (std::process::ExitStatus, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Whether `extra` already says how records are signed or trusted (then the
/// test cluster's key is not added).
fn decides_signing(extra: &[&str], flag: &str) -> bool {
    extra.iter().any(|arg| *arg == flag || *arg == "--insecure-unsigned-records")
}

/// A key file (mode 600, as `clnode keygen` writes it) holding `signing_key`, in `dir`.
pub fn signing_key_file(dir: &TestDir, signing_key: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("signing-{}.key", &signing_key[2..10]));
    if !path.exists() {
        std::fs::write(&path, format!("{signing_key}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path.display().to_string()
}

impl Node {
    /// A leader-mode node signing with `keys::SIGNING_KEY` unless `extra`
    /// says otherwise; `extra` flags override.
    pub fn leader(dir: &TestDir, id: &str, el: &El, postgres: &Postgres, redis: &Redis, extra: &[&str]) -> Node {
        Node::leader_with_env(dir, id, el, postgres, redis, extra, &[])
    }

    /// A leader-mode node started with extra environment variables (for
    /// example libfaketime's); `extra` flags override.
    pub fn leader_with_env(
        dir: &TestDir,
        id: &str,
        el: &El,
        postgres: &Postgres,
        redis: &Redis,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let mut args = vec!["--mode".to_owned(), "leader".to_owned()];
        // Through Sentinel (`--redis-sentinel` in `extra`), or at `redis`.
        if !extra.contains(&"--redis-sentinel") {
            args.extend(["--redis-addr".to_owned(), redis.addr()]);
        }
        if !decides_signing(extra, "--signing-key-file") {
            args.extend(["--signing-key-file".to_owned(), signing_key_file(dir, keys::SIGNING_KEY)]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::spawn_with_env(dir, id, el, postgres, &args, env)
    }

    /// Any node: the flags every mode shares, then `args`.
    fn spawn(dir: &TestDir, id: &str, el: &El, postgres: &Postgres, args: &[String]) -> Node {
        Node::spawn_with_env(dir, id, el, postgres, args, &[])
    }

    fn spawn_with_env(
        dir: &TestDir,
        id: &str,
        el: &El,
        postgres: &Postgres,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Node {
        let (health_port, api_port) = (free_port(), free_port());
        let mut all: Vec<String> = vec![
            "--instance-id".into(),
            id.into(),
            "--eth-client-url".into(),
            el.engine_url(),
            "--jwt-secret-file".into(),
            el.jwt.display().to_string(),
            "--postgres-url".into(),
            postgres.url(),
            "--health-addr".into(),
            format!("127.0.0.1:{health_port}"),
            "--api-addr".into(),
            format!("127.0.0.1:{api_port}"),
        ];
        all.extend(args.iter().cloned());
        let proc = Proc::spawn_with_env(id, dir.join(format!("{id}.log")), &clnode_binary(), &all, env);
        Node { proc, health_port, api_port: Some(api_port), id: id.to_owned() }
    }

    pub fn health(&self) -> Option<(u16, String)> {
        http_get(&format!("http://127.0.0.1:{}/health", self.health_port)).ok()
    }

    pub fn health_json(&self) -> Option<Value> {
        let (_, body) = http_get(&format!("http://127.0.0.1:{}/health?format=json", self.health_port)).ok()?;
        serde_json::from_str(&body).ok()
    }

    pub fn is_leader(&self) -> bool {
        self.health_json().is_some_and(|h| h["role"] == "leader")
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(&format!("http://127.0.0.1:{}/metrics", self.health_port)).ok()?;
        body.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
    }

    pub fn api(&self, path: &str) -> (u16, Value) {
        let port = self.api_port.expect("node has no API");
        let (status, body) = http_get(&format!("http://127.0.0.1:{port}{path}")).unwrap();
        let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        (status, value)
    }
}

/// The committed chain in a PostgreSQL database: (number, hash, parent) in order.
pub fn stored_chain(postgres: &Postgres) -> Vec<(u64, String, String)> {
    let mut client = postgres.client();
    client
        .query("SELECT block_number, block_hash, parent_hash FROM payloads ORDER BY block_number", &[])
        .unwrap()
        .iter()
        .map(|row| (u64::try_from(row.get::<_, i64>(0)).unwrap(), row.get(1), row.get(2)))
        .collect()
}

/// The payload JSON of every stored block, in order.
pub fn stored_payloads(postgres: &Postgres) -> Vec<String> {
    let mut client = postgres.client();
    client
        .query("SELECT payload_data FROM payloads ORDER BY block_number", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The leader signature of every stored block, in order.
pub fn stored_signatures(postgres: &Postgres) -> Vec<Option<String>> {
    let mut client = postgres.client();
    client
        .query("SELECT leader_signature FROM payloads ORDER BY block_number", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Asserts heights 1..=n with no gap, each linked to its parent.
pub fn assert_continuous(chain: &[(u64, String, String)]) {
    for (index, (number, _, parent)) in chain.iter().enumerate() {
        assert_eq!(*number, index as u64 + 1, "gap in the committed chain at {number}");
        if index > 0 {
            assert_eq!(parent, &chain[index - 1].1, "block {number} does not link to its parent");
        }
    }
}

impl Node {
    /// A member with its own execution client and database, pinning the
    /// public key of `keys::SIGNING_KEY` unless `extra` says otherwise.
    pub fn member(
        dir: &TestDir,
        id: &str,
        el: &El,
        postgres: &Postgres,
        leader_urls: &[String],
        extra: &[&str],
    ) -> Node {
        let mut args = vec!["--mode".to_owned(), "member".to_owned(), "--leader-url".to_owned(), leader_urls.join(",")];
        if !decides_signing(extra, "--leader-public-key") {
            args.extend(["--leader-public-key".to_owned(), keys::public_key(keys::SIGNING_KEY)]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::spawn(dir, id, el, postgres, &args)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port.expect("node has no API"))
    }

    pub fn synced_height(&self) -> Option<u64> {
        self.health_json().and_then(|h| h["last_synced"].as_u64())
    }
}

/// Test-speed leader flags: block time may run far ahead of the clock so
/// hundreds of blocks take seconds, not minutes.
pub const FAST_LEADER: [&str; 2] = ["--max-timestamp-lead", "60m"];

/// A background load generator: `sendtx.mjs` sending to `rpc_url` with
/// `key` at `rate` transactions a second for `seconds`, logging to
/// `<name>.log` in `dir`; stopped when the returned process is dropped.
pub fn load_generator(dir: &TestDir, name: &str, rpc_url: &str, key: &str, rate: f64, seconds: f64) -> Proc {
    let args = [
        script("node/sendtx.mjs").display().to_string(),
        "--rpc".into(),
        rpc_url.to_owned(),
        "--duration-s".into(),
        format!("{seconds}"),
        "--rate".into(),
        format!("{rate}"),
        "--key".into(),
        key.to_owned(),
    ];
    Proc::spawn(name, dir.join(format!("{name}.log")), Path::new("node"), &args)
}

/// Sends `count` transactions at `rate` per second in the background, from
/// `keys::PACED_KEYS[key_index]`.
pub fn send_transactions_at(
    rpc_url: &str,
    count: usize,
    rate: u32,
    key_index: usize,
) -> std::thread::JoinHandle<Vec<String>> {
    let rpc_url = rpc_url.to_owned();
    std::thread::spawn(move || {
        let output = Command::new("node")
            .arg(script("node/sendtx.mjs"))
            .args(["--rpc", &rpc_url, "--count", &count.to_string(), "--rate", &rate.to_string()])
            .args(["--key", keys::key(&keys::SEND_KEYS, key_index)])
            .output()
            .unwrap();
        assert!(output.status.success(), "sendtx failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["hash"].as_str().unwrap().to_owned())
            .collect()
    })
}

// ---------------------------------------------------------------------------
// Process control and short-timeout probes (the fault suite's, mostly).

impl Proc {
    /// (Re)starts the same command with extra environment variables (for
    /// example a failpoint), appending to the same log.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
    }

    /// Whether this handle has a live (not yet reaped) child.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is stopped by a signal (state T in /proc/PID/stat).
    pub fn is_stopped(&self) -> bool {
        let Some(child) = self.child.as_ref() else { return false };
        let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        // "PID (comm) STATE ...": comm may hold spaces and parentheses.
        stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next()).is_some_and(|state| state == "T")
    }

    /// The size of the log so far: pass it to `log_since` to read what came after.
    pub fn log_len(&self) -> usize {
        fs::metadata(&self.log).map(|m| m.len() as usize).unwrap_or(0)
    }

    /// The log from byte `offset` on.
    pub fn log_since(&self, offset: usize) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(offset..).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of the log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Node {
    /// `/health` (the plain line) with a short timeout.
    pub fn health_within(&self, timeout: Duration) -> Option<(u16, String)> {
        http_get_within(&format!("http://127.0.0.1:{}/health", self.health_port), timeout).ok()
    }

    /// `/health?format=json` with a short timeout.
    pub fn health_json_within(&self, timeout: Duration) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/health?format=json", self.health_port);
        let (_, body) = http_get_within(&url, timeout).ok()?;
        serde_json::from_str(&body).ok()
    }

    /// One unlabelled series from `/metrics`, with a short timeout.
    pub fn metric_within(&self, name: &str, timeout: Duration) -> Option<f64> {
        let (_, body) = http_get_within(&format!("http://127.0.0.1:{}/metrics", self.health_port), timeout).ok()?;
        body.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
    }
}
