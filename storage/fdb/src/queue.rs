//! The mutation queue in FoundationDB.
//!
//! Frontends *stage* appends under versionstamped keys: nobody reads a tail or picks a number, so
//! appends from any number of frontends never conflict, and the receipt carries the versionstamp.
//! The epoch writer *sequences*: it takes a read version R, and moves every staged entry below the
//! cut `(R + 1) || 0x0000` into the numbered log, in versionstamp order, in chunks (each chunk
//! reads and advances the `next` counter, so two sequencers serialise on it and the result is the
//! same). Nothing can be staged below a cut once it is taken, so the log order is fixed. The
//! marker goes into the log after what it cuts: the epoch consumes the recorded versionstamp range
//! `[previous cut, this cut)`.

use crate::error::{abort, queue_error};
use crate::keys::Layout;
use crate::lease::{EpochWriterLease, check};
use foundationdb::options::{MutationType, StreamingMode};
use foundationdb::{Database, FdbBindingError, RangeOption, RetryableTransaction, Transaction};
use futures::executor::block_on;
use keyfold_core::{HashSuite, Mutation, MutationId};
use keyfold_ingest::{
    Entry, Marker, Position, Queue, QueueError, Receipt, Slot, decode_entry, decode_last_marker, encode_last_marker,
    encode_marker, encode_mutation, record_mutation_bytes, record_mutation_id,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most bytes (keys and values) one append writes: under FoundationDB's 10,000,000-byte
/// transaction limit with room for the guard keys and the depth counter.
pub const MAX_APPEND_BYTES: usize = 8_000_000;

/// Entries moved or removed per transaction: ~1 MB at typical mutation sizes (FoundationDB
/// advises transactions under 1 MB), far below the 10 MB / 5 s limits even at the largest.
const CHUNK_ENTRIES: usize = 1_000;
const CHUNK_BYTES: usize = 1_000_000;

/// The slot in front of a log value: the versionstamp the entry was staged under (12 zero bytes
/// for a marker, which is never staged).
const SLOT_LEN: usize = 12;

/// The bounds of an [`FdbQueue`]: pending mutations, and bytes of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    pub max_depth: u64,
    /// Bytes of pending mutations ([`keyfold_ingest::mutation_bytes`]).
    pub max_bytes: u64,
}

/// The FoundationDB queue of one directory.
pub struct FdbQueue {
    db: Arc<Database>,
    layout: Layout,
    suite: HashSuite,
    bounds: QueueBounds,
    /// Markers and removals need the epoch-writer lease; appends never do.
    lease: Option<Arc<EpochWriterLease>>,
    /// The depth and bytes last read, for [`Queue::depth`] and [`Queue::pending_bytes`], which
    /// cannot fail.
    depth_seen: AtomicU64,
    bytes_seen: AtomicU64,
}

/// A log value: the entry's slot, then its record.
fn log_value(slot: &[u8; SLOT_LEN], record: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(SLOT_LEN + record.len());
    value.extend_from_slice(slot);
    value.extend_from_slice(record);
    value
}

/// The slot and the record of the log value at `position`.
fn split_log_value(position: u64, value: &[u8]) -> Result<(&[u8], &[u8]), QueueError> {
    value
        .split_at_checked(SLOT_LEN)
        .ok_or_else(|| QueueError::corrupt(format!("log entry {position} is shorter than its slot")))
}

impl std::fmt::Debug for FdbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbQueue").field("bounds", &self.bounds).finish_non_exhaustive()
    }
}

fn read_u64_be(bytes: Option<&[u8]>, default: u64) -> Result<u64, FdbBindingError> {
    match bytes {
        None => Ok(default),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| abort(QueueError::corrupt("a queue counter is not 8 bytes"))),
    }
}

fn read_counter(bytes: Option<&[u8]>) -> u64 {
    // Written only by atomic adds of 8-byte little-endian integers; never negative when
    // consistent, clamped at 0 if an operator cleared keys by hand.
    bytes.and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, |b| u64::try_from(i64::from_le_bytes(b)).unwrap_or(0))
}

impl FdbQueue {
    pub fn new(
        db: Arc<Database>,
        layout: Layout,
        suite: HashSuite,
        bounds: QueueBounds,
        lease: Option<Arc<EpochWriterLease>>,
    ) -> FdbQueue {
        FdbQueue { db, layout, suite, bounds, lease, depth_seen: AtomicU64::new(0), bytes_seen: AtomicU64::new(0) }
    }

