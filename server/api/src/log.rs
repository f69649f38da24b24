//! The log of heads: `GET /v1/checkpoint?from=SIZE` (the latest checkpoint with a consistency
//! proof) and the C2SP tlog-tiles resources under `/v1/log`: `checkpoint`, hash tiles
//! `tile/<L>/<N>[.p/<W>]` and entry bundles `tile/entries/<N>[.p/<W>]` (SPEC section 6.4).

use super::*;
use axum::http::HeaderMap;
use keyfold_core::tiles::{TilePath, entry_bundle};
use keyfold_core::{Checkpoint, Hash, Head};
use keyfold_verify::wire::{CheckpointAnswer, RolloverProof};

/// The C2SP tlog-tiles prefix of the log of heads, relative to the server root.
pub const LOG_PREFIX: &str = "/v1/log";
/// Tiles and bundles never change once served (a partial tile of width W neither).
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The checkpoint changes every epoch: caches keep it a few seconds at most (C2SP tlog-tiles).
pub(crate) const SHORT_LIVED: &str = "public, max-age=2";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CheckpointQuery {
    /// A log size the client already holds: the answer carries the consistency proof from it.
    from: Option<u64>,
}

pub(crate) fn encode_proof(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(|h| B64.encode(h.0)).collect()
}

/// The consistency proof from `from` to `size`, when there is one to give (0 < from <= size).
pub(crate) fn consistency_from(api: &Api, from: Option<u64>, size: u64) -> Option<Vec<String>> {
    let from = from.filter(|f| (1..=size).contains(f))?;
    api.directory.log_consistency(from, size).ok().map(|p| encode_proof(&p))
}

/// The key rollovers a client holding size `from` (none: every one) has not seen, up to the log
/// of `size`: each announcing checkpoint with its consistency proof to `size` (SPEC section 6.6).
pub(crate) fn rollovers_after(api: &Api, from: Option<u64>, size: u64) -> Result<Vec<RolloverProof>, ApiError> {
    let from = from.unwrap_or(0);
    let mut out = Vec::new();
    for epoch in api.directory.rollovers().into_iter().filter(|e| e.0 + 1 > from && e.0 < size) {
        let note = api.directory.head_note(epoch).map_err(|e| api.storage(e))?;
        let note =
            note.ok_or_else(|| ApiError::Internal(format!("the announcing head of epoch {epoch} is missing")))?;
        let proof = match epoch.0 + 1 == size {
            true => Vec::new(),
            false => api.directory.log_consistency(epoch.0 + 1, size).map_err(|e| ApiError::Internal(e.to_string()))?,
        };
        out.push(RolloverProof { checkpoint: api.served_note(epoch, note)?, consistency: encode_proof(&proof) });
    }
    Ok(out)
}

/// The latest checkpoint (a C2SP signed note with its cosignatures) and, given `from`, the
/// consistency proof from that size: a client holding a checkpoint stays consistent in one
/// request. A `from` above the latest size gets no proof (the client holds a larger checkpoint:
/// the directory rolled back, and this answer is the evidence).
#[utoipa::path(get, path = "/v1/checkpoint", tag = "heads",
    params(CheckpointQuery),
    responses(
        (status = 200, description = "Latest checkpoint and consistency proof", body = CheckpointAnswer),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn checkpoint(
    State(api): State<Arc<Api>>,
    ApiQuery(query): ApiQuery<CheckpointQuery>,
) -> Result<Json<CheckpointAnswer>, ApiError> {
    blocking(move || {
        let (epoch, note) = latest_note(&api)?;
        let consistency = consistency_from(&api, query.from, epoch.0 + 1);
        let rollovers = rollovers_after(&api, query.from, epoch.0 + 1)?;
        Ok(Json(CheckpointAnswer { checkpoint: api.served_note(epoch, note)?, consistency, rollovers }))
    })
    .await
}

fn latest_note(api: &Api) -> Result<(Epoch, String), ApiError> {
    api.directory.latest_head_note().map_err(|e| api.storage(e))?.ok_or_else(|| ApiError::Internal("no head".into()))
}

/// The latest checkpoint as C2SP tlog-tiles serves it.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "heads",
    responses(
        (status = 200, description = "Signed checkpoint", body = String, content_type = "text/plain"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn tiles_checkpoint(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let note = blocking(move || {
        let (epoch, note) = latest_note(&api)?;
        api.served_note(epoch, note)
    })
    .await?;
    Ok(cached(&headers, note.into_bytes(), SHORT_LIVED, "text/plain; charset=utf-8"))
}

/// A hash tile or an entry bundle of the log of heads (C2SP tlog-tiles).
#[utoipa::path(get, path = "/v1/log/tile/{path}", tag = "heads",
    params(("path" = String, Path, description = "`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, N in x-prefixed \
        3-digit groups")),
    responses(
        (status = 200, description = "Tile bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "Not a tile path, or the log does not have that tile", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn tile(
    State(api): State<Arc<Api>>,
    ApiPath(path): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tile = TilePath::parse(&format!("tile/{path}"))
        .ok_or_else(|| ApiError::NotFound(format!("tile/{path} is not a C2SP tile path")))?;
    let missing = || ApiError::NotFound(format!("the log of heads has no {}", tile.path()));
    let bytes = match tile.level {
        Some(level) => api.directory.log_tile(level, tile.index, tile.width).ok_or_else(missing)?,
        None => blocking(move || bundle(&api, tile)).await?.ok_or_else(missing)?,
    };
    Ok(cached(&headers, bytes, IMMUTABLE, "application/octet-stream"))
}

/// The entry bundle `tile`: the map-head leaves (head bodies) of its epochs, if all are signed.
fn bundle(api: &Api, tile: TilePath) -> Result<Option<Vec<u8>>, ApiError> {
    let first = tile.index.saturating_mul(keyfold_core::log::TILE_WIDTH);
    if first.saturating_add(tile.width) > api.directory.log_size() {
        return Ok(None);
    }
    let mut bodies = Vec::with_capacity(usize::try_from(tile.width).unwrap_or(0));
    for epoch in first..first + tile.width {
        let note = api.directory.head_note(Epoch(epoch)).map_err(|e| api.storage(e))?;
        let note = note.ok_or_else(|| ApiError::Internal(format!("the log has epoch {epoch} but no head")))?;
        let head = keyfold_core::split_note(&note)
            .and_then(|(text, _)| Checkpoint::parse(text))
            .and_then(|c| Head::from_checkpoint(&c))
            .map_err(|e| ApiError::Internal(format!("the stored head of epoch {epoch}: {e}")))?;
        bodies.push(head.body());
    }
    Ok(entry_bundle(bodies.iter().map(String::as_bytes)))
}

/// `body` with an ETag (quoted hex of its SHA-256) and `cache_control`, or 304 when the request's
/// `If-None-Match` names that ETag (or `*`).
pub(crate) fn cached(headers: &HeaderMap, body: Vec<u8>, cache_control: &'static str, content_type: &str) -> Response {
    use sha2::Digest;
    let etag = format!("\"{}\"", hex::encode(sha2::Sha256::digest(&body)));
    let matches =
        headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
            |tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
            },
        );
    let common = [(header::ETAG, etag.clone()), (header::CACHE_CONTROL, cache_control.to_owned())];
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, content_type.to_owned())], body).into_response()
}
