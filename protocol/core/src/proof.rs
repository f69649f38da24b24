//! Inclusion and absence proofs, their canonical encoding (SPEC.md "Proofs") and verification.

use crate::error::{DecodeError, ProofError};
use crate::hash::HashSuite;
use crate::types::Hash;
use crate::types::{Epoch, Index, LeafValue, MapRoot};

/// The only proof encoding version this crate produces and accepts.
pub const PROOF_FORMAT_V1: u8 = 1;

/// Where the path from the root towards the key's index ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// The key's own leaf: inclusion of the value the verifier supplies.
    Included,
    /// Another key's leaf occupies the subtree the key would be in: the key is absent.
    OtherLeaf { index: Index, commitment: Hash },
}

/// A proof about one index at one epoch: the sibling hashes from the root down to where the path
/// ends, and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub suite: HashSuite,
    pub epoch: Epoch,
    pub index: Index,
    /// Sibling of the path node at depth `i + 1`, top-down. Empty siblings are stored as the suite's
    /// empty hash here and omitted from the encoding.
    pub siblings: Vec<Hash>,
    pub terminal: Terminal,
}

impl Proof {
    pub fn new(suite: HashSuite, epoch: Epoch, index: Index, siblings: Vec<Hash>, terminal: Terminal) -> Proof {
        Proof { suite, epoch, index, siblings, terminal }
    }

    /// True when the proof claims the key's own leaf.
    pub fn is_inclusion(&self) -> bool {
        matches!(self.terminal, Terminal::Included)
    }

    /// Checks that this proof shows `key` holding `expected` (`Some`) or being absent (`None`)
    /// in the map whose root is `root`, under `suite`.
    pub fn verify(
        &self,
        suite: HashSuite,
        root: &MapRoot,
        key: &[u8],
        expected: Option<&LeafValue>,
    ) -> Result<(), ProofError> {
        self.verify_index(suite, root, &suite.index_of(key), expected)
    }

    /// As [`Proof::verify`], for a caller that already holds the key's index.
    pub fn verify_index(
        &self,
        suite: HashSuite,
        root: &MapRoot,
        index: &Index,
        expected: Option<&LeafValue>,
    ) -> Result<(), ProofError> {
        if self.suite != suite {
            return Err(ProofError::SuiteMismatch { expected: suite.name(), found: self.suite.name() });
        }
        if self.epoch != root.epoch {
            return Err(ProofError::EpochMismatch { expected: root.epoch.0, found: self.epoch.0 });
        }
        if self.index != *index {
            return Err(ProofError::IndexMismatch { expected: index.to_hex(), found: self.index.to_hex() });
        }
        let computed = self.computed_root(expected)?;
        if computed != root.hash {
            return Err(ProofError::RootMismatch { expected: root.hash.to_hex(), computed: computed.to_hex() });
        }
        Ok(())
    }

    /// The root this proof implies for `expected`, after checking the proof's shape is canonical.
    fn computed_root(&self, expected: Option<&LeafValue>) -> Result<Hash, ProofError> {
        let suite = self.suite;
        let depth = self.siblings.len();
        if depth > 256 {
            return Err(ProofError::Malformed("path longer than 256 levels"));
        }
        let empty = suite.empty_hash();
        // Canonical shape: every path node above the terminal holds >= 2 leaves, so the sibling of
        // the terminal is never empty (otherwise the terminal would have been lifted).
        if depth > 0 && self.siblings[depth - 1] == empty {
            return Err(ProofError::Malformed("the terminal's sibling is empty: path is not compressed"));
        }
        let terminal_hash = match (&self.terminal, expected) {
            (Terminal::Included, Some(value)) => suite.leaf_hash_of(&self.index, value),
            (Terminal::Included, None) => return Err(ProofError::ExpectedAbsence),
            (_, Some(_)) => return Err(ProofError::ExpectedInclusion),
            (Terminal::Empty, None) => empty,
            (Terminal::OtherLeaf { index, commitment }, None) => {
                if *index == self.index {
                    return Err(ProofError::Malformed("the other leaf has the proven key's index"));
                }
                if index.common_prefix_len(&self.index) < depth {
                    return Err(ProofError::Malformed("the other leaf is not on the key's path"));
                }
                suite.leaf_hash(index, commitment)
            }
        };
        let mut h = terminal_hash;
        for (level, sibling) in self.siblings.iter().enumerate().rev() {
            h = if self.index.bit(level) { suite.node_hash(sibling, &h) } else { suite.node_hash(&h, sibling) };
        }
        Ok(h)
    }

