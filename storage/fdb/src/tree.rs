//! The shard store in FoundationDB: the embedded store's records (epoch-prefixed, immutable pages
//! of up to 22 interior nodes or 32 leaf values of one shard), under FoundationDB keys.
//!
//! An epoch commits in three steps, each its own transaction(s):
//! 1. clear whatever an interrupted attempt at this epoch left (records keyed `>= epoch`);
//! 2. write the pages in chunks of at most ~1 MB (FoundationDB's 10 MB / 5 s limits, and its advice
//!    to stay near 1 MB), several chunks in flight; plain `set`s of deterministic bytes, so a
//!    retry after an unknown commit outcome rewrites the same values;
//! 3. one small transaction compares-and-sets `latest` from `epoch - 1` to `epoch`, with the root
//!    and the nodes above the shards. Until it lands, no root points at the pages: invisible.
//!
//! Every write transaction checks the epoch-writer lease, so a deposed writer's pages cannot land
//! after the new writer cleared the epoch (which would leave stray pages a page lookup could hit).

use crate::error::{abort, tree_error};
use crate::keys::Layout;
use crate::lease::{EpochWriterLease, check};
use foundationdb::options::StreamingMode;
use foundationdb::{Database, FdbBindingError, RangeOption, RetryableTransaction};
use futures::executor::block_on;
use futures::stream::{self, StreamExt, TryStreamExt};
use keyfold_core::{Epoch, HashSuite, Index, LeafValue};
use keyfold_map::format::{
    LEAVES_PER_PAGE, decode_child, decode_children, encode_child, encode_children, encode_leaf_page, encode_node_pages,
    find_in_leaf_page, find_in_node_page, node_key, node_page_position, page_key,
};
use keyfold_map::{Child, Children, EpochBatch, NodeKey, Snapshot, TreeConfig, TreeError, TreeStore};
use std::sync::{Arc, Mutex};

/// Bytes (keys + values) per write transaction, and how many chunk transactions run at once.
const CHUNK_BYTES: usize = 1_000_000;
const CHUNKS_IN_FLIGHT: usize = 8;

/// FoundationDB refuses values over 100,000 bytes; a leaf page is cut before it would pass this.
const MAX_PAGE_BYTES: usize = 90_000;

/// One shard's new leaf values as pages: the embedded store's page format, but cut at
/// [`LEAVES_PER_PAGE`] entries *or* [`MAX_PAGE_BYTES`], whichever comes first (32 values of 64 KiB
/// would be 2 MB). Lookups take the last page starting at or before an index, whatever the sizes.
fn leaf_pages(run: &[(Index, LeafValue)]) -> Vec<Vec<&(Index, LeafValue)>> {
    const HEADER: usize = 4;
    const ENTRY: usize = 32 + 4 + 4 + 9; // index, offset, length; version and tag of the value
    let mut pages = Vec::new();
    let mut page: Vec<&(Index, LeafValue)> = Vec::new();
    let mut bytes = HEADER;
    for leaf in run {
        let size = ENTRY + leaf.1.value.as_ref().map_or(0, Vec::len);
        if !page.is_empty() && (page.len() == LEAVES_PER_PAGE || bytes + size > MAX_PAGE_BYTES) {
            pages.push(std::mem::take(&mut page));
            bytes = HEADER;
        }
        page.push(leaf);
        bytes += size;
    }
    if !page.is_empty() {
        pages.push(page);
    }
    debug_assert!(pages.iter().all(|p| encode_leaf_page(p).len() <= 100_000), "every page fits a value");
    pages
}

/// How to open an [`FdbStore`].
#[derive(Debug, Clone)]
pub struct FdbStoreOptions {
    /// Used when creating; checked against the stored config when opening.
    pub config: TreeConfig,
    pub layout: Layout,
}

/// The FoundationDB shard store of one directory.
pub struct FdbStore {
    db: Arc<Database>,
    layout: Layout,
    config: TreeConfig,
    lease: Option<Arc<EpochWriterLease>>,
    commit_lock: Mutex<()>,
}

impl std::fmt::Debug for FdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbStore").field("config", &self.config).finish_non_exhaustive()
    }
}

fn corrupt(what: impl Into<String>) -> FdbBindingError {
    abort(TreeError::corrupt(what))
}

fn epoch_from(bytes: &[u8]) -> Result<Epoch, FdbBindingError> {
    <[u8; 8]>::try_from(bytes).map(|b| Epoch(u64::from_be_bytes(b))).map_err(|_| corrupt("latest epoch record length"))
}

