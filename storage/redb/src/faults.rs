//! Fault injection for the embedded stores: a redb storage backend over a real file that fails on
//! demand (an I/O error at the k-th write or the k-th fsync, or a full disk), so tests can show that
//! nothing unpersisted is acknowledged and that recovery after the fault loses nothing that was.

use crate::{RedbQueue, RedbQueueOptions};
use keyfold_ingest::QueueError;
use redb::StorageBackend;
use redb::backends::FileBackend;
use std::fs::File;
use std::io::{Error, ErrorKind};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What to break, shared between a test and the backends it opened. Counts start at 1; 0 means
/// never.
#[derive(Debug, Default)]
pub struct FaultPlan {
    writes: AtomicU64,
    syncs: AtomicU64,
    fail_write_at: AtomicU64,
    fail_sync_at: AtomicU64,
    disk_full: AtomicBool,
    injected: AtomicU64,
}

impl FaultPlan {
    pub fn new() -> Arc<FaultPlan> {
        Arc::new(FaultPlan::default())
    }

    /// The `k`-th write from now fails.
    pub fn fail_write_in(&self, k: u64) {
        self.fail_write_at.store(self.writes.load(Ordering::SeqCst) + k, Ordering::SeqCst);
    }

    /// The `k`-th fsync from now fails.
    pub fn fail_sync_in(&self, k: u64) {
        self.fail_sync_at.store(self.syncs.load(Ordering::SeqCst) + k, Ordering::SeqCst);
    }

    /// Every write and every growth of the file fails with "no space left on device".
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::SeqCst);
    }

    /// No more faults.
    pub fn clear(&self) {
        self.fail_write_at.store(0, Ordering::SeqCst);
        self.fail_sync_at.store(0, Ordering::SeqCst);
        self.disk_full.store(false, Ordering::SeqCst);
    }

    /// How many operations failed on purpose so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn fail(&self, what: &str) -> Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        Error::other(format!("injected {what} failure"))
    }

    fn full(&self) -> Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        Error::new(ErrorKind::StorageFull, "injected: no space left on device")
    }
}

/// A file backend that obeys a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    plan: Arc<FaultPlan>,
}

impl FaultyBackend {
    pub fn new(file: File, plan: Arc<FaultPlan>) -> Result<FaultyBackend, redb::DatabaseError> {
        Ok(FaultyBackend { inner: FileBackend::new(file)?, plan })
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), Error> {
        if self.plan.disk_full.load(Ordering::SeqCst) && len > self.inner.len()? {
            return Err(self.plan.full());
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), Error> {
        let n = self.plan.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.plan.fail_sync_at.load(Ordering::SeqCst) {
            return Err(self.plan.fail("fsync"));
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let n = self.plan.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.plan.disk_full.load(Ordering::SeqCst) {
            return Err(self.plan.full());
        }
        if n == self.plan.fail_write_at.load(Ordering::SeqCst) {
            return Err(self.plan.fail("write"));
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// A redb database in the file at `path` (created if missing) whose storage obeys `plan`: the
/// opener every store's fault tests use.
pub fn open_faulty_database(
    path: &std::path::Path,
    plan: &Arc<FaultPlan>,
) -> Result<redb::Database, redb::DatabaseError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?;
    redb::Database::builder().create_with_backend(FaultyBackend::new(file, Arc::clone(plan))?)
}

/// A durable queue in the file at `path` whose storage obeys `plan`, reopened after a failed write
/// over the same file and plan (as [`RedbQueue::open`] does for a plain file).
pub fn open_faulty_queue(
    path: &std::path::Path,
    options: RedbQueueOptions,
    plan: &Arc<FaultPlan>,
) -> Result<RedbQueue, QueueError> {
    let plan = Arc::clone(plan);
    RedbQueue::open_with(path, options, Arc::new(move |path: &std::path::Path| open_faulty_database(path, &plan)))
}
