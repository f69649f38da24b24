//! The epoch job end to end on the durable embedded stores: crash recovery at every durability
//! step, determinism across thread counts, the head chain, heartbeats and clock safety.

use keyfold_core::{Epoch, HashSuite, Mutation, SigningKey, Version, verify_head_note};
use keyfold_epoch::{CrashPoint, EpochJob, HeadStore, MemoryArchives, MemoryHeadStore, ObjectArchives};
use keyfold_ingest::{MemoryQueue, Queue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use keyfold_redb::{RedbHeadStore, RedbOptions, RedbQueue, RedbQueueOptions, RedbStore};
use keyfold_verify::Outcome;
use std::path::Path;
use std::sync::Arc;

const ORIGIN: &str = "test.example/keyfold";
const T0: u64 = 1_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

type DurableJob = EpochJob<RedbQueue, RedbStore, RedbHeadStore>;
type MemoryJob = EpochJob<MemoryQueue, MemoryStore, MemoryHeadStore>;

/// A job over memory stores with the test key, origin and genesis time.
fn memory_job(config: TreeConfig, max_depth: u64) -> MemoryJob {
    let queue = MemoryQueue::new(config.suite, max_depth);
    let archives = Arc::new(MemoryArchives::default());
    EpochJob::open(queue, Map::new(MemoryStore::new(config)), MemoryHeadStore::default(), archives, key(), ORIGIN, T0)
        .unwrap()
}

fn open(dir: &Path) -> DurableJob {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let queue = RedbQueue::open(&dir.join("queue.redb"), RedbQueueOptions::new(config.suite)).unwrap();
    let map = Map::new(RedbStore::open(&dir.join("tree"), RedbOptions::new(config)).unwrap());
    let heads = RedbHeadStore::open(&dir.join("heads.redb")).unwrap();
    let archives = Arc::new(ObjectArchives::local(&dir.join("archives")).unwrap());
    EpochJob::open(queue, map, heads, archives, key(), ORIGIN, T0).unwrap()
}

fn m(key: u32, value: Option<&str>, expected: u64) -> Mutation {
    Mutation {
        key: format!("user{key}@example.com").into_bytes(),
        value: value.map(|v| v.as_bytes().to_vec()),
        expected_version: Version(expected),
        owner_signature: None,
    }
}

/// Epoch 1: 200 new keys. Epoch 2: updates, a stale write, a duplicate, a delete, new keys.
fn epoch1() -> Vec<Mutation> {
    (0..200).map(|i| m(i, Some("v1"), 0)).collect()
}

fn epoch2() -> Vec<Mutation> {
    let mut ms: Vec<Mutation> = (0..50).map(|i| m(i, Some("v2"), 1)).collect();
    ms.push(m(3, Some("stale"), 1));
    ms.push(m(60, None, 1));
    ms.push(ms[0].clone());
    ms.extend((300..320).map(|i| m(i, Some("new"), 0)));
    ms
}

fn append_each(queue: &impl Queue, ms: Vec<Mutation>) -> Vec<keyfold_ingest::Receipt> {
    ms.chunks(7).flat_map(|c| queue.append(c.to_vec()).unwrap()).collect()
}

#[test]
fn every_crash_point_recovers_to_the_identical_head() {
    let reference = tempfile::tempdir().unwrap();
    let (note1, note2) = {
        let job = open(reference.path());
        append_each(job.queue(), epoch1());
        let r1 = job.run_epoch(2_000_000).unwrap();
        append_each(job.queue(), epoch2());
        let r2 = job.run_epoch(3_000_000).unwrap();
        assert_eq!(r2.head.counts.mutations, 73);
        assert_eq!((r2.head.counts.applied, r2.head.counts.rejected, r2.head.counts.duplicates), (71, 1, 1));
        (r1.note, r2.note)
    };
    for point in CrashPoint::ALL {
        let dir = tempfile::tempdir().unwrap();
        let acknowledged = {
            let job = open(dir.path());
            append_each(job.queue(), epoch1());
            assert_eq!(job.run_epoch(2_000_000).unwrap().note, note1);
            let receipts = append_each(job.queue(), epoch2());
            job.run_until(3_000_000, point).unwrap();
            receipts
        }; // the process "dies": every store is dropped and reopened below
        let job = open(dir.path());
        let stored = job.heads().get(Epoch(2)).unwrap();
        let note = match stored {
            Some(note) => {
                assert!(matches!(point, CrashPoint::AfterHeadWrite | CrashPoint::AfterCursorAdvance), "{point:?}");
                assert_eq!(job.queue().depth(), 0, "{point:?}: open removes what the committed epoch consumed");
                note
            }
            None => {
                // The re-run's clock differs; the epoch time comes from the durable marker.
                let report = job.run_epoch(9_999_999).unwrap();
                let positions: Vec<_> = report.outcomes.iter().map(|o| (o.position, o.id)).collect();
                for r in &acknowledged {
                    let keyfold_ingest::Slot::Position(position) = r.slot else { panic!("redb numbers at append") };
                    assert!(positions.contains(&(position, r.id)), "{point:?}: acknowledged mutation lost");
                }
                report.note
            }
        };
        assert_eq!(note, note2, "{point:?}: the recovered head differs");
        // The archive the head signs is there, byte-identical to the reference run's.
        let bytes = job.archives().get(Epoch(2)).unwrap().expect("archive of epoch 2");
        let head = verify_head_note(&note, ORIGIN, &key().verifying_key().to_bytes()).unwrap();
        assert_eq!(HashSuite::Blake3.archive_digest(&bytes), head.archive, "{point:?}: archive digest");
        assert_eq!(keyfold_archive::read_archive(&bytes).unwrap().len(), 73);
        // And the directory goes on: the next epoch chains onto the recovered head.
        let next = job.run_epoch(4_000_000).unwrap();
        assert_eq!(
            next.head.previous,
            verify_head_note(&note2, ORIGIN, &key().verifying_key().to_bytes()).unwrap().hash()
        );
    }
}

#[test]
fn identical_heads_for_every_pool_size() {
    let mut notes = Vec::new();
    for threads in [1usize, 2, 4, 8] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let note = pool.install(|| {
            let config = TreeConfig::new(HashSuite::Sha256, 6).unwrap();
            let job = memory_job(config, 1_000_000);
            job.queue().append((0..3000).map(|i| m(i, Some("x"), 0)).collect()).unwrap();
            job.run_epoch(2_000_000).unwrap();
            job.queue().append((0..3000).step_by(3).map(|i| m(i, Some("y"), 1)).collect()).unwrap();
            job.run_epoch(3_000_000).unwrap().note
        });
        notes.push(note);
    }
    assert!(notes.windows(2).all(|w| w[0] == w[1]), "head bytes depend on the thread count");
}

