//! A client's view of the log of heads: the last checkpoint it verified, moved forward only
//! through verified consistency proofs. What makes a rollback, a fork or a frozen directory
//! visible between two lookups (SPEC section 6.2). No I/O: the caller stores [`View::note`] (a
//! signed checkpoint, re-verified on load) wherever it keeps state.

use keyfold_core::{Hash, HeadError, SignedHead, log, verify_checkpoint_note};
use thiserror::Error;

/// The last checkpoint a client verified, with the note that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The signed checkpoint note as received (with any cosignature lines).
    pub note: String,
    pub signed: SignedHead,
}

/// Why a new checkpoint does not extend the view. Rollback and fork carry both signed notes: two
/// checkpoints the directory signed that cannot both be honest are evidence anyone can check.
#[derive(Debug, Error)]
pub enum ViewError {
    #[error("the checkpoint does not verify: {0}")]
    Checkpoint(#[from] HeadError),
    #[error(
        "ROLLBACK: the directory now shows a log of {got} heads, but it signed {held} before (both signed \
         checkpoints are the evidence)"
    )]
    Rollback { held: u64, got: u64, held_note: String, got_note: String },
    #[error("FORK: {reason} (both signed checkpoints are the evidence)")]
    Fork { reason: String, held_note: String, got_note: String },
    #[error("refused: the checkpoint moves the log from {held} to {got} heads without a consistency proof")]
    MissingProof { held: u64, got: u64 },
    #[error(
        "FREEZE: the newest checkpoint is {age_secs} s old (its epoch time), more than the allowed {max_age_secs} s: \
         the directory may be hiding newer heads"
    )]
    Freeze { age_secs: u64, max_age_secs: u64 },
}

impl ViewError {
    /// The two conflicting signed notes, for a rollback or a fork.
    pub fn evidence(&self) -> Option<(&str, &str)> {
        match self {
            ViewError::Rollback { held_note, got_note, .. } | ViewError::Fork { held_note, got_note, .. } => {
                Some((held_note, got_note))
            }
            ViewError::Checkpoint(_) | ViewError::MissingProof { .. } | ViewError::Freeze { .. } => None,
        }
    }
}

impl View {
    /// A view from a signed checkpoint note verified with the pinned origin and key (a client's
    /// first checkpoint, or one loaded from its state file).
    pub fn trust(note: &str, origin: &str, public_key: &[u8; 32]) -> Result<View, ViewError> {
        let signed = verify_checkpoint_note(note, origin, public_key)?;
        Ok(View { note: note.to_owned(), signed })
    }

    pub fn size(&self) -> u64 {
        self.signed.checkpoint.size
    }

    pub fn root(&self) -> Hash {
        self.signed.checkpoint.root
    }

    /// The view after `next` (a signed note verified with the same origin and key), given the
    /// consistency proof from this view's size to `next`'s. Refuses a smaller size (rollback), the
    /// same size with another root or a proof that does not verify (fork). A larger size without a
    /// proof is refused too ([`ViewError::MissingProof`]): a client never moves without one.
    pub fn advance(&self, next: &View, consistency: Option<&[Hash]>) -> Result<View, ViewError> {
        let (held, got) = (self.size(), next.size());
        let evidence = || (self.note.clone(), next.note.clone());
        if got < held {
            let (held_note, got_note) = evidence();
            return Err(ViewError::Rollback { held, got, held_note, got_note });
        }
        if got == held && self.root() != next.root() {
            let (held_note, got_note) = evidence();
            let reason = format!("two signed checkpoints of size {held} have different roots");
            return Err(ViewError::Fork { reason, held_note, got_note });
        }
        if got > held {
            let proof = consistency.ok_or(ViewError::MissingProof { held, got })?;
            if let Err(e) = log::verify_consistency(held, got, &self.root(), &next.root(), proof) {
                let (held_note, got_note) = evidence();
                let reason = format!("the consistency proof from size {held} to {got} does not verify: {e}");
                return Err(ViewError::Fork { reason, held_note, got_note });
            }
        }
        Ok(next.clone())
    }

    /// Refuses a view whose newest map head is older than `max_age_secs` at `now_ms`.
    pub fn check_fresh(&self, now_ms: u64, max_age_secs: u64) -> Result<(), ViewError> {
        let age_secs = now_ms.saturating_sub(self.signed.head.time_ms) / 1000;
        if age_secs > max_age_secs {
            return Err(ViewError::Freeze { age_secs, max_age_secs });
        }
        Ok(())
    }
}
