use crate::error::TreeError;
use hashbrown::HashMap;
use keyfold_core::{Epoch, Hash, HashSuite, Index, LeafValue, MAX_SHARD_BITS, Node, ShardId};
use rayon::prelude::*;

/// Fixed at creation: the hash suite and the number of shard bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeConfig {
    pub suite: HashSuite,
    pub shard_bits: u8,
}

impl TreeConfig {
    pub fn new(suite: HashSuite, shard_bits: u8) -> Result<TreeConfig, TreeError> {
        if shard_bits > MAX_SHARD_BITS {
            return Err(TreeError::InvalidConfig(format!(
                "shard_bits is {shard_bits}; choose 0..={MAX_SHARD_BITS} (8 = 256 shards is the default)"
            )));
        }
        Ok(TreeConfig { suite, shard_bits })
    }

    pub fn shard_count(&self) -> usize {
        1usize << self.shard_bits
    }
}

/// Address of an interior node: its depth (0 = root) and the first `depth` bits of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    pub depth: u8,
    pub prefix: Index,
}

impl NodeKey {
    /// The interior node at `depth` on the path of `index`.
    pub fn on_path(index: &Index, depth: usize) -> NodeKey {
        NodeKey { depth: u8::try_from(depth).expect("interior node depth < 256"), prefix: index.prefix(depth) }
    }
}

/// A subtree as its parent stores it: its shape and hash, and the epoch whose records hold it
/// (the interior node record, or the leaf's value record). Records are immutable once their
/// epoch is committed, so following these pointers from a committed root reads exactly that
/// epoch's tree, whatever later epochs have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Child {
    pub node: Node,
    /// The epoch that wrote the record (`Epoch(0)` for `Empty`, which has no record).
    pub written: Epoch,
}

impl Child {
    pub const EMPTY: Child = Child { node: Node::Empty, written: Epoch(0) };
}

/// An interior node's two children (bit 0, bit 1), as stored.
pub type Children = [Child; 2];

/// Everything epoch `epoch` writes: the output of the pure update, input to [`TreeStore::commit`].
/// Every record is new and keyed by `epoch`; nothing of an earlier epoch is modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochBatch {
    pub epoch: Epoch,
    /// The new map root.
    pub root: Child,
    /// Dirty shards, ascending: each one's new root and interior nodes (depth >= shard_bits).
    pub shards: Vec<ShardUpdate>,
    /// Interior nodes above the shards (depth < shard_bits) that changed.
    pub top_nodes: Vec<(NodeKey, Children)>,
    /// New leaf values, ascending by index, one per index.
    pub leaves: Vec<(Index, LeafValue)>,
}

impl EpochBatch {
    /// Interior node records this batch writes.
    pub fn node_count(&self) -> usize {
        self.top_nodes.len() + self.shards.iter().map(|s| s.nodes.len()).sum::<usize>()
    }

    /// Recomputes the root from the records this batch writes and checks it is `self.root`:
    /// every interior node's hash from its children, every child pointer of this epoch against the
    /// record it names (and every record reached exactly once), every new leaf's hash from its
    /// value. Shards are checked in parallel, each against its own records (a shard's records only
    /// point inside the shard), then the levels above them against the shard roots. Run before the
    /// root is signed.
    pub fn verify(&self, suite: HashSuite, shard_bits: u8) -> Result<(), TreeError> {
        let leaf_hash = |index: &Index| -> Option<Hash> {
            let at = self.leaves.binary_search_by(|(i, _)| i.cmp(index)).ok()?;
            Some(suite.leaf_hash_of(index, &self.leaves[at].1))
        };
        self.shards
            .par_iter()
            .map(|shard| {
                let root_key = NodeKey::on_path(&shard.shard.first_index(shard_bits), usize::from(shard_bits));
                verify_records(suite, self.epoch, &shard.nodes, &[(root_key, shard.root)], &leaf_hash, &|_, _| None)
                    .map_err(|e| TreeError::corrupt(format!("epoch {} shard {}: {e}", self.epoch.0, shard.shard.0)))
            })
            .collect::<Result<Vec<()>, TreeError>>()?;
        // Above the shards, a pointer to depth `shard_bits` must be that shard's new root.
        let shard_root = |key: &NodeKey, child: &Child| -> Option<Result<(), String>> {
            if usize::from(key.depth) != usize::from(shard_bits) {
                return None;
            }
            let shard = key.prefix.shard(shard_bits);
            let found = self.shards.binary_search_by(|s| s.shard.cmp(&shard)).ok().map(|i| self.shards[i].root);
            Some(if found == Some(*child) {
                Ok(())
            } else {
                Err(format!("pointer to shard {} is not its new root", shard.0))
            })
        };
        let root_key = NodeKey { depth: 0, prefix: Index([0; 32]) };
        verify_records(suite, self.epoch, &self.top_nodes, &[(root_key, self.root)], &leaf_hash, &shard_root)
            .map_err(|e| TreeError::corrupt(format!("epoch {} above the shards: {e}", self.epoch.0)))
    }
}

