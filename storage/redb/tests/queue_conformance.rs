//! The queue conformance suite against the redb queue.
use keyfold_core::HashSuite;
use keyfold_ingest::queue_conformance_tests;
use keyfold_redb::{RedbQueue, RedbQueueOptions};

fn make(max_depth: u64, max_bytes: u64) -> RedbQueue {
    // The directory must outlive the queue; it is left to the OS temp dir cleaner.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    RedbQueue::open(&dir.join("queue.redb"), RedbQueueOptions { suite: HashSuite::Sha256, max_depth, max_bytes })
        .expect("open")
}

queue_conformance_tests!(make);
