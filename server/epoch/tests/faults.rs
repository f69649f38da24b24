//! I/O faults under the map, the heads, the index and the archives while an epoch runs (a failed
//! write, a failed fsync, a full disk): the epoch fails with a retryable error and signs nothing;
//! once the fault clears, the same job retries in place (no restart) and publishes the head a
//! fault-free run publishes, byte for byte; a restart then finds the same state. Faults under the
//! queue are in `storage/redb/tests/queue_faults.rs` and `server/api/tests/faults.rs`.

use keyfold_core::{Epoch, HashSuite, Mutation, SigningKey, Version};
use keyfold_epoch::{ArchiveSink, EpochError, EpochJob, HeadStore, MutationStatus, ObjectArchives};
use keyfold_ingest::Queue;
use keyfold_map::{Map, TreeConfig};
use keyfold_redb::faults::{FaultPlan, open_faulty_database};
use keyfold_redb::reopen::{Opener, file_opener};
use keyfold_redb::{RedbHeadStore, RedbOptions, RedbOutcomeIndex, RedbQueue, RedbQueueOptions, RedbStore};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const ORIGIN: &str = "test.example/keyfold";
const T0: u64 = 1_000_000;

/// An opener whose files obey `plan`.
fn faulty_opener(plan: &Arc<FaultPlan>) -> Opener {
    let plan = Arc::clone(plan);
    Arc::new(move |path: &Path| open_faulty_database(path, &plan))
}

/// Archives in a directory whose `put` fails like a full disk while `full` is set.
#[derive(Debug)]
struct FullDiskArchives {
    inner: ObjectArchives,
    full: AtomicBool,
}

impl ArchiveSink for FullDiskArchives {
    fn put(&self, epoch: Epoch, bytes: bytes::Bytes) -> Result<(), EpochError> {
        if self.full.load(Ordering::SeqCst) {
            let e = std::io::Error::new(std::io::ErrorKind::StorageFull, "injected: no space left on device");
            return Err(EpochError::io(e));
        }
        self.inner.put(epoch, bytes)
    }

    fn get(&self, epoch: Epoch) -> Result<Option<bytes::Bytes>, EpochError> {
        self.inner.get(epoch)
    }

    fn size(&self, epoch: Epoch) -> Result<Option<u64>, EpochError> {
        self.inner.size(epoch)
    }

    fn read_range(&self, epoch: Epoch, range: std::ops::Range<u64>) -> Result<Option<bytes::Bytes>, EpochError> {
        self.inner.read_range(epoch, range)
    }

    fn put_proof(&self, epoch: Epoch, bytes: bytes::Bytes) -> Result<(), EpochError> {
        self.inner.put_proof(epoch, bytes)
    }

    fn get_proof(&self, epoch: Epoch) -> Result<Option<bytes::Bytes>, EpochError> {
        self.inner.get_proof(epoch)
    }
    fn delete(&self, epoch: Epoch) -> Result<(), EpochError> {
        self.inner.delete(epoch)
    }
}

/// Where a fault is injected.
#[derive(Debug, Clone, Copy)]
enum Target {
    Map,
    Heads,
    Index,
}

/// How it fails.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Write(u64),
    Sync(u64),
    DiskFull,
}

struct Faulty {
    job: EpochJob<RedbQueue, RedbStore, RedbHeadStore>,
    map: Arc<FaultPlan>,
    heads: Arc<FaultPlan>,
    index: Arc<FaultPlan>,
    archives: Arc<FullDiskArchives>,
}

impl Faulty {
    fn plan(&self, target: Target) -> &FaultPlan {
        match target {
            Target::Map => &self.map,
            Target::Heads => &self.heads,
            Target::Index => &self.index,
        }
    }
}

fn config() -> TreeConfig {
    TreeConfig::new(HashSuite::Blake3, 4).unwrap()
}

/// The durable job; its map, heads and index files obey the returned plans.
fn open(dir: &Path, faults: bool) -> Faulty {
    let (map, heads, index) = (FaultPlan::new(), FaultPlan::new(), FaultPlan::new());
    let opener = |plan: &Arc<FaultPlan>| if faults { faulty_opener(plan) } else { file_opener(16 << 20) };
    let queue = RedbQueue::open(
        &dir.join("queue.redb"),
        RedbQueueOptions { max_depth: 100_000, ..RedbQueueOptions::new(config().suite) },
    )
    .unwrap();
    let store = RedbStore::open_with(&dir.join("tree"), RedbOptions::new(config()), opener(&map)).unwrap();
    let head_store = RedbHeadStore::open_with(&dir.join("heads.redb"), opener(&heads)).unwrap();
    let archives = Arc::new(FullDiskArchives {
        inner: ObjectArchives::local(&dir.join("archives")).unwrap(),
        full: AtomicBool::new(false),
    });
    let index_store = RedbOutcomeIndex::open_with(&dir.join("index.redb"), opener(&index)).unwrap();
    let job = EpochJob::open(
        queue,
        Map::new(store),
        head_store,
        Arc::clone(&archives) as Arc<dyn ArchiveSink>,
        SigningKey::from_bytes(&[9; 32]),
        ORIGIN,
        T0,
    )
    .unwrap()
    .with_index(Arc::new(index_store))
    .unwrap();
    Faulty { job, map, heads, index, archives }
}

