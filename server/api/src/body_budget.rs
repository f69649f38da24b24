//! A global bound on the request body bytes held in memory at once.
//!
//! Every request reserves its body's bytes from one budget before they are read: a declared
//! `Content-Length` is reserved whole when the request arrives, and refused at once (503 +
//! `Retry-After`, before any of the body is read) if it does not fit what is left; a chunked body
//! reserves its bytes as they arrive, and is answered 503 when the next chunk does not fit. The
//! reservation is held until the response is ready (the handler holds the buffered body until
//! then), and returned when the request ends in any way, a timeout included.

use crate::error::ApiError;
use crate::log_limit::LogLimiter;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// Seconds a refused client is told to wait: bodies in flight are done within a request timeout.
const RETRY_AFTER_SECS: u64 = 1;

/// The bytes of request bodies in flight, out of `limit_bytes`.
#[derive(Debug)]
pub struct BodyBudget {
    limit_bytes: u64,
    used_bytes: AtomicU64,
}

impl BodyBudget {
    pub fn new(limit_bytes: u64) -> BodyBudget {
        BodyBudget { limit_bytes, used_bytes: AtomicU64::new(0) }
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Acquire)
    }

    fn try_reserve(&self, bytes: u64) -> bool {
        self.used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit_bytes)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
        self.used_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// `router` with every request body counted against `budget` (see the module docs).
pub fn with_body_budget(router: axum::Router, budget: Arc<BodyBudget>) -> axum::Router {
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let budget = Arc::clone(&budget);
        async move { meter(budget, request, next).await }
    }))
}

async fn meter(budget: Arc<BodyBudget>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::MAX_BODY_BYTES as u64) {
        return next.run(request).await; // refused with 413 inside, unread
    }
    let grant = Arc::new(Grant {
        budget: Arc::clone(&budget),
        reserved: AtomicU64::new(0),
        received: AtomicU64::new(0),
        refused: AtomicBool::new(false),
    });
    if let Some(bytes) = declared.filter(|n| *n > 0) {
        if !budget.try_reserve(bytes) {
            return refuse(&budget, bytes);
        }
        grant.reserved.store(bytes, Ordering::Release);
    }
    let metered = Arc::clone(&grant);
    let request = request.map(|inner| Body::new(Metered { inner, grant: metered }));
    let response = next.run(request).await;
    if grant.refused.load(Ordering::Acquire) {
        return refuse(&budget, grant.received.load(Ordering::Acquire));
    }
    response
}

/// 503 + Retry-After, logged at most once a second.
fn refuse(budget: &BodyBudget, bytes: u64) -> Response {
    static LOG: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(Duration::from_secs(1)));
    if let Some(suppressed) = LOG.admit() {
        tracing::warn!(
            body_bytes = bytes,
            in_flight_bytes = budget.used_bytes(),
            limit_bytes = budget.limit_bytes,
            suppressed,
            "request refused: the request body budget is spent (--max-inflight-body-bytes)"
        );
    }
    ApiError::Unavailable {
        retry_after_secs: RETRY_AFTER_SECS,
        message: format!(
            "the server holds its limit of {} bytes of request bodies; retry in a moment",
            budget.limit_bytes
        ),
    }
    .into_response()
}

/// One request's reservation, returned to the budget when the request and its body are done.
#[derive(Debug)]
struct Grant {
    budget: Arc<BodyBudget>,
    reserved: AtomicU64,
    received: AtomicU64,
    refused: AtomicBool,
}

impl Grant {
    /// Counts `bytes` received; reserves what goes past the reservation. False: over budget.
    fn receive(&self, bytes: u64) -> bool {
        let received = self.received.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let reserved = self.reserved.load(Ordering::Acquire);
        if received <= reserved {
            return true;
        }
        if self.budget.try_reserve(received - reserved) {
            self.reserved.store(received, Ordering::Release);
            return true;
        }
        self.refused.store(true, Ordering::Release);
        false
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.release(*self.reserved.get_mut());
    }
}

/// A request body that counts its bytes against its [`Grant`].
struct Metered {
    inner: Body,
    grant: Arc<Grant>,
}

/// The error a metered body ends with when the budget is spent (the middleware answers 503).
#[derive(Debug, thiserror::Error)]
#[error("the request body budget is spent")]
struct OverBudget;

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let bytes = match &frame {
            Some(Ok(frame)) => frame.data_ref().map_or(0, Bytes::len),
            _ => 0,
        };
        if bytes > 0 && !this.grant.receive(bytes as u64) {
            return Poll::Ready(Some(Err(axum::Error::new(OverBudget))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
