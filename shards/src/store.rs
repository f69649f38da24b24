use crate::error::TreeError;
use keyfold_core::{Epoch, HashSuite, Index, LeafValue, MAX_SHARD_BITS, Node, ShardId};

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

/// An interior node's two children (bit 0, bit 1), as stored.
pub type Children = [Node; 2];

/// Everything epoch `epoch` writes: the output of the pure update, input to [`TreeStore::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochBatch {
    pub epoch: Epoch,
    /// The new map root.
    pub root: Node,
    /// Shard roots that changed.
    pub shard_roots: Vec<(ShardId, Node)>,
    /// Interior nodes at depth >= shard_bits, grouped by shard, shards ascending.
    pub shard_nodes: Vec<(ShardId, Vec<(NodeKey, Children)>)>,
    /// Interior nodes above the shards (depth < shard_bits) that changed.
    pub top_nodes: Vec<(NodeKey, Children)>,
    /// New leaf values, ascending by index, one per index.
    pub leaves: Vec<(Index, LeafValue)>,
}

/// A read-only view of the map as committed at one epoch. Readers never see a half-applied epoch.
pub trait Snapshot: Sync {
    fn epoch(&self) -> Epoch;
    fn root(&self) -> Result<Node, TreeError>;
    /// All `2^shard_bits` shard roots.
    fn shard_roots(&self) -> Result<Vec<Node>, TreeError>;
    /// The interior node at `key` as of this epoch, `None` if it is not an interior node.
    fn node(&self, key: &NodeKey) -> Result<Option<Children>, TreeError>;
    /// The value of the leaf at `index` as of this epoch.
    fn leaf(&self, index: &Index) -> Result<Option<LeafValue>, TreeError>;
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
    /// Makes `batch` visible atomically; `batch.epoch` must be latest + 1.
    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError>;
}
