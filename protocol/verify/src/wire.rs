//! The JSON bodies of the HTTP API (SPEC section 4.1), shared by the server that writes them and
//! every client that reads them: one definition, so the two cannot drift. With the `schema`
//! feature they also describe themselves for the server's OpenAPI document.

use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable code: `bad_json`, `bad_base64`, `invalid_mutation`, `not_found`, `unavailable`, ...
    pub error: String,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// `GET /v1/directory`: what a client pins: the directory's name in its heads, its public key
/// and its tree shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct DirectoryInfo {
    /// The origin line of every signed head (C2SP signed note).
    pub origin: String,
    /// Base64 of the 32-byte ed25519 public key that signs heads.
    pub public_key: String,
    /// `blake3` or `sha256`.
    pub hash: String,
    /// The tree has 2^shard_bits shards.
    pub shard_bits: u8,
    /// The directory's key as a C2SP verifier key (`origin+hexid+base64`).
    pub vkey: String,
    /// Where the latest checkpoint is served (C2SP tlog-tiles `<prefix>/checkpoint`), relative to
    /// the server root unless absolute.
    pub checkpoint_url: String,
    /// The C2SP tlog-tiles prefix of the log of heads (`<prefix>/tile/...`), relative to the
    /// server root unless absolute.
    pub tiles_url: String,
    /// The retention window (SPEC section 4.3): the directory keeps the map of its last this
    /// many epochs, and (unless it leaves them to a lifecycle rule) their archives and proofs.
    /// Absent: every epoch is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_epochs: Option<u64>,
    /// With `retain_epochs`: the oldest epoch whose map (lookups) is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_epoch: Option<u64>,
}

/// A receipt: the mutation id and where it waits, its queue position (embedded queue) or its
/// FoundationDB versionstamp (hex, 12 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ReceiptResponse {
    /// Hex of the mutation id (SPEC section 5).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versionstamp: Option<String>,
}

/// `POST /v1/mutations` (202): one receipt per submitted mutation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SubmitResponse {
    pub receipts: Vec<ReceiptResponse>,
}

/// `GET /v1/mutations/{id}`: where a mutation is: pending, or consumed by an epoch with its
/// outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct MutationStatusResponse {
    /// Hex of the mutation id.
    pub id: String,
    /// `pending`, `applied`, `rejected` or `duplicate`.
    pub status: String,
    /// The epoch that consumed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Its queue position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    /// The key's version after it (applied only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_version: Option<u64>,
    /// Why it was rejected: the archived reason code (`version_mismatch`, `nothing_to_delete`;
    /// SPEC section 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the reason code means, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_text: Option<String>,
}

/// `GET /v1/keys/{key}`: a key's value at an epoch, with the proof and the signed head to check
/// it against ([`crate::verify_lookup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LookupAnswer {
    pub epoch: u64,
    /// 0 when the key never existed.
    pub version: u64,
    /// Base64 of the value; null when absent or deleted.
    pub value: Option<String>,
    /// The epoch that applied `version` (SPEC section 1.3); 0 when the key never existed.
    #[serde(default)]
    pub version_epoch: u64,
    /// Base64 of the commitment of the version before `version` (SPEC section 1.3): 32 zero bytes
    /// for version 1; absent when the key never existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Base64 of the canonical proof encoding (SPEC section 3.1).
    pub proof: String,
    /// The signed head of `epoch` (a checkpoint of size epoch + 1), whose map root the proof
    /// verifies against.
    pub head: String,
    /// The latest checkpoint, when `epoch` is older (its signed note with cosignatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// With `checkpoint`: base64 hashes of the inclusion proof of `epoch`'s map head (leaf
    /// `epoch`) in the log of the latest checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_inclusion: Option<Vec<String>>,
    /// With the query's `from` (a size the client holds, 0 < from <= the latest size): base64
    /// hashes of the consistency proof from `from` to the latest checkpoint's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Vec<String>>,
    /// The key rollovers after `from` (all of them without it), ascending (SPEC section 6.6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollovers: Vec<RolloverProof>,
}

/// A key rollover: the signed checkpoint whose map head announced the next key (signed by the key
/// before it) and the consistency proof from its size to the latest checkpoint's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RolloverProof {
    pub checkpoint: String,
    /// Base64 hashes of the consistency proof to the latest size (empty when it is the latest).
    pub consistency: Vec<String>,
}

/// `GET /v1/checkpoint`: the latest checkpoint and, with `from`, the consistency proof to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct CheckpointAnswer {
    /// The latest signed checkpoint with its cosignatures.
    pub checkpoint: String,
    /// Base64 hashes of the consistency proof from the query's `from` (when 0 < from <= size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Vec<String>>,
    /// The key rollovers after `from` (all of them without it), ascending (SPEC section 6.6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollovers: Vec<RolloverProof>,
}

/// One applied change of a key: a version of its history (SPEC section 1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct KeyVersionResponse {
    /// The epoch that applied this version.
    pub epoch: u64,
    pub version: u64,
    /// The value was deleted at this version.
    pub deleted: bool,
    /// Base64 of the value set at this version; absent when deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `GET /v1/keys/{key}/history`: a page of a key's versions, oldest first. On the last page,
/// `lookup` is the key's lookup at the latest epoch: the listed versions (with those of earlier
/// pages, after `after_version`) chain to the commitment its leaf binds (SPEC section 1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct HistoryResponse {
    pub versions: Vec<KeyVersionResponse>,
    /// Pass as `after_version` (with the same `after`, if any) for the next page; absent on the
    /// last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after_version: Option<u64>,
    /// The last page only: the key's value, proof and signed head at the epoch the listing is
    /// complete through (with the query's `from`: the consistency proof from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupAnswer>,
    /// With `after=E` for an epoch E before `lookup`'s, the last page only: the key's lookup at
    /// epoch E, proven into the same latest checkpoint as `lookup`. Its leaf is where the listed
    /// versions start, so they are checked as the key's complete history after epoch E.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<LookupAnswer>,
}
