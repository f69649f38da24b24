//! The map's storage format: the node, leaf and page records every backend stores (redb,
//! FoundationDB), big-endian with fixed widths, as SPEC appendix A.1 ("Map records") defines them.
//! Decoders refuse anything a writer cannot produce (a stored record that fails to decode is
//! corruption, never a guess).

use crate::error::TreeError;
use crate::store::{Child, Children, NodeKey};
use keyfold_core::{Epoch, Hash, Index, LeafValue, Node, Version};

const TAG_EMPTY: u8 = 0;
const TAG_LEAF: u8 = 1;
const TAG_INTERNAL: u8 = 2;

/// `epoch (8) | depth (1) | prefix (32)`.
pub const NODE_KEY_LEN: usize = 41;

pub fn encode_child(child: &Child, out: &mut Vec<u8>) {
    match child.node {
        Node::Empty => out.push(TAG_EMPTY),
        Node::Leaf { index, hash } => {
            out.push(TAG_LEAF);
            out.extend_from_slice(&index.0);
            out.extend_from_slice(&hash.0);
            out.extend_from_slice(&child.written.0.to_be_bytes());
        }
        Node::Internal { hash } => {
            out.push(TAG_INTERNAL);
            out.extend_from_slice(&hash.0);
            out.extend_from_slice(&child.written.0.to_be_bytes());
        }
    }
}

fn corrupt(what: &str) -> TreeError {
    TreeError::corrupt(format!("undecodable {what} record"))
}

fn take<const N: usize>(bytes: &[u8], pos: &mut usize, what: &str) -> Result<[u8; N], TreeError> {
    let slice = bytes.get(*pos..*pos + N).ok_or_else(|| corrupt(what))?;
    *pos += N;
    Ok(slice.try_into().expect("length checked"))
}

fn decode_child_at(bytes: &[u8], pos: &mut usize) -> Result<Child, TreeError> {
    let [tag] = take::<1>(bytes, pos, "node")?;
    let node = match tag {
        TAG_EMPTY => return Ok(Child::EMPTY),
        TAG_LEAF => {
            let index = Index(take::<32>(bytes, pos, "node")?);
            Node::Leaf { index, hash: Hash(take::<32>(bytes, pos, "node")?) }
        }
        TAG_INTERNAL => Node::Internal { hash: Hash(take::<32>(bytes, pos, "node")?) },
        _ => return Err(corrupt("node")),
    };
    Ok(Child { node, written: Epoch(u64::from_be_bytes(take::<8>(bytes, pos, "node")?)) })
}

pub fn decode_child(bytes: &[u8]) -> Result<Child, TreeError> {
    let mut pos = 0;
    let child = decode_child_at(bytes, &mut pos)?;
    if pos != bytes.len() {
        return Err(corrupt("node"));
    }
    Ok(child)
}

pub fn encode_children(children: &Children, out: &mut Vec<u8>) {
    encode_child(&children[0], out);
    encode_child(&children[1], out);
}

pub fn decode_children(bytes: &[u8]) -> Result<Children, TreeError> {
    let mut pos = 0;
    let left = decode_child_at(bytes, &mut pos)?;
    let right = decode_child_at(bytes, &mut pos)?;
    if pos != bytes.len() {
        return Err(corrupt("children"));
    }
    Ok([left, right])
}

pub fn encode_leaf(leaf: &LeafValue, out: &mut Vec<u8>) {
    out.extend_from_slice(&leaf.version.0.to_be_bytes());
    out.extend_from_slice(&leaf.epoch.0.to_be_bytes());
    out.extend_from_slice(&leaf.previous.0);
    match &leaf.value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
    }
}

