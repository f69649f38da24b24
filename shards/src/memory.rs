//! The in-memory store: the reference for the conformance suite and the "tree only" benchmarks.

use crate::error::TreeError;
use crate::store::{Child, Children, EpochBatch, NodeKey, ShardUpdate, Snapshot, TreeConfig, TreeStore};
use hashbrown::HashMap;
use keyfold_core::{Epoch, Index, LeafValue};
use rayon::prelude::*;
use std::sync::{RwLock, RwLockReadGuard};

/// Records of one shard (or of the levels above the shards): small tables, so one shard's update
/// touches a region that stays in cache instead of probing one table of every node.
#[derive(Debug, Default)]
struct Partition {
    nodes: HashMap<(Epoch, NodeKey), Children>,
    leaves: HashMap<(Epoch, Index), LeafValue>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Root of every committed epoch, indexed by epoch.
    roots: Vec<Child>,
    /// One partition per shard, then one for the nodes above the shards.
    partitions: Vec<Partition>,
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
        MemoryStore { config, inner: RwLock::new(Inner { roots: vec![Child::EMPTY], partitions }) }
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
        Ok(partition.nodes.get(&(written, *key)).copied())
    }

    fn leaf(&self, index: &Index, written: Epoch) -> Result<Option<LeafValue>, TreeError> {
        let partition = &self.inner.partitions[index.shard(self.shard_bits).0 as usize];
        Ok(partition.leaves.get(&(written, *index)).cloned())
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
        Ok(MemorySnapshot { epoch: at, shard_bits: self.config.shard_bits, inner })
    }

    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expected = latest(&inner).next();
        if batch.epoch != expected {
            return Err(TreeError::NonSequentialEpoch { expected, got: batch.epoch });
        }
        let e = batch.epoch;
        let bits = self.config.shard_bits;
        let top = inner.partitions.len() - 1;
        let mut shard_of: Vec<Option<&ShardUpdate>> = vec![None; top];
        for shard in &batch.shards {
            shard_of[shard.shard.0 as usize] = Some(shard);
        }
        // Partitions are independent: each takes its own records, in parallel. Leaves ascend by
        // index, hence by shard, so each shard's leaves are one contiguous run.
        inner.partitions.par_iter_mut().enumerate().for_each(|(p, partition)| {
            if p == top {
                partition.nodes.extend(batch.top_nodes.iter().map(|(key, children)| ((e, *key), *children)));
                return;
            }
            if let Some(shard) = shard_of[p] {
                partition.nodes.extend(shard.nodes.iter().map(|(key, children)| ((e, *key), *children)));
            }
            let start = batch.leaves.partition_point(|(index, _)| (index.shard(bits).0 as usize) < p);
            let end = batch.leaves.partition_point(|(index, _)| (index.shard(bits).0 as usize) <= p);
            partition.leaves.extend(batch.leaves[start..end].iter().map(|(index, leaf)| ((e, *index), leaf.clone())));
        });
        // Last: the new root makes the epoch visible (the whole commit holds the write lock anyway).
        inner.roots.push(batch.root);
        Ok(())
    }
}
