//! Witness cosignatures in `cosignatures.redb` (SPEC appendix A): one line per (epoch, witness),
//! replaced only by a later one, compared inside the write transaction.

use crate::reopen::{Opener, ReopeningDb, file_opener};
use crate::{DEFAULT_CACHE_BYTES, epoch_failed_io, epoch_io as io};
use keyfold_core::Epoch;
use keyfold_epoch::{CosignaturePut, CosignatureStore, EpochError, decide_cosignature};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::Path;

const COSIGNATURES: TableDefinition<(u64, &str), &str> = TableDefinition::new("cosignatures");

/// In `cosignatures.redb` of a data directory.
#[derive(Debug)]
pub struct RedbCosignatures {
    db: ReopeningDb,
}

impl RedbCosignatures {
    pub fn open(path: &Path) -> Result<RedbCosignatures, EpochError> {
        Self::open_with(path, file_opener(DEFAULT_CACHE_BYTES))
    }

    /// As [`RedbCosignatures::open`], opening the file with `opener` (tests inject faults with it).
    pub fn open_with(path: &Path, opener: Opener) -> Result<RedbCosignatures, EpochError> {
        Ok(RedbCosignatures { db: ReopeningDb::open(path, opener).map_err(io)? })
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
        let txn = self.db.get().map_err(io)?.begin_read().map_err(io)?;
        let table = match txn.open_table(COSIGNATURES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut out = Vec::new();
        for entry in table.range(range).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (epoch, witness) = k.value();
            out.push((Epoch(epoch), witness.to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }
}

impl CosignatureStore for RedbCosignatures {
    // Recovery if the process dies right after this commit: the line is stored and served. If it
    // dies before: the witness got no answer and posts again.
    // After an I/O error the handle is dropped and the file reopened on next use (`ReopeningDb`).
    fn put(&self, epoch: Epoch, witness: &str, line: &str) -> Result<CosignaturePut, EpochError> {
        self.db.write(io, epoch_failed_io, |db| put_in(db, epoch, witness, line))
    }

    fn get(&self, epoch: Epoch) -> Result<BTreeMap<String, String>, EpochError> {
        let lines = match epoch.0.checked_add(1) {
            Some(next) => self.lines((epoch.0, "")..(next, ""))?,
            None => self.lines((epoch.0, "")..)?,
        };
        Ok(lines.into_iter().map(|(_, witness, line)| (witness, line)).collect())
    }
}

fn put_in(db: &Database, epoch: Epoch, witness: &str, line: &str) -> Result<CosignaturePut, EpochError> {
    let mut txn = db.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    let put = {
        let mut table = txn.open_table(COSIGNATURES).map_err(io)?;
        // Compared inside the write transaction: two racing posts cannot both win.
        let stored = table.get((epoch.0, witness)).map_err(io)?.map(|v| v.value().to_owned());
        let put = decide_cosignature(stored.as_deref(), line);
        if put == CosignaturePut::Stored {
            table.insert((epoch.0, witness), line).map_err(io)?;
        }
        put
    };
    txn.commit().map_err(io)?;
    Ok(put)
}
