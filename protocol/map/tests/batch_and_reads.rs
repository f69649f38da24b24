//! `EpochBatch::verify` catches every inconsistency between a batch and the root it claims;
//! `Map::get_many` agrees with single lookups; leaf hashes handed in give the batch the tree
//! computes itself, and a wrong one is refused by `verify`.

use keyfold_core::{Epoch, Hash, HashSuite, Index, LeafValue, Node, StorageError, Version};
use keyfold_map::{Map, MemoryStore, TreeConfig, TreeError, TreeStore, prepare_epoch, prepare_epoch_hashed};

fn updates(range: std::ops::Range<u32>, version: u64) -> Vec<(Index, LeafValue)> {
    range
        .map(|i| {
            (
                HashSuite::Blake3.index_of(&i.to_be_bytes()),
                LeafValue::present(Version(version), i.to_le_bytes().to_vec()),
            )
        })
        .collect()
}

#[test]
fn honest_batches_verify_and_tampered_ones_do_not() {
    let suite = HashSuite::Blake3;
    let map = Map::new(MemoryStore::new(TreeConfig::new(suite, 4).unwrap()));
    let first = map.prepare(updates(0..2000, 1)).unwrap();
    first.verify(suite, 4).unwrap();
    map.commit(&first).unwrap();
    let batch = map.prepare(updates(1500..2600, 2)).unwrap();
    batch.verify(suite, 4).unwrap();

    let mut t = batch.clone();
    let shard = t.shards.iter_mut().find(|s| !s.nodes.is_empty()).unwrap();
    shard.nodes[0].1[0].node = Node::Internal { hash: Hash([9; 32]) };
    assert!(t.verify(suite, 4).is_err(), "altered child hash");

    let mut t = batch.clone();
    let shard = t.shards.iter_mut().find(|s| s.nodes.len() > 1).unwrap();
    shard.nodes.remove(0);
    assert!(t.verify(suite, 4).is_err(), "dropped node record");

    let mut t = batch.clone();
    t.leaves[3].1 = LeafValue::present(Version(2), b"forged".to_vec());
    assert!(t.verify(suite, 4).is_err(), "leaf value that does not match its hash");

    let mut t = batch.clone();
    t.root.node = Node::Internal { hash: Hash([1; 32]) };
    assert!(t.verify(suite, 4).is_err(), "root that the records do not produce");

    let mut t = batch.clone();
    let extra = t.shards[0].nodes[0];
    t.shards[1].nodes.push(extra);
    assert!(t.verify(suite, 4).is_err(), "duplicated record");
}

#[test]
fn get_many_agrees_with_lookups() {
    let suite = HashSuite::Blake3;
    let map = Map::new(MemoryStore::new(TreeConfig::new(suite, 3).unwrap()));
    map.apply(updates(0..500, 1)).unwrap();
    map.apply(updates(400..700, 2)).unwrap();
    let mut probes: Vec<Index> = (0..900u32).step_by(3).map(|i| suite.index_of(&i.to_be_bytes())).collect();
    probes.push(probes[5]); // duplicates are answered too
    probes.reverse();
    let mut ascending = probes.clone();
    ascending.sort_unstable();
    ascending.dedup(); // ascending and distinct: the path without a permutation
    for probes in [&probes, &ascending] {
        for epoch in [Epoch(0), Epoch(1), Epoch(2)] {
            let many = map.get_many(probes, epoch).unwrap();
            for (index, value) in probes.iter().zip(&many) {
                assert_eq!(value, &map.lookup(index, epoch).unwrap().value, "index {index:?} at {epoch:?}");
            }
        }
    }
}

