//! Every conformance suite against the memory stores.

mod tree {
    use keyfold_map::{MemoryStore, TreeConfig};
    fn make(config: TreeConfig) -> MemoryStore {
        MemoryStore::new(config)
    }
    keyfold_conformance::tree_conformance_tests!(make);
}

mod retention {
    use keyfold_map::{MemoryStore, TreeConfig};
    fn make(config: TreeConfig) -> MemoryStore {
        MemoryStore::new(config)
    }
    keyfold_conformance::retention_conformance_tests!(make);
}

mod queue {
    use keyfold_core::HashSuite;
    use keyfold_ingest::MemoryQueue;
    fn make(max_depth: u64, max_bytes: u64) -> MemoryQueue {
        MemoryQueue::bounded(HashSuite::Blake3, max_depth, max_bytes)
    }
    keyfold_conformance::queue_conformance_tests!(make);
}

mod heads {
    keyfold_conformance::heads_conformance_tests!(keyfold_epoch::MemoryHeadStore::default);
}

mod index {
    keyfold_conformance::index_conformance_tests!(keyfold_epoch::MemoryOutcomeIndex::default);
}

mod cosignatures {
    keyfold_conformance::cosignatures_conformance_tests!(keyfold_epoch::MemoryCosignatures::default);
}
