//! Checking a lookup answer against what the client pinned: the head's signature (and witness
//! cosignatures on the latest checkpoint, when a policy asks for them), the answer's epoch, a past
//! epoch's head proven into the latest checkpoint, the inclusion or absence proof against the
//! signed root and, for a client that keeps a [`View`], consistency with what it saw before. What
//! `keyfold lookup` and any other client run; no I/O.

use crate::view::{Rollover, View, ViewError};
use crate::wire::{LookupAnswer, RolloverProof};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{
    Epoch, Hash, Head, HeadError, LeafValue, LogError, MapRoot, Proof, Version, WitnessPolicy, log, peek_checkpoint,
};
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
    #[error(
        "the answer has a value, a version epoch or a previous version at version 0 (version 0 means the key never existed)"
    )]
    ValueAtVersionZero,
    #[error("the answer's version was applied by epoch {version_epoch}, which is not in 1..={epoch}")]
    VersionEpoch { version_epoch: u64, epoch: u64 },
    #[error("the answer has a version but not the previous version's commitment (`previous`)")]
    MissingPrevious,
    #[error("the proof is not base64")]
    ProofNotBase64,
    #[error("undecodable proof: {0}")]
    ProofUndecodable(keyfold_core::DecodeError),
    #[error("the proof does not match the signed root: {0}")]
    ProofMismatch(keyfold_core::ProofError),
    #[error("the answer's latest checkpoint (epoch {latest}) is not newer than its head (epoch {head})")]
    CheckpointNotNewer { latest: u64, head: u64 },
    #[error("the answer is for a past epoch but has no inclusion proof of its head in the latest checkpoint")]
    MissingInclusion,
    #[error("a proof hash is not base64 of 32 bytes")]
    HashNotBase64,
    #[error("the head of epoch {epoch} is not in the log of the latest checkpoint: {error}")]
    HeadNotInLog { epoch: u64, error: LogError },
    #[error(transparent)]
    View(#[from] ViewError),
}

/// Base64 hashes of a proof.
pub fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, LookupError> {
    hashes.iter().map(|h| decode_hash(h)).collect()
}

/// One base64 hash.
fn decode_hash(text: &str) -> Result<Hash, LookupError> {
    B64.decode(text).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).map(Hash).ok_or(LookupError::HashNotBase64)
}

/// The key rollovers an answer lists, decoded.
pub fn decode_rollovers(rollovers: &[RolloverProof]) -> Result<Vec<Rollover>, LookupError> {
    rollovers
        .iter()
        .map(|r| Ok(Rollover { note: r.checkpoint.clone(), consistency: decode_hashes(&r.consistency)? }))
        .collect()
}

/// The answer's latest checkpoint (its own, or its head when that is the latest) verified with
/// the key in effect after `view` (following the answer's key rollovers), and the map head of the
/// answer's epoch: the latest one, or a past one proven into it by inclusion (a past head was
/// signed by the key of its time; its inclusion in the latest log is what a client checks).
fn check_latest(answer: &LookupAnswer, pinned: &Pinned, view: Option<&View>) -> Result<(Head, View), LookupError> {
    let rollovers = decode_rollovers(&answer.rollovers)?;
    let note = answer.checkpoint.as_ref().unwrap_or(&answer.head);
    let latest = View::open(view, &pinned.origin, &pinned.public_key, note, &rollovers)?;
    if answer.checkpoint.is_none() {
        return Ok((latest.signed.head.clone(), latest));
    }
    let head = Head::from_checkpoint(&peek_checkpoint(&answer.head)?)?;
    if head.origin != pinned.origin {
        return Err(HeadError::OriginMismatch { expected: pinned.origin.clone(), found: head.origin }.into());
    }
    let latest_epoch = latest.signed.head.epoch.0;
    if latest_epoch <= head.epoch.0 {
        return Err(LookupError::CheckpointNotNewer { latest: latest_epoch, head: head.epoch.0 });
    }
    let proof = decode_hashes(answer.head_inclusion.as_deref().ok_or(LookupError::MissingInclusion)?)?;
    log::verify_inclusion(&head.leaf_hash(), head.epoch.0, latest.size(), &proof, &latest.root())
        .map_err(|error| LookupError::HeadNotInLog { epoch: head.epoch.0, error })?;
    Ok((head, latest))
}

/// Checks `answer` for `key` against `pinned`; the value is usable only if this returns Ok.
pub fn verify_lookup(key: &[u8], answer: &LookupAnswer, pinned: &Pinned) -> Result<Verified, LookupError> {
    verify_lookup_in_view(key, answer, pinned, None).map(|(verified, _)| verified)
}

/// [`verify_lookup`] for a client that keeps a view: the answer's latest checkpoint must extend
/// `view` (through the answer's consistency proof from `view`'s size); returns the new view,
/// which the client stores only after this succeeds.
pub fn verify_lookup_in_view(
    key: &[u8],
    answer: &LookupAnswer,
    pinned: &Pinned,
    view: Option<&View>,
) -> Result<(Verified, View), LookupError> {
    let (head, latest) = check_latest(answer, pinned, view)?;
    let next = match view {
        None => latest,
        Some(view) => {
            let proof = answer.consistency.as_deref().map(decode_hashes).transpose()?;
            view.advance(&latest, proof.as_deref())?
        }
    };
    // Witnesses cosign the latest checkpoint; a past head is covered by its inclusion in it.
    let cosigned = if pinned.witnesses.required > 0 {
        pinned.witnesses.check(&next.note).map_err(LookupError::Witnesses)?
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
    Ok((Verified { head, leaf, cosigned, proof_bytes: proof_bytes.len() }, next))
}

/// The leaf the answer claims: none at version 0, a tombstone without a value; a version from an
/// epoch after the answer's, or without the previous version's commitment, is refused.
fn claimed_leaf(answer: &LookupAnswer) -> Result<Option<LeafValue>, LookupError> {
    let value = answer.value.as_deref().map(|v| B64.decode(v)).transpose().map_err(|_| LookupError::ValueNotBase64)?;
    if answer.version == 0 {
        return match (value, &answer.previous, answer.version_epoch) {
            (None, None, 0) => Ok(None),
            _ => Err(LookupError::ValueAtVersionZero),
        };
    }
    if answer.version_epoch == 0 || answer.version_epoch > answer.epoch {
        return Err(LookupError::VersionEpoch { version_epoch: answer.version_epoch, epoch: answer.epoch });
    }
    let previous = decode_hash(answer.previous.as_deref().ok_or(LookupError::MissingPrevious)?)?;
    Ok(Some(LeafValue::new(Version(answer.version), Epoch(answer.version_epoch), previous, value)))
}
