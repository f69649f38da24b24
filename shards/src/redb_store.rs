//! The durable embedded store on redb: `meta.redb` (config, committed epoch, map roots, shard roots,
//! nodes above the shards) and `group-NN.redb` files holding the nodes and leaves of the shards
//! `s` with `s % groups == NN`. Group files commit in parallel, each with its own writer.
//!
//! Every record key ends with the big-endian epoch that wrote it, so a read "as of epoch E" is one
//! B-tree seek to the last version <= E, and records of an epoch that was never committed in
//! `meta.redb` are invisible to every reader.

use crate::encoding::{
    NODE_KEY_LEN, decode_children, decode_leaf, decode_node, encode_children, encode_leaf, encode_node, leaf_key_at,
    node_key_at, shard_key_at,
};
use crate::error::TreeError;
use crate::store::{Children, EpochBatch, NodeKey, Snapshot, TreeConfig, TreeStore};
use keyfold_core::{Epoch, HashSuite, Index, LeafValue, Node};
use rayon::prelude::*;
use redb::{Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

type BytesTable = ReadOnlyTable<&'static [u8], &'static [u8]>;
/// A group's share of an epoch: its interior nodes and its leaves.
type GroupWork<'a> = (Vec<&'a (NodeKey, Children)>, Vec<&'a (Index, LeafValue)>);

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ROOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("roots");
const SHARD_ROOTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("shard_roots");
const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");
const LEAVES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leaves");
/// Per group: epoch -> the keys that epoch wrote (node keys, then leaf keys). Lets a re-run remove
/// what an interrupted attempt of the same epoch left behind.
const EPOCH_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("epoch_log");

const KEY_CONFIG: &str = "config";
const KEY_LATEST: &str = "latest_epoch";

/// How to open or create a [`RedbStore`].
#[derive(Debug, Clone, Copy)]
pub struct RedbOptions {
    /// Used when creating; checked against the stored config when opening.
    pub config: TreeConfig,
    /// Number of group files (parallel writers); fixed at creation. 1..=256.
    pub groups: u16,
    /// redb page cache per file, in bytes.
    pub cache_size_bytes: usize,
}

impl RedbOptions {
    pub fn new(config: TreeConfig) -> RedbOptions {
        RedbOptions { config, groups: 4, cache_size_bytes: 256 << 20 }
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
    meta: Database,
    groups: Vec<Database>,
    commit_lock: Mutex<()>,
}

fn io(e: impl Into<redb::Error>) -> TreeError {
    TreeError::io(e.into())
}

impl RedbStore {
    /// Opens the store in `dir`, creating it (and `dir`) if it holds none.
    pub fn open(dir: &Path, options: RedbOptions) -> Result<RedbStore, TreeError> {
        if options.groups == 0 || options.groups > 256 {
            return Err(TreeError::InvalidConfig(format!("groups is {}; choose 1..=256", options.groups)));
        }
        std::fs::create_dir_all(dir).map_err(TreeError::io)?;
        let meta_path = dir.join("meta.redb");
        let fresh = !meta_path.exists();
        let open =
            |path: PathBuf| Database::builder().set_cache_size(options.cache_size_bytes).create(path).map_err(io);
        let meta = open(meta_path)?;
        let (config, groups) = if fresh {
            Self::initialise(&meta, &options)?;
            (options.config, options.groups)
        } else {
            Self::read_config(&meta, &options)?
        };
        let groups = (0..groups).map(|g| open(dir.join(format!("group-{g:03}.redb")))).collect::<Result<_, _>>()?;
        Ok(RedbStore { config, dir: dir.to_path_buf(), meta, groups, commit_lock: Mutex::new(()) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // Recovery if the process dies right after this commit: the store exists with epoch 0 (empty);
    // if it dies before, `meta.redb` has no config and the next open fails with a clear error.
    fn initialise(meta: &Database, options: &RedbOptions) -> Result<(), TreeError> {
        let mut txn = meta.begin_write().map_err(io)?;
        txn.set_durability(Durability::Immediate).map_err(io)?;
        {
            let mut t = txn.open_table(META).map_err(io)?;
            let c = options.config;
            let groups = options.groups.to_be_bytes();
            t.insert(KEY_CONFIG, [c.suite.id(), c.shard_bits, groups[0], groups[1]].as_slice()).map_err(io)?;
            t.insert(KEY_LATEST, 0u64.to_be_bytes().as_slice()).map_err(io)?;
            let mut roots = txn.open_table(ROOTS).map_err(io)?;
            let mut empty = Vec::new();
            encode_node(&Node::Empty, &mut empty);
            roots.insert(0u64, empty.as_slice()).map_err(io)?;
            drop(txn.open_table(SHARD_ROOTS).map_err(io)?);
            drop(txn.open_table(NODES).map_err(io)?);
        }
        txn.commit().map_err(io)
    }

    fn read_config(meta: &Database, options: &RedbOptions) -> Result<(TreeConfig, u16), TreeError> {
        let txn = meta.begin_read().map_err(io)?;
        let t = txn.open_table(META).map_err(io)?;
        let raw = t.get(KEY_CONFIG).map_err(io)?.ok_or_else(|| {
            TreeError::Corrupt(
                "meta.redb has no config: the store was never fully initialised; remove the directory".into(),
            )
        })?;
        let raw = raw.value();
        let [suite_id, shard_bits, g0, g1] = raw else {
            return Err(TreeError::Corrupt("config record has the wrong length".into()));
        };
        let suite = HashSuite::from_id(*suite_id).ok_or_else(|| TreeError::Corrupt("unknown hash suite id".into()))?;
        let config = TreeConfig::new(suite, *shard_bits)?;
        if config != options.config {
            return Err(TreeError::ConfigMismatch {
                stored: format!("{} with {} shard bits", suite.name(), shard_bits),
                requested: format!("{} with {} shard bits", options.config.suite.name(), options.config.shard_bits),
            });
        }
        Ok((config, u16::from_be_bytes([*g0, *g1])))
    }

    fn group_of_shard(&self, shard: u32) -> usize {
        shard as usize % self.groups.len()
    }

    fn group_of_index(&self, index: &Index) -> usize {
        self.group_of_shard(index.shard(self.config.shard_bits).0)
    }

    /// Commits `batch`, stopping at `fault` to simulate a crash. Tests only.
    #[doc(hidden)]
    pub fn commit_with_fault(&self, batch: &EpochBatch, fault: CommitFault) -> Result<(), TreeError> {
        let _guard = self.commit_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let latest = self.latest_epoch()?;
        if batch.epoch != latest.next() {
            return Err(TreeError::NonSequentialEpoch { expected: latest.next(), got: batch.epoch });
        }
        let mut per_group: Vec<GroupWork<'_>> = (0..self.groups.len()).map(|_| (Vec::new(), Vec::new())).collect();
        for (shard, nodes) in &batch.shard_nodes {
            per_group[self.group_of_shard(shard.0)].0.extend(nodes.iter());
        }
        for leaf in &batch.leaves {
            per_group[self.group_of_index(&leaf.0)].1.push(leaf);
        }
        // Step 1: every group file, in parallel, durably.
        // Recovery if the process dies right after any of these commits: meta.redb still names the
        // previous epoch, so no reader looks at records of `batch.epoch`; the re-run of the epoch
        // deletes them through the epoch log and writes the new ones in one transaction.
        self.groups
            .par_iter()
            .zip(per_group.par_iter())
            .map(|(db, (nodes, leaves))| write_group(db, batch.epoch, nodes, leaves))
            .collect::<Result<Vec<()>, TreeError>>()?;
        if fault == CommitFault::AfterGroups {
            return Ok(());
        }
        // Step 2: meta.redb names the new epoch, atomically with its root, shard roots and top nodes.
        // Recovery if the process dies right after this commit: nothing; the epoch is complete.
        self.write_meta(batch)
    }

    fn write_meta(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        let e = batch.epoch;
        let mut txn = self.meta.begin_write().map_err(io)?;
        txn.set_durability(Durability::Immediate).map_err(io)?;
        {
            let mut nodes = txn.open_table(NODES).map_err(io)?;
            for (key, children) in &batch.top_nodes {
                nodes.insert(node_key_at(key, e).as_slice(), encode_children(children).as_slice()).map_err(io)?;
            }
            let mut shard_roots = txn.open_table(SHARD_ROOTS).map_err(io)?;
            let mut buf = Vec::with_capacity(65);
            for (shard, root) in &batch.shard_roots {
                buf.clear();
                encode_node(root, &mut buf);
                shard_roots.insert(shard_key_at(shard.0, e).as_slice(), buf.as_slice()).map_err(io)?;
            }
            buf.clear();
            encode_node(&batch.root, &mut buf);
            txn.open_table(ROOTS).map_err(io)?.insert(e.0, buf.as_slice()).map_err(io)?;
            txn.open_table(META).map_err(io)?.insert(KEY_LATEST, e.0.to_be_bytes().as_slice()).map_err(io)?;
        }
        txn.commit().map_err(io)
    }
}

fn write_group(
    db: &Database,
    epoch: Epoch,
    nodes: &[&(NodeKey, Children)],
    leaves: &[&(Index, LeafValue)],
) -> Result<(), TreeError> {
    let mut txn = db.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    {
        let mut log = txn.open_table(EPOCH_LOG).map_err(io)?;
        let mut node_table = txn.open_table(NODES).map_err(io)?;
        let mut leaf_table = txn.open_table(LEAVES).map_err(io)?;
        let leftover = log.remove(epoch.0).map_err(io)?.map(|v| v.value().to_vec());
        if let Some(keys) = leftover {
            remove_logged(&keys, &mut node_table, &mut leaf_table)?;
        } else if nodes.is_empty() && leaves.is_empty() {
            return Ok(()); // nothing to write, nothing to roll back: the transaction is dropped
        }
        let mut logged = Vec::with_capacity(4 + nodes.len() * (NODE_KEY_LEN + 8) + leaves.len() * 40);
        logged.extend_from_slice(&u32::try_from(nodes.len()).expect("node count fits u32").to_be_bytes());
        for (key, children) in nodes {
            let k = node_key_at(key, epoch);
            node_table.insert(k.as_slice(), encode_children(children).as_slice()).map_err(io)?;
            logged.extend_from_slice(&k);
        }
        for (index, leaf) in leaves {
            let k = leaf_key_at(index, epoch);
            leaf_table.insert(k.as_slice(), encode_leaf(leaf).as_slice()).map_err(io)?;
            logged.extend_from_slice(&k);
        }
        log.insert(epoch.0, logged.as_slice()).map_err(io)?;
    }
    txn.commit().map_err(io)
}

fn remove_logged(
    keys: &[u8],
    nodes: &mut redb::Table<&[u8], &[u8]>,
    leaves: &mut redb::Table<&[u8], &[u8]>,
) -> Result<(), TreeError> {
    let corrupt = || TreeError::Corrupt("undecodable epoch log record".into());
    let count = u32::from_be_bytes(keys.get(..4).ok_or_else(corrupt)?.try_into().expect("4 bytes")) as usize;
    let node_bytes = count.checked_mul(NODE_KEY_LEN + 8).ok_or_else(corrupt)?;
    let (node_keys, leaf_keys) = keys[4..].split_at_checked(node_bytes).ok_or_else(corrupt)?;
    if leaf_keys.len() % 40 != 0 {
        return Err(corrupt());
    }
    for k in node_keys.chunks_exact(NODE_KEY_LEN + 8) {
        nodes.remove(k).map_err(io)?;
    }
    for k in leaf_keys.chunks_exact(40) {
        leaves.remove(k).map_err(io)?;
    }
    Ok(())
}

/// A read view: one redb read transaction per file, all opened at creation.
pub struct RedbSnapshot<'a> {
    store: &'a RedbStore,
    epoch: Epoch,
    meta_nodes: BytesTable,
    shard_roots: BytesTable,
    root: Node,
    group_nodes: Vec<Option<BytesTable>>,
    group_leaves: Vec<Option<BytesTable>>,
}

impl std::fmt::Debug for RedbSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbSnapshot").field("dir", &self.store.dir).field("epoch", &self.epoch).finish()
    }
}

/// The last version <= `hi` of the record whose versions lie in `lo..=hi`.
fn latest_version(table: &BytesTable, lo: &[u8], hi: &[u8]) -> Result<Option<Vec<u8>>, TreeError> {
    let mut range = table.range::<&[u8]>(lo..=hi).map_err(io)?;
    match range.next_back() {
        None => Ok(None),
        Some(entry) => Ok(Some(entry.map_err(io)?.1.value().to_vec())),
    }
}

impl Snapshot for RedbSnapshot<'_> {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn root(&self) -> Result<Node, TreeError> {
        Ok(self.root)
    }

    fn shard_roots(&self) -> Result<Vec<Node>, TreeError> {
        (0..u32::try_from(self.store.config.shard_count()).expect("at most 2^16 shards"))
            .map(|s| {
                let found =
                    latest_version(&self.shard_roots, &shard_key_at(s, Epoch(0)), &shard_key_at(s, self.epoch))?;
                found.map_or(Ok(Node::Empty), |b| decode_node(&b))
            })
            .collect()
    }

    fn node(&self, key: &NodeKey) -> Result<Option<Children>, TreeError> {
        let table = if usize::from(key.depth) < usize::from(self.store.config.shard_bits) {
            Some(&self.meta_nodes)
        } else {
            self.group_nodes[self.store.group_of_index(&key.prefix)].as_ref()
        };
        let Some(table) = table else { return Ok(None) };
        let found = latest_version(table, &node_key_at(key, Epoch(0)), &node_key_at(key, self.epoch))?;
        found.map(|b| decode_children(&b)).transpose()
    }

    fn leaf(&self, index: &Index) -> Result<Option<LeafValue>, TreeError> {
        let Some(table) = self.group_leaves[self.store.group_of_index(index)].as_ref() else {
            return Ok(None);
        };
        let found = latest_version(table, &leaf_key_at(index, Epoch(0)), &leaf_key_at(index, self.epoch))?;
        found.map(|b| decode_leaf(&b)).transpose()
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
        let txn = self.meta.begin_read().map_err(io)?;
        read_latest(&txn)
    }

    fn snapshot(&self, at: Epoch) -> Result<RedbSnapshot<'_>, TreeError> {
        let meta = self.meta.begin_read().map_err(io)?;
        let latest = read_latest(&meta)?;
        if at > latest {
            return Err(TreeError::EpochNotCommitted { requested: at, latest });
        }
        let root_bytes = meta.open_table(ROOTS).map_err(io)?.get(at.0).map_err(io)?.map(|v| v.value().to_vec());
        let root = decode_node(&root_bytes.ok_or_else(|| TreeError::Corrupt(format!("no root for epoch {}", at.0)))?)?;
        let meta_nodes = meta.open_table(NODES).map_err(io)?;
        let shard_roots = meta.open_table(SHARD_ROOTS).map_err(io)?;
        let mut group_nodes = Vec::with_capacity(self.groups.len());
        let mut group_leaves = Vec::with_capacity(self.groups.len());
        for db in &self.groups {
            let txn = db.begin_read().map_err(io)?;
            group_nodes.push(open_read_table(&txn, NODES)?);
            group_leaves.push(open_read_table(&txn, LEAVES)?);
        }
        Ok(RedbSnapshot { store: self, epoch: at, meta_nodes, shard_roots, root, group_nodes, group_leaves })
    }

    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        self.commit_with_fault(batch, CommitFault::None)
    }
}

fn read_latest(txn: &ReadTransaction) -> Result<Epoch, TreeError> {
    let t = txn.open_table(META).map_err(io)?;
    let v = t.get(KEY_LATEST).map_err(io)?.ok_or_else(|| TreeError::Corrupt("no latest epoch record".into()))?;
    let bytes: [u8; 8] = v.value().try_into().map_err(|_| TreeError::Corrupt("latest epoch record length".into()))?;
    Ok(Epoch(u64::from_be_bytes(bytes)))
}
