use thiserror::Error;

/// Why a byte string is not a valid encoding. Decoding never panics on hostile input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("input ends after {len} bytes while reading {field}; the encoding is truncated")]
    Truncated { field: &'static str, len: usize },
    #[error("{extra} unexpected bytes after the end of the encoding")]
    TrailingBytes { extra: usize },
    #[error("unsupported proof format version {0} (this verifier knows version 1)")]
    UnsupportedFormat(u8),
    #[error("unknown hash suite id {0} (1 = blake3, 2 = sha256)")]
    UnknownSuite(u8),
    #[error("unknown proof terminal tag {0} (0 = empty, 1 = leaf of the key, 2 = other leaf)")]
    UnknownTerminal(u8),
    #[error("path depth {0} exceeds 256 levels")]
    DepthTooLarge(u16),
    #[error("non-canonical encoding: {0}")]
    NonCanonical(&'static str),
}

/// Why a proof does not prove what it was asked to prove.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("proof uses hash suite {found} but the directory uses {expected}")]
    SuiteMismatch { expected: &'static str, found: &'static str },
    #[error("proof is for epoch {found} but the root is for epoch {expected}")]
    EpochMismatch { expected: u64, found: u64 },
    #[error("proof is for another key (index {found}, expected {expected})")]
    IndexMismatch { expected: String, found: String },
    #[error("proof claims absence but a value was expected to be included")]
    ExpectedInclusion,
    #[error("proof claims inclusion but the key was expected to be absent")]
    ExpectedAbsence,
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    #[error("recomputed root {computed} does not match the signed root {expected}")]
    RootMismatch { expected: String, computed: String },
}

/// A failure of the storage under a store, the same for every backend (memory, redb,
/// FoundationDB) and every store (queue, map, heads, index, cosignatures). Each store's error
/// type carries it as one variant beside its own domain refusals, so "may I retry?" has one answer.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The storage could not be read or written (disk, file, cluster unavailable): nothing of the
    /// failed operation took effect; retrying it later may succeed.
    #[error("storage I/O failed: {0}")]
    Io(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This process does not hold the epoch-writer lease (another process took it over); only the
    /// lease holder writes. Retryable: the lease may come back to this process.
    #[error("this process does not hold the epoch-writer lease ({0}); only the lease holder writes")]
    Fenced(String),
    /// Stored bytes are undecodable or contradict each other. Not retryable: stop, run
    /// `keyfold fsck`, restore from a backup.
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// True when the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Io(_) | StorageError::Fenced(_) => true,
            StorageError::Corrupt(_) => false,
        }
    }

    pub fn io(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StorageError {
        StorageError::Io(e.into())
    }

    pub fn corrupt(what: impl Into<String>) -> StorageError {
        StorageError::Corrupt(what.into())
    }
}
