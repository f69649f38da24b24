//! The durable embedded store on redb: `meta.redb` (config, committed epoch, map roots, interior
//! nodes above the shards) and `group-NNN.redb` files holding the interior nodes and leaf values
//! of the shards `s` with `s % groups == NNN`. Group files commit in parallel, each with its own
//! writer.
//!
//! Every record key *starts* with the big-endian epoch that wrote it, and records are immutable, so
//! an epoch's writes are one sorted append at the end of each B-tree (pages fill sequentially instead
//! of dirtying a random page per record), and reads are point lookups that follow the child
//! pointers from a committed root. Records of an epoch that `meta.redb` does not name are
//! unreachable, and the next commit of that epoch deletes them first.
//!
//! In the group files records are *pages*: up to 22 interior nodes (fixed width, 4 KiB) or 32 leaf
//! values that one shard wrote in one epoch, sorted by position and searched in place. Pages cut
//! the record count ~20x (redb pays per record more than per byte), while staying small enough that
//! reading one node reads about one storage page however old the store is (see ARCHITECTURE.md).

use crate::prune::{BASE_LEAVES, BASE_NODES, BASES, REBASE_SPREAD, decode_top_base, prune_group, prune_meta};
use crate::reopen::{Opener, ReopeningDb, file_opener};
use keyfold_core::{Epoch, HashSuite, Index, LeafValue, StorageError};
use keyfold_map::TreeError;
use keyfold_map::format::{
    base_page_key, decode_child, decode_children, encode_child, encode_children, encode_leaf_pages, encode_node_pages,
    find_in_base_leaf_page, find_in_base_node_page, find_in_leaf_page, find_in_node_page, node_key, node_page_position,
    page_key,
};
use keyfold_map::{Child, Children, EpochBatch, NodeKey, PruneReport, Snapshot, TreeConfig, TreeStore};
use rayon::prelude::*;
use redb::{Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

type BytesTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const ROOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("roots");
pub(crate) const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");
pub(crate) const LEAVES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leaves");
/// `meta.redb`: the nodes above the shards of the tree at the oldest kept epoch (retention).
pub(crate) const TOP_BASE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("top_base");

const KEY_CONFIG: &str = "config";
const KEY_LATEST: &str = "latest_epoch";
pub(crate) const KEY_OLDEST: &str = "oldest_epoch";

/// How to open or create a [`RedbStore`].
#[derive(Debug, Clone, Copy)]
pub struct RedbOptions {
    /// Used when creating; checked against the stored config when opening.
    pub config: TreeConfig,
    /// Number of group files (parallel writers); fixed at creation. 1..=256. Default 2: measured
    /// on 2 cores, W1 epochs took 65 ms with 2 groups, 75 ms with 4 or 8, 174 ms with 1.
    pub groups: u16,
    /// redb page cache per file, in bytes.
    pub cache_size_bytes: usize,
}

impl RedbOptions {
    pub fn new(config: TreeConfig) -> RedbOptions {
        RedbOptions { config, groups: 2, cache_size_bytes: 256 << 20 }
    }
}

/// Where a commit stops early, to test crash recovery.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    None,
    /// Group files are committed, `meta.redb` is not.
    AfterGroups,
}

/// The durable embedded tree store.
#[derive(Debug)]
pub struct RedbStore {
    config: TreeConfig,
    dir: PathBuf,
    meta: ReopeningDb,
    groups: Vec<ReopeningDb>,
    commit_lock: Mutex<()>,
    /// Each shard's base epoch (retention), as last read from the group files: at open and after
    /// each prune. Snapshots share it instead of reading the tables per snapshot.
    bases: RwLock<Arc<Bases>>,
}

/// Each shard's base epoch, and the newest of them.
#[derive(Debug, Default)]
struct Bases {
    by_shard: Vec<Epoch>,
    newest: Epoch,
}

