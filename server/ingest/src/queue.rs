use crate::error::QueueError;
use keyfold_core::{DecodeError, Epoch, HashSuite, Mutation, MutationId};

pub use keyfold_core::Position;

/// Cuts an epoch: the mutations at positions after the previous epoch's `through` and up to this
/// one's belong to `epoch` (markers of earlier epochs in that range are skipped). The marker is
/// appended at the queue's end, after whatever arrived meanwhile, so `through` can be before it:
/// what lies between waits for the next epoch. It carries the epoch's time and `through`, so a
/// re-run after a crash consumes exactly the same mutations and produces the identical head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub epoch: Epoch,
    pub time_ms: u64,
    /// The last queue position the epoch consumes.
    pub through: Position,
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

/// Record tags (SPEC.md "Queue records"). Tag 0 (a mutation without its id) and 17-byte markers
/// (without `through`) are the format before ids were stored; [`upgrade_legacy_record`] rewrites
/// them.
const TAG_LEGACY_MUTATION: u8 = 0;
const TAG_MARKER: u8 = 1;
const TAG_MUTATION: u8 = 2;
const MARKER_LEN: usize = 1 + 8 + 8 + 8;
const LEGACY_MARKER_LEN: usize = 1 + 8 + 8;
/// Tag and mutation id in front of a mutation record's encoding.
pub const MUTATION_RECORD_OVERHEAD: usize = 1 + 32;

/// The bytes a mutation counts for in the queue's and the epoch's byte bounds: the length of its
/// canonical encoding (SPEC.md "Mutations"), computed without encoding it.
pub fn mutation_bytes(m: &Mutation) -> u64 {
    let value = m.value.as_ref().map_or(0, |v| 4 + v.len());
    let signature = m.owner_signature.as_ref().map_or(0, |s| 2 + s.len());
    (1 + 2 + m.key.len() + 8 + 1 + value + 1 + signature) as u64
}

/// The length of an entry's stored record (what [`Queue::read_bounded`] counts).
pub fn record_bytes(entry: &Entry) -> u64 {
    match entry {
        Entry::Mutation(m) => MUTATION_RECORD_OVERHEAD as u64 + mutation_bytes(m),
        Entry::Marker(_) => MARKER_LEN as u64,
    }
}

/// The record of an acknowledged mutation: `0x02 || id (32) || mutation encoding`. The id is the
/// one its receipt carried; every read recomputes it from the encoding and compares.
pub fn encode_mutation(id: &MutationId, m: &Mutation) -> Vec<u8> {
    let mut encoding = Vec::new();
    m.encode_into(&mut encoding);
    let mut out = Vec::with_capacity(MUTATION_RECORD_OVERHEAD + encoding.len());
    out.push(TAG_MUTATION);
    out.extend_from_slice(&id.0.0);
    out.extend_from_slice(&encoding);
    out
}

/// The record of a marker: `0x01 || epoch (8) || time_ms (8) || through (8)`, big-endian.
pub fn encode_marker(marker: &Marker) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARKER_LEN);
    out.push(TAG_MARKER);
    out.extend_from_slice(&marker.epoch.0.to_be_bytes());
    out.extend_from_slice(&marker.time_ms.to_be_bytes());
    out.extend_from_slice(&marker.through.0.to_be_bytes());
    out
}

/// Storage encoding of an entry (SPEC.md "Queue records"); a mutation's id is computed under `suite`.
pub fn encode_entry(suite: HashSuite, entry: &Entry) -> Vec<u8> {
    match entry {
        Entry::Mutation(m) => encode_mutation(&m.id(suite), m),
        Entry::Marker(marker) => encode_marker(marker),
    }
}

/// The mutation bytes ([`mutation_bytes`]) a stored record counts for: its length less the tag and
/// id for a mutation, `None` for anything else.
pub fn record_mutation_bytes(bytes: &[u8]) -> Option<u64> {
    match bytes.first() {
        Some(&TAG_MUTATION) => Some(bytes.len().saturating_sub(MUTATION_RECORD_OVERHEAD) as u64),
        _ => None,
    }
}

/// The stored id of a mutation record, unchecked (`None` for a marker or a malformed record).
pub fn record_mutation_id(bytes: &[u8]) -> Option<MutationId> {
    match bytes.split_first() {
        Some((&TAG_MUTATION, rest)) if rest.len() >= 32 => {
            Some(MutationId(keyfold_core::Hash(rest[..32].try_into().expect("32 bytes"))))
        }
        _ => None,
    }
}

