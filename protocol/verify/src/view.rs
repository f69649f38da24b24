//! A client's view of the log of heads: the last checkpoint it verified, moved forward only
//! through verified consistency proofs. What makes a rollback, a fork or a frozen directory
//! visible between two lookups (SPEC section 6.2), following the directory's key rollovers
//! (section 6.6). No I/O: the caller stores [`View::note`] and [`View::rollovers`] (signed
//! checkpoints, re-verified on load by [`View::restore`]) wherever it keeps state.

use keyfold_core::{
    Hash, Head, HeadError, SignedHead, key_after_rollovers, log, peek_checkpoint, verify_checkpoint_note,
};
use thiserror::Error;

/// The last checkpoint a client verified, with the note that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The signed checkpoint note as received (with any cosignature lines).
    pub note: String,
    pub signed: SignedHead,
    /// The key that signed `note`: the pinned one until a key rollover.
    pub signer: [u8; 32],
    /// The signed checkpoints that announced a key rollover since the pinned key, ascending (the
    /// view's own note too when its head announces one).
    pub rollovers: Vec<String>,
}

/// A key rollover as a server proves it: the signed checkpoint that announced the next key and
/// the consistency proof from its size to the latest checkpoint's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollover {
    pub note: String,
    pub consistency: Vec<Hash>,
}

/// Why a new checkpoint does not extend the view. Rollback and fork carry both signed notes: two
/// checkpoints the directory signed that cannot both be honest are evidence anyone can check.
#[derive(Debug, Error)]
pub enum ViewError {
    #[error("the head does not verify with the pinned key and origin (nor with a key a rollover handed over to): {0}")]
    Checkpoint(#[from] HeadError),
    #[error(
        "ROLLBACK: the directory now shows a log of {got} heads, but it signed {held} before (both signed \
         checkpoints are the evidence)"
    )]
    Rollback { held: u64, got: u64, held_note: String, got_note: String },
    #[error("FORK: {reason} (both signed checkpoints are the evidence)")]
    Fork { reason: String, held_note: String, got_note: String },
    #[error("the key rollover does not hold: {0}")]
    Rollover(String),
    #[error("refused: the checkpoint moves the log from {held} to {got} heads without a consistency proof")]
    MissingProof { held: u64, got: u64 },
    #[error(
        "FREEZE: the newest checkpoint is {age_secs} s old (its epoch time), more than the allowed {max_age_secs} s: \
         the directory may be hiding newer heads"
    )]
    Freeze { age_secs: u64, max_age_secs: u64 },
}

/// Verifies the latest checkpoint `note` for a verifier that holds a log of size `held` whose
/// next checkpoint `key` signs. When another key signed `note`, the server's `rollovers` lead
/// there: each announcement after `held` must verify with the key in effect before it, name the
/// next key and be consistent with `note`'s log. Returns the verified checkpoint, the key that
/// signed it and the announcements walked.
pub fn verify_latest(
    origin: &str,
    key: &[u8; 32],
    held: u64,
    note: &str,
    rollovers: &[Rollover],
) -> Result<(SignedHead, [u8; 32], Vec<String>), ViewError> {
    if let Ok(signed) = verify_checkpoint_note(note, origin, key) {
        return Ok((signed, *key, Vec::new()));
    }
    let (latest, mut key, mut walked) = (peek_checkpoint(note)?, *key, Vec::new());
    for rollover in rollovers.iter().filter(|r| peek_checkpoint(&r.note).is_ok_and(|c| c.size > held)) {
        let bad = |why: String| ViewError::Rollover(why);
        let signed = verify_checkpoint_note(&rollover.note, origin, &key)
            .map_err(|e| bad(format!("an announcement does not verify with the key in effect: {e}")))?;
        let (size, root) = (signed.checkpoint.size, signed.checkpoint.root);
        let next = signed.head.next_key.ok_or_else(|| bad(format!("the checkpoint of size {size} names no key")))?;
        log::verify_consistency(size, latest.size, &root, &latest.root, &rollover.consistency)
            .map_err(|e| bad(format!("the announcement of size {size} is not in the latest log: {e}")))?;
        walked.push(rollover.note.clone());
        key = next.to_bytes();
    }
    Ok((verify_checkpoint_note(note, origin, &key)?, key, walked))
}

impl ViewError {
    /// The two conflicting signed notes, for a rollback or a fork.
    pub fn evidence(&self) -> Option<(&str, &str)> {
        match self {
            ViewError::Rollback { held_note, got_note, .. } | ViewError::Fork { held_note, got_note, .. } => {
                Some((held_note, got_note))
            }
            ViewError::Checkpoint(_)
            | ViewError::Rollover(_)
            | ViewError::MissingProof { .. }
            | ViewError::Freeze { .. } => None,
        }
    }
}

impl View {
    /// A view from a signed checkpoint note verified with the pinned origin and key.
    pub fn trust(note: &str, origin: &str, public_key: &[u8; 32]) -> Result<View, ViewError> {
        View::restore(note, Vec::new(), origin, public_key)
    }

    /// A view loaded from a client's state: `note` must verify with the key that `rollovers`
    /// (announcements, ascending) lead to from the pinned one.
    pub fn restore(note: &str, rollovers: Vec<String>, origin: &str, pinned: &[u8; 32]) -> Result<View, ViewError> {
        let epoch = Head::from_checkpoint(&peek_checkpoint(note)?)?.epoch;
        let signer = key_after_rollovers(origin, pinned, &rollovers, epoch)?;
        let signed = verify_checkpoint_note(note, origin, &signer)?;
        Ok(View::new(note, signed, signer, rollovers))
    }

    fn new(note: &str, signed: SignedHead, signer: [u8; 32], mut rollovers: Vec<String>) -> View {
        let listed = rollovers.last().and_then(|last| peek_checkpoint(last).ok()).map(|c| c.size);
        if signed.head.next_key.is_some() && listed != Some(signed.checkpoint.size) {
            rollovers.push(note.to_owned());
        }
        View { note: note.to_owned(), signed, signer, rollovers }
    }

    /// The latest checkpoint `note`, verified with the key in effect after `base` (or `pinned`
    /// for a client without a view), following the server's `rollovers` ([`verify_latest`]).
    /// Whether `note` extends `base` is [`View::advance`]'s check.
    pub fn open(
        base: Option<&View>,
        origin: &str,
        pinned: &[u8; 32],
        note: &str,
        rollovers: &[Rollover],
    ) -> Result<View, ViewError> {
        let (key, mut chain, held) =
            base.map_or((*pinned, Vec::new(), 0), |v| (v.next_signer(), v.rollovers.clone(), v.size()));
        let (signed, signer, walked) = verify_latest(origin, &key, held, note, rollovers)?;
        chain.extend(walked);
        Ok(View::new(note, signed, signer, chain))
    }

    /// The key that signs the checkpoints after this one.
    pub fn next_signer(&self) -> [u8; 32] {
        self.signed.next_signer(&self.signer)
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
