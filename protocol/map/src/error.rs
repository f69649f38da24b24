use keyfold_core::Epoch;
use thiserror::Error;

/// How the caller should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try the same operation again later (I/O hiccup, contention).
    Retryable,
    /// The caller asked for something invalid; retrying the same request cannot succeed.
    Invalid,
    /// Stored state is inconsistent or unreadable; stop and run recovery or `fsck`.
    Fatal,
}

/// Errors of the tree and its stores.
#[derive(Debug, Error)]
pub enum TreeError {
    #[error("epoch {requested} is not available: the latest committed epoch is {latest}")]
    EpochNotCommitted { requested: Epoch, latest: Epoch },
    #[error("cannot commit epoch {got}: the next epoch must be {expected}")]
    NonSequentialEpoch { expected: Epoch, got: Epoch },
    #[error("the batch lists index {0} twice; resolve mutations to one final value per key first")]
    DuplicateIndex(String),
    #[error("store was created with {stored}, but opened with {requested}")]
    ConfigMismatch { stored: String, requested: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
    #[error("storage I/O failed: {0}")]
    Io(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("this process does not hold the epoch-writer lease ({0}); only the lease holder commits epochs")]
    Fenced(String),
}

impl TreeError {
    pub fn class(&self) -> ErrorClass {
        match self {
            TreeError::EpochNotCommitted { .. }
            | TreeError::NonSequentialEpoch { .. }
            | TreeError::DuplicateIndex(_)
            | TreeError::ConfigMismatch { .. }
            | TreeError::InvalidConfig(_) => ErrorClass::Invalid,
            TreeError::Corrupt(_) => ErrorClass::Fatal,
            TreeError::Io(_) | TreeError::Fenced(_) => ErrorClass::Retryable,
        }
    }

    pub fn io(e: impl std::error::Error + Send + Sync + 'static) -> TreeError {
        TreeError::Io(Box::new(e))
    }
}
