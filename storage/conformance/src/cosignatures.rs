//! The cosignature store suite: the same cases against every [`CosignatureStore`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::Epoch;
use keyfold_epoch::{CosignaturePut, CosignatureStore, cosignature_time};

/// A conformance case, run against the empty store its argument makes.
pub type Case<C> = (&'static str, fn(fn() -> C));

/// Every case of the suite, listed once.
#[doc(hidden)]
#[macro_export]
macro_rules! __cosignatures_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! { $($args)*; one_line_per_witness_newest_wins }
    };
}

/// Every case, for harnesses that cannot use `#[test]`.
pub fn cases<C: CosignatureStore>() -> Vec<Case<C>> {
    crate::__cosignatures_cases!(__case_list!(cosignatures, C))
}

/// Instantiates every case as a `#[test]` for the store made by `$make` (`fn() -> C`).
#[macro_export]
macro_rules! cosignatures_conformance_tests {
    ($make:expr) => {
        $crate::__cosignatures_cases!(__case_tests!(cosignatures, $make));
    };
}

/// One line per (epoch, witness): a later time replaces it, an earlier one is kept out, the same
/// line again changes nothing.
pub fn one_line_per_witness_newest_wins<C: CosignatureStore>(make: fn() -> C) {
    check(&make());
}

/// A cosignature-shaped line of `name` at `time` (the signature bytes do not matter here).
pub fn line(name: &str, time: u64, fill: u8) -> String {
    let mut blob = vec![1, 2, 3, 4];
    blob.extend_from_slice(&time.to_be_bytes());
    blob.extend_from_slice(&[fill; 64]);
    format!("\u{2014} {name} {}\n", B64.encode(blob))
}

fn check(store: &dyn CosignatureStore) {
    assert!(store.get(Epoch(1)).unwrap().is_empty());
    assert_eq!(store.put(Epoch(1), "b", &line("b", 10, 1)).unwrap(), CosignaturePut::Stored);
    store.put(Epoch(1), "a", &line("a", 10, 1)).unwrap();
    store.put(Epoch(2), "a", &line("a", 20, 1)).unwrap();
    assert_eq!(store.put(Epoch(1), "b", &line("b", 11, 2)).unwrap(), CosignaturePut::Stored, "newer");
    let kept = store.put(Epoch(1), "b", &line("b", 9, 3)).unwrap();
    assert_eq!(kept, CosignaturePut::Kept { stored_time_secs: 11, identical: false }, "older");
    let same = store.put(Epoch(1), "b", &line("b", 11, 2)).unwrap();
    assert_eq!(same, CosignaturePut::Kept { stored_time_secs: 11, identical: true });
    let one = store.get(Epoch(1)).unwrap();
    assert_eq!(one.into_iter().collect::<Vec<_>>(), [("a".into(), line("a", 10, 1)), ("b".into(), line("b", 11, 2))]);
    assert_eq!(store.get(Epoch(2)).unwrap().len(), 1);
    assert!(store.get(Epoch(0)).unwrap().is_empty());
    assert_eq!(cosignature_time(&line("x", u64::MAX, 0)), Some(u64::MAX));
    assert_eq!(cosignature_time("garbage"), None);
}