pub fn decode_leaf(bytes: &[u8]) -> Result<LeafValue, TreeError> {
    let mut pos = 0;
    let version = Version(u64::from_be_bytes(take::<8>(bytes, &mut pos, "leaf")?));
    let epoch = Epoch(u64::from_be_bytes(take::<8>(bytes, &mut pos, "leaf")?));
    let previous = Hash(take::<32>(bytes, &mut pos, "leaf")?);
    let [tag] = take::<1>(bytes, &mut pos, "leaf")?;
    match tag {
        0 if pos == bytes.len() => Ok(LeafValue::new(version, epoch, previous, None)),
        1 => Ok(LeafValue::new(version, epoch, previous, Some(bytes[pos..].to_vec()))),
        _ => Err(corrupt("leaf")),
    }
}

/// Records of one epoch sort together, after every earlier epoch's: an epoch's writes append.
pub fn node_key(key: &NodeKey, written: Epoch) -> [u8; NODE_KEY_LEN] {
    let mut out = [0u8; NODE_KEY_LEN];
    out[..8].copy_from_slice(&written.0.to_be_bytes());
    out[8] = key.depth;
    out[9..].copy_from_slice(&key.prefix.0);
    out
}

/// Bytes of a child in a shard page: tag, index, hash, epoch; unused fields zero.
pub const CHILD_FIXED_LEN: usize = 73;
/// Bytes of one interior node in a shard page: depth, prefix, left and right child.
pub const PAGE_NODE_LEN: usize = 33 + 2 * CHILD_FIXED_LEN;
/// Bytes of one entry in a leaf page's directory: index, value offset, value length.
const PAGE_LEAF_ENTRY_LEN: usize = 40;

fn encode_child_fixed(child: &Child, out: &mut [u8]) {
    debug_assert_eq!(out.len(), CHILD_FIXED_LEN);
    out.fill(0);
    match child.node {
        Node::Empty => out[0] = TAG_EMPTY,
        Node::Leaf { index, hash } => {
            out[0] = TAG_LEAF;
            out[1..33].copy_from_slice(&index.0);
            out[33..65].copy_from_slice(&hash.0);
        }
        Node::Internal { hash } => {
            out[0] = TAG_INTERNAL;
            out[33..65].copy_from_slice(&hash.0);
        }
    }
    out[65..].copy_from_slice(&child.written.0.to_be_bytes());
}

fn decode_child_fixed(bytes: &[u8]) -> Result<Child, TreeError> {
    let array = |r: std::ops::Range<usize>| -> [u8; 32] { bytes[r].try_into().expect("32 bytes") };
    let written = Epoch(u64::from_be_bytes(bytes[65..73].try_into().expect("8 bytes")));
    let node = match bytes[0] {
        TAG_EMPTY => return Ok(Child::EMPTY),
        TAG_LEAF => Node::Leaf { index: Index(array(1..33)), hash: Hash(array(33..65)) },
        TAG_INTERNAL => Node::Internal { hash: Hash(array(33..65)) },
        _ => return Err(corrupt("page node")),
    };
    Ok(Child { node, written })
}

/// Interior nodes per node page: 22 x 179 bytes fit one 4 KiB storage page, so reading a node
/// reads about one page, however the tree's live nodes are spread over epochs.
pub const NODES_PER_PAGE: usize = 22;
/// Leaf values per leaf page.
pub const LEAVES_PER_PAGE: usize = 32;

fn node_position(key: &NodeKey) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = key.depth;
    out[1..].copy_from_slice(&key.prefix.0);
    out
}

/// A shard's interior nodes of one epoch as node pages: fixed-width entries sorted by
/// `depth || prefix`, at most [`NODES_PER_PAGE`] per page, each page with its first position.
pub fn encode_node_pages(nodes: &[(NodeKey, Children)]) -> Vec<([u8; 33], Vec<u8>)> {
    let mut sorted: Vec<&(NodeKey, Children)> = nodes.iter().collect();
    sorted.sort_unstable_by_key(|n| &n.0);
    sorted
        .chunks(NODES_PER_PAGE)
        .map(|chunk| {
            let mut page = vec![0u8; chunk.len() * PAGE_NODE_LEN];
            for ((key, children), entry) in chunk.iter().zip(page.chunks_exact_mut(PAGE_NODE_LEN)) {
                entry[..33].copy_from_slice(&node_position(key));
                encode_child_fixed(&children[0], &mut entry[33..33 + CHILD_FIXED_LEN]);
                encode_child_fixed(&children[1], &mut entry[33 + CHILD_FIXED_LEN..]);
            }
            (node_position(&chunk[0].0), page)
        })
        .collect()
}

