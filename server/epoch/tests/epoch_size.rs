//! Epoch size: a backlog larger than an epoch's caps ([`EpochLimits`]) drains over several epochs,
//! each consuming exactly the next mutations in queue order up to the caps, with the results of
//! an uncapped run split the same way; a crash at any point of a capped drain recovers to the
//! identical heads; a re-run after the caps were lowered makes progress.

use keyfold_archive::{ArchiveRow, read_archive};
use keyfold_core::{Epoch, HashSuite, Mutation, SigningKey, Version};
use keyfold_epoch::{
    CrashPoint, EpochJob, EpochLimits, EpochReport, HeadStore, MemoryArchives, MemoryHeadStore, ObjectArchives,
};
use keyfold_ingest::{Entry, MemoryQueue, Position, Queue, mutation_bytes};
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

fn config() -> TreeConfig {
    TreeConfig::new(HashSuite::Blake3, 4).unwrap()
}

type MemoryJob = EpochJob<MemoryQueue, MemoryStore, MemoryHeadStore>;
type DurableJob = EpochJob<RedbQueue, RedbStore, RedbHeadStore>;

fn memory_job(limits: EpochLimits) -> MemoryJob {
    let queue = MemoryQueue::new(config().suite, 1_000_000);
    let archives = Arc::new(MemoryArchives::default());
    let map = Map::new(MemoryStore::new(config()));
    EpochJob::open(queue, map, MemoryHeadStore::default(), archives, key(), ORIGIN, T0).unwrap().with_limits(limits)
}

fn durable_job(dir: &Path, limits: EpochLimits) -> DurableJob {
    let queue = RedbQueue::open(&dir.join("queue.redb"), RedbQueueOptions::new(config().suite)).unwrap();
    let map = Map::new(RedbStore::open(&dir.join("tree"), RedbOptions::new(config())).unwrap());
    let heads = RedbHeadStore::open(&dir.join("heads.redb")).unwrap();
    let archives = Arc::new(ObjectArchives::local(&dir.join("archives")).unwrap());
    EpochJob::open(queue, map, heads, archives, key(), ORIGIN, T0).unwrap().with_limits(limits)
}

fn m(key: u32, value: &str, expected: u64) -> Mutation {
    Mutation {
        key: format!("user{key}@example.com").into_bytes(),
        value: Some(value.as_bytes().to_vec()),
        expected_version: Version(expected),
        owner_signature: None,
    }
}

/// 100 mutations: 90 new keys, then 10 updates of keys 0..10 whose first writes are 90 positions
/// earlier (so compare-and-set must see the earlier epochs' results), one of them stale.
fn backlog() -> Vec<Mutation> {
    let mut ms: Vec<Mutation> = (0..90).map(|i| m(i, "v1", 0)).collect();
    ms.extend((0..9).map(|i| m(i, "v2", 1)));
    ms.push(m(9, "stale", 0));
    ms
}

const CAP: EpochLimits = EpochLimits { max_mutations: 40, max_bytes: u64::MAX };

/// An epoch's mutation ids and outcomes, and its archive rows without their queue positions
/// (which depend on where markers fell).
fn substance(report: &EpochReport, rows: Vec<ArchiveRow>) -> (Vec<(String, Outcome)>, Vec<ArchiveRow>) {
    let outcomes = report.outcomes.iter().map(|o| (o.id.to_hex(), o.outcome.clone())).collect();
    let rows = rows.into_iter().map(|r| ArchiveRow { position: 0, ..r }).collect();
    (outcomes, rows)
}

fn archive_rows(job: &MemoryJob, epoch: Epoch) -> Vec<ArchiveRow> {
    read_archive(&job.archives().get(epoch).unwrap().unwrap()).unwrap()
}