fn m(key: u32, value: &str, expected: u64) -> Mutation {
    Mutation {
        key: format!("user{key}@example.com").into_bytes(),
        value: Some(value.as_bytes().to_vec()),
        expected_version: Version(expected),
        owner_signature: None,
    }
}

fn epoch1() -> Vec<Mutation> {
    (0..300).map(|i| m(i, "v1", 0)).collect()
}

fn epoch2() -> Vec<Mutation> {
    let mut ms: Vec<Mutation> = (0..100).map(|i| m(i, "v2", 1)).collect();
    ms.extend((500..600).map(|i| m(i, "new", 0)));
    ms
}

/// Heads of epochs 1 and 2 from a run without faults.
fn reference() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir.path(), false);
    f.job.queue().append(epoch1()).unwrap();
    let n1 = f.job.run_epoch(2_000_000).unwrap().note;
    f.job.queue().append(epoch2()).unwrap();
    let n2 = f.job.run_epoch(3_000_000).unwrap().note;
    (n1, n2)
}

fn arm(plan: &FaultPlan, fault: Fault) {
    match fault {
        Fault::Write(k) => plan.fail_write_in(k),
        Fault::Sync(k) => plan.fail_sync_in(k),
        Fault::DiskFull => plan.set_disk_full(true),
    }
}

/// Epoch 2 hits `fault` under `target` (or a full archive directory when `target` is `None`),
/// then recovers in place and after a restart.
fn fault_then_recover(target: Option<Target>, fault: Fault, reference: &(String, String)) {
    let what = format!("{fault:?} under {target:?}");
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir.path(), true);
    f.job.queue().append(epoch1()).unwrap();
    assert_eq!(f.job.run_epoch(2_000_000).unwrap().note, reference.0, "{what}: epoch 1");
    let receipts = f.job.queue().append(epoch2()).unwrap();
    match target {
        Some(t) => arm(f.plan(t), fault),
        None => f.archives.full.store(true, Ordering::SeqCst),
    }

    let failed = f.job.run_epoch(3_000_000);
    let err = failed.as_ref().err().unwrap_or_else(|| panic!("{what}: the epoch must fail"));
    assert!(err.is_retryable(), "{what}: {err} must be retryable");
    if let Some(t) = target {
        assert!(f.plan(t).injected() > 0, "{what}: the fault fired");
    }
    if matches!(fault, Fault::DiskFull) {
        // A lasting fault keeps failing. (Reading a file whose write failed means reopening it,
        // which fails too while the disk is full: a retryable I/O error.)
        assert!(f.job.run_epoch(3_000_500).is_err(), "{what}: still failing");
    }

    // The fault clears. Nothing was signed while it lasted, except where the fault may strike
    // after the head is durable: a failed fsync is ambiguous (the bytes may have reached the disk
    // anyway, and redb's recovery then finds the commit complete), and the index is derived after
    // the head is published.
    match target {
        Some(t) => f.plan(t).clear(),
        None => f.archives.full.store(false, Ordering::SeqCst),
    }
    let latest = f.job.heads().latest().unwrap().unwrap().0;
    let may_publish = matches!((target, fault), (Some(Target::Index), _) | (Some(Target::Heads), Fault::Sync(_)));
    if latest == Epoch(2) {
        assert!(may_publish, "{what}: nothing signed while the fault lasted");
        assert_eq!(f.job.heads().get(Epoch(2)).unwrap().unwrap(), reference.1, "{what}: the published head");
    } else {
        assert_eq!(latest, Epoch(1), "{what}");
    }
    // The same job retries in place, then runs the next epoch.
    if latest == Epoch(1) {
        let report = f.job.run_epoch(3_000_000).unwrap();
        assert_eq!(report.note, reference.1, "{what}: the retried epoch signs the fault-free head");
    }
    f.job.queue().append(vec![m(700, "after", 0)]).unwrap();
    let report = f.job.run_epoch(4_000_000).unwrap();
    assert_eq!((report.head.epoch, report.head.counts.applied), (Epoch(3), 1), "{what}");
    assert_eq!(f.job.heads().get(Epoch(2)).unwrap().unwrap(), reference.1, "{what}");
    for receipt in &receipts {
        let status = f.job.mutation_status(&receipt.id).unwrap();
        assert!(matches!(status, MutationStatus::Done(_)), "{what}: {status:?}");
    }
    let expected_last = Epoch(3);
    drop(f);

    // A restart finds the same state, and every archive replays to its head.
    let f = open(dir.path(), false);
    assert_eq!(f.job.heads().latest().unwrap().unwrap().0, expected_last, "{what}");
    assert_eq!(f.job.heads().get(Epoch(2)).unwrap().unwrap(), reference.1, "{what}");
    let index = HashSuite::Blake3.index_of(b"user550@example.com");
    let lookup = f.job.map().lookup(&index, expected_last).unwrap();
    assert!(lookup.value.is_some(), "{what}: a key of epoch 2 is in the map");
    let genesis = f.job.heads().get(Epoch(0)).unwrap().unwrap();
    let public = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
    let mut replayer = keyfold_verify::Replayer::from_genesis(&genesis, ORIGIN, &public, 4).unwrap();
    for e in 1..=expected_last.0 {
        let note = f.job.heads().get(Epoch(e)).unwrap().unwrap();
        let archive = f.job.archives().get(Epoch(e)).unwrap().unwrap();
        replayer.replay(&note, archive).unwrap_or_else(|d| panic!("{what}: epoch {e}: {d}"));
    }
}

