//! `/healthz`, the write endpoints and the metrics' labels as the epoch scheduler's state and
//! hostile methods change them, without a socket (`tower::ServiceExt::oneshot`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use keyfold_api::{Api, router};
use keyfold_core::{HashSuite, SigningKey};
use keyfold_epoch::{EpochJob, MemoryHeadStore, SchedulerState};
use keyfold_ingest::{Limits, MemoryQueue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tower::ServiceExt;

type TestApi = Api;

fn api() -> Arc<TestApi> {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = EpochJob::open(
        MemoryQueue::new(config.suite, 1_000),
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        Arc::new(keyfold_epoch::MemoryArchives::default()),
        SigningKey::from_bytes(&[3; 32]),
        "health.test/keyfold",
        1_000,
    )
    .unwrap();
    static RECORDER: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    Arc::new(Api {
        directory: Arc::new(job),
        origin: "health.test/keyfold".into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: Some("op-token".into()),
        retry_after_secs: 2,
        metrics: Some(RECORDER.get_or_init(|| keyfold_api::install_recorder().unwrap()).clone()),
        witnesses: Vec::new(),
        cosignatures: Arc::new(keyfold_epoch::MemoryCosignatures::default()),
        scheduler: Arc::default(),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
    })
}

async fn call(api: &Arc<TestApi>, request: Request<Body>) -> (StatusCode, header::HeaderMap, serde_json::Value) {
    let response = router(Arc::clone(api)).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.into_owned()));
    (parts.status, parts.headers, value)
}

fn healthz() -> Request<Body> {
    Request::get("/healthz").body(Body::empty()).unwrap()
}

fn submission() -> Request<Body> {
    let body = r#"{"mutations":[{"key":"alice","value":null,"expected_version":0}]}"#;
    Request::post("/v1/mutations").header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap()
}

fn trigger(token: &str) -> Request<Body> {
    Request::post("/v1/epochs").header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn healthz_and_writes_follow_the_scheduler_state() {
    let api = api();
    let (status, _, body) = call(&api, healthz()).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!({ "status": "ok" })));

    // Retrying: healthy (writes are accepted and will be applied), but it says so.
    let last_error = "running an epoch failed: archive: no space left on device".to_owned();
    api.scheduler.set(SchedulerState::Retrying { since_ms: 1_234, attempts: 3, last_error });
    let (status, _, body) = call(&api, healthz()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["status"].as_str(), body["attempts"].as_u64(), body["since_ms"].as_u64()),
        (Some("retrying"), Some(3), Some(1_234))
    );
    assert!(body["message"].as_str().unwrap().contains("no space left on device"), "{body}");
    assert_eq!(call(&api, submission()).await.0, StatusCode::ACCEPTED);

    // Stopped: writes refused naming the cause; reads served; the state stays.
    let cause = "running an epoch panicked: range end index 9000 out of range for slice of length 4096".to_owned();
    api.scheduler.set(SchedulerState::Stopped { cause });
    api.scheduler.set(SchedulerState::Running);
    let (status, headers, body) = call(&api, healthz()).await;
    assert_eq!(
        (status, body["status"].as_str(), body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("stopped"), Some("scheduler_stopped"))
    );
    assert!(body["message"].as_str().unwrap().contains("range end index 9000"), "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    let (status, headers, body) = call(&api, submission()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("range end index 9000"), "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_eq!(call(&api, trigger("op-token")).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call(&api, trigger("not-the-token")).await.0, StatusCode::UNAUTHORIZED, "authentication comes first");
    let lookup = Request::get("/v1/keys/alice").body(Body::empty()).unwrap();
    assert_eq!(call(&api, lookup).await.0, StatusCode::OK);
}

#[tokio::test]
async fn operator_tokens_are_compared_whole() {
    let api = api();
    for wrong in ["op-toke", "op-token2", "OP-TOKEN", ""] {
        assert_eq!(call(&api, trigger(wrong)).await.0, StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    let missing = Request::post("/v1/epochs").body(Body::empty()).unwrap();
    assert_eq!(call(&api, missing).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&api, trigger("op-token")).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn custom_methods_are_one_label() {
    let api = api();
    for n in 0..50 {
        let method = Method::from_bytes(format!("BREW{n}").as_bytes()).unwrap();
        let request = Request::builder().method(method).uri("/healthz").body(Body::empty()).unwrap();
        call(&api, request).await;
    }
    let (_, _, metrics) = call(&api, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let metrics = metrics.as_str().unwrap();
    assert!(!metrics.contains("BREW"), "{metrics}");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
}
