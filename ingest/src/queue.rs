use crate::error::QueueError;
use keyfold_core::{DecodeError, Epoch, HashSuite, Mutation, MutationId};

/// A queue position: assigned in append order, starting at 1, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position(pub u64);

/// Cuts an epoch: every mutation before it (and after the previous marker) belongs to `epoch`.
/// The marker carries the epoch's time, so a re-run after a crash produces the identical head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub epoch: Epoch,
    pub time_ms: u64,
}

/// What a queue holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Mutation(Mutation),
    Marker(Marker),
}

/// Where an acknowledged mutation waits for its epoch. Within one queue, slots order like the
/// entries they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Its queue position: the embedded and in-memory queues number entries as they append them.
    Position(Position),
    /// Its FoundationDB versionstamp: the 10-byte commit versionstamp and the 2-byte index in its
    /// batch, big-endian. Appends from many frontends never conflict because none of them picks a
    /// number; the epoch cut gives staged entries their positions, in versionstamp order.
    Versionstamp([u8; 12]),
}

/// The durable receipt of an appended mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub id: MutationId,
    pub slot: Slot,
}

const TAG_MUTATION: u8 = 0;
const TAG_MARKER: u8 = 1;

/// Storage encoding of an entry (SPEC.md "Queue records"): `0x00 || mutation encoding` or
/// `0x01 || epoch (8) || time_ms (8)`.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    match entry {
        Entry::Mutation(m) => {
            let mut out = vec![TAG_MUTATION];
            out.extend_from_slice(&m.encode());
            out
        }
        Entry::Marker(marker) => {
            let mut out = Vec::with_capacity(17);
            out.push(TAG_MARKER);
            out.extend_from_slice(&marker.epoch.0.to_be_bytes());
            out.extend_from_slice(&marker.time_ms.to_be_bytes());
            out
        }
    }
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    match bytes.split_first() {
        Some((&TAG_MUTATION, rest)) => Ok(Entry::Mutation(Mutation::decode(rest)?)),
        Some((&TAG_MARKER, rest)) => {
            let fields: &[u8; 16] =
                rest.try_into().map_err(|_| DecodeError::NonCanonical("a marker is exactly 16 bytes"))?;
            let epoch = Epoch(u64::from_be_bytes(fields[..8].try_into().expect("8")));
            Ok(Entry::Marker(Marker { epoch, time_ms: u64::from_be_bytes(fields[8..].try_into().expect("8")) }))
        }
        Some(_) => Err(DecodeError::NonCanonical("queue entry tag must be 0 (mutation) or 1 (marker)")),
        None => Err(DecodeError::Truncated { field: "entry tag", len: 0 }),
    }
}

/// The mutation queue: many writers (frontends), one reader (the epoch job).
pub trait Queue: Send + Sync {
    fn suite(&self) -> HashSuite;

    /// Appends `mutations` in order, all or nothing, and returns once they are durable. Refuses
    /// with [`QueueError::Full`] when the pending depth would exceed the bound.
    fn append(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError>;

    /// Appends an epoch marker durably. Never refused for depth: cutting an epoch is what drains
    /// a full queue.
    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError>;

    /// Up to `max_entries` entries at positions `>= from`, in order. Every mutation acknowledged
    /// before the call is readable (a queue that stages appends numbers them first).
    fn read(&self, from: Position, max_entries: usize) -> Result<Vec<(Position, Entry)>, QueueError>;

    /// Removes every entry at positions `<= through` (after the epoch that consumed them is
    /// committed). Returns how many mutations were removed.
    fn remove_through(&self, through: Position) -> Result<u64, QueueError>;

    /// Mutations appended and not yet removed.
    fn depth(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_core::Version;

    #[test]
    fn entries_round_trip_and_reject_garbage() {
        let m = Mutation {
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
            expected_version: Version(2),
            owner_signature: None,
        };
        for e in [Entry::Mutation(m), Entry::Marker(Marker { epoch: Epoch(9), time_ms: 1_700_000_000_000 })] {
            assert_eq!(decode_entry(&encode_entry(&e)).unwrap(), e);
        }
        assert!(decode_entry(&[]).is_err());
        assert!(decode_entry(&[7, 1, 2]).is_err());
        assert!(decode_entry(&[1, 0, 0]).is_err(), "short marker");
    }
}
