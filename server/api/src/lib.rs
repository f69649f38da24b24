//! The HTTP API (axum on tokio): the contract in `shared/DESIGN.md`, first part.
//!
//! Served today: `GET /v1/directory`, `POST /v1/mutations` (202 only once durable),
//! `GET /v1/keys/{key}[?epoch=N]` (value, proof and the signed head it verifies against),
//! `GET /v1/heads/latest`, `GET /v1/heads/{epoch}`, `GET /v1/epochs/{epoch}/archive` (Parquet,
//! immutable, single-range requests), `POST /v1/epochs` (operator token), `GET /healthz`,
//! `GET /metrics` (Prometheus text) and `GET /openapi.json` (generated from the handlers' annotations
//! in this file by utoipa; a test checks it lists exactly the served routes).
//! Errors are `{"error": code, "message": text}`: 4xx for the client's fault, 503 + `Retry-After` for
//! back-pressure. Storage work runs on `spawn_blocking`, never on the tokio workers.

mod archive;
mod body_budget;
mod error;
mod extract;
mod log_limit;
mod metrics_layer;
mod openapi;

pub use archive::{ARCHIVE_PIECE_BYTES, ARCHIVE_READS_MAX_DEFAULT, ArchiveReads, VERIFIED_ARCHIVES_MAX};
pub use body_budget::{BodyBudget, with_body_budget};
pub use error::{ApiError, ErrorBody};
pub use log_limit::LogLimiter;
pub use metrics_layer::install_recorder;
pub use openapi::openapi;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use extract::{ApiPath, ApiQuery};
use keyfold_core::{Epoch, Mutation, Version};
use keyfold_core::{Witness, verify_cosignature, verify_head_note, with_cosignatures};
use keyfold_epoch::{
    CosignaturePut, CosignatureStore, EpochError, EpochJob, HeadStore, HistoryAfter, MutationStatus, SchedulerHealth,
    SchedulerState,
};
use keyfold_ingest::{Limits, Queue, Receipt, Slot, validate};
use keyfold_map::TreeStore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest request body accepted, in bytes (a full batch of the largest values fits).
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// How far in the future (by this server's clock) a cosignature's time may be, by default: a
/// witness's clock may run a little ahead, not minutes.
pub const COSIGNATURE_MAX_FUTURE_SECS_DEFAULT: u64 = 300;

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
    /// Renders `/metrics`; `None` serves 404 there (no recorder installed in this process).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The witnesses whose cosignatures this server accepts, in the order their lines are served.
    pub witnesses: Vec<Witness>,
    pub cosignatures: Arc<dyn CosignatureStore>,
    /// The epoch scheduler's state: once it has stopped, writes are refused and `/healthz` fails.
    pub scheduler: Arc<SchedulerHealth>,
    /// A cosignature dated more than this many seconds after this server's clock is refused
    /// ([`COSIGNATURE_MAX_FUTURE_SECS_DEFAULT`]).
    pub cosignature_max_future_secs: u64,
    /// The bound on archive downloads in flight and the archives verified against their heads
    /// (`ArchiveReads::new(ARCHIVE_READS_MAX_DEFAULT)` by default).
    pub archive_reads: ArchiveReads,
}

/// Seconds a writer is told to wait once the scheduler has stopped: only an operator's repair and
/// restart brings it back, so not soon.
const SCHEDULER_STOPPED_RETRY_AFTER_SECS: u64 = 60;

impl<Q: Queue, S: TreeStore, H: HeadStore> Api<Q, S, H> {
    /// 503 naming the cause once the epoch scheduler has stopped: a mutation accepted now would
    /// stay pending forever. Reads go on (signed data stays verifiable for monitors).
    fn refuse_writes_if_stopped(&self) -> Result<(), ApiError> {
        let Some(cause) = self.scheduler.stopped_cause() else { return Ok(()) };
        Err(ApiError::Unavailable {
            retry_after_secs: SCHEDULER_STOPPED_RETRY_AFTER_SECS,
            message: format!(
                "the epoch scheduler has stopped ({cause}); no epoch will be cut, so writes are refused \
                 until an operator repairs the cause and restarts the server; reads still work"
            ),
        })
    }