/// Answers for a pointer that leads outside the records being checked (`None`: not external).
type ExternalCheck<'a> = dyn Fn(&NodeKey, &Child) -> Option<Result<(), String>> + Sync + 'a;

/// Checks `records` (interior nodes written by `epoch`) against the pointers `roots` into them:
/// each record reached exactly once from a root, each pointer's hash equal to its record's.
/// `external` answers for pointers that lead outside `records` (to shard roots).
fn verify_records(
    suite: HashSuite,
    epoch: Epoch,
    records: &[(NodeKey, Children)],
    roots: &[(NodeKey, Child)],
    leaf_hash: &(dyn Fn(&Index) -> Option<Hash> + Sync),
    external: &ExternalCheck<'_>,
) -> Result<(), String> {
    let mut hashes: HashMap<NodeKey, Hash> = HashMap::with_capacity(records.len());
    for (key, children) in records {
        let hash = suite.node_hash(&children[0].node.hash(suite), &children[1].node.hash(suite));
        if hashes.insert(*key, hash).is_some() {
            return Err(format!("node at depth {} written twice", key.depth));
        }
    }
    let mut reached = 0usize;
    let mut check = |key: NodeKey, child: &Child| -> Result<(), String> {
        if child.written != epoch {
            return Ok(()); // an older record, unchanged by this epoch
        }
        if let Some(result) = external(&key, child) {
            return result;
        }
        match child.node {
            Node::Empty => Ok(()),
            Node::Internal { hash } => match hashes.get(&key) {
                Some(h) if *h == hash => {
                    reached += 1;
                    Ok(())
                }
                Some(_) => Err(format!("node at depth {} does not hash to its parent's pointer", key.depth)),
                None => Err(format!("pointer to an unwritten node at depth {}", key.depth)),
            },
            Node::Leaf { index, hash } => match leaf_hash(&index) {
                Some(h) if h == hash => Ok(()),
                _ => Err(format!("leaf {} does not match its value", index.to_hex())),
            },
        }
    };
    for (key, child) in roots {
        check(*key, child)?;
    }
    for (key, children) in records {
        let depth = usize::from(key.depth) + 1;
        for (bit, child) in children.iter().enumerate() {
            let mut prefix = key.prefix;
            if bit == 1 {
                prefix.0[usize::from(key.depth) / 8] |= 0x80 >> (key.depth % 8);
            }
            if depth < 256 {
                check(NodeKey::on_path(&prefix, depth), child)?;
            } else if matches!(child.node, Node::Internal { .. }) {
                return Err("interior node below depth 255".into());
            } else if let Node::Leaf { index, hash } = child.node
                && child.written == epoch
                && leaf_hash(&index) != Some(hash)
            {
                return Err(format!("leaf {} does not match its value", index.to_hex()));
            }
        }
    }
    if reached != records.len() {
        return Err(format!("{} node records are not reachable from the root", records.len() - reached));
    }
    Ok(())
}

/// One shard's part of an epoch: the output of [`crate::update_shard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardUpdate {
    pub shard: ShardId,
    pub root: Child,
    pub nodes: Vec<(NodeKey, Children)>,
}

/// A read-only view of the map as committed at one epoch. Readers never see a half-applied epoch:
/// they start from a committed root and follow child pointers to immutable records.
pub trait Snapshot: Sync {
    fn epoch(&self) -> Epoch;
    fn root(&self) -> Result<Child, TreeError>;
    /// The interior node at `key` written by epoch `written`.
    fn node(&self, key: &NodeKey, written: Epoch) -> Result<Option<Children>, TreeError>;
    /// The leaf value of `index` written by epoch `written`.
    fn leaf(&self, index: &Index, written: Epoch) -> Result<Option<LeafValue>, TreeError>;
}

