//! Seeded workloads shared by the criterion benches, `keyfold bench` and the tiny in-suite runs.
//!
//! Keys are `user{i:012}@example.com` (the peers' benchmark used the same), values 32 seeded
//! random bytes. W1 = M updates of existing keys into N, W2 = M new keys into N, W3 = empty to N.

use keyfold_core::{HashSuite, Index, LeafValue, Version};
use keyfold_map::{Map, TreeError, TreeStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The key of user `i`.
pub fn user_key(i: u64) -> Vec<u8> {
    format!("user{i:012}@example.com").into_bytes()
}

/// One leaf update per key id in `ids`, with seeded 32-byte values.
pub fn updates_for(
    suite: HashSuite,
    ids: impl Iterator<Item = u64>,
    version: Version,
    seed: u64,
) -> Vec<(Index, LeafValue)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ids.map(|i| (suite.index_of(&user_key(i)), LeafValue::present(version, rng.random::<[u8; 32]>().to_vec())))
        .collect()
}

/// Fills an empty map with keys `0..n` in one epoch (this *is* W3).
pub fn prefill<S: TreeStore>(map: &Map<S>, n: u64, seed: u64) -> Result<(), TreeError> {
    map.apply(updates_for(map.store().config().suite, 0..n, Version(1), seed))?;
    Ok(())
}

/// The W1 key choice: `m` distinct key ids out of `0..n`, chosen by `seed`, ascending.
pub fn w1_ids(n: u64, m: u64, seed: u64) -> std::collections::BTreeSet<u64> {
    assert!(m <= n, "W1 updates existing keys: m ({m}) must not exceed n ({n})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5731);
    let mut chosen = std::collections::BTreeSet::new();
    while (chosen.len() as u64) < m {
        chosen.insert(rng.random_range(0..n));
    }
    chosen
}

/// W1: the keys of [`w1_ids`] updated to version `version`.
pub fn w1_updates(suite: HashSuite, n: u64, m: u64, version: Version, seed: u64) -> Vec<(Index, LeafValue)> {
    updates_for(suite, w1_ids(n, m, seed).into_iter(), version, seed)
}

/// W2: `m` new keys `first..first + m`.
pub fn w2_updates(suite: HashSuite, first: u64, m: u64, seed: u64) -> Vec<(Index, LeafValue)> {
    updates_for(suite, first..first + m, Version(1), seed)
}
