//! `GET /v1/epochs/{epoch}/archive` under load and after storage damage: ranges and HEAD read only
//! what they serve, concurrent reads are bounded (503 beyond), and an archive that is missing or no
//! longer matches its signed digest is a named server fault, never served.

use axum::body::Body;
use axum::body::Bytes;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use keyfold_api::{Api, router};
use keyfold_core::{Epoch, HashSuite, Mutation, SigningKey, Version};
use keyfold_epoch::{ArchiveSink, EpochError, EpochJob, MemoryArchives, MemoryHeadStore};
use keyfold_ingest::{Limits, MemoryQueue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tower::ServiceExt;

const ORIGIN: &str = "archives.test/keyfold";
type TestApi = Api;

/// Archives in memory that count the bytes handed out, and can lose or damage a file.
#[derive(Debug, Default)]
struct CountingArchives {
    inner: MemoryArchives,
    bytes_read: AtomicU64,
    missing: AtomicBool,
    corrupt: AtomicBool,
}

impl CountingArchives {
    fn damaged(&self, bytes: Bytes) -> Bytes {
        if !self.corrupt.load(Ordering::SeqCst) || bytes.is_empty() {
            return bytes;
        }
        let mut flipped = bytes.to_vec();
        flipped[0] ^= 1; // one bit flipped on disk
        Bytes::from(flipped)
    }
}

impl ArchiveSink for CountingArchives {
    fn put(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError> {
        self.inner.put(epoch, bytes)
    }

    fn get(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError> {
        if self.missing.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let bytes = self.inner.get(epoch)?.map(|b| self.damaged(b));
        self.bytes_read.fetch_add(bytes.as_ref().map_or(0, |b| b.len() as u64), Ordering::SeqCst);
        Ok(bytes)
    }

    fn size(&self, epoch: Epoch) -> Result<Option<u64>, EpochError> {
        if self.missing.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.size(epoch)
    }

    fn read_range(&self, epoch: Epoch, range: std::ops::Range<u64>) -> Result<Option<Bytes>, EpochError> {
        if self.missing.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let start = range.start;
        let bytes = self.inner.read_range(epoch, range)?.map(|b| if start == 0 { self.damaged(b) } else { b });
        self.bytes_read.fetch_add(bytes.as_ref().map_or(0, |b| b.len() as u64), Ordering::SeqCst);
        Ok(bytes)
    }

    fn put_proof(&self, epoch: Epoch, bytes: Bytes) -> Result<(), EpochError> {
        self.inner.put_proof(epoch, bytes)
    }

    fn get_proof(&self, epoch: Epoch) -> Result<Option<Bytes>, EpochError> {
        self.inner.get_proof(epoch)
    }
    fn delete(&self, epoch: Epoch) -> Result<(), EpochError> {
        self.inner.delete(epoch)
    }
}

/// A server whose epoch 1 has an archive of about 3 MB (values that do not compress).
fn api(archives: Arc<CountingArchives>) -> Arc<TestApi> {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = EpochJob::open(
        MemoryQueue::new(config.suite, 1_000),
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        archives,
        SigningKey::from_bytes(&[3; 32]),
        ORIGIN,
        1_000,
    )
    .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (seed >> 56) as u8
            })
            .collect::<Vec<u8>>()
    };
    let mutations = (0..60)
        .map(|i| Mutation {
            key: format!("key{i}").into_bytes(),
            value: Some(noise(48 << 10)),
            expected_version: Version(0),
            owner_signature: None,
        })
        .collect();
    job.submit(mutations).unwrap();
    job.run_epoch(2_000).unwrap();
    Arc::new(Api {
        directory: Arc::new(job),
        origin: ORIGIN.into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: None,
        retry_after_secs: 4,
        metrics: None,
        witnesses: Vec::new(),
        cosignatures: Arc::new(keyfold_epoch::MemoryCosignatures::default()),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::new(2), // the concurrency test holds two bodies
        scheduler: Arc::default(),
    })
}

fn request(method: &str, range: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri("/v1/epochs/1/archive");
    if let Some(range) = range {
        builder = builder.header(header::RANGE, range);
    }
    builder.body(Body::empty()).unwrap()
}