/// The last-marker record (SPEC appendix A.2): the marker's position (8 bytes, big-endian), then
/// its entry record. Written with the marker, in the same transaction, so a re-run finds its cut
/// without scanning the queue.
pub fn encode_last_marker(position: Position, record: &[u8]) -> Vec<u8> {
    let mut value = position.0.to_be_bytes().to_vec();
    value.extend_from_slice(record);
    value
}

/// Reads a record of [`encode_last_marker`].
pub fn decode_last_marker(suite: HashSuite, value: &[u8]) -> Result<(Position, Marker), QueueError> {
    let corrupt = || QueueError::corrupt("the last marker record is malformed");
    let (position, record) = value.split_at_checked(8).ok_or_else(corrupt)?;
    let position = Position(u64::from_be_bytes(position.try_into().expect("8 bytes")));
    match decode_entry(suite, position, record)? {
        Entry::Marker(marker) => Ok((position, marker)),
        Entry::Mutation(_) => Err(corrupt()),
    }
}

/// Decodes the record stored at `position` and checks a mutation against its stored id: a record
/// whose bytes changed after it was acknowledged is [`QueueError::MutationIdMismatch`], never a
/// mutation to apply.
pub fn decode_entry(suite: HashSuite, position: Position, bytes: &[u8]) -> Result<Entry, QueueError> {
    let corrupt = |e: DecodeError| QueueError::corrupt(format!("entry at position {}: {e}", position.0));
    match bytes.split_first() {
        Some((&TAG_MUTATION, rest)) => {
            let (stored, encoding) = rest
                .split_at_checked(32)
                .ok_or_else(|| corrupt(DecodeError::Truncated { field: "mutation id", len: rest.len() }))?;
            let stored = MutationId(keyfold_core::Hash(stored.try_into().expect("32 bytes")));
            let computed = MutationId(suite.mutation_id(encoding));
            if computed != stored {
                return Err(QueueError::MutationIdMismatch { position, stored, computed });
            }
            Ok(Entry::Mutation(Mutation::decode(encoding).map_err(corrupt)?))
        }
        Some((&TAG_MARKER, rest)) => {
            let fields: &[u8; MARKER_LEN - 1] = rest
                .try_into()
                .map_err(|_| corrupt(DecodeError::NonCanonical("a marker is exactly 24 bytes after its tag")))?;
            let field = |at: usize| u64::from_be_bytes(fields[at..at + 8].try_into().expect("8"));
            Ok(Entry::Marker(Marker { epoch: Epoch(field(0)), time_ms: field(8), through: Position(field(16)) }))
        }
        Some((&TAG_LEGACY_MUTATION, _)) => Err(QueueError::corrupt(format!(
            "entry at position {}: a mutation record without its id (the format before ids were stored); \
             the queue upgrades those when it opens",
            position.0
        ))),
        Some(_) => Err(corrupt(DecodeError::NonCanonical("queue entry tag must be 1 (marker) or 2 (mutation)"))),
        None => Err(corrupt(DecodeError::Truncated { field: "entry tag", len: 0 })),
    }
}

/// Rewrites a record of the format before ids and `through` were stored, found at `position`:
/// a mutation gets the id of its bytes as they are (the best the old format allows), a marker
/// `through = position - 1` (it cut everything before it). `None` for a current record.
pub fn upgrade_legacy_record(suite: HashSuite, position: Position, bytes: &[u8]) -> Option<Vec<u8>> {
    match bytes.split_first() {
        Some((&TAG_LEGACY_MUTATION, encoding)) => {
            let mut out = Vec::with_capacity(MUTATION_RECORD_OVERHEAD + encoding.len());
            out.push(TAG_MUTATION);
            out.extend_from_slice(&suite.mutation_id(encoding).0);
            out.extend_from_slice(encoding);
            Some(out)
        }
        Some((&TAG_MARKER, _)) if bytes.len() == LEGACY_MARKER_LEN => {
            let mut out = bytes.to_vec();
            out.extend_from_slice(&position.0.saturating_sub(1).to_be_bytes());
            Some(out)
        }
        _ => None,
    }
}

/// The mutation queue: many writers (frontends), one reader (the epoch job).
pub trait Queue: Send + Sync {
    fn suite(&self) -> HashSuite;

    /// Appends `mutations` in order, all or nothing, and returns once they are durable. Refuses
    /// with [`QueueError::Full`] when the pending mutations would exceed the depth bound or their
    /// bytes ([`mutation_bytes`]) the byte bound.
    fn append(&self, mutations: Vec<Mutation>) -> Result<Vec<Receipt>, QueueError>;

