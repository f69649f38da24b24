//! Retention for the embedded tree store (SPEC appendix A.1, "Bases").
//!
//! Records are keyed by the epoch that wrote them, so a record that a later epoch replaced sits in
//! a page beside records still in use, and no page ever empties by itself. Pruning at epoch B
//! therefore *rebases*: a shard's live records of epochs `<= B` (its previous base and the pages
//! of every epoch after it up to B, merged by position, the latest epoch winning: positions never
//! leave the tree) are rewritten densely as the shard's base of the tree at B, and those pages are
//! deleted. Every kept root (epoch `>= B`) reads a record written at `e <= B` from the base (the
//! version of a position at B is the one every later root still points to, unless it replaced
//! it), and records of epochs after B from their pages as before. The same is done for the nodes
//! above the shards in `meta.redb`.
//!
//! A call rebases at most `ceil(shards / REBASE_SPREAD)` shards, the most out of date first, so
//! the work of a window that moves by one epoch is spread evenly over epochs (each shard is
//! rebased about every `REBASE_SPREAD` epochs) instead of rewriting the whole tree at once.

use crate::tree::{KEY_OLDEST, LEAVES, META, NODES, ROOTS, TOP_BASE, io};
use keyfold_core::Epoch;
use keyfold_map::TreeError;
use keyfold_map::format::{
    BaseNode, base_page_key, decode_base_leaf_page, decode_base_node_page, decode_children, decode_leaf_page,
    decode_node_page, encode_base_leaf_pages, encode_base_node_pages, encode_children, merge_latest, page_key,
};
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

pub(crate) const BASE_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("base_nodes");
pub(crate) const BASE_LEAVES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("base_leaves");
/// Shard -> the epoch of its base (absent: no base yet).
pub(crate) const BASES: TableDefinition<u32, u64> = TableDefinition::new("bases");

/// Each shard is rebased about once every this many prunes (epochs, when the window moves by
/// one per epoch): the tree's live records are rewritten once per this many epochs, and up to
/// this many epochs of replaced records wait in their pages. Measured on W1 (BENCHMARKS.md).
pub const REBASE_SPREAD: usize = 10;

/// Bytes a prune deleted and wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Bytes {
    pub deleted: u64,
    pub written: u64,
}

/// `meta.redb`: the oldest kept epoch becomes `keep_from`, earlier roots are deleted, and the
/// nodes above the shards of epochs `<= keep_from` become the top base (`top_base`, keyed by
/// position). One durable transaction.
pub(crate) fn prune_meta(meta: &Database, keep_from: Epoch) -> Result<Bytes, TreeError> {
    let mut bytes = Bytes::default();
    let mut txn = meta.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    {
        let mut roots = txn.open_table(ROOTS).map_err(io)?;
        roots
            .retain_in(..keep_from.0, |_, v| {
                bytes.deleted += 8 + v.len() as u64;
                false
            })
            .map_err(io)?;
        let mut nodes = txn.open_table(NODES).map_err(io)?;
        let mut top = txn.open_table(TOP_BASE).map_err(io)?;
        let mut records: Vec<BaseNode> = Vec::new();
        for entry in top.iter().map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            records.push(decode_top_base(k.value(), v.value())?);
        }
        let end = (keep_from.0 + 1).to_be_bytes();
        for entry in nodes.range::<&[u8]>(..end.as_slice()).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let (key, value) = (k.value(), v.value());
            let written = Epoch(u64::from_be_bytes(key[..8].try_into().map_err(|_| corrupt_top())?));
            let position = decode_position(&key[8..])?;
            records.push((position, written, decode_children(value)?));
            bytes.deleted += (key.len() + value.len()) as u64;
        }
        nodes.retain_in::<&[u8], _>(..end.as_slice(), |_, _| false).map_err(io)?;
        top.retain(|_, _| false).map_err(io)?;
        let mut buf = Vec::new();
        for (key, written, children) in merge_latest(records) {
            buf.clear();
            buf.extend_from_slice(&written.0.to_be_bytes());
            encode_children(&children, &mut buf);
            let position = keyfold_map::format::node_page_position(&key);
            top.insert(position.as_slice(), buf.as_slice()).map_err(io)?;
            bytes.written += (position.len() + buf.len()) as u64;
        }
        txn.open_table(META).map_err(io)?.insert(KEY_OLDEST, keep_from.0.to_be_bytes().as_slice()).map_err(io)?;
    }
    txn.commit().map_err(io)?;
    Ok(bytes)
}

fn corrupt_top() -> TreeError {
    TreeError::corrupt("undecodable top base record")
}

fn decode_position(bytes: &[u8]) -> Result<keyfold_map::NodeKey, TreeError> {
    let prefix: [u8; 32] = bytes.get(1..33).and_then(|b| b.try_into().ok()).ok_or_else(corrupt_top)?;
    if bytes.len() != 33 {
        return Err(corrupt_top());
    }
    Ok(keyfold_map::NodeKey { depth: bytes[0], prefix: keyfold_core::Index(prefix) })
}

