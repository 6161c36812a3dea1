//! The leader lease in Redis, with a strictly increasing fencing term.
//!
//! The lease decides who *tries* to lead; it is not what keeps the chain
//! safe (the PostgreSQL fence is). It still matters for liveness and for
//! "no commit without a valid lease": the producer treats the lease as held
//! only until `last successful renew was sent + TTL - safety margin`, on the
//! monotonic clock, which is earlier than Redis can expire it.
//!
//! The term counter survives a Redis that lost its data: every acquisition
//! passes the highest fence term this node has seen in PostgreSQL as a
//! floor, so a new term is always above every term that ever committed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Script;

use super::handover::{self, HandedOver, Mailbox, TransferAnswer, TransferRefused};
use super::preference::{self, Ineligible, LeaderView, Move, Preference, Readiness, Rules};
use super::readiness::ReadinessPublisher;
use super::redis_target::connect_redis;
use crate::config::LeaderConfig;
use crate::log;
use crate::metrics::Metrics;
use crate::reconnect::Reconnecting;
use crate::shutdown::Shutdown;
use crate::status::{Component, NodeStatus};

pub const LEASE_KEY: &str = "consensus:leader";
pub const TERM_KEY: &str = "consensus:leader:term";
/// A released lease pushes here so that a waiting standby wakes at once.
pub const HANDOFF_KEY: &str = "consensus:leader:handoff";
/// Redis commands answer in microseconds; a second means Redis is gone.
pub const REDIS_IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Redis checks blocked clients' timeouts on its event-loop tick (`hz`,
/// 10 per second by default), so a BLPOP returns up to this late; measured:
/// `BLPOP k 0.25` on an idle Redis 7.0 returns after 301 ms.
const REDIS_BLOCKING_TIMEOUT_SLACK: Duration = Duration::from_millis(110);
/// BLPOP reads 0 as "forever"; never ask for less than this.
const MIN_BLOCKING_WAIT: Duration = Duration::from_millis(10);

/// SET NX PX and INCR in one step. Returns the new term, or, if the lease
/// is held, minus the milliseconds it has left (0 if Redis cannot say), so
/// a standby can try again the moment it expires.
/// A node designated by a hand-over (`KEYS[3]`) is the only one that may
/// acquire until the designation expires; it clears the designation.
const ACQUIRE_LUA: &str = r"
local designated = redis.call('GET', KEYS[3])
if designated and designated ~= ARGV[1] then
  local left = redis.call('PTTL', KEYS[3])
  if left > 0 then return -left end
  return 0
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[3])
if floor > current then current = floor end
local term = current + 1
local value = ARGV[1] .. '/' .. term
if not redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2]) then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then return -left end
  return 0
end
redis.call('SET', KEYS[2], term)
if designated then redis.call('DEL', KEYS[3]) end
return term
";

/// Extends the lease only if this holder (node and term) still has it.
const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Deletes the lease only if this holder still has it, and wakes a standby.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('LTRIM', KEYS[2], 0, 0)
  return 1
end
return 0
";

/// What kind of failure a [`RedisError`] is: callers decide on this, never
/// on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorKind {
    /// The address (or the client configuration) is unusable.
    Address,
    /// Nothing accepts connections there.
    Refused,
    /// Redis refused the password (or the user lacks a permission).
    Auth,
    /// No answer in time (connect, read or write timeout).
    Timeout,
    /// A signal interrupted a blocking read or write (EINTR, e.g. the
    /// process was stopped and continued): Redis is not at fault, but a
    /// reply may still be owed on the connection.
    Interrupted,
    /// The connection broke (reset, closed, or another I/O error).
    ConnectionLost,
    /// The server is not the master: it answers READONLY, says it is a
    /// replica, or the sentinels know no master by that name (yet).
    NotMaster,
    /// Redis answered with an error (a script error, busy loading...).
    Server,
    /// Redis answered something this client cannot read or did not expect.
    Protocol,
    /// The connection failed in TLS (`rediss://`): the server's certificate
    /// was refused (not from `--redis-ca-file`'s CA, or not for that host),
    /// the handshake failed (a plaintext port), or the CA file cannot be
    /// read. Waited out like a lost connection: a fixed certificate or CA
    /// file (read at every connect) heals it.
    Tls,
}

impl RedisErrorKind {
    pub fn of(error: &redis::RedisError) -> RedisErrorKind {
        use redis::{ErrorKind, ServerErrorKind};
        if crate::tls::is_tls_failure(error) {
            return RedisErrorKind::Tls;
        }
        if let Some(io) = io_error_kind(error) {
            return match io {
                std::io::ErrorKind::Interrupted => RedisErrorKind::Interrupted,
                _ if error.is_timeout() => RedisErrorKind::Timeout,
                _ if error.is_connection_refusal() => RedisErrorKind::Refused,
                _ => RedisErrorKind::ConnectionLost,
            };
        }
        // NOAUTH (a password is required and none was sent) has no kind of
        // its own in the crate; its code is the server's, not a message.
        if error.code() == Some("NOAUTH") {
            return RedisErrorKind::Auth;
        }
        match error.kind() {
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => RedisErrorKind::Auth,
            ErrorKind::InvalidClientConfig => RedisErrorKind::Address,
            ErrorKind::Server(ServerErrorKind::ReadOnly) => RedisErrorKind::NotMaster,
            ErrorKind::Server(_) | ErrorKind::Extension => RedisErrorKind::Server,
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::RESP3NotSupported | ErrorKind::Client => {
                RedisErrorKind::Protocol
            }
            // I/O without an io::Error to look at, and the cluster and
            // sentinel kinds this client never uses.
            _ => RedisErrorKind::ConnectionLost,
        }
    }
}

