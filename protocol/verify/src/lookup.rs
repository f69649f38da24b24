//! Checking a lookup answer against what the client pinned: the head's signature (and witness
//! cosignatures, when a policy asks for them), the answer's epoch, and the inclusion or absence
//! proof against the signed root. What `keyfold lookup` and any other client run; no I/O.

use crate::wire::LookupAnswer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{Head, HeadError, LeafValue, MapRoot, Proof, Version, WitnessPolicy, verify_head_note};
use thiserror::Error;

/// What a client trusts before it asks: the directory's origin and public key, and which
/// witnesses must have cosigned a head (none: `required` = 0).
#[derive(Debug, Clone)]
pub struct Pinned {
    pub origin: String,
    pub public_key: [u8; 32],
    pub witnesses: WitnessPolicy,
}

/// A verified answer: the key's leaf at a signed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub head: Head,
    /// None: the key never existed (an absence proof). A deleted key has a tombstone leaf.
    pub leaf: Option<LeafValue>,
    /// The witnesses whose cosignatures satisfied the policy (empty without a policy).
    pub cosigned: Vec<String>,
    pub proof_bytes: usize,
}

/// Why an answer was refused. Every variant means: do not use this value.
#[derive(Debug, Error)]
pub enum LookupError {
    #[error("the head does not verify with the pinned key and origin: {0}")]
    Head(#[from] HeadError),
    #[error("witness policy: {0}")]
    Witnesses(HeadError),
    #[error("the answer is for epoch {answer} but its head is epoch {head}")]
    EpochMismatch { answer: u64, head: u64 },
    #[error("the value is not base64")]
    ValueNotBase64,
    #[error("the answer has a value at version 0 (version 0 means the key never existed)")]
    ValueAtVersionZero,
    #[error("the proof is not base64")]
    ProofNotBase64,
    #[error("undecodable proof: {0}")]
    ProofUndecodable(keyfold_core::DecodeError),
    #[error("the proof does not match the signed root: {0}")]
    ProofMismatch(keyfold_core::ProofError),
}

/// Checks `answer` for `key` against `pinned`; the value is usable only if this returns Ok.
pub fn verify_lookup(key: &[u8], answer: &LookupAnswer, pinned: &Pinned) -> Result<Verified, LookupError> {
    let head = verify_head_note(&answer.head, &pinned.origin, &pinned.public_key)?;
    let cosigned = if pinned.witnesses.required > 0 {
        pinned.witnesses.check(&answer.head).map_err(LookupError::Witnesses)?
    } else {
        Vec::new()
    };
    if head.epoch.0 != answer.epoch {
        return Err(LookupError::EpochMismatch { answer: answer.epoch, head: head.epoch.0 });
    }
    let leaf = claimed_leaf(answer)?;
    let proof_bytes = B64.decode(&answer.proof).map_err(|_| LookupError::ProofNotBase64)?;
    let proof = Proof::decode(&proof_bytes).map_err(LookupError::ProofUndecodable)?;
    let root = MapRoot { epoch: head.epoch, hash: head.root };
    proof.verify(head.suite, &root, key, leaf.as_ref()).map_err(LookupError::ProofMismatch)?;
    Ok(Verified { head, leaf, cosigned, proof_bytes: proof_bytes.len() })
}

/// The leaf the answer claims: none at version 0, a tombstone without a value.
fn claimed_leaf(answer: &LookupAnswer) -> Result<Option<LeafValue>, LookupError> {
    let value = answer.value.as_deref().map(|v| B64.decode(v)).transpose().map_err(|_| LookupError::ValueNotBase64)?;
    Ok(match (answer.version, value) {
        (0, None) => None,
        (0, Some(_)) => return Err(LookupError::ValueAtVersionZero),
        (v, None) => Some(LeafValue::tombstone(Version(v))),
        (v, Some(bytes)) => Some(LeafValue::present(Version(v), bytes)),
    })
}
