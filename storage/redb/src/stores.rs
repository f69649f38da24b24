//! Every embedded store of one data directory, opened in one place: the file names of the
//! layout (README, "The data directory") are written here and nowhere else.

use crate::{RedbCosignatures, RedbHeadStore, RedbOptions, RedbOutcomeIndex, RedbQueue, RedbQueueOptions, RedbStore};
use keyfold_epoch::EpochError;
use keyfold_map::TreeConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where each embedded store keeps its files in a data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout { dir: dir.to_path_buf() }
    }

    /// The mutation queue.
    pub fn queue(&self) -> PathBuf {
        self.dir.join("queue.redb")
    }

    /// The map: a folder of group files and `meta.redb`.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Signed heads and the queue cursor.
    pub fn heads(&self) -> PathBuf {
        self.dir.join("heads.redb")
    }

    /// Outcomes by mutation id and key histories (derived from the archives).
    pub fn index(&self) -> PathBuf {
        self.dir.join("index.redb")
    }

    /// Witness cosignatures.
    pub fn cosignatures(&self) -> PathBuf {
        self.dir.join("cosignatures.redb")
    }
}

/// What the stores of a directory are created with and checked against (from `keyfold.toml`).
#[derive(Debug, Clone, Copy)]
pub struct StoresOptions {
    pub tree: TreeConfig,
    /// Group files of the map (fixed at creation).
    pub groups: u16,
    pub queue: RedbQueueOptions,
}

/// Every embedded store of a data directory, open.
#[derive(Debug)]
pub struct Stores {
    pub queue: RedbQueue,
    pub map: RedbStore,
    pub heads: RedbHeadStore,
    pub index: Arc<RedbOutcomeIndex>,
    pub cosignatures: Arc<RedbCosignatures>,
}

/// Opens (or creates) every store of the data directory `dir`. redb locks each file: a second
/// process (a running `serve`) makes this fail with an I/O error naming the file.
pub fn open(dir: &Path, options: StoresOptions) -> Result<Stores, EpochError> {
    let layout = Layout::new(dir);
    let map_options = RedbOptions { groups: options.groups, ..RedbOptions::new(options.tree) };
    Ok(Stores {
        queue: RedbQueue::open(&layout.queue(), options.queue)?,
        map: RedbStore::open(&layout.tree(), map_options)?,
        heads: RedbHeadStore::open(&layout.heads())?,
        index: Arc::new(RedbOutcomeIndex::open(&layout.index())?),
        cosignatures: Arc::new(RedbCosignatures::open(&layout.cosignatures())?),
    })
}
