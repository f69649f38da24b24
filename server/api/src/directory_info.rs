//! `GET /v1/directory`: what a client pins.

use super::*;
use keyfold_verify::wire::DirectoryInfo;

/// The directory's identity and parameters.
#[utoipa::path(get, path = "/v1/directory", tag = "directory",
    responses((status = 200, description = "Directory parameters", body = DirectoryInfo),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub(crate) async fn directory(State(api): State<Arc<Api>>) -> Result<Json<DirectoryInfo>, ApiError> {
    let served = Arc::clone(&api);
    let oldest = match api.directory.retention() {
        Some(_) => Some(blocking(move || served.directory.oldest_epoch().map_err(|e| served.storage(e))).await?.0),
        None => None,
    };
    Ok(Json(DirectoryInfo {
        origin: api.origin.clone(),
        public_key: B64.encode(api.directory.public_key()),
        hash: api.directory.suite().name().to_owned(),
        shard_bits: api.directory.shard_bits(),
        vkey: api.vkey(),
        checkpoint_url: format!("{}/checkpoint", crate::LOG_PREFIX),
        tiles_url: crate::LOG_PREFIX.to_owned(),
        retain_epochs: api.directory.retention().map(|r| r.epochs),
        oldest_epoch: oldest,
    }))
}
