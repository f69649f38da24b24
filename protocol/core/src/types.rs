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

/// Largest supported number of shard bits (65,536 shards).
pub const MAX_SHARD_BITS: u8 = 16;

/// A 256-bit position in the map: the hash of a key under the directory's [`crate::HashSuite`].
/// Bit 0 is the most significant bit of byte 0; a 0 bit goes left.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Index(pub [u8; 32]);

impl Index {
    /// Bit `depth` of the index (0 = most significant bit of byte 0). `depth` must be < 256.
    #[inline]
    pub fn bit(&self, depth: usize) -> bool {
        debug_assert!(depth < 256);
        (self.0[depth / 8] >> (7 - (depth % 8))) & 1 == 1
    }

    /// The index with every bit at position `>= depth` cleared: the path prefix of a subtree.
    pub fn prefix(&self, depth: usize) -> Index {
        debug_assert!(depth <= 256);
        let mut out = [0u8; 32];
        let full = depth / 8;
        out[..full].copy_from_slice(&self.0[..full]);
        if !depth.is_multiple_of(8) {
            out[full] = self.0[full] & (0xffu8 << (8 - depth % 8));
        }
        Index(out)
    }

    /// Number of leading bits shared with `other` (256 when equal).
    pub fn common_prefix_len(&self, other: &Index) -> usize {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        256
    }

    /// The shard this index belongs to: its top `shard_bits` bits.
    pub fn shard(&self, shard_bits: u8) -> ShardId {
        assert!(shard_bits <= MAX_SHARD_BITS, "shard_bits {shard_bits} > {MAX_SHARD_BITS}");
        if shard_bits == 0 {
            return ShardId(0);
        }
        let top = u32::from(u16::from_be_bytes([self.0[0], self.0[1]]));
        ShardId(top >> (16 - u32::from(shard_bits)))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({})", self.to_hex())
    }
}

/// A shard: the subtree of every index whose top `shard_bits` bits equal this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u32);

impl ShardId {
    /// The smallest index in this shard.
    pub fn first_index(self, shard_bits: u8) -> Index {
        let mut out = [0u8; 32];
        if shard_bits > 0 {
            let top = u16::try_from(self.0 << (16 - u32::from(shard_bits))).expect("shard id < 2^shard_bits");
            out[..2].copy_from_slice(&top.to_be_bytes());
        }
        Index(out)
    }
}

/// An epoch number. Epoch 0 is the empty map every directory starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Epoch(pub u64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Epoch {
    pub fn next(self) -> Epoch {
        Epoch(self.0.checked_add(1).expect("epoch overflow"))
    }
}

/// A key's version: 1 for its first value, incremented by every accepted mutation (tombstones too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Version(pub u64);

/// What the map holds for a key (SPEC section 1.3): its version, the epoch that applied it, the
/// commitment of the version before (which chains every version of the key into this leaf) and its
/// value, or `None` for a tombstone (deleted, history kept).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeafValue {
    pub version: Version,
    /// The epoch that applied this version.
    pub epoch: Epoch,
    /// The commitment of version `version - 1`; 32 zero bytes for version 1.
    pub previous: Hash,
    pub value: Option<Vec<u8>>,
}

impl LeafValue {
    /// A value with no recorded history (epoch 0, no previous version): for code that stores
    /// leaves without looking inside them (the map's own tests). Directories build leaves with
    /// [`LeafValue::new`].
    pub fn present(version: Version, value: Vec<u8>) -> LeafValue {
        LeafValue { version, epoch: Epoch(0), previous: Hash::default(), value: Some(value) }
    }

    /// A tombstone with no recorded history, as [`LeafValue::present`].
    pub fn tombstone(version: Version) -> LeafValue {
        LeafValue { version, epoch: Epoch(0), previous: Hash::default(), value: None }
    }

    /// Version `version` of a key, applied by `epoch`, after the version whose commitment is `previous`.
    pub fn new(version: Version, epoch: Epoch, previous: Hash, value: Option<Vec<u8>>) -> LeafValue {
        LeafValue { version, epoch, previous, value }
    }
}

/// What compare-and-set needs of a key's current state, without its value: its version, whether it
/// holds a value (a tombstone does not) and the commitment its leaf binds (SPEC section 1.3), which
/// the next version chains to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    pub version: Version,
    pub has_value: bool,
    pub commitment: Hash,
}

impl KeyState {
    /// The state of `leaf` under `suite` (hashes its commitment).
    pub fn of(suite: crate::HashSuite, leaf: &LeafValue) -> KeyState {
        KeyState { version: leaf.version, has_value: leaf.value.is_some(), commitment: suite.value_commitment(leaf) }
    }
}

/// A map root together with the epoch it belongs to: what a proof is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRoot {
    pub epoch: Epoch,
    pub hash: Hash,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_prefix_and_shards() {
        let mut b = [0u8; 32];
        b[0] = 0b1010_0000;
        b[1] = 0b0100_0000;
        let i = Index(b);
        assert!(i.bit(0) && !i.bit(1) && i.bit(2) && i.bit(9) && !i.bit(255));
        assert_eq!(i.prefix(1).0[0], 0b1000_0000);
        assert_eq!(i.prefix(3).0[0], 0b1010_0000);
        assert_eq!(i.prefix(0), Index([0; 32]));
        assert_eq!(i.shard(8), ShardId(0b1010_0000));
        assert_eq!(i.shard(10), ShardId(0b10_1000_0001));
        assert_eq!(i.shard(0), ShardId(0));
        assert_eq!(ShardId(0b1010_0000).first_index(8), i.prefix(8));
        assert_eq!(i.common_prefix_len(&i), 256);
        assert_eq!(i.common_prefix_len(&Index([0; 32])), 0);
        assert_eq!(i.common_prefix_len(&i.prefix(9)), 9);
    }
}

/// A queue position: assigned in append order, starting at 1, never reused. Archive rows carry
/// it (SPEC section 7), and an epoch consumes the positions up to its marker's `through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position(pub u64);