async fn call(api: &Arc<TestApi>, request: Request<Body>) -> (StatusCode, header::HeaderMap, Bytes) {
    let response = router(Arc::clone(api)).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

/// Issue 15 item 4: a one-byte range or a HEAD of a verified archive reads (almost) nothing of
/// it, where every request used to read and re-hash the whole file.
#[tokio::test]
async fn ranges_and_head_read_only_what_they_serve() {
    let archives = Arc::new(CountingArchives::default());
    let api = api(Arc::clone(&archives));
    let full = archives.inner.get(Epoch(1)).unwrap().unwrap();
    assert!(full.len() > 2 << 20, "the archive is large: {} bytes", full.len());

    let (status, headers, body) = call(&api, request("GET", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, full);
    assert_eq!(headers[header::CONTENT_LENGTH], full.len().to_string().as_str());
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let digest = HashSuite::Blake3.archive_digest(&full).to_hex();
    assert_eq!(etag, format!("\"{digest}\""), "the ETag is the digest signed in the head");

    let before = archives.bytes_read.load(Ordering::SeqCst);
    let (status, headers, body) = call(&api, request("GET", Some("bytes=100-100"))).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.as_ref(), &full[100..101]);
    assert_eq!(headers[header::ETAG].to_str().unwrap(), etag);
    let read = archives.bytes_read.load(Ordering::SeqCst) - before;
    assert!(read <= 1 << 16, "a one-byte range read {read} bytes of a {}-byte archive", full.len());

    let before = archives.bytes_read.load(Ordering::SeqCst);
    let (status, headers, body) = call(&api, request("HEAD", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(headers[header::CONTENT_LENGTH], full.len().to_string().as_str());
    assert_eq!(archives.bytes_read.load(Ordering::SeqCst) - before, 0, "HEAD read the body");
}

/// Issue 15 item 4: while two bodies are being streamed (their clients not reading), a third
/// concurrent archive read is refused with 503, Retry-After and the JSON error; once a body is
/// done, reads are served again.
#[tokio::test]
async fn concurrent_archive_reads_are_bounded() {
    let archives = Arc::new(CountingArchives::default());
    let api = api(archives);
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = router(Arc::clone(&api)).oneshot(request("GET", None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response.into_body()); // held, not read: a client that stopped reading
    }
    let (status, headers, body) = call(&api, request("GET", Some("bytes=0-3"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::RETRY_AFTER], "4");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"], "unavailable");
    drop(open.pop());
    let (status, _, body) = call(&api, request("GET", Some("bytes=0-3"))).await;
    assert_eq!((status, body.as_ref()), (StatusCode::PARTIAL_CONTENT, &b"PAR1"[..]));
}

/// Issue 15 item 11: an archive whose bytes no longer match the digest in its signed head, or one
/// missing for a signed head, is a server fault (500) that names the epoch and what is wrong.
#[tokio::test]
async fn damaged_or_missing_archives_are_named_server_faults() {
    let archives = Arc::new(CountingArchives::default());
    let api = api(Arc::clone(&archives));
    archives.corrupt.store(true, Ordering::SeqCst);
    for range in [None, Some("bytes=0-3")] {
        let (status, headers, body) = call(&api, request("GET", range)).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{range:?}: {text}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"], "archive_corrupt", "{text}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("epoch 1") && message.contains("digest"), "{message}");
    }
    archives.corrupt.store(false, Ordering::SeqCst);
    archives.missing.store(true, Ordering::SeqCst);
    let (status, _, body) = call(&api, request("GET", None)).await;
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{error}");
    assert_eq!(error["error"], "archive_missing", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("epoch 1") && message.contains("signed head"), "{message}");
    assert!(!message.contains("predates"), "{message}");
    // The genesis epoch has no archive by design: that one is a plain 404.
    let genesis = Request::get("/v1/epochs/0/archive").body(Body::empty()).unwrap();
    assert_eq!(call(&api, genesis).await.0, StatusCode::NOT_FOUND);
}

/// Issue 15 item 4: concurrent first requests for an archive not yet verified read it once (the
/// others wait for that verification), not once each.
#[tokio::test]
async fn concurrent_first_reads_verify_once() {
    let archives = Arc::new(CountingArchives::default());
    let api = api(Arc::clone(&archives));
    let size = archives.inner.size(Epoch(1)).unwrap().unwrap();
    let one = || async { call(&api, request("GET", Some("bytes=7-7"))).await.0 };
    let (a, b) = tokio::join!(one(), one());
    assert_eq!((a, b), (StatusCode::PARTIAL_CONTENT, StatusCode::PARTIAL_CONTENT));
    let read = archives.bytes_read.load(Ordering::SeqCst);
    assert!(read < size + (1 << 16), "two first reads read {read} bytes of a {size}-byte archive");
}
