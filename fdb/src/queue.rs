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
use keyfold_ingest::{Entry, Marker, Position, Queue, QueueError, Receipt, Slot, decode_entry, encode_entry};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most bytes (keys and values) one append writes: under FoundationDB's 10,000,000-byte
/// transaction limit with room for the guard keys and the depth counter.
pub const MAX_APPEND_BYTES: usize = 8_000_000;

/// Entries moved or removed per transaction: ~1 MB at typical mutation sizes (FoundationDB
/// advises transactions under 1 MB), far below the 10 MB / 5 s limits even at the largest.
const CHUNK_ENTRIES: usize = 1_000;
const CHUNK_BYTES: usize = 1_000_000;

/// The FoundationDB queue of one directory.
pub struct FdbQueue {
    db: Arc<Database>,
    layout: Layout,
    suite: HashSuite,
    max_depth: u64,
    /// Markers and removals need the epoch-writer lease; appends never do.
    lease: Option<Arc<EpochWriterLease>>,
    /// The depth last read, for [`Queue::depth`], which cannot fail.
    depth_seen: AtomicU64,
}

impl std::fmt::Debug for FdbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbQueue").field("max_depth", &self.max_depth).finish_non_exhaustive()
    }
}

fn read_u64_be(bytes: Option<&[u8]>, default: u64) -> Result<u64, FdbBindingError> {
    match bytes {
        None => Ok(default),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| abort(QueueError::Corrupt("a queue counter is not 8 bytes".into()))),
    }
}

fn read_depth(bytes: Option<&[u8]>) -> u64 {
    // Written only by atomic adds of 8-byte little-endian integers; never negative when
    // consistent, clamped at 0 if an operator cleared keys by hand.
    bytes.and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, |b| u64::try_from(i64::from_le_bytes(b)).unwrap_or(0))
}

impl FdbQueue {
    pub fn new(
        db: Arc<Database>,
        layout: Layout,
        suite: HashSuite,
        max_depth: u64,
        lease: Option<Arc<EpochWriterLease>>,
    ) -> FdbQueue {
        FdbQueue { db, layout, suite, max_depth, lease, depth_seen: AtomicU64::new(0) }
    }

    /// Stages `entries` in one transaction; returns their slots.
    async fn stage(&self, ids: &[MutationId], entries: &[Vec<u8>]) -> Result<Vec<Receipt>, FdbBindingError> {
        let n = u64::try_from(entries.len()).expect("batch length fits u64");
        let mut trx: Transaction = self.db.create_trx()?;
        let mut maybe_committed = false;
        loop {
            if maybe_committed && let Some(receipts) = self.landed(&trx, ids).await? {
                // The previous attempt's commit outcome was unknown, and it did land: answer with
                // its receipts instead of staging the batch a second time.
                return Ok(receipts);
            }
            // Back-pressure from a snapshot read: appends never conflict on the counter, so the
            // bound is approximate under concurrency (it can be exceeded by the appends in flight).
            let depth = read_depth(trx.get(&self.layout.queue_depth(), true).await?.as_deref());
            if depth + n > self.max_depth {
                return Err(abort(QueueError::Full { depth, max: self.max_depth }));
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
    /// there (the attempt landed), `None` if not (it did not; stage again).
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
            if self.layout.staged_slot(kv.key()).is_none() {
                return Err(abort(QueueError::Corrupt("a staged key has the wrong length".into())));
            }
            trx.set(&self.layout.log(position), kv.value());
            if let Ok(Entry::Mutation(m)) = decode_entry(kv.value()) {
                trx.clear(&self.layout.queue_guard(&m.id(self.suite).0.0));
            }
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
        if mutations.len() > usize::from(u16::MAX) {
            return Err(QueueError::TooLarge { bytes: usize::MAX, max: MAX_APPEND_BYTES });
        }
        let ids: Vec<MutationId> = mutations.iter().map(|m| m.id(self.suite)).collect();
        let entries: Vec<Vec<u8>> = mutations.into_iter().map(|m| encode_entry(&Entry::Mutation(m))).collect();
        let key_bytes = self.layout.staged_len() + 4 + self.layout.queue_guard(&[0; 32]).len() + 16;
        let bytes = entries.iter().map(|e| e.len() + key_bytes).sum::<usize>();
        if bytes > MAX_APPEND_BYTES {
            return Err(QueueError::TooLarge { bytes, max: MAX_APPEND_BYTES });
        }
        block_on(self.stage(&ids, &entries)).map_err(queue_error)
    }

    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError> {
        self.sequence().map_err(queue_error)?;
        let lease = self.lease.as_deref();
        let entry = encode_entry(&Entry::Marker(marker));
        self.run(async |trx| {
            check(lease, trx).await?;
            // A retry after an unknown outcome finds the marker it already wrote.
            let last = trx.get(&self.layout.queue_last_marker(), false).await?;
            if let Some(last) = last.as_deref()
                && last.len() == 16
                && last[..8] == marker.epoch.0.to_be_bytes()
            {
                return Ok(Position(u64::from_be_bytes(last[8..].try_into().expect("8 bytes"))));
            }
            // Entries staged since the cut above stay after the marker: they belong to the next epoch.
            let next = read_u64_be(trx.get(&self.layout.queue_next(), false).await?.as_deref(), 1)?;
            trx.set(&self.layout.log(next), &entry);
            trx.set(&self.layout.queue_next(), &(next + 1).to_be_bytes());
            let mut last = marker.epoch.0.to_be_bytes().to_vec();
            last.extend_from_slice(&next.to_be_bytes());
            trx.set(&self.layout.queue_last_marker(), &last);
            // Recovery if the process dies right after this commit: the epoch's cut is durable;
            // the re-run finds this marker when it reads the queue and uses its time.
            Ok(Position(next))
        })
    }

    fn read(&self, from: Position, max_entries: usize) -> Result<Vec<(Position, Entry)>, QueueError> {
        self.sequence().map_err(queue_error)?;
        let mut out = Vec::new();
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
                let position =
                    self.layout.log_position(key).ok_or_else(|| QueueError::Corrupt("bad log key".into()))?;
                let entry =
                    decode_entry(value).map_err(|e| QueueError::Corrupt(format!("log entry {position}: {e}")))?;
                out.push((Position(position), entry));
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
                let mutations = values.iter().filter(|kv| kv.value().first() == Some(&0)).count();
                let mut end = last.key().to_vec();
                end.push(0);
                trx.clear_range(&self.layout.log(0), &end);
                let minus = -i64::try_from(mutations).expect("chunk fits i64");
                trx.atomic_op(&self.layout.queue_depth(), &minus.to_le_bytes(), MutationType::Add);
                // Recovery if the process dies right after this commit: the removed entries were
                // consumed by a committed epoch; the next removal continues after them.
                Ok((u64::try_from(mutations).expect("fits"), values.more() || values.len() == CHUNK_ENTRIES))
            })?;
            removed += mutations;
            if !more {
                return Ok(removed);
            }
        }
    }

    fn depth(&self) -> u64 {
        let read = block_on(async {
            let trx = self.db.create_trx()?;
            Ok::<_, FdbBindingError>(read_depth(trx.get(&self.layout.queue_depth(), true).await?.as_deref()))
        });
        match read {
            Ok(depth) => {
                self.depth_seen.store(depth, Ordering::Relaxed);
                depth
            }
            Err(_) => self.depth_seen.load(Ordering::Relaxed), // the last known depth
        }
    }
}
