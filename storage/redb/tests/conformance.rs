//! Every conformance suite against the redb stores, plus what only the embedded store offers.

// The directories must outlive the stores; tests are short, so they are left to the OS temp dir.
fn dir() -> std::path::PathBuf {
    tempfile::tempdir().expect("temp dir").keep()
}

mod tree {
    use keyfold_map::TreeConfig;
    use keyfold_redb::{RedbOptions, RedbStore};
    fn make(config: TreeConfig) -> RedbStore {
        RedbStore::open(&super::dir(), RedbOptions { cache_size_bytes: 16 << 20, ..RedbOptions::new(config) })
            .expect("open")
    }
    keyfold_conformance::tree_conformance_tests!(make);
}

mod retention {
    use keyfold_map::TreeConfig;
    use keyfold_redb::{RedbOptions, RedbStore};
    fn make(config: TreeConfig) -> RedbStore {
        RedbStore::open(&super::dir(), RedbOptions { cache_size_bytes: 16 << 20, ..RedbOptions::new(config) })
            .expect("open")
    }
    keyfold_conformance::retention_conformance_tests!(make);
}

mod queue {
    use keyfold_core::HashSuite;
    use keyfold_redb::{RedbQueue, RedbQueueOptions};
    fn make(max_depth: u64, max_bytes: u64) -> RedbQueue {
        let options = RedbQueueOptions { suite: HashSuite::Sha256, max_depth, max_bytes };
        RedbQueue::open(&super::dir().join("queue.redb"), options).expect("open")
    }
    keyfold_conformance::queue_conformance_tests!(make);
}

mod heads {
    fn make() -> keyfold_redb::RedbHeadStore {
        keyfold_redb::RedbHeadStore::open(&super::dir().join("heads.redb")).expect("open")
    }
    keyfold_conformance::heads_conformance_tests!(make);
}

mod index {
    fn make() -> keyfold_redb::RedbOutcomeIndex {
        keyfold_redb::RedbOutcomeIndex::open(&super::dir().join("index.redb")).expect("open")
    }
    keyfold_conformance::index_conformance_tests!(make);
}

mod cosignatures {
    fn make() -> keyfold_redb::RedbCosignatures {
        keyfold_redb::RedbCosignatures::open(&super::dir().join("cosignatures.redb")).expect("open")
    }
    keyfold_conformance::cosignatures_conformance_tests!(make);

    /// `all()` (for `keyfold fsck`) lists every stored line by (epoch, witness).
    #[test]
    fn all_lines_in_key_order() {
        use keyfold_conformance::cosignatures::line;
        use keyfold_core::Epoch;
        use keyfold_epoch::CosignatureStore;
        let store = make();
        assert!(store.all().unwrap().is_empty(), "no table yet");
        store.put(Epoch(2), "a", &line("a", 20, 1)).unwrap();
        store.put(Epoch(1), "b", &line("b", 11, 2)).unwrap();
        store.put(Epoch(1), "a", &line("a", 10, 1)).unwrap();
        let all: Vec<(u64, String)> = store.all().unwrap().into_iter().map(|(e, w, _)| (e.0, w)).collect();
        assert_eq!(all, [(1, "a".into()), (1, "b".into()), (2, "a".into())]);
    }
}
