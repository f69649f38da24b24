//! Storage faults at the HTTP boundary: the durable queue's storage fails (an fsync error, a full
//! disk); submissions get 503 with `Retry-After`, never a 5xx of another kind; nothing is
//! acknowledged that was not persisted, and after a restart every acknowledged mutation is there.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use keyfold_api::{Api, router};
use keyfold_core::Epoch;
use keyfold_core::{HashSuite, SigningKey};
use keyfold_epoch::{EpochError, EpochJob, HeadStore, MemoryHeadStore};
use keyfold_ingest::{Entry, Limits, Position, Queue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use keyfold_redb::faults::{FaultPlan, open_faulty_queue};
use keyfold_redb::{RedbQueue, RedbQueueOptions};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tower::ServiceExt;

type FaultyApi = Api;
const OPTIONS: RedbQueueOptions =
    RedbQueueOptions { suite: HashSuite::Blake3, max_depth: 1_000_000, max_bytes: 1 << 30 };

/// The API over a job whose queue is `queue`, and the job (the test reads its queue directly).
fn api(queue: RedbQueue) -> (Arc<FaultyApi>, Arc<EpochJob<RedbQueue, MemoryStore, MemoryHeadStore>>) {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = EpochJob::open(
        queue,
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        Arc::new(keyfold_epoch::MemoryArchives::default()),
        SigningKey::from_bytes(&[3; 32]),
        "faults.test/keyfold",
        1_000,
    )
    .unwrap();
    let job = Arc::new(job);
    let api = Arc::new(Api {
        directory: Arc::clone(&job) as Arc<dyn keyfold_epoch::Directory>,
        origin: "faults.test/keyfold".into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: None,
        retry_after_secs: 3,
        metrics: None,
        witnesses: Vec::new(),
        cosignatures: Arc::new(keyfold_epoch::MemoryCosignatures::default()),
        scheduler: Arc::default(),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
    });
    (api, job)
}

async fn submit(api: &Arc<FaultyApi>, batch: u32) -> (StatusCode, header::HeaderMap, serde_json::Value) {
    let mutations: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"key":"user{batch}-{i}@example.com","value":null,"expected_version":0}}"#))
        .collect();
    let body = format!(r#"{{"mutations":[{}]}}"#, mutations.join(","));
    let request =
        Request::post("/v1/mutations").header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap();
    let response = router(Arc::clone(api)).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
}

fn ids(receipts: &serde_json::Value) -> Vec<String> {
    receipts["receipts"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn queued_ids(queue: &RedbQueue) -> HashSet<String> {
    queue
        .read(Position(0), 1000)
        .unwrap()
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entry::Mutation(m) => Some(m.id(HashSuite::Blake3).to_hex()),
            Entry::Marker(_) => None,
        })
        .collect()
}

/// An fsync error, then a full disk: while the fault lasts, submissions get 503 with
/// `Retry-After` and are not acknowledged; once it clears, the queue reopens its file and they are
/// accepted again in the same process; every acknowledged mutation is there, after a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_faults_are_503_with_retry_after_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let plan = FaultPlan::new();
    let mut acked = Vec::new();
    {
        let (api, job) = api(open_faulty_queue(&path, OPTIONS, &plan).unwrap());
        let (status, _, body) = submit(&api, 0).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        acked.extend(ids(&body));
        for (round, fault) in ["fsync", "disk full"].into_iter().enumerate() {
            let batch = u32::try_from(round * 10 + 1).unwrap();
            if fault == "fsync" {
                plan.fail_sync_in(1)
            } else {
                plan.set_disk_full(true)
            }
            let (status, headers, body) = submit(&api, batch).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{fault}: {body}");
            assert_eq!(headers[header::RETRY_AFTER], "3");
            assert!(body["message"].as_str().unwrap().contains("not acknowledged"), "{body}");
            plan.clear();
            let (status, _, body) = submit(&api, batch + 1).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{fault}: accepted again once the fault cleared: {body}");
            acked.extend(ids(&body));
        }
        assert!(plan.injected() >= 2);
        let present = queued_ids(job.queue());
        assert!(acked.iter().all(|id| present.contains(id)), "an acknowledged mutation is missing");
    }
    // Restarted over the same file: every acknowledged mutation is still queued.
    let queue = open_faulty_queue(&path, OPTIONS, &FaultPlan::new()).unwrap();
    let present = queued_ids(&queue);
    assert!(acked.iter().all(|id| present.contains(id)), "an acknowledged mutation was lost");
}

/// Heads in memory whose reads fail like an I/O error while `failing` is set.
#[derive(Debug, Default)]
struct FlakyHeads {
    inner: MemoryHeadStore,
    failing: std::sync::atomic::AtomicBool,
}

impl FlakyHeads {
    fn check(&self) -> Result<(), EpochError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            let e = std::io::Error::other("injected: read failed");
            return Err(EpochError::io(e));
        }
        Ok(())
    }
}

impl HeadStore for FlakyHeads {
    fn latest(&self) -> Result<Option<(Epoch, String)>, EpochError> {
        self.check()?;
        self.inner.latest()
    }
    fn get(&self, epoch: Epoch) -> Result<Option<String>, EpochError> {
        self.check()?;
        self.inner.get(epoch)
    }
    fn cursor(&self) -> Result<Position, EpochError> {
        self.inner.cursor()
    }
    fn commit(&self, epoch: Epoch, note: &str, cursor: Position) -> Result<(), EpochError> {
        self.inner.commit(epoch, note, cursor)
    }
}

/// Issue 15 item 10: a retryable storage read error (I/O) answering a head, a lookup or an archive
/// is 503 with `Retry-After` and the JSON error (it was a 500), and the reads work again after.
#[tokio::test]
async fn head_read_errors_are_503_with_retry_after() {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = EpochJob::open(
        keyfold_ingest::MemoryQueue::new(config.suite, 100),
        Map::new(MemoryStore::new(config)),
        FlakyHeads::default(),
        Arc::new(keyfold_epoch::MemoryArchives::default()),
        SigningKey::from_bytes(&[3; 32]),
        "faults.test/keyfold",
        1_000,
    )
    .unwrap();
    job.run_epoch(2_000).unwrap();
    let job = Arc::new(job);
    let api = Arc::new(Api {
        directory: Arc::clone(&job) as Arc<dyn keyfold_epoch::Directory>,
        origin: "faults.test/keyfold".into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: None,
        retry_after_secs: 5,
        metrics: None,
        witnesses: Vec::new(),
        cosignatures: Arc::new(keyfold_epoch::MemoryCosignatures::default()),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
        scheduler: Arc::default(),
    });
    job.heads().failing.store(true, std::sync::atomic::Ordering::SeqCst);
    for uri in ["/v1/heads/latest", "/v1/heads/1", "/v1/keys/alice", "/v1/epochs/1/archive"] {
        let response = router(Arc::clone(&api)).oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let body: serde_json::Value = serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
        assert_eq!(parts.headers[header::RETRY_AFTER], "5", "{uri}");
        assert_eq!(body["error"], "unavailable", "{uri}: {body}");
    }
    job.heads().failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let response = router(Arc::clone(&api)).oneshot(Request::get("/v1/heads/1").body(Body::empty()).unwrap()).await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
}
