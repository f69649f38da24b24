//! The spec's race: concurrent add-checkpoint requests from the same old size. The check of the
//! old size and the update are one redb write transaction, so exactly one wins and the stored
//! size never goes backwards.

mod common;

use common::{ORIGIN, TestLog, open_witness};
use keyfold_core::{Checkpoint, split_note};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

const WRITERS: u64 = 12;
const ROUNDS: u64 = 6;
/// Round r offers sizes old + 1 + r ..= old + WRITERS + r, so the log must reach the largest
/// size the winners can add up to: 1 + the sum over rounds of (WRITERS + r).
const LOG_SIZE: u64 = 1 + ROUNDS * WRITERS + ROUNDS * (ROUNDS - 1) / 2;

fn stored_size(witness: &keyfold_witness::Witness) -> u64 {
    witness.latest(ORIGIN).unwrap().map_or(0, |note| Checkpoint::parse(split_note(&note).unwrap().0).unwrap().size)
}

#[test]
fn concurrent_adds_from_one_old_size_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, "main", LOG_SIZE);
    let witness = open_witness(&dir.path().join("witness.redb"), vec![log.log_key()]);
    witness.add_checkpoint(log.body(0, 1).as_bytes(), 1).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (witness, done) = (witness.clone(), done.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            while !done.load(Ordering::Relaxed) {
                let size = stored_size(&witness);
                assert!(size >= last, "the stored size went back from {last} to {size}");
                last = size;
            }
        })
    };
    let mut old = 1;
    for round in 0..ROUNDS {
        // Every writer starts from the same old size, each to another larger size.
        let bodies: Vec<(u64, String)> =
            (1..=WRITERS).map(|k| (old + k + round, log.body(old, old + k + round))).collect();
        let barrier = Arc::new(Barrier::new(bodies.len()));
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|(size, body)| {
                let (witness, barrier) = (witness.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (size, witness.add_checkpoint(body.as_bytes(), 2))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<u64> = results.iter().filter(|(_, r)| r.is_ok()).map(|(size, _)| *size).collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let winner = winners[0];
        for (size, result) in &results {
            if let Err(e) = result {
                assert_eq!(e.latest_size(), Some(winner), "size {size} lost with {e}, not a 409 naming the winner");
            }
        }
        assert_eq!(stored_size(&witness), winner, "round {round}");
        old = winner;
    }
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
}
