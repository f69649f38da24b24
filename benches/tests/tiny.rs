//! Tiny variants of every benchmark workload, so the benches cannot rot: each runs through both
//! stores and is checked against the from-scratch reference root.

use keyfold_benches::{prefill, user_key, w1_updates, w2_updates};
use keyfold_core::{Epoch, HashSuite, LeafValue, MapRoot, Version, compute_root};
use keyfold_map::{Map, MemoryStore, TreeConfig, TreeStore};
use keyfold_redb::{RedbOptions, RedbStore};
use std::collections::BTreeMap;

const N: u64 = 3_000;
const M: u64 = 300;

fn run_workloads<S: TreeStore>(map: &Map<S>) {
    let suite = map.store().config().suite;
    let mut model = BTreeMap::new();
    let mut record = |updates: &[(keyfold_core::Index, LeafValue)]| {
        for (i, v) in updates {
            model.insert(*i, v.clone());
        }
        let leaves: Vec<_> = model.iter().map(|(i, v): (&keyfold_core::Index, &LeafValue)| (*i, v.clone())).collect();
        compute_root(suite, &leaves).hash(suite)
    };
    // W3: empty -> N.
    prefill(map, N, 1).unwrap();
    let expected = record(&keyfold_benches::updates_for(suite, 0..N, Version(1), 1));
    assert_eq!(map.root(Epoch(1)).unwrap().hash, expected);
    // W1: M updates into N.
    let w1 = w1_updates(suite, N, M, Version(2), 2);
    assert_eq!(w1.len() as u64, M);
    let expected = record(&w1);
    assert_eq!(map.apply(w1).unwrap().hash, expected);
    // W2: M new keys into N.
    let w2 = w2_updates(suite, N, M, 3);
    let expected = record(&w2);
    assert_eq!(map.apply(w2).unwrap().hash, expected);
    // Proof generation and verification.
    let root: MapRoot = map.root(Epoch(3)).unwrap();
    for i in (0..N + M + 50).step_by(37) {
        let key = user_key(i);
        let lookup = map.lookup(&suite.index_of(&key), Epoch(3)).unwrap();
        assert_eq!(lookup.value.is_some(), i < N + M);
        lookup.proof.verify(suite, &root, &key, lookup.value.as_ref()).unwrap();
    }
}

#[test]
fn tiny_workloads_memory() {
    for suite in [HashSuite::Blake3, HashSuite::Sha256] {
        run_workloads(&Map::new(MemoryStore::new(TreeConfig::new(suite, 8).unwrap())));
    }
}

#[test]
fn tiny_workloads_redb() {
    let dir = tempfile::tempdir().unwrap();
    let config = TreeConfig::new(HashSuite::Blake3, 8).unwrap();
    run_workloads(&Map::new(RedbStore::open(dir.path(), RedbOptions::new(config)).unwrap()));
}
