//! One conformance suite per store trait, each case listed once, run against every backend: the
//! memory stores (this crate's tests), redb (`storage/redb/tests/conformance.rs`) and FoundationDB
//! (`storage/fdb/tests/fdb_conformance.rs`, a runner over [`tree::cases`] and the others, since
//! FoundationDB's network starts once per process).
//!
//! * [`tree`], for [`keyfold_map::TreeStore`], against a reference map.
//! * [`retention`], for [`keyfold_map::TreeStore::prune`] (memory and redb).
//! * [`queue`], for [`keyfold_ingest::Queue`].
//! * [`heads`], for [`keyfold_epoch::HeadStore`].
//! * [`index`], for [`keyfold_epoch::OutcomeIndex`].
//! * [`cosignatures`], for [`keyfold_epoch::CosignatureStore`].
//!
//! A backend's test file instantiates a suite with its macro (`tree_conformance_tests!(make)`
//! and so on), one suite per module.

pub mod cosignatures;
pub mod heads;
pub mod index;
pub mod queue;
pub mod retention;
pub mod tree;

/// A suite's cases as `#[test]` functions (`$module::$case($make)`), from its one list.
#[doc(hidden)]
#[macro_export]
macro_rules! __case_tests {
    ($module:ident, $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::$module::$case($make);
            }
        )*
    };
}

/// A suite's cases as `(name, function)` pairs for the store type `$store`, from its one list.
#[doc(hidden)]
#[macro_export]
macro_rules! __case_list {
    ($module:ident, $store:ident; $($case:ident),* $(,)?) => {
        vec![$((concat!(stringify!($module), "_conformance_", stringify!($case)), $crate::$module::$case::<$store> as _)),*]
    };
}
