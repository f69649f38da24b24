//! Every endpoint and its error cases, without a socket (`tower::ServiceExt::oneshot`).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::BodyExt;
use keyfold_api::{Api, router};
use keyfold_core::{Epoch, HashSuite, LeafValue, MapRoot, Proof, SigningKey, Version, verify_head_note};
use keyfold_epoch::{EpochJob, MemoryHeadStore};
use keyfold_ingest::{Limits, MemoryQueue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::ServiceExt;

const ORIGIN: &str = "api.test/keyfold";
type TestApi = Api;

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
    .unwrap()
    .with_index(Arc::new(keyfold_epoch::MemoryOutcomeIndex::default()))
    .unwrap();
    Arc::new(Api {
        directory: Arc::new(job),
        origin: ORIGIN.into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: token.map(str::to_owned),
        retry_after_secs: 2,
        metrics: Some(recorder()),
        witnesses: vec![witness().1],
        cosignatures: Arc::new(keyfold_epoch::MemoryCosignatures::default()),
        scheduler: Arc::default(),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
    })
}

/// The one witness the test server accepts.
fn witness() -> (SigningKey, keyfold_core::Witness) {
    let key = SigningKey::from_bytes(&[21; 32]);
    let public_key = key.verifying_key().to_bytes();
    (key, keyfold_core::Witness { name: "witness.test".into(), public_key })
}

