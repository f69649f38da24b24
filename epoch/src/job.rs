//! One epoch, end to end, with its recovery story at every durability step.

use crate::apply::{MutationOutcome, Outcome, apply_mutations, hash_mutations, read_touched};
use crate::archives::ArchiveSink;
use crate::error::EpochError;
use crate::heads::HeadStore;
use crate::index::{HistoryAfter, KeyVersion, OutcomeIndex, OutcomeRecord};
use crate::schedule::epoch_time_ms;
use hashbrown::HashSet;
use keyfold_archive::{ArchiveOutcome, ArchiveRow, read_archive_bytes, write_archive};
use keyfold_core::{Epoch, Hash, Head, HeadCounts, Index, MapRoot, Mutation, MutationId, SigningKey, verify_head_note};
use keyfold_ingest::{Entry, Marker, Position, Queue, QueueError, Receipt};
use keyfold_shards::{Map, TreeStore};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An epoch's cut: its marker's position, the marker, and the mutations before it in queue order.
struct Cut {
    position: Position,
    marker: Marker,
    mutations: Vec<(Position, Mutation)>,
}

/// Entries read from the queue per call while cutting.
const READ_CHUNK: usize = 4096;

/// Where a test may stop a run, as if the process died right after that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The marker is durable and the epoch's mutations were read.
    AfterRead,
    /// Mutations applied in memory (nothing new is durable).
    AfterApply,
    /// The map's nodes and leaves for the epoch are committed.
    AfterNodeWrite,
    /// The epoch's archive is durable.
    AfterArchiveWrite,
    /// The head is signed (not stored).
    AfterSign,
    /// Head and cursor are committed.
    AfterHeadWrite,
    /// The consumed queue entries are removed.
    AfterCursorAdvance,
}

/// Wall time of each phase of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTimings {
    pub cut: Duration,
    pub apply: Duration,
    pub tree: Duration,
    pub archive: Duration,
    pub sign: Duration,
    pub commit: Duration,
}

