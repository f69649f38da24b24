//! A full disk under `cosignatures.redb`: the put fails with a retryable I/O error, and once space
//! is back the same store (no restart) accepts and serves the line, because the handle that hit
//! the fault is dropped and the file reopened (`reopen.rs`, the rule every embedded file follows).

use keyfold_conformance::cosignatures::line;
use keyfold_core::Epoch;
use keyfold_epoch::{CosignaturePut, CosignatureStore};
use keyfold_redb::RedbCosignatures;
use keyfold_redb::faults::{FaultPlan, open_faulty_database};
use std::path::Path;
use std::sync::Arc;

#[test]
fn a_full_disk_is_retryable_and_the_store_recovers_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let faulty = Arc::clone(&plan);
    let opener = Arc::new(move |path: &Path| open_faulty_database(path, &faulty));
    let store = RedbCosignatures::open_with(&dir.path().join("cosignatures.redb"), opener).unwrap();
    let first = line("witness.example/w1", 100, 1);
    assert_eq!(store.put(Epoch(1), "witness.example/w1", &first).unwrap(), CosignaturePut::Stored);

    plan.set_disk_full(true);
    let second = line("witness.example/w1", 200, 2);
    let err = store.put(Epoch(2), "witness.example/w1", &second).unwrap_err();
    assert!(err.is_retryable(), "a full disk is retryable: {err}");
    assert!(plan.injected() > 0, "the fault fired");

    plan.set_disk_full(false);
    assert_eq!(store.put(Epoch(2), "witness.example/w1", &second).unwrap(), CosignaturePut::Stored);
    assert_eq!(store.get(Epoch(2)).unwrap().get("witness.example/w1"), Some(&second));
    assert_eq!(store.get(Epoch(1)).unwrap().get("witness.example/w1"), Some(&first));
}
