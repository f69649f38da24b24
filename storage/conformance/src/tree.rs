//! The storage conformance suite: the same cases run against every [`TreeStore`] implementation.
//!
//! A backend instantiates it with [`tree_conformance_tests!`](crate::tree_conformance_tests), giving a
//! function that makes a fresh, empty store for a config. Each case checks observable behaviour only:
//! roots against the reference [`keyfold_core::compute_root`], values and proofs at every epoch.

use keyfold_core::{Epoch, HashSuite, Index, LeafValue, MapRoot, Version, compute_root};
use keyfold_map::{Child, Map, Snapshot, TreeConfig, TreeError, TreeStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// A conformance case, run against the stores its argument makes.
pub type Case<S> = (&'static str, fn(fn(TreeConfig) -> S));

/// Every case of the suite, listed once: [`cases`] and [`tree_conformance_tests!`](crate::tree_conformance_tests)
/// are both made from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __tree_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! { $($args)*; empty_store, versioned_reads, rejects_out_of_order_commits,
            random_epochs_match_reference, shard_bits_do_not_change_roots }
    };
}

/// Every case, for harnesses that cannot use `#[test]` (FoundationDB's network starts once per
/// process).
pub fn cases<S: TreeStore>() -> Vec<Case<S>> {
    crate::__tree_cases!(__case_list!(tree, S))
}

/// Instantiates every case as a `#[test]` for the store made by `$make` (an expression of type
/// `fn(TreeConfig) -> S`).
#[macro_export]
macro_rules! tree_conformance_tests {
    ($make:expr) => {
        $crate::__tree_cases!(__case_tests!(tree, $make));
    };
}

pub(crate) fn config(suite: HashSuite, shard_bits: u8) -> TreeConfig {
    TreeConfig::new(suite, shard_bits).expect("valid config")
}

pub(crate) fn key(i: u64) -> Vec<u8> {
    format!("user{i:012}@example.com").into_bytes()
}

/// The reference state of every epoch: a plain ordered map per epoch.
#[derive(Debug)]
pub struct Reference {
    suite: HashSuite,
    epochs: Vec<BTreeMap<Index, LeafValue>>,
}

impl Reference {
    pub fn new(suite: HashSuite) -> Reference {
        Reference { suite, epochs: vec![BTreeMap::new()] }
    }

    pub fn push(&mut self, updates: &[(Index, LeafValue)]) {
        let mut next = self.epochs.last().expect("epoch 0").clone();
        for (i, v) in updates {
            next.insert(*i, v.clone());
        }
        self.epochs.push(next);
    }

    pub fn root(&self, epoch: Epoch) -> MapRoot {
        let leaves: Vec<(Index, LeafValue)> = self.epochs[usize::try_from(epoch.0).expect("epoch fits usize")]
            .iter()
            .map(|(i, v)| (*i, v.clone()))
            .collect();
        MapRoot { epoch, hash: compute_root(self.suite, &leaves).hash(self.suite) }
    }

    pub fn value(&self, epoch: Epoch, index: &Index) -> Option<&LeafValue> {
        self.epochs[usize::try_from(epoch.0).expect("epoch fits usize")].get(index)
    }
}

/// Checks root, values and proofs of `probes` at every committed epoch against the reference.
pub fn check_all_epochs<S: TreeStore>(map: &Map<S>, reference: &Reference, probes: &[Index]) {
    check_epochs_from(map, reference, probes, Epoch(0));
}

/// As [`check_all_epochs`], for the epochs from `first` on.
pub fn check_epochs_from<S: TreeStore>(map: &Map<S>, reference: &Reference, probes: &[Index], first: Epoch) {
    let suite = map.store().config().suite;
    let latest = map.latest_epoch().expect("latest epoch");
    assert_eq!(
        usize::try_from(latest.0).expect("epoch fits usize") + 1,
        reference.epochs.len(),
        "store and reference disagree on the epoch count"
    );
    for e in first.0..=latest.0 {
        let epoch = Epoch(e);
        let root = map.root(epoch).expect("root");
        assert_eq!(root, reference.root(epoch), "root of epoch {e} differs from the reference");
        for index in probes {
            let lookup = map.lookup(index, epoch).expect("lookup");
            let expected = reference.value(epoch, index);
            assert_eq!(lookup.value.as_ref(), expected, "value of {index:?} at epoch {e}");
            lookup.proof.verify_index(suite, &root, index, expected).expect("proof verifies");
        }
    }
}

pub fn empty_store<S: TreeStore>(make: fn(TreeConfig) -> S) {
    for suite in [HashSuite::Blake3, HashSuite::Sha256] {
        let store = make(config(suite, 8));
        assert_eq!(store.latest_epoch().unwrap(), Epoch(0));
        let snap = store.snapshot(Epoch(0)).unwrap();
        assert_eq!(snap.root().unwrap(), Child::EMPTY);
        assert_eq!(snap.leaf(&Index([1; 32]), Epoch(0)).unwrap(), None);
        drop(snap);
        assert!(matches!(store.snapshot(Epoch(1)), Err(TreeError::EpochNotCommitted { .. })));
        let map = Map::new(store);
        let absent = map.lookup(&suite.index_of(b"nobody"), Epoch(0)).unwrap();
        assert_eq!(absent.value, None);
        absent.proof.verify(suite, &map.root(Epoch(0)).unwrap(), b"nobody", None).unwrap();
    }
}