pub(crate) fn io(e: impl Into<redb::Error>) -> TreeError {
    TreeError::io(e.into())
}

/// Encoded pages of one shard, each with its first position.
type Pages<const N: usize> = Vec<([u8; N], Vec<u8>)>;

/// Pages of one group for one epoch, keyed by `epoch || shard || first position`, in key order.
#[derive(Debug, Default)]
struct GroupRecords {
    nodes: Vec<(Vec<u8>, Vec<u8>)>,
    leaves: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RedbStore {
    /// Opens the store in `dir`, creating it (and `dir`) if it holds none.
    pub fn open(dir: &Path, options: RedbOptions) -> Result<RedbStore, TreeError> {
        Self::open_with(dir, options, file_opener(options.cache_size_bytes))
    }

    /// As [`RedbStore::open`], opening each file with `opener` (tests inject I/O faults with it).
    /// After a failed write the store drops that file's handle and reopens it on next use (see
    /// [`ReopeningDb`]), so it recovers in place once the fault clears.
    pub fn open_with(dir: &Path, options: RedbOptions, opener: Opener) -> Result<RedbStore, TreeError> {
        if options.groups == 0 || options.groups > 256 {
            return Err(TreeError::InvalidConfig(format!("groups is {}; choose 1..=256", options.groups)));
        }
        std::fs::create_dir_all(dir).map_err(TreeError::io)?;
        let meta_path = dir.join("meta.redb");
        let fresh = !meta_path.exists();
        let open = |path: PathBuf| ReopeningDb::open(&path, Arc::clone(&opener)).map_err(io);
        let meta = open(meta_path)?;
        let (config, groups) = if fresh {
            Self::initialise(&*meta.get().map_err(io)?, &options)?;
            (options.config, options.groups)
        } else {
            Self::read_config(&*meta.get().map_err(io)?, &options)?
        };
        let groups = (0..groups).map(|g| open(dir.join(format!("group-{g:03}.redb")))).collect::<Result<_, _>>()?;
        let bases = RwLock::new(Arc::new(Bases::default()));
        let store = RedbStore { config, dir: dir.to_path_buf(), meta, groups, commit_lock: Mutex::new(()), bases };
        store.reload_bases()?;
        Ok(store)
    }

    /// Reads every shard's base epoch from the group files into the shared cache.
    fn reload_bases(&self) -> Result<(), TreeError> {
        let mut bases = Bases { by_shard: vec![Epoch(0); self.config.shard_count()], newest: Epoch(0) };
        for db in &self.groups {
            let txn = db.get().map_err(io)?.begin_read().map_err(io)?;
            bases.newest = bases.newest.max(read_bases(&txn, &mut bases.by_shard)?);
        }
        *self.bases.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(bases);
        Ok(())
    }

    fn current_bases(&self) -> Arc<Bases> {
        Arc::clone(&self.bases.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // Recovery if the process dies right after this commit: the store exists at epoch 0 (empty).
    // If it dies before, meta.redb holds no config and the next open says so.
    fn initialise(meta: &Database, options: &RedbOptions) -> Result<(), TreeError> {
        let mut txn = meta.begin_write().map_err(io)?;
        txn.set_durability(Durability::Immediate).map_err(io)?;
        {
            let mut t = txn.open_table(META).map_err(io)?;
            let c = options.config;
            let groups = options.groups.to_be_bytes();
            t.insert(KEY_CONFIG, [c.suite.id(), c.shard_bits, groups[0], groups[1]].as_slice()).map_err(io)?;
            t.insert(KEY_LATEST, 0u64.to_be_bytes().as_slice()).map_err(io)?;
            let mut empty = Vec::new();
            encode_child(&Child::EMPTY, &mut empty);
            txn.open_table(ROOTS).map_err(io)?.insert(0u64, empty.as_slice()).map_err(io)?;
            drop(txn.open_table(NODES).map_err(io)?);
        }
        txn.commit().map_err(io)
    }

    fn read_config(meta: &Database, options: &RedbOptions) -> Result<(TreeConfig, u16), TreeError> {
        let txn = meta.begin_read().map_err(io)?;
        let t = txn.open_table(META).map_err(io)?;
        let raw = t.get(KEY_CONFIG).map_err(io)?.ok_or_else(|| {
            TreeError::corrupt("meta.redb has no config: the store was never fully initialised; remove the directory")
        })?;
        let raw = raw.value();
        let [suite_id, shard_bits, g0, g1] = raw else {
            return Err(TreeError::corrupt("config record has the wrong length"));
        };
        let suite = HashSuite::from_id(*suite_id).ok_or_else(|| TreeError::corrupt("unknown hash suite id"))?;
        let config = TreeConfig::new(suite, *shard_bits)?;
        if config != options.config {
            return Err(TreeError::ConfigMismatch {
                stored: format!("{} with {} shard bits", suite.name(), shard_bits),
                requested: format!("{} with {} shard bits", options.config.suite.name(), options.config.shard_bits),
            });
        }
        Ok((config, u16::from_be_bytes([*g0, *g1])))
    }

    fn group_of(&self, index: &Index) -> usize {
        index.shard(self.config.shard_bits).0 as usize % self.groups.len()
    }

    fn group_records(&self, batch: &EpochBatch) -> Vec<GroupRecords> {
        let e = batch.epoch;
        let groups = self.groups.len();
        // Encode each shard's pages in parallel, then hand them to their groups in shard order.
        let node_pages: Vec<(u32, Pages<33>)> =
            batch.shards.par_iter().map(|s| (s.shard.0, encode_node_pages(&s.nodes))).collect();
        let bits = self.config.shard_bits;
        let mut leaf_runs: Vec<&[(Index, LeafValue)]> = Vec::new();
        let mut rest = &batch.leaves[..];
        while let Some((first, _)) = rest.first() {
            let shard = first.shard(bits);
            let len = rest.partition_point(|(i, _)| i.shard(bits) == shard);
            leaf_runs.push(&rest[..len]);
            rest = &rest[len..];
        }
        let leaf_pages: Vec<(u32, Pages<32>)> =
            leaf_runs.par_iter().map(|run| (run[0].0.shard(bits).0, encode_leaf_pages(run))).collect();
        let mut out: Vec<GroupRecords> = (0..groups).map(|_| GroupRecords::default()).collect();
        for (shard, pages) in node_pages {
            let group = &mut out[shard as usize % groups].nodes;
            group.extend(pages.into_iter().map(|(first, page)| (page_key(e, shard, &first), page)));
        }
        for (shard, pages) in leaf_pages {
            let group = &mut out[shard as usize % groups].leaves;
            group.extend(pages.into_iter().map(|(first, page)| (page_key(e, shard, &first), page)));
        }
        out
    }

    /// Commits `batch`, stopping at `fault` to simulate a crash. Tests only.
    #[doc(hidden)]
    pub fn commit_with_fault(&self, batch: &EpochBatch, fault: CommitFault) -> Result<(), TreeError> {
        let _guard = self.commit_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let latest = self.latest_epoch()?;
        if batch.epoch != latest.next() {
            return Err(TreeError::NonSequentialEpoch { expected: latest.next(), got: batch.epoch });
        }
        let mut records = self.group_records(batch);
        // Step 1: every group file, in parallel, durably.
        // Recovery if the process dies right after any of these commits: meta.redb still names the
        // previous epoch, so no root points at these records and no reader can reach them; the
        // next commit of this epoch deletes them (step 1 starts by clearing epochs >= batch.epoch).
        self.groups
            .par_iter()
            .zip(records.par_iter_mut())
            .map(|(db, records)| on_failure(db, |d| write_group(d, batch.epoch, records)))
            .collect::<Result<Vec<()>, TreeError>>()?;
        if fault == CommitFault::AfterGroups {
            return Ok(());
        }
        // Step 2: meta.redb names the new epoch, atomically with its root and top nodes.
        // Recovery if the process dies right after this commit: nothing to do; the epoch is complete.
        // If this commit fails instead (I/O error, full disk), the same holds as for a crash
        // before it: the group records are unreachable and the retry of the epoch replaces them.
        on_failure(&self.meta, |meta| write_meta(meta, batch))
    }
}

/// Runs a write on `db`'s handle; after a storage error the handle is dropped, so the next use
/// reopens the file (redb refuses every later write through a handle whose write failed).
fn on_failure<T>(db: &ReopeningDb, write: impl FnOnce(&Database) -> Result<T, TreeError>) -> Result<T, TreeError> {
    db.write(io, |e| matches!(e, TreeError::Storage(StorageError::Io(_))), write)
}

fn write_meta(meta: &Database, batch: &EpochBatch) -> Result<(), TreeError> {
    let e = batch.epoch;
    let mut txn = meta.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    {
        let mut nodes = txn.open_table(NODES).map_err(io)?;
        let mut buf = Vec::with_capacity(146);
        for (key, children) in &batch.top_nodes {
            buf.clear();
            encode_children(children, &mut buf);
            nodes.insert(node_key(key, e).as_slice(), buf.as_slice()).map_err(io)?;
        }
        buf.clear();
        encode_child(&batch.root, &mut buf);
        txn.open_table(ROOTS).map_err(io)?.insert(e.0, buf.as_slice()).map_err(io)?;
        txn.open_table(META).map_err(io)?.insert(KEY_LATEST, e.0.to_be_bytes().as_slice()).map_err(io)?;
    }
    txn.commit().map_err(io)
}

/// Writes one group's records of `epoch` in one durable transaction, after deleting whatever an
/// interrupted attempt at this epoch left behind.
fn write_group(db: &Database, epoch: Epoch, records: &mut GroupRecords) -> Result<(), TreeError> {
    debug_assert!(records.nodes.windows(2).all(|w| w[0].0 < w[1].0), "pages arrive in shard order");
    let mut txn = db.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    let from = epoch.0.to_be_bytes();
    {
        let mut nodes = txn.open_table(NODES).map_err(io)?;
        let mut leaves = txn.open_table(LEAVES).map_err(io)?;
        let leftover = nodes.range::<&[u8]>(from.as_slice()..).map_err(io)?.next().is_some()
            || leaves.range::<&[u8]>(from.as_slice()..).map_err(io)?.next().is_some();
        if leftover {
            nodes.retain_in::<&[u8], _>(from.as_slice().., |_, _| false).map_err(io)?;
            leaves.retain_in::<&[u8], _>(from.as_slice().., |_, _| false).map_err(io)?;
        } else if records.nodes.is_empty() && records.leaves.is_empty() {
            return Ok(()); // nothing to write, nothing to remove: the transaction is dropped
        }
        for (key, value) in &records.nodes {
            nodes.insert(key.as_slice(), value.as_slice()).map_err(io)?;
        }
        for (key, value) in &records.leaves {
            leaves.insert(key.as_slice(), value.as_slice()).map_err(io)?;
        }
    }
    txn.commit().map_err(io)
}

/// A read view: one redb read transaction per file, opened together.
pub struct RedbSnapshot<'a> {
    store: &'a RedbStore,
    epoch: Epoch,
    root: Child,
    top_nodes: BytesTable,
    top_base: Option<BytesTable>,
    group_nodes: Vec<Option<BytesTable>>,
    group_leaves: Vec<Option<BytesTable>>,
    base_nodes: Vec<Option<BytesTable>>,
    base_leaves: Vec<Option<BytesTable>>,
    /// Each shard's base epoch (retention): a record written at or before it is in the base.
    bases: Arc<Bases>,
}

impl std::fmt::Debug for RedbSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbSnapshot").field("dir", &self.store.dir).field("epoch", &self.epoch).finish()
    }
}

