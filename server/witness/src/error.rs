//! The witness's one error type, and its HTTP form (the only place errors become responses).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use thiserror::Error;

/// Seconds a caller is told to wait when the store is unavailable.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Why an `add-checkpoint` request (or a read) was refused. Each variant maps to one HTTP status
/// ([`WitnessError::status`]); the two conflicts carry the size the caller should retry from.
#[derive(Debug, Error)]
pub enum WitnessError {
    #[error("the request body is larger than {max_bytes} bytes; an add-checkpoint body is far smaller")]
    TooLarge { max_bytes: usize },
    #[error("malformed add-checkpoint body (C2SP tlog-witness): {0}")]
    Malformed(String),
    #[error("this witness does not follow the log {origin:?}: no key is configured for that origin")]
    UnknownLog { origin: String },
    #[error(
        "no signature on the checkpoint verifies against a key this witness trusts for {origin:?}; sign it with \
         the log's configured key"
    )]
    Unsigned { origin: String },
    #[error("old size {old_size} is larger than the checkpoint's size {size}: a log only grows")]
    OldSizeTooLarge { old_size: u64, size: u64 },
    #[error(
        "old size {old_size} is not the size of the latest checkpoint this witness cosigned for {origin:?} \
         ({latest_size}); resend with old {latest_size} and a consistency proof from that size"
    )]
    SizeConflict { origin: String, old_size: u64, latest_size: u64 },
    #[error(
        "the checkpoint for {origin:?} has size {size}, as the latest one this witness cosigned, but another \
         root: the log has forked (recorded as evidence)"
    )]
    RootConflict { origin: String, size: u64 },
    #[error("the consistency proof from size {old_size} to size {size} does not verify: {reason}")]
    BadProof { old_size: u64, size: u64, reason: String },
    /// The store failed (I/O): nothing was cosigned; retry later.
    #[error("the witness's store is unavailable ({0}); nothing was cosigned, retry later")]
    Storage(#[from] redb::Error),
    /// A stored record does not parse: the file was damaged or written by something else.
    #[error("the witness's store is damaged: {0}")]
    Corrupt(String),
    #[error("the witness is misconfigured: {0}")]
    Config(String),
    /// A bug (a worker panicked): logged, answered 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WitnessError {
    /// A redb failure of any kind (open, transaction, table, commit) as [`WitnessError::Storage`].
    pub(crate) fn io(e: impl Into<redb::Error>) -> WitnessError {
        WitnessError::Storage(e.into())
    }

    /// The HTTP status the C2SP tlog-witness spec gives this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            WitnessError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WitnessError::Malformed(_) | WitnessError::OldSizeTooLarge { .. } => StatusCode::BAD_REQUEST,
            WitnessError::UnknownLog { .. } => StatusCode::NOT_FOUND,
            WitnessError::Unsigned { .. } => StatusCode::FORBIDDEN,
            WitnessError::SizeConflict { .. } | WitnessError::RootConflict { .. } => StatusCode::CONFLICT,
            WitnessError::BadProof { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WitnessError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            WitnessError::Corrupt(_) | WitnessError::Config(_) | WitnessError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// For a 409: the size of the latest checkpoint cosigned for the origin (what the spec's
    /// `text/x.tlog.size` body carries).
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            WitnessError::SizeConflict { latest_size, .. } => Some(*latest_size),
            WitnessError::RootConflict { size, .. } => Some(*size),
            _ => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WitnessError::TooLarge { .. } => "payload_too_large",
            WitnessError::Malformed(_) => "malformed",
            WitnessError::OldSizeTooLarge { .. } => "old_size_too_large",
            WitnessError::UnknownLog { .. } => "unknown_log",
            WitnessError::Unsigned { .. } => "forbidden",
            WitnessError::SizeConflict { .. } => "size_conflict",
            WitnessError::RootConflict { .. } => "root_conflict",
            WitnessError::BadProof { .. } => "bad_proof",
            WitnessError::Storage(_) => "unavailable",
            WitnessError::Corrupt(_) | WitnessError::Config(_) | WitnessError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for WitnessError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A 409's body is fixed by the spec: the latest size and a newline, nothing else, so a log
        // can parse it and retry from that size.
        if let Some(size) = self.latest_size() {
            return (status, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n")).into_response();
        }
        let message = match &self {
            WitnessError::Storage(e) => {
                tracing::warn!(error = %e, "witness store unavailable");
                "the witness's store is unavailable; nothing was cosigned; retry later".to_owned()
            }
            WitnessError::Corrupt(_) | WitnessError::Config(_) | WitnessError::Internal(_) => {
                // Internals are logged, not sent.
                tracing::error!(error = %self, "witness fault");
                "internal error; see the witness's log".to_owned()
            }
            _ => self.to_string(),
        };
        let body = serde_json::json!({ "error": self.code(), "message": message }).to_string();
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if matches!(self, WitnessError::Storage(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_503_with_retry_after_and_conflicts_carry_the_size() {
        let response = WitnessError::io(std::io::Error::other("disk gone")).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS.to_string().as_str());
        let conflict = WitnessError::SizeConflict { origin: "o".into(), old_size: 1, latest_size: 9 };
        let response = conflict.into_response();
        assert_eq!(
            (response.status(), &response.headers()[header::CONTENT_TYPE]),
            (StatusCode::CONFLICT, &"text/x.tlog.size".parse::<axum::http::HeaderValue>().unwrap())
        );
    }
}
