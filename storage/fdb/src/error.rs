//! Errors of the FoundationDB backend, and how a failed transaction maps onto the error type of
//! the trait it implements (queue, tree, heads).
//!
//! Inside a transaction closure, a domain refusal (queue full, epoch out of order, lease lost) is
//! returned as `FdbBindingError::CustomError`, which ends the retry loop; FoundationDB's own
//! retryable errors (conflicts, `transaction_too_old`, `commit_unknown_result`) are retried by
//! `Database::run` and only surface once the database's retry limit or timeout is spent.

use foundationdb::{FdbBindingError, FdbError};
use keyfold_core::StorageError;
use keyfold_epoch::EpochError;
use keyfold_ingest::QueueError;
use keyfold_map::TreeError;
use thiserror::Error;

/// Failures of setting up the backend; operations report through the trait's own error types.
#[derive(Debug, Error)]
pub enum FdbBackendError {
    #[error("the cluster file path {0} is not valid UTF-8; move the cluster file to a UTF-8 path")]
    NonUtf8Path(String),
    #[error("FoundationDB: {0}")]
    Fdb(#[from] FdbError),
    #[error("FoundationDB: {0}")]
    Binding(#[from] FdbBindingError),
    #[error("no epoch-writer lease within {waited_ms} ms: {holder}")]
    LeaseTimeout { waited_ms: u64, holder: String },
}

impl FdbBackendError {
    /// Retrying later may succeed (cluster unavailable, another writer holds the lease).
    pub fn is_retryable(&self) -> bool {
        match self {
            FdbBackendError::NonUtf8Path(_) => false,
            FdbBackendError::Fdb(e) => e.is_retryable(),
            FdbBackendError::Binding(e) => e.get_fdb_error().is_some_and(FdbError::is_retryable),
            FdbBackendError::LeaseTimeout { .. } => true,
        }
    }
}

/// The epoch-writer lease was not held when a transaction checked it.
#[derive(Debug, Error)]
#[error("{0}")]
pub(crate) struct LeaseLost(pub(crate) String);

/// Aborts a transaction closure with a domain error (no retry).
pub(crate) fn abort(e: impl std::error::Error + Send + Sync + 'static) -> FdbBindingError {
    FdbBindingError::CustomError(Box::new(e))
}

/// The error a failed transaction closure means for the trait's error type `T`: the domain
/// error it aborted with, a lost lease (fenced), or a storage failure (I/O).
fn domain_error<T>(e: FdbBindingError) -> T
where
    T: std::error::Error + Send + Sync + From<StorageError> + 'static,
{
    match e {
        FdbBindingError::CustomError(b) => match b.downcast::<T>() {
            Ok(domain) => *domain,
            Err(b) => match b.downcast::<LeaseLost>() {
                Ok(lost) => T::from(StorageError::Fenced(lost.0)),
                Err(other) => T::from(StorageError::Io(other)),
            },
        },
        other => T::from(StorageError::Io(Box::new(other))),
    }
}

pub(crate) fn queue_error(e: FdbBindingError) -> QueueError {
    domain_error(e)
}

pub(crate) fn tree_error(e: FdbBindingError) -> TreeError {
    domain_error(e)
}

pub(crate) fn epoch_error(e: FdbBindingError) -> EpochError {
    domain_error(e)
}
