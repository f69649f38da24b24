//! The directory as its frontends see it: what the HTTP API and the CLI hold instead of an
//! [`EpochJob`] with its three store types. Every backend's stores stay behind it.

use crate::archives::ArchiveSink;
use crate::error::EpochError;
use crate::heads::HeadStore;
use crate::index::{HistoryAfter, KeyVersion};
use crate::job::{EpochJob, EpochReport, MutationStatus, Retention};
use keyfold_core::{Epoch, Hash, HashSuite, Index, LogError, Mutation, MutationId};
use keyfold_ingest::{Queue, QueueError, Receipt};
use keyfold_map::{Lookup, TreeStore};

/// The directory's reads and writes, with no store type in any signature. Calls may block on
/// storage: async callers run them on a blocking thread.
pub trait Directory: Send + Sync {
    fn suite(&self) -> HashSuite;
    fn shard_bits(&self) -> u8;
    /// The directory's ed25519 public key (heads verify with it).
    fn public_key(&self) -> [u8; 32];
    /// Appends a validated batch durably; a receipt is an acknowledgement.
    fn submit(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError>;
    /// The queue's pending mutations and their bytes (for back-pressure gauges).
    fn queue_load(&self) -> (u64, u64);
    fn mutation_status(&self, id: &MutationId) -> Result<MutationStatus, EpochError>;
    /// The applied versions of the key at `index` after `after`, oldest first; `None` without an index.
    fn key_history(
        &self,
        index: &Index,
        after: HistoryAfter,
        limit: usize,
    ) -> Result<Option<Vec<KeyVersion>>, EpochError>;
    /// `(indexed through, latest signed)` while the outcome index lags the heads.
    fn index_lag(&self) -> Result<Option<(Epoch, Epoch)>, EpochError>;
    /// The newest signed head note and its epoch.
    fn latest_head_note(&self) -> Result<Option<(Epoch, String)>, EpochError>;
    fn head_note(&self, epoch: Epoch) -> Result<Option<String>, EpochError>;
    /// A stored head note checked (the latest by its signature, earlier ones by the log of heads).
    fn verify_stored_head(&self, epoch: Epoch, note: &str) -> Result<keyfold_core::Head, EpochError>;
    /// Heads in the log of heads (the latest epoch + 1).
    fn log_size(&self) -> u64;
    /// The consistency proof between two sizes of the log of heads (empty for equal sizes).
    fn log_consistency(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LogError>;
    /// The inclusion proof of epoch `index`'s head in the log of `size` heads.
    fn log_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError>;
    /// A C2SP hash tile of the log of heads, if the log has all its hashes.
    fn log_tile(&self, level: u8, index: u64, width: u64) -> Option<Vec<u8>>;
    /// The epochs whose heads announced a key rollover, ascending (SPEC section 6.6).
    fn rollovers(&self) -> Vec<Epoch>;
    /// The key at `index` at a committed `epoch`, with its inclusion or absence proof.
    fn lookup(&self, index: &Index, epoch: Epoch) -> Result<Lookup, EpochError>;
    fn archives(&self) -> &dyn ArchiveSink;
    /// The retention window, if any, and the oldest epoch whose map is kept (0: every epoch).
    fn retention(&self) -> Option<Retention>;
    fn oldest_epoch(&self) -> Result<Epoch, EpochError>;
    /// Runs the next epoch now.
    fn run_epoch(&self, now_ms: u64) -> Result<EpochReport, EpochError>;
}

impl<Q: Queue, S: TreeStore, H: HeadStore> Directory for EpochJob<Q, S, H> {
    fn suite(&self) -> HashSuite {
        self.map().store().config().suite
    }

    fn shard_bits(&self) -> u8 {
        self.map().store().config().shard_bits
    }

    fn public_key(&self) -> [u8; 32] {
        EpochJob::public_key(self)
    }

    fn submit(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError> {
        EpochJob::submit(self, mutations)
    }

    fn queue_load(&self) -> (u64, u64) {
        (self.queue().depth(), self.queue().pending_bytes())
    }

    fn mutation_status(&self, id: &MutationId) -> Result<MutationStatus, EpochError> {
        EpochJob::mutation_status(self, id)
    }

    fn key_history(
        &self,
        index: &Index,
        after: HistoryAfter,
        limit: usize,
    ) -> Result<Option<Vec<KeyVersion>>, EpochError> {
        EpochJob::key_history(self, index, after, limit)
    }

    fn index_lag(&self) -> Result<Option<(Epoch, Epoch)>, EpochError> {
        EpochJob::index_lag(self)
    }

    fn latest_head_note(&self) -> Result<Option<(Epoch, String)>, EpochError> {
        self.heads().latest()
    }

    fn head_note(&self, epoch: Epoch) -> Result<Option<String>, EpochError> {
        self.heads().get(epoch)
    }

    fn verify_stored_head(&self, epoch: Epoch, note: &str) -> Result<keyfold_core::Head, EpochError> {
        self.verify_stored(epoch, note)
    }

    fn log_size(&self) -> u64 {
        self.log().size()
    }

    fn log_consistency(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, LogError> {
        self.log().consistency_proof(old_size, new_size)
    }

    fn log_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.log().inclusion_proof(index, size)
    }

    fn log_tile(&self, level: u8, index: u64, width: u64) -> Option<Vec<u8>> {
        self.log().tile(level, index, width)
    }

    fn rollovers(&self) -> Vec<Epoch> {
        EpochJob::rollovers(self)
    }

    fn lookup(&self, index: &Index, epoch: Epoch) -> Result<Lookup, EpochError> {
        Ok(self.map().lookup(index, epoch)?)
    }

    fn retention(&self) -> Option<Retention> {
        EpochJob::retention(self)
    }

    fn oldest_epoch(&self) -> Result<Epoch, EpochError> {
        EpochJob::oldest_epoch(self)
    }

    fn archives(&self) -> &dyn ArchiveSink {
        EpochJob::archives(self)
    }

    fn run_epoch(&self, now_ms: u64) -> Result<EpochReport, EpochError> {
        EpochJob::run_epoch(self, now_ms)
    }
}

impl std::fmt::Debug for dyn Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("suite", &self.suite()).field("shard_bits", &self.shard_bits()).finish()
    }
}
