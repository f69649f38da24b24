//! Witness cosignatures the server accepted, per epoch and witness (SPEC.md section 6.3). The
//! server verifies a line before it stores it; a later line from the same witness for the same
//! epoch replaces the earlier one.

use crate::error::EpochError;
use keyfold_core::Epoch;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Mutex;

pub trait CosignatureStore: Send + Sync + std::fmt::Debug {
    /// Stores `line` (one `— name base64\n` line) as `witness`'s cosignature of `epoch`, durably.
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<(), EpochError>;
    /// Every stored cosignature line of `epoch`, by witness name.
    fn get(&self, epoch: Epoch) -> Result<BTreeMap<String, String>, EpochError>;
}

/// In memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryCosignatures {
    inner: Mutex<BTreeMap<(u64, String), String>>,
}

impl CosignatureStore for MemoryCosignatures {
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<(), EpochError> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.insert((epoch.0, witness.to_owned()), line.to_owned());
        Ok(())
    }

    fn get(&self, epoch: Epoch) -> Result<BTreeMap<String, String>, EpochError> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let from = (epoch.0, String::new());
        Ok(inner
            .range(from..)
            .take_while(|((e, _), _)| *e == epoch.0)
            .map(|((_, w), l)| (w.clone(), l.clone()))
            .collect())
    }
}

const COSIGNATURES: TableDefinition<(u64, &str), &str> = TableDefinition::new("cosignatures");

/// In `cosignatures.redb` of a data directory.
#[derive(Debug)]
pub struct RedbCosignatures {
    db: Database,
}

impl RedbCosignatures {
    pub fn open(path: &Path) -> Result<RedbCosignatures, EpochError> {
        Ok(RedbCosignatures { db: Database::create(path).map_err(EpochError::io)? })
    }

    /// Every stored cosignature: (epoch, witness, line), ascending by epoch then witness (for
    /// `keyfold fsck`).
    pub fn all(&self) -> Result<Vec<(Epoch, String, String)>, EpochError> {
        self.lines(..)
    }

    /// The stored cosignatures whose (epoch, witness) keys are in `range`, in key order.
    fn lines<'a>(
        &self,
        range: impl RangeBounds<(u64, &'a str)> + 'a,
    ) -> Result<Vec<(Epoch, String, String)>, EpochError> {
        let txn = self.db.begin_read().map_err(EpochError::io)?;
        let table = match txn.open_table(COSIGNATURES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(EpochError::io(e)),
        };
        let mut out = Vec::new();
        for entry in table.range(range).map_err(EpochError::io)? {
            let (k, v) = entry.map_err(EpochError::io)?;
            let (epoch, witness) = k.value();
            out.push((Epoch(epoch), witness.to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }
}

impl CosignatureStore for RedbCosignatures {
    // Recovery if the process dies right after this commit: the line is stored and served. If it
    // dies before: the witness got no answer and posts again.
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<(), EpochError> {
        let mut txn = self.db.begin_write().map_err(EpochError::io)?;
        txn.set_durability(Durability::Immediate).map_err(EpochError::io)?;
        txn.open_table(COSIGNATURES)
            .map_err(EpochError::io)?
            .insert((epoch.0, witness), line)
            .map_err(EpochError::io)?;
        txn.commit().map_err(EpochError::io)
    }

    fn get(&self, epoch: Epoch) -> Result<BTreeMap<String, String>, EpochError> {
        let lines = match epoch.0.checked_add(1) {
            Some(next) => self.lines((epoch.0, "")..(next, ""))?,
            None => self.lines((epoch.0, "")..)?,
        };
        Ok(lines.into_iter().map(|(_, witness, line)| (witness, line)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conformance(store: &dyn CosignatureStore) {
        assert!(store.get(Epoch(1)).unwrap().is_empty());
        store.put(Epoch(1), "b", "line b1\n").unwrap();
        store.put(Epoch(1), "a", "line a1\n").unwrap();
        store.put(Epoch(2), "a", "line a2\n").unwrap();
        store.put(Epoch(1), "b", "line b1 later\n").unwrap();
        let one = store.get(Epoch(1)).unwrap();
        assert_eq!(
            one.into_iter().collect::<Vec<_>>(),
            [("a".into(), "line a1\n".into()), ("b".into(), "line b1 later\n".into())]
        );
        assert_eq!(store.get(Epoch(2)).unwrap().len(), 1);
        assert!(store.get(Epoch(0)).unwrap().is_empty());
    }

    #[test]
    fn memory_cosignatures() {
        conformance(&MemoryCosignatures::default());
    }

    #[test]
    fn redb_cosignatures() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbCosignatures::open(&dir.path().join("cosignatures.redb")).unwrap();
        assert!(store.all().unwrap().is_empty(), "no table yet");
        conformance(&store);
        let all: Vec<(u64, String, String)> = store.all().unwrap().into_iter().map(|(e, w, l)| (e.0, w, l)).collect();
        assert_eq!(
            all,
            [
                (1, "a".into(), "line a1\n".into()),
                (1, "b".into(), "line b1 later\n".into()),
                (2, "a".into(), "line a2\n".into())
            ]
        );
    }
}