/// The io::ErrorKind behind a Redis I/O error. The redis crate keeps the
/// io::Error in an `Arc<dyn Error>` and its `source()` hands out that Arc,
/// so both are tried (a unit test pins this down).
fn io_error_kind(error: &redis::RedisError) -> Option<std::io::ErrorKind> {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let source = std::error::Error::source(error)?;
    let io = source
        .downcast_ref::<std::io::Error>()
        .or_else(|| source.downcast_ref::<Shared>().and_then(|shared| shared.downcast_ref::<std::io::Error>()))?;
    Some(io.kind())
}

/// A failed Redis operation: its kind, and the context to report it.
#[derive(Debug, Clone)]
pub struct RedisError {
    pub kind: RedisErrorKind,
    pub addr: String,
    /// What was being done ("acquire", "renew", "wait", ...).
    pub what: &'static str,
    pub detail: String,
}

impl RedisError {
    pub fn new(addr: &str, what: &'static str, error: &redis::RedisError) -> RedisError {
        let kind = RedisErrorKind::of(error);
        // A read timeout surfaces as EAGAIN, whose text ("Resource
        // temporarily unavailable (os error 11)") says nothing to an operator.
        let detail = match kind {
            RedisErrorKind::Timeout => "timed out".to_owned(),
            // rustls's text ("invalid peer certificate: UnknownIssuer")
            // does not say it is about TLS.
            RedisErrorKind::Tls => format!("TLS: {error}"),
            _ => error.to_string(),
        };
        RedisError { kind, addr: addr.to_owned(), what, detail }
    }
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis {} ({}): {}", self.what, self.addr, self.detail)
    }
}

impl std::error::Error for RedisError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeldLease {
    term: u64,
    valid_until: Instant,
}

/// How long a dependency's calls have been hanging or failing: the start
/// of a call that has not returned yet, or of the first of a row of failed
/// ones; cleared by the next call that answers.
#[derive(Default)]
pub struct TroubleClock {
    since: Mutex<Option<Instant>>,
}

impl TroubleClock {
    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        // A poisoned lock only means another thread panicked mid-update of
        // a Copy value; the value itself is still whole.
        self.since.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A call starts: from now on, until one answers, the dependency is in trouble.
    pub fn started(&self) {
        self.lock().get_or_insert_with(Instant::now);
    }

    /// A call answered: the dependency works.
    pub fn answered(&self) {
        *self.lock() = None;
    }

    /// How long calls have been hanging or failing (zero while they answer).
    pub fn duration(&self) -> Duration {
        self.lock().map(|since| since.elapsed()).unwrap_or(Duration::ZERO)
    }
}

/// What the lease thread and the producer share.
pub struct LeaseHandle {
    held: Mutex<Option<HeldLease>>,
    changed: Condvar,
    /// Set by the producer: its execution client is at the committed head
    /// and it can reach PostgreSQL. A node that is not ready never acquires.
    ready_to_lead: AtomicBool,
    /// Highest fence term seen in PostgreSQL; the floor for new terms.
    fence_term_seen: AtomicU64,
    /// Set by the producer when it must stop leading (commit refused, its
    /// execution client broken): the lease thread releases the lease.
    step_down_requested: AtomicBool,
    /// Redis is reachable (for /health).
    redis_ok: AtomicBool,
    /// When the producer's current run of database trouble began: the start
    /// of a database call that has not returned yet, or of the first of a
    /// row of failed ones. `None` while the database answers.
    pub database_trouble: TroubleClock,
    /// The same for the producer's Engine API calls: the start of a call
    /// that has not returned yet, or of the first of a row of failed ones
    /// (a hung client times out call after call: the filter polls of 2 s,
    /// getPayload of 1 s, then forkchoiceUpdated; each alone may stay under
    /// the limit). `None` while the client answers.
    pub engine_trouble: TroubleClock,
    /// Paused by an operator: never acquires; a paused leader hands over.
    paused: AtomicBool,
    /// Transfers the admin endpoint asked for, answered by the lease thread.
    transfers: Mailbox,
    /// The leader-mode nodes' readiness records as last read (admin status).
    cluster: Mutex<Vec<Readiness>>,
    /// After a voluntary step-down, give the others one TTL to take over:
    /// no acquiring, and the readiness record says "not ready", until then.
    cooldown_until: Mutex<Option<Instant>>,
}

impl Default for LeaseHandle {
    fn default() -> Self {
        LeaseHandle {
            held: Mutex::new(None),
            changed: Condvar::new(),
            ready_to_lead: AtomicBool::new(false),
            fence_term_seen: AtomicU64::new(0),
            step_down_requested: AtomicBool::new(false),
            redis_ok: AtomicBool::new(false),
            database_trouble: TroubleClock::default(),
            engine_trouble: TroubleClock::default(),
            paused: AtomicBool::new(false),
            transfers: Mailbox::default(),
            cluster: Mutex::new(Vec::new()),
            cooldown_until: Mutex::new(None),
        }
    }
}

impl LeaseHandle {
    fn lock(&self) -> MutexGuard<'_, Option<HeldLease>> {
        // A poisoned lock only means another thread panicked mid-update of a
        // Copy value; the value itself is still whole.
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The term, if the lease is held and valid right now.
    pub fn held_term(&self) -> Option<u64> {
        self.lock().filter(|lease| Instant::now() < lease.valid_until).map(|lease| lease.term)
    }

    /// How long the lease stays valid for `term` (zero if not held).
    pub fn remaining(&self, term: u64) -> Duration {
        self.lock()
            .filter(|lease| lease.term == term)
            .map(|lease| lease.valid_until.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::ZERO)
    }

    /// Waits up to `timeout` for the lease to be acquired or lost.
    pub fn wait_for_change(&self, timeout: Duration) {
        let guard = self.lock();
        let _unused = self.changed.wait_timeout(guard, timeout);
    }

    pub fn set_ready_to_lead(&self, ready: bool) {
        self.ready_to_lead.store(ready, Ordering::Relaxed);
    }