impl FdbStore {
    /// Opens the store under `options.layout`, creating it (config, epoch 0 = the empty map) if
    /// the cluster holds none there.
    pub fn open(
        db: Arc<Database>,
        options: FdbStoreOptions,
        lease: Option<Arc<EpochWriterLease>>,
    ) -> Result<FdbStore, TreeError> {
        let store = FdbStore { db, layout: options.layout, config: options.config, lease, commit_lock: Mutex::new(()) };
        let requested = options.config;
        let stored = store.run(async |trx| {
            if let Some(raw) = trx.get(&store.layout.tree_config(), false).await? {
                let [suite_id, shard_bits] = raw[..] else { return Err(corrupt("config record length")) };
                let suite = HashSuite::from_id(suite_id).ok_or_else(|| corrupt("unknown hash suite id"))?;
                return TreeConfig::new(suite, shard_bits).map_err(abort);
            }
            // Recovery if the process dies right after this commit: the store exists at epoch 0.
            // Two writers initialising at once conflict on the config key; the loser re-reads it.
            trx.set(&store.layout.tree_config(), &[requested.suite.id(), requested.shard_bits]);
            trx.set(&store.layout.tree_latest(), &0u64.to_be_bytes());
            let mut empty = Vec::new();
            encode_child(&Child::EMPTY, &mut empty);
            trx.set(&store.layout.tree_root(Epoch(0)), &empty);
            Ok(requested)
        })?;
        if stored != requested {
            return Err(TreeError::ConfigMismatch {
                stored: format!("{} with {} shard bits", stored.suite.name(), stored.shard_bits),
                requested: format!("{} with {} shard bits", requested.suite.name(), requested.shard_bits),
            });
        }
        Ok(store)
    }

    fn run<T>(&self, f: impl AsyncFn(&RetryableTransaction) -> Result<T, FdbBindingError>) -> Result<T, TreeError> {
        block_on(self.db.run(|trx, _| {
            let f = &f;
            async move { f(&trx).await }
        }))
        .map_err(tree_error)
    }

    /// Every page record of `batch` below the top, as FoundationDB key/value pairs.
    fn page_records(&self, batch: &EpochBatch) -> Vec<(Vec<u8>, Vec<u8>)> {
        let e = batch.epoch;
        let bits = self.config.shard_bits;
        let mut out = Vec::new();
        for shard in &batch.shards {
            for (first, page) in encode_node_pages(&shard.nodes) {
                out.push((self.layout.tree_node_page(&page_key(e, shard.shard.0, &first)), page));
            }
        }
        let mut rest = &batch.leaves[..];
        while let Some((first, _)) = rest.first() {
            let shard = first.shard(bits);
            let len = rest.partition_point(|(i, _)| i.shard(bits) == shard);
            for page in leaf_pages(&rest[..len]) {
                let first = page[0].0.0;
                out.push((self.layout.tree_leaf_page(&page_key(e, shard.0, &first)), encode_leaf_page(&page)));
            }
            rest = &rest[len..];
        }
        out
    }

    /// Step 2: the pages, chunked, several transactions in flight.
    fn write_pages(&self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), TreeError> {
        let mut chunks: Vec<&[(Vec<u8>, Vec<u8>)]> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, (k, v)) in records.iter().enumerate() {
            if bytes + k.len() + v.len() > CHUNK_BYTES && i > start {
                chunks.push(&records[start..i]);
                (start, bytes) = (i, 0);
            }
            bytes += k.len() + v.len();
        }
        if start < records.len() {
            chunks.push(&records[start..]);
        }
        let lease = self.lease.as_deref();
        let writes = stream::iter(chunks).map(|chunk| {
            self.db.run(move |trx, _| async move {
                check(lease, &trx).await?;
                for (k, v) in chunk {
                    trx.set(k, v);
                }
                // Recovery if the process dies right after this commit: the pages are unreachable
                // until step 3; a re-run clears them in step 1 and writes them again.
                Ok(())
            })
        });
        block_on(writes.buffer_unordered(CHUNKS_IN_FLIGHT).try_collect::<Vec<()>>()).map_err(tree_error)?;
        Ok(())
    }

    fn read_root(&self, trx: &RetryableTransaction, at: Epoch) -> impl Future<Output = Result<Child, FdbBindingError>> {
        let key = self.layout.tree_root(at);
        let read = trx.get(&key, true);
        async move {
            let bytes = read.await?.ok_or_else(|| corrupt(format!("no root for epoch {at}")))?;
            decode_child(&bytes).map_err(abort)
        }
    }
}

impl TreeStore for FdbStore {
    type Snapshot<'a> = FdbSnapshot<'a>;

    fn config(&self) -> TreeConfig {
        self.config
    }

    fn latest_epoch(&self) -> Result<Epoch, TreeError> {
        self.run(async |trx| {
            let raw = trx.get(&self.layout.tree_latest(), true).await?.ok_or_else(|| corrupt("no latest epoch"))?;
            epoch_from(&raw)
        })
    }

