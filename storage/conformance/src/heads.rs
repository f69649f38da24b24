//! The head store suite: the same cases against every [`HeadStore`].

use keyfold_core::{Epoch, Position};
use keyfold_epoch::{EpochError, HeadStore};

/// A conformance case, run against the empty store its argument makes.
pub type Case<H> = (&'static str, fn(fn() -> H));

/// Every case of the suite, listed once.
#[doc(hidden)]
#[macro_export]
macro_rules! __heads_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! { $($args)*; compare_and_set }
    };
}

/// Every case, for harnesses that cannot use `#[test]`.
pub fn cases<H: HeadStore>() -> Vec<Case<H>> {
    crate::__heads_cases!(__case_list!(heads, H))
}

/// Instantiates every case as a `#[test]` for the store made by `$make` (`fn() -> H`).
#[macro_export]
macro_rules! heads_conformance_tests {
    ($make:expr) => {
        $crate::__heads_cases!(__case_tests!(heads, $make));
    };
}

/// Heads chain one epoch at a time; a second head for an epoch, a gap, or a head before the
/// genesis is refused and changes nothing; the cursor moves with the head.
pub fn compare_and_set<H: HeadStore>(make: fn() -> H) {
    let h = make();
    assert_eq!(h.latest().unwrap(), None);
    assert_eq!(h.cursor().unwrap(), Position(0));
    assert!(matches!(h.commit(Epoch(1), "one", Position(3)), Err(EpochError::OutOfOrder { .. })), "gap before genesis");
    h.commit(Epoch(0), "genesis", Position(0)).unwrap();
    h.commit(Epoch(1), "one", Position(7)).unwrap();
    let again = h.commit(Epoch(1), "other", Position(9));
    assert!(matches!(again, Err(EpochError::OutOfOrder { .. })), "never a second head for epoch 1");
    assert!(matches!(h.commit(Epoch(3), "three", Position(9)), Err(EpochError::OutOfOrder { .. })), "gap");
    assert_eq!(h.latest().unwrap(), Some((Epoch(1), "one".to_owned())));
    assert_eq!(h.get(Epoch(0)).unwrap().as_deref(), Some("genesis"));
    assert_eq!(h.get(Epoch(1)).unwrap().as_deref(), Some("one"));
    assert_eq!(h.get(Epoch(2)).unwrap(), None);
    assert_eq!(h.cursor().unwrap(), Position(7), "a refused commit leaves the cursor");
}
