//! Ingest: validating mutations and appending them to the durable queue.
//!
//! * [`validate`]: pure checks of a batch against [`Limits`], with errors a person can act on.
//! * [`Queue`]: the multi-writer, single-reader queue the epoch job drains: durable batched
//!   appends that return positions, epoch markers (with the last position each epoch consumes),
//!   range reads bounded in entries and bytes, removal after commit, and bounds on depth and bytes
//!   that push back. Every stored mutation carries its acknowledged id, checked on every read.
//!   [`MemoryQueue`] is the in-memory one; the durable ones live in `storage/` (redb, FoundationDB)
//!   and run the same suite (`keyfold-conformance`).

mod error;
mod limits;
mod memory;
mod queue;

pub use error::{KeyError, QueueError, ValidationError};
pub use limits::{Limits, check_key_text, validate};
pub use memory::MemoryQueue;
pub use queue::{
    Entry, MUTATION_RECORD_OVERHEAD, Marker, Position, Queue, Receipt, Slot, decode_entry, decode_last_marker,
    encode_entry, encode_last_marker, encode_marker, encode_mutation, mutation_bytes, record_bytes,
    record_mutation_bytes, record_mutation_id, upgrade_legacy_record,
};
