//! The in-memory store: the reference for the conformance suite and the "tree only" benchmarks.

use crate::error::TreeError;
use crate::format::merge_latest;
use crate::store::{Child, Children, EpochBatch, NodeKey, PruneReport, Snapshot, TreeConfig, TreeStore};
use hashbrown::{DefaultHashBuilder, HashTable};
use keyfold_core::{Epoch, Index, LeafValue};
use rayon::prelude::*;
use std::hash::{BuildHasher, Hash};
use std::sync::{RwLock, RwLockReadGuard};

/// Records one epoch wrote in one shard (or in the levels above the shards): the records as the
/// batch held them (moved, never copied), and per kind a table of their positions by key. A
/// table per epoch and shard is built at its final size (no table ever grows and rehashes what
/// earlier epochs wrote), holds 4-byte positions instead of 200-byte records (a 1M-leaf epoch's
/// tables take megabytes, not hundreds of them), and one shard's update probes tables that stay
/// in cache.
#[derive(Debug, Default)]
struct Records {
    nodes: Vec<(NodeKey, Children)>,
    node_at: HashTable<u32>,
    leaves: Vec<(Index, LeafValue)>,
    leaf_at: HashTable<u32>,
}

/// A table of the positions of `records` by their keys (which are distinct).
fn positions<K: Hash + Eq, V>(hasher: &DefaultHashBuilder, records: &[(K, V)]) -> HashTable<u32> {
    let mut table = HashTable::with_capacity(records.len());
    for (i, (key, _)) in records.iter().enumerate() {
        let at = u32::try_from(i).expect("an epoch writes fewer than 2^32 records per shard");
        table.insert_unique(hasher.hash_one(key), at, |&j| hasher.hash_one(&records[j as usize].0));
    }
    table
}

/// The record of `key` in `records`, through its `table` of positions.
fn find<'a, K: Hash + Eq, V>(
    hasher: &DefaultHashBuilder,
    table: &HashTable<u32>,
    records: &'a [(K, V)],
    key: &K,
) -> Option<&'a V> {
    table.find(hasher.hash_one(key), |&i| records[i as usize].0 == *key).map(|&i| &records[i as usize].1)
}

impl Records {
    fn new(
        hasher: &DefaultHashBuilder,
        mut nodes: Vec<(NodeKey, Children)>,
        leaves: Vec<(Index, LeafValue)>,
    ) -> Records {
        nodes.shrink_to_fit(); // the update reserves room for the worst case
        let node_at = positions(hasher, &nodes);
        let leaf_at = positions(hasher, &leaves);
        Records { nodes, node_at, leaves, leaf_at }
    }
}

/// One shard's records (or those above the shards), by epoch: `epochs[e - 1]` holds epoch `e`'s
/// (emptied once pruned into the base).
#[derive(Debug, Default)]
struct Partition {
    epochs: Vec<Records>,
    /// After a prune at epoch B: the partition's records of the tree at B, each with the epoch
    /// that wrote it (one per position).
    base: Base,
}

#[derive(Debug, Default)]
struct Base {
    nodes: Vec<(NodeKey, (Epoch, Children))>,
    node_at: HashTable<u32>,
    leaves: Vec<(Index, (Epoch, LeafValue))>,
    leaf_at: HashTable<u32>,
}

impl Partition {
    fn at(&self, written: Epoch) -> Option<&Records> {
        let e = usize::try_from(written.0).ok()?;
        self.epochs.get(e.checked_sub(1)?)
    }

    fn node(&self, hasher: &DefaultHashBuilder, key: &NodeKey, written: Epoch) -> Option<Children> {
        let fresh = self.at(written).and_then(|r| find(hasher, &r.node_at, &r.nodes, key)).copied();
        let base = || find(hasher, &self.base.node_at, &self.base.nodes, key).filter(|(w, _)| *w == written);
        fresh.or_else(|| base().map(|(_, c)| *c))
    }