/// A durable (or in-memory) home for the epoch-versioned tree.
pub trait TreeStore: Send + Sync {
    type Snapshot<'a>: Snapshot
    where
        Self: 'a;

    fn config(&self) -> TreeConfig;
    /// The latest committed epoch (0 for a new store: the empty map).
    fn latest_epoch(&self) -> Result<Epoch, TreeError>;
    /// A view at `at`, which must be <= the latest committed epoch.
    fn snapshot(&self, at: Epoch) -> Result<Self::Snapshot<'_>, TreeError>;
    /// Makes `batch` visible atomically; `batch.epoch` must be latest + 1. Records a previous,
    /// interrupted attempt at the same epoch left behind are discarded first.
    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError>;
    /// The oldest epoch whose root is kept: 0 unless [`TreeStore::prune`] forgot earlier ones.
    fn oldest_epoch(&self) -> Result<Epoch, TreeError> {
        Ok(Epoch(0))
    }
    /// Retention (SPEC appendix A.1): forgets every root before `keep_from` (snapshots of them are
    /// refused with [`TreeError::EpochPruned`]) and deletes records that no kept root reaches,
    /// rewriting each shard's live records of epochs `<= keep_from` as one *base* of the tree at
    /// `keep_from`. A store may spread that work over calls (the report says how many shards still
    /// wait); every kept epoch reads exactly as before. `keep_from` is clamped to the latest epoch
    /// and never moves back.
    fn prune(&self, keep_from: Epoch) -> Result<PruneReport, TreeError> {
        let _ = keep_from;
        Err(TreeError::PruneUnsupported("run without a retention window"))
    }
    /// [`TreeStore::commit`] of a batch the caller no longer needs: a store that keeps records in
    /// memory moves them instead of copying.
    fn commit_owned(&self, batch: EpochBatch) -> Result<(), TreeError> {
        self.commit(&batch)
    }
}

/// What one [`TreeStore::prune`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The oldest epoch kept after the call.
    pub oldest: Epoch,
    /// Shards whose base was rewritten at `oldest` in this call.
    pub shards_rebased: u32,
    /// Shards whose base is still older than `oldest` (left for later calls).
    pub shards_pending: u32,
    /// Bytes of records deleted and written.
    pub bytes_deleted: u64,
    pub bytes_written: u64,
}

/// Checks a record read from storage against the pointer its parent holds: an interior node's
/// children must hash to the parent's hash of it. Every read that feeds a signed root or a
/// compare-and-set decision goes through this (or [`check_leaf_read`]), so that a record changed
/// on disk (a flipped bit, a torn page) stops the epoch with a named corruption error instead of
/// being signed into the next root. Reads start at a root that the caller checks against its
/// signed head, so each check extends that trust one level down.
pub fn check_node_read(suite: HashSuite, key: &NodeKey, pointer: &Child, children: &Children) -> Result<(), TreeError> {
    let Node::Internal { hash } = pointer.node else { return Ok(()) };
    let found = suite.node_hash(&children[0].node.hash(suite), &children[1].node.hash(suite));
    if found == hash {
        return Ok(());
    }
    Err(TreeError::corrupt(format!(
        "interior node at depth {}, prefix {}, written by epoch {} does not hash to its parent's pointer \
         ({} stored, {} recomputed): the tree store is corrupt (run `keyfold fsck`)",
        key.depth,
        key.prefix.to_hex(),
        pointer.written.0,
        hash.to_hex(),
        found.to_hex()
    )))
}

/// Checks a leaf value read from storage against the leaf hash its parent holds; returns the
/// value's version entry and commitment, hashed on the way.
pub fn check_leaf_read(suite: HashSuite, pointer: &Child, value: &LeafValue) -> Result<(Hash, Hash), TreeError> {
    let (entry, commitment) = suite.entry_and_commitment(value);
    let Node::Leaf { index, hash } = pointer.node else { return Ok((entry, commitment)) };
    if suite.leaf_hash(&index, &commitment) == hash {
        return Ok((entry, commitment));
    }
    Err(TreeError::corrupt(format!(
        "the value record of leaf {} written by epoch {} does not hash to its parent's pointer: the tree \
         store is corrupt (run `keyfold fsck`)",
        index.to_hex(),
        pointer.written.0
    )))
}
