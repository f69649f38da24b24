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
use std::collections::{BTreeMap, HashMap};
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

/// One applied change of a key: a version of its history (SPEC section 1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub epoch: Epoch,
    pub version: Version,
    /// The value set at this version; `None`: a tombstone (deleted at this version).
    pub value: Option<Vec<u8>>,
}

impl KeyVersion {
    pub fn deleted(&self) -> bool {
        self.value.is_none()
    }
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
    pub fn first_epoch(self) -> Option<Epoch> {
        self.epoch.0.checked_add(1).map(Epoch)
    }
}

pub fn check_index_order(indexed: Epoch, epoch: Epoch) -> Result<bool, EpochError> {
    if epoch == indexed {
        return Ok(false); // already indexed: a retry
    }
    if epoch != indexed.next() {
        return Err(EpochError::OutOfOrder { store: "outcome index", expected: indexed.next(), got: epoch });
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
/// history holds (the rows must still hold their values).
pub fn applied(epoch: Epoch, rows: &[ArchiveRow]) -> impl Iterator<Item = (Index, KeyVersion, u64)> + '_ {
    rows.iter().filter(|r| r.outcome == ArchiveOutcome::Applied).filter_map(move |r| {
        let index = Index(r.key_index?.0);
        let version = Version(r.new_version?);
        debug_assert_eq!(r.tombstone, r.value.is_none(), "an applied row's value is kept for the history");
        Some((index, KeyVersion { epoch, version, value: r.value.clone() }, r.position))
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
        if !check_index_order(inner.through, epoch)? {
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
        let versions = inner.history.range(from..=to).map(|(_, v)| v.clone());
        Ok(versions.skip_while(|v| v.version <= after.version).take(limit).collect())
    }
}