    /// Appends an epoch marker durably at the queue's end and records it as the last marker.
    /// Never refused for depth or bytes: cutting an epoch is what drains a full queue.
    fn append_marker(&self, marker: Marker) -> Result<Position, QueueError>;

    /// The last marker appended and its position, even if its entry was removed since: an
    /// interrupted epoch finds its cut here without scanning the queue.
    fn last_marker(&self) -> Result<Option<(Position, Marker)>, QueueError>;

    /// Entries at positions `>= from`, in order: at most `max_entries`, and no more stored bytes
    /// than `max_bytes` (except that the first entry is always returned, so a caller progresses).
    /// Every mutation acknowledged before the call is readable (a queue that stages appends
    /// numbers them first). A mutation whose stored id does not match its bytes is
    /// [`QueueError::MutationIdMismatch`].
    fn read_bounded(
        &self,
        from: Position,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<Vec<(Position, Entry)>, QueueError>;

    /// Up to `max_entries` entries at positions `>= from`, in order (see [`Queue::read_bounded`]).
    fn read(&self, from: Position, max_entries: usize) -> Result<Vec<(Position, Entry)>, QueueError> {
        self.read_bounded(from, max_entries, u64::MAX)
    }

    /// Removes every entry at positions `<= through` (after the epoch that consumed them is
    /// committed). Returns how many mutations were removed.
    fn remove_through(&self, through: Position) -> Result<u64, QueueError>;

    /// Mutations appended and not yet removed.
    fn depth(&self) -> u64;

    /// The bytes ([`mutation_bytes`]) of the mutations appended and not yet removed.
    fn pending_bytes(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_core::{StorageError, Version};

    fn m() -> Mutation {
        Mutation { key: b"k".to_vec(), value: Some(b"v".to_vec()), expected_version: Version(2), owner_signature: None }
    }

    #[test]
    fn entries_round_trip_and_reject_garbage() {
        let suite = HashSuite::Blake3;
        let at = Position(3);
        let marker = Marker { epoch: Epoch(9), time_ms: 1_700_000_000_000, through: Position(2) };
        for e in [Entry::Mutation(m()), Entry::Marker(marker)] {
            assert_eq!(decode_entry(suite, at, &encode_entry(suite, &e)).unwrap(), e);
        }
        assert_eq!(encode_entry(suite, &Entry::Mutation(m())).len() as u64, mutation_bytes(&m()) + 33);
        assert_eq!(record_mutation_id(&encode_entry(suite, &Entry::Mutation(m()))), Some(m().id(suite)));
        for garbage in [&[][..], &[7, 1, 2], &[1, 0, 0], &[2, 0]] {
            assert!(
                matches!(decode_entry(suite, at, garbage), Err(QueueError::Storage(StorageError::Corrupt(_)))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_changed_byte_is_a_mutation_id_mismatch() {
        let suite = HashSuite::Sha256;
        let mut record = encode_entry(suite, &Entry::Mutation(m()));
        *record.last_mut().unwrap() ^= 0x01; // flips a bit of the signature tag
        let err = decode_entry(suite, Position(5), &record).unwrap_err();
        assert!(matches!(err, QueueError::MutationIdMismatch { position: Position(5), .. }), "{err}");
        assert!(!err.is_retryable());
        // The id checked is the stored one: a changed id is caught the same way.
        let mut record = encode_entry(suite, &Entry::Mutation(m()));
        record[1] ^= 0x80;
        assert!(matches!(decode_entry(suite, Position(5), &record), Err(QueueError::MutationIdMismatch { .. })));
    }

    #[test]
    fn legacy_records_upgrade_to_the_current_format() {
        let suite = HashSuite::Blake3;
        let mut legacy = vec![TAG_LEGACY_MUTATION];
        legacy.extend_from_slice(&m().encode());
        let upgraded = upgrade_legacy_record(suite, Position(4), &legacy).unwrap();
        assert_eq!(decode_entry(suite, Position(4), &upgraded).unwrap(), Entry::Mutation(m()));
        let mut marker = vec![TAG_MARKER];
        marker.extend_from_slice(&7u64.to_be_bytes());
        marker.extend_from_slice(&99u64.to_be_bytes());
        let upgraded = upgrade_legacy_record(suite, Position(10), &marker).unwrap();
        let expected = Marker { epoch: Epoch(7), time_ms: 99, through: Position(9) };
        assert_eq!(decode_entry(suite, Position(10), &upgraded).unwrap(), Entry::Marker(expected));
        assert_eq!(upgrade_legacy_record(suite, Position(10), &upgraded), None, "current records stay");
    }
}
