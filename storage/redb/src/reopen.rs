//! A redb file handle that is dropped after a failed write and reopened on next use.
//!
//! After an I/O error in a write transaction (a failed write or fsync, a full disk) redb refuses
//! every later write through the same `Database` ("previous I/O error"), and after a failed fsync
//! its page cache cannot be trusted anyway. So a store that hit one drops its handle
//! ([`ReopeningDb::failed`]) and the next operation opens the file again, which runs redb's
//! crash recovery exactly as a restart would: whatever the failed transaction left is discarded,
//! and none of it was reported as committed. Until the fault clears (space is freed, the disk
//! comes back) reopening fails too and each operation reports the I/O error; nothing needs a
//! restart.

use redb::Database;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

/// Opens the redb file at a path: plain files in production, a fault-injecting backend in tests.
pub type Opener = Arc<dyn Fn(&Path) -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// The opener for plain files, with `cache_size_bytes` of page cache.
pub fn file_opener(cache_size_bytes: usize) -> Opener {
    Arc::new(move |path: &Path| Database::builder().set_cache_size(cache_size_bytes).create(path))
}

/// One redb file that reopens itself after a failure.
pub struct ReopeningDb {
    path: PathBuf,
    opener: Opener,
    db: RwLock<Option<Arc<Database>>>,
}

impl std::fmt::Debug for ReopeningDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReopeningDb").field("path", &self.path).finish()
    }
}

impl ReopeningDb {
    /// Opens (or creates) the file at `path` with `opener`.
    pub fn open(path: &Path, opener: Opener) -> Result<ReopeningDb, redb::DatabaseError> {
        let db = opener(path)?;
        Ok(ReopeningDb { path: path.to_path_buf(), opener, db: RwLock::new(Some(Arc::new(db))) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open handle, reopening the file first if a failure dropped it. Reopening fails while
    /// the fault lasts, and while a reader still holds the old handle (redb refuses a second open
    /// of one file); the caller reports that as an I/O error and the next call tries again.
    pub fn get(&self) -> Result<Arc<Database>, redb::DatabaseError> {
        self.get_or_reopen(|e| e, |_| Ok(()))
    }

    /// As [`ReopeningDb::get`]; a handle reopened here first goes through `on_reopen` (the queue
    /// recounts its positions, depth and bytes there), under the lock, so nobody uses the new
    /// handle before it. If `on_reopen` fails the handle is not kept and the next call tries again.
    pub fn get_or_reopen<E>(
        &self,
        open_error: impl FnOnce(redb::DatabaseError) -> E,
        on_reopen: impl FnOnce(&Database) -> Result<(), E>,
    ) -> Result<Arc<Database>, E> {
        if let Some(db) = self.db.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(Arc::clone(db));
        }
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = slot.as_ref() {
            return Ok(Arc::clone(db)); // another thread reopened it meanwhile
        }
        let db = (self.opener)(&self.path).map_err(open_error)?;
        on_reopen(&db)?;
        let db = Arc::new(db);
        *slot = Some(Arc::clone(&db));
        Ok(db)
    }

    /// Drops the handle after a failed write; the next [`ReopeningDb::get`] reopens the file.
    /// Recovery: redb's own, on reopen, as after a crash.
    pub fn failed(&self) {
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Runs `write` on the open handle (`open_error` says how a failed reopen is reported); when
    /// it fails with an error `is_storage` calls a storage failure, the handle is dropped, so the
    /// next use reopens the file. Every write of a store using this goes through here.
    pub fn write<T, E>(
        &self,
        open_error: impl FnOnce(redb::DatabaseError) -> E,
        is_storage: impl FnOnce(&E) -> bool,
        write: impl FnOnce(&Database) -> Result<T, E>,
    ) -> Result<T, E> {
        let db = self.get().map_err(open_error)?;
        let result = write(&db);
        if let Err(e) = &result
            && is_storage(e)
        {
            drop(db);
            self.failed();
        }
        result
    }
}