    /// As [`Queue::append`] after an earlier attempt of the same batch ended with an unknown
    /// commit outcome: answers with the landed attempt's receipts if it landed, else stages it.
    /// For the conformance runner, which cannot make a commit's outcome unknown on purpose.
    #[doc(hidden)]
    pub fn append_after_unknown_outcome(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError> {
        let (ids, entries) = self.encode(mutations)?;
        block_on(self.stage(&ids, &entries, true)).map_err(queue_error)
    }

    /// The ids and records of a batch, refused if one transaction cannot hold it.
    fn encode(&self, mutations: Vec<Mutation>) -> Result<(Vec<MutationId>, Vec<Vec<u8>>), QueueError> {
        if mutations.len() > usize::from(u16::MAX) {
            return Err(QueueError::TooLarge { bytes: usize::MAX, max: MAX_APPEND_BYTES });
        }
        let ids: Vec<MutationId> = mutations.iter().map(|m| m.id(self.suite)).collect();
        let entries: Vec<Vec<u8>> = ids.iter().zip(&mutations).map(|(id, m)| encode_mutation(id, m)).collect();
        let key_bytes = self.layout.staged_len() + 4 + self.layout.queue_guard(&[0; 32]).len() + 16;
        let bytes = entries.iter().map(|e| e.len() + key_bytes).sum::<usize>();
        if bytes > MAX_APPEND_BYTES {
            return Err(QueueError::TooLarge { bytes, max: MAX_APPEND_BYTES });
        }
        Ok((ids, entries))
    }

    /// Stages `entries` in one transaction; returns their slots. `maybe_committed`: an earlier
    /// attempt's outcome is unknown (see [`Self::append_after_unknown_outcome`]).
    async fn stage(
        &self,
        ids: &[MutationId],
        entries: &[Vec<u8>],
        mut maybe_committed: bool,
    ) -> Result<Vec<Receipt>, FdbBindingError> {
        let n = u64::try_from(entries.len()).expect("batch length fits u64");
        let bytes: u64 = entries.iter().filter_map(|e| record_mutation_bytes(e)).sum();
        let mut trx: Transaction = self.db.create_trx()?;
        loop {
            if maybe_committed && let Some(receipts) = self.landed(&trx, ids).await? {
                // The previous attempt's commit outcome was unknown, and it did land: answer with
                // its receipts instead of staging the batch a second time.
                return Ok(receipts);
            }
            // Back-pressure from snapshot reads: appends never conflict on the counters, so the
            // bounds are approximate under concurrency (they can be exceeded by the appends in flight).
            let depth = read_counter(trx.get(&self.layout.queue_depth(), true).await?.as_deref());
            let pending = read_counter(trx.get(&self.layout.queue_bytes(), true).await?.as_deref());
            if depth + n > self.bounds.max_depth || pending + bytes > self.bounds.max_bytes {
                let QueueBounds { max_depth, max_bytes } = self.bounds;
                return Err(abort(QueueError::Full { depth, max: max_depth, bytes: pending, max_bytes }));
            }
            for (i, (id, entry)) in ids.iter().zip(entries).enumerate() {
                let i = u16::try_from(i).expect("batch length checked against u16");
                trx.atomic_op(&self.layout.staged_template(i), entry, MutationType::SetVersionstampedKey);
                trx.atomic_op(
                    &self.layout.queue_guard(&id.0.0),
                    &Layout::guard_template(i),
                    MutationType::SetVersionstampedValue,
                );
            }
            let add = i64::try_from(n).expect("batch length fits i64").to_le_bytes();
            trx.atomic_op(&self.layout.queue_depth(), &add, MutationType::Add);
            let add = i64::try_from(bytes).expect("batch bytes fit i64").to_le_bytes();
            trx.atomic_op(&self.layout.queue_bytes(), &add, MutationType::Add);
            let versionstamp = trx.get_versionstamp();
            // Recovery if the process dies right after this commit: the batch is durable and staged;
            // the client got no receipt and may resend it (the epoch marks the copy a duplicate).
            match trx.commit().await {
                Ok(_) => {
                    let stamp = versionstamp.await?;
                    let receipts = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            let mut slot = [0u8; 12];
                            slot[..10].copy_from_slice(&stamp[..10]);
                            slot[10..].copy_from_slice(&u16::try_from(i).expect("checked").to_be_bytes());
                            Receipt { id: *id, slot: Slot::Versionstamp(slot) }
                        })
                        .collect();
                    return Ok(receipts);
                }
                Err(e) => {
                    maybe_committed |= e.is_maybe_committed();
                    trx = e.on_error().await?; // retryable: back off and reset; otherwise fail
                }
            }
        }
    }

    /// After an unknown commit outcome: the receipts of the batch if every one of its guards is
    /// there (the attempt landed), `None` if not (it did not; stage again). Guards stay until the
    /// entry's epoch is committed and the entry removed, so sequencing in between does not hide
    /// a landed attempt.
    async fn landed(&self, trx: &Transaction, ids: &[MutationId]) -> Result<Option<Vec<Receipt>>, FdbBindingError> {
        let mut receipts = Vec::with_capacity(ids.len());
        for id in ids {
            match trx.get(&self.layout.queue_guard(&id.0.0), false).await? {
                Some(v) if v.len() == 12 => {
                    let slot: [u8; 12] = v[..].try_into().expect("length checked");
                    receipts.push(Receipt { id: *id, slot: Slot::Versionstamp(slot) });
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(receipts))
    }

    /// Moves every entry staged before now into the log. Returns the next log position.
    fn sequence(&self) -> Result<u64, FdbBindingError> {
        let cut = block_on(async {
            let trx = self.db.create_trx()?;
            let version = trx.get_read_version().await?;
            Ok::<_, FdbBindingError>(self.layout.staged_cut(u64::try_from(version).unwrap_or(0)))
        })?;
        loop {
            let (next, more) = block_on(self.db.run(|trx, _| {
                let cut = cut.clone();
                async move { self.sequence_chunk(&trx, &cut).await }
            }))?;
            if !more {
                return Ok(next);
            }
        }
    }

    /// One chunk of [`Self::sequence`]. Idempotent: it re-reads the counter and the staged range,
    /// so a retry after an unknown commit outcome continues where the landed attempt stopped.
    async fn sequence_chunk(&self, trx: &RetryableTransaction, cut: &[u8]) -> Result<(u64, bool), FdbBindingError> {
        let next = read_u64_be(trx.get(&self.layout.queue_next(), false).await?.as_deref(), 1)?;
        let range = RangeOption {
            limit: Some(CHUNK_ENTRIES),
            target_bytes: CHUNK_BYTES,
            mode: StreamingMode::WantAll,
            ..RangeOption::from((self.layout.staged_start(), cut.to_vec()))
        };
        let staged = trx.get_range(&range, 1, false).await?;
        let Some(last) = staged.last() else { return Ok((next, false)) };
        let mut position = next;
        for kv in staged.iter() {
            let Some(slot) = self.layout.staged_slot(kv.key()) else {
                return Err(abort(QueueError::corrupt("a staged key has the wrong length")));
            };
            // The guard stays (see `landed`); the log value keeps the slot it names.
            trx.set(&self.layout.log(position), &log_value(&slot, kv.value()));
            position += 1;
        }
        let mut end = last.key().to_vec();
        end.push(0);
        trx.clear_range(&self.layout.staged_start(), &end);
        trx.set(&self.layout.queue_next(), &position.to_be_bytes());
        // Recovery if the process dies right after this commit: the moved entries are in the log
        // and gone from staging; the next sequencing continues after them.
        Ok((position, staged.more() || staged.len() == CHUNK_ENTRIES))
    }

    /// A counter read at snapshot isolation, or the last value read if the read fails.
    fn counter(&self, key: &[u8], seen: &AtomicU64) -> u64 {
        let read = block_on(async {
            let trx = self.db.create_trx()?;
            Ok::<_, FdbBindingError>(read_counter(trx.get(key, true).await?.as_deref()))
        });
        match read {
            Ok(value) => {
                seen.store(value, Ordering::Relaxed);
                value
            }
            Err(_) => seen.load(Ordering::Relaxed),
        }
    }

    fn run<T>(&self, f: impl AsyncFn(&RetryableTransaction) -> Result<T, FdbBindingError>) -> Result<T, QueueError> {
        block_on(self.db.run(|trx, _| {
            let f = &f;
            async move { f(&trx).await }
        }))
        .map_err(queue_error)
    }
}

impl Queue for FdbQueue {
    fn suite(&self) -> HashSuite {
        self.suite
    }

    fn append(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError> {
        let (ids, entries) = self.encode(mutations)?;
        block_on(self.stage(&ids, &entries, false)).map_err(queue_error)
    }

    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError> {
        self.sequence().map_err(queue_error)?;
        let lease = self.lease.as_deref();
        let record = encode_marker(&marker);
        self.run(async |trx| {
            check(lease, trx).await?;
            // A retry after an unknown outcome finds the marker it already wrote (the whole
            // marker: an epoch cut again at lower caps appends a second marker for its epoch).
            let last = trx.get(&self.layout.queue_last_marker(), false).await?;
            if let Some(last) = last.as_deref()
                && last.len() == 8 + record.len()
                && last[8..] == record[..]
            {
                return Ok(Position(u64::from_be_bytes(last[..8].try_into().expect("8 bytes"))));
            }
            // Entries staged since the sequencing above stay after the marker: later epochs'.
            let next = read_u64_be(trx.get(&self.layout.queue_next(), false).await?.as_deref(), 1)?;
            trx.set(&self.layout.log(next), &log_value(&[0; SLOT_LEN], &record));
            trx.set(&self.layout.queue_next(), &(next + 1).to_be_bytes());
            trx.set(&self.layout.queue_last_marker(), &encode_last_marker(Position(next), &record));
            // Recovery if the process dies right after this commit: the epoch's cut is durable;
            // the re-run finds this marker as the last one and consumes its range.
            Ok(Position(next))
        })
    }

    fn last_marker(&self) -> Result<Option<(Position, Marker)>, QueueError> {
        let last =
            self.run(async |trx| Ok(trx.get(&self.layout.queue_last_marker(), false).await?.map(|v| v.to_vec())))?;
        let Some(last) = last else { return Ok(None) };
        decode_last_marker(self.suite, &last).map(Some)
    }

    fn read_bounded(
        &self,
        from: Position,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<Vec<(Position, Entry)>, QueueError> {
        self.sequence().map_err(queue_error)?;
        let mut out = Vec::new();
        let mut total = 0u64;
        let mut begin = self.layout.log(from.0);
        let end = self.layout.log(u64::MAX);
        while out.len() < max_entries {
            let want = (max_entries - out.len()).min(CHUNK_ENTRIES * 10);
            let (page, more) = self.run(async |trx| {
                let range = RangeOption {
                    limit: Some(want),
                    mode: StreamingMode::WantAll,
                    ..RangeOption::from((begin.clone(), end.clone()))
                };
                let values = trx.get_range(&range, 1, true).await?;
                let more = values.more();
                let page = values.iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect::<Vec<_>>();
                Ok((page, more))
            })?;
            let Some((last, _)) = page.last() else { break };
            begin = last.clone();
            begin.push(0);
            for (key, value) in &page {
                let position = self.layout.log_position(key).ok_or_else(|| QueueError::corrupt("bad log key"))?;
                let (_, record) = split_log_value(position, value)?;
                let size = record.len() as u64;
                if !out.is_empty() && total + size > max_bytes {
                    return Ok(out);
                }
                total += size;
                out.push((Position(position), decode_entry(self.suite, Position(position), record)?));
            }
            if !more && page.len() < want {
                break;
            }
        }
        Ok(out)
    }

    fn remove_through(&self, through: Position) -> Result<u64, QueueError> {
        let lease = self.lease.as_deref();
        let mut removed = 0;
        loop {
            let (mutations, more) = self.run(async |trx| {
                check(lease, trx).await?;
                let range = RangeOption {
                    limit: Some(CHUNK_ENTRIES),
                    mode: StreamingMode::WantAll,
                    ..RangeOption::from((self.layout.log(0), self.layout.log(through.0.saturating_add(1))))
                };
                let values = trx.get_range(&range, 1, false).await?;
                let Some(last) = values.last() else { return Ok((0, false)) };
                let (mut mutations, mut bytes) = (0u64, 0u64);
                for kv in values.iter() {
                    let position = self.layout.log_position(kv.key()).unwrap_or(0);
                    let (slot, record) = split_log_value(position, kv.value()).map_err(abort)?;
                    if let (Some(n), Some(id)) = (record_mutation_bytes(record), record_mutation_id(record)) {
                        mutations += 1;
                        bytes += n;
                        // Only this entry's guard: a later identical resubmission has its own slot.
                        trx.atomic_op(&self.layout.queue_guard(&id.0.0), slot, MutationType::CompareAndClear);
                    }
                }
                let mut end = last.key().to_vec();
                end.push(0);
                trx.clear_range(&self.layout.log(0), &end);
                let minus = -i64::try_from(mutations).expect("chunk fits i64");
                trx.atomic_op(&self.layout.queue_depth(), &minus.to_le_bytes(), MutationType::Add);
                let minus = -i64::try_from(bytes).expect("chunk bytes fit i64");
                trx.atomic_op(&self.layout.queue_bytes(), &minus.to_le_bytes(), MutationType::Add);
                // Recovery if the process dies right after this commit: the removed entries were
                // consumed by a committed epoch; the next removal continues after them.
                Ok((mutations, values.more() || values.len() == CHUNK_ENTRIES))
            })?;
            removed += mutations;
            if !more {
                return Ok(removed);
            }
        }
    }

    fn depth(&self) -> u64 {
        self.counter(&self.layout.queue_depth(), &self.depth_seen)
    }

    fn pending_bytes(&self) -> u64 {
        self.counter(&self.layout.queue_bytes(), &self.bytes_seen)
    }
}
