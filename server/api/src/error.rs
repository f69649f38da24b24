use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyfold_core::StorageError;
use keyfold_epoch::EpochError;
use keyfold_ingest::QueueError;

pub use keyfold_verify::wire::ErrorBody;

/// Every error a handler returns, mapped to HTTP in exactly one place ([`IntoResponse`]).
/// Internal details are logged, never sent.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(&'static str, String),
    PayloadTooLarge(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    /// What was asked for is outside the directory's retention window (SPEC section 4.3): gone for
    /// good, not a fault.
    Gone(String),
    /// The route exists; the method does not (the response carries `Allow`).
    MethodNotAllowed(String),
    /// The request conflicts with stored state (a code and a message).
    Conflict(&'static str, String),
    RangeNotSatisfiable(String),
    /// Back-pressure: retry after this many seconds.
    Unavailable {
        retry_after_secs: u64,
        message: String,
    },
    /// The request was not handled in time (its body arrived too slowly, say).
    Timeout(String),
    /// A fault of this server's stored data that the client should know about (a damaged or
    /// missing archive): 500 with a code and a message naming what is wrong, logged at error level.
    ServerFault(&'static str, String),
    Internal(String),
}

impl ApiError {
    pub(crate) fn from_queue(e: QueueError, retry_after_secs: u64) -> ApiError {
        match e {
            QueueError::Full { .. } | QueueError::Storage(StorageError::Fenced(_)) | QueueError::Closed => {
                ApiError::Unavailable { retry_after_secs, message: e.to_string() }
            }
            QueueError::Storage(StorageError::Io(_)) => ApiError::Unavailable {
                retry_after_secs,
                message: "storage is unavailable: the request was not acknowledged; retry it later".into(),
            },
            QueueError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            QueueError::Storage(StorageError::Corrupt(_)) | QueueError::MutationIdMismatch { .. } => {
                ApiError::Internal(e.to_string())
            }
        }
    }

    /// A storage error while answering a read: retryable ones (I/O) are 503 with `Retry-After`,
    /// the others 500.
    pub(crate) fn from_storage(e: EpochError, retry_after_secs: u64) -> ApiError {
        if let EpochError::Tree(keyfold_map::TreeError::EpochPruned { requested, oldest }) = e {
            return ApiError::Gone(format!(
                "epoch {requested} is outside this directory's retention window: the oldest epoch kept is {oldest}"
            ));
        }
        if e.is_retryable() {
            tracing::warn!(error = %e, "storage unavailable answering a request");
            ApiError::Unavailable {
                retry_after_secs,
                message: "storage is unavailable right now; retry the request later".into(),
            }
        } else {
            ApiError::Internal(e.to_string())
        }
    }

    pub(crate) fn from_body_rejection(e: BytesRejection) -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("request bodies are at most {} bytes", crate::MAX_BODY_BYTES))
        } else {
            ApiError::BadRequest("bad_body", e.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::BadRequest("bad_path", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::BadRequest("bad_query", e.body_text())
    }
}

impl ApiError {
    /// The HTTP status and the JSON body's error code.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Gone(_) => (StatusCode::GONE, "gone"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(code, _) => (StatusCode::CONFLICT, code),
            ApiError::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::ServerFault(code, _) => (StatusCode::INTERNAL_SERVER_ERROR, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The whole message, internal details included: for this server's log, never a client.
    fn detail(&self) -> &str {
        match self {
            ApiError::BadRequest(_, m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Gone(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::Conflict(_, m)
            | ApiError::RangeNotSatisfiable(m)
            | ApiError::Unavailable { message: m, .. }
            | ApiError::Timeout(m)
            | ApiError::ServerFault(_, m)
            | ApiError::Internal(m) => m,
        }
    }
}

/// `code: message`, internals included: for this server's own log (a cosignature returned to a
/// push and refused, say). Clients get [`IntoResponse`]'s body, which hides internals.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status_and_code().1, self.detail())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let retry = match &self {
            ApiError::Unavailable { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let message = match self {
            ApiError::ServerFault(code, m) => {
                tracing::error!(code, message = %m, "server fault answering a request");
                m
            }
            ApiError::Internal(detail) => {
                tracing::error!(detail = %detail, "internal error answering a request");
                "internal error; see the server log".to_owned()
            }
            other => other.detail().to_owned(),
        };
        let body = serde_json::to_string(&ErrorBody { error: code.to_owned(), message }).expect("serialisable");
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(secs) = retry {
            response.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}
