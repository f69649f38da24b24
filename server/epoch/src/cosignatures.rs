//! Witness cosignatures the server accepted, per epoch and witness (SPEC.md section 6.3). The
//! server verifies a line before it stores it; a later line from the same witness for the same
//! epoch replaces the earlier one only if its time is later: an older line never replaces a newer.

use crate::error::EpochError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::Epoch;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Mutex;

pub trait CosignatureStore: Send + Sync + std::fmt::Debug {
    /// Stores `line` (one verified `— name base64\n` line) as `witness`'s cosignature of `epoch`,
    /// durably, unless a line at least as new is stored (compared by their signed times, atomically).
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<CosignaturePut, EpochError>;
    /// Every stored cosignature line of `epoch`, by witness name.
    fn get(&self, epoch: Epoch) -> Result<BTreeMap<String, String>, EpochError>;
}

/// What [`CosignatureStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosignaturePut {
    /// The line is stored (there was none from this witness, or an older one).
    Stored,
    /// The stored line is kept: its time is not before the new line's. `identical`: the same line.
    Kept { stored_time_secs: u64, identical: bool },
}

/// The time (seconds) a cosignature line carries: bytes 4..12 of its base64 blob (SPEC 6.3).
/// `None` for a line that is not a cosignature line.
pub fn cosignature_time(line: &str) -> Option<u64> {
    let blob = B64.decode(line.trim_end().rsplit_once(' ')?.1).ok()?;
    Some(u64::from_be_bytes(blob.get(4..12)?.try_into().ok()?))
}

/// The put rule every store applies, given the line stored now.
fn decide(stored: Option<&str>, line: &str) -> CosignaturePut {
    // A stored line without a readable time cannot be newer: it is replaced.
    match stored.and_then(|s| cosignature_time(s).map(|t| (s, t))) {
        Some((s, stored_time_secs)) if cosignature_time(line).is_none_or(|t| t <= stored_time_secs) => {
            CosignaturePut::Kept { stored_time_secs, identical: s == line }
        }
        _ => CosignaturePut::Stored,
    }
}

/// In memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryCosignatures {
    inner: Mutex<BTreeMap<(u64, String), String>>,
}

impl CosignatureStore for MemoryCosignatures {
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<CosignaturePut, EpochError> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (epoch.0, witness.to_owned());
        let put = decide(inner.get(&key).map(String::as_str), line);
        if put == CosignaturePut::Stored {
            inner.insert(key, line.to_owned());
        }
        Ok(put)
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
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<CosignaturePut, EpochError> {
        let mut txn = self.db.begin_write().map_err(EpochError::io)?;
        txn.set_durability(Durability::Immediate).map_err(EpochError::io)?;
        let put = {
            let mut table = txn.open_table(COSIGNATURES).map_err(EpochError::io)?;
            // Compared inside the write transaction: two racing posts cannot both win.
            let stored = table.get((epoch.0, witness)).map_err(EpochError::io)?.map(|v| v.value().to_owned());
            let put = decide(stored.as_deref(), line);
            if put == CosignaturePut::Stored {
                table.insert((epoch.0, witness), line).map_err(EpochError::io)?;
            }
            put
        };
        txn.commit().map_err(EpochError::io)?;
        Ok(put)
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

    /// A cosignature-shaped line of `name` at `time` (the signature bytes do not matter here).
    fn line(name: &str, time: u64, fill: u8) -> String {
        let mut blob = vec![1, 2, 3, 4];
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&[fill; 64]);
        format!("\u{2014} {name} {}\n", B64.encode(blob))
    }

    fn conformance(store: &dyn CosignatureStore) {
        assert!(store.get(Epoch(1)).unwrap().is_empty());
        assert_eq!(store.put(Epoch(1), "b", &line("b", 10, 1)).unwrap(), CosignaturePut::Stored);
        store.put(Epoch(1), "a", &line("a", 10, 1)).unwrap();
        store.put(Epoch(2), "a", &line("a", 20, 1)).unwrap();
        assert_eq!(store.put(Epoch(1), "b", &line("b", 11, 2)).unwrap(), CosignaturePut::Stored, "newer");
        let kept = store.put(Epoch(1), "b", &line("b", 9, 3)).unwrap();
        assert_eq!(kept, CosignaturePut::Kept { stored_time_secs: 11, identical: false }, "older");
        let same = store.put(Epoch(1), "b", &line("b", 11, 2)).unwrap();
        assert_eq!(same, CosignaturePut::Kept { stored_time_secs: 11, identical: true });
        let one = store.get(Epoch(1)).unwrap();
        assert_eq!(
            one.into_iter().collect::<Vec<_>>(),
            [("a".into(), line("a", 10, 1)), ("b".into(), line("b", 11, 2))]
        );
        assert_eq!(store.get(Epoch(2)).unwrap().len(), 1);
        assert!(store.get(Epoch(0)).unwrap().is_empty());
        assert_eq!(cosignature_time(&line("x", u64::MAX, 0)), Some(u64::MAX));
        assert_eq!(cosignature_time("garbage"), None);
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
            [(1, "a".into(), line("a", 10, 1)), (1, "b".into(), line("b", 11, 2)), (2, "a".into(), line("a", 20, 1))]
        );
    }
}
