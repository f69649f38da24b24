//! The queue conformance suite: the same cases against every [`Queue`] implementation.
//! Instantiate with [`queue_conformance_tests!`](crate::queue_conformance_tests), giving a
//! function that makes a fresh, empty queue with a depth bound and a byte bound.

use keyfold_core::{Epoch, Mutation, Version};
use keyfold_ingest::{Entry, Marker, Position, Queue, QueueError, Slot, mutation_bytes};
use std::collections::BTreeSet;

/// A conformance case, run against the queue its argument makes.
pub type Case<Q> = (&'static str, fn(Make<Q>));

/// Makes a fresh, empty queue bounded by `max_depth` mutations and `max_bytes` bytes of them.
pub type Make<Q> = fn(u64, u64) -> Q;

/// Every case of the suite, listed once.
#[doc(hidden)]
#[macro_export]
macro_rules! __queue_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! { $($args)*; positions_and_ids, markers_and_reads, remove_through, back_pressure,
            concurrent_appends, byte_bound, last_marker, bounded_reads }
    };
}

/// Every case, for harnesses that cannot use `#[test]` (FoundationDB's network starts once per
/// process).
pub fn cases<Q: Queue>() -> Vec<Case<Q>> {
    crate::__queue_cases!(__case_list!(queue, Q))
}

/// Instantiates every case as a `#[test]` for the queue made by `$make` (an expression of type
/// [`Make<Q>`]).
#[macro_export]
macro_rules! queue_conformance_tests {
    ($make:expr) => {
        $crate::__queue_cases!(__case_tests!(queue, $make));
    };
}

fn mutation(i: u32) -> Mutation {
    Mutation {
        key: format!("user{i}").into_bytes(),
        value: if i.is_multiple_of(5) { None } else { Some(i.to_be_bytes().to_vec()) },
        expected_version: Version(u64::from(i % 3)),
        owner_signature: None,
    }
}

pub fn positions_and_ids<Q: Queue>(make: Make<Q>) {
    let q = make(1000, u64::MAX);
    let batch: Vec<Mutation> = (0..10).map(mutation).collect();
    let receipts = q.append(batch.clone()).unwrap();
    assert_eq!(receipts.len(), 10);
    for (r, m) in receipts.iter().zip(&batch) {
        assert_eq!(r.id, m.id(q.suite()), "receipt id is the mutation id");
    }
    assert!(receipts.windows(2).all(|w| w[0].slot < w[1].slot), "slots increase in batch order");
    if let Slot::Position(first) = receipts[0].slot {
        // Queues that number at append use consecutive positions from 1.
        assert!(first.0 >= 1);
        let consecutive =
            receipts.iter().enumerate().all(|(i, r)| r.slot == Slot::Position(Position(first.0 + i as u64)));
        assert!(consecutive, "consecutive positions");
    }
    let more = q.append(vec![mutation(10)]).unwrap();
    assert!(more[0].slot > receipts[9].slot);
    assert_eq!(q.depth(), 11);
    let read = q.read(Position(0), 100).unwrap();
    let ids: Vec<_> = read.iter().map(|(_, e)| mutation_id(&q, e)).collect();
    let acknowledged: Vec<_> = receipts.iter().chain(&more).map(|r| Some(r.id)).collect();
    assert_eq!(ids, acknowledged, "every acknowledged mutation reads back, in append order");
    if let Slot::Position(_) = receipts[0].slot {
        let positions: Vec<_> = read.iter().map(|(p, _)| Slot::Position(*p)).collect();
        let slots: Vec<_> = receipts.iter().chain(&more).map(|r| r.slot).collect();
        assert_eq!(positions, slots, "a receipt's position is where its mutation reads back");
    }
}

fn mutation_id<Q: Queue>(q: &Q, entry: &Entry) -> Option<keyfold_core::MutationId> {
    match entry {
        Entry::Mutation(m) => Some(m.id(q.suite())),
        Entry::Marker(_) => None,
    }
}

