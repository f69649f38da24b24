//! The two hash suites. See `docs/SPEC.md` section "Hashing" for the normative definition.
//!
//! BLAKE3 separates domains by *key* (`blake3::keyed_hash` with a key derived from a context string),
//! so a tree node's input stays exactly one 64-byte block: one compression per node. SHA-256 already
//! pays two compressions for 64 bytes, so it separates domains with a one-byte prefix.

use crate::types::{Index, LeafValue};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// A 32-byte digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// The hash suite a directory uses, fixed at `init` and recorded in every head and proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashSuite {
    /// BLAKE3 with keyed domain separation (suite id 1, the default).
    Blake3,
    /// SHA-256 with one-byte domain prefixes (suite id 2).
    Sha256,
}

/// BLAKE3 context strings; each domain key is `blake3::derive_key(context, b"")`.
pub const BLAKE3_CONTEXT_LEAF: &str = "keyfold 2026-11 map leaf v1";
pub const BLAKE3_CONTEXT_NODE: &str = "keyfold 2026-11 map node v1";
pub const BLAKE3_CONTEXT_EMPTY: &str = "keyfold 2026-11 map empty v1";
pub const BLAKE3_CONTEXT_INDEX: &str = "keyfold 2026-11 key index v1";
pub const BLAKE3_CONTEXT_VALUE: &str = "keyfold 2026-11 value commitment v1";

/// SHA-256 domain prefix bytes.
pub const SHA256_PREFIX_LEAF: u8 = 0x00;
pub const SHA256_PREFIX_NODE: u8 = 0x01;
pub const SHA256_PREFIX_EMPTY: u8 = 0x02;
pub const SHA256_PREFIX_INDEX: u8 = 0x10;
pub const SHA256_PREFIX_VALUE: u8 = 0x11;

/// Value commitment tags.
pub const VALUE_TAG_TOMBSTONE: u8 = 0x00;
pub const VALUE_TAG_PRESENT: u8 = 0x01;

struct Blake3Keys {
    leaf: [u8; 32],
    node: [u8; 32],
    index: [u8; 32],
    value: [u8; 32],
    empty: Hash,
}

static BLAKE3_KEYS: LazyLock<Blake3Keys> = LazyLock::new(|| {
    let empty_key = blake3::derive_key(BLAKE3_CONTEXT_EMPTY, b"");
    Blake3Keys {
        leaf: blake3::derive_key(BLAKE3_CONTEXT_LEAF, b""),
        node: blake3::derive_key(BLAKE3_CONTEXT_NODE, b""),
        index: blake3::derive_key(BLAKE3_CONTEXT_INDEX, b""),
        value: blake3::derive_key(BLAKE3_CONTEXT_VALUE, b""),
        empty: Hash(*blake3::keyed_hash(&empty_key, b"").as_bytes()),
    }
});

static SHA256_EMPTY: LazyLock<Hash> = LazyLock::new(|| sha256(&[&[SHA256_PREFIX_EMPTY]]));

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Hash(h.finalize().into())
}

fn concat64(a: &[u8; 32], b: &[u8; 32]) -> [u8; 64] {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(a);
    buf[32..].copy_from_slice(b);
    buf
}

impl HashSuite {
    /// The suite id used in encodings (proofs, heads).
    pub fn id(self) -> u8 {
        match self {
            HashSuite::Blake3 => 1,
            HashSuite::Sha256 => 2,
        }
    }