    pub fn observe_fence_term(&self, term: u64) {
        self.fence_term_seen.fetch_max(term, Ordering::Relaxed);
    }

    pub fn request_step_down(&self) {
        self.step_down_requested.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }

    pub fn is_ready_to_lead(&self) -> bool {
        self.ready_to_lead.load(Ordering::Relaxed)
    }

    pub fn redis_ok(&self) -> bool {
        self.redis_ok.load(Ordering::Relaxed)
    }

    /// Paused: this node does not take the lease (and hands it over if it
    /// holds it, as soon as another node is healthy and caught up).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        self.changed.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Asks the lease thread to hand the lease to `to`; waits a bounded
    /// time for the answer.
    pub fn request_transfer(&self, to: &str) -> TransferAnswer {
        if self.held_term().is_none() {
            return Err(TransferRefused::NotLeader);
        }
        let answer = self.transfers.post(to.to_owned())?;
        self.changed.notify_all();
        answer.recv_timeout(handover::ADMIN_ANSWER_TIMEOUT).unwrap_or_else(|_| {
            // Withdrawn: a late transfer nobody waits for would surprise.
            self.transfers.take();
            Err(TransferRefused::TimedOut)
        })
    }

    /// The readiness records as the lease thread last read them (about
    /// once a second).
    pub fn cluster(&self) -> Vec<Readiness> {
        self.cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Set by the readiness publisher (`readiness.rs`).
    pub(super) fn set_cluster(&self, records: Vec<Readiness>) {
        *self.cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = records;
    }

    fn start_cooldown(&self, length: Duration) {
        *self.cooldown_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + length);
    }

    /// In the one TTL after a voluntary step-down.
    pub fn in_cooldown(&self) -> bool {
        let until = *self.cooldown_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    fn set(&self, lease: Option<HeldLease>) {
        *self.lock() = lease;
        self.changed.notify_all();
    }
}

/// The lease thread's body: acquire when ready, renew while held, release
/// on step-down or shutdown.
pub struct LeaseLoop {
    config: LeaderConfig,
    instance_id: String,
    handle: Arc<LeaseHandle>,
    metrics: Arc<Metrics>,
    status: Arc<NodeStatus>,
    shutdown: Shutdown,
    /// The lease thread's own: acquire, renew, release, the standby's
    /// wait. Dropped after every failure: whatever failed, a reply may
    /// still be owed on it.
    connection: Reconnecting<redis::Connection, RedisError>,
    last_term: u64,
    /// The fresh floor for new terms (`with_fence_floor`).
    fence_floor: Option<FenceFloor>,
    /// `--preferred-leaders`, and the hysteresis of automatic moves.
    preference: Preference,
    rules: Rules,
    /// When this node acquired its current term.
    held_since: Instant,
    /// When the last renew that Redis confirmed was sent (or the term
    /// acquired): what a lost lease is measured from in the log.
    last_renew_confirmed: Option<Instant>,
    /// When the previous renew was sent, for the late-renew line.
    last_renew_sent: Option<Instant>,
    /// Redis has answered this process once: from then on a refused
    /// password is a change on the server's side and is waited out.
    reached_redis: bool,
    /// The first failure before Redis ever answered was logged: a node
    /// that never reaches Redis (a wrong address or CA) says so once at
    /// WARN, not only on /health.
    told_unreached: bool,
}

/// Reads the fence's term from PostgreSQL (given to the lease thread by
/// `node.rs`, so that this module holds no SQL).
pub type FenceFloor = Box<dyn FnMut() -> Result<u64, String> + Send>;

impl LeaseLoop {
    pub fn new(
        config: LeaderConfig,
        instance_id: String,
        handle: Arc<LeaseHandle>,
        metrics: Arc<Metrics>,
        status: Arc<NodeStatus>,
        shutdown: Shutdown,
    ) -> LeaseLoop {
        let (target, password) = (config.redis.clone(), config.redis_password.clone());
        // Reads may block for one standby wait (BLPOP) plus slack.
        let read_timeout = config.lease_renew_interval + REDIS_IO_TIMEOUT;
        let preference = Preference { order: config.preferred_leaders.clone() };
        // Hysteresis: a candidate must have been ready, and the leader must
        // have held its term, for two TTLs before the preference moves the
        // lease: longer than a failover takes, so a node that just took
        // over is not moved again at once.
        let rules = Rules { settle: config.lease_ttl * 2 };
        LeaseLoop {
            config,
            instance_id,
            handle,
            metrics,
            status,
            shutdown,
            connection: Reconnecting::new(move || connect_redis(&target, password.as_ref(), read_timeout)),
            last_term: 0,
            fence_floor: None,
            preference,
            rules,
            held_since: Instant::now(),
            last_renew_confirmed: None,
            last_renew_sent: None,
            reached_redis: false,
            told_unreached: false,
        }
    }

    /// Reads the fence term fresh right before every acquisition attempt,
    /// so that a Redis that lost its term counter cannot hand this node a
    /// term the current leader already holds (the producer reads the fence
    /// only once a second). An attempt whose read fails does not acquire:
    /// a node that cannot read the database could not lead anyway.
    pub fn with_fence_floor(mut self, read: FenceFloor) -> LeaseLoop {
        self.fence_floor = Some(read);
        self
    }

    fn holder_value(&self, term: u64) -> String {
        format!("{}/{term}", self.instance_id)
    }

    fn redis_reachable(&mut self) {
        self.reached_redis = true;
        if !self.handle.redis_ok.swap(true, Ordering::Relaxed) {
            self.status.clear_problem(Component::Redis);
        }
    }

