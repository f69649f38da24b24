//! The in-memory store: the reference for the conformance suite and the "tree only" benchmarks.

use crate::error::TreeError;
use crate::store::{Children, EpochBatch, NodeKey, Snapshot, TreeConfig, TreeStore};
use hashbrown::HashMap;
use keyfold_core::{Epoch, Index, LeafValue, Node};
use std::sync::{RwLock, RwLockReadGuard};

/// Versions of one record, ascending by epoch.
type Versions<T> = Vec<(Epoch, T)>;

fn at<T>(versions: &Versions<T>, epoch: Epoch) -> Option<&T> {
    versions.iter().rev().find(|(e, _)| *e <= epoch).map(|(_, v)| v)
}

#[derive(Debug, Default)]
struct Inner {
    roots: Vec<Node>,
    shard_roots: Vec<Versions<Node>>,
    nodes: HashMap<NodeKey, Versions<Children>>,
    leaves: HashMap<Index, Versions<LeafValue>>,
}

/// Every epoch of the tree in memory. Not durable: for tests and tree-only benchmarks.
#[derive(Debug)]
pub struct MemoryStore {
    config: TreeConfig,
    inner: RwLock<Inner>,
}

impl MemoryStore {
    pub fn new(config: TreeConfig) -> MemoryStore {
        let inner = Inner {
            roots: vec![Node::Empty],
            shard_roots: vec![vec![(Epoch(0), Node::Empty)]; config.shard_count()],
            ..Inner::default()
        };
        MemoryStore { config, inner: RwLock::new(inner) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A read view holding the store's read lock; commits wait until it is dropped.
#[derive(Debug)]
pub struct MemorySnapshot<'a> {
    epoch: Epoch,
    inner: RwLockReadGuard<'a, Inner>,
}

impl Snapshot for MemorySnapshot<'_> {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn root(&self) -> Result<Node, TreeError> {
        Ok(self.inner.roots[usize::try_from(self.epoch.0).expect("committed epoch fits usize")])
    }

    fn shard_roots(&self) -> Result<Vec<Node>, TreeError> {
        Ok(self.inner.shard_roots.iter().map(|v| *at(v, self.epoch).expect("epoch 0 root exists")).collect())
    }

    fn node(&self, key: &NodeKey) -> Result<Option<Children>, TreeError> {
        Ok(self.inner.nodes.get(key).and_then(|v| at(v, self.epoch)).copied())
    }

    fn leaf(&self, index: &Index) -> Result<Option<LeafValue>, TreeError> {
        Ok(self.inner.leaves.get(index).and_then(|v| at(v, self.epoch)).cloned())
    }
}

impl TreeStore for MemoryStore {
    type Snapshot<'a> = MemorySnapshot<'a>;

    fn config(&self) -> TreeConfig {
        self.config
    }

    fn latest_epoch(&self) -> Result<Epoch, TreeError> {
        Ok(Epoch(self.read().roots.len() as u64 - 1))
    }

    fn snapshot(&self, at: Epoch) -> Result<MemorySnapshot<'_>, TreeError> {
        let inner = self.read();
        let latest = Epoch(inner.roots.len() as u64 - 1);
        if at > latest {
            return Err(TreeError::EpochNotCommitted { requested: at, latest });
        }
        Ok(MemorySnapshot { epoch: at, inner })
    }

    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expected = Epoch(inner.roots.len() as u64);
        if batch.epoch != expected {
            return Err(TreeError::NonSequentialEpoch { expected, got: batch.epoch });
        }
        let e = batch.epoch;
        for (shard, root) in &batch.shard_roots {
            inner.shard_roots[shard.0 as usize].push((e, *root));
        }
        let all_nodes = batch.top_nodes.iter().chain(batch.shard_nodes.iter().flat_map(|(_, n)| n.iter()));
        for (key, children) in all_nodes {
            inner.nodes.entry(*key).or_default().push((e, *children));
        }
        for (index, leaf) in &batch.leaves {
            inner.leaves.entry(*index).or_default().push((e, leaf.clone()));
        }
        // Last: the new root makes the epoch visible (the whole commit holds the write lock anyway).
        inner.roots.push(batch.root);
        Ok(())
    }
}