    /// `note` (the head of `epoch`) with the stored cosignature lines appended, in witness order.
    fn served_note(&self, epoch: Epoch, note: String) -> Result<String, ApiError> {
        let stored = self.cosignatures.get(epoch).map_err(|e| self.storage(e))?;
        if stored.is_empty() {
            return Ok(note);
        }
        let lines: Vec<String> = self.witnesses.iter().filter_map(|w| stored.get(&w.name).cloned()).collect();
        Ok(with_cosignatures(&note, &lines))
    }

    /// A storage error answering a read: 503 + `Retry-After` when retryable, else 500.
    fn storage(&self, e: EpochError) -> ApiError {
        ApiError::from_storage(e, self.retry_after_secs)
    }
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
        .route("/v1/mutations/{id}", get(mutation_status::<Q, S, H>))
        .route("/v1/keys/{key}", get(lookup::<Q, S, H>))
        .route("/v1/keys/{key}/history", get(key_history::<Q, S, H>))
        .route("/v1/heads/latest", get(latest_head::<Q, S, H>))
        .route("/v1/heads/{epoch}", get(head_at::<Q, S, H>))
        .route("/v1/heads/{epoch}/cosignatures", post(post_cosignature::<Q, S, H>))
        .route("/v1/epochs", post(trigger_epoch::<Q, S, H>))
        .route("/v1/epochs/{epoch}/archive", get(archive::archive::<Q, S, H>))
        .route("/healthz", get(healthz::<Q, S, H>))
        .route("/metrics", get(metrics_text::<Q, S, H>))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /openapi.json".into()) })
        // After every route: applies to the routes added so far. axum adds the `Allow` header.
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::MethodNotAllowed(format!("{method} is not allowed here; see /openapi.json"))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(axum::middleware::from_fn(metrics_layer::record_request))
        .with_state(api)
}

/// `router` with every request bounded by `timeout`: one not handled in time (a body trickling in,
/// say) is answered 408 and its connection closed. Nothing is half-applied: a submission is
/// acknowledged only by its response, so one cut by the timeout was not acknowledged.
pub fn with_request_timeout(router: Router, timeout: std::time::Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => axum::response::IntoResponse::into_response(ApiError::Timeout(format!(
                    "the request was not completed within {} ms",
                    timeout.as_millis()
                ))),
            }
        },
    ))
}

/// A request whose declared `Content-Length` is over the limit is answered 413 at once, before
/// any of its body is read (the body limit alone would wait for the bytes to arrive).
async fn refuse_declared_oversize(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        let message = format!("request bodies are at most {MAX_BODY_BYTES} bytes");
        return axum::response::IntoResponse::into_response(ApiError::PayloadTooLarge(message));
    }
    next.run(request).await
}

/// The server's health, for load balancers and supervisors.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HealthResponse {
    /// `ok`; `retrying`: epochs fail with a retryable error (a full disk, say) and are retried
    /// with backoff, writes are still accepted; `stopped`: the epoch scheduler ended on a fatal
    /// error or a panic, no epoch will be cut until an operator repairs the cause and restarts the
    /// server, writes are refused, reads are served.
    status: &'static str,
    /// `scheduler_stopped` when stopped (the error body's code).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// When retrying or stopped: what failed, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// When retrying: the failed attempts so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    /// When retrying: when the first of them failed (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    since_ms: Option<u64>,
}