    fn redis_failed(&mut self, error: &RedisError) {
        if error.kind == RedisErrorKind::Auth && !self.reached_redis {
            // A password refused before Redis ever let this node in is this
            // node's setting: waiting cannot fix it (ARCHITECTURE.md, "Errors
            // that will not heal").
            self.shutdown.fail(format!("{error} (is --redis-password / REDIS_PASSWORD the one Redis requires?)"));
        }
        let was_ok = self.handle.redis_ok.swap(false, Ordering::Relaxed);
        if was_ok || !(self.reached_redis || self.told_unreached) {
            log::warn(&format!("lease: {error}"));
            self.told_unreached = true;
        }
        self.status.set_problem(Component::Redis, error.to_string());
        self.metrics.count_error("redis");
        self.connection.invalidate();
    }

    fn run_script<T: redis::FromRedisValue>(
        &mut self,
        script: &Script,
        keys: &[&str],
        args: &[String],
        what: &'static str,
    ) -> Result<T, RedisError> {
        run_script(&mut self.connection, &self.config.redis.label(), script, keys, args, what)
    }

    /// One PING at start, before this node is ready to lead: a Redis that
    /// refuses this node's password is told now, not at the first acquire.
    fn first_contact(&mut self) {
        let addr = self.config.redis.label();
        let answer = self.connection.get().and_then(|connection| {
            redis::cmd("PING").query::<String>(connection).map_err(|e| RedisError::new(&addr, "ping", &e))
        });
        match answer {
            Ok(_) => self.redis_reachable(),
            Err(error) => self.redis_failed(&error),
        }
    }

    /// The lease loop, with the readiness publisher (`readiness.rs`) on a
    /// thread of its own beside it for as long as it runs.
    pub fn run(self) {
        let publisher = ReadinessPublisher::new(
            self.config.clone(),
            self.instance_id.clone(),
            Arc::clone(&self.handle),
            Arc::clone(&self.metrics),
            Arc::clone(&self.status),
            self.shutdown.clone(),
        );
        let shutdown = self.shutdown.clone();
        std::thread::scope(|scope| {
            let started = std::thread::Builder::new()
                .name("lease-readiness".to_owned())
                .spawn_scoped(scope, move || publisher.run());
            if let Err(error) = started {
                shutdown.fail(format!("lease: cannot start the readiness thread: {error}"));
                return;
            }
            self.lease_loop();
        });
    }

    fn lease_loop(mut self) {
        self.first_contact();
        let acquire = Script::new(ACQUIRE_LUA);
        let renew = Script::new(RENEW_LUA);
        let release = Script::new(RELEASE_LUA);
        let release_to = Script::new(handover::RELEASE_TO_LUA);
        let ttl_ms = self.config.lease_ttl.as_millis().to_string();
        let usable = self.config.lease_ttl - self.config.lease_safety_margin;
        let mut held: Option<u64> = None;
        while !self.shutdown.is_requested() {
            match held {
                Some(term) => {
                    let step_down = self.handle.step_down_requested.swap(false, Ordering::Relaxed);
                    let stalls = Stalls {
                        database: self.handle.database_trouble.duration(),
                        engine: self.handle.engine_trouble.duration(),
                    };
                    let limits =
                        Stalls { database: self.config.database_stall_limit, engine: self.config.engine_stall_limit };
                    let action = held_lease_action(step_down, stalls, limits);
                    if let HeldLeaseAction::Release(reason) = action {
                        self.release_for(&release, term, reason);
                        held = None;
                        continue;
                    }
                    let sent = Instant::now();
                    let since_previous = self.last_renew_sent.map(|previous| sent.duration_since(previous));
                    self.last_renew_sent = Some(sent);
                    let answer = self.run_script::<i64>(
                        &renew,
                        &[LEASE_KEY, TERM_KEY],
                        &[self.holder_value(term), ttl_ms.clone()],
                        "renew",
                    );
                    let round_trip = sent.elapsed();
                    if renew_was_late(since_previous, round_trip, self.config.lease_renew_interval) {
                        log::info(&format!(
                            "lease: renew of term {term} late: sent {} ms after the previous one, answered in {} ms \
                             (--lease-renew-interval {} ms, --lease-ttl {} ms)",
                            since_previous.map_or(0, |gap| gap.as_millis()),
                            round_trip.as_millis(),
                            self.config.lease_renew_interval.as_millis(),
                            self.config.lease_ttl.as_millis()
                        ));
                    }
                    match answer {
                        Ok(1) => {
                            self.redis_reachable();
                            self.last_renew_confirmed = Some(sent);
                            self.handle.set(Some(HeldLease { term, valid_until: sent + usable }));
                            if self.hand_over_if_due(&release_to, term) {
                                held = None;
                                continue;
                            }
                        }
                        Ok(_) => {
                            // Redis's key expired (or, after a Redis that lost
                            // its data, another node holds a new term): the
                            // figures say which side was late.
                            let confirmed_ago = self.last_renew_confirmed.map_or(0, |at| at.elapsed().as_millis());
                            log::warn(&format!(
                                "lease: lost term {term} (another holder or expired): the last renew Redis confirmed \
                                 was sent {confirmed_ago} ms ago, this one answered in {} ms (--lease-ttl {} ms)",
                                round_trip.as_millis(),
                                self.config.lease_ttl.as_millis()
                            ));
                            self.lose(term);
                            held = None;
                        }
                        Err(error) => {
                            // The lease lapses by itself at valid_until; the
                            // producer stops committing then.
                            self.redis_failed(&error);
                            if self.handle.held_term().is_none() {
                                log::warn(&format!("lease: term {term} lapsed while Redis was unreachable"));
                                self.lose(term);
                                held = None;
                            }
                        }
                    }
                    // One interval from this renew's send, not from its answer:
                    // a slow answer does not push the next renew later.
                    self.sleep_or_step_down(next_renew_wait(sent, Instant::now(), self.config.lease_renew_interval));
                }
                None => {
                    self.last_renew_sent = None;
                    match self.try_acquire(&acquire, &ttl_ms, usable) {
                        Acquire::Acquired(term) => {
                            held = Some(term);
                            self.held_since = Instant::now();
                        }
                        Acquire::HeldByAnother { expires_in } => self.wait_as_standby(expires_in),
                        Acquire::NotNow => self.wait_as_standby(None),
                    }
                }
            }
        }
        if let Some(term) = held {
            self.release(&release, term);
        }
    }

