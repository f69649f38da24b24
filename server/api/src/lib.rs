//! The HTTP API (axum on tokio): the contract in `shared/DESIGN.md`, first part.
//!
//! Served today: `GET /v1/directory`, `POST /v1/mutations` (202 only once durable),
//! `GET /v1/keys/{key}[?epoch=N]` (value, proof and the signed head it verifies against),
//! `GET /v1/heads/latest`, `GET /v1/heads/{epoch}`, `GET /v1/checkpoint?from=SIZE` (with a
//! consistency proof), the log of heads as C2SP tiles under `/v1/log`,
//! `GET /v1/epochs/{epoch}/archive` (Parquet,
//! immutable, single-range requests), `POST /v1/epochs` (operator token), `GET /healthz`,
//! `GET /metrics` (Prometheus text) and `GET /openapi.json` (generated from the handlers' annotations
//! by utoipa; a test checks it lists exactly the served routes). One file per resource
//! (`directory_info`, `mutations`, `keys`, `heads`, `log`, `archive`, `operations`); the handlers hold a
//! [`Directory`], never a store type.
//! Errors are `{"error": code, "message": text}`: 4xx for the client's fault, 503 + `Retry-After` for
//! back-pressure. Storage work runs on `spawn_blocking`, never on the tokio workers.

mod archive;
mod body_budget;
mod directory_info;
mod error;
mod extract;
mod heads;
mod keys;
mod log;
mod log_limit;
mod metrics_layer;
mod mutations;
mod openapi;
mod operations;

pub use archive::{ARCHIVE_PIECE_BYTES, ARCHIVE_READS_MAX_DEFAULT, ArchiveReads, VERIFIED_ARCHIVES_MAX};
pub use body_budget::{BodyBudget, with_body_budget};
pub use error::{ApiError, ErrorBody};
pub use heads::AcceptedCosignature;
pub use log::LOG_PREFIX;
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
use keyfold_core::{Witness, verify_cosignature, with_cosignatures};
use keyfold_epoch::{
    CosignaturePut, CosignatureStore, Directory, EpochError, HistoryAfter, MutationStatus, SchedulerHealth,
    SchedulerState,
};
use keyfold_ingest::{Limits, Receipt, Slot, validate};
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
pub struct Api {
    /// The directory: queue, map, heads, index and archives behind one object, whatever the backend.
    pub directory: Arc<dyn Directory>,
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

impl Api {
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
    pub(crate) fn served_note(&self, epoch: Epoch, note: String) -> Result<String, ApiError> {
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
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/directory", get(directory_info::directory))
        .route("/v1/mutations", post(mutations::submit))
        .route("/v1/mutations/{id}", get(mutations::mutation_status))
        .route("/v1/keys/{key}", get(keys::lookup))
        .route("/v1/keys/{key}/history", get(keys::key_history))
        .route("/v1/heads/latest", get(heads::latest_head))
        .route("/v1/heads/{epoch}", get(heads::head_at))
        .route("/v1/heads/{epoch}/cosignatures", post(heads::post_cosignature))
        .route("/v1/checkpoint", get(log::checkpoint))
        .route("/v1/log/checkpoint", get(log::tiles_checkpoint))
        .route("/v1/log/tile/{*path}", get(log::tile))
        .route("/v1/epochs", post(operations::trigger_epoch))
        .route("/v1/epochs/{epoch}/archive", get(archive::archive))
        .route("/v1/epochs/{epoch}/proof", get(archive::epoch_proof))
        .route("/healthz", get(operations::healthz))
        .route("/metrics", get(operations::metrics_text))
        .route("/openapi.json", get(operations::openapi_json))
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

/// An epoch number in a path: decimal digits only (`+5` or ` 5` is not an epoch), at most u64.
fn parse_epoch(text: &str) -> Result<u64, ApiError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::BadRequest("bad_epoch", format!("{text:?} is not an epoch number")))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}
