//! A queued mutation whose stored bytes changed after it was acknowledged is never applied or
//! signed: the queue stores the acknowledged mutation id with each entry and checks it on every
//! read, so the epoch job (at start, loading the pending set, and when it cuts) stops with a named
//! corruption error.

use keyfold_core::{Epoch, HashSuite, Mutation, SigningKey, Version};
use keyfold_epoch::{EpochError, EpochJob, HeadStore, ObjectArchives};
use keyfold_ingest::{Queue, QueueError};
use keyfold_map::{Map, TreeConfig};
use keyfold_redb::{RedbHeadStore, RedbOptions, RedbQueue, RedbQueueOptions, RedbStore};
use redb::{ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const ORIGIN: &str = "test.example/keyfold";
const T0: u64 = 1_000_000;
const VALUE: &[u8] = b"the value the client sent";

type DurableJob = EpochJob<RedbQueue, RedbStore, RedbHeadStore>;

fn open(dir: &Path) -> Result<DurableJob, EpochError> {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let options = RedbQueueOptions::new(config.suite);
    let queue = RedbQueue::open(&dir.join("queue.redb"), options)?;
    let map = Map::new(RedbStore::open(&dir.join("tree"), RedbOptions::new(config)).unwrap());
    let heads = RedbHeadStore::open(&dir.join("heads.redb")).unwrap();
    let archives = Arc::new(ObjectArchives::local(&dir.join("archives")).unwrap());
    EpochJob::open(queue, map, heads, archives, SigningKey::from_bytes(&[9; 32]), ORIGIN, T0)
}

/// Flips one bit inside `needle` wherever it is stored in the queue file's entries, keeping every
/// other byte: what a disk or an operator editing the file by hand could do.
fn flip_a_bit_of_the_stored_value(queue_file: &Path, needle: &[u8]) {
    const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
    let db = redb::Database::create(queue_file).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(QUEUE).unwrap();
        let entries: Vec<(u64, Vec<u8>)> =
            table.iter().unwrap().map(|e| e.unwrap()).map(|(k, v)| (k.value(), v.value().to_vec())).collect();
        let mut flipped = 0;
        for (position, mut bytes) in entries {
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                bytes[at + 4] ^= 0x01; // "the value" becomes "thd value"
                table.insert(position, bytes.as_slice()).unwrap();
                flipped += 1;
            }
        }
        assert_eq!(flipped, 1, "the test mutation is stored once");
    }
    txn.commit().unwrap();
}

#[test]
fn a_bit_flipped_in_a_queued_value_is_a_named_corruption_and_nothing_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let acknowledged = {
        let job = open(dir.path()).unwrap();
        let mutation = Mutation {
            key: b"alice@example.com".to_vec(),
            value: Some(VALUE.to_vec()),
            expected_version: Version(0),
            owner_signature: None,
        };
        job.submit(vec![mutation]).unwrap()[0]
    };
    flip_a_bit_of_the_stored_value(&dir.path().join("queue.redb"), VALUE);

    // Whether the start (loading the pending set) or the epoch's cut finds it, the result is the
    // same named error, and no head beyond genesis exists.
    let result = open(dir.path()).and_then(|job| job.run_epoch(T0 + 1_000));
    let err = result.expect_err("an epoch signed a value the client never sent");
    match &err {
        EpochError::Queue(QueueError::MutationIdMismatch { stored, .. }) => {
            assert_eq!(*stored, acknowledged.id, "the stored id is the acknowledged one")
        }
        other => panic!("expected a mutation id mismatch, got {other}"),
    }
    assert!(!err.is_retryable(), "corruption is fatal");
    assert!(err.to_string().contains("position"), "the message says where: {err}");
    let heads = RedbHeadStore::open(&dir.path().join("heads.redb")).unwrap();
    assert_eq!(heads.latest().unwrap().map(|(e, _)| e), Some(Epoch(0)), "no head was signed");
}

/// The queue itself refuses the entry on every read, whatever reads it (fsck's read-back too).
#[test]
fn the_queue_read_reports_the_mismatch_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let options = RedbQueueOptions::new(HashSuite::Blake3);
    let receipt = {
        let queue = RedbQueue::open(&path, options).unwrap();
        let m = Mutation {
            key: b"k".to_vec(),
            value: Some(VALUE.to_vec()),
            expected_version: Version(0),
            owner_signature: None,
        };
        queue.append(vec![m]).unwrap()[0]
    };
    flip_a_bit_of_the_stored_value(&path, VALUE);
    let queue = RedbQueue::open(&path, options).unwrap();
    let err = queue.read(keyfold_ingest::Position(0), 10).unwrap_err();
    let keyfold_ingest::Slot::Position(position) = receipt.slot else { panic!("redb numbers at append") };
    assert!(matches!(err, QueueError::MutationIdMismatch { position: p, .. } if p == position), "{err}");
}
