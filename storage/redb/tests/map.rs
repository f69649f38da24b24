//! The durable redb map store: its crash and reopen behaviour (the conformance suite runs in `conformance.rs`).
use keyfold_core::{Epoch, HashSuite, LeafValue, Version};
use keyfold_map::{Map, TreeConfig, TreeError};
use keyfold_redb::{RedbOptions, RedbStore};

fn updates(suite: HashSuite, range: std::ops::Range<u32>, version: u64) -> Vec<(keyfold_core::Index, LeafValue)> {
    range
        .map(|i| (suite.index_of(&i.to_be_bytes()), LeafValue::present(Version(version), i.to_le_bytes().to_vec())))
        .collect()
}

#[test]
fn reopen_keeps_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let config = TreeConfig::new(HashSuite::Blake3, 6).unwrap();
    let roots: Vec<_> = {
        let map = Map::new(RedbStore::open(dir.path(), RedbOptions::new(config)).unwrap());
        (0..3).map(|e| map.apply(updates(config.suite, e * 100..e * 100 + 150, u64::from(e) + 1)).unwrap()).collect()
    };
    let map = Map::new(RedbStore::open(dir.path(), RedbOptions::new(config)).unwrap());
    assert_eq!(map.latest_epoch().unwrap(), Epoch(3));
    for root in roots {
        assert_eq!(map.root(root.epoch).unwrap(), root);
    }
    drop(map);
    let wrong = TreeConfig::new(HashSuite::Sha256, 6).unwrap();
    let err = RedbStore::open(dir.path(), RedbOptions::new(wrong)).unwrap_err();
    assert!(matches!(err, TreeError::ConfigMismatch { .. }), "{err}");
}

/// A crash after the group files committed but before meta.redb: the half-written epoch is invisible,
/// and a re-run with *different* content leaves no trace of the first attempt.
#[test]
fn interrupted_epoch_is_invisible_and_rerunnable() {
    let dir = tempfile::tempdir().unwrap();
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let suite = config.suite;
    let store = RedbStore::open(dir.path(), RedbOptions::new(config)).unwrap();
    let map = Map::new(store);
    let first = map.apply(updates(suite, 0..400, 1)).unwrap();
    let abandoned = map.prepare(updates(suite, 300..700, 2)).unwrap();
    map.store().commit_with_fault(&abandoned, keyfold_redb::CommitFault::AfterGroups).unwrap();
    drop(map);

    let map = Map::new(RedbStore::open(dir.path(), RedbOptions::new(config)).unwrap());
    assert_eq!(map.latest_epoch().unwrap(), Epoch(1), "the interrupted epoch must not be visible");
    assert_eq!(map.root(Epoch(1)).unwrap(), first);
    let probe = suite.index_of(&650u32.to_be_bytes());
    assert_eq!(map.lookup(&probe, Epoch(1)).unwrap().value, None);

    let rerun = map.apply(updates(suite, 0..10, 3)).unwrap();
    let mut reference = keyfold_conformance::tree::Reference::new(suite);
    reference.push(&updates(suite, 0..400, 1));
    reference.push(&updates(suite, 0..10, 3));
    assert_eq!(rerun, reference.root(Epoch(2)));
    let probes: Vec<_> = (0..800).step_by(13).map(|i: u32| suite.index_of(&i.to_be_bytes())).collect();
    keyfold_conformance::tree::check_all_epochs(&map, &reference, &probes);
}
