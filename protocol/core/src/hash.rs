//! The two hash suites. See `docs/SPEC.md` section 1, "Hash suites", for the normative definition.
//!
//! BLAKE3 separates domains by *key* (`blake3::keyed_hash` with a key derived from a context string),
//! so a tree node's input stays exactly one 64-byte block: one compression per node. SHA-256 already
//! pays two compressions for 64 bytes, so it separates domains with a one-byte prefix.

use crate::types::{Epoch, Hash, Index, LeafValue, Version};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

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
pub const BLAKE3_CONTEXT_VALUE: &str = "keyfold 2026-12 version commitment v2";
pub const BLAKE3_CONTEXT_ENTRY: &str = "keyfold 2026-12 version entry v2";
pub const BLAKE3_CONTEXT_MUTATION: &str = "keyfold 2026-11 mutation id v1";
pub const BLAKE3_CONTEXT_HEAD: &str = "keyfold 2026-11 head v1";
pub const BLAKE3_CONTEXT_ARCHIVE: &str = "keyfold 2026-11 archive v1";

/// SHA-256 domain prefix bytes.
pub const SHA256_PREFIX_LEAF: u8 = 0x00;
pub const SHA256_PREFIX_NODE: u8 = 0x01;
pub const SHA256_PREFIX_EMPTY: u8 = 0x02;
pub const SHA256_PREFIX_INDEX: u8 = 0x10;
pub const SHA256_PREFIX_VALUE: u8 = 0x11;
pub const SHA256_PREFIX_MUTATION: u8 = 0x12;
pub const SHA256_PREFIX_HEAD: u8 = 0x13;
pub const SHA256_PREFIX_ARCHIVE: u8 = 0x14;
pub const SHA256_PREFIX_ENTRY: u8 = 0x15;

/// Values up to this size are committed with one-shot hashing of a stack buffer.
const SMALL_VALUE_BYTES: usize = 87;
/// `previous (32) || epoch (8) || tag (1)`: the fixed part of a version entry.
const ENTRY_FIXED_BYTES: usize = 41;

/// Value commitment tags.
pub const VALUE_TAG_TOMBSTONE: u8 = 0x00;
pub const VALUE_TAG_PRESENT: u8 = 0x01;

struct Blake3Keys {
    leaf: [u8; 32],
    node: [u8; 32],
    leaf_words: [u32; 8],
    node_words: [u32; 8],
    index: [u8; 32],
    value: [u8; 32],
    entry: [u8; 32],
    mutation: [u8; 32],
    head: [u8; 32],
    archive: [u8; 32],
    empty: Hash,
}

static BLAKE3_KEYS: LazyLock<Blake3Keys> = LazyLock::new(|| {
    let empty_key = blake3::derive_key(BLAKE3_CONTEXT_EMPTY, b"");
    let leaf = blake3::derive_key(BLAKE3_CONTEXT_LEAF, b"");
    let node = blake3::derive_key(BLAKE3_CONTEXT_NODE, b"");
    Blake3Keys {
        leaf,
        node,
        leaf_words: blake3::platform::words_from_le_bytes_32(&leaf),
        node_words: blake3::platform::words_from_le_bytes_32(&node),
        index: blake3::derive_key(BLAKE3_CONTEXT_INDEX, b""),
        value: blake3::derive_key(BLAKE3_CONTEXT_VALUE, b""),
        entry: blake3::derive_key(BLAKE3_CONTEXT_ENTRY, b""),
        mutation: blake3::derive_key(BLAKE3_CONTEXT_MUTATION, b""),
        head: blake3::derive_key(BLAKE3_CONTEXT_HEAD, b""),
        archive: blake3::derive_key(BLAKE3_CONTEXT_ARCHIVE, b""),
        empty: Hash(*blake3::keyed_hash(&empty_key, b"").as_bytes()),
    }
});