/// Health: 200 while epochs are cut (or retried after retryable failures), 503 once the epoch
/// scheduler has stopped, with the cause.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Serving, and epochs are cut (`ok`) or retried after retryable failures \
            (`retrying`, with the last error)", body = HealthResponse),
        (status = 503, description = "The epoch scheduler has stopped (`stopped`, with the cause): writes are \
            refused until an operator repairs it and restarts the server; reads are served", body = HealthResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn healthz<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
) -> Response {
    let none = HealthResponse { status: "ok", error: None, message: None, attempts: None, since_ms: None };
    match api.scheduler.state() {
        SchedulerState::Running => Json(none).into_response(),
        SchedulerState::Retrying { since_ms, attempts, last_error } => Json(HealthResponse {
            status: "retrying",
            message: Some(format!("epochs are failing and being retried: {last_error}")),
            attempts: Some(attempts),
            since_ms: Some(since_ms),
            ..none
        })
        .into_response(),
        SchedulerState::Stopped { cause } => {
            let body = HealthResponse {
                status: "stopped",
                error: Some("scheduler_stopped"),
                message: Some(format!("the epoch scheduler has stopped: {cause}; writes are refused")),
                ..none
            };
            let retry = [(header::RETRY_AFTER, SCHEDULER_STOPPED_RETRY_AFTER_SECS.to_string())];
            (StatusCode::SERVICE_UNAVAILABLE, retry, Json(body)).into_response()
        }
    }
}

/// Prometheus metrics: queue depth, epoch phase durations, mutation outcomes, request latency.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 404, description = "No metrics recorder in this process", body = ErrorBody),
    ))]
async fn metrics_text<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
) -> Result<Response, ApiError> {
    let Some(handle) = api.metrics.clone() else {
        return Err(ApiError::NotFound("metrics are not enabled in this process".into()));
    };
    let job = Arc::clone(&api.job);
    // Read at scrape time from this server's queue, so it is never stale.
    let (depth, bytes) = blocking(move || Ok((job.queue().depth(), job.queue().pending_bytes()))).await?;
    let mut text = handle.render();
    text.push_str(&format!(
        "# HELP keyfold_queue_depth Mutations queued and not yet consumed by an epoch.\n\
         # TYPE keyfold_queue_depth gauge\nkeyfold_queue_depth {depth}\n\
         # HELP keyfold_queue_bytes Bytes of the mutations queued and not yet consumed (their canonical encodings).\n\
         # TYPE keyfold_queue_bytes gauge\nkeyfold_queue_bytes {bytes}\n"
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI document", body = Object)))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::openapi_text()).into_response()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

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

/// A batch of mutations, appended all or nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    #[schema(min_items = 1, max_items = 1000)]
    mutations: Vec<MutationRequest>,
}

/// Set a key's value (or delete it) if its version is `expected_version`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MutationRequest {
    /// The key (user id), 1 to 1024 bytes of UTF-8 (256 characters always fit).
    #[schema(min_length = 1, max_length = 256)]
    key: String,
    /// Canonical base64 of the new value (at most 64 KiB), or null to delete.
    #[schema(
        max_length = 87380,
        pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    value: Option<String>,
    /// The version the key must have; 0 = it must not exist.
    #[serde(deserialize_with = "integral_u64")]
    expected_version: u64,
    /// Base64 of an owner signature, at most 512 bytes (reserved; carried and hashed, not yet verified).
    #[serde(default)]
    #[schema(
        max_length = 680,
        pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    owner_signature: Option<String>,
}

/// A receipt: the mutation id and where it waits, its queue position (embedded queue) or its
/// FoundationDB versionstamp (hex, 12 bytes).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReceiptResponse {
    /// Hex of the mutation id (SPEC section 5).
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

/// One receipt per submitted mutation, in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SubmitResponse {
    receipts: Vec<ReceiptResponse>,
}

/// A key in a path: 1 to `max_key_bytes` bytes.
fn check_key(limits: &Limits, key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > limits.max_key_bytes {
        return Err(ApiError::BadRequest("invalid_key", format!("keys are 1 to {} bytes", limits.max_key_bytes)));
    }
    keyfold_ingest::check_key_text(key.as_bytes()).map_err(|e| ApiError::BadRequest("invalid_key", e.to_string()))
}