    fn try_acquire(&mut self, acquire: &Script, ttl_ms: &str, usable: Duration) -> Acquire {
        if let Some(request) = self.handle.transfers.take() {
            request.answer(Err(TransferRefused::NotLeader));
        }
        if !self.handle.ready_to_lead.load(Ordering::Relaxed) || self.in_cooldown() || self.handle.is_paused() {
            return Acquire::NotNow;
        }
        if let Some(read_fence) = &mut self.fence_floor {
            match read_fence() {
                Ok(fence_term) => self.handle.observe_fence_term(fence_term),
                Err(_) => return Acquire::NotNow,
            }
        }
        let floor = self.handle.fence_term_seen.load(Ordering::Relaxed).max(self.last_term);
        let sent = Instant::now();
        let args = [self.instance_id.clone(), ttl_ms.to_owned(), floor.to_string()];
        match self.run_script::<i64>(acquire, &[LEASE_KEY, TERM_KEY, handover::DESIGNATED_KEY], &args, "acquire") {
            Ok(0) => {
                self.redis_reachable();
                Acquire::HeldByAnother { expires_in: None }
            }
            Ok(negative) if negative < 0 => {
                self.redis_reachable();
                Acquire::HeldByAnother { expires_in: Some(Duration::from_millis(negative.unsigned_abs())) }
            }
            Ok(positive) => {
                self.redis_reachable();
                let term = positive.unsigned_abs();
                // Fencing terms only ever grow; anything else is a bug.
                assert!(term > self.last_term, "lease term went from {} to {term}", self.last_term);
                self.last_term = term;
                self.handle.step_down_requested.store(false, Ordering::Relaxed);
                self.handle.set(Some(HeldLease { term, valid_until: sent + usable }));
                self.last_renew_confirmed = Some(sent);
                self.metrics.lease_acquisitions.inc();
                self.metrics.term.set_u64(term);
                log::info(&format!("lease: acquired term {term}"));
                Acquire::Acquired(term)
            }
            Err(error) => {
                self.redis_failed(&error);
                Acquire::NotNow
            }
        }
    }

    /// Blocks until a released lease is announced, the holder's lease
    /// expires (`expires_in`, from Redis) or one renew interval passes, so
    /// neither a graceful hand-over nor an expiry waits for the next tick.
    fn wait_as_standby(&mut self, expires_in: Option<Duration>) {
        let wait = self.config.lease_renew_interval;
        if self.shutdown.is_requested() {
            return;
        }
        let ready =
            self.handle.ready_to_lead.load(Ordering::Relaxed) && !self.in_cooldown() && !self.handle.is_paused();
        if !ready {
            self.shutdown.sleep(wait);
            return;
        }
        let Some(blocking_wait) = standby_blocking_wait(wait, expires_in) else {
            // The holder's lease ends sooner than Redis could time a BLPOP:
            // sleep here until just past its expiry, then try again.
            let until_expiry = expires_in.unwrap_or(Duration::ZERO) + Duration::from_millis(1);
            self.shutdown.sleep(until_expiry);
            return;
        };
        let seconds = format!("{:.3}", blocking_wait.as_secs_f64());
        let addr = self.config.redis.label();
        // Its own list first: a hand-over designating this node wakes it
        // alone; a plain release wakes whichever standby pops the shared one.
        let own_list = handover::handoff_key_of(&self.instance_id);
        let outcome = self.connection.get().and_then(|connection| {
            redis::cmd("BLPOP")
                .arg(&own_list)
                .arg(HANDOFF_KEY)
                .arg(&seconds)
                .query::<Option<(String, String)>>(connection)
                .map_err(|e| RedisError::new(&addr, "wait", &e))
        });
        if let Err(error) = outcome {
            // A signal (SIGSTOP/SIGCONT) interrupts the blocking read: the
            // reply is still owed, so the connection is dropped, but Redis
            // is not at fault (no problem reported, no back-off).
            if error.kind == RedisErrorKind::Interrupted {
                self.connection.invalidate();
                return;
            }
            self.redis_failed(&error);
            self.shutdown.sleep(wait);
        }
    }

    fn in_cooldown(&self) -> bool {
        self.handle.in_cooldown()
    }

    fn sleep_or_step_down(&self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while !self.shutdown.is_requested()
            && !self.handle.step_down_requested.load(Ordering::Relaxed)
            && !self.handle.transfers.is_pending()
        {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            self.handle.wait_for_change((deadline - now).min(Duration::from_millis(50)));
        }
    }

    fn lose(&mut self, term: u64) {
        self.handle.set(None);
        self.metrics.lease_losses.inc();
        self.metrics.is_leader.set(0);
        log::info(&format!("lease: no longer leader (term {term})"));
    }

    /// Gives the lease up on purpose: the producer asked, or it cannot reach
    /// the database. No acquiring for one TTL (the others take over); after
    /// a database stall, not until the producer has read the database again.
    fn release_for(&mut self, release: &Script, term: u64, reason: ReleaseReason) {
        match reason {
            ReleaseReason::StepDown => log::info(&format!("lease: stepping down from term {term}")),
            ReleaseReason::DatabaseStalled => {
                let stalled_ms = self.handle.database_trouble.duration().as_millis();
                log::warn(&format!(
                    "lease: releasing term {term}: the database has not answered for {stalled_ms} ms \
                     (--database-stall-limit {} ms); not leading until it does",
                    self.config.database_stall_limit.as_millis()
                ));
                self.handle.set_ready_to_lead(false);
                self.metrics.count_error("database");
            }
            ReleaseReason::EngineStalled => {
                let stalled_ms = self.handle.engine_trouble.duration().as_millis();
                log::warn(&format!(
                    "lease: releasing term {term}: the execution client has not answered for {stalled_ms} ms \
                     (--engine-stall-limit {} ms); not leading until the execution client answers",
                    self.config.engine_stall_limit.as_millis()
                ));
                // The producer offers itself again once a standby round has
                // read its client (and caught it up).
                self.handle.set_ready_to_lead(false);
                self.metrics.count_error("engine_timeout");
            }
        }
        self.release(release, term);
        self.handle.start_cooldown(self.config.lease_ttl);
    }

