//! The sharded, epoch-versioned sparse Merkle map.
//!
//! * `update`: the pure batch update ([`prepare_epoch`], per shard [`update_shard`]). (snapshot of epoch E, sorted leaf updates) -> [`EpochBatch`]
//!   for epoch E+1: new shard roots, new map root, and every node and leaf to write. Shards are
//!   computed in parallel on the caller's rayon pool, and big shards fork again inside.
//! * [`store`]: the [`TreeStore`] trait (snapshots at a committed epoch, atomic epoch commit) and its
//!   in-memory [`MemoryStore`] (the redb and FoundationDB stores live in `storage/`);
//!   `keyfold-conformance` (`storage/conformance`) holds the suite every store passes.
//! * [`format`]: the storage records every backend writes (SPEC appendix A.1).
//! * [`Map`]: the orchestrator that prepares, verifies and commits epochs and serves proofs.

mod error;
pub mod format;
mod map;
mod memory;
mod store;
mod update;

pub use error::TreeError;
pub use map::{Lookup, Map, lookup_in};
pub use memory::MemoryStore;
pub use store::{
    Child, Children, EpochBatch, NodeKey, PruneReport, ShardUpdate, Snapshot, TreeConfig, TreeStore, check_leaf_read,
    check_node_read,
};
pub use update::{HashedLeaf, prepare_epoch, prepare_epoch_hashed, update_shard};