    /// Canonical encoding (SPEC.md "Proof encoding").
    pub fn encode(&self) -> Vec<u8> {
        let depth = self.siblings.len();
        let empty = self.suite.empty_hash();
        let mut out = Vec::with_capacity(46 + depth.div_ceil(8) + 32 * depth + 65);
        out.push(PROOF_FORMAT_V1);
        out.push(self.suite.id());
        out.extend_from_slice(&self.epoch.0.to_be_bytes());
        out.extend_from_slice(&self.index.0);
        out.extend_from_slice(&u16::try_from(depth).expect("depth <= 256").to_be_bytes());
        let mut bitmap = vec![0u8; depth.div_ceil(8)];
        for (i, s) in self.siblings.iter().enumerate() {
            if *s != empty {
                bitmap[i / 8] |= 0x80 >> (i % 8);
            }
        }
        out.extend_from_slice(&bitmap);
        for s in self.siblings.iter().filter(|s| **s != empty) {
            out.extend_from_slice(&s.0);
        }
        match &self.terminal {
            Terminal::Empty => out.push(0),
            Terminal::Included => out.push(1),
            Terminal::OtherLeaf { index, commitment } => {
                out.push(2);
                out.extend_from_slice(&index.0);
                out.extend_from_slice(&commitment.0);
            }
        }
        out
    }

    /// Decodes a canonical encoding; rejects truncation, trailing bytes, nonzero padding bits and
    /// explicitly encoded empty siblings.
    pub fn decode(bytes: &[u8]) -> Result<Proof, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let format = r.u8("format")?;
        if format != PROOF_FORMAT_V1 {
            return Err(DecodeError::UnsupportedFormat(format));
        }
        let suite_id = r.u8("suite")?;
        let suite = HashSuite::from_id(suite_id).ok_or(DecodeError::UnknownSuite(suite_id))?;
        let epoch = Epoch(u64::from_be_bytes(r.array::<8>("epoch")?));
        let index = Index(r.array::<32>("index")?);
        let depth16 = u16::from_be_bytes(r.array::<2>("depth")?);
        if depth16 > 256 {
            return Err(DecodeError::DepthTooLarge(depth16));
        }
        let depth = usize::from(depth16);
        let bitmap = r.take(depth.div_ceil(8), "bitmap")?;
        if depth % 8 != 0 && bitmap[depth / 8] & (0xffu8 >> (depth % 8)) != 0 {
            return Err(DecodeError::NonCanonical("bitmap padding bits are not zero"));
        }
        let empty = suite.empty_hash();
        let mut siblings = Vec::with_capacity(depth);
        for i in 0..depth {
            if bitmap[i / 8] & (0x80 >> (i % 8)) != 0 {
                let h = Hash(r.array::<32>("sibling")?);
                if h == empty {
                    return Err(DecodeError::NonCanonical("an empty sibling is encoded explicitly"));
                }
                siblings.push(h);
            } else {
                siblings.push(empty);
            }
        }
        let terminal = match r.u8("terminal")? {
            0 => Terminal::Empty,
            1 => Terminal::Included,
            2 => Terminal::OtherLeaf {
                index: Index(r.array::<32>("other index")?),
                commitment: Hash(r.array::<32>("other commitment")?),
            },
            t => return Err(DecodeError::UnknownTerminal(t)),
        };
        if r.pos != bytes.len() {
            return Err(DecodeError::TrailingBytes { extra: bytes.len() - r.pos });
        }
        Ok(Proof { suite, epoch, index, siblings, terminal })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(DecodeError::Truncated { field, len: self.bytes.len() })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N, field)?.try_into().expect("length checked"))
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }
}
