//! Indexes derived from the epoch archives: each mutation's outcome by mutation id (for
//! `GET /v1/mutations/{id}`) and each key's applied versions by epoch (for
//! `GET /v1/keys/{key}/history`).
//!
//! Derived data: the archives are the source of truth, so an index is written *after* the head
//! that publishes an epoch, and whatever a crash left unindexed is re-read from the archives when
//! the job starts ([`crate::EpochJob::with_index`]) or before its next epoch.

use crate::error::EpochError;
use keyfold_archive::{ArchiveOutcome, ArchiveRow};
use keyfold_core::{Epoch, Index, MutationId, Version};
use keyfold_map::reopen::{Opener, ReopeningDb, file_opener};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

/// What became of one mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRecord {
    pub epoch: Epoch,
    /// Its queue position.
    pub position: u64,
    pub outcome: ArchiveOutcome,
    pub expected_version: Version,
    /// The key's version after it, when applied.
    pub new_version: Option<Version>,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// One applied change of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyVersion {
    pub epoch: Epoch,
    pub version: Version,
    /// A tombstone: the value was deleted at this version.
    pub deleted: bool,
}

/// The derived indexes. `record` takes epochs in order, each exactly once; re-recording the latest
/// indexed epoch is a no-op (a retry after a crash).
pub trait OutcomeIndex: Send + Sync + std::fmt::Debug {
    /// The newest indexed epoch (0: none; the genesis epoch has no mutations).
    fn indexed_through(&self) -> Result<Epoch, EpochError>;
    fn record(&self, epoch: Epoch, rows: &[ArchiveRow]) -> Result<(), EpochError>;
    /// The outcome of `id`'s latest appearance in an indexed epoch.
    fn outcome(&self, id: &MutationId) -> Result<Option<OutcomeRecord>, EpochError>;
    /// Up to `limit` applied versions of the key at `index`, oldest first: those from epochs after
    /// `after.epoch` whose version is above `after.version`. A key's versions strictly increase in
    /// (epoch, queue position) order, so the version alone is a cursor that never skips one.
    fn history(&self, index: &Index, after: HistoryAfter, limit: usize) -> Result<Vec<KeyVersion>, EpochError>;
}

/// Where a page of a key's history starts (both bounds exclusive; `default()` is the beginning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryAfter {
    /// Only versions from later epochs.
    pub epoch: Epoch,
    /// Only greater versions.
    pub version: Version,
}

impl HistoryAfter {
    /// The first epoch listed; `None` after the last epoch there can be.
    fn first_epoch(self) -> Option<Epoch> {
        self.epoch.0.checked_add(1).map(Epoch)
    }
}

fn check_order(indexed: Epoch, epoch: Epoch) -> Result<bool, EpochError> {
    if epoch == indexed {
        return Ok(false); // already indexed: a retry
    }
    if epoch != indexed.next() {
        return Err(EpochError::Corrupt(format!("cannot index epoch {epoch}: the index is at epoch {indexed}")));
    }
    Ok(true)
}

/// The outcome record an index keeps for `row` of `epoch`'s archive.
pub fn outcome_of(row: &ArchiveRow, epoch: Epoch) -> OutcomeRecord {
    OutcomeRecord {
        epoch,
        position: row.position,
        outcome: row.outcome,
        expected_version: Version(row.expected_version),
        new_version: row.new_version.map(Version),
        reason: row.reason.clone(),
    }
}

/// The applied rows of `epoch` as `(index, change, queue position)`, in queue order: what a key
/// history holds.
pub fn applied(epoch: Epoch, rows: &[ArchiveRow]) -> impl Iterator<Item = (Index, KeyVersion, u64)> + '_ {
    rows.iter().filter(|r| r.outcome == ArchiveOutcome::Applied).filter_map(move |r| {
        let index = Index(r.key_index?.0);
        let version = Version(r.new_version?);
        Some((index, KeyVersion { epoch, version, deleted: r.tombstone }, r.position))
    })
}

