//! Epoch archives: encoding, digest and decoding of a large epoch's archive, without disk.
//! Run: `cargo bench -p keyfold-benches --bench archive` (`KEYFOLD_BENCH_ROWS`, default 1,000,000).
//!
//! * `archive/write`: `write_archive` of N applied rows (user keys, 32-byte random values).
//! * `archive/digest`: the archive digest signed in the head, over those bytes.
//! * `archive/read`: `read_archive` of those bytes back into rows.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyfold_archive::{ArchiveOutcome, ArchiveRow, read_archive, write_archive};
use keyfold_core::{Hash, HashSuite};
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn rows_count() -> u64 {
    std::env::var("KEYFOLD_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn rows(n: u64) -> Vec<ArchiveRow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|i| ArchiveRow {
            position: i + 1,
            mutation_id: Hash(rng.random()),
            key_index: Some(Hash(rng.random())),
            key: Some(keyfold_benches::user_key(i)),
            value: Some(rng.random::<[u8; 32]>().to_vec()),
            tombstone: false,
            owner_signature: None,
            expected_version: 0,
            new_version: Some(1),
            outcome: ArchiveOutcome::Applied,
            reason: None,
            leaf_hash: Some(Hash(rng.random())),
        })
        .collect()
}

fn archive(c: &mut Criterion) {
    let n = rows_count();
    let rows = rows(n);
    let bytes = write_archive(&rows).unwrap();
    let mut g = c.benchmark_group("archive");
    g.measurement_time(Duration::from_secs(15)).sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("write", |b| b.iter(|| write_archive(&rows).unwrap()));
    g.bench_function("digest", |b| b.iter(|| HashSuite::Blake3.archive_digest(&bytes)));
    g.bench_function("read", |b| b.iter(|| read_archive(&bytes).unwrap()));
    g.finish();
}

criterion_group!(benches, archive);
criterion_main!(benches);
