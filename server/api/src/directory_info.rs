//! `GET /v1/directory`: what a client pins.

use super::*;

/// What a client pins: the directory's name in its heads, its public key and its tree shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DirectoryInfo {
    /// The origin line of every signed head (C2SP signed note).
    origin: String,
    /// Base64 of the 32-byte ed25519 public key that signs heads.
    public_key: String,
    /// `blake3` or `sha256`.
    hash: &'static str,
    /// The tree has 2^shard_bits shards.
    shard_bits: u8,
}

/// The directory's identity and parameters.
#[utoipa::path(get, path = "/v1/directory", tag = "directory",
    responses((status = 200, description = "Directory parameters", body = DirectoryInfo)))]
pub(crate) async fn directory(State(api): State<Arc<Api>>) -> Json<DirectoryInfo> {
    Json(DirectoryInfo {
        origin: api.origin.clone(),
        public_key: B64.encode(api.directory.public_key()),
        hash: api.directory.suite().name(),
        shard_bits: api.directory.shard_bits(),
    })
}