/// Finds `key` in a node page.
pub fn find_in_node_page(page: &[u8], key: &NodeKey) -> Result<Option<Children>, TreeError> {
    if !page.len().is_multiple_of(PAGE_NODE_LEN) {
        return Err(corrupt("node page"));
    }
    let wanted = node_position(key);
    let (mut lo, mut hi) = (0, page.len() / PAGE_NODE_LEN);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let entry = &page[mid * PAGE_NODE_LEN..(mid + 1) * PAGE_NODE_LEN];
        match entry[..33].cmp(&wanted[..]) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let left = decode_child_fixed(&entry[33..33 + CHILD_FIXED_LEN])?;
                return Ok(Some([left, decode_child_fixed(&entry[33 + CHILD_FIXED_LEN..])?]));
            }
        }
    }
    Ok(None)
}

/// A shard's leaf values of one epoch (sorted by index) as leaf pages of at most
/// [`LEAVES_PER_PAGE`], each with its first index.
pub fn encode_leaf_pages(leaves: &[(Index, LeafValue)]) -> Vec<([u8; 32], Vec<u8>)> {
    leaves
        .chunks(LEAVES_PER_PAGE)
        .map(|chunk| (chunk[0].0.0, encode_leaf_page(&chunk.iter().collect::<Vec<_>>())))
        .collect()
}

/// One leaf page: `count (4)`, then `count` directory entries `index (32) || offset (4) ||
/// length (4)` sorted by index, then the encoded values.
pub fn encode_leaf_page(leaves: &[&(Index, LeafValue)]) -> Vec<u8> {
    debug_assert!(leaves.windows(2).all(|w| w[0].0 < w[1].0));
    let header = 4 + leaves.len() * PAGE_LEAF_ENTRY_LEN;
    let mut data = Vec::new();
    let mut out = Vec::with_capacity(header + leaves.len() * 48);
    out.extend_from_slice(&u32::try_from(leaves.len()).expect("leaf count fits u32").to_be_bytes());
    for (index, leaf) in leaves {
        let start = data.len();
        encode_leaf(leaf, &mut data);
        out.extend_from_slice(&index.0);
        out.extend_from_slice(&u32::try_from(start).expect("page under 4 GiB").to_be_bytes());
        out.extend_from_slice(&u32::try_from(data.len() - start).expect("value under 4 GiB").to_be_bytes());
    }
    out.extend_from_slice(&data);
    out
}

/// Finds `index` in a leaf page.
pub fn find_in_leaf_page(page: &[u8], index: &Index) -> Result<Option<LeafValue>, TreeError> {
    let (entries, header) = leaf_directory(page, PAGE_LEAF_ENTRY_LEN)?;
    match search(entries, PAGE_LEAF_ENTRY_LEN, &index.0) {
        Some(entry) => leaf_at(page, header, &entry[32..]).map(Some),
        None => Ok(None),
    }
}

/// Every entry of a node page, in page order.
pub fn decode_node_page(page: &[u8]) -> Result<Vec<(NodeKey, Children)>, TreeError> {
    if !page.len().is_multiple_of(PAGE_NODE_LEN) {
        return Err(corrupt("node page"));
    }
    page.chunks_exact(PAGE_NODE_LEN)
        .map(|entry| Ok((decode_position(&entry[..33])?, decode_pair(&entry[33..])?)))
        .collect()
}

fn decode_position(bytes: &[u8]) -> Result<NodeKey, TreeError> {
    let prefix = Index(bytes[1..33].try_into().expect("32 bytes"));
    Ok(NodeKey { depth: bytes[0], prefix })
}

