//! A client's view of the log of heads: it moves only through verified consistency proofs, and a
//! rollback, a fork or a frozen directory is reported with the signed checkpoints as evidence.

use keyfold_core::{Epoch, Hash, HashSuite, Head, HeadCounts, LogTree, SigningKey};
use keyfold_verify::{View, ViewError};

const ORIGIN: &str = "example.com/keyfold";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A directory's log: `n` heads, head i with time `1000 * (i + 1)` s and map root `[fill; 32]`.
fn log(n: u64, fill: u8) -> (LogTree, Vec<String>) {
    let mut tree = LogTree::new();
    let mut notes = Vec::new();
    for i in 0..n {
        let head = Head {
            origin: ORIGIN.into(),
            suite: HashSuite::Blake3,
            epoch: Epoch(i),
            root: Hash([fill; 32]),
            previous: Hash::default(),
            archive: Hash::default(),
            time_ms: 1_000_000 * (i + 1),
            counts: HeadCounts::default(),
            next_key: None,
        };
        tree.push(head.leaf_hash());
        notes.push(head.sign(&key(), tree.root(i + 1).unwrap()));
    }
    (tree, notes)
}

fn view(note: &str) -> View {
    View::trust(note, ORIGIN, &key().verifying_key().to_bytes()).unwrap()
}

#[test]
fn a_view_moves_forward_only_through_consistency_proofs() {
    let (tree, notes) = log(9, 1);
    let held = view(&notes[2]);
    for (new, note) in notes.iter().enumerate().skip(3) {
        let size = new as u64 + 1;
        let proof = tree.consistency_proof(3, size).unwrap();
        let next = held.advance(&view(note), Some(&proof)).unwrap();
        assert_eq!(next.size(), size);
        let mut bad = proof.clone();
        bad[0] = Hash([0xee; 32]);
        let err = held.advance(&view(note), Some(&bad)).unwrap_err();
        assert!(matches!(err, ViewError::Fork { .. }), "{err}");
        let err = held.advance(&view(note), None).unwrap_err();
        assert!(matches!(err, ViewError::MissingProof { held: 3, .. }), "{err}");
    }
    assert_eq!(held.advance(&view(&notes[2]), None).unwrap(), held, "the same checkpoint again");
}

#[test]
fn rollback_and_fork_carry_both_checkpoints() {
    let (_, honest) = log(6, 1);
    let (forked_tree, forked) = log(6, 2); // same key, other map roots: a copied directory
    let held = view(&honest[4]);
    let err = held.advance(&view(&honest[2]), None).unwrap_err();
    assert!(matches!(err, ViewError::Rollback { held: 5, got: 3, .. }), "{err}");
    assert_eq!(err.evidence(), Some((honest[4].as_str(), honest[2].as_str())));

    let err = held.advance(&view(&forked[4]), Some(&[])).unwrap_err();
    assert!(matches!(err, ViewError::Fork { .. }) && err.to_string().contains("size 5"), "{err}");
    assert_eq!(err.evidence(), Some((honest[4].as_str(), forked[4].as_str())));
    // The fork's own proof to its next checkpoint does not connect to the honest view.
    let proof = forked_tree.consistency_proof(5, 6).unwrap();
    let err = held.advance(&view(&forked[5]), Some(&proof)).unwrap_err();
    assert!(matches!(err, ViewError::Fork { .. }), "{err}");
}

#[test]
fn an_old_checkpoint_is_a_freeze_and_a_bad_note_is_refused() {
    let (_, notes) = log(3, 1);
    let latest = view(&notes[2]); // time 3_000_000 ms
    latest.check_fresh(3_000_000 + 60_000, 60).unwrap();
    let err = latest.check_fresh(3_000_000 + 61_000, 60).unwrap_err();
    assert!(matches!(err, ViewError::Freeze { age_secs: 61, max_age_secs: 60 }), "{err}");
    let tampered = notes[2].replacen("epoch 2", "epoch 7", 1);
    assert!(View::trust(&tampered, ORIGIN, &key().verifying_key().to_bytes()).is_err());
}
