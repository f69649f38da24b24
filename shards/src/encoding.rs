//! Storage encodings (big-endian, fixed widths; documented in SPEC.md "Storage records").

use crate::error::TreeError;
use crate::store::{Child, Children, NodeKey};
use keyfold_core::{Epoch, Hash, Index, LeafValue, Node, Version};

const TAG_EMPTY: u8 = 0;
const TAG_LEAF: u8 = 1;
const TAG_INTERNAL: u8 = 2;

/// `epoch (8) | depth (1) | prefix (32)`.
pub(crate) const NODE_KEY_LEN: usize = 41;
/// `epoch (8) | index (32)`.
pub(crate) const LEAF_KEY_LEN: usize = 40;

pub(crate) fn encode_child(child: &Child, out: &mut Vec<u8>) {
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
    TreeError::Corrupt(format!("undecodable {what} record"))
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

pub(crate) fn decode_child(bytes: &[u8]) -> Result<Child, TreeError> {
    let mut pos = 0;
    let child = decode_child_at(bytes, &mut pos)?;
    if pos != bytes.len() {
        return Err(corrupt("node"));
    }
    Ok(child)
}

pub(crate) fn encode_children(children: &Children, out: &mut Vec<u8>) {
    encode_child(&children[0], out);
    encode_child(&children[1], out);
}

pub(crate) fn decode_children(bytes: &[u8]) -> Result<Children, TreeError> {
    let mut pos = 0;
    let left = decode_child_at(bytes, &mut pos)?;
    let right = decode_child_at(bytes, &mut pos)?;
    if pos != bytes.len() {
        return Err(corrupt("children"));
    }
    Ok([left, right])
}

pub(crate) fn encode_leaf(leaf: &LeafValue, out: &mut Vec<u8>) {
    out.extend_from_slice(&leaf.version.0.to_be_bytes());
    match &leaf.value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
    }
}

pub(crate) fn decode_leaf(bytes: &[u8]) -> Result<LeafValue, TreeError> {
    let mut pos = 0;
    let version = Version(u64::from_be_bytes(take::<8>(bytes, &mut pos, "leaf")?));
    let [tag] = take::<1>(bytes, &mut pos, "leaf")?;
    match tag {
        0 if pos == bytes.len() => Ok(LeafValue::tombstone(version)),
        1 => Ok(LeafValue::present(version, bytes[pos..].to_vec())),
        _ => Err(corrupt("leaf")),
    }
}

/// Records of one epoch sort together, after every earlier epoch's: an epoch's writes append.
pub(crate) fn node_key(key: &NodeKey, written: Epoch) -> [u8; NODE_KEY_LEN] {
    let mut out = [0u8; NODE_KEY_LEN];
    out[..8].copy_from_slice(&written.0.to_be_bytes());
    out[8] = key.depth;
    out[9..].copy_from_slice(&key.prefix.0);
    out
}

pub(crate) fn leaf_key(index: &Index, written: Epoch) -> [u8; LEAF_KEY_LEN] {
    let mut out = [0u8; LEAF_KEY_LEN];
    out[..8].copy_from_slice(&written.0.to_be_bytes());
    out[8..].copy_from_slice(&index.0);
    out
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
}