#[test]
fn faults_under_the_map_fail_the_epoch_and_recover_in_place() {
    let reference = reference();
    for fault in [Fault::Write(1), Fault::Write(3), Fault::Sync(1), Fault::Sync(2), Fault::DiskFull] {
        fault_then_recover(Some(Target::Map), fault, &reference);
    }
}

#[test]
fn faults_under_the_heads_fail_the_epoch_and_recover_in_place() {
    let reference = reference();
    for fault in [Fault::Write(1), Fault::Sync(1), Fault::DiskFull] {
        fault_then_recover(Some(Target::Heads), fault, &reference);
    }
}

#[test]
fn faults_under_the_index_and_the_archives_recover_in_place() {
    let reference = reference();
    for fault in [Fault::Write(1), Fault::Sync(1), Fault::DiskFull] {
        fault_then_recover(Some(Target::Index), fault, &reference);
    }
    fault_then_recover(None, Fault::DiskFull, &reference);
}

/// While the index cannot be written (a full disk), a mutation of a signed epoch is reported as
/// not yet indexed, never as unknown; once writes succeed the index catches up without another
/// epoch (what the scheduler does at every poll while it lags).
#[test]
fn an_index_that_lags_says_so_and_catches_up_without_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir.path(), true);
    f.job.queue().append(epoch1()).unwrap();
    f.job.run_epoch(2_000_000).unwrap();
    let receipts = f.job.queue().append(epoch2()).unwrap();
    f.index.set_disk_full(true);
    let err = f.job.run_epoch(3_000_000).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(f.job.heads().latest().unwrap().unwrap().0, Epoch(2), "the head is published before indexing");
    let lag = MutationStatus::NotYetIndexed { indexed_through: Epoch(1), latest: Epoch(2) };
    // While the disk is full even reading the index fails (reopening it needs a write): a
    // retryable error (503), never "unknown".
    match f.job.mutation_status(&receipts[0].id) {
        Ok(status) => assert_eq!(status, lag),
        Err(e) => assert!(e.is_retryable(), "{e}"),
    }
    assert!(f.job.catch_up_index_now().is_err(), "still full");
    f.index.clear();
    // Space is back, the index not yet caught up: the consumed mutations are not unknown.
    for receipt in &receipts {
        let status = f.job.mutation_status(&receipt.id).unwrap();
        assert_eq!(status, lag, "a consumed mutation is not unknown while the index lags");
    }
    f.job.catch_up_index_now().unwrap();
    assert_eq!(f.job.index_lag().unwrap(), None);
    for receipt in &receipts {
        let status = f.job.mutation_status(&receipt.id).unwrap();
        assert!(matches!(&status, MutationStatus::Done(r) if r.epoch == Epoch(2)), "{status:?}");
    }
    let unknown = keyfold_core::MutationId(keyfold_core::Hash([7; 32]));
    assert_eq!(f.job.mutation_status(&unknown).unwrap(), MutationStatus::Unknown);
}
