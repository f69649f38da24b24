//! `keyfold serve --store fdb`: the queue, the tree and the heads in FoundationDB; the directory's
//! config, signing key and archives stay under `--data`. The process first takes the epoch-writer
//! lease (a standby waits here until the writer's lease lapses), keeps it with a heartbeat thread,
//! and resigns it on shutdown so a standby takes over at once. See cli/DEPLOY-fdb.md.

use crate::directory::{now_ms, read_config};
use crate::serve::{ServeArgs, run};
use keyfold_core::HashSuite;
use keyfold_epoch::{EpochJob, load_signing_key};
use keyfold_fdb::{
    EpochWriterLease, FdbHeadStore, FdbQueue, FdbStore, FdbStoreOptions, Layout, LeaseOptions, Network, QueueBounds,
    open_database,
};
use keyfold_map::{Map, TreeConfig};
use keyfold_redb::RedbOutcomeIndex;
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

pub fn serve(args: &ServeArgs) -> Result<(), String> {
    let config = read_config(&args.data)?;
    let suite = HashSuite::from_name(&config.hash).ok_or_else(|| format!("unknown hash {:?}", config.hash))?;
    let tree = TreeConfig::new(suite, config.shard_bits).map_err(|e| e.to_string())?;
    let network = Network::start().map_err(|e| format!("FoundationDB client network: {e}"))?;
    let db = Arc::new(
        open_database(&network, &args.cluster_file, TRANSACTION_TIMEOUT_MS)
            .map_err(|e| format!("cluster file {}: {e}", args.cluster_file.display()))?,
    );
    let prefix = args.fdb_prefix.clone().unwrap_or_else(|| format!("keyfold/{}/", config.origin));
    let layout = Layout::new(prefix.clone().into_bytes());
    tracing::info!(prefix = %prefix, cluster_file = %args.cluster_file.display(), "waiting for the epoch-writer lease");
    let lease = Arc::new(
        EpochWriterLease::acquire(&db, &layout, LeaseOptions::new(process_id()))
            .map_err(|e| format!("epoch-writer lease: {e}"))?,
    );
    let bounds = QueueBounds { max_depth: config.queue_max_depth, max_bytes: config.queue_max_bytes };
    let queue = FdbQueue::new(Arc::clone(&db), layout.clone(), suite, bounds, Some(Arc::clone(&lease)));
    let store = FdbStore::open(
        Arc::clone(&db),
        FdbStoreOptions { config: tree, layout: layout.clone() },
        Some(Arc::clone(&lease)),
    )
    .map_err(|e| format!("map: {e}"))?;
    let heads = FdbHeadStore::new(Arc::clone(&db), layout, Some(Arc::clone(&lease)));
    let key = load_signing_key(&args.data.join("signing.key")).map_err(|e| e.to_string())?;
    let archives = Arc::new(crate::directory::open_archives(&args.data, &config)?);
    // The derived index is per server, rebuilt from the archives where it lags.
    let index = Arc::new(RedbOutcomeIndex::open(&args.data.join("index.redb")).map_err(|e| e.to_string())?);
    let job = EpochJob::open(queue, Map::new(store), heads, archives, key, &config.origin, now_ms())
        .and_then(|job| job.with_index(index))
        .map_err(|e| e.to_string())?
        .with_limits(config.epoch_limits());
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (db, lease, stop) = (Arc::clone(&db), Arc::clone(&lease), Arc::clone(&stop));
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
            .map_err(|e| e.to_string())?
    };
    let served = run(args, &config, Arc::new(job));
    stop.store(true, Ordering::Release);
    let _ = heartbeat.join();
    if let Err(e) = lease.resign(&db) {
        tracing::warn!(error = %e, "could not resign the lease (it lapses on its own)");
    }
    drop(db);
    drop(network); // after every database handle: the job and the stores were dropped by `run`
    served
}
