//! The verified end of a directory's chain of heads, as a monitor holds it: the last verified
//! head and its signed checkpoint, the log of heads' right edge, the key that signed it and the
//! key rollovers that lead to that key from the pinned one. [`crate::Replayer`] and
//! [`crate::Auditor`] both advance one; they differ in how they check an epoch's map.

use crate::divergence::Divergence;
use crate::heads::{verify_genesis_head, verify_next_head};
use crate::state::ResumeError;
use keyfold_core::{Frontier, Head, key_after_rollovers, peek_checkpoint, verify_checkpoint_note};

#[derive(Debug, Clone)]
pub struct HeadChain {
    origin: String,
    /// The key that signed `previous`: the pinned key until a key rollover (SPEC section 6.6).
    public_key: [u8; 32],
    /// The signed checkpoints that announced a key rollover, from genesis (or the resumed state's).
    rollovers: Vec<String>,
    previous: Head,
    /// The log of heads through `previous` (its right edge: O(log n) hashes).
    log: Frontier,
    /// The signed checkpoint of `previous`, as it was served: what a saved state starts from.
    note: String,
}

impl HeadChain {
    /// From the genesis head (epoch 0, the empty map), which must verify.
    pub(crate) fn genesis(note: &str, origin: &str, public_key: &[u8; 32], shard_bits: u8) -> Result<Self, Divergence> {
        let (head, log) = verify_genesis_head(note, origin, public_key, shard_bits)?;
        let rollovers = if head.next_key.is_some() { vec![note.to_owned()] } else { Vec::new() };
        let (origin, note) = (origin.to_owned(), note.to_owned());
        Ok(HeadChain { origin, public_key: *public_key, rollovers, previous: head, log, note })
    }

    /// From a saved checkpoint, trusting none of it: the rollovers are followed from the pinned
    /// key, the checkpoint must verify under the key reached, and the saved log must have the
    /// checkpoint's size and root.
    pub(crate) fn resume(
        note: String,
        rollovers: Vec<String>,
        log: Frontier,
        origin: &str,
        pinned: &[u8; 32],
    ) -> Result<Self, ResumeError> {
        let epoch = Head::from_checkpoint(&peek_checkpoint(&note)?)?.epoch;
        let public_key = key_after_rollovers(origin, pinned, &rollovers, epoch)?;
        let signed = verify_checkpoint_note(&note, origin, &public_key)?;
        let (size, root) = (signed.checkpoint.size, signed.checkpoint.root);
        if log.size() != size || log.root() != root {
            return Err(ResumeError::LogRoot { size, root, found_size: log.size(), found_root: log.root() });
        }
        Ok(HeadChain { origin: origin.to_owned(), public_key, rollovers, previous: signed.head, log, note })
    }

    /// The next head, checked (signed by the key in effect, numbered, chained, later in time)
    /// with the log it extends; nothing changes until [`HeadChain::advance`].
    pub(crate) fn check_next(&self, note: &str) -> Result<(Head, Frontier), Divergence> {
        let mut log = self.log.clone();
        let head = verify_next_head(&self.previous, &mut log, note, &self.origin, &self.next_signer())?;
        Ok((head, log))
    }

    /// Moves to `head` (checked by [`HeadChain::check_next`], its epoch verified), whose signed
    /// checkpoint is `note` and log `log`.
    pub(crate) fn advance(&mut self, head: Head, log: Frontier, note: &str) {
        self.public_key = self.next_signer();
        if head.next_key.is_some() {
            self.rollovers.push(note.to_owned());
        }
        (self.previous, self.log) = (head, log);
        note.clone_into(&mut self.note);
    }

    /// The last head verified.
    pub fn head(&self) -> &Head {
        &self.previous
    }

    /// The signed checkpoint of the last head verified, as it was served.
    pub fn checkpoint_note(&self) -> &str {
        &self.note
    }

    /// The log of heads through the last head verified.
    pub fn log(&self) -> &Frontier {
        &self.log
    }

    /// The key rollover announcements from genesis (or the resumed state's) to the last head.
    pub fn rollovers(&self) -> &[String] {
        &self.rollovers
    }

    /// The key that signs the head after the last verified one.
    pub fn next_signer(&self) -> [u8; 32] {
        self.previous.next_key.map_or(self.public_key, |key| key.to_bytes())
    }
}
