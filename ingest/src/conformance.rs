//! The queue conformance suite: the same cases against every [`Queue`] implementation.
//! Instantiate with [`queue_conformance_tests!`](crate::queue_conformance_tests), giving a
//! function that makes a fresh, empty queue with a depth bound.

use crate::error::QueueError;
use crate::queue::{Entry, Marker, Position, Queue};
use keyfold_core::{Epoch, Mutation, Version};
use std::collections::BTreeSet;

/// Instantiates every queue conformance case as a `#[test]` for the queue made by `$make`
/// (an expression of type `fn(u64) -> Q`, the argument being the depth bound).
#[macro_export]
macro_rules! queue_conformance_tests {
    ($make:expr) => {
        #[test]
        fn queue_conformance_positions_and_ids() {
            $crate::conformance::positions_and_ids($make);
        }
        #[test]
        fn queue_conformance_markers_and_reads() {
            $crate::conformance::markers_and_reads($make);
        }
        #[test]
        fn queue_conformance_remove_through() {
            $crate::conformance::remove_through($make);
        }
        #[test]
        fn queue_conformance_back_pressure() {
            $crate::conformance::back_pressure($make);
        }
        #[test]
        fn queue_conformance_concurrent_appends() {
            $crate::conformance::concurrent_appends($make);
        }
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

pub fn positions_and_ids<Q: Queue>(make: fn(u64) -> Q) {
    let q = make(1000);
    let batch: Vec<Mutation> = (0..10).map(mutation).collect();
    let receipts = q.append(batch.clone()).unwrap();
    assert_eq!(receipts.len(), 10);
    for (r, m) in receipts.iter().zip(&batch) {
        assert_eq!(r.id, m.id(q.suite()), "receipt id is the mutation id");
    }
    assert!(receipts.windows(2).all(|w| w[1].position.0 == w[0].position.0 + 1), "consecutive positions");
    assert!(receipts[0].position.0 >= 1);
    let more = q.append(vec![mutation(10)]).unwrap();
    assert!(more[0].position > receipts[9].position);
    assert_eq!(q.depth(), 11);
}

pub fn markers_and_reads<Q: Queue>(make: fn(u64) -> Q) {
    let q = make(1000);
    q.append((0..3).map(mutation).collect()).unwrap();
    let marker = Marker { epoch: Epoch(1), time_ms: 1_000 };
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

pub fn remove_through<Q: Queue>(make: fn(u64) -> Q) {
    let q = make(1000);
    let receipts = q.append((0..6).map(mutation).collect()).unwrap();
    let marker = q.append_marker(Marker { epoch: Epoch(1), time_ms: 7 }).unwrap();
    assert_eq!(q.remove_through(receipts[3].position).unwrap(), 4);
    assert_eq!(q.depth(), 2);
    let left = q.read(Position(0), 100).unwrap();
    assert_eq!(left.first().map(|(p, _)| *p), Some(receipts[4].position));
    assert_eq!(q.remove_through(marker).unwrap(), 2);
    assert!(q.read(Position(0), 100).unwrap().is_empty());
    assert_eq!(q.remove_through(marker).unwrap(), 0, "removing again is a no-op");
}

pub fn back_pressure<Q: Queue>(make: fn(u64) -> Q) {
    let q = make(5);
    let first = q.append((0..3).map(mutation).collect()).unwrap();
    let err = q.append((3..6).map(mutation).collect()).unwrap_err();
    assert!(matches!(err, QueueError::Full { depth: 3, max: 5 }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(q.read(Position(0), 100).unwrap().len(), 3, "a refused batch leaves nothing behind");
    q.append_marker(Marker { epoch: Epoch(1), time_ms: 1 }).unwrap();
    q.append((3..5).map(mutation).collect()).unwrap();
    assert!(q.append(vec![mutation(9)]).is_err());
    q.remove_through(first[2].position).unwrap();
    q.append(vec![mutation(9)]).unwrap();
    assert_eq!(q.depth(), 3);
}

/// 64 threads append single mutations concurrently: every append gets a distinct position and
/// every acknowledged mutation reads back.
pub fn concurrent_appends<Q: Queue>(make: fn(u64) -> Q) {
    let q = make(1_000_000);
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
    let positions: BTreeSet<Position> = receipts.iter().map(|r| r.position).collect();
    assert_eq!(positions.len(), (threads * per_thread) as usize, "positions are unique");
    let stored = q.read(Position(0), usize::MAX).unwrap();
    assert_eq!(stored.len(), positions.len());
    for r in &receipts {
        let (_, entry) = stored.iter().find(|(p, _)| *p == r.position).expect("acknowledged entry is stored");
        match entry {
            Entry::Mutation(m) => assert_eq!(m.id(q.suite()), r.id),
            Entry::Marker(_) => panic!("a receipt points at a marker"),
        }
    }
}
