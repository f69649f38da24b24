use crate::crash::CrashPoint;
use keyfold_core::HeadError;
use keyfold_ingest::QueueError;
use keyfold_map::TreeError;
use thiserror::Error;

/// Errors of the epoch job. `is_retryable` tells a scheduler whether to try again later.
#[derive(Debug, Error)]
pub enum EpochError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("map: {0}")]
    Tree(#[from] TreeError),
    #[error("head: {0}")]
    Head(#[from] HeadError),
    #[error("archive: {0}")]
    Archive(#[from] keyfold_archive::ArchiveError),
    #[error("head store I/O failed: {0}")]
    Io(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("inconsistent state, refusing to continue: {0}")]
    Corrupt(String),
    #[error("key file {path}: {message}")]
    Key { path: String, message: String },
    #[error("this process does not hold the epoch-writer lease ({0}); only the lease holder signs heads")]
    Fenced(String),
    #[error("injected crash at {0:?} (tests only)")]
    Crashed(CrashPoint),
}

impl EpochError {
    pub fn is_retryable(&self) -> bool {
        match self {
            EpochError::Queue(e) => e.is_retryable(),
            EpochError::Tree(e) => e.class() == keyfold_map::ErrorClass::Retryable,
            EpochError::Io(_) | EpochError::Crashed(_) | EpochError::Fenced(_) => true,
            EpochError::Head(_) | EpochError::Archive(_) | EpochError::Corrupt(_) | EpochError::Key { .. } => false,
        }
    }

    pub fn io(e: impl std::error::Error + Send + Sync + 'static) -> EpochError {
        EpochError::Io(Box::new(e))
    }
}
