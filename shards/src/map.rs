//! The orchestrator: prepares epochs with the pure update, commits them, and serves proofs.

use crate::error::TreeError;
use crate::store::{EpochBatch, NodeKey, Snapshot, TreeStore};
use crate::update::prepare_epoch;
use keyfold_core::{Epoch, HashSuite, Index, LeafValue, MapRoot, Node, Proof, Terminal};

/// The answer to a lookup: the key's value at an epoch (if any) and the proof of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub value: Option<LeafValue>,
    pub proof: Proof,
}

/// A sparse Merkle map over a [`TreeStore`].
#[derive(Debug)]
pub struct Map<S: TreeStore> {
    store: S,
}

impl<S: TreeStore> Map<S> {
    pub fn new(store: S) -> Map<S> {
        Map { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn latest_epoch(&self) -> Result<Epoch, TreeError> {
        self.store.latest_epoch()
    }

    /// The map root at `epoch`.
    pub fn root(&self, epoch: Epoch) -> Result<MapRoot, TreeError> {
        let snapshot = self.store.snapshot(epoch)?;
        Ok(MapRoot { epoch, hash: snapshot.root()?.node.hash(self.store.config().suite) })
    }

    /// The batch that the next epoch would write for `updates` (one final value per index). Pure:
    /// reads the latest committed epoch, writes nothing.
    pub fn prepare(&self, updates: Vec<(Index, LeafValue)>) -> Result<EpochBatch, TreeError> {
        let snapshot = self.store.snapshot(self.store.latest_epoch()?)?;
        prepare_epoch(self.store.config(), &snapshot, updates)
    }

    /// Commits a batch from [`Map::prepare`] and re-reads the committed root to check it.
    pub fn commit(&self, batch: &EpochBatch) -> Result<MapRoot, TreeError> {
        self.store.commit(batch)?;
        let root = self.root(batch.epoch)?;
        let expected = batch.root.node.hash(self.store.config().suite);
        if root.hash != expected {
            return Err(TreeError::Corrupt(format!(
                "epoch {} committed root {} but the batch computed {}",
                batch.epoch.0,
                root.hash.to_hex(),
                expected.to_hex()
            )));
        }
        Ok(root)
    }

    /// Prepares and commits one epoch.
    pub fn apply(&self, updates: Vec<(Index, LeafValue)>) -> Result<MapRoot, TreeError> {
        let batch = self.prepare(updates)?;
        self.commit(&batch)
    }

    /// The value of `index` at `epoch` with its inclusion or absence proof.
    pub fn lookup(&self, index: &Index, epoch: Epoch) -> Result<Lookup, TreeError> {
        let snapshot = self.store.snapshot(epoch)?;
        lookup_in(&snapshot, self.store.config().suite, index)
    }
}

/// A lookup against an open snapshot (callers that serve many lookups reuse one snapshot): walks
/// from the committed root along the index's path, collecting sibling hashes.
pub fn lookup_in<T: Snapshot>(snapshot: &T, suite: HashSuite, index: &Index) -> Result<Lookup, TreeError> {
    let mut child = snapshot.root()?;
    let mut siblings = Vec::new();
    let read_leaf = |i: &Index, written: Epoch| {
        snapshot.leaf(i, written)?.ok_or_else(|| {
            TreeError::Corrupt(format!("leaf {} written by epoch {} has no value record", i.to_hex(), written.0))
        })
    };
    loop {
        let depth = siblings.len();
        let terminal = match child.node {
            Node::Empty => Terminal::Empty,
            Node::Leaf { index: leaf_index, .. } if leaf_index == *index => {
                let value = read_leaf(index, child.written)?;
                let proof = Proof::new(suite, snapshot.epoch(), *index, siblings, Terminal::Included);
                return Ok(Lookup { value: Some(value), proof });
            }
            Node::Leaf { index: other, .. } => {
                let value = read_leaf(&other, child.written)?;
                Terminal::OtherLeaf { index: other, commitment: suite.value_commitment(&value) }
            }
            Node::Internal { .. } => {
                let key = NodeKey::on_path(index, depth);
                let children = snapshot.node(&key, child.written)?.ok_or_else(|| {
                    TreeError::Corrupt(format!(
                        "interior node at depth {depth} on the path of {} is missing",
                        index.to_hex()
                    ))
                })?;
                let bit = usize::from(index.bit(depth));
                siblings.push(children[1 - bit].node.hash(suite));
                child = children[bit];
                continue;
            }
        };
        return Ok(Lookup { value: None, proof: Proof::new(suite, snapshot.epoch(), *index, siblings, terminal) });
    }
}
