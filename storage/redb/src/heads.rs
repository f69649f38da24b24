//! Heads and the queue cursor in `heads.redb` (SPEC appendix A): the head of epoch E and the
//! cursor are committed in one durable transaction, with a compare-and-set on the epoch.

use crate::reopen::{Opener, ReopeningDb, file_opener};
use crate::{DEFAULT_CACHE_BYTES, epoch_failed_io, epoch_io as io};
use keyfold_core::Epoch;
use keyfold_epoch::{EpochError, HeadStore, check_next};
use keyfold_ingest::Position;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const HEADS: TableDefinition<u64, &[u8]> = TableDefinition::new("heads");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const KEY_CURSOR: &str = "cursor";

/// Heads in `heads.redb`. After a failed write (I/O error, full disk) the file is reopened on
/// next use ([`ReopeningDb`]), so the store recovers in place once the fault clears.
#[derive(Debug)]
pub struct RedbHeadStore {
    db: ReopeningDb,
}

impl RedbHeadStore {
    pub fn open(path: &Path) -> Result<RedbHeadStore, EpochError> {
        Self::open_with(path, file_opener(DEFAULT_CACHE_BYTES))
    }

    /// As [`RedbHeadStore::open`], opening the file with `opener` (tests inject faults with it).
    pub fn open_with(path: &Path, opener: Opener) -> Result<RedbHeadStore, EpochError> {
        let store = RedbHeadStore { db: ReopeningDb::open(path, opener).map_err(io)? };
        store.write(|db| {
            let txn = db.begin_write().map_err(io)?;
            drop(txn.open_table(HEADS).map_err(io)?);
            drop(txn.open_table(META).map_err(io)?);
            txn.commit().map_err(io)
        })?;
        Ok(store)
    }

    fn read(&self) -> Result<redb::ReadTransaction, EpochError> {
        self.db.get().map_err(io)?.begin_read().map_err(io)
    }

    /// Runs a write; after an I/O error the handle is dropped and reopened on next use.
    fn write<T>(&self, write: impl FnOnce(&Database) -> Result<T, EpochError>) -> Result<T, EpochError> {
        self.db.write(io, epoch_failed_io, write)
    }
}

fn note_from(bytes: &[u8], epoch: u64) -> Result<String, EpochError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| EpochError::corrupt(format!("stored head {epoch} is not UTF-8")))
}

impl HeadStore for RedbHeadStore {
    fn latest(&self) -> Result<Option<(Epoch, String)>, EpochError> {
        let txn = self.read()?;
        let table = txn.open_table(HEADS).map_err(io)?;
        match table.last().map_err(io)? {
            Some((e, note)) => Ok(Some((Epoch(e.value()), note_from(note.value(), e.value())?))),
            None => Ok(None),
        }
    }

    fn get(&self, epoch: Epoch) -> Result<Option<String>, EpochError> {
        let txn = self.read()?;
        let table = txn.open_table(HEADS).map_err(io)?;
        table.get(epoch.0).map_err(io)?.map(|n| note_from(n.value(), epoch.0)).transpose()
    }

    fn cursor(&self) -> Result<Position, EpochError> {
        let txn = self.read()?;
        let table = txn.open_table(META).map_err(io)?;
        Ok(Position(table.get(KEY_CURSOR).map_err(io)?.map_or(0, |v| v.value())))
    }

    // If this commit fails (I/O error, full disk), redb's recovery on reopen discards it: no head
    // for `epoch` exists, exactly as after a crash before it, and the epoch is run again.
    fn commit(&self, epoch: Epoch, note: &str, cursor: Position) -> Result<(), EpochError> {
        self.write(|db| {
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::Immediate).map_err(io)?;
            {
                let mut heads = txn.open_table(HEADS).map_err(io)?;
                let latest = heads.last().map_err(io)?.map(|(e, _)| Epoch(e.value()));
                check_next(latest, epoch)?; // compare-and-set inside the write transaction
                heads.insert(epoch.0, note.as_bytes()).map_err(io)?;
                txn.open_table(META).map_err(io)?.insert(KEY_CURSOR, cursor.0).map_err(io)?;
            }
            txn.commit().map_err(io)
        })
    }
}
