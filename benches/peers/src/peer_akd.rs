//! Meta's akd on its in-memory storage (`AsyncInMemoryDatabase` behind a `StorageManager`, no
//! cache), with the experimental configuration (BLAKE3) and the hard-coded demo VRF key.
//!
//! * `Azks` (tree-only): `Azks::batch_insert_nodes` inside a storage transaction (compute: the
//!   insert, its node reads and writes go to the transaction log in memory), then the transaction
//!   commit into the database (write). akd's tree is append-only: a new key is one new leaf, an
//!   update of an existing key is two (the new version's leaf and the old version's stale
//!   marker), which is what `Directory::publish` inserts too. Leaf labels here are BLAKE3 hashes
//!   of (freshness, key, version) instead of VRF outputs, since the VRF is not part of the tree.
//! * `Directory` (full epoch): `Directory::publish`, which is akd's whole epoch: version lookups,
//!   VRF labels for every leaf (in parallel), value commitments, the tree insert and the storage
//!   commit. It signs nothing (akd leaves signing the root to the caller).

use crate::driver::{EpochFigures, Instance, Peer, System, What};
use crate::workload::Item;
use akd::append_only_zks::InsertMode;
use akd::ecvrf::HardCodedAkdVRF;
use akd::storage::StorageManager;
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::storage::types::DbRecord;
use akd::{
    AkdLabel, AkdValue, Azks, AzksElement, AzksParallelismConfig, AzksParallelismOption, AzksValue, Configuration,
    Directory, EpochHash, ExampleLabel, ExperimentalConfiguration, NodeLabel,
};
use anyhow::{Result, anyhow, bail};
use std::time::Instant;
use tokio::runtime::Runtime;

type Tc = ExperimentalConfiguration<ExampleLabel>;
type Storage = StorageManager<AsyncInMemoryDatabase>;

/// akd's parallel insert and preload on `threads` tasks (instead of "all available cores"), so
/// it uses the same thread count as Keyfold.
fn parallelism(threads: usize) -> AzksParallelismConfig {
    let n = u32::try_from(threads).unwrap_or(u32::MAX);
    AzksParallelismConfig { insertion: AzksParallelismOption::Static(n), preload: AzksParallelismOption::Static(n) }
}

fn akd_error(e: akd::errors::AkdError) -> anyhow::Error {
    anyhow!("akd: {e}")
}

/// The tree alone.
pub struct AzksTree<'r> {
    pub runtime: &'r Runtime,
    pub threads: usize,
}

pub struct AzksInstance<'r> {
    runtime: &'r Runtime,
    storage: Storage,
    azks: Azks,
    parallelism: AzksParallelismConfig,
}

impl<'r> System for AzksTree<'r> {
    type Instance = AzksInstance<'r>;
    fn peer(&self) -> Peer {
        Peer::Akd
    }
    fn name(&self) -> &'static str {
        "akd Azks"
    }
    fn fresh(&self) -> Result<AzksInstance<'r>> {
        let storage = StorageManager::new_no_cache(AsyncInMemoryDatabase::new());
        let azks = self.runtime.block_on(Azks::new::<Tc, _>(&storage)).map_err(akd_error)?;
        Ok(AzksInstance { runtime: self.runtime, storage, azks, parallelism: parallelism(self.threads) })
    }
}

/// The leaf label of `key` at `version` (256 bits).
fn label(stale: bool, key: &[u8], version: u64) -> NodeLabel {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[u8::from(stale)]);
    hasher.update(&version.to_be_bytes());
    hasher.update(key);
    NodeLabel::new(*hasher.finalize().as_bytes(), akd::LEAF_LEN)
}

/// The leaves one update inserts: its new version, plus the stale marker of the old one.
fn leaves(item: &Item) -> impl Iterator<Item = AzksElement> {
    let key = item.key();
    let fresh = AzksElement { label: label(false, &key, item.version), value: AzksValue(item.value) };
    let stale = (item.version > 1)
        .then(|| AzksElement { label: label(true, &key, item.version - 1), value: Tc::stale_azks_value() });
    std::iter::once(fresh).chain(stale)
}

impl Instance for AzksInstance<'_> {
    fn epoch(&mut self, batch: &[Item]) -> Result<EpochFigures> {
        let elements: Vec<AzksElement> = batch.iter().flat_map(leaves).collect();
        let count = elements.len();
        let (storage, azks, parallelism) = (&self.storage, &mut self.azks, self.parallelism);
        self.runtime.block_on(async move {
            if !storage.begin_transaction() {
                bail!("akd: a storage transaction is already active");
            }
            let start = Instant::now();
            azks.batch_insert_nodes::<Tc, _>(storage, elements, InsertMode::Directory, parallelism)
                .await
                .map_err(akd_error)?;
            let compute = start.elapsed();
            let start = Instant::now();
            // A transaction must end with the Azks record (as `Directory::publish` writes it).
            storage.set(DbRecord::Azks(azks.clone())).await.map_err(|e| anyhow!("akd storage: {e}"))?;
            let records = storage.commit_transaction().await.map_err(|e| anyhow!("akd storage: {e}"))?;
            let write = start.elapsed();
            let root = azks.get_root_hash::<Tc, _>(storage).await.map_err(akd_error)?;
            Ok(EpochFigures {
                times: vec![(What::TreeCompute, compute), (What::TreeWrite, write)],
                root,
                detail: format!("epoch {}, {count} leaves, {records} records", azks.get_latest_epoch()),
            })
        })
    }
}

/// The whole directory epoch.
pub struct AkdDirectory<'r> {
    pub runtime: &'r Runtime,
    pub threads: usize,
}

pub struct DirectoryInstance<'r> {
    runtime: &'r Runtime,
    directory: Directory<Tc, AsyncInMemoryDatabase, HardCodedAkdVRF>,
}

impl<'r> System for AkdDirectory<'r> {
    type Instance = DirectoryInstance<'r>;
    fn peer(&self) -> Peer {
        Peer::Akd
    }
    fn name(&self) -> &'static str {
        "akd Directory"
    }
    fn fresh(&self) -> Result<DirectoryInstance<'r>> {
        let storage = StorageManager::new_no_cache(AsyncInMemoryDatabase::new());
        let directory = self
            .runtime
            .block_on(Directory::new(storage, HardCodedAkdVRF, parallelism(self.threads)))
            .map_err(akd_error)?;
        Ok(DirectoryInstance { runtime: self.runtime, directory })
    }
}

impl Instance for DirectoryInstance<'_> {
    fn epoch(&mut self, batch: &[Item]) -> Result<EpochFigures> {
        let updates: Vec<(AkdLabel, AkdValue)> =
            batch.iter().map(|it| (AkdLabel(it.key()), AkdValue(it.value.to_vec()))).collect();
        let start = Instant::now();
        let EpochHash(epoch, root) = self.runtime.block_on(self.directory.publish(updates)).map_err(akd_error)?;
        let publish = start.elapsed();
        Ok(EpochFigures { times: vec![(What::FullEpoch, publish)], root, detail: format!("epoch {epoch}") })
    }
}
