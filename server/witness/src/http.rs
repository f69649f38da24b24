//! The witness over HTTP. Mount the router under the witness's prefix (`Router::nest`):
//!
//! - `POST /add-checkpoint`: C2SP tlog-witness. 200 with the cosignature line(s)
//!   (`text/plain; charset=utf-8`); 400 malformed or old size > size; 403 no trusted signature;
//!   404 unknown origin; 409 (`text/x.tlog.size`, body `<latest size>\n`) wrong old size or a
//!   second root at the cosigned size; 413 body over [`MAX_BODY_BYTES`]; 422 proof does not
//!   verify; 503 + `Retry-After` store unavailable.
//! - `GET /checkpoint/{origin}`: the latest cosigned checkpoint note of a log (the origin as the
//!   rest of the path, slashes as they are or percent-encoded), 404 if none.
//! - `GET /evidence`: `{"recorded": n, "dropped": n}`; `GET /evidence/{index}`: one [`Evidence`]
//!   record as JSON (0 the oldest), 404 if none.
//!
//! Other errors are JSON `{"error": code, "message": text}`. Store work runs on
//! `spawn_blocking`, never on the tokio workers.

use crate::{MAX_BODY_BYTES, Witness, WitnessError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

#[cfg(doc)]
use crate::Evidence;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// The witness's routes, to mount under its prefix.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/checkpoint/{*origin}", get(latest_checkpoint))
        .route("/evidence", get(evidence_counts))
        .route("/evidence/{index}", get(evidence_record))
        .fallback(|| async { not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness)
}

fn not_found(message: &str) -> Response {
    let body = serde_json::json!({ "error": "not_found", "message": message }).to_string();
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, JSON)], body).into_response()
}

fn now_secs() -> u64 {
    // A clock before 1970 is a broken host; 0 still gives a verifiable cosignature.
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WitnessError> + Send + 'static,
) -> Result<T, WitnessError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| WitnessError::Internal(format!("worker failed: {e}")))?
}

async fn add_checkpoint(
    State(witness): State<Arc<Witness>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WitnessError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WitnessError::TooLarge { max_bytes: MAX_BODY_BYTES }
        } else {
            WitnessError::Malformed(e.body_text())
        }
    })?;
    let now = now_secs();
    let lines = blocking(move || witness.add_checkpoint(&body, now)).await?;
    Ok(([(header::CONTENT_TYPE, TEXT)], lines).into_response())
}

async fn latest_checkpoint(
    State(witness): State<Arc<Witness>>,
    origin: Result<Path<String>, PathRejection>,
) -> Result<Response, WitnessError> {
    let Path(origin) = origin.map_err(|e| WitnessError::Malformed(e.body_text()))?;
    let note = blocking(move || witness.latest(&origin)).await?;
    Ok(match note {
        Some(note) => ([(header::CONTENT_TYPE, TEXT)], note).into_response(),
        None => not_found("this witness has cosigned no checkpoint of that origin"),
    })
}

async fn evidence_counts(State(witness): State<Arc<Witness>>) -> Result<Response, WitnessError> {
    let counts = blocking(move || witness.store().evidence_counts()).await?;
    let body = serde_json::to_string(&counts).expect("counts serialise");
    Ok(([(header::CONTENT_TYPE, JSON)], body).into_response())
}

async fn evidence_record(
    State(witness): State<Arc<Witness>>,
    index: Result<Path<u64>, PathRejection>,
) -> Result<Response, WitnessError> {
    let Path(index) = index.map_err(|e| WitnessError::Malformed(e.body_text()))?;
    let record = blocking(move || witness.store().evidence(index)).await?;
    Ok(match record {
        Some(record) => {
            let body = serde_json::to_string(&record).expect("evidence serialises");
            ([(header::CONTENT_TYPE, JSON)], body).into_response()
        }
        None => not_found("no evidence record with that index"),
    })
}