    fn release(&mut self, release: &Script, term: u64) {
        // Clear locally first: the producer must stop before anyone else can
        // acquire, and the fence covers a commit already in flight.
        self.lose(term);
        match self.run_script::<i64>(release, &[LEASE_KEY, HANDOFF_KEY], &[self.holder_value(term)], "release") {
            Ok(_) => log::info(&format!("lease: released term {term}")),
            Err(error) => self.redis_failed(&error),
        }
    }

    /// The live readiness records (at most `handover::MAX_RECORDS`).
    fn read_records(&mut self) -> Result<Vec<Readiness>, RedisError> {
        let read = Script::new(handover::READ_LUA);
        super::readiness::read_records(&mut self.connection, &self.config.redis.label(), &read)
    }

    /// The leader's hand-over, after a renew: an operator's transfer, or
    /// the decision of `preference::successor` (the preference order, or
    /// this node paused). True when the lease was handed over.
    fn hand_over_if_due(&mut self, release_to: &Script, term: u64) -> bool {
        let request = self.handle.transfers.take();
        let paused = self.handle.is_paused();
        let held_for = self.held_since.elapsed();
        // The most preferred node has nobody to hand over to: no read.
        let automatic_due = !self.preference.order.is_empty()
            && self.preference.rank(&self.instance_id) > 0
            && held_for >= self.rules.settle;
        if request.is_none() && !paused && !automatic_due {
            return false;
        }
        let records = match self.read_records() {
            Ok(records) => records,
            Err(error) => {
                if let Some(request) = request {
                    request.answer(Err(TransferRefused::Redis(error.to_string())));
                }
                self.redis_failed(&error);
                return false;
            }
        };
        let leader_head = self.status.snapshot().committed_head.map(|(number, _)| number).unwrap_or(0);
        let digest = self.preference.digest();
        if let Some(request) = request {
            let verdict = match records.iter().find(|record| record.id == request.to) {
                Some(candidate) => preference::eligible(
                    &self.instance_id,
                    candidate,
                    leader_head,
                    Move::Requested,
                    self.rules,
                    &digest,
                ),
                None => Err(Ineligible::Unknown),
            };
            if let Err(why) = verdict {
                log::warn(&format!("lease: transfer to {} refused: {} {why}", request.to, request.to));
                let to = request.to.clone();
                request.answer(Err(TransferRefused::Ineligible { to, why }));
                return false;
            }
            let to = request.to.clone();
            return match self.release_to(release_to, term, &to, "an operator asked") {
                Ok(()) => {
                    request.answer(Ok(HandedOver { term, to }));
                    true
                }
                Err(error) => {
                    request.answer(Err(TransferRefused::Redis(error.to_string())));
                    false
                }
            };
        }
        let view = LeaderView { me: &self.instance_id, preference: &self.preference, leader_head, held_for, paused };
        let Some(to) = preference::successor(view, &records, self.rules).map(str::to_owned) else {
            return false;
        };
        let why = if paused { "this node is paused" } else { "it is preferred (--preferred-leaders)" };
        self.release_to(release_to, term, &to, why).is_ok()
    }