pub fn markers_and_reads<Q: Queue>(make: Make<Q>) {
    let q = make(1000, u64::MAX);
    q.append((0..3).map(mutation).collect()).unwrap();
    let marker = Marker { epoch: Epoch(1), time_ms: 1_000, through: Position(3) };
    let at = q.append_marker(marker).unwrap();
    q.append((3..5).map(mutation).collect()).unwrap();
    let all = q.read(Position(0), 100).unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "read returns positions in order");
    assert_eq!(all[3], (at, Entry::Marker(marker)));
    let expected: Vec<Entry> = (0..5).map(|i| Entry::Mutation(mutation(i))).collect();
    let got: Vec<Entry> = all.iter().filter(|(_, e)| matches!(e, Entry::Mutation(_))).map(|(_, e)| e.clone()).collect();
    assert_eq!(got, expected, "mutations come back byte-for-byte, in order");
    let tail = q.read(at, 2).unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].0, at);
    assert_eq!(q.depth(), 5, "markers do not count towards depth");
}

pub fn remove_through<Q: Queue>(make: Make<Q>) {
    let q = make(1000, u64::MAX);
    q.append((0..6).map(mutation).collect()).unwrap();
    let marker = q.append_marker(Marker { epoch: Epoch(1), time_ms: 7, through: Position(6) }).unwrap();
    let positions: Vec<Position> = q.read(Position(0), 100).unwrap().into_iter().map(|(p, _)| p).collect();
    assert_eq!(positions.len(), 7);
    assert_eq!(q.remove_through(positions[3]).unwrap(), 4);
    assert_eq!(q.depth(), 2);
    let left = q.read(Position(0), 100).unwrap();
    assert_eq!(left.first().map(|(p, _)| *p), Some(positions[4]));
    assert_eq!(q.remove_through(marker).unwrap(), 2);
    assert!(q.read(Position(0), 100).unwrap().is_empty());
    assert_eq!(q.remove_through(marker).unwrap(), 0, "removing again is a no-op");
}