/// The indexes in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryOutcomeIndex {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    through: Epoch,
    outcomes: HashMap<MutationId, OutcomeRecord>,
    history: BTreeMap<(Index, Epoch, u64), KeyVersion>,
}

impl OutcomeIndex for MemoryOutcomeIndex {
    fn indexed_through(&self) -> Result<Epoch, EpochError> {
        Ok(self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).through)
    }

    fn record(&self, epoch: Epoch, rows: &[ArchiveRow]) -> Result<(), EpochError> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !check_order(inner.through, epoch)? {
            return Ok(());
        }
        for row in rows {
            inner.outcomes.insert(MutationId(row.mutation_id), outcome_of(row, epoch));
        }
        for (index, change, position) in applied(epoch, rows) {
            inner.history.insert((index, epoch, position), change);
        }
        inner.through = epoch;
        Ok(())
    }

    fn outcome(&self, id: &MutationId) -> Result<Option<OutcomeRecord>, EpochError> {
        Ok(self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).outcomes.get(id).cloned())
    }

    fn history(&self, index: &Index, after: HistoryAfter, limit: usize) -> Result<Vec<KeyVersion>, EpochError> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(first) = after.first_epoch() else { return Ok(Vec::new()) };
        let from = (*index, first, 0);
        let to = (*index, Epoch(u64::MAX), u64::MAX);
        let versions = inner.history.range(from..=to).map(|(_, v)| *v);
        Ok(versions.skip_while(|v| v.version <= after.version).take(limit).collect())
    }
}

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const OUTCOMES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("outcomes");
const HISTORY: TableDefinition<&[u8; 48], &[u8; 9]> = TableDefinition::new("history");
const KEY_THROUGH: &str = "indexed_through";

const OUTCOME_APPLIED: u8 = 0;
const OUTCOME_REJECTED: u8 = 1;
const OUTCOME_DUPLICATE: u8 = 2;

/// `epoch (8) || position (8) || outcome (1) || expected (8) || has_new (1) || new (8) || reason (UTF-8)`.
fn encode_outcome(r: &OutcomeRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(34 + r.reason.as_ref().map_or(0, String::len));
    v.extend_from_slice(&r.epoch.0.to_be_bytes());
    v.extend_from_slice(&r.position.to_be_bytes());
    v.push(match r.outcome {
        ArchiveOutcome::Applied => OUTCOME_APPLIED,
        ArchiveOutcome::Rejected => OUTCOME_REJECTED,
        ArchiveOutcome::Duplicate => OUTCOME_DUPLICATE,
    });
    v.extend_from_slice(&r.expected_version.0.to_be_bytes());
    v.push(u8::from(r.new_version.is_some()));
    v.extend_from_slice(&r.new_version.map_or(0, |n| n.0).to_be_bytes());
    v.extend_from_slice(r.reason.as_deref().unwrap_or("").as_bytes());
    v
}

fn decode_outcome(b: &[u8]) -> Result<OutcomeRecord, EpochError> {
    let corrupt = || EpochError::Corrupt("undecodable outcome index record".into());
    if b.len() < 34 {
        return Err(corrupt());
    }
    let u64_at = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let outcome = match b[16] {
        OUTCOME_APPLIED => ArchiveOutcome::Applied,
        OUTCOME_REJECTED => ArchiveOutcome::Rejected,
        OUTCOME_DUPLICATE => ArchiveOutcome::Duplicate,
        _ => return Err(corrupt()),
    };
    let reason = std::str::from_utf8(&b[34..]).map_err(|_| corrupt())?;
    Ok(OutcomeRecord {
        epoch: Epoch(u64_at(0)),
        position: u64_at(8),
        outcome,
        expected_version: Version(u64_at(17)),
        new_version: (b[25] == 1).then(|| Version(u64_at(26))),
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
    })
}