    /// The graceful release of SIGTERM, designating `to` as the only node
    /// that may acquire for one TTL (then anyone may: a successor that died
    /// meanwhile costs at most a failover).
    fn release_to(&mut self, script: &Script, term: u64, to: &str, why: &str) -> Result<(), RedisError> {
        log::info(&format!("lease: handing term {term} over to {to} ({why})"));
        self.lose(term);
        let args = [self.holder_value(term), to.to_owned(), millis(self.config.lease_ttl).to_string()];
        let keys = [LEASE_KEY, handover::DESIGNATED_KEY, &handover::handoff_key_of(to)];
        let result = self.run_script::<i64>(script, &keys, &args, "hand over").map(|_| ());
        match &result {
            Ok(()) => log::info(&format!("lease: released term {term} to {to}")),
            Err(error) => self.redis_failed(error),
        }
        self.handle.start_cooldown(self.config.lease_ttl);
        result
    }
}

/// One Lua script on `connection` (connecting if needed), its failure
/// typed with `what` and `addr`. Whatever failed, a reply may still be owed
/// on the connection: the next call starts on a fresh one.
pub(super) fn run_script<T: redis::FromRedisValue>(
    connection: &mut Reconnecting<redis::Connection, RedisError>,
    addr: &str,
    script: &Script,
    keys: &[&str],
    args: &[String],
    what: &'static str,
) -> Result<T, RedisError> {
    let result = connection.get().and_then(|connection| {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let result: Result<T, _> = invocation.invoke(connection);
        result.map_err(|e| RedisError::new(addr, what, &e))
    });
    if result.is_err() {
        connection.invalidate();
    }
    result
}

/// How long to wait before the next renew: one interval after the last
/// was *sent*, so the time its answer took (and anything done after it) is
/// not added to the gap Redis sees between two renews.
fn next_renew_wait(last_sent: Instant, now: Instant, interval: Duration) -> Duration {
    (last_sent + interval).saturating_duration_since(now)
}

/// A renew worth a line in the log: sent more than two intervals after
/// the previous one (the lease thread was held up: starved of CPU, or
/// Redis slow), or answered more slowly than one interval. The lease
/// survives such a gap up to the TTL; the line says how near it came.
fn renew_was_late(since_previous: Option<Duration>, round_trip: Duration, interval: Duration) -> bool {
    since_previous.is_some_and(|gap| gap > interval * 2) || round_trip > interval
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Why a held lease is given up on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReleaseReason {
    /// The producer asked (commit refused, client broken, admin step-down).
    StepDown,
    /// The producer's database calls have hung or failed for longer than
    /// `--database-stall-limit`: it cannot commit, so a standby that can
    /// should lead.
    DatabaseStalled,
    /// The producer's Engine API calls have hung or failed for longer than
    /// `--engine-stall-limit`: its client hangs (or the link to it), so it
    /// cannot build, and a standby should lead long before a call's own
    /// timeout (8 s for forkchoiceUpdated and newPayload) ends.
    EngineStalled,
}

/// How long the database and the execution client have been in trouble
/// (calls hanging or failing); and, for the limits, how long each may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stalls {
    database: Duration,
    engine: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldLeaseAction {
    Renew,
    Release(ReleaseReason),
}

/// The held-lease rule, pure: renew, or give the lease up on purpose.
fn held_lease_action(step_down_requested: bool, stalls: Stalls, limits: Stalls) -> HeldLeaseAction {
    if step_down_requested {
        HeldLeaseAction::Release(ReleaseReason::StepDown)
    } else if stalls.database >= limits.database {
        HeldLeaseAction::Release(ReleaseReason::DatabaseStalled)
    } else if stalls.engine >= limits.engine {
        HeldLeaseAction::Release(ReleaseReason::EngineStalled)
    } else {
        HeldLeaseAction::Renew
    }
}

/// What one acquisition attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acquire {
    Acquired(u64),
    /// Another node holds the lease; Redis said how long it has left.
    HeldByAnother {
        expires_in: Option<Duration>,
    },
    /// Not ready, cooling down after a step-down, or Redis failed.
    NotNow,
}

/// How long a standby may block in BLPOP waiting for a hand-over: at most
/// `renew_interval`, and short enough to return before the holder's lease
/// expires despite Redis's coarse blocking timeouts. `None`: the lease
/// expires too soon for a BLPOP; sleep locally until it does.
fn standby_blocking_wait(renew_interval: Duration, expires_in: Option<Duration>) -> Option<Duration> {
    match expires_in {
        None => Some(renew_interval.max(MIN_BLOCKING_WAIT)),
        Some(left) => {
            let before_expiry = left.checked_sub(REDIS_BLOCKING_TIMEOUT_SLACK)?;
            (before_expiry >= MIN_BLOCKING_WAIT).then(|| before_expiry.min(renew_interval))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lease_is_released_on_request_or_when_the_database_or_the_engine_stalls() {
        use HeldLeaseAction::*;
        use ReleaseReason::*;
        let ms = Duration::from_millis;
        let limits = Stalls { database: ms(500), engine: ms(1000) };
        // (step-down requested, database trouble, engine call pending, action)
        let table = [
            (false, ms(0), ms(0), Renew),
            (false, ms(499), ms(0), Renew),
            (false, ms(500), ms(0), Release(DatabaseStalled)),
            (false, ms(60_000), ms(0), Release(DatabaseStalled)),
            (true, ms(0), ms(0), Release(StepDown)),
            (true, ms(900), ms(0), Release(StepDown)),
            // A long but answering newPayload is not a stall...
            (false, ms(0), ms(999), Renew),
            // ...calls that hang or fail for the limit are.
            (false, ms(0), ms(1000), Release(EngineStalled)),
            (false, ms(0), ms(8000), Release(EngineStalled)),
            (false, ms(499), ms(999), Renew),
            // The producer's own request and the database come first (both
            // release; the reason is what the log and metrics say).
            (true, ms(0), ms(5000), Release(StepDown)),
            (false, ms(700), ms(5000), Release(DatabaseStalled)),
        ];
        for (requested, database, engine, expected) in table {
            let stalls = Stalls { database, engine };
            assert_eq!(held_lease_action(requested, stalls, limits), expected, "{requested} {database:?} {engine:?}");
        }
    }

    #[test]
    fn the_next_renew_is_due_one_interval_after_the_last_was_sent() {
        let ms = Duration::from_millis;
        let sent = Instant::now();
        let interval = ms(100);
        // (time the renew's answer and the rest of the round took, wait)
        let table = [
            (ms(0), ms(100)),
            (ms(1), ms(99)),
            // A slow answer shortens the wait instead of adding to the gap...
            (ms(60), ms(40)),
            // ...and one slower than the interval sends the next at once.
            (ms(100), ms(0)),
            (ms(350), ms(0)),
        ];
        for (took, wait) in table {
            assert_eq!(next_renew_wait(sent, sent + took, interval), wait, "{took:?}");
        }
    }

    #[test]
    fn a_renew_is_late_when_the_gap_or_the_answer_outgrows_the_interval() {
        let ms = Duration::from_millis;
        let interval = ms(100);
        // (gap since the previous renew was sent, round trip, late)
        let table = [
            (None, ms(1), false),
            (Some(ms(100)), ms(1), false),
            (Some(ms(200)), ms(99), false),
            (Some(ms(201)), ms(1), true),
            (Some(ms(100)), ms(101), true),
            (None, ms(400), true),
        ];
        for (gap, round_trip, late) in table {
            assert_eq!(renew_was_late(gap, round_trip, interval), late, "{gap:?} {round_trip:?}");
        }
    }

    #[test]
    fn trouble_runs_from_the_first_unanswered_call_to_the_next_success() {
        // One clock type serves the database and the Engine API alike.
        let clock = TroubleClock::default();
        assert_eq!(clock.duration(), Duration::ZERO);
        clock.started();
        std::thread::sleep(Duration::from_millis(20));
        clock.started(); // the next call after a timeout does not restart the clock
        assert!(clock.duration() >= Duration::from_millis(20));
        clock.answered();
        assert_eq!(clock.duration(), Duration::ZERO);
    }

    #[test]
    fn a_standby_wakes_before_the_holders_lease_expires() {
        let renew = Duration::from_millis(200);
        assert_eq!(standby_blocking_wait(renew, None), Some(renew));
        // Far from expiry: one renew interval at most.
        assert_eq!(standby_blocking_wait(renew, Some(Duration::from_millis(900))), Some(renew));
        // Close to it: BLPOP ends a tick before the expiry...
        assert_eq!(standby_blocking_wait(renew, Some(Duration::from_millis(250))), Some(Duration::from_millis(140)));
        // ...and inside the last tick the standby sleeps locally instead.
        assert_eq!(standby_blocking_wait(renew, Some(Duration::from_millis(115))), None);
        assert_eq!(standby_blocking_wait(renew, Some(Duration::from_millis(40))), None);
    }

    #[test]
    fn io_errors_map_to_kinds() {
        use std::io::{Error, ErrorKind};
        let cases = [
            // EINTR: what a SIGSTOP/SIGCONT does to a blocking BLPOP.
            (Error::from_raw_os_error(4), RedisErrorKind::Interrupted),
            (Error::from(ErrorKind::Interrupted), RedisErrorKind::Interrupted),
            (Error::from(ErrorKind::WouldBlock), RedisErrorKind::Timeout), // SO_RCVTIMEO on Linux
            (Error::from(ErrorKind::TimedOut), RedisErrorKind::Timeout),
            (Error::from(ErrorKind::ConnectionRefused), RedisErrorKind::Refused),
            (Error::from(ErrorKind::ConnectionReset), RedisErrorKind::ConnectionLost),
            (Error::from(ErrorKind::BrokenPipe), RedisErrorKind::ConnectionLost),
            (Error::from(ErrorKind::UnexpectedEof), RedisErrorKind::ConnectionLost),
            // How rustls's stream reports a refused certificate (`rediss://`).
            (
                Error::new(
                    ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                ),
                RedisErrorKind::Tls,
            ),
        ];
        for (io, expected) in cases {
            let text = io.to_string();
            assert_eq!(RedisErrorKind::of(&redis::RedisError::from(io)), expected, "{text}");
        }
    }

    #[test]
    fn redis_errors_map_to_kinds() {
        use redis::{ErrorKind, ServerErrorKind};
        let cases = [
            (ErrorKind::AuthenticationFailed, RedisErrorKind::Auth),
            (ErrorKind::Server(ServerErrorKind::NoPerm), RedisErrorKind::Auth),
            (ErrorKind::InvalidClientConfig, RedisErrorKind::Address),
            (ErrorKind::Server(ServerErrorKind::ResponseError), RedisErrorKind::Server),
            (ErrorKind::Server(ServerErrorKind::BusyLoading), RedisErrorKind::Server),
            (ErrorKind::Server(ServerErrorKind::ReadOnly), RedisErrorKind::NotMaster),
            (ErrorKind::Parse, RedisErrorKind::Protocol),
            (ErrorKind::UnexpectedReturnType, RedisErrorKind::Protocol),
            // An I/O kind without an io::Error behind it.
            (ErrorKind::Io, RedisErrorKind::ConnectionLost),
        ];
        for (kind, expected) in cases {
            assert_eq!(RedisErrorKind::of(&redis::RedisError::from((kind, "test"))), expected, "{kind:?}");
        }
        let script_error = redis::make_extension_error("ERRSCRIPT".into(), Some("boom".into()));
        assert_eq!(RedisErrorKind::of(&script_error), RedisErrorKind::Server);
        // A Redis that requires a password this node did not send answers
        // every command with the NOAUTH code (the crate has no kind for it).
        let no_auth = redis::make_extension_error("NOAUTH".into(), Some("Authentication required.".into()));
        assert_eq!(RedisErrorKind::of(&no_auth), RedisErrorKind::Auth);
    }

    #[test]
    fn errors_read_as_what_happened_not_as_the_errno() {
        use std::io::{Error, ErrorKind};
        // SO_RCVTIMEO ends a read with EAGAIN, which prints as "Resource
        // temporarily unavailable (os error 11)": a hung Redis, said plainly.
        let hung = RedisError::new("127.0.0.1:6379", "renew", &redis::RedisError::from(Error::from_raw_os_error(11)));
        assert_eq!(hung.kind, RedisErrorKind::Timeout);
        assert_eq!(hung.to_string(), "Redis renew (127.0.0.1:6379): timed out");
        let timed_out = RedisError::new("r:1", "wait", &redis::RedisError::from(Error::from(ErrorKind::TimedOut)));
        assert_eq!(timed_out.to_string(), "Redis wait (r:1): timed out");
        let refused =
            RedisError::new("r:1", "connect", &redis::RedisError::from(Error::from(ErrorKind::ConnectionRefused)));
        assert!(refused.to_string().starts_with("Redis connect (r:1): "), "{refused}");
        assert!(refused.to_string().contains("refused"), "{refused}");
    }

    #[test]
    fn held_term_expires_on_the_monotonic_clock() {
        let handle = LeaseHandle::default();
        assert_eq!(handle.held_term(), None);
        handle.set(Some(HeldLease { term: 4, valid_until: Instant::now() + Duration::from_secs(5) }));
        assert_eq!(handle.held_term(), Some(4));
        assert!(handle.remaining(4) > Duration::from_secs(4));
        assert_eq!(handle.remaining(3), Duration::ZERO);
        handle.set(Some(HeldLease { term: 4, valid_until: Instant::now() }));
        assert_eq!(handle.held_term(), None, "a lease at its deadline is not held");
    }
}