/// Looks `key` up and searches the record in place with `find` (no copy of the page).
fn find<T>(
    table: Option<&BytesTable>,
    key: &[u8],
    find: impl FnOnce(&[u8]) -> Result<Option<T>, TreeError>,
) -> Result<Option<T>, TreeError> {
    let Some(table) = table else { return Ok(None) };
    match table.get(key).map_err(io)? {
        Some(guard) => find(guard.value()),
        None => Ok(None),
    }
}

/// Searches the page of `(written, shard)` that may hold `position`: the last page whose first
/// position is `<= position` (one B-tree seek), then `find` in place.
fn find_in_pages<const N: usize, T>(
    table: Option<&BytesTable>,
    written: Epoch,
    shard: u32,
    position: &[u8; N],
    find: impl FnOnce(&[u8]) -> Result<Option<T>, TreeError>,
) -> Result<Option<T>, TreeError> {
    find_last_page(table, &page_key(written, shard, &[0u8; 0]), &page_key(written, shard, position), find)
}

/// Searches a shard's base page that may hold `position` (retention), for the record `written`
/// wrote: a base holds one record per position, of the epoch that wrote it.
fn find_in_base<const N: usize, T>(
    table: Option<&BytesTable>,
    written: Epoch,
    shard: u32,
    position: &[u8; N],
    find: impl FnOnce(&[u8]) -> Result<Option<(Epoch, T)>, TreeError>,
) -> Result<Option<T>, TreeError> {
    let found = find_last_page(table, &base_page_key(shard, &[0u8; 0]), &base_page_key(shard, position), find)?;
    Ok(found.filter(|(w, _)| *w == written).map(|(_, record)| record))
}