fn decode_pair(bytes: &[u8]) -> Result<Children, TreeError> {
    Ok([decode_child_fixed(&bytes[..CHILD_FIXED_LEN])?, decode_child_fixed(&bytes[CHILD_FIXED_LEN..])?])
}

/// Every entry of a leaf page, in page order.
pub fn decode_leaf_page(page: &[u8]) -> Result<Vec<(Index, LeafValue)>, TreeError> {
    let (entries, header) = leaf_directory(page, PAGE_LEAF_ENTRY_LEN)?;
    entries
        .chunks_exact(PAGE_LEAF_ENTRY_LEN)
        .map(|entry| Ok((Index(entry[..32].try_into().expect("32")), leaf_at(page, header, &entry[32..])?)))
        .collect()
}

/// A leaf page's directory (`count` entries of `entry_len` bytes after the 4-byte count) and
/// the offset of its values.
fn leaf_directory(page: &[u8], entry_len: usize) -> Result<(&[u8], usize), TreeError> {
    let count = u32::from_be_bytes(page.get(..4).ok_or_else(|| corrupt("leaf page"))?.try_into().expect("4")) as usize;
    let header = count.checked_mul(entry_len).and_then(|n| n.checked_add(4)).filter(|h| *h <= page.len());
    let header = header.ok_or_else(|| corrupt("leaf page"))?;
    Ok((&page[4..header], header))
}

/// Binary search of `entries` (fixed width `len`, sorted by their leading bytes) for the entry
/// that starts with `wanted`.
fn search<'a>(entries: &'a [u8], len: usize, wanted: &[u8]) -> Option<&'a [u8]> {
    let (mut lo, mut hi) = (0, entries.len() / len);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let entry = &entries[mid * len..(mid + 1) * len];
        match entry[..wanted.len()].cmp(wanted) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(entry),
        }
    }
    None
}

/// The value a directory entry's `offset (4) || length (4)` names.
fn leaf_at(page: &[u8], header: usize, span: &[u8]) -> Result<LeafValue, TreeError> {
    let offset = u32::from_be_bytes(span[..4].try_into().expect("4")) as usize;
    let len = u32::from_be_bytes(span[4..8].try_into().expect("4")) as usize;
    let value = offset.checked_add(header).and_then(|s| page.get(s..s.checked_add(len)?));
    decode_leaf(value.ok_or_else(|| corrupt("leaf page"))?)
}

/// An interior node in a shard's base (SPEC appendix A.1): the node and the epoch whose records
/// held it when the base was made.
pub type BaseNode = (NodeKey, Epoch, Children);
/// A leaf value in a shard's base, with the epoch that wrote it.
pub type BaseLeaf = (Index, Epoch, LeafValue);

/// Bytes of one interior node in a base page: depth, prefix, written, left and right child.
pub const BASE_NODE_LEN: usize = 41 + 2 * CHILD_FIXED_LEN;
/// Interior nodes per base page (21 x 187 bytes fit 4 KiB).
pub const BASE_NODES_PER_PAGE: usize = 21;
/// Bytes of one entry in a base leaf page's directory: index, written, value offset and length.
const BASE_LEAF_ENTRY_LEN: usize = 48;
/// Leaf values per base page: 30 entries of 32-byte values (48 + 81 bytes each) and the key fit one
/// 4 KiB storage page, where 32 would spill into an 8 KiB one.
pub const BASE_LEAVES_PER_PAGE: usize = 30;

/// A shard's base nodes (sorted by position, one per position) as base pages, each with its
/// first position.
pub fn encode_base_node_pages(nodes: &[BaseNode]) -> Vec<([u8; 33], Vec<u8>)> {
    debug_assert!(nodes.windows(2).all(|w| w[0].0 < w[1].0), "base nodes sorted, one per position");
    nodes
        .chunks(BASE_NODES_PER_PAGE)
        .map(|chunk| {
            let mut page = vec![0u8; chunk.len() * BASE_NODE_LEN];
            for ((key, written, children), entry) in chunk.iter().zip(page.chunks_exact_mut(BASE_NODE_LEN)) {
                entry[..33].copy_from_slice(&node_position(key));
                entry[33..41].copy_from_slice(&written.0.to_be_bytes());
                encode_child_fixed(&children[0], &mut entry[41..41 + CHILD_FIXED_LEN]);
                encode_child_fixed(&children[1], &mut entry[41 + CHILD_FIXED_LEN..]);
            }
            (node_position(&chunk[0].0), page)
        })
        .collect()
}