    fn leaf(&self, hasher: &DefaultHashBuilder, index: &Index, written: Epoch) -> Option<LeafValue> {
        if let Some(value) = self.at(written).and_then(|r| find(hasher, &r.leaf_at, &r.leaves, index)) {
            return Some(value.clone());
        }
        let base = find(hasher, &self.base.leaf_at, &self.base.leaves, index);
        base.filter(|(w, _)| *w == written).map(|(_, v)| v.clone())
    }

    /// Moves the records of epochs `<= keep_from` into the base of the tree at `keep_from`.
    fn rebase(&mut self, hasher: &DefaultHashBuilder, keep_from: Epoch) {
        let old = std::mem::take(&mut self.base);
        let mut nodes: Vec<(NodeKey, Epoch, Children)> = old.nodes.into_iter().map(|(k, (e, c))| (k, e, c)).collect();
        let mut leaves: Vec<(Index, Epoch, LeafValue)> = old.leaves.into_iter().map(|(i, (e, v))| (i, e, v)).collect();
        let through = usize::try_from(keep_from.0).expect("epoch fits usize").min(self.epochs.len());
        for (at, records) in self.epochs[..through].iter_mut().enumerate() {
            let written = Epoch(at as u64 + 1);
            let Records { nodes: n, leaves: l, .. } = std::mem::take(records);
            nodes.extend(n.into_iter().map(|(k, c)| (k, written, c)));
            leaves.extend(l.into_iter().map(|(i, v)| (i, written, v)));
        }
        let nodes: Vec<_> = merge_latest(nodes).into_iter().map(|(k, e, c)| (k, (e, c))).collect();
        let leaves: Vec<_> = merge_latest(leaves).into_iter().map(|(i, e, v)| (i, (e, v))).collect();
        let (node_at, leaf_at) = (positions(hasher, &nodes), positions(hasher, &leaves));
        self.base = Base { nodes, node_at, leaves, leaf_at };
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Root of every committed epoch, indexed by epoch.
    roots: Vec<Child>,
    /// One partition per shard, then one for the nodes above the shards.
    partitions: Vec<Partition>,
    /// Hashes keys for every table.
    hasher: DefaultHashBuilder,
    /// The oldest epoch kept (roots before it are refused).
    oldest: Epoch,
}

impl Inner {
    fn partition_of_node(&self, shard_bits: u8, key: &NodeKey) -> usize {
        if key.depth < shard_bits { self.partitions.len() - 1 } else { key.prefix.shard(shard_bits).0 as usize }
    }
}

/// Every epoch of the tree in memory. Not durable: for tests and tree-only benchmarks.
#[derive(Debug)]
pub struct MemoryStore {
    config: TreeConfig,
    inner: RwLock<Inner>,
}

impl MemoryStore {
    pub fn new(config: TreeConfig) -> MemoryStore {
        let partitions = (0..=config.shard_count()).map(|_| Partition::default()).collect();
        MemoryStore {
            config,
            inner: RwLock::new(Inner {
                roots: vec![Child::EMPTY],
                partitions,
                hasher: DefaultHashBuilder::default(),
                oldest: Epoch(0),
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn latest(inner: &Inner) -> Epoch {
    Epoch(inner.roots.len() as u64 - 1)
}

/// A read view holding the store's read lock; commits wait until it is dropped.
#[derive(Debug)]
pub struct MemorySnapshot<'a> {
    epoch: Epoch,
    shard_bits: u8,
    inner: RwLockReadGuard<'a, Inner>,
}

impl Snapshot for MemorySnapshot<'_> {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn root(&self) -> Result<Child, TreeError> {
        Ok(self.inner.roots[usize::try_from(self.epoch.0).expect("committed epoch fits usize")])
    }

    fn node(&self, key: &NodeKey, written: Epoch) -> Result<Option<Children>, TreeError> {
        let partition = &self.inner.partitions[self.inner.partition_of_node(self.shard_bits, key)];
        Ok(partition.node(&self.inner.hasher, key, written))
    }

    fn leaf(&self, index: &Index, written: Epoch) -> Result<Option<LeafValue>, TreeError> {
        let partition = &self.inner.partitions[index.shard(self.shard_bits).0 as usize];
        Ok(partition.leaf(&self.inner.hasher, index, written))
    }
}

impl TreeStore for MemoryStore {
    type Snapshot<'a> = MemorySnapshot<'a>;

    fn config(&self) -> TreeConfig {
        self.config
    }

    fn latest_epoch(&self) -> Result<Epoch, TreeError> {
        Ok(latest(&self.read()))
    }

    fn snapshot(&self, at: Epoch) -> Result<MemorySnapshot<'_>, TreeError> {
        let inner = self.read();
        let latest = latest(&inner);
        if at > latest {
            return Err(TreeError::EpochNotCommitted { requested: at, latest });
        }
        if at < inner.oldest {
            return Err(TreeError::EpochPruned { requested: at, oldest: inner.oldest });
        }
        Ok(MemorySnapshot { epoch: at, shard_bits: self.config.shard_bits, inner })
    }

    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        self.commit_owned(batch.clone())
    }

