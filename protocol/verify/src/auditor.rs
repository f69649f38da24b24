//! A monitor that audits instead of replaying: each epoch is checked from its epoch proof (SPEC
//! section 3.2) against the last verified head, so it holds only that head's checkpoint, the key
//! rollovers that lead to its signer and the log of heads' right edge: constant memory, whatever
//! the directory's size, and a saved state of a few hundred bytes.

use crate::audit::{Audited, audit_epoch};
use crate::chain::HeadChain;
use crate::divergence::{Divergence, diverge};
use crate::state::ResumeError;
use bytes::Bytes;
use keyfold_core::{FlatEpochProof, Frontier, Head};

/// The first bytes of an auditor's state file.
pub const AUDIT_STATE_MAGIC: &[u8] = b"keyfold audit state v1\n";

/// An auditor's saved state (SPEC appendix B): what [`Auditor::resume`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditState {
    /// The signed checkpoint of the last verified epoch, as it was served.
    pub checkpoint: String,
    /// The checkpoints that announced key rollovers up to that epoch, ascending.
    pub rollovers: Vec<String>,
    /// The log of heads through that epoch.
    pub log: Frontier,
}

/// Follows a directory epoch by epoch from a verified head, auditing each.
#[derive(Debug)]
pub struct Auditor {
    chain: HeadChain,
}

impl Auditor {
    /// Starts from the genesis head (epoch 0, the empty map), which must verify.
    pub fn from_genesis(note: &str, origin: &str, public_key: &[u8; 32]) -> Result<Auditor, Divergence> {
        // The shard count does not change any root (SPEC section 2): any valid one will do.
        Ok(Auditor { chain: HeadChain::genesis(note, origin, public_key, 0)? })
    }

    /// Continues from a saved state, trusting none of it ([`HeadChain`]'s checks).
    pub fn resume(state: AuditState, origin: &str, public_key: &[u8; 32]) -> Result<Auditor, ResumeError> {
        let AuditState { checkpoint, rollovers, log } = state;
        Ok(Auditor { chain: HeadChain::resume(checkpoint, rollovers, log, origin, public_key)? })
    }

    /// Verifies the next epoch: its signed head (signature, number, link, time, log) and its
    /// transition, audited from `proof` and `archive` against the last verified head.
    pub fn audit(&mut self, note: &str, archive: Bytes, proof: &FlatEpochProof) -> Result<(Head, Audited), Divergence> {
        let (head, log) = self.chain.check_next(note)?;
        let audited = audit_epoch(self.chain.head(), &head, archive, proof)?;
        self.chain.advance(head.clone(), log, note);
        Ok((head, audited))
    }

    /// Verifies the next epoch's signed head only (signature, number, link, time, log), not its
    /// transition: for epochs before where an audit starts, such as those a directory's retention
    /// window no longer keeps archives and proofs of (SPEC section 4.3). The map of the first
    /// audited epoch is then trusted as its signed head states it.
    pub fn skip(&mut self, note: &str) -> Result<Head, Divergence> {
        let (head, log) = self.chain.check_next(note)?;
        self.chain.advance(head.clone(), log, note);
        Ok(head)
    }

    /// The epoch after the last verified one, for a proof that cannot be decoded.
    pub fn undecodable(&self, e: impl std::fmt::Display) -> Divergence {
        diverge(self.chain.head().epoch.next(), None, "epoch proof", "a format 1 epoch proof", e)
    }

    /// The last verified head, its checkpoint, log and signer.
    pub fn chain(&self) -> &HeadChain {
        &self.chain
    }

    /// What [`Auditor::resume`] continues from.
    pub fn snapshot(&self) -> AuditState {
        let chain = &self.chain;
        let (checkpoint, rollovers) = (chain.checkpoint_note().to_owned(), chain.rollovers().to_vec());
        AuditState { checkpoint, rollovers, log: chain.log().clone() }
    }
}

impl AuditState {
    /// The state file's bytes: the magic, then the checkpoint, rollovers and log as in a replay
    /// state (SPEC appendix B), and no leaves.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = AUDIT_STATE_MAGIC.to_vec();
        crate::state::put_head_part(&mut out, &self.checkpoint, &self.rollovers, &self.log);
        out
    }

    /// Reads [`AuditState::encode`]'s bytes (layout only: [`Auditor::resume`] checks the content).
    pub fn decode(bytes: &[u8]) -> Result<AuditState, ResumeError> {
        let rest = bytes.strip_prefix(AUDIT_STATE_MAGIC).ok_or_else(|| {
            ResumeError::Format("it does not start with the audit state magic (a replay state? use --replay)".into())
        })?;
        let (checkpoint, rollovers, log, used) = crate::state::read_head_part(rest)?;
        if used != rest.len() {
            return Err(ResumeError::Format(format!("{} bytes after the log", rest.len() - used)));
        }
        Ok(AuditState { checkpoint, rollovers, log })
    }
}