/// Every entry of a base node page.
pub fn decode_base_node_page(page: &[u8]) -> Result<Vec<BaseNode>, TreeError> {
    if !page.len().is_multiple_of(BASE_NODE_LEN) {
        return Err(corrupt("base node page"));
    }
    page.chunks_exact(BASE_NODE_LEN)
        .map(|e| {
            Ok((
                decode_position(&e[..33])?,
                Epoch(u64::from_be_bytes(e[33..41].try_into().expect("8"))),
                decode_pair(&e[41..])?,
            ))
        })
        .collect()
}

/// Finds `key` in a base node page: the node and the epoch that wrote it.
pub fn find_in_base_node_page(page: &[u8], key: &NodeKey) -> Result<Option<(Epoch, Children)>, TreeError> {
    if !page.len().is_multiple_of(BASE_NODE_LEN) {
        return Err(corrupt("base node page"));
    }
    match search(page, BASE_NODE_LEN, &node_position(key)) {
        Some(e) => Ok(Some((Epoch(u64::from_be_bytes(e[33..41].try_into().expect("8"))), decode_pair(&e[41..])?))),
        None => Ok(None),
    }
}

/// A shard's base leaves (sorted by index) as base leaf pages of at most [`BASE_LEAVES_PER_PAGE`]:
/// `count (4)`, then entries `index (32) || written (8) || offset (4) || length (4)`, then values.
pub fn encode_base_leaf_pages(leaves: &[BaseLeaf]) -> Vec<([u8; 32], Vec<u8>)> {
    debug_assert!(leaves.windows(2).all(|w| w[0].0 < w[1].0), "base leaves sorted, one per index");
    leaves
        .chunks(BASE_LEAVES_PER_PAGE)
        .map(|chunk| {
            let mut data = Vec::new();
            let mut out = Vec::with_capacity(4 + chunk.len() * (BASE_LEAF_ENTRY_LEN + 48));
            out.extend_from_slice(&u32::try_from(chunk.len()).expect("leaf count fits u32").to_be_bytes());
            for (index, written, leaf) in chunk {
                let start = data.len();
                encode_leaf(leaf, &mut data);
                out.extend_from_slice(&index.0);
                out.extend_from_slice(&written.0.to_be_bytes());
                out.extend_from_slice(&u32::try_from(start).expect("page under 4 GiB").to_be_bytes());
                out.extend_from_slice(&u32::try_from(data.len() - start).expect("value under 4 GiB").to_be_bytes());
            }
            out.extend_from_slice(&data);
            (chunk[0].0.0, out)
        })
        .collect()
}

/// Every entry of a base leaf page.
pub fn decode_base_leaf_page(page: &[u8]) -> Result<Vec<BaseLeaf>, TreeError> {
    let (entries, header) = leaf_directory(page, BASE_LEAF_ENTRY_LEN)?;
    entries
        .chunks_exact(BASE_LEAF_ENTRY_LEN)
        .map(|e| {
            let written = Epoch(u64::from_be_bytes(e[32..40].try_into().expect("8")));
            Ok((Index(e[..32].try_into().expect("32")), written, leaf_at(page, header, &e[40..])?))
        })
        .collect()
}

