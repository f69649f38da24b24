//! The HTTP API (axum on tokio): the contract in `shared/DESIGN.md`, first part.
//!
//! Served today: `GET /v1/directory`, `POST /v1/mutations` (202 only once durable),
//! `GET /v1/keys/{key}[?epoch=N]` (value, proof and the signed head it verifies against),
//! `GET /v1/heads/latest`, `GET /v1/heads/{epoch}`, `GET /v1/epochs/{epoch}/archive` (Parquet,
//! immutable, single-range requests), `POST /v1/epochs` (operator token), `GET /healthz`.
//! Errors are `{"error": code, "message": text}`: 4xx for the client's fault, 503 + `Retry-After` for
//! back-pressure. Storage work runs on `spawn_blocking`, never on the tokio workers.

mod error;

pub use error::ApiError;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{Epoch, Mutation, Version};
use keyfold_epoch::{EpochJob, HeadStore};
use keyfold_ingest::{Limits, Queue, Receipt, Slot, validate};
use keyfold_shards::TreeStore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest request body accepted, in bytes (a full batch of the largest values fits).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// Everything the handlers share.
#[derive(Debug)]
pub struct Api<Q: Queue, S: TreeStore, H: HeadStore> {
    pub job: Arc<EpochJob<Q, S, H>>,
    pub origin: String,
    pub limits: Limits,
    /// Set by `POST /v1/epochs`; the scheduler takes it.
    pub trigger: Arc<AtomicBool>,
    /// Bearer token for operator endpoints; `None` disables them.
    pub operator_token: Option<String>,
    /// Seconds a client is told to wait when the queue is full.
    pub retry_after_secs: u64,
}

