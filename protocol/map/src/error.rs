use keyfold_core::{Epoch, StorageError};
use thiserror::Error;

/// Errors of the tree and its stores: the caller's mistakes (not retryable) and the one storage
/// error every store shares.
#[derive(Debug, Error)]
pub enum TreeError {
    #[error("epoch {requested} is not available: the latest committed epoch is {latest}")]
    EpochNotCommitted { requested: Epoch, latest: Epoch },
    /// Retention forgot the epoch: only roots from `oldest` on are kept.
    #[error("epoch {requested} is outside the retention window: the oldest epoch kept is {oldest}")]
    EpochPruned { requested: Epoch, oldest: Epoch },
    /// The store cannot prune (retention is configured for a backend that does not implement it).
    #[error("this store does not implement retention: {0}")]
    PruneUnsupported(&'static str),
    /// The compare-and-set on the epoch refused the commit (the map is not at `expected` - 1).
    #[error("cannot commit epoch {got}: the next epoch must be {expected}")]
    NonSequentialEpoch { expected: Epoch, got: Epoch },
    #[error("the batch lists index {0} twice; resolve mutations to one final value per key first")]
    DuplicateIndex(String),
    #[error("store was created with {stored}, but opened with {requested}")]
    ConfigMismatch { stored: String, requested: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl TreeError {
    /// True when the same operation may succeed later (only storage I/O and a lost lease).
    pub fn is_retryable(&self) -> bool {
        match self {
            TreeError::Storage(e) => e.is_retryable(),
            _ => false,
        }
    }

    pub fn io(e: impl std::error::Error + Send + Sync + 'static) -> TreeError {
        TreeError::Storage(StorageError::Io(Box::new(e)))
    }

    pub fn corrupt(what: impl Into<String>) -> TreeError {
        TreeError::Storage(StorageError::Corrupt(what.into()))
    }
}
