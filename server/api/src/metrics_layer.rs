//! Request metrics (a middleware around every route) and the Prometheus recorder.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::Instant;

/// Latency buckets in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS_S: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Epoch phase buckets in seconds: 1 ms to 5 min.
const PHASE_BUCKETS_S: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Installs the process-wide Prometheus recorder (once per process) and returns the handle that
/// renders `/metrics`. Histograms get explicit buckets, so Prometheus can aggregate quantiles.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("keyfold_http_request_duration_seconds".into()), LATENCY_BUCKETS_S)?
        .set_buckets_for_metric(Matcher::Full("keyfold_epoch_phase_duration_seconds".into()), PHASE_BUCKETS_S)?
        .install_recorder()
}

/// Records each request's latency by route template, method and status. Every label takes few
/// values whatever clients send, so the label set (and `/metrics`) stays small: the route is the
/// matched template from this router (never the raw path: keys would explode it) or `unmatched`;
/// the method is one of the standard ones or `other` (hyper accepts any token as a method); the
/// status is one this server chose.
pub(crate) async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("keyfold_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a metric label: the standard methods by name, any other token as `other`.
fn method_label(method: &Method) -> &'static str {
    static STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    STANDARD.iter().find(|m| *m == method).map_or("other", Method::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_are_labels() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"PATCH").unwrap()), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other", "methods are case-sensitive");
    }
}