fn history_key(index: &Index, epoch: Epoch, position: u64) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..32].copy_from_slice(&index.0);
    k[32..40].copy_from_slice(&epoch.0.to_be_bytes());
    k[40..].copy_from_slice(&position.to_be_bytes());
    k
}

/// The indexes in one redb file (`index.redb` in a data directory). After a failed write the
/// file is reopened on next use ([`ReopeningDb`]).
#[derive(Debug)]
pub struct RedbOutcomeIndex {
    db: ReopeningDb,
}

impl RedbOutcomeIndex {
    pub fn open(path: &Path) -> Result<RedbOutcomeIndex, EpochError> {
        Self::open_with(path, file_opener(crate::heads::DEFAULT_CACHE_BYTES))
    }

    /// As [`RedbOutcomeIndex::open`], opening the file with `opener` (tests inject faults with it).
    pub fn open_with(path: &Path, opener: Opener) -> Result<RedbOutcomeIndex, EpochError> {
        Ok(RedbOutcomeIndex { db: ReopeningDb::open(path, opener).map_err(EpochError::io)? })
    }

    fn read(&self) -> Result<redb::ReadTransaction, EpochError> {
        self.db.get().map_err(EpochError::io)?.begin_read().map_err(EpochError::io)
    }
}

impl OutcomeIndex for RedbOutcomeIndex {
    fn indexed_through(&self) -> Result<Epoch, EpochError> {
        let txn = self.read()?;
        match txn.open_table(META) {
            Ok(t) => Ok(Epoch(t.get(KEY_THROUGH).map_err(EpochError::io)?.map_or(0, |v| v.value()))),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Epoch(0)),
            Err(e) => Err(EpochError::io(e)),
        }
    }

    // Recovery if the process dies right after this commit: the epoch is indexed. If it dies
    // before: nothing of it is; the next start re-reads its archive.
    fn record(&self, epoch: Epoch, rows: &[ArchiveRow]) -> Result<(), EpochError> {
        // After a storage error the handle is dropped; reopened (and recovered by redb) on next use.
        self.db.write(EpochError::io, |e| matches!(e, EpochError::Io(_)), |db| record_in(db, epoch, rows))
    }

    fn outcome(&self, id: &MutationId) -> Result<Option<OutcomeRecord>, EpochError> {
        let txn = self.read()?;
        let table = match txn.open_table(OUTCOMES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(EpochError::io(e)),
        };
        table.get(&id.0.0).map_err(EpochError::io)?.map(|v| decode_outcome(v.value())).transpose()
    }

    fn history(&self, index: &Index, after: HistoryAfter, limit: usize) -> Result<Vec<KeyVersion>, EpochError> {
        let txn = self.read()?;
        let table = match txn.open_table(HISTORY) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(EpochError::io(e)),
        };
        let Some(first) = after.first_epoch() else { return Ok(Vec::new()) };
        let start = first_above(&table, index, u128::from(first.0) << 64, after.version)?;
        let from = history_key_at(index, start);
        let to = history_key(index, Epoch(u64::MAX), u64::MAX);
        let mut out = Vec::new();
        for entry in table.range::<&[u8; 48]>(&from..=&to).map_err(EpochError::io)?.take(limit) {
            let (k, v) = entry.map_err(EpochError::io)?;
            out.push(history_entry(k.value(), v.value()));
        }
        Ok(out)
    }
}

type HistoryTable = redb::ReadOnlyTable<&'static [u8; 48], &'static [u8; 9]>;

fn history_entry(k: &[u8; 48], v: &[u8; 9]) -> KeyVersion {
    KeyVersion {
        epoch: Epoch(u64::from_be_bytes(k[32..40].try_into().expect("8 bytes"))),
        version: Version(u64::from_be_bytes(v[..8].try_into().expect("8 bytes"))),
        deleted: v[8] == 1,
    }
}

