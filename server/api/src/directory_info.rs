//! `GET /v1/directory`: what a client pins.

use super::*;
use keyfold_verify::wire::DirectoryInfo;

/// The directory's identity and parameters.
#[utoipa::path(get, path = "/v1/directory", tag = "directory",
    responses((status = 200, description = "Directory parameters", body = DirectoryInfo)))]
pub(crate) async fn directory(State(api): State<Arc<Api>>) -> Json<DirectoryInfo> {
    Json(DirectoryInfo {
        origin: api.origin.clone(),
        public_key: B64.encode(api.directory.public_key()),
        hash: api.directory.suite().name().to_owned(),
        shard_bits: api.directory.shard_bits(),
        vkey: api.vkey(),
        checkpoint_url: format!("{}/checkpoint", crate::LOG_PREFIX),
        tiles_url: crate::LOG_PREFIX.to_owned(),
    })
}