#[test]
fn chain_heartbeats_clock_safety_and_proofs() {
    let config = TreeConfig::new(HashSuite::Blake3, 8).unwrap();
    let job = memory_job(config, 1000);
    let public = key().verifying_key().to_bytes();
    let genesis = verify_head_note(&job.heads().get(Epoch(0)).unwrap().unwrap(), ORIGIN, &public).unwrap();
    job.queue().append(vec![m(1, Some("a"), 0), m(2, Some("b"), 0)]).unwrap();
    let e1 = job.run_epoch(T0 + 10).unwrap();
    let heartbeat = job.run_epoch(T0 + 5).unwrap(); // the wall clock went backwards
    job.queue().append(vec![m(1, None, 1)]).unwrap();
    let e3 = job.run_epoch(T0).unwrap();
    let heads = [genesis, e1.head.clone(), heartbeat.head.clone(), e3.head.clone()];
    for pair in heads.windows(2) {
        assert_eq!(pair[1].previous, pair[0].hash(), "each head links the previous one");
        assert_eq!(pair[1].epoch, pair[0].epoch.next());
        assert!(pair[1].time_ms > pair[0].time_ms, "epoch times strictly increase");
    }
    assert_eq!(heartbeat.head.counts.mutations, 0);
    assert_eq!(heartbeat.head.root, e1.head.root, "a heartbeat keeps the root");
    assert!(matches!(e3.outcomes[0].outcome, Outcome::Applied { version: Version(2), .. }));
    // Lookups prove against the signed roots.
    for (epoch, expected) in [(Epoch(1), Some(Some(b"a".to_vec()))), (Epoch(3), Some(None))] {
        let head = verify_head_note(&job.heads().get(epoch).unwrap().unwrap(), ORIGIN, &public).unwrap();
        let index = config.suite.index_of(b"user1@example.com");
        let lookup = job.map().lookup(&index, epoch).unwrap();
        assert_eq!(lookup.value.as_ref().map(|v| v.value.clone()), expected);
        let root = keyfold_core::MapRoot { epoch, hash: head.root };
        lookup.proof.verify(config.suite, &root, b"user1@example.com", lookup.value.as_ref()).unwrap();
    }
    // A second head for an existing epoch is refused.
    assert!(job.heads().commit(Epoch(2), &e1.note, keyfold_ingest::Position(0)).is_err());
}