pub fn versioned_reads<S: TreeStore>(make: fn(TreeConfig) -> S) {
    let suite = HashSuite::Blake3;
    let map = Map::new(make(config(suite, 4)));
    let mut reference = Reference::new(suite);
    let idx = |i| suite.index_of(&key(i));
    let e1: Vec<_> = (0..50).map(|i| (idx(i), LeafValue::present(Version(1), key(i)))).collect();
    let e2 = vec![
        (idx(3), LeafValue::present(Version(2), b"new".to_vec())),
        (idx(4), LeafValue::tombstone(Version(2))),
        (idx(1000), LeafValue::present(Version(1), b"late".to_vec())),
    ];
    for updates in [e1, Vec::new(), e2] {
        reference.push(&updates);
        map.apply(updates).unwrap();
    }
    let probes: Vec<Index> = [0, 3, 4, 49, 50, 1000, 7777].into_iter().map(idx).collect();
    check_all_epochs(&map, &reference, &probes);
    let at1 = map.lookup(&idx(3), Epoch(1)).unwrap();
    assert_eq!(at1.value, Some(LeafValue::present(Version(1), key(3))), "past epochs keep old values");
}

pub fn rejects_out_of_order_commits<S: TreeStore>(make: fn(TreeConfig) -> S) {
    let suite = HashSuite::Sha256;
    let map = Map::new(make(config(suite, 2)));
    let batch = map.prepare(vec![(suite.index_of(b"a"), LeafValue::present(Version(1), b"x".to_vec()))]).unwrap();
    map.commit(&batch).unwrap();
    let again = map.store().commit(&batch);
    assert!(matches!(again, Err(TreeError::NonSequentialEpoch { .. })), "{again:?}");
    let mut skip = batch.clone();
    skip.epoch = Epoch(3);
    assert!(matches!(map.store().commit(&skip), Err(TreeError::NonSequentialEpoch { .. })));
    let dup = vec![
        (suite.index_of(b"b"), LeafValue::present(Version(1), b"1".to_vec())),
        (suite.index_of(b"b"), LeafValue::present(Version(2), b"2".to_vec())),
    ];
    assert!(matches!(map.prepare(dup), Err(TreeError::DuplicateIndex(_))));
    assert_eq!(map.latest_epoch().unwrap(), Epoch(1));
}

/// Random interleaved epochs of inserts, updates and tombstones (seeded; the seed is in the message).
pub fn random_epochs_match_reference<S: TreeStore>(make: fn(TreeConfig) -> S) {
    for (seed, suite, bits) in [(1u64, HashSuite::Blake3, 3u8), (2, HashSuite::Sha256, 0), (3, HashSuite::Blake3, 8)] {
        let map = Map::new(make(config(suite, bits)));
        let mut reference = Reference::new(suite);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let universe = 300u64;
        for _ in 0..12 {
            random_epoch(&map, &mut reference, &mut rng, universe);
        }
        let probes: Vec<Index> = (0..universe + 20).step_by(7).map(|k| suite.index_of(&key(k))).collect();
        check_all_epochs(&map, &reference, &probes);
    }
}

/// Applies one epoch of random inserts, updates and tombstones of keys `0..universe`.
pub fn random_epoch<S: TreeStore>(map: &Map<S>, reference: &mut Reference, rng: &mut ChaCha8Rng, universe: u64) {
    let suite = map.store().config().suite;
    let count = rng.random_range(0..80);
    let mut updates = BTreeMap::new();
    for _ in 0..count {
        let k = rng.random_range(0..universe);
        let version = Version(rng.random_range(1..5));
        let value = if rng.random_bool(0.2) {
            LeafValue::tombstone(version)
        } else {
            LeafValue::present(version, rng.random::<[u8; 8]>().to_vec())
        };
        updates.insert(suite.index_of(&key(k)), value);
    }
    let updates: Vec<_> = updates.into_iter().collect();
    reference.push(&updates);
    map.apply(updates).unwrap_or_else(|e| panic!("apply failed: {e}"));
}

pub fn shard_bits_do_not_change_roots<S: TreeStore>(make: fn(TreeConfig) -> S) {
    let suite = HashSuite::Blake3;
    let mut roots = Vec::new();
    for bits in [0u8, 1, 5, 8, 12] {
        let map = Map::new(make(config(suite, bits)));
        let updates: Vec<_> =
            (0..200).map(|i| (suite.index_of(&key(i)), LeafValue::present(Version(1), vec![1]))).collect();
        map.apply(updates).unwrap();
        let updates: Vec<_> =
            (150..260).map(|i| (suite.index_of(&key(i)), LeafValue::present(Version(2), vec![2]))).collect();
        roots.push(map.apply(updates).unwrap());
    }
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "the map root must not depend on shard_bits: {roots:?}");
}
