//! One epoch, end to end, with its recovery story at every durability step.

use crate::archives::ArchiveSink;
use crate::crash::CrashPoint;
use crate::error::EpochError;
use crate::heads::HeadStore;
use crate::index::{HistoryAfter, KeyVersion, OutcomeIndex, OutcomeRecord};
use crate::rollover::JobKeys;
use crate::schedule::epoch_time_ms;
use crate::tile_files::TileFiles;
use hashbrown::HashSet;
use keyfold_archive::{ArchiveOutcome, ArchiveRow, read_archive_bytes, write_archive};
use keyfold_core::{
    Epoch, Hash, Head, HeadCounts, Index, LogTree, MapRoot, Mutation, MutationId, SignedHead, SigningKey,
    verify_checkpoint_note,
};
use keyfold_ingest::{Entry, Marker, Position, Queue, QueueError, Receipt, mutation_bytes};
use keyfold_map::{Map, PruneReport, TreeError, TreeStore};
use keyfold_verify::{
    Applied, KeyState, MutationOutcome, apply_mutations, archive_rows, hash_mutations, touched_indexes,
};
use rayon::prelude::*;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Ends a run as if the process died right after `$point`, when a test asked for it (`run_until`).
macro_rules! stop_at {
    ($crash:expr, $point:expr) => {
        if $crash == Some($point) {
            return Ok(None);
        }
    };
}

/// What publishing a head leaves to report once the epoch is indexed: writing the log's tile
/// files, and handing over to a rotated key.
type AfterPublish = (Result<(), EpochError>, Result<(), EpochError>);

/// The caps on what one epoch consumes, so that an epoch's memory is bounded whatever the
/// backlog: the cut takes mutations in queue order until either cap, and the rest waits for the
/// next epoch. An epoch always takes at least one mutation (a single one larger than `max_bytes`
/// still goes through, alone), so a backlog always drains.
///
/// An epoch's memory grows by at most about `5 x max_bytes + 2 KB x max_mutations` above the
/// process's fixed overhead (measured with `keyfold bench --value-bytes 32768`: 4.7 to 5x the
/// input bytes, the archive encoder and the map's write batch each holding a copy; ~1.5 KB per
/// small mutation). The cut itself holds the mutations and one read chunk (16 MiB) at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochLimits {
    /// Mutations one epoch consumes at most.
    pub max_mutations: u64,
    /// Bytes of mutations ([`mutation_bytes`]: their canonical encodings) one epoch consumes at most.
    pub max_bytes: u64,
}

impl EpochLimits {
    /// 100,000 mutations: W2-sized epochs (about 0.3 s of apply and tree work on 8 cores), and a
    /// per-mutation overhead (ids, indexes, outcomes, archive rows, tree work) of ~0.2 GB at most.
    pub const DEFAULT_MAX_MUTATIONS: u64 = 100_000;
    /// 64 MiB: an epoch of the largest values the default limits accept (~1,000 x 64 KiB) grows
    /// the process by ~0.3 GB, well inside a small server's memory (the 288 MB backlog
    /// took 2 GB in one epoch), and epochs still drain 64 MB each, a full default queue (1 GiB)
    /// in sixteen.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
    /// No cap (benchmarks that measure a given epoch size; tests).
    pub const UNLIMITED: EpochLimits = EpochLimits { max_mutations: u64::MAX, max_bytes: u64::MAX };
}

impl Default for EpochLimits {
    fn default() -> EpochLimits {
        EpochLimits { max_mutations: Self::DEFAULT_MAX_MUTATIONS, max_bytes: Self::DEFAULT_MAX_BYTES }
    }
}

/// The mutations a walk over the queue took, in queue order, and where it stopped.
struct Walk {
    mutations: Vec<(Position, Mutation)>,
    /// The last position the walk covered: its last mutation, or a marker of an earlier epoch
    /// after it (or the cursor, when it took nothing).
    through: Position,
    /// The mutations' bytes ([`mutation_bytes`]).
    bytes: u64,
    /// Stopped at a cap rather than at the end of what it was asked to read.
    capped: bool,
}

/// An epoch's cut: its marker's position, the marker, and what it consumes.
struct Cut {
    position: Position,
    marker: Marker,
    walk: Walk,
}

/// Entries, and bytes of them, read from the queue per call while cutting or loading: the
/// memory a read takes beyond the epoch's own mutations.
const READ_CHUNK: usize = 4096;
const READ_CHUNK_BYTES: u64 = 16 << 20;

/// Wall time of each phase of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTimings {
    pub cut: Duration,
    pub apply: Duration,
    pub tree: Duration,
    pub archive: Duration,
    pub sign: Duration,
    pub commit: Duration,
    /// Appending the head to the log of heads (the checkpoint's root, then the stored hashes).
    pub log: Duration,
    /// Retention, after the epoch is published: the map's prune and the archives' deletion.
    pub prune: Duration,
}

impl PhaseTimings {
    /// Each phase with its name, in pipeline order (metrics labels, benchmark reports).
    pub fn named(&self) -> [(&'static str, Duration); 8] {
        [
            ("cut", self.cut),
            ("apply", self.apply),
            ("tree", self.tree),
            ("archive", self.archive),
            ("sign", self.sign),
            ("commit", self.commit),
            ("log", self.log),
            ("prune", self.prune),
        ]
    }
}

/// What one epoch run produced.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub head: Head,
    /// The signed note, exactly as stored.
    pub note: String,
    /// One per consumed mutation, in queue order.
    pub outcomes: Vec<MutationOutcome>,
    /// The queue position of the epoch's marker.
    pub marker: Position,
    /// The last queue position the epoch consumed (the new cursor).
    pub through: Position,
    /// The bytes of the consumed mutations ([`mutation_bytes`]).
    pub input_bytes: u64,
    /// The cut stopped at a cap of [`EpochLimits`]: mutations are left for the next epoch.
    pub capped: bool,
    pub timings: PhaseTimings,
    /// What retention did after the epoch (`None` without a retention window).
    pub pruned: Option<PruneReport>,
}