    fn oldest_epoch(&self) -> Result<Epoch, TreeError> {
        Ok(self.read().oldest)
    }

    /// Rebases every partition at once (the records are in memory already).
    fn prune(&self, keep_from: Epoch) -> Result<PruneReport, TreeError> {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let keep_from = keep_from.min(latest(&inner));
        if keep_from <= inner.oldest {
            return Ok(PruneReport { oldest: inner.oldest, ..PruneReport::default() });
        }
        let Inner { partitions, hasher, .. } = &mut *inner;
        partitions.par_iter_mut().for_each(|p| p.rebase(hasher, keep_from));
        inner.oldest = keep_from;
        let rebased = u32::try_from(inner.partitions.len()).expect("at most 2^16 + 1 partitions");
        Ok(PruneReport { oldest: keep_from, shards_rebased: rebased, ..PruneReport::default() })
    }

    /// Moves the records into the tables (leaf values are not copied).
    fn commit_owned(&self, batch: EpochBatch) -> Result<(), TreeError> {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expected = latest(&inner).next();
        if batch.epoch != expected {
            return Err(TreeError::NonSequentialEpoch { expected, got: batch.epoch });
        }
        let bits = self.config.shard_bits;
        let top = inner.partitions.len() - 1;
        let EpochBatch { root, shards, top_nodes, leaves, .. } = batch;
        let mut nodes_of: Vec<Vec<(NodeKey, Children)>> = (0..=top).map(|_| Vec::new()).collect();
        for shard in shards {
            nodes_of[shard.shard.0 as usize] = shard.nodes;
        }
        nodes_of[top] = top_nodes;
        // Leaves ascend by index, hence by shard: each shard's leaves are one contiguous run.
        let mut leaves_of: Vec<Vec<(Index, LeafValue)>> = (0..=top).map(|_| Vec::new()).collect();
        let mut rest = leaves;
        for p in (0..top).rev() {
            let start = rest.partition_point(|(index, _)| (index.shard(bits).0 as usize) < p);
            leaves_of[p] = rest.split_off(start);
        }
        debug_assert!(rest.is_empty(), "every leaf is in a shard");
        // Partitions are independent: each builds its table for this epoch, in parallel.
        let Inner { partitions, hasher, .. } = &mut *inner;
        partitions.par_iter_mut().zip(nodes_of).zip(leaves_of).for_each(|((partition, nodes), leaves)| {
            partition.epochs.push(Records::new(hasher, nodes, leaves));
        });
        // Last: the new root makes the epoch visible (the whole commit holds the write lock anyway).
        inner.roots.push(root);
        Ok(())
    }
}