#[test]
fn a_backlog_larger_than_the_cap_drains_over_several_epochs_like_an_uncapped_run_split_the_same_way() {
    let capped = memory_job(CAP);
    let receipts = capped.queue().append(backlog()).unwrap();
    let mut reports = Vec::new();
    for (i, expected) in [40usize, 40, 20].into_iter().enumerate() {
        let report = capped.run_epoch(T0 + 1_000 * (i as u64 + 1)).unwrap();
        assert_eq!(report.outcomes.len(), expected, "epoch {}", i + 1);
        assert_eq!(report.capped, i < 2, "epoch {}: capped", i + 1);
        // Exactly the next mutations in queue order.
        let first = reports.iter().map(|r: &EpochReport| r.outcomes.len()).sum::<usize>();
        let ids: Vec<_> = report.outcomes.iter().map(|o| (o.position, o.id)).collect();
        let wanted: Vec<_> = receipts[first..first + expected]
            .iter()
            .map(|r| match r.slot {
                keyfold_ingest::Slot::Position(p) => (p, r.id),
                keyfold_ingest::Slot::Versionstamp(_) => unreachable!("the memory queue numbers at append"),
            })
            .collect();
        assert_eq!(ids, wanted, "epoch {}", i + 1);
        reports.push(report);
    }
    assert_eq!(capped.queue().depth(), 0, "drained");
    // Epoch 3: keys 80..90, then the updates of keys written two epochs before, the last stale.
    assert!(matches!(reports[2].outcomes[19].outcome, Outcome::Rejected(_)), "the stale write, two epochs on");
    let updates = &reports[2].outcomes[10..19];
    assert!(updates.iter().all(|o| matches!(o.outcome, Outcome::Applied { version: Version(2), .. })));
    // The markers the capped cuts left behind were skipped and removed: a heartbeat follows.
    let heartbeat = capped.run_epoch(T0 + 10_000).unwrap();
    assert_eq!(heartbeat.head.counts.mutations, 0);
    let left = capped.queue().read(Position(0), 100).unwrap();
    assert!(left.iter().all(|(_, e)| matches!(e, Entry::Marker(_))) && left.len() <= 1, "{left:?}");

    // The same mutations, appended in the same groups with an uncapped epoch after each.
    let uncapped = memory_job(EpochLimits::UNLIMITED);
    let mut rest = backlog();
    for (i, n) in [40usize, 40, 20].into_iter().enumerate() {
        let group: Vec<Mutation> = rest.drain(..n).collect();
        uncapped.queue().append(group).unwrap();
        let report = uncapped.run_epoch(T0 + 1_000 * (i as u64 + 1)).unwrap();
        let epoch = Epoch(i as u64 + 1);
        let capped_report = &reports[i];
        assert_eq!(report.head.root, capped_report.head.root, "epoch {epoch}: root");
        assert_eq!(report.head.counts, capped_report.head.counts, "epoch {epoch}: counts");
        assert_eq!(report.head.time_ms, capped_report.head.time_ms);
        assert_eq!(
            substance(&report, archive_rows(&uncapped, epoch)),
            substance(capped_report, archive_rows(&capped, epoch)),
            "epoch {epoch}: outcomes and archive rows"
        );
    }
}

#[test]
fn the_byte_cap_bounds_each_epoch_and_a_single_larger_mutation_still_goes_through() {
    let big = |i: u32, len: usize| Mutation { value: Some(vec![7; len]), ..m(i, "", 0) };
    let size = mutation_bytes(&big(0, 100));
    let job = memory_job(EpochLimits { max_mutations: u64::MAX, max_bytes: 3 * size });
    job.queue().append((0..7).map(|i| big(i, 100)).collect()).unwrap();
    job.queue().append(vec![big(100, 10_000), big(101, 100)]).unwrap();
    let mut sizes = Vec::new();
    let mut bytes = Vec::new();
    while job.queue().depth() > 0 {
        let report = job.run_epoch(T0 + 1_000 * (sizes.len() as u64 + 1)).unwrap();
        assert!(report.input_bytes <= 3 * size || report.outcomes.len() == 1, "{}", report.input_bytes);
        sizes.push(report.outcomes.len());
        bytes.push(report.input_bytes);
        assert!(sizes.len() < 10, "the backlog must drain");
    }
    assert_eq!(sizes, vec![3, 3, 1, 1, 1], "3 per epoch; the big one alone");
    assert_eq!(bytes[3], mutation_bytes(&big(100, 10_000)));
}

