//! The embedded backend: every Keyfold store in redb files of one data directory (layout in
//! README, records in SPEC appendix A).
//!
//! * [`RedbQueue`] (`queue.redb`): the durable mutation queue with group commit (many concurrent
//!   appenders share one fsync).
//! * [`RedbStore`] (`map/`): the sharded, epoch-versioned map, one file per shard group plus
//!   `meta.redb`.
//! * [`RedbHeadStore`] (`heads.redb`), [`RedbOutcomeIndex`] (`index.redb`),
//!   [`RedbCosignatures`] (`cosignatures.redb`).
//!
//! After an I/O error in a write (a failed write or fsync, a full disk) a store drops its file
//! handle and reopens it on next use ([`reopen::ReopeningDb`]), which runs redb's own recovery as
//! after a crash; [`faults`] injects such errors in tests.

mod cosignatures;
pub mod faults;
mod heads;
mod index;
mod prune;
mod queue;
pub mod reopen;
mod stores;
mod tree;

pub use cosignatures::RedbCosignatures;
pub use heads::RedbHeadStore;
pub use index::RedbOutcomeIndex;
pub use prune::REBASE_SPREAD;
pub use queue::{DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, RedbQueue, RedbQueueOptions};
pub use stores::{Layout, Stores, StoresOptions, open};
pub use tree::{CommitFault, RedbOptions, RedbStore};

/// redb's page cache for the small heads and index files.
pub(crate) const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// A redb error of a head, index or cosignature store, as the epoch job's I/O error (retryable).
pub(crate) fn epoch_io(e: impl Into<redb::Error>) -> keyfold_epoch::EpochError {
    keyfold_epoch::EpochError::io(e.into())
}

/// Whether a failed head, index or cosignature write was an I/O failure (the handle is then
/// dropped and the file reopened on next use: [`reopen::ReopeningDb::write`]).
pub(crate) fn epoch_failed_io(e: &keyfold_epoch::EpochError) -> bool {
    matches!(e, keyfold_epoch::EpochError::Storage(keyfold_core::StorageError::Io(_)))
}

/// A redb error of the queue, as the queue's I/O error (retryable).
pub(crate) fn queue_io(e: impl Into<redb::Error>) -> keyfold_ingest::QueueError {
    keyfold_ingest::QueueError::io(e.into())
}