/// The last page keyed in `lo..=hi`, searched with `find`.
fn find_last_page<T>(
    table: Option<&BytesTable>,
    lo: &[u8],
    hi: &[u8],
    find: impl FnOnce(&[u8]) -> Result<Option<T>, TreeError>,
) -> Result<Option<T>, TreeError> {
    let Some(table) = table else { return Ok(None) };
    let mut range = table.range::<&[u8]>(lo..=hi).map_err(io)?;
    match range.next_back() {
        Some(entry) => find(entry.map_err(io)?.1.value()),
        None => Ok(None),
    }
}

type Probe<'a, T> = &'a dyn Fn() -> Result<Option<T>, TreeError>;

impl RedbSnapshot<'_> {
    /// A record written by `written` in `shard`: from the shard's base if `written` is at or before
    /// the base epoch, else from that epoch's pages. The cached bases may lag or lead this
    /// snapshot's read of a group file around a prune, so a miss tries the other place; a record
    /// in neither, in a snapshot older than the newest base, was pruned after it opened.
    fn locate<T>(
        &self,
        shard: u32,
        written: Epoch,
        base: Probe<'_, T>,
        pages: Probe<'_, T>,
    ) -> Result<Option<T>, TreeError> {
        let in_base = written <= self.bases.by_shard[shard as usize];
        let (first, second) = if in_base { (base, pages) } else { (pages, base) };
        if let Some(found) = first()? {
            return Ok(Some(found));
        }
        if let Some(found) = second()? {
            return Ok(Some(found));
        }
        let newest = self.store.current_bases().newest;
        if self.epoch < newest {
            return Err(TreeError::EpochPruned { requested: self.epoch, oldest: newest });
        }
        Ok(None)
    }
}

