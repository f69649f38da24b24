//! The queue, shard store and head store conformance suites, and the lease's fencing, against a
//! real FoundationDB cluster: the one named by `FDB_CLUSTER_FILE`. Without it the run prints why
//! it skipped. Each case gets its own key prefix, cleared before and after.
//!
//! `cargo test -p keyfold-fdb --features fdb --test fdb_conformance` (needs libfdb_c to link;
//! `FDB_CLIENT_LIB_PATH` names its directory if it is not on the linker's path).

use keyfold_core::{Epoch, HashSuite, Mutation, Version};
use keyfold_epoch::{EpochError, HeadStore};
use keyfold_fdb::{
    Database, EpochWriterLease, FdbHeadStore, FdbQueue, FdbStore, FdbStoreOptions, Layout, LeaseOptions, Network,
    QueueBounds, open_database,
};
use keyfold_ingest::{Position, Queue};
use keyfold_map::TreeConfig;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Taken (and dropped) before the network stops: FoundationDB wants handles closed first.
static DB: Mutex<Option<Arc<Database>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(0);
static USED: Mutex<Vec<Layout>> = Mutex::new(Vec::new());

fn db() -> Arc<Database> {
    Arc::clone(DB.lock().unwrap().as_ref().expect("the database is opened before any case runs"))
}

fn clear(layout: &Layout) {
    let (begin, end) = layout.everything();
    futures_block_on(db().run(|trx, _| {
        let (begin, end) = (begin.clone(), end.clone());
        async move {
            trx.clear_range(&begin, &end);
            Ok(())
        }
    }))
    .expect("clear the test prefix");
}

fn futures_block_on<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// A fresh, empty prefix for one store.
fn fresh_layout() -> Layout {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let layout = Layout::new(format!("keyfold-test/{}/{n}/", std::process::id()).into_bytes());
    clear(&layout);
    USED.lock().unwrap().push(layout.clone());
    layout
}

fn make_queue(max_depth: u64, max_bytes: u64) -> FdbQueue {
    FdbQueue::new(db(), fresh_layout(), HashSuite::Blake3, QueueBounds { max_depth, max_bytes }, None)
}

/// An append retried after an unknown commit outcome, when sequencing (an epoch's cut) has moved
/// the landed attempt from staging into the log meanwhile, answers with the landed attempt's
/// receipts instead of staging the batch a second time (which would archive it twice). Once the
/// epoch that consumed the batch is committed and its entries removed, their guards go with them.
fn append_retried_after_sequencing_is_not_staged_twice() {
    let q = make_queue(1000, u64::MAX);
    let batch: Vec<Mutation> = (0..3u64)
        .map(|i| Mutation {
            key: format!("retried{i}").into_bytes(),
            value: Some(i.to_be_bytes().to_vec()),
            expected_version: Version(0),
            owner_signature: None,
        })
        .collect();
    let receipts = q.append(batch.clone()).expect("append");
    let logged = q.read(Position(0), 100).expect("read (sequences the staged batch)");
    assert_eq!(logged.len(), 3);
    let retried = q.append_after_unknown_outcome(batch.clone()).expect("retried append");
    assert_eq!(retried, receipts, "the retry finds the landed attempt");
    assert_eq!(q.read(Position(0), 100).expect("read").len(), 3, "the batch is in the queue once");
    assert_eq!(q.depth(), 3);
    q.remove_through(logged.last().expect("entries").0).expect("remove after the epoch");
    let resent = q.append_after_unknown_outcome(batch).expect("a later resubmission");
    assert_ne!(resent, receipts, "a resubmission after removal is a new append");
    assert_eq!(q.depth(), 3);
}

fn make_store(config: TreeConfig) -> FdbStore {
    FdbStore::open(db(), FdbStoreOptions { config, layout: fresh_layout() }, None).expect("open the store")
}

fn make_heads() -> FdbHeadStore {
    FdbHeadStore::new(db(), fresh_layout(), None)
}

/// Two writers: the second cannot take the lease while the first holds it; once the first
/// resigns, the second leads and the first's head commits are fenced off.
fn lease_fences_a_deposed_writer() {
    let layout = fresh_layout();
    let quick = |id: &str| LeaseOptions {
        lease_duration: Duration::from_secs(4),
        heartbeat_interval: Duration::from_millis(500),
        acquire_timeout: Duration::from_secs(2),
        ..LeaseOptions::new(id.to_owned())
    };
    let a = Arc::new(EpochWriterLease::acquire(&db(), &layout, quick("writer-a")).expect("a leads"));
    let heads_a = FdbHeadStore::new(db(), layout.clone(), Some(Arc::clone(&a)));
    heads_a.commit(Epoch(0), "genesis", Position(0)).expect("the leader commits");
    let refused = EpochWriterLease::acquire(&db(), &layout, quick("writer-b"));
    assert!(refused.is_err(), "a second writer must not lead while the first holds the lease");
    a.resign(&db()).expect("resign");
    let b = Arc::new(EpochWriterLease::acquire(&db(), &layout, quick("writer-b")).expect("b leads after a resigned"));
    let fenced = heads_a.commit(Epoch(1), "from a", Position(1));
    assert!(matches!(fenced, Err(EpochError::Storage(keyfold_core::StorageError::Fenced(_)))), "{fenced:?}");
    let heads_b = FdbHeadStore::new(db(), layout, Some(b));
    heads_b.commit(Epoch(1), "from b", Position(1)).expect("the new leader commits");
    assert_eq!(heads_b.latest().unwrap(), Some((Epoch(1), "from b".to_owned())));
}

fn main() -> ExitCode {
    let Some(cluster_file) = std::env::var_os("FDB_CLUSTER_FILE") else {
        println!(
            "fdb_conformance: SKIPPED, FDB_CLUSTER_FILE is not set. Set it to a cluster file to run the queue, \
             shard store and head store conformance suites and the lease test against that cluster."
        );
        return ExitCode::SUCCESS;
    };
    let network = Network::start().expect("start FoundationDB's client network");
    let database = open_database(&network, std::path::Path::new(&cluster_file), 30_000).expect("open the cluster");
    *DB.lock().unwrap() = Some(Arc::new(database));

    let mut cases: Vec<(String, Box<dyn Fn()>)> = Vec::new();
    for (name, case) in keyfold_conformance::queue::cases::<FdbQueue>() {
        cases.push((name.to_owned(), Box::new(move || case(make_queue))));
    }
    for (name, case) in keyfold_conformance::tree::cases::<FdbStore>() {
        cases.push((name.to_owned(), Box::new(move || case(make_store))));
    }
    for (name, case) in keyfold_conformance::heads::cases::<FdbHeadStore>() {
        cases.push((name.to_owned(), Box::new(move || case(make_heads))));
    }
    cases.push(("lease_fences_a_deposed_writer".to_owned(), Box::new(lease_fences_a_deposed_writer)));
    cases.push((
        "queue_append_retried_after_sequencing_is_not_staged_twice".to_owned(),
        Box::new(append_retried_after_sequencing_is_not_staged_twice),
    ));

    let mut failed = 0;
    for (name, case) in &cases {
        let outcome = catch_unwind(AssertUnwindSafe(case));
        println!("test fdb::{name} ... {}", if outcome.is_ok() { "ok" } else { "FAILED" });
        failed += usize::from(outcome.is_err());
    }
    for layout in USED.lock().unwrap().iter() {
        clear(layout);
    }
    println!(
        "test result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        cases.len() - failed
    );
    drop(DB.lock().unwrap().take());
    drop(network);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