impl PhaseTimings {
    /// Each phase with its name, in pipeline order (metrics labels, benchmark reports).
    pub fn named(&self) -> [(&'static str, Duration); 6] {
        [
            ("cut", self.cut),
            ("apply", self.apply),
            ("tree", self.tree),
            ("archive", self.archive),
            ("sign", self.sign),
            ("commit", self.commit),
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
    /// The queue position of the epoch's marker (the new cursor).
    pub marker: Position,
    pub timings: PhaseTimings,
}

/// Where a mutation is, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationStatus {
    /// Queued through this job and not yet consumed by an epoch.
    Pending,
    /// Consumed by an indexed epoch.
    Done(OutcomeRecord),
    /// Neither pending here nor in an indexed epoch.
    Unknown,
}

/// The epoch job over a queue, a map and a head store.
#[derive(Debug)]
pub struct EpochJob<Q: Queue, S: TreeStore, H: HeadStore> {
    queue: Q,
    map: Map<S>,
    heads: H,
    archives: Arc<dyn ArchiveSink>,
    key: SigningKey,
    origin: String,
    /// Outcomes and key histories, derived from the archives (optional).
    index: Option<Arc<dyn OutcomeIndex>>,
    /// Ids queued and not yet consumed by an epoch (bounded by the queue's depth bound).
    pending: Mutex<HashSet<MutationId>>,
}

impl<Q: Queue, S: TreeStore, H: HeadStore> EpochJob<Q, S, H> {
    /// Opens the job. A store with no head gets the signed genesis head (epoch 0, the empty map,
    /// time `now_ms`). Consumed queue entries that a crash left behind are removed.
    pub fn open(
        queue: Q,
        map: Map<S>,
        heads: H,
        archives: Arc<dyn ArchiveSink>,
        key: SigningKey,
        origin: &str,
        now_ms: u64,
    ) -> Result<Self, EpochError> {
        keyfold_core::check_origin(origin)?;
        if queue.suite() != map.store().config().suite {
            return Err(EpochError::Corrupt("the queue and the map use different hash suites".into()));
        }
        let job = EpochJob {
            queue,
            map,
            heads,
            archives,
            key,
            origin: origin.to_owned(),
            index: None,
            pending: Mutex::new(HashSet::new()),
        };
        match job.heads.latest()? {
            None => job.write_genesis(now_ms)?,
            Some((epoch, note)) => {
                // Verified at every start: never chain onto a head this key did not sign.
                let head = job.verify(&note)?;
                if head.epoch != epoch {
                    return Err(EpochError::Corrupt(format!("head stored as epoch {epoch} says epoch {}", head.epoch)));
                }
            }
        }
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

    /// The ids of the mutations waiting in the queue (one pass over it at start).
    fn load_pending(&self, from: Position) -> Result<(), EpochError> {
        let suite = self.queue.suite();
        let mut pending = self.lock_pending();
        let mut from = from;
        loop {
            let chunk = self.queue.read(from, READ_CHUNK)?;
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
        Ok(if self.lock_pending().contains(id) { MutationStatus::Pending } else { MutationStatus::Unknown })
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
                    let bytes = self.archives.get(next)?.ok_or_else(|| {
                        EpochError::Corrupt(format!("epoch {next} has a signed head but no archive to index"))
                    })?;
                    index.record(next, &read_archive_bytes(bytes)?)?;
                }
            }
            next = next.next();
        }
        Ok(())
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

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The latest signed head, verified.
    pub fn latest_head(&self) -> Result<Head, EpochError> {
        let (_, note) = self.heads.latest()?.ok_or_else(|| EpochError::Corrupt("no genesis head".into()))?;
        self.verify(&note)
    }

    fn verify(&self, note: &str) -> Result<Head, EpochError> {
        Ok(verify_head_note(note, &self.origin, &self.public_key())?)
    }

    fn write_genesis(&self, now_ms: u64) -> Result<(), EpochError> {
        if self.map.latest_epoch()? != Epoch(0) {
            return Err(EpochError::Corrupt("the map has epochs but there is no head".into()));
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
        };
        let note = head.sign(&self.key);
        self.verify(&note)?;
        // Recovery if the process dies right after: the genesis head exists; the next open uses it.
        self.heads.commit(Epoch(0), &note, Position(0))
    }

    /// Runs the next epoch now (the operator trigger and the scheduler both call this). After a
    /// crash, the same call finishes the interrupted epoch with a byte-identical head.
    pub fn run_epoch(&self, now_ms: u64) -> Result<EpochReport, EpochError> {
        let result = self.run(now_ms, None);
        record_metrics(&result);
        result
    }

    /// As [`EpochJob::run_epoch`], stopping right after `crash` as if the process died there.
    #[doc(hidden)]
    pub fn run_until(&self, now_ms: u64, crash: CrashPoint) -> Result<EpochReport, EpochError> {
        self.run(now_ms, Some(crash))
    }

    fn run(&self, now_ms: u64, crash: Option<CrashPoint>) -> Result<EpochReport, EpochError> {
        let stop = |point: CrashPoint| if crash == Some(point) { Err(EpochError::Crashed(point)) } else { Ok(()) };
        self.catch_up_index(None)?; // after an indexing failure of the previous run
        let mut timings = PhaseTimings::default();
        let started = Instant::now();
        let (previous_epoch, previous_note) =
            self.heads.latest()?.ok_or_else(|| EpochError::Corrupt("no genesis head".into()))?;
        let previous = self.verify(&previous_note)?;
        let epoch = previous_epoch.next();

        // 1. Cut and read.
        let Cut { position: marker_position, marker, mutations } = self.cut(epoch, previous.time_ms, now_ms)?;
        timings.cut = started.elapsed();
        stop(CrashPoint::AfterRead)?;

        // 2. Apply with compare-and-set, against the previous epoch's values.
        let t = Instant::now();
        let suite = self.map.store().config().suite;
        let hashed = hash_mutations(suite, &mutations);
        let current = read_touched(&self.map, &hashed, previous_epoch)?;
        let applied = apply_mutations(&current, &mutations, &hashed);
        timings.apply = t.elapsed();
        stop(CrashPoint::AfterApply)?;

        // 3. The map.
        let t = Instant::now();
        let root = self.write_tree(previous_epoch, epoch, applied.updates)?;
        timings.tree = t.elapsed();
        stop(CrashPoint::AfterNodeWrite)?;

        // 3b. The archive: every consumed mutation and its outcome, durable before the head that
        // signs its digest. Recovery if the process dies right after: the re-run writes the same
        // bytes again (deterministic) and signs the same digest.
        let t = Instant::now();
        let rows = archive_rows(suite, mutations, &applied.outcomes);
        let bytes = bytes::Bytes::from(write_archive(&rows)?);
        // The digest (CPU) while the file is written and fsynced (mostly waiting on the disk).
        let (archive, stored) =
            rayon::join(|| suite.archive_digest(&bytes), || self.archives.put(epoch, bytes.clone()));
        stored?;
        timings.archive = t.elapsed();
        stop(CrashPoint::AfterArchiveWrite)?;

        // 4. Sign, then verify the signature with the public key before anything is published.
        let t = Instant::now();
        let head = Head {
            origin: self.origin.clone(),
            suite,
            epoch,
            root: root.hash,
            previous: previous.hash(),
            archive,
            time_ms: marker.time_ms,
            counts: applied.counts,
        };
        let note = head.sign(&self.key);
        let verified = self.verify(&note)?;
        assert_eq!(verified, head, "a signed head must verify to itself");
        timings.sign = t.elapsed();
        stop(CrashPoint::AfterSign)?;

        // 5. Head and cursor, atomically, with a compare-and-set on the epoch.
        // Recovery if the process dies right after: the epoch is complete and published; the next
        // `open` removes the consumed queue entries (step 6).
        // If it dies before: no head for `epoch` exists; the re-run finds the same marker, the same
        // mutations and the map already at `epoch` (checked, not rewritten), and signs the same bytes
        // (ed25519 signatures are deterministic).
        let t = Instant::now();
        self.heads.commit(epoch, &note, marker_position)?;
        stop(CrashPoint::AfterHeadWrite)?;

        // 6. Drop what this epoch consumed from the queue.
        // Recovery if the process dies right after: nothing to do. If it dies before: `open` does it.
        self.queue.remove_through(marker_position)?;
        timings.commit = t.elapsed();
        stop(CrashPoint::AfterCursorAdvance)?;

        // 7. Derived data: outcomes and key histories indexed, then no longer pending (in this
        // order, so a status query never finds a consumed mutation in neither).
        // Recovery if the process dies right after or before: the next start re-indexes from the
        // archives whatever the index lacks, and rebuilds the pending set from the queue.
        let indexed = self.catch_up_index(Some((epoch, &rows)));
        {
            let mut pending = self.lock_pending();
            for outcome in &applied.outcomes {
                pending.remove(&outcome.id);
            }
        }
        indexed?; // an indexing failure is retried before the next epoch
        Ok(EpochReport { head, note, outcomes: applied.outcomes, marker: marker_position, timings })
    }

    /// Finds this epoch's marker after the cursor (left by an interrupted run) or appends one, and
    /// returns it with the mutations before it, in queue order.
    fn cut(&self, epoch: Epoch, previous_time_ms: u64, now_ms: u64) -> Result<Cut, EpochError> {
        let mut mutations = Vec::new();
        let mut from = Position(self.heads.cursor()?.0 + 1);
        let mut appended = None;
        loop {
            let chunk = self.queue.read(from, READ_CHUNK)?;
            let Some((last, _)) = chunk.last() else {
                if appended.is_some() {
                    return Err(EpochError::Corrupt(format!("the marker of epoch {epoch} vanished from the queue")));
                }
                let marker = Marker { epoch, time_ms: epoch_time_ms(now_ms, previous_time_ms) };
                // Recovery if the process dies right after: the marker is durable; the re-run
                // finds it here and reuses its time, so the head comes out byte-identical.
                appended = Some(self.queue.append_marker(marker)?);
                continue;
            };
            from = Position(last.0 + 1);
            for (position, entry) in chunk {
                match entry {
                    Entry::Mutation(m) => mutations.push((position, m)),
                    Entry::Marker(marker) if marker.epoch == epoch => return Ok(Cut { position, marker, mutations }),
                    Entry::Marker(marker) => {
                        return Err(EpochError::Corrupt(format!(
                            "found the marker of epoch {} at position {} while cutting epoch {epoch}",
                            marker.epoch, position.0
                        )));
                    }
                }
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
                return Err(EpochError::Corrupt(format!(
                    "the map already holds epoch {epoch} with root {}, but re-running it gives {}",
                    stored.hash.to_hex(),
                    computed.to_hex()
                )));
            }
            return Ok(stored);
        }
        if latest != previous {
            return Err(EpochError::Corrupt(format!("the map is at epoch {latest}, the heads at {previous}")));
        }
        // Recovery if the process dies right after this commit: the map is at `epoch` with no head;
        // the re-run recomputes the same batch and only checks it against the stored root (above).
        Ok(self.map.commit(&batch)?)
    }
}

/// The archive rows of an epoch: each consumed mutation (queue order) with its outcome. The
/// mutations move into the rows (keys, values and signatures are not copied).
pub(crate) fn archive_rows(
    suite: keyfold_core::HashSuite,
    mutations: Vec<(Position, Mutation)>,
    outcomes: &[MutationOutcome],
) -> Vec<ArchiveRow> {
    assert_eq!(mutations.len(), outcomes.len(), "one outcome per mutation");
    mutations
        .into_par_iter()
        .zip(outcomes)
        .with_min_len(1024)
        .map(|((position, m), o)| {
            debug_assert_eq!(position, o.position);
            let (outcome, new_version, reason, leaf_hash) = match &o.outcome {
                Outcome::Applied { version } => {
                    let leaf = suite.leaf_hash_parts(&o.index, *version, m.value.as_deref());
                    (ArchiveOutcome::Applied, Some(version.0), None, Some(leaf))
                }
                Outcome::Rejected(reason) => (ArchiveOutcome::Rejected, None, Some(reason.to_string()), None),
                Outcome::Duplicate => (ArchiveOutcome::Duplicate, None, None, None),
            };
            ArchiveRow {
                position: position.0,
                mutation_id: o.id.0,
                key_index: Some(keyfold_core::Hash(o.index.0)),
                tombstone: m.value.is_none(),
                key: Some(m.key),
                value: m.value,
                owner_signature: m.owner_signature,
                expected_version: m.expected_version.0,
                new_version,
                outcome,
                reason,
                leaf_hash,
            }
        })
        .collect()
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
