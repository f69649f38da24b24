//! The verifier: everything a client, monitor or auditor needs to check Keyfold, and nothing that
//! does I/O (no storage, network or async runtime: a `cargo tree` test keeps it so).
//!
//! * [`apply_mutations`]: the compare-and-set rules (SPEC section 5.4), pure; the directory's
//!   epoch job and every replay run the same code. [`RejectReason::code`] is the archived reason
//!   code and [`OutcomeColumns`] the one mapping from an outcome to its archive row.
//! * [`Replayer`]: a monitor's replica, advanced one archive at a time from a trusted head: each
//!   head's signature and chain link, its archive's digest, every outcome and the map root;
//!   [`Replayer::snapshot`] and [`Replayer::resume`] save and (re-checking it) restore it as a
//!   [`ReplicaState`].
//! * [`verify_lookup`]: a lookup answer checked against a pinned key and witness policy.
//! * [`wire`]: the JSON bodies of the HTTP API, shared by the server and its clients.

mod apply;
mod audit;
mod auditor;
mod chain;
mod divergence;
mod heads;
mod history;
mod lookup;
mod replay;
mod state;
mod view;
pub mod wire;

pub use apply::{
    Applied, KeyState, MutationOutcome, Outcome, OutcomeColumns, RejectReason, apply_mutations, archive_rows,
    hash_mutations, read_touched, touched_indexes,
};
pub use audit::{AUDIT_HOLD_BYTES, Audited, audit_epoch, audit_epoch_holding};
pub use auditor::{AUDIT_STATE_MAGIC, AuditState, Auditor};
pub use chain::HeadChain;
pub use divergence::Divergence;
pub use heads::{verify_genesis_head, verify_next_head};
pub use history::{
    HistoryError, HistoryPoint, HistoryVersion, VerifiedHistory, check_history, decode_versions, verify_history,
    verify_history_since,
};
pub use lookup::{
    LookupError, Pinned, Verified, decode_hashes, decode_rollovers, verify_lookup, verify_lookup_in_view,
};
pub use replay::Replayer;
pub use state::{ReplicaState, ResumeError, STATE_MAGIC};
pub use view::{Rollover, View, ViewError, verify_latest};
pub use wire::{LookupAnswer, RolloverProof};
