//! The epoch job: the step that turns queued mutations into a signed, chained head.
//!
//! One run: cut the queue for the next epoch, taking the mutations after the cursor up to the caps
//! of [`EpochLimits`] and recording the last position taken in a marker (reused after a crash, so
//! the epoch consumes the same mutations at the same time), apply them in queue order
//! with compare-and-set on versions ([`keyfold_verify::apply_mutations`]), update the sharded map (pure batch,
//! verified against its root, then committed, after the archive), sign the head, verify the signature, commit head and
//! queue cursor, and remove the consumed entries. Every durability step in `job.rs` says what
//! recovery does if the process dies right after it; recovery is the same [`EpochJob::run_epoch`].

mod archives;
mod cosignatures;
mod crash;
mod directory;
mod error;
pub mod heads;
mod index;
mod job;
mod keys;
mod rollover;
mod schedule;
mod tile_files;

pub use archives::{ArchiveCheck, ArchiveSink, MemoryArchives, ObjectArchives, verify_archive};
pub use cosignatures::{
    CosignaturePut, CosignatureStore, MemoryCosignatures, cosignature_time, decide as decide_cosignature,
};
pub use crash::CrashPoint;
pub use directory::Directory;
pub use error::EpochError;
pub use heads::{HeadStore, MemoryHeadStore, check_next};
pub use index::{
    HistoryAfter, KeyVersion, MemoryOutcomeIndex, OutcomeIndex, OutcomeRecord, applied, check_index_order, outcome_of,
};
pub use job::{EpochJob, EpochLimits, EpochReport, MutationStatus, PhaseTimings, Retention};
pub use keys::{generate_key_files, load_public_key, load_signing_key};
pub use rollover::{JobKeys, KEY_HISTORY_FILE, KeyFiles, NEXT_KEY_FILE, PUBLIC_KEY_FILE, SIGNING_KEY_FILE};
pub use schedule::{
    Backoff, Schedule, SchedulerError, SchedulerHealth, SchedulerOptions, SchedulerState, backoff_seed, epoch_time_ms,
    run_scheduler,
};
pub use tile_files::TileFiles;
