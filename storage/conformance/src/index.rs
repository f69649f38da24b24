//! The outcome index suite: the same cases against every [`OutcomeIndex`].

use keyfold_archive::{ArchiveOutcome, ArchiveRow};
use keyfold_core::{Epoch, Hash, Index, MutationId, Version};
use keyfold_epoch::{HistoryAfter, KeyVersion, OutcomeIndex};

/// A conformance case, run against the empty index its argument makes.
pub type Case<I> = (&'static str, fn(fn() -> I));

/// Every case of the suite, listed once.
#[doc(hidden)]
#[macro_export]
macro_rules! __index_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! { $($args)*; outcomes_and_history }
    };
}

/// Every case, for harnesses that cannot use `#[test]`.
pub fn cases<I: OutcomeIndex>() -> Vec<Case<I>> {
    crate::__index_cases!(__case_list!(index, I))
}

/// Instantiates every case as a `#[test]` for the index made by `$make` (`fn() -> I`).
#[macro_export]
macro_rules! index_conformance_tests {
    ($make:expr) => {
        $crate::__index_cases!(__case_tests!(index, $make));
    };
}

/// Epochs are indexed in order (a retry is a no-op); each id's latest appearance is kept; a key's
/// applied versions page by epoch and by version.
pub fn outcomes_and_history<I: OutcomeIndex>(make: fn() -> I) {
    check(&make());
}

fn row(
    position: u64,
    id: u8,
    key: u8,
    outcome: ArchiveOutcome,
    new_version: Option<u64>,
    tombstone: bool,
) -> ArchiveRow {
    ArchiveRow {
        position,
        mutation_id: Hash([id; 32]),
        key_index: Some(Hash([key; 32])),
        key: Some(vec![key]),
        value: (!tombstone).then(|| vec![1]),
        tombstone,
        owner_signature: None,
        expected_version: new_version.map_or(7, |v| v - 1),
        new_version,
        outcome,
        reason: (outcome == ArchiveOutcome::Rejected).then(|| "version_mismatch".into()),
        leaf_hash: None,
    }
}

fn check(index: &dyn OutcomeIndex) {
    assert_eq!(index.indexed_through().unwrap(), Epoch(0));
    let e1 =
        [row(1, 1, 10, ArchiveOutcome::Applied, Some(1), false), row(2, 2, 11, ArchiveOutcome::Rejected, None, false)];
    assert!(index.record(Epoch(2), &e1).is_err(), "epochs are indexed in order");
    index.record(Epoch(1), &e1).unwrap();
    index.record(Epoch(1), &e1).unwrap(); // a retry is a no-op
    let e2 =
        [row(4, 3, 10, ArchiveOutcome::Applied, Some(2), true), row(5, 1, 10, ArchiveOutcome::Duplicate, None, false)];
    index.record(Epoch(2), &e2).unwrap();
    assert_eq!(index.indexed_through().unwrap(), Epoch(2));
    let rejected = index.outcome(&MutationId(Hash([2; 32]))).unwrap().unwrap();
    assert_eq!((rejected.epoch, rejected.outcome, rejected.position), (Epoch(1), ArchiveOutcome::Rejected, 2));
    assert_eq!(rejected.reason.as_deref(), Some("version_mismatch"));
    let again = index.outcome(&MutationId(Hash([1; 32]))).unwrap().unwrap();
    assert_eq!((again.epoch, again.outcome), (Epoch(2), ArchiveOutcome::Duplicate), "the latest appearance");
    assert_eq!(index.outcome(&MutationId(Hash([9; 32]))).unwrap(), None);
    let all = HistoryAfter::default();
    let history = index.history(&Index([10; 32]), all, 10).unwrap();
    assert_eq!(
        history,
        [
            KeyVersion { epoch: Epoch(1), version: Version(1), value: Some(vec![1]) },
            KeyVersion { epoch: Epoch(2), version: Version(2), value: None }
        ]
    );
    let after_epoch_1 = HistoryAfter { epoch: Epoch(1), version: Version(0) };
    assert_eq!(index.history(&Index([10; 32]), after_epoch_1, 10).unwrap(), history[1..]);
    assert_eq!(index.history(&Index([10; 32]), all, 1).unwrap(), history[..1]);
    assert!(index.history(&Index([11; 32]), all, 10).unwrap().is_empty(), "rejections change nothing");
    let last = HistoryAfter { epoch: Epoch(u64::MAX), version: Version(0) };
    assert!(index.history(&Index([10; 32]), last, 10).unwrap().is_empty(), "no epoch after the last");
    versions_within_one_epoch(index);
}

/// Many versions of one key in one epoch: a version cursor pages through them one by one.
fn versions_within_one_epoch(index: &dyn OutcomeIndex) {
    let rows: Vec<ArchiveRow> = (0..40)
        .map(|i| row(100 + 3 * i, 50 + u8::try_from(i).unwrap(), 12, ArchiveOutcome::Applied, Some(i + 1), false))
        .collect();
    index.record(Epoch(3), &rows).unwrap();
    let key = Index([12; 32]);
    for page in [1, 3, 7, 40] {
        let (mut seen, mut cursor) = (Vec::new(), HistoryAfter::default());
        loop {
            let versions = index.history(&key, cursor, page).unwrap();
            let Some(last) = versions.last() else { break };
            cursor.version = last.version;
            seen.extend(versions.iter().map(|v| (v.epoch.0, v.version.0)));
        }
        assert_eq!(seen, (1..=40).map(|v| (3, v)).collect::<Vec<_>>(), "pages of {page}");
    }
    let beyond = HistoryAfter { epoch: Epoch(0), version: Version(u64::MAX) };
    assert!(index.history(&key, beyond, 10).unwrap().is_empty());
}
