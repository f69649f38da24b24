use keyfold_core::{Epoch, HeadError, StorageError};
use keyfold_ingest::QueueError;
use keyfold_map::TreeError;
use thiserror::Error;

/// Errors of the epoch job and the stores it writes (heads, index, cosignatures, archives).
/// `is_retryable` tells a scheduler whether to try again later.
#[derive(Debug, Error)]
pub enum EpochError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("map: {0}")]
    Tree(#[from] TreeError),
    #[error("head: {0}")]
    Head(#[from] HeadError),
    /// The log of heads refused a size or index (a stored head is missing or out of order).
    #[error("log of heads: {0}")]
    Log(#[from] keyfold_core::LogError),
    #[error("archive: {0}")]
    Archive(#[from] keyfold_archive::ArchiveError),
    /// The head, index, cosignature or archive storage failed (the one storage error).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A store's compare-and-set on the epoch refused a write that is not for the next epoch.
    /// Nothing was overwritten; another writer or a bug got here first, so this run stops.
    #[error(
        "the {store} refused a record for epoch {got}: the next must be for epoch {expected}; nothing was overwritten"
    )]
    OutOfOrder { store: &'static str, expected: Epoch, got: Epoch },
    #[error("key file {path}: {message}")]
    Key { path: String, message: String },
}

impl EpochError {
    pub fn is_retryable(&self) -> bool {
        match self {
            EpochError::Queue(e) => e.is_retryable(),
            EpochError::Tree(e) => e.is_retryable(),
            EpochError::Storage(e) => e.is_retryable(),
            EpochError::Head(_)
            | EpochError::Log(_)
            | EpochError::Archive(_)
            | EpochError::OutOfOrder { .. }
            | EpochError::Key { .. } => false,
        }
    }

    pub fn io(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> EpochError {
        EpochError::Storage(StorageError::Io(e.into()))
    }

    /// Stored state contradicts itself: stop, run `keyfold fsck`.
    pub fn corrupt(what: impl Into<String>) -> EpochError {
        EpochError::Storage(StorageError::Corrupt(what.into()))
    }
}