impl Snapshot for RedbSnapshot<'_> {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn root(&self) -> Result<Child, TreeError> {
        Ok(self.root)
    }

    fn node(&self, key: &NodeKey, written: Epoch) -> Result<Option<Children>, TreeError> {
        let position = node_page_position(key);
        if key.depth < self.store.config.shard_bits {
            let found = find(Some(&self.top_nodes), &node_key(key, written), |b| decode_children(b).map(Some))?;
            if found.is_some() {
                return Ok(found);
            }
            let base = find(self.top_base.as_ref(), &position, |v| decode_top_base(&position, v).map(Some))?;
            return Ok(base.filter(|(_, w, _)| *w == written).map(|(_, _, children)| children));
        }
        let shard = key.prefix.shard(self.store.config.shard_bits).0;
        let group = self.store.group_of(&key.prefix);
        let base = || {
            let table = self.base_nodes[group].as_ref();
            find_in_base(table, written, shard, &position, |p| find_in_base_node_page(p, key))
        };
        let pages = || {
            find_in_pages(self.group_nodes[group].as_ref(), written, shard, &position, |p| find_in_node_page(p, key))
        };
        self.locate(shard, written, &base, &pages)
    }

    fn leaf(&self, index: &Index, written: Epoch) -> Result<Option<LeafValue>, TreeError> {
        let shard = index.shard(self.store.config.shard_bits).0;
        let group = self.store.group_of(index);
        let base = || {
            let table = self.base_leaves[group].as_ref();
            find_in_base(table, written, shard, &index.0, |p| find_in_base_leaf_page(p, index))
        };
        let pages = || {
            find_in_pages(self.group_leaves[group].as_ref(), written, shard, &index.0, |p| find_in_leaf_page(p, index))
        };
        self.locate(shard, written, &base, &pages)
    }
}

