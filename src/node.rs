//! Wires one node together: which threads run in which mode, and the order
//! they start and stop in. No role logic lives here.
//!
//! Leader mode: health server, sync API, notifier (LISTEN), lease thread,
//! stream publisher, producer. Member mode: health server, optional sync
//! API, notifier, syncer.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{Config, Mode};
use crate::engine::EngineClient;
use crate::leader::lease::{FenceFloor, LeaseHandle, LeaseLoop};
use crate::leader::producer::{Producer, ProducerContext};
use crate::leader::publish::Publisher;
use crate::log;
use crate::member::syncer::{Syncer, SyncerContext};
use crate::metrics::Metrics;
use crate::notify::{run_notifier, HeadWatch};
use crate::reconnect::Reconnecting;
use crate::shutdown::Shutdown;
use crate::signing::RecordTrust;
use crate::status::{Component, NodeStatus};
use crate::store::{GuardedStore, Store, StoreErrorKind};
use crate::{api, health};

/// How long startup waits between attempts to reach a service.
const STARTUP_RETRY: Duration = Duration::from_millis(500);

/// A running node: its shared state, for tests and the binary.
pub struct RunningNode {
    pub status: Arc<NodeStatus>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    threads: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Asks every thread to stop and waits for them.
    pub fn stop(self) {
        self.shutdown.request();
        self.join();
    }

    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|e| format!("cannot start {name} thread: {e}"))
}

/// Starts every thread of the node; returns once they run. Errors are the
/// ones that retrying cannot fix (a port taken, a different chain).
pub fn start(config: Config, shutdown: Shutdown) -> Result<RunningNode, String> {
    let mode = match config.mode {
        Mode::Leader => "leader",
        Mode::Member => "member",
    };
    let metrics = Arc::new(Metrics::for_node(mode, &config.instance_id));
    let status = Arc::new(NodeStatus::new(config.mode, &config.instance_id));
    status.update(|s| {
        s.record_signatures = record_signatures(&config);
        s.lag_limits = config.member.lag_limits;
    });
    let watch = Arc::new(HeadWatch::default());
    let engine = Arc::new(
        EngineClient::new(&config.eth_client_url, config.jwt_secret.clone()).with_metrics(Arc::clone(&metrics)),
    );
    let lease = (config.mode == Mode::Leader).then(|| Arc::new(LeaseHandle::default()));
    let admin = health::Admin { token: config.admin_token.clone(), lease: lease.clone() };
    let mut threads = health::start(config.health_addr, Arc::clone(&status), Arc::clone(&metrics), admin, &shutdown)?;
    if let Some(addr) = config.api_addr {
        let ctx = api::ApiContext {
            postgres_url: config.postgres_url.clone(),
            watch: Arc::clone(&watch),
            metrics: Arc::clone(&metrics),
            instance_id: config.instance_id.clone(),
            token: config.api_token.clone(),
            signing_key: config.sync_keys.current.clone(),
            shutdown: shutdown.clone(),
            wire: config.sync_wire,
        };
        threads.extend(api::start(addr, ctx, &shutdown)?);
    }
    check_chain(&config, &engine, &status, &shutdown)?;
    {
        let (url, watch, status, metrics, shutdown) = (
            config.postgres_url.clone(),
            Arc::clone(&watch),
            Arc::clone(&status),
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        let guard = config.mode == Mode::Leader;
        threads.push(spawn("notifier", move || run_notifier(url, watch, status, metrics, guard, shutdown))?);
    }
    {
        let shutdown = shutdown.clone();
        threads.push(spawn("trimmer", move || crate::alloc::run_idle_trimmer(&shutdown))?);
    }
    let shared = Shared { engine, status: Arc::clone(&status), metrics: Arc::clone(&metrics), watch };
    match config.mode {
        Mode::Leader => threads.extend(start_leader_roles(&config, shared, lease.unwrap_or_default(), &shutdown)?),
        Mode::Member => threads.push(start_syncer(&config, shared, &shutdown)?),
    }
    Ok(RunningNode { status, metrics, shutdown, threads })
}

/// /health's `record_signatures`: what this node does with the committing
/// leader's signatures; the opt-out is shouted.
fn record_signatures(config: &Config) -> &'static str {
    if config.sync_wire == crate::config::SyncWire::Seed {
        return match config.mode {
            Mode::Member => "UNFENCED seed source (--sync-wire seed): records carry no term and no leader signature",
            Mode::Leader => "served as the seed's records (--sync-wire seed): no term, no leader signature",
        };
    }
    match (config.mode, config.leader.signing_key.is_some(), &config.member.record_trust) {
        (Mode::Leader, true, _) => "signed",
        (Mode::Leader, false, _) => "UNSIGNED (--insecure-unsigned-records)",
        (Mode::Member, _, RecordTrust::Pinned(_)) => "verified (pinned --leader-public-key)",
        (Mode::Member, _, RecordTrust::Unverified) => "UNVERIFIED (--insecure-unsigned-records)",
    }
}

/// What the roles of one node share.
struct Shared {
    engine: Arc<EngineClient>,
    status: Arc<NodeStatus>,
    metrics: Arc<Metrics>,
    watch: Arc<HeadWatch>,
}

