//! The witness's state is its redb file: a reopened witness resumes from the persisted size and
//! never cosigns against a rolled-back state.

mod common;

use common::{ORIGIN, TestLog, open_witness};
use keyfold_witness::WitnessError;

#[test]
fn a_reopened_witness_resumes_from_the_persisted_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("witness.redb");
    let mut log = TestLog::new(ORIGIN, 1, "main", 3);
    let witness = open_witness(&path, vec![log.log_key()]);
    witness.add_checkpoint(log.body(0, 3).as_bytes(), 1_000).unwrap();
    log.grow_to(7);
    witness.add_checkpoint(log.body(3, 7).as_bytes(), 1_001).unwrap();
    let fork = TestLog::new(ORIGIN, 1, "fork", 7);
    assert!(matches!(
        witness.add_checkpoint(fork.body(7, 7).as_bytes(), 1_002),
        Err(WitnessError::RootConflict { .. })
    ));
    let latest = witness.latest(ORIGIN).unwrap().unwrap();
    drop(witness);

    let witness = open_witness(&path, vec![log.log_key()]);
    assert_eq!(witness.latest(ORIGIN).unwrap().as_deref(), Some(latest.as_str()));
    assert_eq!(witness.store().evidence_counts().unwrap().recorded, 1, "evidence survives too");
    // A log that was told 3 before the restart is told 7 after it.
    let err = witness.add_checkpoint(log.body(3, 7).as_bytes(), 1_003).unwrap_err();
    assert_eq!((err.status().as_u16(), err.latest_size()), (409, Some(7)), "{err}");
    let err = witness.add_checkpoint(log.body(0, 7).as_bytes(), 1_003).unwrap_err();
    assert_eq!(err.latest_size(), Some(7), "{err}");
    log.grow_to(10);
    witness.add_checkpoint(log.body(7, 10).as_bytes(), 1_004).unwrap();
    assert!(witness.latest(ORIGIN).unwrap().unwrap().starts_with(&log.note(10)));
}
