//! The conformance suite against the in-memory store.
use keyfold_map::{MemoryStore, TreeConfig, conformance_tests};

fn make(config: TreeConfig) -> MemoryStore {
    MemoryStore::new(config)
}

conformance_tests!(make);
