//! Retention (SPEC section 4.3): with a window of W epochs, after each epoch the map keeps the
//! last W roots (lookups before them are refused as pruned), the archives and proofs before the
//! oldest kept root are deleted (or kept with `keep_archives`), and the kept epochs still audit
//! from their proofs; a durable job reopened on the same files keeps pruning where it stopped.

use keyfold_core::{Epoch, FlatEpochProof, HashSuite, Head, Mutation, SigningKey, Version};
use keyfold_epoch::{
    EpochError, EpochJob, HeadStore, MemoryArchives, MemoryHeadStore, MemoryOutcomeIndex, ObjectArchives, Retention,
};
use keyfold_ingest::{MemoryQueue, Queue};
use keyfold_map::{Map, MemoryStore, TreeConfig, TreeError, TreeStore};
use keyfold_redb::{RedbHeadStore, RedbOptions, RedbQueue, RedbQueueOptions, RedbStore};
use std::path::Path;
use std::sync::Arc;

const ORIGIN: &str = "test.example/keyfold";
const T0: u64 = 1_000_000;

fn config() -> TreeConfig {
    TreeConfig::new(HashSuite::Blake3, 4).unwrap()
}

fn m(key: u32, value: String, expected: u64) -> Mutation {
    Mutation {
        key: format!("user{key}@example.com").into_bytes(),
        value: Some(value.into_bytes()),
        expected_version: Version(expected),
        owner_signature: None,
    }
}

/// Epoch `e` (1-based) sets keys 0..20 to version `e` and adds key 100 + e.
fn epoch_mutations(e: u32) -> Vec<Mutation> {
    let mut ms: Vec<Mutation> = (0..20).map(|k| m(k, format!("v{e}"), u64::from(e) - 1)).collect();
    ms.push(m(100 + e, "new".into(), 0));
    ms
}

fn run<Q: Queue, S: TreeStore, H: HeadStore>(job: &EpochJob<Q, S, H>, epochs: std::ops::RangeInclusive<u32>) {
    for e in epochs {
        job.queue().append(epoch_mutations(e)).unwrap();
        let report = job.run_epoch(T0 + u64::from(e) * 1000).unwrap();
        assert_eq!(report.head.counts.rejected, 0);
    }
}

fn head<Q: Queue, S: TreeStore, H: HeadStore>(job: &EpochJob<Q, S, H>, epoch: u64) -> Head {
    let note = job.heads().get(Epoch(epoch)).unwrap().unwrap();
    keyfold_core::verify_head_note(&note, ORIGIN, &job.public_key()).unwrap()
}

fn memory_job(retention: Retention) -> EpochJob<MemoryQueue, MemoryStore, MemoryHeadStore> {
    let queue = MemoryQueue::new(config().suite, 1_000_000);
    let map = Map::new(MemoryStore::new(config()));
    let archives = Arc::new(MemoryArchives::default());
    let key = SigningKey::from_bytes(&[9; 32]);
    EpochJob::open(queue, map, MemoryHeadStore::default(), archives, key, ORIGIN, T0)
        .and_then(|job| job.with_index(Arc::new(MemoryOutcomeIndex::default())))
        .unwrap()
        .with_retention(retention)
        .unwrap()
}

#[test]
fn the_window_keeps_the_last_epochs_and_deletes_older_archives() {
    let job = memory_job(Retention { epochs: 3, keep_archives: false });
    run(&job, 1..=7);
    assert_eq!(job.oldest_epoch().unwrap(), Epoch(5), "epochs 5, 6, 7 are kept");
    let index = HashSuite::Blake3.index_of(b"user3@example.com");
    let pruned = job.map().lookup(&index, Epoch(4));
    assert!(matches!(pruned, Err(TreeError::EpochPruned { requested: Epoch(4), oldest: Epoch(5) })), "{pruned:?}");
    for e in 5..=7u64 {
        let found = job.map().lookup(&index, Epoch(e)).unwrap();
        assert_eq!(found.value.unwrap().version, Version(e), "epoch {e} reads as it did");
    }
    for e in 1..=4 {
        assert!(job.archives().get(Epoch(e)).unwrap().is_none(), "epoch {e}'s archive is outside the window");
        assert!(job.archives().get_proof(Epoch(e)).unwrap().is_none(), "epoch {e}'s proof is outside the window");
    }
    for e in 5..=7u64 {
        let archive = job.archives().get(Epoch(e)).unwrap().expect("kept archive");
        let proof = FlatEpochProof::decode(&job.archives().get_proof(Epoch(e)).unwrap().expect("kept proof")).unwrap();
        keyfold_verify::audit_epoch(&head(&job, e - 1), &head(&job, e), archive, &proof).unwrap();
    }
    // History and mutation status are kept whole (the index).
    let history = job.key_history(&index, keyfold_epoch::HistoryAfter::default(), 100).unwrap().unwrap();
    assert_eq!(history.len(), 7, "every version of the key, the pruned epochs' included");
}

