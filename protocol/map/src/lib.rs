//! The sharded, epoch-versioned sparse Merkle map.
//!
//! * `update`: the pure batch update ([`prepare_epoch`], per shard [`update_shard`]). (snapshot of epoch E, sorted leaf updates) -> [`EpochBatch`]
//!   for epoch E+1: new shard roots, new map root, and every node and leaf to write. Shards are
//!   computed in parallel on the caller's rayon pool, and big shards fork again inside.
//! * [`store`]: the [`TreeStore`] trait (snapshots at a committed epoch, atomic epoch commit) and its
//!   [`MemoryStore`] and [`RedbStore`] implementations; [`conformance`] is the suite every store
//!   passes.
//! * [`Map`]: the orchestrator that prepares, verifies and commits epochs and serves proofs.

pub mod conformance;
#[doc(hidden)]
pub mod encoding;
mod error;
mod map;
mod memory;
mod redb_store;
pub mod reopen;
mod store;
mod update;

pub use error::{ErrorClass, TreeError};
pub use map::{Lookup, Map, lookup_in};
pub use memory::MemoryStore;
pub use redb_store::{CommitFault, RedbOptions, RedbStore};
pub use store::{
    Child, Children, EpochBatch, NodeKey, ShardUpdate, Snapshot, TreeConfig, TreeStore, check_leaf_read,
    check_node_read,
};
pub use update::{HashedLeaf, prepare_epoch, prepare_epoch_hashed, update_shard};
