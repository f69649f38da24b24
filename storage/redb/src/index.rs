//! The outcome and history indexes in `index.redb` (SPEC appendix A): derived from the archives,
//! one durable transaction per epoch.

use crate::reopen::{Opener, ReopeningDb, file_opener};
use crate::{DEFAULT_CACHE_BYTES, epoch_failed_io, epoch_io as io};
use keyfold_archive::{ArchiveOutcome, ArchiveRow};
use keyfold_core::{Epoch, Index, MutationId, Version};
use keyfold_epoch::{
    EpochError, HistoryAfter, KeyVersion, OutcomeIndex, OutcomeRecord, applied, check_index_order, outcome_of,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const OUTCOMES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("outcomes");
/// `index (32) || epoch (8) || position (8)` -> `version (8) || tag (1) || value` (tag 0: a
/// tombstone, nothing follows; 1: the value). Named `history_v2`: before values were kept, the
/// table `history` held `version || deleted` only.
const HISTORY: TableDefinition<&[u8; 48], &[u8]> = TableDefinition::new("history_v2");
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
    let corrupt = || EpochError::corrupt("undecodable outcome index record");
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
        Self::open_with(path, file_opener(DEFAULT_CACHE_BYTES))
    }

    /// As [`RedbOutcomeIndex::open`], opening the file with `opener` (tests inject faults with it).
    pub fn open_with(path: &Path, opener: Opener) -> Result<RedbOutcomeIndex, EpochError> {
        Ok(RedbOutcomeIndex { db: ReopeningDb::open(path, opener).map_err(io)? })
    }

    fn read(&self) -> Result<redb::ReadTransaction, EpochError> {
        self.db.get().map_err(io)?.begin_read().map_err(io)
    }
}

impl OutcomeIndex for RedbOutcomeIndex {
    fn indexed_through(&self) -> Result<Epoch, EpochError> {
        let txn = self.read()?;
        match txn.open_table(META) {
            Ok(t) => Ok(Epoch(t.get(KEY_THROUGH).map_err(io)?.map_or(0, |v| v.value()))),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Epoch(0)),
            Err(e) => Err(io(e)),
        }
    }

    // Recovery if the process dies right after this commit: the epoch is indexed. If it dies
    // before: nothing of it is; the next start re-reads its archive.
    fn record(&self, epoch: Epoch, rows: &[ArchiveRow]) -> Result<(), EpochError> {
        // After a storage error the handle is dropped; reopened (and recovered by redb) on next use.
        self.db.write(io, epoch_failed_io, |db| record_in(db, epoch, rows))
    }

    fn outcome(&self, id: &MutationId) -> Result<Option<OutcomeRecord>, EpochError> {
        let txn = self.read()?;
        let table = match txn.open_table(OUTCOMES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        table.get(&id.0.0).map_err(io)?.map(|v| decode_outcome(v.value())).transpose()
    }

    fn history(&self, index: &Index, after: HistoryAfter, limit: usize) -> Result<Vec<KeyVersion>, EpochError> {
        let txn = self.read()?;
        let table = match txn.open_table(HISTORY) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let Some(first) = after.first_epoch() else { return Ok(Vec::new()) };
        let start = first_above(&table, index, u128::from(first.0) << 64, after.version)?;
        let from = history_key_at(index, start);
        let to = history_key(index, Epoch(u64::MAX), u64::MAX);
        let mut out = Vec::new();
        for entry in table.range::<&[u8; 48]>(&from..=&to).map_err(io)?.take(limit) {
            let (k, v) = entry.map_err(io)?;
            out.push(history_entry(k.value(), v.value())?);
        }
        Ok(out)
    }
}

type HistoryTable = redb::ReadOnlyTable<&'static [u8; 48], &'static [u8]>;

fn encode_version(change: &KeyVersion) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + change.value.as_ref().map_or(0, Vec::len));
    v.extend_from_slice(&change.version.0.to_be_bytes());
    match &change.value {
        None => v.push(0),
        Some(value) => {
            v.push(1);
            v.extend_from_slice(value);
        }
    }
    v
}

fn history_entry(k: &[u8; 48], v: &[u8]) -> Result<KeyVersion, EpochError> {
    let corrupt = || EpochError::corrupt("undecodable history index record");
    let version = Version(u64::from_be_bytes(v.get(..8).ok_or_else(corrupt)?.try_into().expect("8 bytes")));
    let value = match (v.get(8), v.len()) {
        (Some(0), 9) => None,
        (Some(1), _) => Some(v[9..].to_vec()),
        _ => return Err(corrupt()),
    };
    Ok(KeyVersion { epoch: Epoch(u64::from_be_bytes(k[32..40].try_into().expect("8 bytes"))), version, value })
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
        let mut entries = table.range::<&[u8; 48]>(&key..=&to).map_err(io)?;
        match entries.next() {
            None => Ok(true),
            Some(entry) => {
                let (k, v) = entry.map_err(io)?;
                Ok(history_entry(k.value(), v.value())?.version > version)
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
    let mut txn = db.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    {
        let mut meta = txn.open_table(META).map_err(io)?;
        let through = Epoch(meta.get(KEY_THROUGH).map_err(io)?.map_or(0, |v| v.value()));
        if !check_index_order(through, epoch)? {
            return Ok(());
        }
        let mut outcomes = txn.open_table(OUTCOMES).map_err(io)?;
        for row in rows {
            outcomes.insert(&row.mutation_id.0, encode_outcome(&outcome_of(row, epoch)).as_slice()).map_err(io)?;
        }
        let mut history = txn.open_table(HISTORY).map_err(io)?;
        for (index, change, position) in applied(epoch, rows) {
            history.insert(&history_key(&index, epoch, position), encode_version(&change).as_slice()).map_err(io)?;
        }
        meta.insert(KEY_THROUGH, epoch.0).map_err(io)?;
    }
    txn.commit().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_index_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let index = RedbOutcomeIndex::open(&path).unwrap();
        let row = |position: u64| keyfold_archive::ArchiveRow {
            position,
            mutation_id: keyfold_core::Hash([u8::try_from(position).unwrap(); 32]),
            key_index: Some(keyfold_core::Hash([1; 32])),
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            tombstone: false,
            owner_signature: None,
            expected_version: position - 1,
            new_version: Some(position),
            outcome: ArchiveOutcome::Applied,
            reason: None,
            leaf_hash: None,
        };
        index.record(Epoch(1), &[row(1)]).unwrap();
        index.record(Epoch(2), &[row(2)]).unwrap();
        drop(index);
        let reopened = RedbOutcomeIndex::open(&path).unwrap();
        assert_eq!(reopened.indexed_through().unwrap(), Epoch(2), "the indexed epochs survive a reopen");
        let history = reopened.history(&Index([1; 32]), HistoryAfter::default(), 10).unwrap();
        assert_eq!(history.iter().map(|v| v.version.0).collect::<Vec<_>>(), [1, 2]);
    }
}