/// BLAKE3's compression flags (BLAKE3 spec, section 2.1); the crate keeps its constants private.
/// A keyed hash of exactly one 64-byte block compresses that block once with all of these set.
const BLAKE3_FLAG_CHUNK_START: u8 = 1;
const BLAKE3_FLAG_CHUNK_END: u8 = 2;
const BLAKE3_FLAG_ROOT: u8 = 8;
const BLAKE3_FLAG_KEYED_HASH: u8 = 16;
/// Inputs hashed per SIMD call (a multiple of every platform's degree: 16 lanes on AVX-512).
const BLAKE3_MANY_BATCH: usize = 64;

static BLAKE3_PLATFORM: LazyLock<blake3::platform::Platform> = LazyLock::new(blake3::platform::Platform::detect);

/// Keyed BLAKE3 of many 64-byte inputs through the crate's multi-input SIMD path (`hash_many`,
/// public but doc-hidden: pinned by `Cargo.lock`, and checked equal to `keyed_hash` by tests and the
/// golden vectors). Hashing a whole tree level together is ~4x cheaper per node than one at a time.
fn blake3_many(key_words: &[u32; 8], inputs: &[[u8; 64]], out: &mut Vec<Hash>) {
    let mut refs: Vec<&[u8; 64]> = Vec::with_capacity(BLAKE3_MANY_BATCH);
    let mut buf = [0u8; 32 * BLAKE3_MANY_BATCH];
    out.reserve(inputs.len());
    for chunk in inputs.chunks(BLAKE3_MANY_BATCH) {
        refs.clear();
        refs.extend(chunk.iter());
        let bytes = &mut buf[..32 * chunk.len()];
        BLAKE3_PLATFORM.hash_many(
            &refs,
            key_words,
            0,
            blake3::IncrementCounter::No,
            BLAKE3_FLAG_KEYED_HASH,
            BLAKE3_FLAG_CHUNK_START,
            BLAKE3_FLAG_CHUNK_END | BLAKE3_FLAG_ROOT,
            bytes,
        );
        out.extend(bytes.chunks_exact(32).map(|h| Hash(h.try_into().expect("32 bytes"))));
    }
}

/// An archive digest being computed ([`HashSuite::archive_digester`]).
#[derive(Debug, Clone)]
pub enum ArchiveDigester {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl ArchiveDigester {
    /// Adds the next piece of the file.
    pub fn update(&mut self, piece: &[u8]) {
        match self {
            ArchiveDigester::Blake3(h) => {
                h.update(piece);
            }
            ArchiveDigester::Sha256(h) => h.update(piece),
        }
    }

    /// The digest of every piece added, in order.
    pub fn finalize(self) -> Hash {
        match self {
            ArchiveDigester::Blake3(h) => Hash(*h.finalize().as_bytes()),
            ArchiveDigester::Sha256(h) => Hash(h.finalize().into()),
        }
    }
}

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

    /// The commitment that a key's leaf binds (SPEC section 1.3): its version, tag and, through the
    /// version entry, the epoch that applied it, the previous version's commitment and the value.
    pub fn value_commitment(self, leaf: &LeafValue) -> Hash {
        self.value_commitment_parts(leaf.version, leaf.epoch, &leaf.previous, leaf.value.as_deref())
    }

    /// A leaf's version entry and its commitment, each hashed once (an epoch proof carries the
    /// entry of a touched leaf; its parent's pointer checks the commitment).
    pub fn entry_and_commitment(self, leaf: &LeafValue) -> (Hash, Hash) {
        let entry = self.entry_hash(&leaf.previous, leaf.epoch, leaf.value.as_deref());
        (entry, self.version_commitment(leaf.version, leaf.value.is_some(), &entry))
    }

    /// [`HashSuite::value_commitment`] of borrowed parts (`value` `None`: a tombstone).
    pub fn value_commitment_parts(self, version: Version, epoch: Epoch, previous: &Hash, value: Option<&[u8]>) -> Hash {
        let entry = self.entry_hash(previous, epoch, value);
        self.version_commitment(version, value.is_some(), &entry)
    }