    pub fn from_id(id: u8) -> Option<HashSuite> {
        match id {
            1 => Some(HashSuite::Blake3),
            2 => Some(HashSuite::Sha256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashSuite::Blake3 => "blake3",
            HashSuite::Sha256 => "sha256",
        }
    }

    pub fn from_name(name: &str) -> Option<HashSuite> {
        match name {
            "blake3" => Some(HashSuite::Blake3),
            "sha256" => Some(HashSuite::Sha256),
            _ => None,
        }
    }

    /// The map index of a key.
    pub fn index_of(self, key: &[u8]) -> Index {
        match self {
            HashSuite::Blake3 => Index(*blake3::keyed_hash(&BLAKE3_KEYS.index, key).as_bytes()),
            HashSuite::Sha256 => Index(sha256(&[&[SHA256_PREFIX_INDEX], key]).0),
        }
    }

    /// The commitment to a key's version and value (or tombstone) that its leaf carries.
    pub fn value_commitment(self, leaf: &LeafValue) -> Hash {
        let version = leaf.version.0.to_be_bytes();
        let (tag, value): (u8, &[u8]) = match &leaf.value {
            Some(v) => (VALUE_TAG_PRESENT, v),
            None => (VALUE_TAG_TOMBSTONE, &[]),
        };
        match self {
            HashSuite::Blake3 => {
                let mut h = blake3::Hasher::new_keyed(&BLAKE3_KEYS.value);
                h.update(&version);
                h.update(&[tag]);
                h.update(value);
                Hash(*h.finalize().as_bytes())
            }
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_VALUE], &version, &[tag], value]),
        }
    }

    /// The hash of a leaf: binds the full index (so a leaf may sit above depth 256) and the
    /// value commitment. Input is exactly 64 bytes for BLAKE3.
    #[inline]
    pub fn leaf_hash(self, index: &Index, commitment: &Hash) -> Hash {
        match self {
            HashSuite::Blake3 => {
                let buf = concat64(&index.0, &commitment.0);
                Hash(*blake3::keyed_hash(&BLAKE3_KEYS.leaf, &buf).as_bytes())
            }
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_LEAF], &index.0, &commitment.0]),
        }
    }

    /// The hash of an interior node from its left (bit 0) and right (bit 1) children.
    #[inline]
    pub fn node_hash(self, left: &Hash, right: &Hash) -> Hash {
        match self {
            HashSuite::Blake3 => {
                let buf = concat64(&left.0, &right.0);
                Hash(*blake3::keyed_hash(&BLAKE3_KEYS.node, &buf).as_bytes())
            }
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_NODE], &left.0, &right.0]),
        }
    }

    /// The hash of an empty subtree (the same at every depth).
    #[inline]
    pub fn empty_hash(self) -> Hash {
        match self {
            HashSuite::Blake3 => BLAKE3_KEYS.empty,
            HashSuite::Sha256 => *SHA256_EMPTY,
        }
    }

    /// Leaf hash of a key's value: `leaf_hash(index, value_commitment(value))`.
    pub fn leaf_hash_of(self, index: &Index, leaf: &LeafValue) -> Hash {
        self.leaf_hash(index, &self.value_commitment(leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_differ_and_suites_differ() {
        for s in [HashSuite::Blake3, HashSuite::Sha256] {
            let a = Hash([7; 32]);
            let b = Hash([9; 32]);
            let leaf = s.leaf_hash(&Index(a.0), &b);
            let node = s.node_hash(&a, &b);
            assert_ne!(leaf, node);
            assert_ne!(node, s.node_hash(&b, &a), "node hash must be ordered");
            assert_ne!(s.empty_hash(), Hash::default());
            assert_eq!(HashSuite::from_id(s.id()), Some(s));
            assert_eq!(HashSuite::from_name(s.name()), Some(s));
        }
        assert_ne!(HashSuite::Blake3.index_of(b"k"), HashSuite::Sha256.index_of(b"k"));
    }

    #[test]
    fn blake3_node_is_one_block_keyed_hash() {
        // The spec: node = keyed_hash(derive_key(NODE context, ""), left || right), 64 bytes.
        let key = blake3::derive_key(BLAKE3_CONTEXT_NODE, b"");
        let mut input = [1u8; 64];
        input[32..].fill(2);
        let expected = blake3::keyed_hash(&key, &input);
        let got = HashSuite::Blake3.node_hash(&Hash([1; 32]), &Hash([2; 32]));
        assert_eq!(got.0, *expected.as_bytes());
    }

    #[test]
    fn tombstone_and_present_commitments_differ() {
        use crate::types::Version;
        for s in [HashSuite::Blake3, HashSuite::Sha256] {
            let t = s.value_commitment(&LeafValue::tombstone(Version(3)));
            let p = s.value_commitment(&LeafValue::present(Version(3), vec![]));
            let p4 = s.value_commitment(&LeafValue::present(Version(4), vec![]));
            assert_ne!(t, p);
            assert_ne!(p, p4);
        }
    }
}
