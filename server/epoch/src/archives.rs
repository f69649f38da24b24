//! Where epoch archives are kept: objects in an object store (`object_store`: a local directory
//! by default, durable with fsync), or plain memory for tests.

use crate::error::EpochError;
use bytes::Bytes;
use keyfold_core::{Epoch, Hash, HashSuite};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Stores each epoch's archive file. `put` returns only once the bytes are durable.
///
/// Readers that serve archives use [`ArchiveSink::size`] and [`ArchiveSink::read_range`], so a
/// request holds at most the piece it reads, never the whole file (archives reach gigabytes).
pub trait ArchiveSink: Send + Sync + std::fmt::Debug {
    fn put(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError>;
    /// The whole file (the job's re-indexing and `keyfold verify` read it all anyway).
    fn get(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError>;
    /// The file's size in bytes, without reading it; `None` when there is no archive.
    fn size(&self, epoch: Epoch) -> Result<Option<u64>, EpochError>;
    /// Bytes `range` of the file (shorter when the file ends first); `None` when there is none.
    fn read_range(&self, epoch: Epoch, range: Range<u64>) -> Result<Option<Bytes>, EpochError>;
    /// Stores `epoch`'s epoch proof (SPEC section 3.2) beside its archive, durably.
    fn put_proof(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError>;
    /// `epoch`'s epoch proof; `None` when there is none (epoch 0).
    fn get_proof(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError>;
    /// Deletes `epoch`'s proof, then its archive (retention); either may already be gone.
    fn delete(&self, epoch: Epoch) -> Result<(), EpochError>;
}

/// What [`verify_archive`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveCheck {
    /// The file's digest is the expected one.
    Verified { size_bytes: u64 },
    /// There is no file.
    Missing,
    /// The file's digest is `found`, not the expected one (or it changed size while read).
    Mismatch { size_bytes: u64, found: Hash },
}

/// Checks `epoch`'s archive against `expected` (the digest its signed head carries), reading it in
/// pieces of `piece_bytes`: memory stays at one piece whatever the file's size.
pub fn verify_archive(
    sink: &dyn ArchiveSink,
    epoch: Epoch,
    suite: HashSuite,
    expected: &Hash,
    piece_bytes: u64,
) -> Result<ArchiveCheck, EpochError> {
    let Some(size_bytes) = sink.size(epoch)? else { return Ok(ArchiveCheck::Missing) };
    let mut digester = suite.archive_digester();
    let mut at = 0;
    while at < size_bytes {
        let end = at.saturating_add(piece_bytes.max(1)).min(size_bytes);
        let Some(piece) = sink.read_range(epoch, at..end)? else { return Ok(ArchiveCheck::Missing) };
        if piece.is_empty() {
            break; // the file shrank while read: its digest cannot match
        }
        digester.update(&piece);
        at += piece.len() as u64;
    }
    let found = digester.finalize();
    if at == size_bytes && found == *expected {
        Ok(ArchiveCheck::Verified { size_bytes })
    } else {
        Ok(ArchiveCheck::Mismatch { size_bytes, found })
    }
}

/// The object name of an epoch's archive: `epoch-<20 digits>.parquet`.
pub fn archive_name(epoch: Epoch) -> String {
    format!("epoch-{:020}.parquet", epoch.0)
}

/// The object name of an epoch's proof: `epoch-<20 digits>.proof`.
pub fn proof_name(epoch: Epoch) -> String {
    format!("epoch-{:020}.proof", epoch.0)
}

/// Archives as objects `<prefix>/epoch-<20 digits>.parquet` in an [`ObjectStore`], and epoch
/// proofs beside them as `<prefix>/epoch-<20 digits>.proof`.
///
/// The default is a local directory ([`ObjectArchives::local`]): `object_store`'s
/// `LocalFileSystem` with fsync on, which writes a staging file, fsyncs it, renames it over the
/// final name and fsyncs the directory before `put` returns. Any other store (S3, GCS, Azure
/// when `object_store` is built with their features) acknowledges a put once it is durable by
/// its own contract. Recovery if the process dies during or right after a put: no head names
/// the archive yet; the re-run of the epoch writes the identical bytes again (archives are
/// deterministic), overwriting whatever is there.
pub struct ObjectArchives {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Where the archives are, for messages.
    location: String,
    /// Drives the store's async API from the (synchronous) epoch job and API workers.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectArchives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectArchives").field("location", &self.location).finish()
    }
}

fn io(e: impl std::error::Error + Send + Sync + 'static) -> EpochError {
    EpochError::io(e)
}

impl ObjectArchives {
    /// Archives in the local directory `dir` (created if missing), durable with fsync.
    pub fn local(dir: &Path) -> Result<ObjectArchives, EpochError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(io)?.with_fsync(true);
        Self::new(Arc::new(store), ObjectPath::default(), &dir.display().to_string())
    }

    /// Archives under `prefix` in `store`; `location` names it in messages.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: ObjectPath, location: &str) -> Result<ObjectArchives, EpochError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io)?;
        Ok(ObjectArchives { store, prefix, location: location.to_owned(), runtime })
    }