    /// A version entry: `previous || u64(epoch) || tag || value bytes` under the entry domain.
    pub fn entry_hash(self, previous: &Hash, epoch: Epoch, value: Option<&[u8]>) -> Hash {
        let epoch = epoch.0.to_be_bytes();
        let (tag, value): (u8, &[u8]) = match value {
            Some(v) => (VALUE_TAG_PRESENT, v),
            None => (VALUE_TAG_TOMBSTONE, &[]),
        };
        match self {
            // One-shot hashing of a stack buffer for small values (the common case: a public key);
            // the incremental hasher costs several times more on tiny inputs. Same bytes either way.
            HashSuite::Blake3 if value.len() <= SMALL_VALUE_BYTES => {
                let mut buf = [0u8; ENTRY_FIXED_BYTES + SMALL_VALUE_BYTES];
                buf[..32].copy_from_slice(&previous.0);
                buf[32..40].copy_from_slice(&epoch);
                buf[40] = tag;
                buf[ENTRY_FIXED_BYTES..ENTRY_FIXED_BYTES + value.len()].copy_from_slice(value);
                Hash(*blake3::keyed_hash(&BLAKE3_KEYS.entry, &buf[..ENTRY_FIXED_BYTES + value.len()]).as_bytes())
            }
            HashSuite::Blake3 => {
                let mut h = blake3::Hasher::new_keyed(&BLAKE3_KEYS.entry);
                h.update(&previous.0);
                h.update(&epoch);
                h.update(&[tag]);
                h.update(value);
                Hash(*h.finalize().as_bytes())
            }
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_ENTRY], &previous.0, &epoch, &[tag], value]),
        }
    }

    /// A version commitment: `u64(version) || tag || entry` under the commitment domain (41 bytes:
    /// one BLAKE3 block), so a leaf's version and tag can be checked without its value.
    pub fn version_commitment(self, version: Version, has_value: bool, entry: &Hash) -> Hash {
        let mut buf = [0u8; 41];
        buf[..8].copy_from_slice(&version.0.to_be_bytes());
        buf[8] = if has_value { VALUE_TAG_PRESENT } else { VALUE_TAG_TOMBSTONE };
        buf[9..].copy_from_slice(&entry.0);
        match self {
            HashSuite::Blake3 => Hash(*blake3::keyed_hash(&BLAKE3_KEYS.value, &buf).as_bytes()),
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_VALUE], &buf]),
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

    /// `node_hash(left, right)` of each input `left || right`, appended to `out` in order.
    pub fn node_hashes(self, inputs: &[[u8; 64]], out: &mut Vec<Hash>) {
        match self {
            HashSuite::Blake3 => blake3_many(&BLAKE3_KEYS.node_words, inputs, out),
            HashSuite::Sha256 => out.extend(inputs.iter().map(|i| sha256(&[&[SHA256_PREFIX_NODE], i]))),
        }
    }

    /// `leaf_hash(index, commitment)` of each input `index || commitment`, appended to `out`.
    pub fn leaf_hashes(self, inputs: &[[u8; 64]], out: &mut Vec<Hash>) {
        match self {
            HashSuite::Blake3 => blake3_many(&BLAKE3_KEYS.leaf_words, inputs, out),
            HashSuite::Sha256 => out.extend(inputs.iter().map(|i| sha256(&[&[SHA256_PREFIX_LEAF], i]))),
        }
    }

    /// The id of a mutation from its canonical encoding (see [`crate::Mutation::id`]).
    pub fn mutation_id(self, encoding: &[u8]) -> Hash {
        match self {
            HashSuite::Blake3 => Hash(*blake3::keyed_hash(&BLAKE3_KEYS.mutation, encoding).as_bytes()),
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_MUTATION], encoding]),
        }
    }

    /// The hash of a head body: the link from the next head (see [`crate::Head::hash`]).
    pub fn head_hash(self, body: &[u8]) -> Hash {
        match self {
            HashSuite::Blake3 => Hash(*blake3::keyed_hash(&BLAKE3_KEYS.head, body).as_bytes()),
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_HEAD], body]),
        }
    }

    /// The digest of an epoch archive file, signed in the head.
    pub fn archive_digest(self, file: &[u8]) -> Hash {
        match self {
            HashSuite::Blake3 => Hash(*blake3::keyed_hash(&BLAKE3_KEYS.archive, file).as_bytes()),
            HashSuite::Sha256 => sha256(&[&[SHA256_PREFIX_ARCHIVE], file]),
        }
    }

    /// The archive digest of a file read in pieces: the same [`Hash`] as
    /// [`HashSuite::archive_digest`] of the whole file, in memory bounded by one piece.
    pub fn archive_digester(self) -> ArchiveDigester {
        match self {
            HashSuite::Blake3 => ArchiveDigester::Blake3(Box::new(blake3::Hasher::new_keyed(&BLAKE3_KEYS.archive))),
            HashSuite::Sha256 => {
                let mut h = Sha256::new();
                h.update([SHA256_PREFIX_ARCHIVE]);
                ArchiveDigester::Sha256(h)
            }
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

    /// [`HashSuite::leaf_hash_of`] of borrowed parts (`value` `None`: a tombstone).
    pub fn leaf_hash_parts(
        self,
        index: &Index,
        version: Version,
        epoch: Epoch,
        previous: &Hash,
        value: Option<&[u8]>,
    ) -> Hash {
        self.leaf_hash(index, &self.value_commitment_parts(version, epoch, previous, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_digest_in_pieces_equals_the_whole() {
        let file: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for s in [HashSuite::Blake3, HashSuite::Sha256] {
            let mut d = s.archive_digester();
            for piece in file.chunks(999) {
                d.update(piece);
            }
            assert_eq!(d.finalize(), s.archive_digest(&file));
        }
    }

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
    fn batch_hashes_equal_one_at_a_time() {
        for s in [HashSuite::Blake3, HashSuite::Sha256] {
            for n in [0usize, 1, 15, 16, 17, 64, 65, 200] {
                let inputs: Vec<[u8; 64]> = (0..n).map(|i| [u8::try_from(i % 251).unwrap(); 64]).collect();
                let (mut nodes, mut leaves) = (Vec::new(), Vec::new());
                s.node_hashes(&inputs, &mut nodes);
                s.leaf_hashes(&inputs, &mut leaves);
                for (i, input) in inputs.iter().enumerate() {
                    let (l, r) = input.split_at(32);
                    let (l, r) = (Hash(l.try_into().unwrap()), Hash(r.try_into().unwrap()));
                    assert_eq!(nodes[i], s.node_hash(&l, &r), "{s:?} node {i} of {n}");
                    assert_eq!(leaves[i], s.leaf_hash(&Index(l.0), &r), "{s:?} leaf {i} of {n}");
                }
                assert_eq!((nodes.len(), leaves.len()), (n, n));
            }
        }
    }

    #[test]
    fn commitments_bind_version_tag_epoch_and_previous() {
        for s in [HashSuite::Blake3, HashSuite::Sha256] {
            let t = s.value_commitment(&LeafValue::tombstone(Version(3)));
            let p = s.value_commitment(&LeafValue::present(Version(3), vec![]));
            let p4 = s.value_commitment(&LeafValue::present(Version(4), vec![]));
            let later = s.value_commitment(&LeafValue::new(Version(3), Epoch(1), Hash::default(), Some(vec![])));
            let after = s.value_commitment(&LeafValue::new(Version(3), Epoch(0), Hash([1; 32]), Some(vec![])));
            assert_ne!(t, p);
            assert_ne!(p, p4);
            assert_ne!(p, later, "the epoch is committed");
            assert_ne!(p, after, "the previous version is committed");
        }
    }
}
