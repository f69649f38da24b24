//! Storage encodings (big-endian, fixed widths; documented in SPEC.md "Storage records").

use crate::error::TreeError;
use crate::store::{Children, NodeKey};
use keyfold_core::{Epoch, Hash, Index, LeafValue, Node, Version};

const TAG_EMPTY: u8 = 0;
const TAG_LEAF: u8 = 1;
const TAG_INTERNAL: u8 = 2;

/// Bytes of an encoded node key without the epoch suffix.
pub(crate) const NODE_KEY_LEN: usize = 33;

pub(crate) fn encode_node(node: &Node, out: &mut Vec<u8>) {
    match node {
        Node::Empty => out.push(TAG_EMPTY),
        Node::Leaf { index, hash } => {
            out.push(TAG_LEAF);
            out.extend_from_slice(&index.0);
            out.extend_from_slice(&hash.0);
        }
        Node::Internal { hash } => {
            out.push(TAG_INTERNAL);
            out.extend_from_slice(&hash.0);
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

fn decode_node_at(bytes: &[u8], pos: &mut usize) -> Result<Node, TreeError> {
    let [tag] = take::<1>(bytes, pos, "node")?;
    match tag {
        TAG_EMPTY => Ok(Node::Empty),
        TAG_LEAF => {
            let index = Index(take::<32>(bytes, pos, "node")?);
            Ok(Node::Leaf { index, hash: Hash(take::<32>(bytes, pos, "node")?) })
        }
        TAG_INTERNAL => Ok(Node::Internal { hash: Hash(take::<32>(bytes, pos, "node")?) }),
        _ => Err(corrupt("node")),
    }
}

pub(crate) fn decode_node(bytes: &[u8]) -> Result<Node, TreeError> {
    let mut pos = 0;
    let node = decode_node_at(bytes, &mut pos)?;
    if pos != bytes.len() {
        return Err(corrupt("node"));
    }
    Ok(node)
}

pub(crate) fn encode_children(children: &Children) -> Vec<u8> {
    let mut out = Vec::with_capacity(130);
    encode_node(&children[0], &mut out);
    encode_node(&children[1], &mut out);
    out
}

pub(crate) fn decode_children(bytes: &[u8]) -> Result<Children, TreeError> {
    let mut pos = 0;
    let left = decode_node_at(bytes, &mut pos)?;
    let right = decode_node_at(bytes, &mut pos)?;
    if pos != bytes.len() {
        return Err(corrupt("children"));
    }
    Ok([left, right])
}

pub(crate) fn encode_leaf(leaf: &LeafValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + leaf.value.as_ref().map_or(0, Vec::len));
    out.extend_from_slice(&leaf.version.0.to_be_bytes());
    match &leaf.value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
    }
    out
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

/// `depth (1) | prefix (32) | epoch (8, big-endian)`: versions of one node sort together, oldest first.
pub(crate) fn node_key_at(key: &NodeKey, epoch: Epoch) -> [u8; NODE_KEY_LEN + 8] {
    let mut out = [0u8; NODE_KEY_LEN + 8];
    out[0] = key.depth;
    out[1..33].copy_from_slice(&key.prefix.0);
    out[33..].copy_from_slice(&epoch.0.to_be_bytes());
    out
}

/// `index (32) | epoch (8, big-endian)`.
pub(crate) fn leaf_key_at(index: &Index, epoch: Epoch) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&index.0);
    out[32..].copy_from_slice(&epoch.0.to_be_bytes());
    out
}

/// `shard (4, big-endian) | epoch (8, big-endian)`.
pub(crate) fn shard_key_at(shard: u32, epoch: Epoch) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&shard.to_be_bytes());
    out[4..].copy_from_slice(&epoch.0.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let nodes = [
            Node::Empty,
            Node::Leaf { index: Index([3; 32]), hash: Hash([4; 32]) },
            Node::Internal { hash: Hash([5; 32]) },
        ];
        for a in nodes {
            for b in nodes {
                assert_eq!(decode_children(&encode_children(&[a, b])).unwrap(), [a, b]);
            }
            let mut buf = Vec::new();
            encode_node(&a, &mut buf);
            assert_eq!(decode_node(&buf).unwrap(), a);
        }
        for leaf in [LeafValue::tombstone(Version(9)), LeafValue::present(Version(1), b"xyz".to_vec())] {
            assert_eq!(decode_leaf(&encode_leaf(&leaf)).unwrap(), leaf);
        }
        assert!(decode_leaf(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 5]).is_err(), "tombstone with value bytes");
        assert!(decode_children(&[2, 1]).is_err());
    }
}