/// A `top_base` record: key `depth || prefix`, value `written (8) || left || right`.
pub(crate) fn decode_top_base(key: &[u8], value: &[u8]) -> Result<BaseNode, TreeError> {
    let written = Epoch(u64::from_be_bytes(value.get(..8).ok_or_else(corrupt_top)?.try_into().expect("8 bytes")));
    Ok((decode_position(key)?, written, decode_children(&value[8..])?))
}

/// What one group's prune did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct GroupPrune {
    pub rebased: u32,
    pub pending: u32,
    pub bytes: Bytes,
}

/// Rebases at most `limit` of the group's shards whose base is older than `keep_from` (the
/// oldest bases first), in one durable transaction.
pub(crate) fn prune_group(
    db: &Database,
    shards: impl Iterator<Item = u32>,
    keep_from: Epoch,
    limit: usize,
) -> Result<GroupPrune, TreeError> {
    let mut txn = db.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    let mut behind: Vec<(Epoch, u32)> = Vec::new();
    {
        let bases = txn.open_table(BASES).map_err(io)?;
        for shard in shards {
            let base = Epoch(bases.get(shard).map_err(io)?.map_or(0, |v| v.value()));
            if base < keep_from {
                behind.push((base, shard));
            }
        }
    }
    behind.sort_unstable();
    let chosen = &behind[..limit.min(behind.len())];
    let mut out = GroupPrune {
        pending: u32::try_from(behind.len() - chosen.len()).expect("shards fit u32"),
        ..GroupPrune::default()
    };
    if chosen.is_empty() {
        return Ok(out); // nothing to do: the transaction is dropped
    }
    for &(base, shard) in chosen {
        rebase_shard(&txn, shard, base, keep_from, &mut out.bytes)?;
        out.rebased += 1;
    }
    txn.commit().map_err(io)?;
    Ok(out)
}

/// Rewrites `shard`'s base at `to` from its base at `from` and its pages of epochs `(from, to]`,
/// deleting those pages.
fn rebase_shard(
    txn: &WriteTransaction,
    shard: u32,
    from: Epoch,
    to: Epoch,
    bytes: &mut Bytes,
) -> Result<(), TreeError> {
    txn.open_table(BASES).map_err(io)?.insert(shard, to.0).map_err(io)?;
    let span = Span { shard, from, to };
    span.rebase(txn, (NODES, BASE_NODES), decode_node_page, decode_base_node_page, encode_base_node_pages, bytes)?;
    span.rebase(txn, (LEAVES, BASE_LEAVES), decode_leaf_page, decode_base_leaf_page, encode_base_leaf_pages, bytes)
}

type Tables =
    (TableDefinition<'static, &'static [u8], &'static [u8]>, TableDefinition<'static, &'static [u8], &'static [u8]>);
type Decoded<K, V> = Result<Vec<(K, V)>, TreeError>;
type DecodedBase<K, V> = Result<Vec<(K, Epoch, V)>, TreeError>;
type EncodeBase<K, V, const N: usize> = fn(&[(K, Epoch, V)]) -> Vec<([u8; N], Vec<u8>)>;

/// One shard's rebase from the base at `from` to the base at `to`.
struct Span {
    shard: u32,
    from: Epoch,
    to: Epoch,
}

impl Span {
    /// One kind of record (interior nodes or leaf values): read the base and the pages, merge,
    /// delete both, write the new base.
    fn rebase<K: Ord, V, const N: usize>(
        &self,
        txn: &WriteTransaction,
        (pages_table, base_table): Tables,
        decode_page: fn(&[u8]) -> Decoded<K, V>,
        decode_base: fn(&[u8]) -> DecodedBase<K, V>,
        encode_base: EncodeBase<K, V, N>,
        bytes: &mut Bytes,
    ) -> Result<(), TreeError> {
        let mut pages = txn.open_table(pages_table).map_err(io)?;
        let mut base = txn.open_table(base_table).map_err(io)?;
        let (lo, hi) = (self.shard.to_be_bytes(), (self.shard + 1).to_be_bytes());
        let mut records = Vec::new();
        for entry in base.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            records.extend(decode_base(v.value())?);
            bytes.deleted += (k.value().len() + v.value().len()) as u64;
        }
        base.retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false).map_err(io)?;
        for e in self.from.0 + 1..=self.to.0 {
            let (start, end) =
                (page_key(Epoch(e), self.shard, &[0u8; 0]), page_key(Epoch(e), self.shard + 1, &[0u8; 0]));
            for entry in pages.range::<&[u8]>(start.as_slice()..end.as_slice()).map_err(io)? {
                let (k, v) = entry.map_err(io)?;
                records.extend(decode_page(v.value())?.into_iter().map(|(key, value)| (key, Epoch(e), value)));
                bytes.deleted += (k.value().len() + v.value().len()) as u64;
            }
            pages.retain_in::<&[u8], _>(start.as_slice()..end.as_slice(), |_, _| false).map_err(io)?;
        }
        for (first, page) in encode_base(&merge_latest(records)) {
            let key = base_page_key(self.shard, &first);
            base.insert(key.as_slice(), page.as_slice()).map_err(io)?;
            bytes.written += (key.len() + page.len()) as u64;
        }
        Ok(())
    }
}