/// A retention window: the map keeps the roots (and the records they reach) of the last `epochs`
/// epochs, and archives and epoch proofs before the oldest kept root are deleted unless
/// `keep_archives` (left to, say, an object store's lifecycle rule). Heads, the log of heads and
/// the outcome and history index are kept whole (SPEC section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub epochs: u64,
    pub keep_archives: bool,
}

/// Where a mutation is, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationStatus {
    /// Queued through this job and not yet consumed by an epoch.
    Pending,
    /// Consumed by an indexed epoch.
    Done(OutcomeRecord),
    /// Not pending and not indexed, while the index lags the signed heads (its writes failed, a
    /// full disk say, and it has not caught up yet): it may be in a signed epoch not yet indexed,
    /// so nobody can say it is unknown.
    NotYetIndexed { indexed_through: Epoch, latest: Epoch },
    /// Neither pending here nor in any signed epoch (the index is complete).
    Unknown,
}

/// The epoch job over a queue, a map and a head store.
#[derive(Debug)]
pub struct EpochJob<Q: Queue, S: TreeStore, H: HeadStore> {
    queue: Q,
    map: Map<S>,
    heads: H,
    archives: Arc<dyn ArchiveSink>,
    /// The signing key, a rotation's next key and the key before (SPEC section 6.6).
    keys: Mutex<JobKeys>,
    origin: String,
    /// Outcomes and key histories, derived from the archives (optional).
    index: Option<Arc<dyn OutcomeIndex>>,
    /// Ids queued and not yet consumed by an epoch (bounded by the queue's depth bound).
    pending: Mutex<HashSet<MutationId>>,
    limits: EpochLimits,
    /// The log of every signed map head (derived from the head store; rebuilt at open and checked
    /// against the latest checkpoint's signed root). 64 bytes per epoch.
    log: RwLock<LogTree>,
    /// Where the log is also written as C2SP tile files (optional), and whether the last epoch's
    /// files failed to be written (then every missing one is written before the next epoch).
    tiles: Option<TileFiles>,
    tiles_behind: std::sync::atomic::AtomicBool,
    /// The epochs whose heads announced a key rollover, ascending (derived from the heads).
    rollovers: RwLock<Vec<Epoch>>,
    retention: Option<Retention>,
}

impl<Q: Queue, S: TreeStore, H: HeadStore> EpochJob<Q, S, H> {
    /// Opens the job. A store with no head gets the signed genesis head (epoch 0, the empty map,
    /// time `now_ms`). Consumed queue entries that a crash left behind are removed.
    pub fn open(
        queue: Q,
        map: Map<S>,
        heads: H,
        archives: Arc<dyn ArchiveSink>,
        keys: impl Into<JobKeys>,
        origin: &str,
        now_ms: u64,
    ) -> Result<Self, EpochError> {
        keyfold_core::check_origin(origin)?;
        if queue.suite() != map.store().config().suite {
            return Err(EpochError::corrupt("the queue and the map use different hash suites"));
        }
        let job = EpochJob {
            queue,
            map,
            heads,
            archives,
            keys: Mutex::new(keys.into()),
            origin: origin.to_owned(),
            index: None,
            pending: Mutex::new(HashSet::new()),
            limits: EpochLimits::default(),
            log: RwLock::new(LogTree::new()),
            tiles: None,
            tiles_behind: std::sync::atomic::AtomicBool::new(false),
            rollovers: RwLock::new(Vec::new()),
            retention: None,
        };
        if job.heads.latest()?.is_none() {
            job.write_genesis(now_ms)?;
        }
        // Verified at every start: never chain onto a head this key did not sign, nor onto a log
        // whose stored heads do not hash to the root the latest checkpoint signs.
        job.sync_log()?;
        // Recovery: a key hand-over cut short after its announcing head was committed.
        job.previous_head()?;
        job.lock_keys().repair_public()?;
        // Recovery: a crash between the head commit and the queue removal left consumed entries.
        let cursor = job.heads.cursor()?;
        if cursor.0 > 0 {
            job.queue.remove_through(cursor)?;
        }
        job.load_pending(Position(cursor.0 + 1))?;
        Ok(job)
    }

    /// Attaches the outcome and history index, first indexing every published epoch it lacks from
    /// the archives (after a crash between a head and its indexing, or for a new index).
    pub fn with_index(mut self, index: Arc<dyn OutcomeIndex>) -> Result<Self, EpochError> {
        self.index = Some(index);
        self.catch_up_index(None)?;
        Ok(self)
    }

