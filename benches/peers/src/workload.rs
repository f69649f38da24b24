//! The seeded workloads, generated once and fed to every system in the same order.
//!
//! Keys and values come from `keyfold-benches` (the same generator as `keyfold bench` and the
//! criterion benches): keys `user{i:012}@example.com`, 32-byte seeded values. Each item also
//! carries the version the key reaches, so the tree-only and full-epoch runs of Keyfold build the
//! same leaves, and so their roots can be compared.

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use keyfold_benches::{updates_for, user_key, w1_ids, w1_updates, w2_updates};
use keyfold_core::{HashSuite, LeafValue, Version};

/// Size of every value, for every system.
pub const VALUE_BYTES: usize = 32;

/// One key's new value in one epoch.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    /// The key id (`user_key(id)` is the key).
    pub id: u64,
    /// The key's version after this update (1 for a new key).
    pub version: u64,
    pub value: [u8; VALUE_BYTES],
}

impl Item {
    pub fn key(&self) -> Vec<u8> {
        user_key(self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Workload {
    /// Updates of existing keys into N keys.
    W1,
    /// New keys into N keys.
    W2,
    /// Empty to N keys in one epoch.
    W3,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
        })
    }
}

/// Keys before the measured epochs and mutations per epoch.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub keys: u64,
    pub w1: u64,
    pub w2: u64,
    /// True when N < 100k and W1/W2 were scaled down with N.
    pub scaled: bool,
}

impl Sizes {
    /// W1 = 10k and W2 = 100k mutations (1% and 10% of the reference 1M keys); below 100k keys
    /// both scale with N instead (N/100 and N/10, at least 1).
    pub fn for_keys(keys: u64) -> Sizes {
        if keys >= 100_000 {
            Sizes { keys, w1: 10_000, w2: 100_000, scaled: false }
        } else {
            Sizes { keys, w1: (keys / 100).max(1), w2: (keys / 10).max(1), scaled: true }
        }
    }
}

/// Every batch of a run: one build (empty to N: the prefill, and W3's epoch), then the W1 epochs
/// and the W2 epochs, applied in that order.
#[derive(Debug)]
pub struct Workloads {
    pub build: Vec<Item>,
    pub w1: Vec<Vec<Item>>,
    pub w2: Vec<Vec<Item>>,
}

/// Generates the batches; epoch `e` (from 0) of W1 and W2 uses seed `seed + e + 1`, as
/// `keyfold bench` does.
pub fn generate(sizes: Sizes, epochs: u32, seed: u64) -> Result<Workloads> {
    if sizes.keys == 0 {
        bail!("--keys must be at least 1");
    }
    let suite = HashSuite::from_name("blake3").context("the blake3 suite must exist")?;
    let len = usize::try_from(sizes.keys).context("--keys does not fit in memory")?;
    let build = items(0..sizes.keys, &updates_for(suite, 0..sizes.keys, Version(1), seed), |_| Ok(1))?;
    let mut versions = vec![1u64; len];
    let mut w1 = Vec::new();
    let mut w2 = Vec::new();
    for e in 0..u64::from(epochs) {
        let s = seed + e + 1;
        let ids = w1_ids(sizes.keys, sizes.w1, s);
        let values = w1_updates(suite, sizes.keys, sizes.w1, Version(0), s);
        w1.push(items(ids.into_iter(), &values, |id| {
            let slot = usize::try_from(id)
                .ok()
                .and_then(|i| versions.get_mut(i))
                .context("a W1 key is not a prefilled key")?;
            *slot += 1;
            Ok(*slot)
        })?);
        let first = sizes.keys + e * sizes.w2;
        w2.push(items(first..first + sizes.w2, &w2_updates(suite, first, sizes.w2, s), |_| Ok(1))?);
    }
    Ok(Workloads { build, w1, w2 })
}

/// Pairs key ids with the values the keyfold-benches generator gave them (in id order).
fn items(
    ids: impl Iterator<Item = u64>,
    updates: &[(keyfold_core::Index, LeafValue)],
    mut version: impl FnMut(u64) -> Result<u64>,
) -> Result<Vec<Item>> {
    let items: Vec<Item> = ids
        .zip(updates)
        .map(|(id, (_, leaf))| {
            let value = leaf.value.as_deref().context("a workload value is a tombstone")?;
            let value: [u8; VALUE_BYTES] =
                value.try_into().with_context(|| format!("a workload value has {} bytes", value.len()))?;
            Ok(Item { id, version: version(id)?, value })
        })
        .collect::<Result<_>>()?;
    if items.len() != updates.len() {
        bail!("the workload generator returned {} values for {} keys", updates.len(), items.len());
    }
    Ok(items)
}