/// Finds `index` in a base leaf page: the value and the epoch that wrote it.
pub fn find_in_base_leaf_page(page: &[u8], index: &Index) -> Result<Option<(Epoch, LeafValue)>, TreeError> {
    let (entries, header) = leaf_directory(page, BASE_LEAF_ENTRY_LEN)?;
    match search(entries, BASE_LEAF_ENTRY_LEN, &index.0) {
        Some(e) => {
            Ok(Some((Epoch(u64::from_be_bytes(e[32..40].try_into().expect("8"))), leaf_at(page, header, &e[40..])?)))
        }
        None => Ok(None),
    }
}

/// `shard (4) | first (N)`: the key of a base page (one base per shard, so no epoch).
pub fn base_page_key<const N: usize>(shard: u32, first: &[u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + N);
    out.extend_from_slice(&shard.to_be_bytes());
    out.extend_from_slice(first);
    out
}

/// Merges a base with the records of later epochs into the base at the newest of them: per
/// position, the record of the latest epoch (positions are never removed from the tree, so this
/// is exactly the tree's records at that epoch).
pub fn merge_latest<K: Ord, V>(mut records: Vec<(K, Epoch, V)>) -> Vec<(K, Epoch, V)> {
    records.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    records.dedup_by(|later, kept| later.0 == kept.0);
    records
}

/// `epoch (8) | shard (4) | first (N)`: the key of a page; `first` is the page's first position
/// (node pages: `depth || prefix`; leaf pages: index). The page that may hold `x` is the last one
/// whose key is `<= epoch || shard || x` and `>= epoch || shard`.
pub fn page_key<const N: usize>(written: Epoch, shard: u32, first: &[u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + N);
    out.extend_from_slice(&written.0.to_be_bytes());
    out.extend_from_slice(&shard.to_be_bytes());
    out.extend_from_slice(first);
    out
}

