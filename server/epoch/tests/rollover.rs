//! Key rollover in the epoch job (SPEC section 6.6), on the durable embedded stores and real key
//! files: `rotate-key`'s staged key is announced by the next head under the current key, the job
//! hands over after that head is committed (also when the process died in between), signs with
//! the new key from then on, and a replay from genesis with the first key verifies it all.

use keyfold_core::{Epoch, HashSuite, Mutation, Version, verify_head_note};
use keyfold_epoch::{
    ArchiveSink, CrashPoint, EpochJob, HeadStore, KEY_HISTORY_FILE, KeyFiles, NEXT_KEY_FILE, ObjectArchives,
    PUBLIC_KEY_FILE, SIGNING_KEY_FILE, generate_key_files, load_public_key,
};
use keyfold_ingest::Queue;
use keyfold_map::{Map, TreeConfig};
use keyfold_redb::{RedbHeadStore, RedbOptions, RedbQueue, RedbQueueOptions, RedbStore};
use keyfold_verify::Replayer;
use std::path::Path;
use std::sync::Arc;

const ORIGIN: &str = "test.example/keyfold";
const SHARD_BITS: u8 = 4;

type DurableJob = EpochJob<RedbQueue, RedbStore, RedbHeadStore>;

fn open(dir: &Path) -> Result<DurableJob, keyfold_epoch::EpochError> {
    let config = TreeConfig::new(HashSuite::Blake3, SHARD_BITS).unwrap();
    let queue = RedbQueue::open(&dir.join("queue.redb"), RedbQueueOptions::new(config.suite)).unwrap();
    let map = Map::new(RedbStore::open(&dir.join("tree"), RedbOptions::new(config)).unwrap());
    let heads = RedbHeadStore::open(&dir.join("heads.redb")).unwrap();
    let archives = Arc::new(ObjectArchives::local(&dir.join("archives")).unwrap());
    EpochJob::open(queue, map, heads, archives, KeyFiles::new(dir).load()?, ORIGIN, 1_000_000)
}

fn mutations(epoch: u32) -> Vec<Mutation> {
    (0..20)
        .map(|i| Mutation {
            key: format!("user{i}@example.com").into_bytes(),
            value: Some(format!("v{epoch}").into_bytes()),
            expected_version: Version(u64::from(epoch - 1)),
            owner_signature: None,
        })
        .collect()
}

fn epoch(job: &DurableJob, n: u32) -> String {
    job.queue().append(mutations(n)).unwrap();
    job.run_epoch(1_000_000 + u64::from(n) * 1000).unwrap().note
}

#[test]
fn a_rollover_is_announced_handed_over_after_a_crash_and_replays_from_the_first_key() {
    let dir = tempfile::tempdir().unwrap();
    let first = generate_key_files(&dir.path().join(SIGNING_KEY_FILE), &dir.path().join(PUBLIC_KEY_FILE)).unwrap();
    let next = {
        let job = open(dir.path()).unwrap();
        epoch(&job, 1);
        // `keyfold rotate-key` while the job runs: the next head announces the staged key.
        let next = KeyFiles::new(dir.path()).stage_next().unwrap();
        job.queue().append(mutations(2)).unwrap();
        job.run_until(1_002_000, CrashPoint::AfterHeadWrite).unwrap();
        next
    }; // the process dies after the announcing head's commit, before the hand-over
    let stored = |job: &DurableJob, e: u64| job.heads().get(Epoch(e)).unwrap().unwrap();

    // Without the staged key the job refuses: signing on with the old key would fork.
    let staged = dir.path().join(NEXT_KEY_FILE);
    std::fs::rename(&staged, dir.path().join("moved.key")).unwrap();
    let refused = open(dir.path()).unwrap_err().to_string();
    assert!(refused.contains(NEXT_KEY_FILE), "{refused}");
    std::fs::rename(dir.path().join("moved.key"), &staged).unwrap();

    let job = open(dir.path()).unwrap();
    assert_eq!(job.public_key(), next.to_bytes(), "the start completed the hand-over");
    assert_eq!(load_public_key(&dir.path().join(PUBLIC_KEY_FILE)).unwrap(), next.to_bytes());
    assert_eq!(KeyFiles::new(dir.path()).history().unwrap(), vec![first]);
    assert!(!staged.exists());
    assert_eq!(job.rollovers(), vec![Epoch(2)]);
    let announcement = verify_head_note(&stored(&job, 2), ORIGIN, &first.to_bytes()).unwrap();
    assert_eq!(announcement.next_key, Some(next));
    let after = epoch(&job, 3);
    assert!(verify_head_note(&after, ORIGIN, &first.to_bytes()).is_err(), "the old key signs no more");
    assert_eq!(verify_head_note(&after, ORIGIN, &next.to_bytes()).unwrap().next_key, None);
    drop(job);

    // A restart after the hand-over verifies the announcement with the key before.
    let job = open(dir.path()).unwrap();
    epoch(&job, 4);
    let mut replayer = Replayer::from_genesis(&stored(&job, 0), ORIGIN, &first.to_bytes(), SHARD_BITS).unwrap();
    for e in 1..=4 {
        let archive = ArchiveSink::get(job.archives(), Epoch(e)).unwrap().unwrap();
        replayer.replay(&stored(&job, e), archive).unwrap();
    }
    assert_eq!(replayer.chain().next_signer(), next.to_bytes());
    assert!(dir.path().join(KEY_HISTORY_FILE).exists());
}
