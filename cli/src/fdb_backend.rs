//! `keyfold serve --store fdb`: the queue, the tree and the heads in FoundationDB; the directory's
//! config, signing key and archives stay under `--data`. The process first takes the epoch-writer
//! lease (a standby waits here until the writer's lease lapses), keeps it with a heartbeat thread,
//! and resigns it on shutdown so a standby takes over at once. See cli/DEPLOY-fdb.md.

use crate::directory::{DirectoryConfig, now_ms, read_config, tree_config};
use crate::error::CliError;
use crate::serve::{ServeArgs, run};
use keyfold_epoch::EpochJob;
use keyfold_fdb::{
    Database, EpochWriterLease, FdbHeadStore, FdbQueue, FdbStore, FdbStoreOptions, Layout, LeaseOptions, Network,
    QueueBounds, open_database,
};
use keyfold_map::{Map, TreeConfig};
use keyfold_redb::{RedbCosignatures, RedbOutcomeIndex};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Per-transaction timeout: an unreachable cluster becomes an error instead of a hang.
const TRANSACTION_TIMEOUT_MS: i32 = 10_000;

fn process_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}:{}:{}", std::process::id(), now_ms())
}

/// A cluster that cannot be reached is 3; a cluster file that is absent or unusable is the
/// user's to fix (2).
pub fn serve(args: &ServeArgs) -> Result<(), CliError> {
    let config = read_config(&args.data)?;
    let tree = tree_config(&config)?;
    let network = Network::start().map_err(|e| CliError::unavailable(format!("FoundationDB client network: {e}")))?;
    let db = Arc::new(open_database(&network, &args.cluster_file, TRANSACTION_TIMEOUT_MS).map_err(|e| {
        let message = format!("cluster file {}: {e}", args.cluster_file.display());
        if e.is_retryable() { CliError::unavailable(message) } else { CliError::usage(message) }
    })?);
    let prefix = args.fdb_prefix.clone().unwrap_or_else(|| format!("keyfold/{}/", config.origin));
    let layout = Layout::new(prefix.clone().into_bytes());
    tracing::info!(prefix = %prefix, cluster_file = %args.cluster_file.display(), "waiting for the epoch-writer lease");
    let lease = Arc::new(
        EpochWriterLease::acquire(&db, &layout, LeaseOptions::new(process_id()))
            .map_err(|e| CliError::unavailable(format!("epoch-writer lease: {e}")))?,
    );
    let job = open_job(args, &config, tree, &db, layout, &lease)?;
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = spawn_heartbeat(&db, &lease, &stop)?;
    let stores = keyfold_redb::Layout::new(&args.data);
    let cosignatures =
        RedbCosignatures::open(&stores.cosignatures()).map_err(|e| CliError::store_in("cosignatures", e))?;
    let served = run(args, &config, Arc::new(job), Arc::new(cosignatures));
    stop.store(true, Ordering::Release);
    let _ = heartbeat.join();
    if let Err(e) = lease.resign(&db) {
        tracing::warn!(error = %e, "could not resign the lease (it lapses on its own)");
    }
    drop(db);
    drop(network); // after every database handle: the job and the stores were dropped by `run`
    served
}

/// The epoch job over the cluster's queue, tree and heads, fenced by `lease`; the signing key,
/// the archives and the outcome index come from `--data`.
fn open_job(
    args: &ServeArgs,
    config: &DirectoryConfig,
    tree: TreeConfig,
    db: &Arc<Database>,
    layout: Layout,
    lease: &Arc<EpochWriterLease>,
) -> Result<EpochJob<FdbQueue, FdbStore, FdbHeadStore>, CliError> {
    let bounds = QueueBounds { max_depth: config.queue_max_depth, max_bytes: config.queue_max_bytes };
    let queue = FdbQueue::new(Arc::clone(db), layout.clone(), tree.suite, bounds, Some(Arc::clone(lease)));
    let store = FdbStore::open(
        Arc::clone(db),
        FdbStoreOptions { config: tree, layout: layout.clone() },
        Some(Arc::clone(lease)),
    )
    .map_err(|e| CliError::store_in("map", e))?;
    let heads = FdbHeadStore::new(Arc::clone(db), layout, Some(Arc::clone(lease)));
    let key = keyfold_epoch::KeyFiles::new(&args.data).load().map_err(CliError::usage)?;
    let archives = Arc::new(crate::directory::open_archives(&args.data, config)?);
    // The derived index is per server, rebuilt from the archives where it lags.
    let index_path = keyfold_redb::Layout::new(&args.data).index();
    let index = Arc::new(RedbOutcomeIndex::open(&index_path).map_err(CliError::store)?);
    let job = EpochJob::open(queue, Map::new(store), heads, archives, key, &config.origin, now_ms())
        .and_then(|job| job.with_index(index))
        .map_err(CliError::store)?;
    let job = job.with_limits(config.epoch_limits());
    match config.retention() {
        // Refused here (the FoundationDB store does not prune), not silently ignored.
        Some(retention) => job.with_retention(retention).map_err(|e| CliError::usage(format!("keyfold.toml: {e}"))),
        None => Ok(job),
    }
}

/// Keeps the epoch-writer lease until `stop`.
fn spawn_heartbeat(
    db: &Arc<Database>,
    lease: &Arc<EpochWriterLease>,
    stop: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, CliError> {
    let (db, lease, stop) = (Arc::clone(db), Arc::clone(lease), Arc::clone(stop));
    std::thread::Builder::new()
        .name("keyfold-lease".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                // A lost lease fences this process's epoch writes (they fail and are retried);
                // the next cycle that wins it back lets them through again.
                match lease.heartbeat(&db) {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("the epoch-writer lease is held elsewhere; epochs are fenced"),
                    Err(e) => tracing::warn!(error = %e, "lease heartbeat failed"),
                }
                std::thread::sleep(lease.heartbeat_interval());
            }
        })
        .map_err(|e| CliError::unavailable(format!("cannot start the lease heartbeat thread: {e}")))
}