/// The history key of `index` at `at` = epoch (high 64 bits) and queue position (low 64 bits).
fn history_key_at(index: &Index, at: u128) -> [u8; 48] {
    #[allow(clippy::cast_possible_truncation)] // the two halves of `at`
    history_key(index, Epoch((at >> 64) as u64), at as u64)
}

/// The smallest (epoch, position) from `from` on where the key's history has no version at or
/// below `version` left: a binary search (at most 128 seeks), since the table is ordered by
/// (epoch, position) and a key's versions increase in that order. Scanning instead would cost
/// up to every version of one epoch per page.
fn first_above(table: &HistoryTable, index: &Index, from: u128, version: Version) -> Result<u128, EpochError> {
    if version == Version(0) {
        return Ok(from); // every version is above 0
    }
    let to = history_key(index, Epoch(u64::MAX), u64::MAX);
    // Whether the first entry at or after `at` is above `version` (or there is none).
    let above = |at: u128| -> Result<bool, EpochError> {
        let key = history_key_at(index, at);
        let mut entries = table.range::<&[u8; 48]>(&key..=&to).map_err(EpochError::io)?;
        match entries.next() {
            None => Ok(true),
            Some(entry) => {
                let (k, v) = entry.map_err(EpochError::io)?;
                Ok(history_entry(k.value(), v.value()).version > version)
            }
        }
    };
    let (mut low, mut high) = (from, u128::MAX);
    while low < high {
        let middle = low + (high - low) / 2;
        if above(middle)? { high = middle } else { low = middle + 1 }
    }
    Ok(low)
}

