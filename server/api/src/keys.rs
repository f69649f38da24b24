//! Keys: `GET /v1/keys/{key}` (value, proof and the signed head) and `GET /v1/keys/{key}/history`.

use super::*;
use keyfold_verify::wire::{HistoryResponse, KeyVersionResponse, LookupAnswer};

/// A key in a path: 1 to `max_key_bytes` bytes.
pub(crate) fn check_key(limits: &Limits, key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > limits.max_key_bytes {
        return Err(ApiError::BadRequest("invalid_key", format!("keys are 1 to {} bytes", limits.max_key_bytes)));
    }
    keyfold_ingest::check_key_text(key.as_bytes()).map_err(|e| ApiError::BadRequest("invalid_key", e.to_string()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LookupQuery {
    /// A past epoch (default: the latest).
    epoch: Option<u64>,
    /// A log size the client already holds: the answer carries the consistency proof from it to
    /// the latest checkpoint.
    from: Option<u64>,
}

/// Look a key up, at the latest or a past epoch, with an inclusion or absence proof.
#[utoipa::path(get, path = "/v1/keys/{key}", tag = "keys",
    params(("key" = String, Path, description = "The key (user id)"), LookupQuery),
    responses(
        (status = 200, description = "Value, proof and signed head", body = LookupAnswer),
        (status = 400, description = "Bad key, path or query", body = ErrorBody),
        (status = 404, description = "No such epoch yet", body = ErrorBody),
        (status = 410, description = "The epoch is outside the directory's retention window", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn lookup(
    State(api): State<Arc<Api>>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> Result<Json<LookupAnswer>, ApiError> {
    check_key(&api.limits, &key)?;
    let served = Arc::clone(&api);
    blocking(move || lookup_answer(&served, &key, query.epoch.map(Epoch), query.from).map(Json)).await
}

/// The lookup of `key` at `epoch` (default: the latest), with the proofs a client needs from the
/// log size `from` it holds.
fn lookup_answer(served: &Api, key: &str, epoch: Option<Epoch>, from: Option<u64>) -> Result<LookupAnswer, ApiError> {
    lookup_answer_in(served, key, epoch, from, &latest_of(served)?)
}

/// The latest epoch and its signed head note.
fn latest_of(served: &Api) -> Result<(Epoch, String), ApiError> {
    let latest = served.directory.latest_head_note().map_err(|e| served.storage(e))?;
    latest.ok_or_else(|| ApiError::Internal("no head".into()))
}

/// [`lookup_answer`] proven into the log of `latest` (an epoch and its head note), so that two
/// answers of one response share their latest checkpoint.
fn lookup_answer_in(
    served: &Api,
    key: &str,
    epoch: Option<Epoch>,
    from: Option<u64>,
    (latest, latest_note): &(Epoch, String),
) -> Result<LookupAnswer, ApiError> {
    let (job, latest) = (&served.directory, *latest);
    let epoch = epoch.unwrap_or(latest);
    let head = match epoch.cmp(&latest) {
        std::cmp::Ordering::Equal => latest_note.clone(), // the common case: no second read
        std::cmp::Ordering::Greater => {
            return Err(ApiError::NotFound(format!("epoch {epoch} has no signed head yet; the latest is {latest}")));
        }
        std::cmp::Ordering::Less => job
            .head_note(epoch)
            .map_err(|e| served.storage(e))?
            .ok_or_else(|| ApiError::NotFound(format!("no head for epoch {epoch}")))?,
    };
    let suite = job.suite();
    let found = job.lookup(&suite.index_of(key.as_bytes()), epoch).map_err(|e| served.storage(e))?;
    let size = latest.0 + 1;
    let (checkpoint, head_inclusion) = if epoch < latest {
        let proof = job.log_inclusion(epoch.0, size).map_err(|e| ApiError::Internal(e.to_string()))?;
        (Some(served.served_note(latest, latest_note.clone())?), Some(crate::log::encode_proof(&proof)))
    } else {
        (None, None)
    };
    Ok(LookupAnswer {
        checkpoint,
        head_inclusion,
        consistency: crate::log::consistency_from(served, from, size),
        rollovers: crate::log::rollovers_after(served, from, size)?,
        epoch: epoch.0,
        version: found.value.as_ref().map_or(0, |v| v.version.0),
        value: found.value.as_ref().and_then(|v| v.value.as_ref()).map(|v| B64.encode(v)),
        version_epoch: found.value.as_ref().map_or(0, |v| v.epoch.0),
        previous: found.value.as_ref().map(|v| B64.encode(v.previous.0)),
        proof: B64.encode(found.proof.encode()),
        head: served.served_note(epoch, head)?,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only versions from epochs after this one. The last page then carries `start`, the key's
    /// lookup at this epoch, so the listing verifies as the key's complete history after it.
    after: Option<u64>,
    /// Only versions above this one: the page cursor, `next_after_version` of the previous page.
    /// A key's versions strictly increase in (epoch, queue position) order, so paging by version
    /// lists each exactly once, however many share an epoch.
    after_version: Option<u64>,
    /// At most this many versions (default 100, at most 1000); a page also ends after 1 MiB of
    /// values.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// A log size the client already holds: the last page's lookup carries the consistency proof
    /// from it to the latest checkpoint.
    from: Option<u64>,
}

const HISTORY_LIMIT_DEFAULT: usize = 100;
const HISTORY_LIMIT_MAX: usize = 1000;
/// A page ends after the version that brings its values to this many bytes.
const HISTORY_PAGE_BYTES: usize = 1 << 20;

/// A key's versions with the epoch and value of each, oldest first, in pages of at most `limit`
/// that follow each other by the version cursor `after_version`. The last page carries the key's
/// lookup at the epoch the listing is complete through, so the versions can be checked against
/// the signed leaf (SPEC section 1.3).
#[utoipa::path(get, path = "/v1/keys/{key}/history", tag = "keys",
    params(("key" = String, Path, description = "The key (user id)"), HistoryQuery),
    responses(
        (status = 200, description = "A page of versions", body = HistoryResponse),
        (status = 400, description = "Bad key, path or query", body = ErrorBody),
        (status = 404, description = "This server keeps no history index", body = ErrorBody),
        (status = 410, description = "`after` is an epoch outside the directory's retention window", body = ErrorBody),
        (status = 503, description = "Storage unavailable, or the history index is catching up with the signed \
            epochs: retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn key_history(
    State(api): State<Arc<Api>>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    check_key(&api.limits, &key)?;
    let limit = query.limit.unwrap_or(HISTORY_LIMIT_DEFAULT);
    if limit == 0 || limit > HISTORY_LIMIT_MAX {
        return Err(ApiError::BadRequest("bad_query", format!("limit is 1 to {HISTORY_LIMIT_MAX}")));
    }
    let after =
        HistoryAfter { epoch: Epoch(query.after.unwrap_or(0)), version: Version(query.after_version.unwrap_or(0)) };
    let served = Arc::clone(&api);
    blocking(move || {
        // The lookup first: the listing is cut at its epoch, and must reach it.
        let latest = latest_of(&served)?;
        let lookup = lookup_answer_in(&served, &key, None, query.from, &latest)?;
        let index = served.directory.suite().index_of(key.as_bytes());
        let page = served
            .directory
            .key_history(&index, after, limit + 1)
            .map_err(|e| served.storage(e))?
            .ok_or_else(|| ApiError::NotFound("this server keeps no history index".into()))?;
        // A lagging index would give a page with versions missing, silently: say so instead.
        if let Some((indexed, latest)) = served.directory.index_lag().map_err(|e| served.storage(e))?
            && indexed.0 < lookup.epoch
        {
            return Err(ApiError::Unavailable {
                retry_after_secs: served.retry_after_secs,
                message: format!(
                    "the history index is catching up (indexed through epoch {indexed}, signed through \
                     epoch {latest}): retry"
                ),
            });
        }
        let mut answer = history_page(page, limit, lookup);
        // Where a listing after an epoch starts: the key at that epoch, in the same checkpoint
        // (from its own size, so no consistency proof or rollover is repeated).
        if let Some(after) = query.after.filter(|&after| after < latest.0.0 && answer.lookup.is_some()) {
            let at = Some(Epoch(after));
            answer.start = Some(lookup_answer_in(&served, &key, at, Some(latest.0.0 + 1), &latest)?);
        }
        Ok(Json(answer))
    })
    .await
}

/// A page of `listed` (up to `limit` + 1 versions from the index): the versions up to the
/// lookup's epoch, at most `limit` of them and about [`HISTORY_PAGE_BYTES`] of values; the
/// lookup only when nothing is left out.
fn history_page(listed: Vec<keyfold_epoch::KeyVersion>, limit: usize, lookup: LookupAnswer) -> HistoryResponse {
    let mut versions = Vec::new();
    let (mut bytes, mut more) = (0, false);
    for v in listed.into_iter().take_while(|v| v.epoch.0 <= lookup.epoch) {
        if versions.len() == limit || (bytes >= HISTORY_PAGE_BYTES && !versions.is_empty()) {
            more = true;
            break;
        }
        bytes += v.value.as_ref().map_or(0, Vec::len);
        let value = v.value.as_ref().map(|v| B64.encode(v));
        versions.push(KeyVersionResponse { epoch: v.epoch.0, version: v.version.0, deleted: v.deleted(), value });
    }
    let next_after_version = more.then(|| versions.last().map(|v: &KeyVersionResponse| v.version)).flatten();
    HistoryResponse { versions, next_after_version, lookup: (!more).then_some(lookup), start: None }
}