#[test]
fn leaf_hashes_handed_in_give_the_same_batch() {
    let suite = HashSuite::Blake3;
    let config = TreeConfig::new(suite, 3).unwrap();
    let map = Map::new(MemoryStore::new(config));
    map.apply(updates(0..800, 1)).unwrap();
    let mut next = updates(600..1500, 2);
    next.sort_by_key(|u| u.0);
    let hashes: Vec<Hash> = next.iter().map(|(index, value)| suite.leaf_hash_of(index, value)).collect();
    let snapshot = map.store().snapshot(Epoch(1)).unwrap();
    let computed = prepare_epoch(config, &snapshot, next.clone()).unwrap();
    let handed = prepare_epoch_hashed(config, &snapshot, next.clone(), hashes.clone()).unwrap();
    assert_eq!(handed, computed);

    let mut twice = next.clone();
    twice[1] = twice[0].clone();
    let mut twice_hashes = hashes.clone();
    twice_hashes[1] = twice_hashes[0];
    let refused = prepare_epoch_hashed(config, &snapshot, twice, twice_hashes);
    assert!(matches!(refused, Err(TreeError::DuplicateIndex(_))), "{refused:?}");

    // A wrong hash is caught: by a debug assertion in debug builds, else by `verify`.
    let mut wrong = hashes.clone();
    wrong[7] = Hash([7; 32]);
    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prepare_epoch_hashed(config, &snapshot, next.clone(), wrong).unwrap()
    }));
    match prepared {
        Ok(batch) => assert!(batch.verify(suite, 3).is_err(), "verify refuses a wrong leaf hash"),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or_default();
            assert!(message.contains("every leaf hash is its update's"), "only the debug assertion panics: {message}");
        }
    }
    drop(snapshot);
    let root = map.apply_hashed(next, hashes).unwrap();
    assert_eq!(root.hash, computed.root.node.hash(suite));
}

/// A snapshot whose records were changed on disk: every node read at `depth` gets one child hash
/// altered, or every leaf value read gets its version altered.
struct Tampered<'a, S: keyfold_map::Snapshot> {
    inner: &'a S,
    node_depth: Option<u8>,
    leaves: bool,
}

impl<S: keyfold_map::Snapshot> keyfold_map::Snapshot for Tampered<'_, S> {
    fn epoch(&self) -> Epoch {
        self.inner.epoch()
    }
    fn root(&self) -> Result<keyfold_map::Child, TreeError> {
        self.inner.root()
    }
    fn node(&self, key: &keyfold_map::NodeKey, written: Epoch) -> Result<Option<keyfold_map::Children>, TreeError> {
        let mut children = self.inner.node(key, written)?;
        if let Some(c) = children.as_mut()
            && Some(key.depth) == self.node_depth
            && let Node::Internal { hash } | Node::Leaf { hash, .. } = &mut c[1].node
        {
            hash.0[7] ^= 0x10; // one flipped bit
        }
        Ok(children)
    }
    fn leaf(&self, index: &Index, written: Epoch) -> Result<Option<LeafValue>, TreeError> {
        let value = self.inner.leaf(index, written)?;
        Ok(match value {
            Some(v) if self.leaves => Some(LeafValue::present(Version(v.version.0 + 2), v.value.unwrap_or_default())),
            other => other,
        })
    }
}

#[test]
fn records_that_do_not_hash_to_their_parent_are_refused_not_built_on() {
    let suite = HashSuite::Blake3;
    let config = TreeConfig::new(suite, 2).unwrap();
    let map = Map::new(MemoryStore::new(config));
    map.apply(updates(0..3000, 1)).unwrap();
    let snapshot = map.store().snapshot(Epoch(1)).unwrap();
    let probe = updates(10..11, 1)[0].0;
    for depth in [0u8, 1, 5, 9] {
        let tampered = Tampered { inner: &snapshot, node_depth: Some(depth), leaves: false };
        let err = prepare_epoch(config, &tampered, updates(5..50, 2)).unwrap_err();
        assert!(
            matches!(&err, TreeError::Storage(StorageError::Corrupt(m)) if m.contains("does not hash to its parent")),
            "{err}"
        );
        let err = keyfold_map::lookup_in(&tampered, suite, &probe).unwrap_err();
        assert!(
            matches!(&err, TreeError::Storage(StorageError::Corrupt(m)) if m.contains("does not hash to its parent")),
            "{err}"
        );
    }
    let tampered = Tampered { inner: &snapshot, node_depth: None, leaves: true };
    let err = keyfold_map::lookup_in(&tampered, suite, &probe).unwrap_err();
    assert!(matches!(&err, TreeError::Storage(StorageError::Corrupt(m)) if m.contains("value record")), "{err}");
    // Untampered, the same reads succeed.
    prepare_epoch(config, &snapshot, updates(5..50, 2)).unwrap();
    keyfold_map::lookup_in(&snapshot, suite, &probe).unwrap();
}