/// 2^53: every integer below it is exact as a float; at or above it, a float may be a rounded
/// neighbour of the number that was sent (`9007199254740993.0` reads as ...992).
const FLOAT_EXACT_BELOW: f64 = 9_007_199_254_740_992.0;

/// A JSON integer, also written with a zero fraction (`3.0`): JSON Schema's `integer` allows both.
/// A float is taken only below 2^53, where it is exact; above, the client must send an integer.
fn integral_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(u64),
        Float(f64),
    }
    match Number::deserialize(d)? {
        Number::Int(n) => Ok(n),
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range and fraction checked
        Number::Float(f) if f.fract() == 0.0 && (0.0..FLOAT_EXACT_BELOW).contains(&f) => Ok(f as u64),
        Number::Float(f) if f.fract() == 0.0 && f >= FLOAT_EXACT_BELOW => Err(serde::de::Error::custom(format!(
            "{f:e} is a float at or above 2^53, which may not be the number sent: send the version as an integer"
        ))),
        Number::Float(f) => {
            Err(serde::de::Error::custom(format!("{f} is not a version: send an integer from 0 to 2^64-1")))
        }
    }
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

/// Queue mutations for the next epoch. Answers 202 only once they are durable.
#[utoipa::path(post, path = "/v1/mutations", tag = "mutations", request_body = SubmitRequest,
    responses(
        (status = 202, description = "Durably queued", body = SubmitResponse),
        (status = 400, description = "Bad JSON, base64 or limits", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Queue full, request body budget spent, storage unavailable (see \
            Retry-After), or the epoch scheduler has stopped (the message names the cause)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn submit<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    api.refuse_writes_if_stopped()?;
    let body = body.map_err(ApiError::from_body_rejection)?;
    let mutations = parse_submission(&body)?;
    validate(&api.limits, &mutations).map_err(|e| ApiError::BadRequest("invalid_mutation", e.to_string()))?;
    let retry_after = api.retry_after_secs;
    let job = Arc::clone(&api.job);
    // Acknowledged only after `append` returns, i.e. after the group commit made it durable.
    let receipts = blocking(move || job.submit(mutations).map_err(|e| ApiError::from_queue(e, retry_after))).await?;
    let receipts = receipts.into_iter().map(ReceiptResponse::from).collect();
    Ok((StatusCode::ACCEPTED, Json(SubmitResponse { receipts })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LookupQuery {
    /// A past epoch (default: the latest).
    epoch: Option<u64>,
}

/// A key's value at an epoch, with the proof and the signed head to check it against.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LookupResponse {
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

/// Look a key up, at the latest or a past epoch, with an inclusion or absence proof.
#[utoipa::path(get, path = "/v1/keys/{key}", tag = "keys",
    params(("key" = String, Path, description = "The key (user id)"), LookupQuery),
    responses(
        (status = 200, description = "Value, proof and signed head", body = LookupResponse),
        (status = 400, description = "Bad key, path or query", body = ErrorBody),
        (status = 404, description = "No such epoch yet", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn lookup<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    ApiPath(key): ApiPath<String>,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> Result<Json<LookupResponse>, ApiError> {
    check_key(&api.limits, &key)?;
    let job = Arc::clone(&api.job);
    let served = Arc::clone(&api);
    blocking(move || {
        let (latest, latest_note) =
            job.heads().latest().map_err(|e| served.storage(e))?.ok_or_else(|| ApiError::Internal("no head".into()))?;
        let epoch = Epoch(query.epoch.unwrap_or(latest.0));
        let head = match epoch.cmp(&latest) {
            std::cmp::Ordering::Equal => latest_note, // the common case: no second read
            std::cmp::Ordering::Greater => {
                return Err(ApiError::NotFound(format!(
                    "epoch {epoch} has no signed head yet; the latest is {latest}"
                )));
            }
            std::cmp::Ordering::Less => job
                .heads()
                .get(epoch)
                .map_err(|e| served.storage(e))?
                .ok_or_else(|| ApiError::NotFound(format!("no head for epoch {epoch}")))?,
        };
        let suite = job.map().store().config().suite;
        let found = job
            .map()
            .lookup(&suite.index_of(key.as_bytes()), epoch)
            .map_err(|e| served.storage(EpochError::from(e)))?;
        Ok(Json(LookupResponse {
            epoch: epoch.0,
            version: found.value.as_ref().map_or(0, |v| v.version.0),
            value: found.value.as_ref().and_then(|v| v.value.as_ref()).map(|v| B64.encode(v)),
            proof: B64.encode(found.proof.encode()),
            head: served.served_note(epoch, head)?,
        }))
    })
    .await
}

fn note_response(note: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

/// Where a mutation is: pending, or consumed by an epoch with its outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MutationStatusResponse {
    /// Hex of the mutation id.
    id: String,
    /// `pending`, `applied`, `rejected` or `duplicate`.
    status: &'static str,
    /// The epoch that consumed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    /// Its queue position.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_version: Option<u64>,
    /// The key's version after it (applied only).
    #[serde(skip_serializing_if = "Option::is_none")]
    new_version: Option<u64>,
    /// Why it was rejected: the archived reason code (`version_mismatch`, `nothing_to_delete`;
    /// SPEC section 7).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// What the reason code means, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_text: Option<String>,
}

/// The meaning of an archived reason code (an unknown code is shown as such, never guessed).
fn reason_text(code: &str) -> String {
    keyfold_verify::RejectReason::CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or_else(|| format!("unknown reason code {code:?}"), |(_, meaning)| (*meaning).to_owned())
}

/// A mutation's status by the id its receipt gave.
#[utoipa::path(get, path = "/v1/mutations/{id}", tag = "mutations",
    params(("id" = String, Path, description = "Hex of the 32-byte mutation id", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "Pending, or its outcome", body = MutationStatusResponse),
        (status = 400, description = "Not a mutation id", body = ErrorBody),
        (status = 404, description = "Neither pending nor in any signed epoch", body = ErrorBody),
        (status = 503, description = "Storage unavailable, or not pending while the outcome index catches up with \
            the signed epochs: retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn mutation_status<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MutationStatusResponse>, ApiError> {
    let bytes: [u8; 32] = hex::decode(&id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::BadRequest("bad_mutation_id", "a mutation id is 64 hex digits".into()))?;
    let job = Arc::clone(&api.job);
    let mutation = keyfold_core::MutationId(keyfold_core::Hash(bytes));
    let retry = api.retry_after_secs;
    let status = blocking(move || job.mutation_status(&mutation).map_err(|e| ApiError::from_storage(e, retry))).await?;
    let empty = MutationStatusResponse {
        id: id.to_ascii_lowercase(),
        status: "pending",
        epoch: None,
        position: None,
        expected_version: None,
        new_version: None,
        reason: None,
        reason_text: None,
    };
    match status {
        MutationStatus::Pending => Ok(Json(empty)),
        MutationStatus::Done(r) => Ok(Json(MutationStatusResponse {
            status: r.outcome.as_str(),
            epoch: Some(r.epoch.0),
            position: Some(r.position),
            expected_version: Some(r.expected_version.0),
            new_version: r.new_version.map(|v| v.0),
            reason_text: r.reason.as_deref().map(reason_text),
            reason: r.reason,
            ..empty
        })),
        MutationStatus::NotYetIndexed { indexed_through, latest } => Err(ApiError::Unavailable {
            retry_after_secs: api.retry_after_secs,
            message: format!(
                "mutation {id} is not pending; the outcome index is catching up (indexed through epoch \
                 {indexed_through}, signed through epoch {latest}), so it may be in a signed epoch: retry"
            ),
        }),
        MutationStatus::Unknown => {
            Err(ApiError::NotFound(format!("mutation {id} is neither pending on this server nor in an indexed epoch")))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Only versions from epochs after this one.
    after: Option<u64>,
    /// Only versions above this one: the page cursor, `next_after_version` of the previous page.
    /// A key's versions strictly increase in (epoch, queue position) order, so paging by version
    /// lists each exactly once, however many share an epoch.
    after_version: Option<u64>,
    /// At most this many versions (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One applied change of a key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct KeyVersionResponse {
    epoch: u64,
    version: u64,
    /// The value was deleted at this version.
    deleted: bool,
}

/// A page of a key's versions, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryResponse {
    versions: Vec<KeyVersionResponse>,
    /// Pass as `after_version` (with the same `after`, if any) for the next page; absent on the
    /// last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after_version: Option<u64>,
}

const HISTORY_LIMIT_DEFAULT: usize = 100;
const HISTORY_LIMIT_MAX: usize = 1000;

/// A key's versions with the epoch of each, oldest first, in pages of at most `limit` that
/// follow each other by the version cursor `after_version`.
#[utoipa::path(get, path = "/v1/keys/{key}/history", tag = "keys",
    params(("key" = String, Path, description = "The key (user id)"), HistoryQuery),
    responses(
        (status = 200, description = "A page of versions", body = HistoryResponse),
        (status = 400, description = "Bad key, path or query", body = ErrorBody),
        (status = 404, description = "This server keeps no history index", body = ErrorBody),
        (status = 503, description = "Storage unavailable, or the history index is catching up with the signed \
            epochs: retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn key_history<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
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
    let mut page = blocking(move || {
        // A lagging index would give a page with versions missing, silently: say so instead.
        if let Some((indexed, latest)) = served.job.index_lag().map_err(|e| served.storage(e))? {
            return Err(ApiError::Unavailable {
                retry_after_secs: served.retry_after_secs,
                message: format!(
                    "the history index is catching up (indexed through epoch {indexed}, signed through \
                     epoch {latest}): retry"
                ),
            });
        }
        let index = served.job.map().store().config().suite.index_of(key.as_bytes());
        served.job.key_history(&index, after, limit + 1).map_err(|e| served.storage(e))
    })
    .await?
    .ok_or_else(|| ApiError::NotFound("this server keeps no history index".into()))?;
    let mut next_after_version = None;
    if page.len() > limit {
        page.truncate(limit);
        next_after_version = page.last().map(|v| v.version.0);
    }
    let versions = page
        .into_iter()
        .map(|v| KeyVersionResponse { epoch: v.epoch.0, version: v.version.0, deleted: v.deleted })
        .collect();
    Ok(Json(HistoryResponse { versions, next_after_version }))
}

/// The latest signed head (a C2SP signed note).
#[utoipa::path(get, path = "/v1/heads/latest", tag = "heads",
    responses(
        (status = 200, description = "Signed note", body = String, content_type = "text/plain"),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn latest_head<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
) -> Result<Response, ApiError> {
    let served = Arc::clone(&api);
    let note = blocking(move || {
        let (epoch, note) = served
            .job
            .heads()
            .latest()
            .map_err(|e| served.storage(e))?
            .ok_or_else(|| ApiError::Internal("no head".into()))?;
        served.served_note(epoch, note)
    })
    .await?;
    Ok(note_response(note))
}

/// The signed head of one epoch.
#[utoipa::path(get, path = "/v1/heads/{epoch}", tag = "heads",
    params(("epoch" = u64, Path, description = "Epoch number")),
    responses(
        (status = 200, description = "Signed note", body = String, content_type = "text/plain"),
        (status = 400, description = "Not an epoch number", body = ErrorBody),
        (status = 404, description = "No head for that epoch", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn head_at<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    ApiPath(epoch): ApiPath<String>,
) -> Result<Response, ApiError> {
    let epoch: u64 =
        epoch.parse().map_err(|_| ApiError::BadRequest("bad_epoch", format!("{epoch:?} is not an epoch number")))?;
    let served = Arc::clone(&api);
    let note = blocking(move || match served.job.heads().get(Epoch(epoch)).map_err(|e| served.storage(e))? {
        Some(note) => served.served_note(Epoch(epoch), note).map(Some),
        None => Ok(None),
    })
    .await?;
    note.map(note_response).ok_or_else(|| ApiError::NotFound(format!("no signed head for epoch {epoch}")))
}

/// One cosignature line, as the request body of `POST /v1/heads/{epoch}/cosignatures`.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^\u{2014} [!-~]{1,255} [A-Za-z0-9+/=]{104}\n?$")]
#[allow(dead_code)] // documents the body; the handler reads raw text
pub(crate) struct CosignatureLine(String);

/// Longest cosignature line accepted (a 255-byte name and a 76-byte signature blob fit).
const MAX_COSIGNATURE_BYTES: usize = 1024;

/// A witness's cosignature of a head: one line `— <name> <base64(key id || time || signature)>`
/// (SPEC section 6.3), verified against the configured witness key before it is stored. Its time
/// must not be before the head's time (seconds, rounded down) nor more than the configured skew
/// after this server's clock. A witness's stored line is replaced only by a newer one: an older
/// line is refused with 409 and the same line again is answered 201 (idempotent).
#[utoipa::path(post, path = "/v1/heads/{epoch}/cosignatures", tag = "heads",
    params(("epoch" = u64, Path, description = "Epoch number")),
    request_body(content = CosignatureLine, content_type = "text/plain", description = "One cosignature line"),
    responses(
        (status = 201, description = "Verified and stored (or the same line was already stored)", body = Object),
        (status = 400, description = "Not a cosignature line, it does not verify (`bad_cosignature`), or its \
            time is before the head or too far in the future (`bad_cosignature_time`)", body = ErrorBody),
        (status = 403, description = "Not a witness this server accepts", body = ErrorBody),
        (status = 404, description = "No head for that epoch", body = ErrorBody),
        (status = 409, description = "A newer cosignature from this witness is stored (`stale_cosignature`); \
            it is kept", body = ErrorBody),
        (status = 413, description = "Line too long", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn post_cosignature<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    ApiPath(epoch): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let epoch: u64 =
        epoch.parse().map_err(|_| ApiError::BadRequest("bad_epoch", format!("{epoch:?} is not an epoch number")))?;
    let body = body.map_err(ApiError::from_body_rejection)?;
    if body.len() > MAX_COSIGNATURE_BYTES {
        return Err(ApiError::PayloadTooLarge(format!("a cosignature line is at most {MAX_COSIGNATURE_BYTES} bytes")));
    }
    let (line, witness) = cosignature_line(&api.witnesses, &body)?;
    let name = witness.name.clone();
    let served = Arc::clone(&api);
    let time_secs = blocking(move || {
        let note = served
            .job
            .heads()
            .get(Epoch(epoch))
            .map_err(|e| served.storage(e))?
            .ok_or_else(|| ApiError::NotFound(format!("no signed head for epoch {epoch}")))?;
        let time_secs = verify_cosignature(&with_cosignatures(&note, std::slice::from_ref(&line)), &witness)
            .map_err(|e| ApiError::BadRequest("bad_cosignature", e.to_string()))?;
        served.check_cosignature_time(epoch, &note, time_secs)?;
        match served.cosignatures.put(Epoch(epoch), &witness.name, &line).map_err(|e| served.storage(e))? {
            CosignaturePut::Stored | CosignaturePut::Kept { identical: true, .. } => Ok(time_secs),
            CosignaturePut::Kept { stored_time_secs, identical: false } => Err(ApiError::Conflict(
                "stale_cosignature",
                format!(
                    "a cosignature of epoch {epoch} by {} with time {stored_time_secs} is stored, not older than \
                     this one ({time_secs}); it is kept",
                    witness.name
                ),
            )),
        }
    })
    .await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "epoch": epoch, "witness": name, "time": time_secs }))))
}

/// The one cosignature line in `body` (with its final newline) and the configured witness it names.
fn cosignature_line(witnesses: &[Witness], body: &[u8]) -> Result<(String, Witness), ApiError> {
    let bad = |m: &str| ApiError::BadRequest("bad_cosignature", m.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    let line = format!("{}\n", text.strip_suffix('\n').unwrap_or(text));
    if line.matches('\n').count() != 1 {
        return Err(bad("send exactly one cosignature line"));
    }
    let name = line
        .strip_prefix("\u{2014} ")
        .and_then(|rest| rest.trim_end().rsplit_once(' '))
        .map(|(name, _)| name.to_owned())
        .ok_or_else(|| bad("a cosignature line is `\u{2014} <witness name> <base64>`"))?;
    let Some(witness) = witnesses.iter().find(|w| w.name == name).cloned() else {
        let known: Vec<&str> = witnesses.iter().map(|w| w.name.as_str()).collect();
        return Err(ApiError::Forbidden(format!("{name:?} is not a witness of this server (known: {known:?})")));
    };
    Ok((line, witness))
}

impl<Q: Queue, S: TreeStore, H: HeadStore> Api<Q, S, H> {
    /// A cosignature's time (seconds) is not before its head's time and at most
    /// `cosignature_max_future_secs` after this server's clock: a witness that verified the head
    /// did so after it was signed, and a line dated far ahead would outrank every honest later one.
    fn check_cosignature_time(&self, epoch: u64, note: &str, time_secs: u64) -> Result<(), ApiError> {
        let head = verify_head_note(note, &self.origin, &self.job.public_key())
            .map_err(|e| ApiError::Internal(format!("the stored head of epoch {epoch} does not verify: {e}")))?;
        let head_secs = head.time_ms / 1000;
        let bad = |m: String| Err(ApiError::BadRequest("bad_cosignature_time", m));
        if time_secs < head_secs {
            return bad(format!(
                "the cosignature's time {time_secs} is before the head of epoch {epoch} was signed ({head_secs}, \
                 seconds since the Unix epoch); a witness cosigns a head after verifying it"
            ));
        }
        let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let latest = now_secs.saturating_add(self.cosignature_max_future_secs);
        if time_secs > latest {
            return bad(format!(
                "the cosignature's time {time_secs} is in the future: more than {} s after this server's clock \
                 ({now_secs}); check the witness's clock",
                self.cosignature_max_future_secs
            ));
        }
        Ok(())
    }
}

/// Operator: cut an epoch now (needs `Authorization: Bearer <operator token>`).
#[utoipa::path(post, path = "/v1/epochs", tag = "operations",
    responses(
        (status = 202, description = "The scheduler cuts an epoch at its next poll", body = Object),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Operator endpoints disabled", body = ErrorBody),
        (status = 503, description = "The epoch scheduler has stopped (the message names the cause)",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn trigger_epoch<Q: Queue + 'static, S: TreeStore + 'static, H: HeadStore + 'static>(
    State(api): State<Arc<Api<Q, S, H>>>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(token) = &api.operator_token else {
        return Err(ApiError::Forbidden(
            "operator endpoints are disabled: start the server with --operator-token".into(),
        ));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if !given.is_some_and(|given| token_matches(given, token)) {
        static LOG: std::sync::LazyLock<LogLimiter> =
            std::sync::LazyLock::new(|| LogLimiter::new(std::time::Duration::from_secs(1)));
        if let Some(suppressed) = LOG.admit() {
            let reason = if given.is_some() { "wrong token" } else { "no bearer token" };
            tracing::warn!(reason, suppressed, "operator request refused: POST /v1/epochs without the operator token");
        }
        return Err(ApiError::Unauthorized("send `Authorization: Bearer <operator token>`".into()));
    }
    api.refuse_writes_if_stopped()?;
    api.trigger.store(true, Ordering::Release);
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "triggered": true }))))
}

/// Compares in time that does not depend on where the bytes differ (only on their lengths), so
/// response times do not reveal the token a byte at a time.
fn token_matches(given: &[u8], token: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(given.ct_eq(token.as_bytes()))
}
