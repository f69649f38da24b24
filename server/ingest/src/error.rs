use keyfold_core::{MutationId, Position, StorageError};
use thiserror::Error;

/// Why a batch of mutations was refused before anything was queued. Always the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("the batch is empty: send at least one mutation")]
    EmptyBatch,
    #[error("the batch has {count} mutations; send at most {max} per request")]
    BatchTooLarge { count: usize, max: usize },
    #[error("mutation {at}: the key is empty")]
    EmptyKey { at: usize },
    #[error("mutation {at}: the key is {len} bytes; keys may be at most {max} bytes")]
    KeyTooLong { at: usize, len: usize, max: usize },
    #[error("mutation {at}: the value is {len} bytes; values may be at most {max} bytes")]
    ValueTooLarge { at: usize, len: usize, max: usize },
    #[error("mutation {at}: the owner signature is {len} bytes; at most {max} bytes are accepted")]
    SignatureTooLarge { at: usize, len: usize, max: usize },
    #[error("mutation {at}: {problem}")]
    Key { at: usize, problem: KeyError },
}

/// Why a key is not a valid identity (SPEC section 5: keys are UTF-8 in Unicode NFC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("the key is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence); keys are UTF-8 text")]
    NotUtf8 { valid_up_to: usize },
    #[error(
        "the key is not in Unicode Normalization Form C (NFC); normalise it to NFC before sending \
         (one address must have one spelling: NFD or other forms would be a second identity)"
    )]
    NotNfc,
}

/// Queue failures, classified: `Full` is back-pressure (retry later, HTTP 503 + Retry-After).
#[derive(Debug, Error)]
pub enum QueueError {
    #[error(
        "the queue holds {depth} pending mutations of {bytes} bytes and accepts at most {max} mutations and \
         {max_bytes} bytes; retry after the next epoch"
    )]
    Full { depth: u64, max: u64, bytes: u64, max_bytes: u64 },
    #[error("the queue is shut down")]
    Closed,
    #[error("queue {0}")]
    Storage(#[from] StorageError),
    /// A queued mutation's bytes no longer hash to the id stored with it (the one its receipt
    /// acknowledged): they changed on disk. Fatal; the mutation is never applied or signed.
    #[error(
        "queue storage is corrupt: the mutation at position {position} no longer matches the id it was \
         acknowledged with (stored {stored}, its bytes hash to {computed}); refusing to apply it: restore \
         queue.redb from a backup, or remove the entry once the client has been told to resend",
        position = .position.0,
        stored = .stored.to_hex(),
        computed = .computed.to_hex()
    )]
    MutationIdMismatch { position: Position, stored: MutationId, computed: MutationId },
    #[error("the batch is {bytes} bytes encoded; this queue appends at most {max} bytes at once: send smaller batches")]
    TooLarge { bytes: usize, max: usize },
}

impl QueueError {
    /// True when the same request may succeed later (back-pressure or a transient I/O failure).
    /// Nothing of a failed append was acknowledged, so retrying never loses or doubles a mutation
    /// beyond what duplicate detection (same mutation id) already handles.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Full { .. } => true,
            QueueError::Storage(e) => e.is_retryable(),
            QueueError::Closed | QueueError::MutationIdMismatch { .. } | QueueError::TooLarge { .. } => false,
        }
    }

    pub fn io(e: impl std::error::Error + Send + Sync + 'static) -> QueueError {
        QueueError::Storage(StorageError::Io(Box::new(e)))
    }

    pub fn corrupt(what: impl Into<String>) -> QueueError {
        QueueError::Storage(StorageError::Corrupt(what.into()))
    }
}