/// The reference: a capped drain of the backlog, with more mutations appended after epoch 2.
fn capped_drain(dir: &Path, crash: Option<CrashPoint>) -> Vec<String> {
    let limits = EpochLimits { max_mutations: 30, max_bytes: u64::MAX };
    {
        let job = durable_job(dir, limits);
        job.queue().append(backlog()).unwrap();
        job.run_epoch(T0 + 1_000).unwrap();
        if let Some(point) = crash {
            job.run_until(T0 + 2_000, point).unwrap();
        } else {
            job.run_epoch(T0 + 2_000).unwrap();
        }
        // Arrives after epoch 2's cut, whether or not its run finished: never part of epoch 2.
        job.queue().append((200..215).map(|i| m(i, "late", 0)).collect()).unwrap();
    } // the process "dies": every store is dropped and reopened below
    let job = durable_job(dir, limits);
    if job.heads().get(Epoch(2)).unwrap().is_none() {
        let report = job.run_epoch(T0 + 99_999).unwrap(); // the re-run's clock differs
        assert_eq!(report.outcomes.len(), 30, "{crash:?}: the re-run consumes the recorded cut");
    }
    let mut now = T0 + 3_000;
    while job.queue().depth() > 0 {
        job.run_epoch(now).unwrap();
        now += 1_000;
    }
    let (latest, _) = job.heads().latest().unwrap().unwrap();
    assert_eq!(latest, Epoch(4), "{crash:?}: 115 mutations in epochs of 30");
    (1..=latest.0).map(|e| job.heads().get(Epoch(e)).unwrap().unwrap()).collect()
}

#[test]
fn a_crash_at_every_point_of_a_capped_drain_recovers_to_the_identical_heads() {
    let reference = tempfile::tempdir().unwrap();
    let expected = capped_drain(reference.path(), None);
    for point in CrashPoint::ALL {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(capped_drain(dir.path(), Some(point)), expected, "{point:?}");
    }
}

/// An epoch that died of its size (its cut durable) restarts with lower caps: before the map took
/// the epoch it is cut again at the new caps (keeping its time); after, it is finished as cut.
#[test]
fn a_rerun_after_the_caps_were_lowered_makes_progress() {
    let (wide, narrow) = (
        EpochLimits { max_mutations: 40, max_bytes: u64::MAX },
        EpochLimits { max_mutations: 10, max_bytes: u64::MAX },
    );
    for (point, expected) in [
        (CrashPoint::AfterRead, 10),
        (CrashPoint::AfterApply, 10),
        (CrashPoint::AfterArchiveWrite, 10),
        (CrashPoint::AfterNodeWrite, 40),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let marker_time = {
            let job = durable_job(dir.path(), wide);
            job.queue().append(backlog()).unwrap();
            job.run_until(T0 + 1_000, point).unwrap();
            job.queue().last_marker().unwrap().unwrap().1.time_ms
        };
        let job = durable_job(dir.path(), narrow);
        let report = job.run_epoch(T0 + 50_000).unwrap();
        assert_eq!((report.head.epoch, report.outcomes.len()), (Epoch(1), expected), "{point:?}");
        assert_eq!(report.head.time_ms, marker_time, "{point:?}: the epoch keeps the time it was first cut at");
        let mut epochs = 1;
        while job.queue().depth() > 0 {
            let next = job.run_epoch(T0 + 60_000 + epochs).unwrap();
            assert!(next.outcomes.len() <= 10, "{point:?}");
            epochs += 1;
        }
        let applied: u64 = (1..=epochs)
            .map(|e| {
                let note = job.heads().get(Epoch(e)).unwrap().unwrap();
                keyfold_core::verify_head_note(&note, ORIGIN, &key().verifying_key().to_bytes())
                    .unwrap()
                    .counts
                    .mutations
            })
            .sum();
        assert_eq!(applied, 100, "{point:?}: every mutation consumed exactly once");
    }
}
