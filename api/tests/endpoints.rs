//! Every endpoint and its error cases, without a socket (`tower::ServiceExt::oneshot`).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::BodyExt;
use keyfold_api::{Api, router};
use keyfold_core::{HashSuite, LeafValue, MapRoot, Proof, SigningKey, Version, verify_head_note};
use keyfold_epoch::{EpochJob, MemoryHeadStore};
use keyfold_ingest::{Limits, MemoryQueue, Queue};
use keyfold_shards::{Map, MemoryStore, TreeConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::ServiceExt;

const ORIGIN: &str = "api.test/keyfold";
type TestApi = Api<MemoryQueue, MemoryStore, MemoryHeadStore>;

fn api(max_depth: u64, token: Option<&str>) -> Arc<TestApi> {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = EpochJob::open(
        MemoryQueue::new(config.suite, max_depth),
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        Arc::new(keyfold_epoch::MemoryArchives::default()),
        SigningKey::from_bytes(&[3; 32]),
        ORIGIN,
        1_000,
    )
    .unwrap();
    Arc::new(Api {
        job: Arc::new(job),
        origin: ORIGIN.into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: token.map(str::to_owned),
        retry_after_secs: 2,
    })
}

async fn call(api: &Arc<TestApi>, request: Request<Body>) -> (StatusCode, header::HeaderMap, String) {
    let response = router(Arc::clone(api)).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn submit_epoch_lookup_and_verify_like_a_client() {
    let api = api(1000, None);
    let (status, _, body) = call(&api, get("/v1/directory")).await;
    assert_eq!(status, StatusCode::OK);
    let info = json(&body);
    assert_eq!(info["origin"], ORIGIN);
    assert_eq!(info["hash"], "blake3");
    let public: [u8; 32] = B64.decode(info["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();

    let value = B64.encode(b"alice's key");
    let request = format!(
        r#"{{"mutations":[{{"key":"alice","value":"{value}","expected_version":0}},{{"key":"bob","value":null,"expected_version":0}}]}}"#
    );
    let (status, _, body) = call(&api, post("/v1/mutations", request)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(json(&body)["receipts"].as_array().unwrap().len(), 2);
    api.job.run_epoch(2_000).unwrap();

    for (key, expected) in [("alice", Some(LeafValue::present(Version(1), b"alice's key".to_vec()))), ("carol", None)] {
        let (status, _, body) = call(&api, get(&format!("/v1/keys/{key}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer = json(&body);
        assert_eq!(answer["epoch"], 1);
        let head = verify_head_note(answer["head"].as_str().unwrap(), ORIGIN, &public).unwrap();
        let proof = Proof::decode(&B64.decode(answer["proof"].as_str().unwrap()).unwrap()).unwrap();
        let root = MapRoot { epoch: head.epoch, hash: head.root };
        proof.verify(HashSuite::Blake3, &root, key.as_bytes(), expected.as_ref()).unwrap();
        assert_eq!(answer["version"], expected.as_ref().map_or(0, |v| v.version.0));
    }
    // The delete of a key that never existed was rejected by CAS: bob is absent.
    let (_, _, body) = call(&api, get("/v1/keys/bob")).await;
    assert_eq!(json(&body)["value"], serde_json::Value::Null);
    // Past epochs stay readable.
    let (status, _, body) = call(&api, get("/v1/keys/alice?epoch=0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["version"], 0);

    let (status, headers, note) = call(&api, get("/v1/heads/latest")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(verify_head_note(&note, ORIGIN, &public).unwrap().epoch.0, 1);
    let (status, _, note0) = call(&api, get("/v1/heads/0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify_head_note(&note0, ORIGIN, &public).unwrap().epoch.0, 0);
    assert_eq!(call(&api, get("/healthz")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn client_errors_are_4xx_with_a_json_body() {
    let api = api(1000, None);
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (post("/v1/mutations", "{not json"), StatusCode::BAD_REQUEST, "bad_json"),
        (
            post("/v1/mutations", r#"{"mutations":[{"key":"a","value":null,"expected_version":0,"extra":1}]}"#),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            post("/v1/mutations", r#"{"mutations":[{"key":"a","value":"***","expected_version":0}]}"#),
            StatusCode::BAD_REQUEST,
            "bad_base64",
        ),
        (
            post("/v1/mutations", r#"{"mutations":[{"key":"a","value":null,"expected_version":-1}]}"#),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            post("/v1/mutations", r#"{"mutations":[{"key":"a","value":null,"expected_version":"1"}]}"#),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (post("/v1/mutations", r#"{"mutations":[]}"#), StatusCode::BAD_REQUEST, "invalid_mutation"),
        (
            post("/v1/mutations", r#"{"mutations":[{"key":"","value":null,"expected_version":0}]}"#),
            StatusCode::BAD_REQUEST,
            "invalid_mutation",
        ),
        (
            post("/v1/mutations", vec![b'x'; keyfold_api::MAX_BODY_BYTES + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (get("/v1/heads/99"), StatusCode::NOT_FOUND, "not_found"),
        (get("/v1/heads/abc"), StatusCode::BAD_REQUEST, "bad_epoch"),
        (get("/v1/keys/alice?epoch=7"), StatusCode::NOT_FOUND, "not_found"),
        (get("/v1/keys/alice?epoch=x"), StatusCode::BAD_REQUEST, "bad_query"),
        (get("/v1/nothing"), StatusCode::NOT_FOUND, "not_found"),
        (post("/v1/epochs", ""), StatusCode::FORBIDDEN, "forbidden"),
    ];
    let huge_batch: Vec<String> =
        (0..1001).map(|i| format!(r#"{{"key":"k{i}","value":null,"expected_version":0}}"#)).collect();
    let mut cases = cases;
    cases.push((
        post("/v1/mutations", format!(r#"{{"mutations":[{}]}}"#, huge_batch.join(","))),
        StatusCode::BAD_REQUEST,
        "invalid_mutation",
    ));
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, headers, body) = call(&api, request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{what}");
        let body = json(&body);
        assert_eq!(body["error"], code, "{what}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(api.job.queue().depth(), 0_u64, "nothing was queued by a refused request");
}

#[tokio::test]
async fn back_pressure_is_503_with_retry_after() {
    let api = api(2, None);
    let two = r#"{"mutations":[{"key":"a","value":null,"expected_version":0},{"key":"b","value":null,"expected_version":0}]}"#;
    assert_eq!(call(&api, post("/v1/mutations", two)).await.0, StatusCode::ACCEPTED);
    let (status, headers, body) =
        call(&api, post("/v1/mutations", r#"{"mutations":[{"key":"c","value":null,"expected_version":0}]}"#)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "2");
    assert_eq!(json(&body)["error"], "unavailable");
}

#[tokio::test]
async fn operator_trigger_needs_the_token() {
    let api = api(10, Some("s3cret"));
    let with = |token: &str| {
        Request::post("/v1/epochs")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(call(&api, post("/v1/epochs", "")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&api, with("wrong")).await.0, StatusCode::UNAUTHORIZED);
    assert!(!api.trigger.load(Ordering::Acquire));
    assert_eq!(call(&api, with("s3cret")).await.0, StatusCode::ACCEPTED);
    assert!(api.trigger.load(Ordering::Acquire), "the scheduler is asked for an epoch");
}

#[tokio::test]
async fn archives_are_served_immutable_with_ranges() {
    let api = api(100, None);
    call(&api, post("/v1/mutations", r#"{"mutations":[{"key":"a","value":"YQ==","expected_version":0}]}"#)).await;
    api.job.run_epoch(2_000).unwrap();
    let (status, headers, _) = call(&api, get("/v1/epochs/1/archive")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/vnd.apache.parquet");
    assert!(headers[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
    let full = api.job.archives().get(keyfold_core::Epoch(1)).unwrap().unwrap();
    let rows = keyfold_archive::read_archive(&full).unwrap();
    assert_eq!(rows.len(), 1);
    // The raw bytes through the router (not through String).
    let response = router(Arc::clone(&api)).oneshot(get("/v1/epochs/1/archive")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), full.as_slice());
    let ranged = Request::get("/v1/epochs/1/archive").header(header::RANGE, "bytes=0-3").body(Body::empty()).unwrap();
    let response = router(Arc::clone(&api)).oneshot(ranged).await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[header::CONTENT_RANGE], format!("bytes 0-3/{}", full.len()));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"PAR1");
    let suffix = Request::get("/v1/epochs/1/archive").header(header::RANGE, "bytes=-4").body(Body::empty()).unwrap();
    let body = router(Arc::clone(&api)).oneshot(suffix).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"PAR1", "Parquet files end with the magic too");
    let bad = Request::get("/v1/epochs/1/archive")
        .header(header::RANGE, format!("bytes={}-", full.len()))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&api, bad).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(json(&body)["error"], "range_not_satisfiable");
    assert_eq!(call(&api, get("/v1/epochs/9/archive")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&api, get("/v1/epochs/x/archive")).await.0, StatusCode::BAD_REQUEST);
}