#[test]
fn keep_archives_leaves_them_to_a_lifecycle_rule() {
    let job = memory_job(Retention { epochs: 2, keep_archives: true });
    run(&job, 1..=5);
    assert_eq!(job.oldest_epoch().unwrap(), Epoch(4));
    for e in 1..=5 {
        assert!(job.archives().get(Epoch(e)).unwrap().is_some(), "epoch {e}'s archive is kept");
    }
}

#[test]
fn a_window_of_zero_epochs_is_refused() {
    let queue = MemoryQueue::new(config().suite, 1_000);
    let map = Map::new(MemoryStore::new(config()));
    let key = SigningKey::from_bytes(&[9; 32]);
    let job =
        EpochJob::open(queue, map, MemoryHeadStore::default(), Arc::new(MemoryArchives::default()), key, ORIGIN, T0)
            .unwrap();
    let refused = job.with_retention(Retention { epochs: 0, keep_archives: false });
    assert!(matches!(refused, Err(EpochError::Tree(TreeError::InvalidConfig(_)))), "{:?}", refused.err());
}

fn durable_job(dir: &Path) -> EpochJob<RedbQueue, RedbStore, RedbHeadStore> {
    let queue = RedbQueue::open(&dir.join("queue.redb"), RedbQueueOptions::new(config().suite)).unwrap();
    let map = Map::new(RedbStore::open(&dir.join("tree"), RedbOptions::new(config())).unwrap());
    let heads = RedbHeadStore::open(&dir.join("heads.redb")).unwrap();
    let archives = Arc::new(ObjectArchives::local(&dir.join("archives")).unwrap());
    let key = SigningKey::from_bytes(&[9; 32]);
    EpochJob::open(queue, map, heads, archives, key, ORIGIN, T0)
        .unwrap()
        .with_retention(Retention { epochs: 2, keep_archives: false })
        .unwrap()
}

#[test]
fn a_reopened_durable_job_prunes_on_and_every_kept_epoch_reads_as_signed() {
    let dir = tempfile::tempdir().unwrap();
    run(&durable_job(dir.path()), 1..=6);
    let job = durable_job(dir.path());
    assert_eq!(job.oldest_epoch().unwrap(), Epoch(5));
    run(&job, 7..=12);
    assert_eq!(job.oldest_epoch().unwrap(), Epoch(11));
    for e in 11..=12u64 {
        assert_eq!(job.map().root(Epoch(e)).unwrap().hash, head(&job, e).root, "epoch {e}'s root is the signed one");
    }
    let leaves = job.map().check_all(Epoch(12)).unwrap();
    assert_eq!(leaves, 20 + 12, "every record of the latest tree reads back");
    let files = std::fs::read_dir(dir.path().join("archives")).unwrap().count();
    assert_eq!(files, 4, "the archives and proofs of epochs 11 and 12 only");
}

#[test]
fn a_new_index_over_deleted_archives_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    run(&durable_job(dir.path()), 1..=5);
    let refused = durable_job(dir.path()).with_index(Arc::new(MemoryOutcomeIndex::default()));
    let Err(error) = refused else { panic!("epoch 1's archive is gone: the index cannot be rebuilt") };
    let message = error.to_string();
    assert!(message.contains("retention window deleted"), "{message}");
}