fn open_read_table(
    txn: &ReadTransaction,
    def: TableDefinition<&'static [u8], &'static [u8]>,
) -> Result<Option<BytesTable>, TreeError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(io(e)),
    }
}

impl TreeStore for RedbStore {
    type Snapshot<'a> = RedbSnapshot<'a>;

    fn config(&self) -> TreeConfig {
        self.config
    }

    fn latest_epoch(&self) -> Result<Epoch, TreeError> {
        let txn = self.meta.get().map_err(io)?.begin_read().map_err(io)?;
        read_latest(&txn)
    }

    fn snapshot(&self, at: Epoch) -> Result<RedbSnapshot<'_>, TreeError> {
        let meta = self.meta.get().map_err(io)?.begin_read().map_err(io)?;
        let latest = read_latest(&meta)?;
        if at > latest {
            return Err(TreeError::EpochNotCommitted { requested: at, latest });
        }
        let oldest = read_oldest(&meta)?;
        if at < oldest {
            return Err(TreeError::EpochPruned { requested: at, oldest });
        }
        let root_bytes = meta.open_table(ROOTS).map_err(io)?.get(at.0).map_err(io)?.map(|v| v.value().to_vec());
        let root = decode_child(&root_bytes.ok_or_else(|| TreeError::corrupt(format!("no root for epoch {}", at.0)))?)?;
        let top_nodes = meta.open_table(NODES).map_err(io)?;
        let top_base = open_read_table(&meta, TOP_BASE)?;
        let groups = self.groups.len();
        let (mut group_nodes, mut group_leaves) = (Vec::with_capacity(groups), Vec::with_capacity(groups));
        let (mut base_nodes, mut base_leaves) = (Vec::with_capacity(groups), Vec::with_capacity(groups));
        let bases = self.current_bases();
        if at < bases.newest {
            return Err(TreeError::EpochPruned { requested: at, oldest: bases.newest });
        }
        for db in &self.groups {
            let txn = db.get().map_err(io)?.begin_read().map_err(io)?;
            group_nodes.push(open_read_table(&txn, NODES)?);
            group_leaves.push(open_read_table(&txn, LEAVES)?);
            base_nodes.push(open_read_table(&txn, BASE_NODES)?);
            base_leaves.push(open_read_table(&txn, BASE_LEAVES)?);
        }
        Ok(RedbSnapshot {
            store: self,
            epoch: at,
            root,
            top_nodes,
            top_base,
            group_nodes,
            group_leaves,
            base_nodes,
            base_leaves,
            bases,
        })
    }

    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        self.commit_with_fault(batch, CommitFault::None)
    }

    fn oldest_epoch(&self) -> Result<Epoch, TreeError> {
        read_oldest(&self.meta.get().map_err(io)?.begin_read().map_err(io)?)
    }

    fn prune(&self, keep_from: Epoch) -> Result<PruneReport, TreeError> {
        let _guard = self.commit_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let keep_from = keep_from.min(self.latest_epoch()?).max(self.oldest_epoch()?);
        let mut bytes = crate::prune::Bytes::default();
        if keep_from > self.oldest_epoch()? {
            // Step 1: meta.redb forgets the roots before `keep_from` and rebases the top nodes.
            // Recovery if the process dies right after: snapshots before `keep_from` are refused;
            // the group records only they reached wait for their shard's rebase (step 2, which
            // any later prune continues: it rebases every shard whose base is older).
            bytes = on_failure(&self.meta, |meta| prune_meta(meta, keep_from))?;
        }
        // Step 2: each group file rebases its most out-of-date shards, in one durable transaction.
        // Recovery if the process dies right after a group's commit: its shards read from their
        // new base; a crash before it leaves the group as it was, and the next prune redoes it.
        let (groups, shards) = (self.groups.len(), self.config.shard_count());
        let limit = shards.div_ceil(REBASE_SPREAD).div_ceil(groups);
        let done = self
            .groups
            .par_iter()
            .enumerate()
            .map(|(g, db)| {
                let mine = (g..shards).step_by(groups).map(|s| u32::try_from(s).expect("shard ids fit u32"));
                on_failure(db, |d| prune_group(d, mine, keep_from, limit))
            })
            .collect::<Result<Vec<_>, TreeError>>()?;
        self.reload_bases()?;
        let mut report = PruneReport { oldest: keep_from, ..PruneReport::default() };
        report.bytes_deleted = bytes.deleted;
        report.bytes_written = bytes.written;
        for g in done {
            report.shards_rebased += g.rebased;
            report.shards_pending += g.pending;
            report.bytes_deleted += g.bytes.deleted;
            report.bytes_written += g.bytes.written;
        }
        Ok(report)
    }
}

