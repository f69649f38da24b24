//! The retention suite, for stores that implement [`TreeStore::prune`] (memory, redb; the
//! FoundationDB store does not, and a directory on it refuses a retention window): every kept
//! epoch reads exactly as before a prune, forgotten epochs are refused, and commits go on.

use crate::tree::{Reference, check_epochs_from, config, key, random_epoch};
use keyfold_core::{Epoch, HashSuite, Index, LeafValue, Version};
use keyfold_map::{Map, TreeConfig, TreeError, TreeStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Every case of the suite, listed once.
#[doc(hidden)]
#[macro_export]
macro_rules! __retention_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! { $($args)*; pruning_keeps_every_kept_epoch, pruning_clamps_and_never_moves_back }
    };
}

/// Instantiates every case as a `#[test]` for the store made by `$make`.
#[macro_export]
macro_rules! retention_conformance_tests {
    ($make:expr) => {
        $crate::__retention_cases!(__case_tests!(retention, $make));
    };
}

/// Prunes to `keep_from` until no shard waits (a store may spread a prune over calls).
fn prune_fully<S: TreeStore>(map: &Map<S>, keep_from: Epoch) {
    for _ in 0..10_000 {
        let report = map.store().prune(keep_from).expect("prune");
        assert_eq!(report.oldest, keep_from.min(map.latest_epoch().unwrap()).max(report.oldest));
        if report.shards_pending == 0 {
            return;
        }
    }
    panic!("prune never finished");
}

/// Random epochs with a window that moves after each (one prune call each, so a store that spreads
/// its work leaves shards at different bases), then fully: every kept epoch still matches the
/// reference in roots, values and proofs; an epoch before the window is refused.
pub fn pruning_keeps_every_kept_epoch<S: TreeStore>(make: fn(TreeConfig) -> S) {
    for (seed, suite, bits) in [(4u64, HashSuite::Blake3, 3u8), (5, HashSuite::Sha256, 0), (6, HashSuite::Blake3, 8)] {
        let map = Map::new(make(config(suite, bits)));
        let mut reference = Reference::new(suite);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let universe = 300u64;
        let probes: Vec<Index> = (0..universe + 20).step_by(7).map(|k| suite.index_of(&key(k))).collect();
        for _ in 0..6 {
            random_epoch(&map, &mut reference, &mut rng, universe);
        }
        prune_fully(&map, Epoch(3));
        assert_eq!(map.store().oldest_epoch().unwrap(), Epoch(3));
        check_epochs_from(&map, &reference, &probes, Epoch(3));
        let refused = map.store().snapshot(Epoch(2)).map(|_| ());
        assert!(
            matches!(refused, Err(TreeError::EpochPruned { requested: Epoch(2), oldest: Epoch(3) })),
            "{refused:?}"
        );
        for e in 7..=16u64 {
            random_epoch(&map, &mut reference, &mut rng, universe);
            map.store().prune(Epoch(e - 3)).unwrap_or_else(|err| panic!("seed {seed}: prune: {err}"));
            check_epochs_from(&map, &reference, &probes, Epoch(e - 3));
        }
        prune_fully(&map, Epoch(15));
        check_epochs_from(&map, &reference, &probes, Epoch(15));
        random_epoch(&map, &mut reference, &mut rng, universe);
        check_epochs_from(&map, &reference, &probes, Epoch(15));
    }
}

/// A window past the latest epoch keeps the latest; a window behind the oldest kept changes
/// nothing; the store then commits and reads on.
pub fn pruning_clamps_and_never_moves_back<S: TreeStore>(make: fn(TreeConfig) -> S) {
    let suite = HashSuite::Blake3;
    let map = Map::new(make(config(suite, 4)));
    let mut reference = Reference::new(suite);
    let idx = |i| suite.index_of(&key(i));
    for e in 1..=5u64 {
        let updates: Vec<_> = (0..40).map(|i| (idx(i * e), LeafValue::present(Version(e), key(i)))).collect();
        reference.push(&updates);
        map.apply(updates).unwrap();
    }
    prune_fully(&map, Epoch(100));
    assert_eq!(map.store().oldest_epoch().unwrap(), Epoch(5));
    prune_fully(&map, Epoch(2));
    assert_eq!(map.store().oldest_epoch().unwrap(), Epoch(5));
    let updates = vec![(idx(3), LeafValue::tombstone(Version(9)))];
    reference.push(&updates);
    map.apply(updates).unwrap();
    let probes: Vec<Index> = (0..250).step_by(3).map(idx).collect();
    check_epochs_from(&map, &reference, &probes, Epoch(5));
    assert!(matches!(map.lookup(&idx(3), Epoch(4)), Err(TreeError::EpochPruned { .. })));
}
