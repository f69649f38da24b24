//! The steps of an epoch run a test may stop after, as if the process died there (tests only:
//! `EpochJob::run_until`).

/// Where a test may stop a run, as if the process died right after that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The marker is durable and the epoch's mutations were read.
    AfterRead,
    /// Mutations applied in memory (nothing new is durable).
    AfterApply,
    /// The epoch's archive is durable (written before the map).
    AfterArchiveWrite,
    /// The map's nodes and leaves for the epoch are committed.
    AfterNodeWrite,
    /// The head is signed (not stored).
    AfterSign,
    /// Head and cursor are committed.
    AfterHeadWrite,
    /// The consumed queue entries are removed.
    AfterCursorAdvance,
}

impl CrashPoint {
    /// Every crash point, in the order a run passes them.
    pub const ALL: [CrashPoint; 7] = [
        CrashPoint::AfterRead,
        CrashPoint::AfterApply,
        CrashPoint::AfterArchiveWrite,
        CrashPoint::AfterNodeWrite,
        CrashPoint::AfterSign,
        CrashPoint::AfterHeadWrite,
        CrashPoint::AfterCursorAdvance,
    ];
}
