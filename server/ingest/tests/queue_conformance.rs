//! The queue conformance suite against the memory queue (the redb queue runs it in keyfold-redb).
use keyfold_core::HashSuite;
use keyfold_ingest::{MemoryQueue, queue_conformance_tests};

fn make(max_depth: u64, max_bytes: u64) -> MemoryQueue {
    MemoryQueue::bounded(HashSuite::Blake3, max_depth, max_bytes)
}

queue_conformance_tests!(make);