/// The process-wide recorder, installed once for this test binary.
fn recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| keyfold_api::install_recorder().unwrap()).clone()
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
    api.directory.run_epoch(2_000).unwrap();

    let first =
        |value: &[u8]| LeafValue::new(Version(1), Epoch(1), keyfold_core::Hash::default(), Some(value.to_vec()));
    for (key, expected) in [("alice", Some(first(b"alice's key"))), ("carol", None)] {
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
        (get("/v1/heads/+1"), StatusCode::BAD_REQUEST, "bad_epoch"),
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
    assert_eq!(api.directory.queue_load().0, 0_u64, "nothing was queued by a refused request");
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
    api.directory.run_epoch(2_000).unwrap();
    let (status, headers, _) = call(&api, get("/v1/epochs/1/archive")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/vnd.apache.parquet");
    assert!(headers[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
    let full = api.directory.archives().get(keyfold_core::Epoch(1)).unwrap().unwrap();
    let rows = keyfold_archive::read_archive(&full).unwrap();
    assert_eq!(rows.len(), 1);
    // The raw bytes through the router (not through String).
    let response = router(Arc::clone(&api)).oneshot(get("/v1/epochs/1/archive")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), full.as_ref());
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

/// The OpenAPI document lists exactly the served routes, and every documented GET route answers
/// (not the router's 404 fallback) with the status the document promises.
#[tokio::test]
async fn openapi_lists_exactly_the_served_routes() {
    let api = api(1000, Some("t0ken"));
    let (status, headers, body) = call(&api, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let doc = json(&body);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let mut paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort_unstable();
    let served = [
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/v1/checkpoint",
        "/v1/directory",
        "/v1/epochs",
        "/v1/epochs/{epoch}/archive",
        "/v1/epochs/{epoch}/proof",
        "/v1/heads/latest",
        "/v1/heads/{epoch}",
        "/v1/heads/{epoch}/cosignatures",
        "/v1/keys/{key}",
        "/v1/keys/{key}/history",
        "/v1/log/checkpoint",
        "/v1/log/tile/{path}",
        "/v1/mutations",
        "/v1/mutations/{id}",
    ];
    assert_eq!(paths, served);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let uri = path
                .replace("{epoch}", "0")
                .replace("{key}", "alice")
                .replace("{id}", &"ab".repeat(32))
                .replace("{path}", "0/000.p/1");
            let request =
                Request::builder().method(method.to_uppercase().as_str()).uri(&uri).body(Body::empty()).unwrap();
            let (status, _, body) = call(&api, request).await;
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(status.as_str()),
                "{method} {uri} answered {status}, not documented: {body}"
            );
            assert!(
                status != StatusCode::NOT_FOUND || !body.contains("no such endpoint"),
                "{method} {uri} is not routed"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in ["SubmitRequest", "LookupAnswer", "ErrorBody", "DirectoryInfo"] {
        assert!(schemas.contains_key(schema), "missing schema {schema}");
    }
}

/// `/metrics` shows the queue depth, epoch and mutation counters and request latency, in the
/// Prometheus text format.
#[tokio::test]
async fn metrics_report_queue_epochs_and_requests() {
    let api = api(1000, None);
    let value = B64.encode(b"v");
    let request = format!(r#"{{"mutations":[{{"key":"m1","value":"{value}","expected_version":0}}]}}"#);
    assert_eq!(call(&api, post("/v1/mutations", request)).await.0, StatusCode::ACCEPTED);
    let (status, _, body) = call(&api, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.lines().any(|l| l.starts_with("keyfold_queue_depth ") && l.ends_with(" 1")), "{body}");
    api.directory.run_epoch(2_000).unwrap();
    let (_, _, body) = call(&api, get("/metrics")).await;
    assert!(body.lines().any(|l| l.starts_with("keyfold_queue_depth ") && l.ends_with(" 0")), "{body}");
    assert!(body.contains("keyfold_epochs_total"), "{body}");
    assert!(body.contains(r#"keyfold_mutations_total{outcome="applied"}"#), "{body}");
    assert!(body.contains(r#"keyfold_epoch_phase_duration_seconds_bucket{phase="tree""#), "{body}");
    assert!(
        body.contains(
            r#"keyfold_http_request_duration_seconds_bucket{route="/v1/mutations",method="POST",status="202""#
        ),
        "{body}"
    );
}

/// A receipt's id tells pending from applied or rejected (with the reason); a key's versions come
/// back oldest first, in pages that follow each other by the version cursor.
#[tokio::test]
async fn mutation_status_and_key_history() {
    let api = api(1000, None);
    let submit = |key: &str, value: Option<&[u8]>, expected: u64| {
        let value = value.map_or("null".to_owned(), |v| format!("\"{}\"", B64.encode(v)));
        post(
            "/v1/mutations",
            format!(r#"{{"mutations":[{{"key":"{key}","value":{value},"expected_version":{expected}}}]}}"#),
        )
    };
    let id_of = |body: &str| json(body)["receipts"][0]["id"].as_str().unwrap().to_owned();
    let (_, _, body) = call(&api, submit("alice", Some(b"v1"), 0)).await;
    let applied = id_of(&body);
    let (_, _, body) = call(&api, submit("bob", Some(b"x"), 5)).await;
    let rejected = id_of(&body);
    let (status, _, body) = call(&api, get(&format!("/v1/mutations/{applied}"))).await;
    assert_eq!((status, json(&body)["status"].as_str()), (StatusCode::OK, Some("pending")), "{body}");

    api.directory.run_epoch(2_000).unwrap();
    let answer = json(&call(&api, get(&format!("/v1/mutations/{applied}"))).await.2);
    assert_eq!(
        (answer["status"].as_str(), answer["epoch"].as_u64(), answer["new_version"].as_u64()),
        (Some("applied"), Some(1), Some(1))
    );
    let answer = json(&call(&api, get(&format!("/v1/mutations/{rejected}"))).await.2);
    assert_eq!(answer["status"], "rejected");
    assert_eq!(answer["reason"], "version_mismatch", "{answer}");
    assert!(answer["reason_text"].as_str().unwrap().contains("expected_version"), "{answer}");
    assert!(answer.get("new_version").is_none());
    assert_eq!(call(&api, get(&format!("/v1/mutations/{}", "00".repeat(32)))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&api, get("/v1/mutations/xyz")).await.0, StatusCode::BAD_REQUEST);

    call(&api, submit("alice", Some(b"v2"), 1)).await;
    api.directory.run_epoch(3_000).unwrap();
    call(&api, submit("alice", None, 2)).await;
    api.directory.run_epoch(4_000).unwrap();
    let (status, _, body) = call(&api, get("/v1/keys/alice/history")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions: Vec<(u64, u64, bool)> = json(&body)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["epoch"].as_u64().unwrap(), v["version"].as_u64().unwrap(), v["deleted"].as_bool().unwrap()))
        .collect();
    assert_eq!(versions, [(1, 1, false), (2, 2, false), (3, 3, true)]);
    assert!(json(&body).get("next_after_version").is_none());
    let page = json(&call(&api, get("/v1/keys/alice/history?limit=2")).await.2);
    assert_eq!(page["versions"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after_version"], 2);
    let rest = json(&call(&api, get("/v1/keys/alice/history?after_version=2&limit=2")).await.2);
    assert_eq!(rest["versions"][0]["version"], 3);
    assert!(rest.get("next_after_version").is_none());
    let later = json(&call(&api, get("/v1/keys/alice/history?after=2")).await.2);
    assert_eq!(versions_of(&later), [3], "after an epoch");
    let none = json(&call(&api, get("/v1/keys/bob/history")).await.2);
    assert!(none["versions"].as_array().unwrap().is_empty(), "a rejected mutation is no version");
    assert_eq!(call(&api, get("/v1/keys/alice/history?limit=0")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&api, get("/v1/keys/alice/history?limit=5000")).await.0, StatusCode::BAD_REQUEST);
}

/// alice's versions 1 to 3 in epoch 1 (2 is overwritten within it), a delete (4) and 5 in epoch 2.
async fn alice_in_five_versions(api: &Arc<TestApi>) {
    let submit = |value: Option<&str>, expected: u64| {
        let value = value.map_or("null".to_owned(), |v| format!("\"{}\"", B64.encode(v)));
        let m = format!(r#"{{"key":"alice","value":{value},"expected_version":{expected}}}"#);
        post("/v1/mutations", format!(r#"{{"mutations":[{m}]}}"#))
    };
    for (value, expected) in [(Some("pk1"), 0), (Some("evil"), 1), (Some("pk1"), 2)] {
        assert_eq!(call(api, submit(value, expected)).await.0, StatusCode::ACCEPTED);
    }
    api.directory.run_epoch(2_000).unwrap();
    for (value, expected) in [(None, 3), (Some("pk5"), 4)] {
        assert_eq!(call(api, submit(value, expected)).await.0, StatusCode::ACCEPTED);
    }
    api.directory.run_epoch(3_000).unwrap();
}

/// A history page, as served.
async fn history_page(api: &Arc<TestApi>, uri: &str) -> keyfold_verify::wire::HistoryResponse {
    serde_json::from_str(&call(api, get(uri)).await.2).unwrap()
}

/// A client that pins the test directory's origin and key, with no witness policy.
fn pinned_by(api: &TestApi) -> keyfold_verify::Pinned {
    keyfold_verify::Pinned {
        origin: ORIGIN.into(),
        public_key: api.directory.public_key(),
        witnesses: keyfold_core::WitnessPolicy { witnesses: Vec::new(), required: 0 },
    }
}

/// The last page of a key's history carries the key's lookup, and the listed versions verify
/// against its signed leaf (SPEC section 1.3): from the start, from a point verified before, and
/// across pages. A version dropped, added, changed or moved to another epoch does not verify.
#[tokio::test]
async fn a_key_history_verifies_against_its_signed_leaf() {
    use keyfold_verify::wire::HistoryResponse;
    use keyfold_verify::{HistoryError, HistoryPoint, verify_history};
    let api = api(1000, None);
    alice_in_five_versions(&api).await;
    let pinned = pinned_by(&api);
    let check = |answer: &HistoryResponse, start: &HistoryPoint| {
        verify_history(b"alice", start, Vec::new(), answer, &pinned, None).map(|(history, _)| history)
    };
    let answer = history_page(&api, "/v1/keys/alice/history").await;
    let history = check(&answer, &HistoryPoint::START).unwrap();
    let listed: Vec<(u64, u64, Option<&[u8]>)> =
        history.versions.iter().map(|v| (v.version.0, v.epoch.0, v.value.as_deref())).collect();
    let expected: [(u64, u64, Option<&[u8]>); 5] =
        [(1, 1, Some(b"pk1")), (2, 1, Some(b"evil")), (3, 1, Some(b"pk1")), (4, 2, None), (5, 2, Some(b"pk5"))];
    assert_eq!(listed, expected, "every version, the overwritten one too");
    assert_eq!((history.end.version, history.lookup.head.epoch.0), (5, 2));

    // A client that verified through version 3 asks for the rest only.
    let through_3 = check(&history_page(&api, "/v1/keys/alice/history?limit=3").await, &HistoryPoint::START);
    assert!(matches!(through_3, Err(HistoryError::NotLastPage)), "a page with more to come has no lookup");
    let rest = history_page(&api, "/v1/keys/alice/history?after_version=3").await;
    assert_eq!(rest.versions.len(), 2);
    // The point after version 3, from the verified history's first three versions.
    let mut point = HistoryPoint::START;
    for v in &history.versions[..3] {
        let this = LeafValue::new(v.version, v.epoch, point.commitment, v.value.clone());
        let one = std::slice::from_ref(v);
        point = keyfold_verify::check_history(HashSuite::Blake3, &point, one, Some(&this), Epoch(2)).unwrap();
    }
    assert_eq!(check(&rest, &point).unwrap().end, history.end, "the rest chains on from the verified point");
    assert!(check(&rest, &HistoryPoint::START).is_err(), "but not from another point");

    // Tampering: a dropped, an added, a changed and a moved version.
    let mut dropped = answer.clone();
    dropped.versions.remove(1);
    assert!(matches!(check(&dropped, &HistoryPoint::START), Err(HistoryError::Gap { previous: 1, found: 3 })));
    let mut renumbered = dropped.clone();
    for (v, at) in (1..).zip(renumbered.versions.iter_mut()) {
        at.version = v;
    }
    assert!(check(&renumbered, &HistoryPoint::START).is_err(), "the overwritten version cannot be hidden");
    let mut added = answer.clone();
    added.versions.push(keyfold_verify::wire::KeyVersionResponse {
        epoch: 2,
        version: 6,
        deleted: false,
        value: Some(B64.encode("pk6")),
    });
    assert!(matches!(check(&added, &HistoryPoint::START), Err(HistoryError::Chain { leaf_version: 5 })));
    let mut changed = answer.clone();
    changed.versions[1].value = Some(B64.encode("pk1"));
    assert!(matches!(check(&changed, &HistoryPoint::START), Err(HistoryError::Chain { .. })));
    let mut moved = answer.clone();
    moved.versions[2].epoch = 2;
    assert!(matches!(check(&moved, &HistoryPoint::START), Err(HistoryError::Chain { .. })));
}

/// A listing after an epoch carries the key's lookup at that epoch in the same checkpoint, so it
/// verifies as every version applied after it (SPEC section 3.3): a version dropped from the
/// front, one from that epoch or before, a start at another epoch or none at all are refused.
#[tokio::test]
async fn a_key_history_after_an_epoch_verifies_from_the_key_at_that_epoch() {
    use keyfold_verify::wire::HistoryResponse;
    use keyfold_verify::{HistoryError, verify_history_since};
    let api = api(1000, None);
    alice_in_five_versions(&api).await;
    let pinned = pinned_by(&api);
    let check = |answer: &HistoryResponse, after: u64| {
        verify_history_since(b"alice", Epoch(after), Vec::new(), answer, &pinned, None).map(|(history, _)| history)
    };
    let after_1 = history_page(&api, "/v1/keys/alice/history?after=1").await;
    assert_eq!(after_1.start.as_ref().map(|s| (s.epoch, s.version)), Some((1, 3)), "alice at epoch 1");
    let history = check(&after_1, 1).unwrap();
    let listed: Vec<u64> = history.versions.iter().map(|v| v.version.0).collect();
    assert_eq!((listed, history.start.version, history.end.version), (vec![4, 5], 3, 5));
    let all = check(&history_page(&api, "/v1/keys/alice/history?after=0").await, 0).unwrap();
    assert_eq!((all.versions.len(), all.start.version), (5, 0), "after epoch 0: everything, from nothing");
    let latest = history_page(&api, "/v1/keys/alice/history?after=2").await;
    assert!(latest.start.is_none() && latest.versions.is_empty());
    assert_eq!(check(&latest, 2).unwrap().end.version, 5, "nothing after the latest epoch");
    // Paged: the start comes with the last page.
    let first = history_page(&api, "/v1/keys/alice/history?after=1&limit=1").await;
    assert!(first.start.is_none() && first.lookup.is_none());
    let last = history_page(&api, "/v1/keys/alice/history?after=1&after_version=4").await;
    let earlier = keyfold_verify::decode_versions(&first.versions).unwrap();
    let paged = verify_history_since(b"alice", Epoch(1), earlier, &last, &pinned, None).unwrap().0;
    assert_eq!(paged.versions, history.versions);

    let mut dropped = after_1.clone();
    dropped.versions.remove(0);
    assert!(matches!(check(&dropped, 1), Err(HistoryError::Gap { previous: 3, found: 5 })));
    let mut early = after_1.clone();
    early.versions[0].epoch = 1;
    assert!(matches!(check(&early, 1), Err(HistoryError::NotAfter { version: 4, epoch: 1, after: 1 })));
    let mut no_start = after_1.clone();
    no_start.start = None;
    assert!(matches!(check(&no_start, 1), Err(HistoryError::MissingStart { epoch: 1 })));
    assert!(matches!(check(&after_1, 0), Err(HistoryError::StartEpoch { expected: 0, found: 1 })));
    let mut later_start = after_1.clone();
    later_start.start = history_page(&api, "/v1/keys/alice/history?after=0").await.start;
    assert!(matches!(check(&later_start, 1), Err(HistoryError::StartEpoch { expected: 1, found: 0 })));
    // The start's leaf is signed: a different version there breaks its proof.
    let mut moved = after_1.clone();
    moved.start.as_mut().unwrap().version = 2;
    assert!(matches!(check(&moved, 1), Err(HistoryError::Start { epoch: 1, .. })));
}

/// A configured witness's verified cosignature is stored and served on the head (which still
/// verifies); unknown witnesses, forged or misplaced lines are refused with 4xx.
#[tokio::test]
async fn witness_cosignatures_are_verified_stored_and_served() {
    let api = api(1000, None);
    api.directory.run_epoch(2_000).unwrap();
    let public = api.directory.public_key();
    let note = call(&api, get("/v1/heads/1")).await.2;
    let (key, witness) = witness();
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let line = keyfold_core::cosign(&note, &witness.name, &key, now_secs).unwrap();
    let text = |body: &str| Request::post("/v1/heads/1/cosignatures").body(Body::from(body.to_owned())).unwrap();

    let (status, _, body) = call(&api, text(&line)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(call(&api, text(&line)).await.0, StatusCode::CREATED, "posting again is idempotent");
    for uri in ["/v1/heads/1", "/v1/heads/latest"] {
        let served = call(&api, get(uri)).await.2;
        assert!(served.ends_with(&line), "{served}");
        verify_head_note(&served, ORIGIN, &public).unwrap();
        let policy = keyfold_core::WitnessPolicy { witnesses: vec![witness.clone()], required: 1 };
        assert_eq!(policy.check(&served).unwrap(), ["witness.test"]);
    }
    let lookup = json(&call(&api, get("/v1/keys/anyone")).await.2);
    assert!(lookup["head"].as_str().unwrap().ends_with(&line), "lookups carry the cosigned head");
    assert!(call(&api, get("/v1/heads/0")).await.2.matches('\u{2014}').count() == 1, "only epoch 1 was cosigned");

    // Refusals: a checkpoint older than the latest (immutable), an unknown witness, a forged line,
    // garbage, a missing head.
    let (status, _, body) =
        call(&api, Request::post("/v1/heads/0/cosignatures").body(Body::from(line.clone())).unwrap()).await;
    assert_eq!((status, json(&body)["error"].as_str()), (StatusCode::CONFLICT, Some("not_latest")), "{body}");
    let stranger = keyfold_core::cosign(&note, "stranger", &key, 1).unwrap();
    assert_eq!(call(&api, text(&stranger)).await.0, StatusCode::FORBIDDEN);
    let forged = keyfold_core::cosign(&note, &witness.name, &SigningKey::from_bytes(&[22; 32]), 1).unwrap();
    let (status, _, body) = call(&api, text(&forged)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(json(&body)["error"], "bad_cosignature");
    assert_eq!(call(&api, text("hello")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&api, text(&format!("{line}{line}"))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&api, text(&"x".repeat(5000))).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        call(&api, Request::post("/v1/heads/9/cosignatures").body(Body::from(line.clone())).unwrap()).await.0,
        StatusCode::NOT_FOUND
    );
}

/// JSON Schema's `integer` includes `2.0`: accepted as 2; a fraction or a negative is a 400.
#[tokio::test]
async fn versions_accept_integral_numbers_only() {
    let api = api(1000, None);
    let body = |v: &str| {
        post("/v1/mutations", format!(r#"{{"mutations":[{{"key":"k","value":null,"expected_version":{v}}}]}}"#))
    };
    assert_eq!(call(&api, body("2.0")).await.0, StatusCode::ACCEPTED);
    for bad in ["2.5", "-1", "1e30", "\"2\""] {
        let (status, _, text) = call(&api, body(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
        assert_eq!(json(&text)["error"], "bad_json");
    }
}

fn versions_of(page: &serde_json::Value) -> Vec<u64> {
    page["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect()
}

/// Every version of `key`, walking pages of `limit` by the cursor each page gives.
async fn walk_history(api: &Arc<TestApi>, key: &str, limit: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut uri = format!("/v1/keys/{key}/history?limit={limit}");
    for _ in 0..100 {
        let (status, _, body) = call(api, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        let page = json(&body);
        seen.extend(versions_of(&page));
        let Some(cursor) = page.get("next_after_version") else { return seen };
        uri = format!("/v1/keys/{key}/history?limit={limit}&after_version={cursor}");
    }
    panic!("the walk did not end: {seen:?}");
}

/// Issue 15 item 8: three versions of a key in one epoch, paged two at a time: the second page has
/// the third version (it used to be empty, the third version never listed); a longer walk over
/// several epochs lists every version exactly once, whatever the page size.
#[tokio::test]
async fn history_pages_never_lose_versions_within_an_epoch() {
    let api = api(1000, None);
    let batch = |from: u64, n: u64| {
        let mutations: Vec<String> = (from..from + n)
            .map(|v| format!(r#"{{"key":"carol","value":"{}","expected_version":{v}}}"#, B64.encode(v.to_string())))
            .collect();
        post("/v1/mutations", format!(r#"{{"mutations":[{}]}}"#, mutations.join(",")))
    };
    assert_eq!(call(&api, batch(0, 3)).await.0, StatusCode::ACCEPTED);
    api.directory.run_epoch(2_000).unwrap();
    let first = json(&call(&api, get("/v1/keys/carol/history?limit=2")).await.2);
    assert_eq!(versions_of(&first), [1, 2]);
    assert_eq!(walk_history(&api, "carol", 2).await, [1, 2, 3]);

    for (epoch, (from, n)) in [(3, 1), (4, 4), (7, 2)].into_iter().enumerate() {
        assert_eq!(call(&api, batch(from, n)).await.0, StatusCode::ACCEPTED);
        api.directory.run_epoch(3_000 + epoch as u64).unwrap();
    }
    let all: Vec<u64> = (1..=9).collect();
    for limit in [1, 2, 3, 4, 5, 9, 10] {
        assert_eq!(walk_history(&api, "carol", limit).await, all, "pages of {limit}");
    }
    // The epoch filter still works, and combines with the version cursor.
    let page = json(&call(&api, get("/v1/keys/carol/history?after=2")).await.2);
    assert_eq!(versions_of(&page), [5, 6, 7, 8, 9]);
    let page = json(&call(&api, get("/v1/keys/carol/history?after=2&after_version=6&limit=2")).await.2);
    assert_eq!((versions_of(&page), page["next_after_version"].as_u64()), (vec![7, 8], Some(8)));
}

/// Issue 15 item 10: `after` at the largest epoch is an empty page, not a 500 (it overflowed).
#[tokio::test]
async fn history_after_the_last_epoch_is_empty() {
    let api = api(1000, None);
    for query in ["after=18446744073709551615", "after_version=18446744073709551615"] {
        let (status, _, body) = call(&api, get(&format!("/v1/keys/alice/history?{query}"))).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert!(versions_of(&json(&body)).is_empty());
    }
}

/// Issue 15 item 10: a float version that is not exactly an integer below 2^53 is refused with a
/// message saying to send an integer (9007199254740993.0 used to be rounded and accepted).
#[tokio::test]
async fn versions_refuse_floats_that_cannot_be_exact() {
    let api = api(1000, None);
    let body = |v: &str| {
        post("/v1/mutations", format!(r#"{{"mutations":[{{"key":"k","value":null,"expected_version":{v}}}]}}"#))
    };
    for bad in ["9007199254740993.0", "9007199254740992.0", "1.8446744073709552e19", "1e300"] {
        let (status, _, text) = call(&api, body(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
        assert!(json(&text)["message"].as_str().unwrap().contains("integer"), "{bad}: {text}");
    }
    assert_eq!(call(&api, body("3.0")).await.0, StatusCode::ACCEPTED, "small exact floats are integers");
    assert_eq!(call(&api, body("18446744073709551615")).await.0, StatusCode::ACCEPTED, "as integers, all of u64");
    assert_eq!(api.directory.queue_load().0, 2_u64);
}

/// Issue 15 item 10: a path that is not UTF-8, a bad query and a wrong method are answered with
/// the JSON error body too (they were text/plain or empty).
#[tokio::test]
async fn rejections_and_wrong_methods_are_json_errors() {
    let api = api(1000, None);
    let cases = [
        (get("/v1/keys/%FF"), StatusCode::BAD_REQUEST, "bad_path"),
        (get("/v1/keys/%FF/history"), StatusCode::BAD_REQUEST, "bad_path"),
        (get("/v1/heads/%FF"), StatusCode::BAD_REQUEST, "bad_path"),
        (get("/v1/keys/alice/history?limit=x"), StatusCode::BAD_REQUEST, "bad_query"),
        (get("/v1/keys/alice?epoch=-1"), StatusCode::BAD_REQUEST, "bad_query"),
        (
            Request::delete("/v1/keys/alice").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (get("/v1/mutations"), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (post("/v1/heads/latest", ""), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (got, headers, body) = call(&api, request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{what}: {body}");
        assert_eq!(json(&body)["error"], code, "{what}: {body}");
        if got == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key(header::ALLOW), "{what}: 405 names the allowed methods");
        }
    }
}

/// Issue 15 item 13: a cosignature dated before its head or too far in the future is refused, and
/// an older line never replaces a newer one from the same witness.
#[tokio::test]
async fn cosignature_times_are_checked_and_never_go_back() {
    let api = api(1000, None);
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    api.directory.run_epoch(now_secs * 1000 - 60_000).unwrap(); // a head one minute old
    let note = call(&api, get("/v1/heads/1")).await.2;
    let (key, witness) = witness();
    let line = |time: u64| keyfold_core::cosign(&note, &witness.name, &key, time).unwrap();
    let post_line = |line: String| Request::post("/v1/heads/1/cosignatures").body(Body::from(line)).unwrap();
    for (time, what) in [(0, "before the head"), (now_secs - 3600, "before the head"), (u64::MAX, "in the future")] {
        let (status, _, body) = call(&api, post_line(line(time))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "time {time}: {body}");
        assert_eq!(json(&body)["error"], "bad_cosignature_time", "{body}");
        assert!(json(&body)["message"].as_str().unwrap().contains(what), "{body}");
    }
    let far = now_secs + 3600; // the test server allows the default 300 s
    assert_eq!(call(&api, post_line(line(far))).await.0, StatusCode::BAD_REQUEST, "beyond the allowed skew");

    let (newer, older) = (line(now_secs), line(now_secs - 30));
    assert_eq!(call(&api, post_line(newer.clone())).await.0, StatusCode::CREATED);
    let (status, _, body) = call(&api, post_line(older)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(json(&body)["error"], "stale_cosignature");
    assert!(call(&api, get("/v1/heads/1")).await.2.ends_with(&newer), "the newer line is still served");
    assert_eq!(call(&api, post_line(newer)).await.0, StatusCode::CREATED, "the same line again is idempotent");
    let newest = line(now_secs + 1);
    assert_eq!(call(&api, post_line(newest.clone())).await.0, StatusCode::CREATED);
    assert!(call(&api, get("/v1/heads/1")).await.2.ends_with(&newest), "a newer line replaces an older one");
}

/// One address, one spelling: a key in NFD (or not UTF-8) is refused with a 400 that says NFC,
/// on submission and on lookup; the NFC spelling is accepted.
#[tokio::test]
async fn keys_must_be_nfc() {
    let api = api(1000, None);
    let nfd = "jose\u{301}@example.com";
    let body = format!(r#"{{"mutations":[{{"key":"{nfd}","value":null,"expected_version":0}}]}}"#);
    let (status, _, text) = call(&api, post("/v1/mutations", body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let error = json(&text);
    assert_eq!(error["error"], "invalid_mutation", "{text}");
    assert!(error["message"].as_str().unwrap().contains("NFC"), "{text}");
    let (status, _, text) = call(&api, get("/v1/keys/jose%CC%81%40example.com")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(json(&text)["message"].as_str().unwrap().contains("NFC"), "{text}");
    let nfc = "jos\u{e9}@example.com";
    let body = format!(r#"{{"mutations":[{{"key":"{nfc}","value":"AQ==","expected_version":0}}]}}"#);
    let (status, _, text) = call(&api, post("/v1/mutations", body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
}