/// The router over `api`.
pub fn router<Q, S, H>(api: Arc<Api<Q, S, H>>) -> Router
where
    Q: Queue + 'static,
    S: TreeStore + 'static,
    H: HeadStore + 'static,
{
    Router::new()
        .route("/v1/directory", get(directory::<Q, S, H>))
        .route("/v1/mutations", post(submit::<Q, S, H>))
        .route("/v1/keys/{key}", get(lookup::<Q, S, H>))
        .route("/v1/heads/latest", get(latest_head::<Q, S, H>))
        .route("/v1/heads/{epoch}", get(head_at::<Q, S, H>))
        .route("/v1/epochs", post(trigger_epoch::<Q, S, H>))
        .route("/v1/epochs/{epoch}/archive", get(archive::<Q, S, H>))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /v1/directory".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

#[derive(Debug, Serialize)]
struct DirectoryInfo {
    origin: String,
    public_key: String,
    hash: &'static str,
    shard_bits: u8,
}

async fn directory<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
) -> Json<DirectoryInfo> {
    let config = api.job.map().store().config();
    Json(DirectoryInfo {
        origin: api.origin.clone(),
        public_key: B64.encode(api.job.public_key()),
        hash: config.suite.name(),
        shard_bits: config.shard_bits,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitRequest {
    mutations: Vec<MutationRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MutationRequest {
    key: String,
    /// Base64 of the new value, or null to delete.
    value: Option<String>,
    /// The version the key must have; 0 = it must not exist.
    expected_version: u64,
    /// Base64 of an owner signature (reserved; carried and hashed, not yet verified).
    #[serde(default)]
    owner_signature: Option<String>,
}

/// A receipt: the mutation id and where it waits, its queue position (embedded queue) or its
/// FoundationDB versionstamp (hex, 12 bytes).
#[derive(Debug, Serialize)]
struct ReceiptResponse {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    versionstamp: Option<String>,
}

impl From<Receipt> for ReceiptResponse {
    fn from(r: Receipt) -> ReceiptResponse {
        let (position, versionstamp) = match r.slot {
            Slot::Position(p) => (Some(p.0), None),
            Slot::Versionstamp(v) => (None, Some(hex::encode(v))),
        };
        ReceiptResponse { id: r.id.to_hex(), position, versionstamp }
    }
}

#[derive(Debug, Serialize)]
struct SubmitResponse {
    receipts: Vec<ReceiptResponse>,
}

fn decode_b64(field: &str, at: usize, text: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(text)
        .map_err(|_| ApiError::BadRequest("bad_base64", format!("mutation {at}: {field} is not valid base64")))
}

fn parse_submission(body: &[u8]) -> Result<Vec<Mutation>, ApiError> {
    let request: SubmitRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest("bad_json", format!("invalid request body: {e}")))?;
    request
        .mutations
        .into_iter()
        .enumerate()
        .map(|(at, m)| {
            Ok(Mutation {
                key: m.key.into_bytes(),
                value: m.value.map(|v| decode_b64("value", at, &v)).transpose()?,
                expected_version: Version(m.expected_version),
                owner_signature: m.owner_signature.map(|s| decode_b64("owner_signature", at, &s)).transpose()?,
            })
        })
        .collect()
}

async fn submit<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let body = body.map_err(ApiError::from_body_rejection)?;
    let mutations = parse_submission(&body)?;
    validate(&api.limits, &mutations).map_err(|e| ApiError::BadRequest("invalid_mutation", e.to_string()))?;
    let retry_after = api.retry_after_secs;
    let job = Arc::clone(&api.job);
    // Acknowledged only after `append` returns, i.e. after the group commit made it durable.
    let receipts =
        blocking(move || job.queue().append(mutations).map_err(|e| ApiError::from_queue(e, retry_after))).await?;
    let receipts = receipts.into_iter().map(ReceiptResponse::from).collect();
    Ok((StatusCode::ACCEPTED, Json(SubmitResponse { receipts })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    epoch: Option<u64>,
}

#[derive(Debug, Serialize)]
struct LookupResponse {
    epoch: u64,
    /// 0 when the key never existed.
    version: u64,
    /// Base64 of the value; null when absent or deleted.
    value: Option<String>,
    /// Base64 of the canonical proof encoding (SPEC.md section 3.1).
    proof: String,
    /// The signed head of `epoch`, whose root the proof verifies against.
    head: String,
}

async fn lookup<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    Path(key): Path<String>,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LookupResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest("bad_query", e.body_text()))?;
    if key.is_empty() || key.len() > api.limits.max_key_bytes {
        return Err(ApiError::BadRequest("invalid_key", format!("keys are 1 to {} bytes", api.limits.max_key_bytes)));
    }
    let job = Arc::clone(&api.job);
    blocking(move || {
        let (latest, _) =
            job.heads().latest().map_err(ApiError::internal)?.ok_or_else(|| ApiError::Internal("no head".into()))?;
        let epoch = Epoch(query.epoch.unwrap_or(latest.0));
        if epoch > latest {
            return Err(ApiError::NotFound(format!("epoch {epoch} has no signed head yet; the latest is {latest}")));
        }
        let head = job
            .heads()
            .get(epoch)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::NotFound(format!("no head for epoch {epoch}")))?;
        let suite = job.map().store().config().suite;
        let found = job.map().lookup(&suite.index_of(key.as_bytes()), epoch).map_err(ApiError::internal)?;
        Ok(Json(LookupResponse {
            epoch: epoch.0,
            version: found.value.as_ref().map_or(0, |v| v.version.0),
            value: found.value.as_ref().and_then(|v| v.value.as_ref()).map(|v| B64.encode(v)),
            proof: B64.encode(found.proof.encode()),
            head,
        }))
    })
    .await
}

fn note_response(note: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

async fn latest_head<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
) -> Result<Response, ApiError> {
    let job = Arc::clone(&api.job);
    let (_, note) = blocking(move || {
        job.heads().latest().map_err(ApiError::internal)?.ok_or_else(|| ApiError::Internal("no head".into()))
    })
    .await?;
    Ok(note_response(note))
}

async fn head_at<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    Path(epoch): Path<String>,
) -> Result<Response, ApiError> {
    let epoch: u64 =
        epoch.parse().map_err(|_| ApiError::BadRequest("bad_epoch", format!("{epoch:?} is not an epoch number")))?;
    let job = Arc::clone(&api.job);
    let note = blocking(move || job.heads().get(Epoch(epoch)).map_err(ApiError::internal)).await?;
    note.map(note_response).ok_or_else(|| ApiError::NotFound(format!("no signed head for epoch {epoch}")))
}