    fn snapshot(&self, at: Epoch) -> Result<FdbSnapshot<'_>, TreeError> {
        let (latest, root) = self.run(async |trx| {
            let raw = trx.get(&self.layout.tree_latest(), true).await?.ok_or_else(|| corrupt("no latest epoch"))?;
            let latest = epoch_from(&raw)?;
            if at > latest {
                return Ok((latest, None));
            }
            Ok((latest, Some(self.read_root(trx, at).await?)))
        })?;
        let root = root.ok_or(TreeError::EpochNotCommitted { requested: at, latest })?;
        Ok(FdbSnapshot { store: self, epoch: at, root })
    }

    fn commit(&self, batch: &EpochBatch) -> Result<(), TreeError> {
        let _guard = self.commit_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = batch.epoch;
        let latest = self.latest_epoch()?;
        if e != latest.next() {
            return Err(TreeError::NonSequentialEpoch { expected: latest.next(), got: e });
        }
        let lease = self.lease.as_deref();
        // Step 1: drop what an interrupted attempt at this epoch wrote.
        // Recovery if the process dies right after this commit: nothing of epoch e is stored.
        self.run(async |trx| {
            check(lease, trx).await?;
            for (begin, end) in self.layout.tree_records_from(e) {
                trx.clear_range(&begin, &end);
            }
            Ok(())
        })?;
        // Step 2 (see write_pages for its recovery note).
        self.write_pages(&self.page_records(batch))?;
        // Step 3: publish, compare-and-set on the latest epoch.
        let mut root = Vec::new();
        encode_child(&batch.root, &mut root);
        self.run(async |trx| {
            check(lease, trx).await?;
            let raw = trx.get(&self.layout.tree_latest(), false).await?.ok_or_else(|| corrupt("no latest epoch"))?;
            let stored = epoch_from(&raw)?;
            if stored == e && trx.get(&self.layout.tree_root(e), false).await?.as_deref() == Some(root.as_slice()) {
                return Ok(()); // the retry of a commit whose outcome was unknown: it landed
            }
            if stored != latest {
                return Err(abort(TreeError::NonSequentialEpoch { expected: stored.next(), got: e }));
            }
            let mut buf = Vec::with_capacity(146);
            for (key, children) in &batch.top_nodes {
                buf.clear();
                encode_children(children, &mut buf);
                trx.set(&self.layout.tree_top(&node_key(key, e)), &buf);
            }
            trx.set(&self.layout.tree_root(e), &root);
            trx.set(&self.layout.tree_latest(), &e.0.to_be_bytes());
            // Recovery if the process dies right after this commit: nothing to do; epoch e is
            // complete and readable.
            Ok(())
        })
    }
}

/// A read view at one committed epoch. Records are immutable, so each read is its own short
/// snapshot-read transaction (no conflicts; FoundationDB's 5 s limit never applies to the view).
pub struct FdbSnapshot<'a> {
    store: &'a FdbStore,
    epoch: Epoch,
    root: Child,
}

impl std::fmt::Debug for FdbSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbSnapshot").field("epoch", &self.epoch).finish()
    }
}

impl FdbSnapshot<'_> {
    /// The last page of `(written, shard)` whose first position is `<= position`, searched with `find`.
    fn find_in_pages<const N: usize, T>(
        &self,
        page: impl Fn(&[u8]) -> Vec<u8>,
        written: Epoch,
        shard: u32,
        position: &[u8; N],
        find: impl Fn(&[u8]) -> Result<Option<T>, TreeError>,
    ) -> Result<Option<T>, TreeError> {
        let lo = page(&page_key(written, shard, &[0u8; 0]));
        let mut hi = page(&page_key(written, shard, position));
        hi.push(0); // inclusive of a page starting exactly at `position`
        let found = self.store.run(async |trx| {
            let range = RangeOption {
                limit: Some(1),
                reverse: true,
                mode: StreamingMode::Exact,
                ..RangeOption::from((lo.clone(), hi.clone()))
            };
            let values = trx.get_range(&range, 1, true).await?;
            Ok(values.first().map(|kv| kv.value().to_vec()))
        })?;
        match found {
            Some(bytes) => find(&bytes),
            None => Ok(None),
        }
    }
}

impl Snapshot for FdbSnapshot<'_> {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn root(&self) -> Result<Child, TreeError> {
        Ok(self.root)
    }

    fn node(&self, key: &NodeKey, written: Epoch) -> Result<Option<Children>, TreeError> {
        let store = self.store;
        if key.depth < store.config.shard_bits {
            let k = store.layout.tree_top(&node_key(key, written));
            let bytes = store.run(async |trx| Ok(trx.get(&k, true).await?.map(|v| v.to_vec())))?;
            return bytes.map(|b| decode_children(&b)).transpose();
        }
        let shard = key.prefix.shard(store.config.shard_bits).0;
        let page = |k: &[u8]| store.layout.tree_node_page(k);
        self.find_in_pages(page, written, shard, &node_page_position(key), |p| find_in_node_page(p, key))
    }

    fn leaf(&self, index: &Index, written: Epoch) -> Result<Option<LeafValue>, TreeError> {
        let store = self.store;
        let shard = index.shard(store.config.shard_bits).0;
        let page = |k: &[u8]| store.layout.tree_leaf_page(k);
        self.find_in_pages(page, written, shard, &index.0, |p| find_in_leaf_page(p, index))
    }
}
