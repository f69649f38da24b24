//! Keyfold's verifier crate: the byte-level specification of the authenticated map as code.
//!
//! Clients and monitors depend on this crate alone. It holds the domain types ([`Index`], [`Epoch`],
//! [`Version`], [`ShardId`]), the two hash suites ([`HashSuite`]), the compressed sparse Merkle tree
//! rules ([`Node`], [`combine`], [`compute_root`]) and proofs ([`Proof`]), and the RFC 6962 Merkle
//! tree log ([`log`]) that C2SP checkpoints commit to. It does no I/O.
//!
//! Every hashed byte of the protocol is defined in `docs/SPEC.md`; the golden vectors in
//! `protocol/core/tests/vectors/` pin it. Every epoch appends its map head ([`Head`]) to the
//! [`log`] of heads (RFC 6962 hashing, pinned also by transparency-dev's public vectors); the
//! directory signs that log's C2SP checkpoint ([`Checkpoint`]), served as C2SP tiles ([`tiles`]).
//!
//! ```
//! use keyfold_core::{HashSuite, LeafValue, Version, compute_root, Epoch, MapRoot, prove_from_leaves};
//! let suite = HashSuite::Blake3;
//! let leaves = vec![(suite.index_of(b"alice"), LeafValue::present(Version(1), b"pk-a".to_vec()))];
//! let root = MapRoot { epoch: Epoch(1), hash: compute_root(suite, &leaves).hash(suite) };
//! let proof = prove_from_leaves(suite, Epoch(1), &leaves, &suite.index_of(b"alice"));
//! proof.verify(suite, &root, b"alice", Some(&leaves[0].1)).unwrap();
//! proof.verify(suite, &root, b"bob", None).unwrap_err();
//! ```

mod checkpoint;
mod cosignature;
mod epoch_proof;
mod error;
mod hash;
mod head;
pub mod log;
mod mutation;
mod proof;
pub mod tiles;
mod tree;
mod types;

pub use checkpoint::{
    Checkpoint, MAX_CHECKPOINT_TEXT_BYTES, SignedHead, key_after_rollovers, parse_vkey, peek_checkpoint,
    verify_checkpoint_note, verify_head_note, verify_note_signature, vkey,
};
pub use cosignature::{
    Witness, WitnessPolicy, check_witness_name, cosign, cosignature_key_id, cosignature_vkey, cosigned_message,
    parse_cosignature_vkey, verify_cosignature, with_cosignatures,
};
pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
pub use epoch_proof::{
    EPOCH_PROOF_FORMAT_V1, EpochProof, EpochProofError, FlatEpochProof, ProofWriter, Pruned, TouchedPaths,
};
pub use error::{DecodeError, ProofError, StorageError};
pub use hash::{ArchiveDigester, HashSuite};
pub use head::{
    Head, HeadCounts, HeadError, MAX_ORIGIN_BYTES, check_origin, is_key_name, key_id, signature_line, split_note,
};
pub use log::{Frontier, LogError, LogTree};
pub use mutation::{MUTATION_FORMAT_V1, Mutation, MutationId};
pub use proof::{PROOF_FORMAT_V1, Proof, Terminal};
pub use tree::{Node, combine, compute_root, prove_from_leaves};
pub use types::{Epoch, Hash, Index, KeyState, LeafValue, MAX_SHARD_BITS, MapRoot, Position, ShardId, Version};