fn read_oldest(txn: &ReadTransaction) -> Result<Epoch, TreeError> {
    let t = txn.open_table(META).map_err(io)?;
    let Some(v) = t.get(KEY_OLDEST).map_err(io)? else { return Ok(Epoch(0)) };
    let bytes: [u8; 8] = v.value().try_into().map_err(|_| TreeError::corrupt("oldest epoch record length"))?;
    Ok(Epoch(u64::from_be_bytes(bytes)))
}

/// Reads a group's shard bases into `bases` (by shard) and returns the newest.
fn read_bases(txn: &ReadTransaction, bases: &mut [Epoch]) -> Result<Epoch, TreeError> {
    let table = match txn.open_table(BASES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Epoch(0)),
        Err(e) => return Err(io(e)),
    };
    let mut newest = Epoch(0);
    for entry in table.iter().map_err(io)? {
        let (shard, base) = entry.map_err(io)?;
        let slot =
            bases.get_mut(shard.value() as usize).ok_or_else(|| TreeError::corrupt("base of an unknown shard"))?;
        *slot = Epoch(base.value());
        newest = newest.max(*slot);
    }
    Ok(newest)
}

fn read_latest(txn: &ReadTransaction) -> Result<Epoch, TreeError> {
    let t = txn.open_table(META).map_err(io)?;
    let v = t.get(KEY_LATEST).map_err(io)?.ok_or_else(|| TreeError::corrupt("no latest epoch record"))?;
    let bytes: [u8; 8] = v.value().try_into().map_err(|_| TreeError::corrupt("latest epoch record length"))?;
    Ok(Epoch(u64::from_be_bytes(bytes)))
}