/// The position of a node in node pages.
pub fn node_page_position(key: &NodeKey) -> [u8; 33] {
    node_position(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let children = [
            Child::EMPTY,
            Child { node: Node::Leaf { index: Index([3; 32]), hash: Hash([4; 32]) }, written: Epoch(7) },
            Child { node: Node::Internal { hash: Hash([5; 32]) }, written: Epoch(u64::MAX) },
        ];
        for a in children {
            for b in children {
                let mut buf = Vec::new();
                encode_children(&[a, b], &mut buf);
                assert_eq!(decode_children(&buf).unwrap(), [a, b]);
            }
            let mut buf = Vec::new();
            encode_child(&a, &mut buf);
            assert_eq!(decode_child(&buf).unwrap(), a);
            buf.push(0);
            assert!(decode_child(&buf).is_err(), "trailing byte");
        }
        for leaf in [LeafValue::tombstone(Version(9)), LeafValue::present(Version(1), b"xyz".to_vec())] {
            let mut buf = Vec::new();
            encode_leaf(&leaf, &mut buf);
            assert_eq!(decode_leaf(&buf).unwrap(), leaf);
        }
        assert!(decode_leaf(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 5]).is_err(), "tombstone with value bytes");
        assert!(decode_children(&[2, 1]).is_err());
        assert!(
            node_key(&NodeKey { depth: 255, prefix: Index([0xff; 32]) }, Epoch(1))
                < node_key(&NodeKey { depth: 0, prefix: Index([0; 32]) }, Epoch(2))
        );
    }

    #[test]
    fn pages_find_every_entry_and_nothing_else() {
        let children = [
            Child::EMPTY,
            Child { node: Node::Leaf { index: Index([3; 32]), hash: Hash([4; 32]) }, written: Epoch(7) },
            Child { node: Node::Internal { hash: Hash([5; 32]) }, written: Epoch(9) },
        ];
        let nodes: Vec<(NodeKey, Children)> = (0..50u8)
            .map(|i| {
                let key = NodeKey { depth: i % 7, prefix: Index([i; 32]) };
                (key, [children[usize::from(i % 3)], children[usize::from(i % 2)]])
            })
            .collect();
        let pages = encode_node_pages(&nodes);
        assert_eq!(pages.len(), nodes.len().div_ceil(NODES_PER_PAGE));
        assert!(pages.windows(2).all(|w| w[0].0 < w[1].0), "pages are sorted by first position");
        for (key, c) in &nodes {
            // The page that may hold a node is the last one whose first position is <= the node's.
            let position = node_page_position(key);
            let (_, page) = pages.iter().rev().find(|(first, _)| *first <= position).unwrap();
            assert_eq!(find_in_node_page(page, key).unwrap(), Some(*c));
        }
        let (_, page) = &pages[0];
        assert_eq!(find_in_node_page(page, &NodeKey { depth: 9, prefix: Index([1; 32]) }).unwrap(), None);
        assert!(find_in_node_page(&page[1..], &nodes[0].0).is_err(), "ragged page");

        let leaves: Vec<(Index, LeafValue)> = (0..20u8)
            .map(|i| {
                let v = if i % 4 == 0 {
                    LeafValue::tombstone(Version(2))
                } else {
                    LeafValue::present(Version(1), vec![i; usize::from(i)])
                };
                (Index([i; 32]), v)
            })
            .collect();
        let pages = encode_leaf_pages(&leaves);
        assert_eq!(pages.len(), 1);
        let page = &pages[0].1;
        for (index, leaf) in &leaves {
            assert_eq!(find_in_leaf_page(page, index).unwrap().as_ref(), Some(leaf));
        }
        assert_eq!(find_in_leaf_page(page, &Index([200; 32])).unwrap(), None);
        assert!(find_in_leaf_page(&page[..30], &Index([1; 32])).is_err(), "truncated page");
        assert_eq!(decode_leaf_page(page).unwrap(), leaves);
    }

    #[test]
    fn base_pages_keep_each_records_epoch_and_merging_keeps_the_latest() {
        let child = Child { node: Node::Internal { hash: Hash([5; 32]) }, written: Epoch(9) };
        let nodes: Vec<BaseNode> = (0..45u8)
            .map(|i| (NodeKey { depth: 8 + i % 5, prefix: Index([i; 32]) }, Epoch(u64::from(i)), [child, Child::EMPTY]))
            .collect();
        let mut sorted = nodes.clone();
        sorted.sort_by_key(|n| n.0);
        let pages = encode_base_node_pages(&sorted);
        assert_eq!(pages.len(), 45usize.div_ceil(BASE_NODES_PER_PAGE));
        let decoded: Vec<BaseNode> = pages.iter().flat_map(|(_, p)| decode_base_node_page(p).unwrap()).collect();
        assert_eq!(decoded, sorted);
        for (key, written, children) in &sorted {
            let (_, page) = pages.iter().rev().find(|(first, _)| *first <= node_page_position(key)).unwrap();
            assert_eq!(find_in_base_node_page(page, key).unwrap(), Some((*written, *children)));
        }
        let leaves: Vec<BaseLeaf> = (0..70u8)
            .map(|i| (Index([i; 32]), Epoch(u64::from(i) + 1), LeafValue::present(Version(2), vec![i; 32])))
            .collect();
        let pages = encode_base_leaf_pages(&leaves);
        assert_eq!(pages.len(), 70usize.div_ceil(BASE_LEAVES_PER_PAGE));
        assert!(pages.iter().all(|(_, p)| p.len() + 36 < 4096), "a base leaf page of 32-byte values fits 4 KiB");
        let decoded: Vec<BaseLeaf> = pages.iter().flat_map(|(_, p)| decode_base_leaf_page(p).unwrap()).collect();
        assert_eq!(decoded, leaves);
        assert_eq!(
            find_in_base_leaf_page(&pages[1].1, &Index([31; 32])).unwrap(),
            Some((Epoch(32), leaves[31].2.clone()))
        );
        let merged =
            merge_latest(vec![(1u8, Epoch(3), "a"), (2, Epoch(1), "b"), (1, Epoch(5), "c"), (1, Epoch(4), "d")]);
        assert_eq!(merged, vec![(1, Epoch(5), "c"), (2, Epoch(1), "b")]);
    }
}