/// Leader mode: the stream publisher, the lease thread and the producer.
fn start_leader_roles(
    config: &Config,
    shared: Shared,
    lease: Arc<LeaseHandle>,
    shutdown: &Shutdown,
) -> Result<Vec<JoinHandle<()>>, String> {
    let (publisher, publish_thread) = Publisher::start(&config.leader, Arc::clone(&shared.metrics), shutdown.clone())?;
    let lease_loop = LeaseLoop::new(
        config.leader.clone(),
        config.instance_id.clone(),
        Arc::clone(&lease),
        Arc::clone(&shared.metrics),
        Arc::clone(&shared.status),
        shutdown.clone(),
    )
    .with_fence_floor(fence_floor(config));
    let lease_thread = spawn("lease", move || lease_loop.run())?;
    let producer = Producer::new(ProducerContext {
        instance_id: config.instance_id.clone(),
        config: config.leader.clone(),
        postgres_url: config.postgres_url.clone(),
        engine: shared.engine,
        lease,
        status: shared.status,
        metrics: shared.metrics,
        watch: shared.watch,
        publisher,
        shutdown: shutdown.clone(),
    });
    let producer_thread = spawn("producer", move || producer.run())?;
    Ok(vec![publish_thread, lease_thread, producer_thread])
}

/// The lease thread's fresh read of the fence term, on a connection of its
/// own (made on first use, made again after it broke), guarded: a hung
/// database must not hang the lease thread (`deadline.rs`).
fn fence_floor(config: &Config) -> FenceFloor {
    let (url, application) = (config.postgres_url.clone(), format!("clnode-lease-{}", config.instance_id));
    let mut store = Reconnecting::new(move || GuardedStore::connect(&url, &application));
    Box::new(move || {
        let read = store.get().and_then(|guarded| guarded.call(Store::fence_term));
        if let Err(error) = &read {
            store.drop_if_lost(error);
        }
        read.map_err(|error| error.to_string())
    })
}

/// Member mode: the syncer (which starts its own fetch thread).
fn start_syncer(config: &Config, shared: Shared, shutdown: &Shutdown) -> Result<JoinHandle<()>, String> {
    let syncer = Syncer::new(SyncerContext {
        instance_id: config.instance_id.clone(),
        config: config.member.clone(),
        sync_keys: config.sync_keys.clone(),
        postgres_url: config.postgres_url.clone(),
        engine: shared.engine,
        status: shared.status,
        metrics: shared.metrics,
        watch: shared.watch,
        serves_api: config.api_addr.is_some(),
        shutdown: shutdown.clone(),
    });
    spawn("syncer", move || syncer.run())
}

/// Waits until the execution client and the database answer, then checks
/// they hold the same chain (genesis hash and chain id). Both may come up
/// after clnode; /health says what is missing meanwhile. What waiting
/// cannot fix ends the startup at once: a JWT secret the client refuses, a
/// database that does not exist or credentials PostgreSQL refuses, another
/// chain (ARCHITECTURE.md, "Errors that will not heal").
fn check_chain(config: &Config, engine: &EngineClient, status: &NodeStatus, shutdown: &Shutdown) -> Result<(), String> {
    let (mut announced_engine, mut announced_database) = (false, false);
    while !shutdown.is_requested() {
        let genesis = engine.chain_id().and_then(|chain_id| {
            engine.block_by_number(crate::engine::BlockTag::Number(0)).map(|block| (chain_id, block.map(|b| b.hash)))
        });
        let genesis = match genesis {
            Ok((_, None)) => return Err(format!("execution client {} has no genesis block", engine.url())),
            Ok((chain_id, Some(hash))) => {
                status.clear_problem(Component::ExecutionClient);
                Some((chain_id, hash))
            }
            Err(error) => {
                if error.kind_label() == "auth" {
                    return Err(format!("{error} (is the JWT secret the execution client's?)"));
                }
                status.set_problem(Component::ExecutionClient, error.to_string());
                if !announced_engine {
                    log::warn(&format!("startup: waiting for the execution client: {error}"));
                    announced_engine = true;
                }
                None
            }
        };
        // The database is tried even while the client is away, so that a
        // database refusing this node's settings is told at once. A seed
        // table is migrated before any other connection touches it.
        let checked = match genesis {
            Some((chain_id, genesis_hash)) => {
                Store::migrate_seed_table(&config.postgres_url, config.leader.signing_key.as_ref())
                    .and_then(|()| Store::connect(&config.postgres_url, "clnode-startup"))
                    .and_then(|mut store| {
                        store.apply_schema()?;
                        store.ensure_chain(genesis_hash, chain_id)
                    })
            }
            None => Store::connect(&config.postgres_url, "clnode-startup").map(drop),
        };
        match checked {
            Ok(()) => {
                status.clear_problem(Component::Database);
                if let Some((chain_id, genesis_hash)) = genesis {
                    log::info(&format!("startup: chain {chain_id}, genesis {genesis_hash}"));
                    return Ok(());
                }
            }
            // Another chain, a chain id PostgreSQL cannot hold, a seed table
            // that cannot be migrated, a database that does not exist,
            // refused credentials: retrying cannot fix any of them. Anything
            // else is waited out.
            Err(error)
                if matches!(
                    error.kind,
                    StoreErrorKind::ChainMismatch | StoreErrorKind::OutOfRange | StoreErrorKind::SeedMigration
                ) || error.kind.is_refused_configuration() =>
            {
                return Err(error.to_string())
            }
            Err(error) => {
                status.set_problem(Component::Database, error.to_string());
                if !announced_database {
                    log::warn(&format!("startup: waiting for the database: {error}"));
                    announced_database = true;
                }
            }
        }
        shutdown.sleep(STARTUP_RETRY);
    }
    Err("stopped before startup finished".into())
}
