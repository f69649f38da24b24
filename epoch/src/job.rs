//! One epoch, end to end, with its recovery story at every durability step.

use crate::apply::{MutationOutcome, Outcome, apply_mutations, hash_mutations};
use crate::archives::ArchiveSink;
use crate::error::EpochError;
use crate::heads::HeadStore;
use crate::schedule::epoch_time_ms;
use hashbrown::HashMap;
use keyfold_archive::{ArchiveOutcome, ArchiveRow, write_archive};
use keyfold_core::{Epoch, Hash, Head, HeadCounts, Index, MapRoot, Mutation, SigningKey, verify_head_note};
use keyfold_ingest::{Entry, Marker, Position, Queue};
use keyfold_shards::{Map, TreeStore};
use std::sync::Arc;
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

/// The epoch job over a queue, a map and a head store.
#[derive(Debug)]
pub struct EpochJob<Q: Queue, S: TreeStore, H: HeadStore> {
    queue: Q,
    map: Map<S>,
    heads: H,
    archives: Arc<dyn ArchiveSink>,
    key: SigningKey,
    origin: String,
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
        let job = EpochJob { queue, map, heads, archives, key, origin: origin.to_owned() };
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
        Ok(job)
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
        self.run(now_ms, None)
    }

    /// As [`EpochJob::run_epoch`], stopping right after `crash` as if the process died there.
    #[doc(hidden)]
    pub fn run_until(&self, now_ms: u64, crash: CrashPoint) -> Result<EpochReport, EpochError> {
        self.run(now_ms, Some(crash))
    }

    fn run(&self, now_ms: u64, crash: Option<CrashPoint>) -> Result<EpochReport, EpochError> {
        let stop = |point: CrashPoint| if crash == Some(point) { Err(EpochError::Crashed(point)) } else { Ok(()) };
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
        let mut touched: Vec<Index> = hashed.iter().map(|(_, index)| *index).collect();
        touched.sort_unstable();
        touched.dedup();
        let values = self.map.get_many(&touched, previous_epoch)?;
        let current: HashMap<Index, _> = touched.into_iter().zip(values).collect();
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
        let bytes = write_archive(&archive_rows(suite, &mutations, &applied.outcomes))?;
        let archive = suite.archive_digest(&bytes);
        self.archives.put(epoch, &bytes)?;
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

/// The archive rows of an epoch: each consumed mutation (queue order) with its outcome.
pub(crate) fn archive_rows(
    suite: keyfold_core::HashSuite,
    mutations: &[(Position, Mutation)],
    outcomes: &[MutationOutcome],
) -> Vec<ArchiveRow> {
    assert_eq!(mutations.len(), outcomes.len(), "one outcome per mutation");
    mutations
        .iter()
        .zip(outcomes)
        .map(|((position, m), o)| {
            debug_assert_eq!(*position, o.position);
            let (outcome, new_version, reason, leaf_hash) = match &o.outcome {
                Outcome::Applied { version } => {
                    let leaf = keyfold_core::LeafValue { version: *version, value: m.value.clone() };
                    (ArchiveOutcome::Applied, Some(version.0), None, Some(suite.leaf_hash_of(&o.index, &leaf)))
                }
                Outcome::Rejected(reason) => (ArchiveOutcome::Rejected, None, Some(reason.to_string()), None),
                Outcome::Duplicate => (ArchiveOutcome::Duplicate, None, None, None),
            };
            ArchiveRow {
                position: position.0,
                mutation_id: o.id.0,
                key_index: Some(keyfold_core::Hash(o.index.0)),
                key: Some(m.key.clone()),
                value: m.value.clone(),
                tombstone: m.value.is_none(),
                owner_signature: m.owner_signature.clone(),
                expected_version: m.expected_version.0,
                new_version,
                outcome,
                reason,
                leaf_hash,
            }
        })
        .collect()
}
