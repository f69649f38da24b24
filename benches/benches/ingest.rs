//! Ingest through the library into the durable redb queue (fsync per commit, group commit).
//! Run: `cargo bench -p keyfold-benches --bench ingest`.
//!
//! * `ingest/batch_1000`: one appender, batches of 1,000 mutations.
//! * `ingest/single_64_threads`: 64 threads each appending one mutation at a time (group commit).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyfold_core::{HashSuite, Mutation, Version};
use keyfold_ingest::Queue;
use keyfold_redb::{RedbQueue, RedbQueueOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn mutation(i: u64) -> Mutation {
    Mutation {
        key: keyfold_benches::user_key(i),
        value: Some(i.to_le_bytes().repeat(4)),
        expected_version: Version(0),
        owner_signature: None,
    }
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let options = RedbQueueOptions { suite: HashSuite::Blake3, max_depth: u64::MAX, max_bytes: u64::MAX };
    let queue = RedbQueue::open(&dir.path().join("queue.redb"), options).unwrap();
    let counter = AtomicU64::new(0);
    let mut g = c.benchmark_group("ingest");
    g.measurement_time(Duration::from_secs(10)).sample_size(20);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("batch_1000", |b| {
        b.iter(|| {
            let first = counter.fetch_add(1000, Ordering::Relaxed);
            queue.append((first..first + 1000).map(mutation).collect()).unwrap()
        })
    });
    let threads = 64u64;
    let per_thread = 16u64;
    g.throughput(Throughput::Elements(threads * per_thread));
    g.bench_function("single_64_threads", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..per_thread {
                            let i = counter.fetch_add(1, Ordering::Relaxed);
                            queue.append(vec![mutation(i)]).unwrap();
                        }
                    });
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