    /// Caps what each epoch consumes (default [`EpochLimits::default`]).
    pub fn with_limits(mut self, limits: EpochLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> EpochLimits {
        self.limits
    }

    /// Keeps only a window of epochs (applied after every epoch). A window of 0 epochs is refused,
    /// and so is a store that cannot prune (FoundationDB).
    pub fn with_retention(mut self, retention: Retention) -> Result<Self, EpochError> {
        if retention.epochs == 0 {
            return Err(
                TreeError::InvalidConfig("retain_epochs is 0: keep at least the latest epoch (1)".into()).into()
            );
        }
        self.map.store().prune(Epoch(0))?; // refused here, not after the first epoch, if unsupported
        self.retention = Some(retention);
        Ok(self)
    }

    pub fn retention(&self) -> Option<Retention> {
        self.retention
    }

    /// The oldest epoch whose map is kept (0 without retention).
    pub fn oldest_epoch(&self) -> Result<Epoch, EpochError> {
        Ok(self.map.store().oldest_epoch()?)
    }

    /// The ids of the mutations waiting in the queue (one pass over it at start, in bounded
    /// chunks; every entry's stored id is checked as it is read).
    fn load_pending(&self, from: Position) -> Result<(), EpochError> {
        let suite = self.queue.suite();
        let mut pending = self.lock_pending();
        let mut from = from;
        loop {
            let chunk = self.queue.read_bounded(from, READ_CHUNK, READ_CHUNK_BYTES)?;
            let Some((last, _)) = chunk.last() else { return Ok(()) };
            from = Position(last.0 + 1);
            pending.extend(chunk.iter().filter_map(|(_, e)| match e {
                Entry::Mutation(m) => Some(m.id(suite)),
                Entry::Marker(_) => None,
            }));
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashSet<MutationId>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `mutations` durably (what `POST /v1/mutations` does) and remembers them as pending.
    pub fn submit(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError> {
        let suite = self.queue.suite();
        let ids: Vec<MutationId> = mutations.iter().map(|m| m.id(suite)).collect();
        // Marked before the append, so an epoch that consumes them at once also unmarks them.
        let fresh: Vec<MutationId> = {
            let mut pending = self.lock_pending();
            ids.iter().filter(|id| pending.insert(**id)).copied().collect()
        };
        let appended = self.queue.append(mutations);
        if appended.is_err() {
            let mut pending = self.lock_pending();
            for id in &fresh {
                pending.remove(id);
            }
        }
        appended
    }

    /// Pending, consumed (with its outcome, when an index is attached) or unknown.
    pub fn mutation_status(&self, id: &MutationId) -> Result<MutationStatus, EpochError> {
        if let Some(index) = &self.index
            && let Some(record) = index.outcome(id)?
        {
            // An identical mutation may be pending again; the consumed one is reported.
            return Ok(MutationStatus::Done(record));
        }
        if self.lock_pending().contains(id) {
            return Ok(MutationStatus::Pending);
        }
        Ok(match self.index_lag()? {
            Some((indexed_through, latest)) => MutationStatus::NotYetIndexed { indexed_through, latest },
            None => MutationStatus::Unknown,
        })
    }

    /// `(indexed through, latest signed epoch)` while the index is behind the heads; `None` when it
    /// is complete (or there is no index).
    pub fn index_lag(&self) -> Result<Option<(Epoch, Epoch)>, EpochError> {
        let Some(index) = &self.index else { return Ok(None) };
        let indexed = index.indexed_through()?;
        let latest = self.heads.latest()?.map_or(Epoch(0), |(epoch, _)| epoch);
        Ok((indexed < latest).then_some((indexed, latest)))
    }

    /// Indexes every signed epoch the index lacks, from the archives. The scheduler calls it while
    /// [`EpochJob::index_lag`] says the index is behind, so it catches up as soon as its writes
    /// succeed again, without waiting for the next epoch.
    pub fn catch_up_index_now(&self) -> Result<(), EpochError> {
        self.catch_up_index(None)
    }

    /// The applied versions of the key at `index` after `after`, oldest first; `None` without an
    /// index.
    pub fn key_history(
        &self,
        index: &Index,
        after: HistoryAfter,
        limit: usize,
    ) -> Result<Option<Vec<KeyVersion>>, EpochError> {
        self.index.as_ref().map(|i| i.history(index, after, limit)).transpose()
    }

    /// Indexes every published epoch the index lacks: `fresh` rows for the epoch just run, the
    /// archives for any other.
    fn catch_up_index(&self, fresh: Option<(Epoch, &[ArchiveRow])>) -> Result<(), EpochError> {
        let Some(index) = &self.index else { return Ok(()) };
        let Some((latest, _)) = self.heads.latest()? else { return Ok(()) };
        let mut next = index.indexed_through()?.next();
        while next <= latest {
            match fresh {
                Some((epoch, rows)) if epoch == next => index.record(epoch, rows)?,
                _ => {
                    let bytes = self.archives.get(next)?.ok_or_else(|| self.no_archive_to_index(next))?;
                    index.record(next, &read_archive_bytes(bytes)?)?;
                }
            }
            next = next.next();
        }
        Ok(())
    }

    /// Why the index cannot be caught up at `epoch`: its archive is gone, deleted by a retention
    /// window (the index then cannot be rebuilt for it) or lost.
    fn no_archive_to_index(&self, epoch: Epoch) -> EpochError {
        let pruned = self.retention.is_some_and(|r| !r.keep_archives)
            && self.map.store().oldest_epoch().is_ok_and(|oldest| epoch < oldest);
        if pruned {
            return EpochError::corrupt(format!(
                "the index needs epoch {epoch}'s archive, which the retention window deleted: an index cannot be \
                 rebuilt for deleted epochs; restore index.redb from a backup (or its copy before it was removed)"
            ));
        }
        EpochError::corrupt(format!("epoch {epoch} has a signed head but no archive to index"))
    }

    pub fn queue(&self) -> &Q {
        &self.queue
    }

    pub fn map(&self) -> &Map<S> {
        &self.map
    }

    pub fn heads(&self) -> &H {
        &self.heads
    }

    pub fn archives(&self) -> &dyn ArchiveSink {
        self.archives.as_ref()
    }

    /// The key that signs the next head.
    pub fn public_key(&self) -> [u8; 32] {
        self.lock_keys().current.verifying_key().to_bytes()
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, JobKeys> {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The epochs whose heads announced a key rollover, ascending.
    pub fn rollovers(&self) -> Vec<Epoch> {
        self.rollovers.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The latest signed head, verified.
    pub fn latest_head(&self) -> Result<Head, EpochError> {
        let (_, note) = self.heads.latest()?.ok_or_else(|| EpochError::corrupt("no genesis head"))?;
        self.verify(&note)
    }

    fn verify(&self, note: &str) -> Result<Head, EpochError> {
        Ok(self.verify_checkpoint(note)?.head)
    }

    /// A stored head of `epoch`, checked: the latest one by its signature (the current key, or the
    /// one before when it announced the current key), an earlier one as the leaf of the log of
    /// heads (whose root the latest signature covers) — an earlier head may be signed by a key
    /// this job no longer has.
    pub fn verify_stored(&self, epoch: Epoch, note: &str) -> Result<Head, EpochError> {
        let log_size = self.log().size();
        if epoch.0 + 1 >= log_size {
            let head = self.verify(note)?;
            if head.epoch != epoch {
                return Err(EpochError::corrupt(format!("the head stored as epoch {epoch} says {}", head.epoch)));
            }
            return Ok(head);
        }
        let head = stored_head(note)?;
        if head.epoch != epoch || self.log().leaf_hash(epoch.0) != Some(head.leaf_hash()) {
            return Err(EpochError::corrupt(format!("the head stored as epoch {epoch} is not the log's leaf {epoch}")));
        }
        Ok(head)
    }

    /// Verifies one of this directory's latest heads: signed by the current key, or announcing it
    /// and signed by the key before.
    fn verify_checkpoint(&self, note: &str) -> Result<SignedHead, EpochError> {
        let peeked = keyfold_core::peek_checkpoint(note).ok().and_then(|c| Head::from_checkpoint(&c).ok());
        let signer = peeked.map_or_else(|| self.public_key(), |head| self.lock_keys().signer_of(&head));
        verify_checkpoint_note(note, &self.origin, &signer).map_err(|e| {
            if note.split('\n').nth(1).is_some_and(|line| line.starts_with("keyfold map v1 ")) {
                return EpochError::corrupt(
                    "this data directory's heads were signed before heads became C2SP checkpoints; this version \
                     cannot extend them (initialise a new directory)",
                );
            }
            e.into()
        })
    }

    /// Also writes the log of heads as C2SP tile files with `tiles`, first every one the log has
    /// that is missing (a new directory, or a crash between a head and its files).
    pub fn with_tile_files(mut self, tiles: TileFiles) -> Result<Self, EpochError> {
        let note = self.heads.latest()?.ok_or_else(|| EpochError::corrupt("no genesis head"))?.1;
        tiles.publish_all(&self.log(), &|epoch| self.leaf_body(epoch), &note)?;
        self.tiles = Some(tiles);
        Ok(self)
    }

    /// The body of the stored map head of `epoch` (leaf `epoch` of the log).
    fn leaf_body(&self, epoch: u64) -> Result<String, EpochError> {
        let note =
            self.heads.get(Epoch(epoch))?.ok_or_else(|| EpochError::corrupt(format!("no head for epoch {epoch}")))?;
        Ok(stored_head(&note)?.body())
    }

    /// Step 6b: the tile files the new head changed (derived data, like the index: a failure is
    /// reported, and every missing file is written before the next epoch).
    fn publish_tiles(&self, note: &str) -> Result<(), EpochError> {
        use std::sync::atomic::Ordering;
        let Some(tiles) = &self.tiles else { return Ok(()) };
        let log = self.log();
        let result = if self.tiles_behind.load(Ordering::Acquire) {
            tiles.publish_all(&log, &|epoch| self.leaf_body(epoch), note)
        } else {
            tiles.publish(&log, &|epoch| self.leaf_body(epoch), note)
        };
        self.tiles_behind.store(result.is_err(), Ordering::Release);
        result
    }

    /// The log of heads, read.
    pub fn log(&self) -> std::sync::RwLockReadGuard<'_, LogTree> {
        self.log.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn log_mut(&self) -> std::sync::RwLockWriteGuard<'_, LogTree> {
        self.log.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Brings the log of heads up to the head store's latest epoch (at open, and after a commit
    /// whose outcome was lost), then checks the latest checkpoint: its signature, its epoch, and
    /// that the log of the stored heads has exactly its signed size and root.
    fn sync_log(&self) -> Result<(), EpochError> {
        let (latest, note) = self.heads.latest()?.ok_or_else(|| EpochError::corrupt("no genesis head"))?;
        let signed = self.verify_checkpoint(&note)?;
        if signed.head.epoch != latest {
            return Err(EpochError::corrupt(format!("head stored as epoch {latest} says epoch {}", signed.head.epoch)));
        }
        let mut log = self.log_mut();
        for epoch in log.size()..=latest.0 {
            let note = self
                .heads
                .get(Epoch(epoch))?
                .ok_or_else(|| EpochError::corrupt(format!("epoch {latest} has a head but epoch {epoch} has none")))?;
            let head = stored_head(&note)?;
            if head.epoch.0 != epoch {
                return Err(EpochError::corrupt(format!("head stored as epoch {epoch} says epoch {}", head.epoch)));
            }
            log.push(head.leaf_hash());
            if head.next_key.is_some() {
                self.rollovers.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(head.epoch);
            }
        }
        let root = log.root(signed.checkpoint.size)?;
        if log.size() != signed.checkpoint.size || root != signed.checkpoint.root {
            return Err(EpochError::corrupt(format!(
                "the stored heads hash to a log of size {} with root {}, but the latest checkpoint signs size {} \
                 with root {}",
                log.size(),
                root.to_hex(),
                signed.checkpoint.size,
                signed.checkpoint.root.to_hex()
            )));
        }
        Ok(())
    }

    fn write_genesis(&self, now_ms: u64) -> Result<(), EpochError> {
        if self.map.latest_epoch()? != Epoch(0) {
            return Err(EpochError::corrupt("the map has epochs but there is no head"));
        }
        let suite = self.map.store().config().suite;
        let head = Head {
            origin: self.origin.clone(),
            suite,
            epoch: Epoch(0),
            root: self.map.root(Epoch(0))?.hash,
            previous: Hash::default(),
            archive: Hash::default(),
            time_ms: now_ms,
            counts: HeadCounts::default(),
            next_key: None,
        };
        let note = head.sign(&self.lock_keys().current, keyfold_core::log::root(&[head.leaf_hash()]));
        self.verify(&note)?;
        // Recovery if the process dies right after: the genesis head exists; the next open uses it
        // (and rebuilds the log from it).
        self.heads.commit(Epoch(0), &note, Position(0))
    }

    /// Runs the next epoch now (the operator trigger and the scheduler both call this). After a
    /// crash, the same call finishes the interrupted epoch with a byte-identical head.
    pub fn run_epoch(&self, now_ms: u64) -> Result<EpochReport, EpochError> {
        let result = self.run(now_ms, None).map(|report| report.expect("a run without a crash point runs to its end"));
        record_metrics(&result);
        result
    }

    /// As [`EpochJob::run_epoch`], stopping right after `crash` as if the process died there
    /// (tests only). `Ok(())` means the run reached `crash` and stopped; an error is a failure
    /// before it.
    #[doc(hidden)]
    pub fn run_until(&self, now_ms: u64, crash: CrashPoint) -> Result<(), EpochError> {
        match self.run(now_ms, Some(crash))? {
            None => Ok(()),
            Some(report) => {
                unreachable!("crash point {crash:?} was never reached: epoch {} finished", report.head.epoch)
            }
        }
    }

    /// The steps of an epoch, in order; `None` when it stopped at `crash` (tests only).
    fn run(&self, now_ms: u64, crash: Option<CrashPoint>) -> Result<Option<EpochReport>, EpochError> {
        self.catch_up_index(None)?; // after an indexing failure of the previous run
        let mut timings = PhaseTimings::default();
        let started = Instant::now();
        let (previous_epoch, previous) = self.previous_head()?;
        let epoch = previous_epoch.next();

        // 1. Cut and read: at most the caps of `EpochLimits`.
        let Cut { position: marker_position, marker, walk } = self.cut(epoch, previous.time_ms, now_ms)?;
        let Walk { mutations, bytes: input_bytes, capped, .. } = walk;
        timings.cut = started.elapsed();
        stop_at!(crash, CrashPoint::AfterRead);

        // 2. Apply with compare-and-set, against the previous epoch's values.
        let t = Instant::now();
        let (mut applied, proof) = self.apply(previous_epoch, &previous, &mutations)?;
        timings.apply = t.elapsed();
        stop_at!(crash, CrashPoint::AfterApply);

        // 3. The archive, durable before the head that signs its digest.
        let t = Instant::now();
        let (archive, rows) = self.archive_epoch(epoch, mutations, &mut applied, proof)?;
        timings.archive = t.elapsed();
        stop_at!(crash, CrashPoint::AfterArchiveWrite);

        // 4. The map.
        let t = Instant::now();
        let updates = std::mem::take(&mut applied.updates);
        let root = self.write_tree(previous_epoch, epoch, updates)?;
        timings.tree = t.elapsed();
        stop_at!(crash, CrashPoint::AfterNodeWrite);

        // 5. Sign, then verify the signature with the public key before anything is published.
        let (head, note) = self.signed_head(&previous, (root.hash, archive), &marker, applied.counts, &mut timings)?;
        stop_at!(crash, CrashPoint::AfterSign);

        // 6-7. Publish: head and cursor, the log, then the queue's consumed entries.
        let Some((tiles, handed_over)) = self.publish_head(&head, &note, marker.through, &mut timings, crash)? else {
            return Ok(None);
        };

        // 8. Derived data: outcomes and key histories indexed, then no longer pending; then a
        // failure to write the tile files (step 6) is reported.
        self.index_published(epoch, &rows, &applied.outcomes)?;
        tiles?;
        handed_over?;

        // 9. Retention: the map forgets epochs before the window, then their archives go.
        let t = Instant::now();
        let pruned = self.retain(epoch)?;
        timings.prune = t.elapsed();
        let (through, outcomes) = (marker.through, applied.outcomes);
        Ok(Some(EpochReport {
            head,
            note,
            outcomes,
            marker: marker_position,
            through,
            input_bytes,
            capped,
            timings,
            pruned,
        }))
    }

    /// Steps 6 and 7 of [`EpochJob::run`]; `None` when it stopped at `crash` (tests only). Returns
    /// the results of writing the tile files and of a key hand-over, reported after indexing.
    fn publish_head(
        &self,
        head: &Head,
        note: &str,
        through: Position,
        timings: &mut PhaseTimings,
        crash: Option<CrashPoint>,
    ) -> Result<Option<AfterPublish>, EpochError> {
        let epoch = head.epoch;
        // 6. Head and cursor, atomically, with a compare-and-set on the epoch.
        // Recovery if the process dies right after: the epoch is complete and published; the next
        // `open` removes the consumed queue entries (step 7).
        // If it dies before: no head for `epoch` exists; the re-run finds the same marker (the
        // queue's last), consumes the same mutations (cursor, through] and finds the map already
        // at `epoch` (checked, not rewritten), and signs the same bytes (ed25519 signatures are
        // deterministic). The cursor is `through`: mutations after it (before or after the
        // marker) wait for the next epoch.
        let t = Instant::now();
        self.heads.commit(epoch, note, through)?;
        timings.commit = t.elapsed();
        let tiles = self.append_to_log(head, note, timings);
        stop_at!(crash, CrashPoint::AfterHeadWrite);
        let handed_over = self.hand_over_after(head);

        // 7. Drop what this epoch consumed from the queue: positions up to `through`, which may
        // include markers of earlier epochs; this epoch's own marker is after `through` and goes
        // with a later epoch's removal (that epoch skips it as an earlier epoch's marker).
        // Recovery if the process dies right after: nothing to do. If it dies before: `open` does it.
        let t = Instant::now();
        self.queue.remove_through(through)?;
        timings.commit += t.elapsed();
        stop_at!(crash, CrashPoint::AfterCursorAdvance);

        Ok(Some((tiles, handed_over)))
    }

    /// Step 9: prunes the map to the window ending at `latest`, then deletes the archives and
    /// proofs before its oldest root. A failure is returned (and retried by the next epoch's step 9,
    /// which prunes to a window that includes this one's).
    fn retain(&self, latest: Epoch) -> Result<Option<PruneReport>, EpochError> {
        let Some(retention) = self.retention else { return Ok(None) };
        let keep_from = Epoch(latest.0.saturating_sub(retention.epochs - 1));
        let report = self.map.store().prune(keep_from)?;
        if !retention.keep_archives {
            self.delete_archives_before(report.oldest)?;
        }
        Ok(Some(report))
    }

    /// Deletes the archives and proofs of the epochs before `oldest` that the index has recorded
    /// (it is caught up from archives), oldest first, so what is left below `oldest` is always one
    /// run ending there: found by walking down to the first epoch without an archive.
    /// Recovery if the process dies after any deletion: the next call finds the rest of the run.
    fn delete_archives_before(&self, oldest: Epoch) -> Result<(), EpochError> {
        let indexed = match &self.index {
            Some(index) => index.indexed_through()?.0.saturating_add(1),
            None => u64::MAX,
        };
        let end = oldest.0.min(indexed);
        let mut start = end;
        while start > 1 && self.archives.size(Epoch(start - 1))?.is_some() {
            start -= 1;
        }
        for e in start..end {
            self.archives.delete(Epoch(e))?;
        }
        Ok(())
    }

    /// Step 2: the compare-and-set outcomes of `mutations` against the values of `previous_epoch`,
    /// read through the map's checked reads from the root `previous` signs. The updates come back
    /// without their values: each changed key's final value stays in its source mutation until
    /// the archive is written (step 3), so one copy is held at any time.
    fn apply(
        &self,
        previous_epoch: Epoch,
        previous: &Head,
        mutations: &[(Position, Mutation)],
    ) -> Result<(Applied, bytes::Bytes), EpochError> {
        let suite = self.map.store().config().suite;
        self.check_signed_root(previous_epoch, previous)?;
        let hashed = hash_mutations(suite, mutations);
        // The touched keys' states, and their epoch proof (SPEC section 3.2), in one walk.
        let touched = touched_indexes(&hashed);
        let (states, proof) = self.map.read_with_proof(&touched, previous_epoch)?;
        let current: Vec<(keyfold_core::Index, Option<KeyState>)> = touched.into_iter().zip(states).collect();
        let mut applied = apply_mutations(suite, previous_epoch.next(), &current, mutations, &hashed);
        for update in &mut applied.updates {
            update.1.value = None;
        }
        Ok((applied, bytes::Bytes::from(proof)))
    }

    /// Step 3: every consumed mutation and its outcome, archived; returns the archive's digest and
    /// the rows (applied rows with their values, for the history index; a copy of each changed
    /// key's final value goes to `applied.updates` for the map).
    /// Recovery if the process dies right after: the re-run writes the same bytes again
    /// (deterministic) and signs the same digest; a re-run that cuts the epoch again (lower caps)
    /// overwrites it, which is safe as no head names it yet.
    fn archive_epoch(
        &self,
        epoch: Epoch,
        mutations: Vec<(Position, Mutation)>,
        applied: &mut Applied,
        proof: bytes::Bytes,
    ) -> Result<(Hash, Vec<ArchiveRow>), EpochError> {
        let suite = self.map.store().config().suite;
        let mut rows = archive_rows(mutations, &applied.outcomes);
        let bytes = bytes::Bytes::from(write_archive(&rows)?);
        // The digest (CPU) while the archive and the epoch proof beside it are written and
        // fsynced (mostly waiting on the disk). Same recovery for both: rewritten by the re-run.
        let (archive, (stored, proven)) = rayon::join(
            || suite.archive_digest(&bytes),
            || rayon::join(|| self.archives.put(epoch, bytes.clone()), || self.archives.put_proof(epoch, proof)),
        );
        stored?;
        proven?;
        drop(bytes);
        // The map's updates take a copy of each changed key's final value; the applied rows keep
        // theirs for the history index (every version's value: SPEC section 1.3).
        for (update, &source) in applied.updates.iter_mut().zip(&applied.update_sources) {
            update.1.value.clone_from(&rows[source as usize].value);
        }
        rows.par_iter_mut().filter(|row| row.outcome != ArchiveOutcome::Applied).for_each(|row| row.value = None);
        Ok((archive, rows))
    }

    /// The latest head, verified, with the log of heads brought up to it (after a head commit
    /// whose outcome was lost: an error after it was durable).
    fn previous_head(&self) -> Result<(Epoch, Head), EpochError> {
        let (epoch, note) = self.heads.latest()?.ok_or_else(|| EpochError::corrupt("no genesis head"))?;
        let head = self.verify(&note)?;
        if self.log().size() != epoch.0 + 1 {
            self.sync_log()?;
        }
        if let Some(next) = head.next_key {
            self.lock_keys().hand_over(&next)?;
        }
        Ok((epoch, head))
    }

    /// Step 5: the head of `epoch` (the marker's), signed as the checkpoint of the log with it
    /// appended; the log root's time is the `log` phase, the rest `sign`.
    fn signed_head(
        &self,
        previous: &Head,
        (root, archive): (Hash, Hash),
        marker: &Marker,
        counts: HeadCounts,
        timings: &mut PhaseTimings,
    ) -> Result<(Head, String), EpochError> {
        let started = Instant::now();
        let head = Head {
            origin: self.origin.clone(),
            suite: self.map.store().config().suite,
            epoch: marker.epoch,
            root,
            previous: previous.hash(),
            archive,
            time_ms: marker.time_ms,
            counts,
            next_key: self.announced_key()?,
        };
        let log_started = Instant::now();
        let log_root = self.log_root_with(&head)?;
        timings.log = log_started.elapsed();
        let note = self.sign(&head, log_root)?;
        timings.sign = started.elapsed() - timings.log;
        Ok((head, note))
    }

    /// Step 6c, after the head commit: if the head announced a key rollover, the announced key
    /// signs from the next epoch on. If this fails (or the process dies before it), the next
    /// epoch (or start) hands over before it signs anything ([`EpochJob::previous_head`]).
    fn hand_over_after(&self, head: &Head) -> Result<(), EpochError> {
        head.next_key.map_or(Ok(()), |next| self.lock_keys().hand_over(&next))
    }

    /// The key the next head announces: one `keyfold rotate-key` staged, if any.
    fn announced_key(&self) -> Result<Option<keyfold_core::VerifyingKey>, EpochError> {
        let mut keys = self.lock_keys();
        keys.refresh_next()?;
        Ok(keys.next.as_ref().map(SigningKey::verifying_key))
    }

    /// Step 6b, after the head commit: the head appended to the log of heads (derived: `open`
    /// rebuilds it from the heads) and the tile files it changed. A tile failure is returned for
    /// the caller to report once the epoch's other steps are done.
    fn append_to_log(&self, head: &Head, note: &str, timings: &mut PhaseTimings) -> Result<(), EpochError> {
        let started = Instant::now();
        self.log_mut().push(head.leaf_hash());
        if head.next_key.is_some() {
            self.rollovers.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(head.epoch);
        }
        let tiles = self.publish_tiles(note);
        timings.log += started.elapsed();
        tiles
    }

    /// The root of the log of heads once `head` is appended (the log itself changes only after
    /// the head is committed).
    fn log_root_with(&self, head: &Head) -> Result<Hash, EpochError> {
        let log = self.log();
        if log.size() != head.epoch.0 {
            return Err(EpochError::corrupt(format!("the log has {} heads, epoch {} is next", log.size(), head.epoch)));
        }
        let mut frontier = log.frontier(log.size())?;
        frontier.push(head.leaf_hash());
        Ok(frontier.root())
    }

    /// Step 5: `head` signed as the checkpoint of the log with root `log_root`, and the signature
    /// verified with the public key before anything is published.
    fn sign(&self, head: &Head, log_root: Hash) -> Result<String, EpochError> {
        let note = head.sign(&self.lock_keys().current, log_root);
        let verified = self.verify_checkpoint(&note)?;
        assert_eq!(verified.head, *head, "a signed head must verify to itself");
        assert_eq!(verified.checkpoint.root, log_root, "a checkpoint must sign the log root");
        Ok(note)
    }

    /// Step 8: outcomes and key histories indexed, then no longer pending (in this order, so a
    /// status query never finds a consumed mutation in neither).
    /// Recovery if the process dies right after or before: the next start re-indexes from the
    /// archives whatever the index lacks, and rebuilds the pending set from the queue.
    fn index_published(
        &self,
        epoch: Epoch,
        rows: &[ArchiveRow],
        outcomes: &[MutationOutcome],
    ) -> Result<(), EpochError> {
        let indexed = self.catch_up_index(Some((epoch, rows)));
        {
            let mut pending = self.lock_pending();
            for outcome in outcomes {
                pending.remove(&outcome.id);
            }
        }
        indexed // an indexing failure is retried before the next epoch
    }

    /// The map's stored root of `epoch` must be the root its signed head names: every read of the
    /// epoch (compare-and-set values, the nodes the new root is built on) is checked level by
    /// level against its parent, starting from this root, so nothing read from a changed store
    /// reaches a signature.
    fn check_signed_root(&self, epoch: Epoch, head: &Head) -> Result<(), EpochError> {
        let stored = self.map.root(epoch)?;
        if stored.hash != head.root {
            return Err(EpochError::corrupt(format!(
                "the map's stored root of epoch {epoch} is {}, but its signed head names {}: the tree store is \
                 corrupt (run `keyfold fsck`)",
                stored.hash.to_hex(),
                head.root.to_hex()
            )));
        }
        Ok(())
    }

    /// The cut of `epoch`: the queue's last marker if it is this epoch's (an interrupted run cut
    /// it), else a new one after the mutations the caps admit, appended at the queue's end.
    fn cut(&self, epoch: Epoch, previous_time_ms: u64, now_ms: u64) -> Result<Cut, EpochError> {
        let cursor = self.heads.cursor()?;
        let time_ms = match self.queue.last_marker()? {
            Some((position, marker)) if marker.epoch == epoch => {
                if marker.through < cursor {
                    return Err(EpochError::corrupt(format!(
                        "the marker of epoch {epoch} ends at position {}, before the cursor {}",
                        marker.through.0, cursor.0
                    )));
                }
                let walk = self.walk(epoch, cursor, Some(marker.through), self.limits)?;
                if !walk.capped || walk.through == marker.through {
                    return Ok(Cut { position, marker, walk });
                }
                if self.map.latest_epoch()? == epoch {
                    // The map already holds this epoch as first cut (and maybe its archive): only
                    // that cut can finish it, above the caps lowered since.
                    tracing::warn!(%epoch, through = marker.through.0, "finishing an interrupted epoch cut above the current caps");
                    let walk = self.walk(epoch, cursor, Some(marker.through), EpochLimits::UNLIMITED)?;
                    return Ok(Cut { position, marker, walk });
                }
                // Cut again at the current caps (lowered since the interrupted run, after it died
                // of its size, say): nothing of the first cut is durable but its marker, which the
                // new one supersedes as the last. Its time is kept, so the head does not depend
                // on when the restart happened.
                marker.time_ms
            }
            Some((_, marker)) if marker.epoch > epoch => {
                return Err(EpochError::corrupt(format!(
                    "the queue's last marker is for epoch {}, but the next epoch is {epoch}",
                    marker.epoch
                )));
            }
            _ => epoch_time_ms(now_ms, previous_time_ms),
        };
        let walk = self.walk(epoch, cursor, None, self.limits)?;
        let marker = Marker { epoch, time_ms, through: walk.through };
        // Recovery if the process dies right after: the marker is durable and the queue's last;
        // the re-run finds it and consumes exactly (cursor, through] at its time, so the head comes
        // out byte-identical.
        let position = self.queue.append_marker(marker)?;
        Ok(Cut { position, marker, walk })
    }

    /// Takes the mutations after `cursor` in queue order, up to `end` (inclusive) if given and
    /// within `limits`; markers of earlier epochs (left behind capped cuts) are skipped. Holds no
    /// more than the mutations it takes and one read chunk.
    fn walk(
        &self,
        epoch: Epoch,
        cursor: Position,
        end: Option<Position>,
        limits: EpochLimits,
    ) -> Result<Walk, EpochError> {
        let mut walk = Walk { mutations: Vec::new(), through: cursor, bytes: 0, capped: false };
        loop {
            let left = limits.max_mutations.saturating_sub(walk.mutations.len() as u64);
            if left == 0 {
                walk.capped = true;
                return Ok(walk);
            }
            let entries = READ_CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX));
            let budget = limits.max_bytes.saturating_sub(walk.bytes).clamp(1, READ_CHUNK_BYTES);
            let chunk = self.queue.read_bounded(Position(walk.through.0 + 1), entries, budget)?;
            if chunk.is_empty() {
                return Ok(walk);
            }
            for (position, entry) in chunk {
                if end.is_some_and(|end| position > end) {
                    return Ok(walk);
                }
                match entry {
                    Entry::Mutation(m) => {
                        let size = mutation_bytes(&m);
                        if !walk.mutations.is_empty() && walk.bytes + size > limits.max_bytes {
                            walk.capped = true;
                            return Ok(walk);
                        }
                        walk.bytes += size;
                        walk.mutations.push((position, m));
                    }
                    Entry::Marker(marker) if marker.epoch < epoch => {} // left behind by a capped cut
                    Entry::Marker(marker) => {
                        return Err(EpochError::corrupt(format!(
                            "found the marker of epoch {} at position {} while cutting epoch {epoch}",
                            marker.epoch, position.0
                        )));
                    }
                }
                walk.through = position;
            }
        }
    }

    /// Writes the map for `epoch`, or, if an interrupted run already did, checks that the stored
    /// epoch equals what this run computes. Returns the committed root.
    fn write_tree(
        &self,
        previous: Epoch,
        epoch: Epoch,
        updates: Vec<(Index, keyfold_core::LeafValue)>,
    ) -> Result<MapRoot, EpochError> {
        let suite = self.map.store().config().suite;
        let latest = self.map.latest_epoch()?;
        let batch = self.map.prepare_at(previous, updates)?;
        // Nothing is signed unless the root is recomputed from exactly the records written.
        batch.verify(suite, self.map.store().config().shard_bits)?;
        let computed = batch.root.node.hash(suite);
        if latest == epoch {
            let stored = self.map.root(epoch)?;
            if stored.hash != computed {
                return Err(EpochError::corrupt(format!(
                    "the map already holds epoch {epoch} with root {}, but re-running it gives {}",
                    stored.hash.to_hex(),
                    computed.to_hex()
                )));
            }
            return Ok(stored);
        }
        if latest != previous {
            return Err(EpochError::corrupt(format!("the map is at epoch {latest}, the heads at {previous}")));
        }
        // Recovery if the process dies right after this commit: the map is at `epoch` with no head;
        // the re-run recomputes the same batch and only checks it against the stored root (above).
        Ok(self.map.commit(&batch)?)
    }
}

/// Epoch metrics for `/metrics` (no-ops unless the process installed a recorder).
fn record_metrics(result: &Result<EpochReport, EpochError>) {
    match result {
        Ok(report) => {
            for (phase, took) in report.timings.named() {
                metrics::histogram!("keyfold_epoch_phase_duration_seconds", "phase" => phase)
                    .record(took.as_secs_f64());
            }
            let c = &report.head.counts;
            metrics::counter!("keyfold_epochs_total").increment(1);
            metrics::counter!("keyfold_mutations_total", "outcome" => "applied").increment(c.applied);
            metrics::counter!("keyfold_mutations_total", "outcome" => "rejected").increment(c.rejected);
            metrics::counter!("keyfold_mutations_total", "outcome" => "duplicate").increment(c.duplicates);
            metrics::gauge!("keyfold_epoch_latest").set(report.head.epoch.0 as f64);
        }
        Err(e) => {
            let kind = if e.is_retryable() { "retryable" } else { "fatal" };
            metrics::counter!("keyfold_epoch_failures_total", "kind" => kind).increment(1);
        }
    }
}

/// The map head in a stored checkpoint note (its signature was checked when it was signed, and
/// the log of all of them is checked against the latest signed root at open).
fn stored_head(note: &str) -> Result<Head, EpochError> {
    let (text, _) = keyfold_core::split_note(note)?;
    Ok(Head::from_checkpoint(&keyfold_core::Checkpoint::parse(text)?)?)
}
