//! Operations: `GET /healthz`, `GET /metrics`, `GET /openapi.json`, and the operator trigger
//! `POST /v1/epochs`.

use super::*;

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
pub(crate) async fn healthz(State(api): State<Arc<Api>>) -> Response {
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
pub(crate) async fn metrics_text(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let Some(handle) = api.metrics.clone() else {
        return Err(ApiError::NotFound("metrics are not enabled in this process".into()));
    };
    let job = Arc::clone(&api.directory);
    // Read at scrape time from this server's queue, so it is never stale.
    let (depth, bytes) = blocking(move || Ok(job.queue_load())).await?;
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
pub(crate) async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::openapi_text()).into_response()
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
pub(crate) async fn trigger_epoch(
    State(api): State<Arc<Api>>,
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
pub(crate) fn token_matches(given: &[u8], token: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(given.ct_eq(token.as_bytes()))
}
