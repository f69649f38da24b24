//! Where epoch archives are kept: a local directory (durable) or memory (tests).

use crate::error::EpochError;
use keyfold_core::Epoch;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Stores each epoch's archive file. `put` returns only once the bytes are durable.
pub trait ArchiveSink: Send + Sync + std::fmt::Debug {
    fn put(&self, epoch: Epoch, bytes: &[u8]) -> Result<(), EpochError>;
    fn get(&self, epoch: Epoch) -> Result<Option<Vec<u8>>, EpochError>;
}

/// Archives as files `epoch-<20 digits>.parquet` in a directory.
#[derive(Debug)]
pub struct DirArchives {
    dir: PathBuf,
}

impl DirArchives {
    pub fn open(dir: &Path) -> Result<DirArchives, EpochError> {
        std::fs::create_dir_all(dir).map_err(|e| EpochError::Io(Box::new(e)))?;
        Ok(DirArchives { dir: dir.to_path_buf() })
    }

    pub fn path(&self, epoch: Epoch) -> PathBuf {
        self.dir.join(format!("epoch-{:020}.parquet", epoch.0))
    }
}

impl ArchiveSink for DirArchives {
    // Written to a temporary file, synced, renamed over the final name, then the directory is
    // synced. Recovery if the process dies at any point: either no file or a complete one exists;
    // the re-run of the epoch writes the identical bytes again (archives are deterministic).
    fn put(&self, epoch: Epoch, bytes: &[u8]) -> Result<(), EpochError> {
        let io = |e: std::io::Error| EpochError::Io(Box::new(e));
        let tmp = self.dir.join(format!("epoch-{:020}.parquet.tmp", epoch.0));
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.path(epoch)).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }

    fn get(&self, epoch: Epoch) -> Result<Option<Vec<u8>>, EpochError> {
        match std::fs::read(self.path(epoch)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EpochError::Io(Box::new(e))),
        }
    }
}

/// Archives in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryArchives {
    files: Mutex<BTreeMap<u64, Vec<u8>>>,
}

impl ArchiveSink for MemoryArchives {
    fn put(&self, epoch: Epoch, bytes: &[u8]) -> Result<(), EpochError> {
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(epoch.0, bytes.to_vec());
        Ok(())
    }

    fn get(&self, epoch: Epoch) -> Result<Option<Vec<u8>>, EpochError> {
        Ok(self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&epoch.0).cloned())
    }
}