/// Epoch times never go backwards across restarts, even when the wall clock does: the time comes
/// from the durable previous head (and, for an epoch whose marker was already cut, from the
/// marker), never from the clock alone.
#[test]
fn clock_safety_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let public = key().verifying_key().to_bytes();
    let time_of = |job: &DurableJob, epoch: u64| {
        let note = job.heads().get(Epoch(epoch)).unwrap().unwrap();
        verify_head_note(&note, ORIGIN, &public).unwrap().time_ms
    };
    let late = T0 + 3_600_000;
    {
        let job = open(dir.path());
        job.queue().append(vec![m(1, Some("a"), 0)]).unwrap();
        job.run_epoch(late).unwrap();
    }
    // Restarted with the clock an hour behind: the next epoch is still later than the last.
    {
        let job = open(dir.path());
        job.queue().append(vec![m(2, Some("b"), 0)]).unwrap();
        let report = job.run_epoch(T0).unwrap();
        assert_eq!(report.head.time_ms, late + 1, "strictly after the durable previous head");
        // Dies after cutting epoch 3's marker (the marker holds its time)...
        job.queue().append(vec![m(3, Some("c"), 0)]).unwrap();
        job.run_until(late + 50, CrashPoint::AfterRead).unwrap();
    }
    // ...and restarts with the clock further back: the re-run keeps the marker's time.
    let job = open(dir.path());
    let report = job.run_epoch(T0 - 1_000).unwrap();
    assert_eq!(report.head.epoch, Epoch(3));
    assert_eq!(report.head.time_ms, late + 50, "the re-run signs the time its marker recorded");
    let times: Vec<u64> = (0..=3).map(|e| time_of(&job, e)).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "times strictly increase: {times:?}");
}

/// The scheduler cuts an epoch once mutations wait `interval_min`, signs heartbeats after
/// `interval_max`, honours the operator trigger, and stops when asked.
#[test]
fn scheduler_runs_epochs_heartbeats_and_triggers() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = memory_job(config, 1000);
    // A manual clock: each test step advances it explicitly, so timing is deterministic.
    let clock = AtomicU64::new(T0);
    let (trigger, stop) = (AtomicBool::new(false), AtomicBool::new(false));
    let schedule = keyfold_epoch::Schedule { interval_min_ms: 100, interval_max_ms: 10_000 };
    let wait_for = |epoch: u64| {
        for _ in 0..2000 {
            if job.latest_head().unwrap().epoch.0 >= epoch {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("epoch {epoch} never came");
    };
    std::thread::scope(|s| {
        let runner = s.spawn(|| {
            let options = keyfold_epoch::SchedulerOptions {
                schedule,
                poll: Duration::from_millis(1),
                backoff: keyfold_epoch::Backoff::new(Duration::from_millis(1), Duration::from_millis(10), 1),
            };
            let health = keyfold_epoch::SchedulerHealth::default();
            keyfold_epoch::run_scheduler(&job, &options, &|| clock.load(Ordering::SeqCst), &trigger, &stop, &health)
        });
        job.queue().append(vec![m(1, Some("a"), 0)]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(job.latest_head().unwrap().epoch, Epoch(0), "not before interval_min");
        clock.fetch_add(100, Ordering::SeqCst);
        wait_for(1);
        assert_eq!(job.latest_head().unwrap().counts.applied, 1);
        clock.fetch_add(10_000, Ordering::SeqCst); // idle past interval_max: a heartbeat
        wait_for(2);
        assert_eq!(job.latest_head().unwrap().counts.mutations, 0);
        trigger.store(true, Ordering::SeqCst); // the operator's "epoch now"
        wait_for(3);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(runner.join().unwrap().unwrap(), 3);
    });
}
