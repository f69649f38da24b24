//! Cross-crate properties of the sharded map: differential against the from-scratch reference,
//! determinism across rayon pool sizes and input orders, proofs from stored nodes.

use keyfold_conformance::tree::Reference;
use keyfold_core::{Epoch, Hash, HashSuite, Index, LeafValue, MapRoot, Version, compute_root};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use keyfold_redb::{RedbOptions, RedbStore};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Put(u16, Vec<u8>),
    Delete(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u16..400, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u16..400).prop_map(Op::Delete),
    ]
}

/// Applies one epoch of ops to the model; returns the resolved per-key updates.
fn resolve(suite: HashSuite, model: &mut BTreeMap<u16, LeafValue>, ops: &[Op]) -> Vec<(Index, LeafValue)> {
    let mut touched = BTreeMap::new();
    for op in ops {
        let (k, value) = match op {
            Op::Put(k, v) => (*k, Some(v.clone())),
            Op::Delete(k) => (*k, None),
        };
        let version = Version(model.get(&k).map_or(0, |l| l.version.0) + 1);
        let leaf = LeafValue::new(version, Epoch(1), Hash::default(), value);
        model.insert(k, leaf.clone());
        touched.insert(k, leaf);
    }
    touched.into_iter().map(|(k, v)| (suite.index_of(&k.to_be_bytes()), v)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// The root after random interleaved epochs of inserts, updates and deletes equals the root
    /// built from scratch from the final state, at every epoch, for any shard count.
    #[test]
    fn incremental_equals_from_scratch(
        blake in any::<bool>(),
        shard_bits in 0u8..10,
        epochs in proptest::collection::vec(proptest::collection::vec(op(), 0..60), 1..8),
    ) {
        let suite = if blake { HashSuite::Blake3 } else { HashSuite::Sha256 };
        let map = Map::new(MemoryStore::new(TreeConfig::new(suite, shard_bits).unwrap()));
        let mut model = BTreeMap::new();
        for ops in &epochs {
            let updates = resolve(suite, &mut model, ops);
            let root = map.apply(updates).unwrap();
            let leaves: Vec<_> = model.iter().map(|(k, v)| (suite.index_of(&k.to_be_bytes()), v.clone())).collect();
            prop_assert_eq!(root.hash, compute_root(suite, &leaves).hash(suite));
        }
        let latest = map.latest_epoch().unwrap();
        let root = map.root(latest).unwrap();
        for k in (0u16..420).step_by(11) {
            let lookup = map.lookup(&suite.index_of(&k.to_be_bytes()), latest).unwrap();
            prop_assert_eq!(lookup.value.as_ref(), model.get(&k));
            lookup.proof.verify(suite, &root, &k.to_be_bytes(), model.get(&k)).unwrap();
        }
    }
}

fn workload(seed: u64, n: u32) -> Vec<(Index, LeafValue)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            (
                HashSuite::Blake3.index_of(&i.to_be_bytes()),
                LeafValue::present(Version(1), rng.random::<[u8; 16]>().to_vec()),
            )
        })
        .collect()
}

/// The same epochs give byte-identical batches and roots with 1, 2, 4 and 8 threads and with the
/// input shuffled. Sizes are big enough to take the parallel (fork) paths inside shards.
#[test]
fn identical_batches_for_every_pool_size_and_input_order() {
    let config = TreeConfig::new(HashSuite::Blake3, 2).unwrap();
    let base = workload(11, 20_000);
    let next: Vec<_> = workload(12, 30_000).into_iter().skip(10_000).collect(); // 10k updates + 10k new
    let mut results = Vec::new();
    for threads in [1usize, 2, 4, 8] {
        for shuffle_seed in [None, Some(threads as u64)] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (mut first, mut second) = (base.clone(), next.clone());
            if let Some(seed) = shuffle_seed {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                first.shuffle(&mut rng);
                second.shuffle(&mut rng);
            }
            let map = Map::new(MemoryStore::new(config));
            let batches = pool.install(|| {
                let b1 = map.prepare(first).unwrap();
                map.commit(&b1).unwrap();
                let b2 = map.prepare(second).unwrap();
                map.commit(&b2).unwrap();
                (b1, b2)
            });
            results.push((threads, shuffle_seed, batches));
        }
    }
    let (_, _, reference) = &results[0];
    for (threads, shuffle, batches) in &results[1..] {
        assert!(batches == reference, "batch differs with {threads} threads, shuffle {shuffle:?}");
    }
}

/// Proofs generated from the redb store at every retained epoch verify against that epoch's root
/// and the reference; a proof checked against another epoch's root is rejected.
#[test]
fn redb_proofs_at_past_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let suite = HashSuite::Sha256;
    let config = TreeConfig::new(suite, 8).unwrap();
    let map = Map::new(RedbStore::open(dir.path(), RedbOptions::new(config)).unwrap());
    let mut reference = Reference::new(suite);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for epoch in 1..=4u64 {
        let updates: BTreeMap<Index, LeafValue> = (0..500)
            .map(|_| {
                let k: u32 = rng.random_range(0..3000);
                (suite.index_of(&k.to_be_bytes()), LeafValue::present(Version(epoch), k.to_le_bytes().to_vec()))
            })
            .collect();
        let updates: Vec<_> = updates.into_iter().collect();
        reference.push(&updates);
        map.apply(updates).unwrap();
    }
    let probes: Vec<Index> = (0..3200u32).step_by(97).map(|k| suite.index_of(&k.to_be_bytes())).collect();
    keyfold_conformance::tree::check_all_epochs(&map, &reference, &probes);
    let lookup = map.lookup(&probes[0], Epoch(2)).unwrap();
    let other_root: MapRoot = map.root(Epoch(3)).unwrap();
    assert!(lookup.proof.verify_index(suite, &other_root, &probes[0], lookup.value.as_ref()).is_err());
}