/// One epoch's index records in one durable transaction (see `RedbOutcomeIndex::record`).
fn record_in(db: &Database, epoch: Epoch, rows: &[ArchiveRow]) -> Result<(), EpochError> {
    let mut txn = db.begin_write().map_err(EpochError::io)?;
    txn.set_durability(Durability::Immediate).map_err(EpochError::io)?;
    {
        let mut meta = txn.open_table(META).map_err(EpochError::io)?;
        let through = Epoch(meta.get(KEY_THROUGH).map_err(EpochError::io)?.map_or(0, |v| v.value()));
        if !check_order(through, epoch)? {
            return Ok(());
        }
        let mut outcomes = txn.open_table(OUTCOMES).map_err(EpochError::io)?;
        for row in rows {
            outcomes
                .insert(&row.mutation_id.0, encode_outcome(&outcome_of(row, epoch)).as_slice())
                .map_err(EpochError::io)?;
        }
        let mut history = txn.open_table(HISTORY).map_err(EpochError::io)?;
        for (index, change, position) in applied(epoch, rows) {
            let mut value = [0u8; 9];
            value[..8].copy_from_slice(&change.version.0.to_be_bytes());
            value[8] = u8::from(change.deleted);
            history.insert(&history_key(&index, epoch, position), &value).map_err(EpochError::io)?;
        }
        meta.insert(KEY_THROUGH, epoch.0).map_err(EpochError::io)?;
    }
    txn.commit().map_err(EpochError::io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_core::Hash;

    fn row(
        position: u64,
        id: u8,
        key: u8,
        outcome: ArchiveOutcome,
        new_version: Option<u64>,
        tombstone: bool,
    ) -> ArchiveRow {
        ArchiveRow {
            position,
            mutation_id: Hash([id; 32]),
            key_index: Some(Hash([key; 32])),
            key: Some(vec![key]),
            value: (!tombstone).then(|| vec![1]),
            tombstone,
            owner_signature: None,
            expected_version: new_version.map_or(7, |v| v - 1),
            new_version,
            outcome,
            reason: (outcome == ArchiveOutcome::Rejected).then(|| "stale: expected version 7, the key is at 9".into()),
            leaf_hash: None,
        }
    }

    fn conformance(index: &dyn OutcomeIndex) {
        assert_eq!(index.indexed_through().unwrap(), Epoch(0));
        let e1 = [
            row(1, 1, 10, ArchiveOutcome::Applied, Some(1), false),
            row(2, 2, 11, ArchiveOutcome::Rejected, None, false),
        ];
        assert!(index.record(Epoch(2), &e1).is_err(), "epochs are indexed in order");
        index.record(Epoch(1), &e1).unwrap();
        index.record(Epoch(1), &e1).unwrap(); // a retry is a no-op
        let e2 = [
            row(4, 3, 10, ArchiveOutcome::Applied, Some(2), true),
            row(5, 1, 10, ArchiveOutcome::Duplicate, None, false),
        ];
        index.record(Epoch(2), &e2).unwrap();
        assert_eq!(index.indexed_through().unwrap(), Epoch(2));
        let rejected = index.outcome(&MutationId(Hash([2; 32]))).unwrap().unwrap();
        assert_eq!((rejected.epoch, rejected.outcome, rejected.position), (Epoch(1), ArchiveOutcome::Rejected, 2));
        assert!(rejected.reason.unwrap().contains("stale"));
        let again = index.outcome(&MutationId(Hash([1; 32]))).unwrap().unwrap();
        assert_eq!((again.epoch, again.outcome), (Epoch(2), ArchiveOutcome::Duplicate), "the latest appearance");
        assert_eq!(index.outcome(&MutationId(Hash([9; 32]))).unwrap(), None);
        let all = HistoryAfter::default();
        let history = index.history(&Index([10; 32]), all, 10).unwrap();
        assert_eq!(
            history,
            [
                KeyVersion { epoch: Epoch(1), version: Version(1), deleted: false },
                KeyVersion { epoch: Epoch(2), version: Version(2), deleted: true }
            ]
        );
        let after_epoch_1 = HistoryAfter { epoch: Epoch(1), version: Version(0) };
        assert_eq!(index.history(&Index([10; 32]), after_epoch_1, 10).unwrap(), history[1..]);
        assert_eq!(index.history(&Index([10; 32]), all, 1).unwrap(), history[..1]);
        assert!(index.history(&Index([11; 32]), all, 10).unwrap().is_empty(), "rejections change nothing");
        let last = HistoryAfter { epoch: Epoch(u64::MAX), version: Version(0) };
        assert!(index.history(&Index([10; 32]), last, 10).unwrap().is_empty(), "no epoch after the last");
        versions_within_one_epoch(index);
    }

    /// Many versions of one key in one epoch: a version cursor pages through them one by one.
    fn versions_within_one_epoch(index: &dyn OutcomeIndex) {
        let rows: Vec<ArchiveRow> = (0..40)
            .map(|i| row(100 + 3 * i, 50 + u8::try_from(i).unwrap(), 12, ArchiveOutcome::Applied, Some(i + 1), false))
            .collect();
        index.record(Epoch(3), &rows).unwrap();
        let key = Index([12; 32]);
        for page in [1, 3, 7, 40] {
            let (mut seen, mut cursor) = (Vec::new(), HistoryAfter::default());
            loop {
                let versions = index.history(&key, cursor, page).unwrap();
                let Some(last) = versions.last() else { break };
                cursor.version = last.version;
                seen.extend(versions.iter().map(|v| (v.epoch.0, v.version.0)));
            }
            assert_eq!(seen, (1..=40).map(|v| (3, v)).collect::<Vec<_>>(), "pages of {page}");
        }
        let beyond = HistoryAfter { epoch: Epoch(0), version: Version(u64::MAX) };
        assert!(index.history(&key, beyond, 10).unwrap().is_empty());
    }

    #[test]
    fn memory_index() {
        conformance(&MemoryOutcomeIndex::default());
    }

    #[test]
    fn redb_index_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        conformance(&RedbOutcomeIndex::open(&path).unwrap());
        let reopened = RedbOutcomeIndex::open(&path).unwrap();
        assert_eq!(reopened.indexed_through().unwrap(), Epoch(3));
    }
}