pub fn back_pressure<Q: Queue>(make: Make<Q>) {
    let q = make(5, u64::MAX);
    q.append((0..3).map(mutation).collect()).unwrap();
    let err = q.append((3..6).map(mutation).collect()).unwrap_err();
    assert!(matches!(err, QueueError::Full { depth: 3, max: 5, .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(q.read(Position(0), 100).unwrap().len(), 3, "a refused batch leaves nothing behind");
    let marker = q.append_marker(Marker { epoch: Epoch(1), time_ms: 1, through: Position(3) }).unwrap();
    q.append((3..5).map(mutation).collect()).unwrap();
    assert!(q.append(vec![mutation(9)]).is_err());
    assert_eq!(q.remove_through(marker).unwrap(), 3);
    q.append(vec![mutation(9)]).unwrap();
    assert_eq!(q.depth(), 3);
}

/// 64 threads append single mutations concurrently: every append gets a distinct slot and every
/// acknowledged mutation reads back exactly once.
pub fn concurrent_appends<Q: Queue>(make: Make<Q>) {
    let q = make(1_000_000, u64::MAX);
    let threads = 64u32;
    let per_thread = 8u32;
    let receipts: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let q = &q;
                s.spawn(move || {
                    (0..per_thread).map(|i| q.append(vec![mutation(t * 1000 + i)]).unwrap()[0]).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let slots: BTreeSet<Slot> = receipts.iter().map(|r| r.slot).collect();
    assert_eq!(slots.len(), (threads * per_thread) as usize, "slots are unique");
    let stored = q.read(Position(0), usize::MAX).unwrap();
    assert_eq!(stored.len(), slots.len());
    assert!(stored.windows(2).all(|w| w[0].0 < w[1].0), "distinct positions, in order");
    let mut stored_ids: Vec<_> =
        stored.iter().map(|(_, e)| mutation_id(&q, e).expect("no marker was appended")).collect();
    let mut acknowledged: Vec<_> = receipts.iter().map(|r| r.id).collect();
    stored_ids.sort_unstable();
    acknowledged.sort_unstable();
    assert_eq!(stored_ids, acknowledged, "every acknowledged mutation is stored exactly once");
    // In slot order, the stored order: receipts order like the entries they name.
    let mut by_slot = receipts.clone();
    by_slot.sort_by_key(|r| r.slot);
    let in_order: Vec<_> = stored.iter().map(|(_, e)| mutation_id(&q, e).expect("mutation")).collect();
    assert_eq!(by_slot.iter().map(|r| r.id).collect::<Vec<_>>(), in_order);
}

/// A mutation of exactly `bytes` bytes ([`mutation_bytes`]), `bytes >= 23`.
fn sized(i: u32, bytes: u64) -> Mutation {
    let mut m = Mutation {
        key: format!("k{i:05}").into_bytes(),
        value: Some(Vec::new()),
        expected_version: Version(0),
        owner_signature: None,
    };
    let value_len = bytes - mutation_bytes(&m);
    m.value = Some(vec![u8::try_from(i % 251).expect("< 251"); usize::try_from(value_len).expect("fits")]);
    assert_eq!(mutation_bytes(&m), bytes);
    m
}

/// Appends beyond the byte bound are refused as [`QueueError::Full`] (retryable, nothing left
/// behind), whatever the depth; removing what an epoch consumed makes room again.
pub fn byte_bound<Q: Queue>(make: Make<Q>) {
    let q = make(1000, 1000);
    q.append(vec![sized(0, 400), sized(1, 400)]).unwrap();
    assert_eq!((q.depth(), q.pending_bytes()), (2, 800));
    let err = q.append(vec![sized(2, 150), sized(3, 51)]).unwrap_err();
    assert!(matches!(err, QueueError::Full { depth: 2, bytes: 800, max_bytes: 1000, .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("1000 bytes"), "{err}");
    assert_eq!(q.read(Position(0), 100).unwrap().len(), 2, "a refused batch leaves nothing behind");
    assert_eq!(q.pending_bytes(), 800);
    q.append(vec![sized(2, 200)]).unwrap(); // exactly at the bound
    assert!(q.append(vec![sized(3, 30)]).is_err());
    let first = q.read(Position(0), 1).unwrap()[0].0;
    assert_eq!(q.remove_through(first).unwrap(), 1);
    assert_eq!((q.depth(), q.pending_bytes()), (2, 600));
    q.append(vec![sized(3, 400)]).unwrap();
    assert_eq!(q.pending_bytes(), 1000);
}

/// The last marker is found without reading the queue, with its `through`, even after its entry
/// was removed.
pub fn last_marker<Q: Queue>(make: Make<Q>) {
    let q = make(1000, u64::MAX);
    assert_eq!(q.last_marker().unwrap(), None);
    q.append((0..4).map(mutation).collect()).unwrap();
    let first = Marker { epoch: Epoch(1), time_ms: 10, through: Position(2) };
    let at = q.append_marker(first).unwrap();
    assert_eq!(q.last_marker().unwrap(), Some((at, first)));
    q.append((4..6).map(mutation).collect()).unwrap();
    let second = Marker { epoch: Epoch(2), time_ms: 20, through: at };
    let at2 = q.append_marker(second).unwrap();
    assert!(at2 > at);
    assert_eq!(q.last_marker().unwrap(), Some((at2, second)));
    q.remove_through(at2).unwrap();
    assert_eq!(q.last_marker().unwrap(), Some((at2, second)), "kept after its entry is removed");
}

/// Reads stop at the byte budget, but always return the first entry.
pub fn bounded_reads<Q: Queue>(make: Make<Q>) {
    let q = make(1000, u64::MAX);
    q.append((0..5).map(|i| sized(i, 100)).collect()).unwrap();
    let record = 100 + 33; // tag and id in front of each mutation's encoding
    assert_eq!(q.read_bounded(Position(0), 100, 3 * record).unwrap().len(), 3);
    assert_eq!(q.read_bounded(Position(0), 100, 3 * record - 1).unwrap().len(), 2);
    assert_eq!(q.read_bounded(Position(0), 100, 1).unwrap().len(), 1, "the first entry always comes");
    assert_eq!(q.read_bounded(Position(0), 2, u64::MAX).unwrap().len(), 2);
    let all = q.read(Position(0), 100).unwrap();
    let expected: Vec<Entry> = (0..5).map(|i| Entry::Mutation(sized(i, 100))).collect();
    assert_eq!(all.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), expected);
}
