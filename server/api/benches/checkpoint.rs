//! `GET /v1/checkpoint?from=SIZE` and `GET /v1/keys/{key}?from=SIZE` through the real router (in
//! process: routing, the handler, the consistency proof, JSON) over a directory of 100,000 epochs.
//! Run: `cargo bench -p keyfold-api --bench checkpoint`; `KEYFOLD_BENCH_EPOCHS` changes the size.
//!
//! The target: a consistency proof for any two sizes is served in at most 1 ms p99 at 100k
//! epochs. Each request is timed one by one (10,000 seeded `from` sizes, uniform over the log) and
//! p50, p99, p99.9 and max are printed. The directory is a memory-store epoch job that ran every
//! epoch (heartbeat epochs: the log, heads and tiles are what a real one holds).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use keyfold_api::{Api, router};
use keyfold_core::{HashSuite, SigningKey};
use keyfold_epoch::{EpochJob, MemoryHeadStore};
use keyfold_ingest::{Limits, MemoryQueue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const ORIGIN: &str = "bench.example/keyfold";
const TIMED_REQUESTS: usize = 10_000;

fn epochs() -> u64 {
    std::env::var("KEYFOLD_BENCH_EPOCHS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn api(epochs: u64) -> Arc<Api> {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = EpochJob::open(
        MemoryQueue::new(config.suite, 1000),
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        Arc::new(keyfold_epoch::MemoryArchives::default()),
        SigningKey::from_bytes(&[3; 32]),
        ORIGIN,
        1_000,
    )
    .unwrap();
    let started = Instant::now();
    for epoch in 1..epochs {
        job.run_epoch(1_000 + epoch * 1_000).unwrap();
    }
    println!("built a directory of {epochs} epochs in {:.1} s", started.elapsed().as_secs_f64());
    Arc::new(Api {
        directory: Arc::new(job),
        origin: ORIGIN.into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: None,
        retry_after_secs: 2,
        metrics: None,
        witnesses: Vec::new(),
        cosignatures: Arc::new(keyfold_epoch::MemoryCosignatures::default()),
        scheduler: Arc::default(),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
    })
}

/// One request through the router (built once, as the server does), timed to its last body byte.
async fn timed(app: &axum::Router, uri: &str) -> Duration {
    let started = Instant::now();
    let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&body));
    assert!(body.windows(13).any(|w| w == b"\"consistency\""), "{uri} carries a proof");
    elapsed
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    // The nearest-rank percentile, `per_mille` thousandths.
    let at = |per_mille: usize| times[(times.len() * per_mille).div_ceil(1000).clamp(1, times.len()) - 1];
    println!(
        "http latency {name}: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?} ({} requests)",
        at(500),
        at(990),
        at(999),
        times.last().unwrap(),
        times.len()
    );
}

fn main() {
    let n = epochs();
    let app = router(api(n));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let froms: Vec<u64> = (0..TIMED_REQUESTS).map(|_| rng.random_range(1..=n)).collect();
    runtime.block_on(async {
        for from in froms.iter().take(200) {
            timed(&app, &format!("/v1/checkpoint?from={from}")).await; // warm-up
        }
        let mut checkpoint = Vec::with_capacity(froms.len());
        for from in &froms {
            checkpoint.push(timed(&app, &format!("/v1/checkpoint?from={from}")).await);
        }
        report("GET /v1/checkpoint?from=SIZE", checkpoint);
        let mut lookup = Vec::with_capacity(froms.len());
        for from in &froms {
            lookup.push(timed(&app, &format!("/v1/keys/alice?from={from}")).await);
        }
        report("GET /v1/keys/alice?from=SIZE", lookup);
    });
}
