//! The FoundationDB backend (cargo feature `fdb`, off by default): the mutation queue, the shard
//! store, the head store and the epoch-writer lease, all in one FoundationDB cluster, so frontends
//! on many machines append to one queue and the tree outgrows one disk.
//!
//! * [`FdbQueue`]: appends are *staged* under versionstamped keys (`SET_VERSIONSTAMPED_KEY`), so
//!   concurrent frontends never conflict and a receipt carries its versionstamp. The epoch writer
//!   *sequences* staged entries into the numbered log in versionstamp order, up to a cut taken at a
//!   read version; the epoch consumes a capped log range `(cursor, through]` that its marker records.
//! * [`FdbStore`]: the same epoch-prefixed, immutable page records as the embedded store, written
//!   in chunks under FoundationDB's transaction limits and made visible by one small commit that
//!   compares-and-sets the latest epoch. A half-written epoch is invisible and re-runnable.
//! * [`FdbHeadStore`]: the signed head and the queue cursor, committed together with a
//!   compare-and-set on the last epoch.
//! * [`EpochWriterLease`]: the foundationdb crate's leader-election recipe; every write of the
//!   epoch writer checks the lease *inside its own transaction*, so a deposed writer's transaction
//!   conflicts and fails instead of landing.
//!
//! Key layout and transaction plan: ARCHITECTURE.md, "FoundationDB backend". Building or testing
//! with the feature needs FoundationDB's client library (libfdb_c) to link; `cargo clippy
//! --features fdb` needs only libclang (bindgen).

#[cfg(feature = "fdb")]
mod error;
#[cfg(feature = "fdb")]
mod heads;
// The key layout is plain bytes: compiled and tested with or without the feature.
#[cfg_attr(not(feature = "fdb"), allow(dead_code))]
mod keys;
#[cfg(feature = "fdb")]
mod lease;
#[cfg(feature = "fdb")]
mod network;
#[cfg(feature = "fdb")]
mod queue;
#[cfg(feature = "fdb")]
mod tree;

#[cfg(feature = "fdb")]
pub use foundationdb::Database;
#[cfg(feature = "fdb")]
pub use heads::FdbHeadStore;
pub use keys::Layout;
#[cfg(feature = "fdb")]
pub use lease::{EpochWriterLease, LeaseOptions};
#[cfg(feature = "fdb")]
pub use network::{Network, open_database};
#[cfg(feature = "fdb")]
pub use queue::{FdbQueue, MAX_APPEND_BYTES, QueueBounds};
#[cfg(feature = "fdb")]
pub use tree::{FdbStore, FdbStoreOptions};