    /// The object path of `epoch`'s archive.
    pub fn path(&self, epoch: Epoch) -> ObjectPath {
        self.prefix.clone().join(archive_name(epoch))
    }

    /// Where `epoch`'s archive is, for a person: the location and the object path.
    pub fn describe(&self, epoch: Epoch) -> String {
        format!("{}/{}", self.location.trim_end_matches('/'), self.path(epoch))
    }

    /// Runs `future` to completion on this sink's runtime, from a thread of its own: callers may
    /// be on a thread inside another tokio runtime (an API worker), where blocking on a runtime
    /// is refused.
    fn block_on<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        std::thread::scope(|scope| {
            scope.spawn(|| self.runtime.block_on(future)).join().expect("the object store call panicked")
        })
    }
}

impl ArchiveSink for ObjectArchives {
    fn put(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError> {
        let path = self.path(epoch);
        let put = self.store.put_opts(&path, PutPayload::from(bytes), PutOptions::default());
        self.block_on(put)
            .map(drop)
            .map_err(|e| EpochError::io(format!("storing the archive of epoch {epoch} in {}: {e}", self.location)))
    }

    fn get(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError> {
        let path = self.path(epoch);
        let fetched = self.block_on(async {
            match self.store.get_opts(&path, GetOptions::default()).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        fetched.map_err(|e| self.read_error(epoch, &e))
    }

    fn size(&self, epoch: Epoch) -> Result<Option<u64>, EpochError> {
        let path = self.path(epoch);
        match self.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.read_error(epoch, &e)),
        }
    }

    fn read_range(&self, epoch: Epoch, range: Range<u64>) -> Result<Option<Bytes>, EpochError> {
        let path = self.path(epoch);
        match self.block_on(self.store.get_range(&path, range)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.read_error(epoch, &e)),
        }
    }

    fn put_proof(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError> {
        let path = self.prefix.clone().join(proof_name(epoch));
        let put = self.store.put_opts(&path, PutPayload::from(bytes), PutOptions::default());
        self.block_on(put)
            .map(drop)
            .map_err(|e| EpochError::io(format!("storing the proof of epoch {epoch} in {}: {e}", self.location)))
    }

    fn get_proof(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError> {
        let path = self.prefix.clone().join(proof_name(epoch));
        let fetched = self.block_on(async {
            match self.store.get_opts(&path, GetOptions::default()).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        fetched.map_err(|e| EpochError::io(format!("reading the proof of epoch {epoch} from {}: {e}", self.location)))
    }

    fn delete(&self, epoch: Epoch) -> Result<(), EpochError> {
        self.delete_object(self.prefix.clone().join(proof_name(epoch)), "proof", epoch)?;
        self.delete_object(self.path(epoch), "archive", epoch)
    }
}

impl ObjectArchives {
    fn delete_object(&self, path: ObjectPath, what: &str, epoch: Epoch) -> Result<(), EpochError> {
        match self.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(EpochError::io(format!("deleting the {what} of epoch {epoch} from {}: {e}", self.location))),
        }
    }

    fn read_error(&self, epoch: Epoch, e: &object_store::Error) -> EpochError {
        EpochError::io(format!("reading the archive of epoch {epoch} from {}: {e}", self.location))
    }
}

/// Archives in memory, for tests and the in-memory benchmark.
#[derive(Debug, Default)]
pub struct MemoryArchives {
    files: Mutex<BTreeMap<u64, Bytes>>,
    proofs: Mutex<BTreeMap<u64, Bytes>>,
}

impl ArchiveSink for MemoryArchives {
    fn put(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError> {
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(epoch.0, bytes);
        Ok(())
    }

    fn get(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError> {
        Ok(self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&epoch.0).cloned())
    }

    fn size(&self, epoch: Epoch) -> Result<Option<u64>, EpochError> {
        Ok(self.get(epoch)?.map(|b| b.len() as u64))
    }

    fn read_range(&self, epoch: Epoch, range: Range<u64>) -> Result<Option<Bytes>, EpochError> {
        Ok(self.get(epoch)?.map(|b| {
            let len = b.len() as u64;
            let (start, end) = (range.start.min(len), range.end.clamp(range.start.min(len), len));
            // Both are at most `len`, a usize.
            #[allow(clippy::cast_possible_truncation)]
            b.slice(start as usize..end as usize)
        }))
    }

    fn put_proof(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError> {
        self.proofs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(epoch.0, bytes);
        Ok(())
    }

    fn get_proof(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError> {
        Ok(self.proofs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&epoch.0).cloned())
    }

    fn delete(&self, epoch: Epoch) -> Result<(), EpochError> {
        self.proofs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&epoch.0);
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&epoch.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(sink: &dyn ArchiveSink) {
        assert_eq!(sink.get(Epoch(1)).unwrap(), None, "nothing stored yet");
        sink.put(Epoch(1), Bytes::from_static(b"first")).unwrap();
        sink.put(Epoch(2), Bytes::from_static(b"second")).unwrap();
        sink.put(Epoch(1), Bytes::from_static(b"first again")).unwrap(); // a re-run overwrites
        assert_eq!(sink.get(Epoch(1)).unwrap().as_deref(), Some(&b"first again"[..]));
        assert_eq!(sink.get(Epoch(2)).unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(sink.get(Epoch(3)).unwrap(), None);
        assert_eq!(sink.size(Epoch(1)).unwrap(), Some(11));
        assert_eq!(sink.size(Epoch(3)).unwrap(), None);
        assert_eq!(sink.read_range(Epoch(1), 6..9).unwrap().as_deref(), Some(&b"aga"[..]));
        assert_eq!(sink.read_range(Epoch(3), 0..1).unwrap(), None);

        let suite = HashSuite::Blake3;
        let digest = suite.archive_digest(b"first again");
        for piece in [1, 4, 11, 64] {
            let check = verify_archive(sink, Epoch(1), suite, &digest, piece).unwrap();
            assert_eq!(check, ArchiveCheck::Verified { size_bytes: 11 }, "pieces of {piece}");
        }
        let other = suite.archive_digest(b"second");
        assert!(matches!(verify_archive(sink, Epoch(1), suite, &other, 4).unwrap(), ArchiveCheck::Mismatch { .. }));
        assert_eq!(verify_archive(sink, Epoch(3), suite, &digest, 4).unwrap(), ArchiveCheck::Missing);
    }

    #[test]
    fn local_archives_are_files_named_by_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ObjectArchives::local(&dir.path().join("archives")).unwrap();
        round_trip(&sink);
        let file = dir.path().join("archives").join("epoch-00000000000000000002.parquet");
        assert_eq!(std::fs::read(file).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("archives")).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no staging files left behind");
    }

    #[test]
    fn any_object_store_and_memory_hold_archives() {
        let store = Arc::new(object_store::memory::InMemory::new());
        round_trip(&ObjectArchives::new(store, ObjectPath::from("some/prefix"), "memory").unwrap());
        round_trip(&MemoryArchives::default());
    }

    #[test]
    fn works_from_inside_a_tokio_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ObjectArchives::local(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        runtime.block_on(async { round_trip(&sink) });
    }
}