async fn trigger_epoch<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(token) = &api.operator_token else {
        return Err(ApiError::Forbidden(
            "operator endpoints are disabled: start the server with --operator-token".into(),
        ));
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given != Some(token.as_str()) {
        return Err(ApiError::Unauthorized("send `Authorization: Bearer <operator token>`".into()));
    }
    api.trigger.store(true, Ordering::Release);
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "triggered": true }))))
}

/// Parses a single `bytes=` range against a body of `len` bytes: `Ok(None)` for no Range header,
/// `Err(())` when unsatisfiable or not a single byte range.
fn parse_range(headers: &HeaderMap, len: usize) -> Result<Option<std::ops::Range<usize>>, ()> {
    let Some(value) = headers.get(header::RANGE) else { return Ok(None) };
    let spec = value.to_str().map_err(|_| ())?.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(()); // several ranges: not served
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: usize = suffix.parse().map_err(|_| ())?;
            len.saturating_sub(n)..len
        }
        (start, "") => start.parse().map_err(|_| ())?..len,
        (start, end) => {
            start.parse().map_err(|_| ())?..end.parse::<usize>().map_err(|_| ())?.saturating_add(1).min(len)
        }
    };
    if range.start >= range.end || range.start >= len {
        return Err(());
    }
    Ok(Some(range))
}

async fn archive<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    Path(epoch): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let epoch: u64 =
        epoch.parse().map_err(|_| ApiError::BadRequest("bad_epoch", format!("{epoch:?} is not an epoch number")))?;
    let job = Arc::clone(&api.job);
    let (bytes, digest) = blocking(move || {
        // Only archives of published epochs are served (one whose head is not stored yet may
        // still be rewritten by a recovering run).
        if job.heads().get(Epoch(epoch)).map_err(ApiError::internal)?.is_none() {
            return Err(ApiError::NotFound(format!("epoch {epoch} has no signed head")));
        }
        let bytes = job.archives().get(Epoch(epoch)).map_err(ApiError::internal)?;
        let bytes =
            bytes.ok_or_else(|| ApiError::NotFound(format!("epoch {epoch} has no archive (it predates archives)")))?;
        let digest = job.map().store().config().suite.archive_digest(&bytes);
        Ok((bytes, digest))
    })
    .await?;
    let common = [
        (header::CONTENT_TYPE, "application/vnd.apache.parquet".to_owned()),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable".to_owned()),
        (header::ETAG, format!("\"{}\"", digest.to_hex())),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
    ];
    match parse_range(&headers, bytes.len()) {
        Ok(None) => Ok((StatusCode::OK, common, bytes).into_response()),
        Ok(Some(range)) => {
            let content_range = format!("bytes {}-{}/{}", range.start, range.end - 1, bytes.len());
            let mut response = (StatusCode::PARTIAL_CONTENT, common, bytes[range].to_vec()).into_response();
            response.headers_mut().insert(header::CONTENT_RANGE, content_range.parse().expect("ascii"));
            Ok(response)
        }
        Err(()) => {
            let mut response = ApiError::RangeNotSatisfiable(format!(
                "the archive has {} bytes; send one `bytes=a-b` range",
                bytes.len()
            ))
            .into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, format!("bytes */{}", bytes.len()).parse().expect("ascii"));
            Ok(response)
        }
    }
}
