//! The in-memory store: the reference for the conformance suite and the "tree only" benchmarks.

use crate::error::TreeError;
use crate::store::{Child, Children, EpochBatch, NodeKey, Snapshot, TreeConfig, TreeStore};
use hashbrown::HashMap;
use keyfold_core::{Epoch, Index, LeafValue};
use std::sync::{RwLock, RwLockReadGuard};

#[derive(Debug, Default)]
struct Inner {
    /// Root of every committed epoch, indexed by epoch.
    roots: Vec<Child>,
    nodes: HashMap<(Epoch, NodeKey), Children>,
    leaves: HashMap<(Epoch, Index), LeafValue>,
}

/// Every epoch of the tree in memory. Not durable: for tests and tree-only benchmarks.
#[derive(Debug)]
pub struct MemoryStore {
    config: TreeConfig,
    inner: RwLock<Inner>,
}

impl MemoryStore {
    pub fn new(config: TreeConfig) -> MemoryStore {
        MemoryStore { config, inner: RwLock::new(Inner { roots: vec![Child::EMPTY], ..Inner::default() }) }
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
        Ok(self.inner.nodes.get(&(written, *key)).copied())
    }

    fn leaf(&self, index: &Index, written: Epoch) -> Result<Option<LeafValue>, TreeError> {
        Ok(self.inner.leaves.get(&(written, *index)).cloned())
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
        Ok(MemorySnapshot { epoch: at, inner })
    }

    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expected = latest(&inner).next();
        if batch.epoch != expected {
            return Err(TreeError::NonSequentialEpoch { expected, got: batch.epoch });
        }
        let e = batch.epoch;
        inner.nodes.reserve(batch.node_count());
        let all_nodes = batch.top_nodes.iter().chain(batch.shards.iter().flat_map(|s| s.nodes.iter()));
        for (key, children) in all_nodes {
            inner.nodes.insert((e, *key), *children);
        }
        inner.leaves.reserve(batch.leaves.len());
        for (index, leaf) in &batch.leaves {
            inner.leaves.insert((e, *index), leaf.clone());
        }
        // Last: the new root makes the epoch visible (the whole commit holds the write lock anyway).
        inner.roots.push(batch.root);
        Ok(())
    }
}
