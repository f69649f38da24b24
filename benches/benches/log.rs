//! The log of map heads (`keyfold_core::LogTree`) at 100,000 epochs, seeded.
//! Run: `cargo bench -p keyfold-benches --bench log`. Set `KEYFOLD_BENCH_EPOCHS` to change the size.
//!
//! The target: a consistency proof for any two sizes is served in at most 1 ms p99 at 100k epochs.
//! Criterion reports a mean per iteration, so first each operation is timed call by call (10,000
//! seeded calls) and its p50, p99, p99.9 and max printed (`log latency ...` lines).
//!
//! * `log/consistency_proof`: `consistency_proof(old, new)`, random `1 <= old <= new <= N`.
//! * `log/inclusion_proof`: `inclusion_proof(index, size)`, random `index < size <= N`.
//! * `log/append_epoch`: `push` one leaf hash and `root(size)` of the new size: what each epoch adds.

use criterion::{Criterion, criterion_group, criterion_main};
use keyfold_core::log::leaf_hash;
use keyfold_core::{Hash, LogTree};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Calls timed one by one for the percentiles.
const TIMED_CALLS: usize = 10_000;
/// Appends timed on one copy of the log before it is rebuilt (it grows by at most this much).
const APPEND_BATCH: u64 = 10_000;

fn epochs() -> u64 {
    std::env::var("KEYFOLD_BENCH_EPOCHS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// Leaf `i` of the bench log: a map-head-sized record hashed as an RFC 6962 leaf.
fn leaf(i: u64) -> Hash {
    leaf_hash(format!("example.com/keyfold\nkeyfold map v1 blake3\nepoch {i}\n{}", "x".repeat(300)).as_bytes())
}

/// A log of `n` leaves built by pushing, as the server builds it (so its buffers have the
/// capacity a running server's have, unlike a clone's).
fn build(leaves: &[Hash]) -> LogTree {
    let mut tree = LogTree::new();
    leaves.iter().for_each(|l| tree.push(*l));
    tree
}

fn pair(rng: &mut ChaCha8Rng, n: u64) -> (u64, u64) {
    let (a, b) = (rng.random_range(1..=n), rng.random_range(1..=n));
    (a.min(b), a.max(b))
}

/// Times `TIMED_CALLS` calls of `op` one by one and prints the percentiles.
fn percentiles(name: &str, n: u64, mut op: impl FnMut(usize)) {
    let mut nanos: Vec<u128> = (0..TIMED_CALLS)
        .map(|i| {
            let start = Instant::now();
            op(i);
            start.elapsed().as_nanos()
        })
        .collect();
    nanos.sort_unstable();
    // The nearest-rank percentile, `per_mille` thousandths.
    let at = |per_mille: usize| {
        let rank = (nanos.len() * per_mille).div_ceil(1000).clamp(1, nanos.len());
        Duration::from_nanos(u64::try_from(nanos[rank - 1]).unwrap_or(u64::MAX))
    };
    println!(
        "log latency {name} at {n} epochs over {TIMED_CALLS} calls: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        at(500),
        at(990),
        at(999),
        at(1000)
    );
}

fn print_percentiles(leaves: &[Hash]) {
    let n = leaves.len() as u64;
    let tree = build(leaves);
    let mut rng = ChaCha8Rng::seed_from_u64(0x6c6f_6701);
    let pairs: Vec<(u64, u64)> = (0..TIMED_CALLS).map(|_| pair(&mut rng, n)).collect();
    percentiles("consistency_proof", n, |i| {
        black_box(tree.consistency_proof(pairs[i].0, pairs[i].1).unwrap());
    });
    let points: Vec<(u64, u64)> = (0..TIMED_CALLS).map(|_| pair(&mut rng, n)).map(|(a, b)| (a - 1, b)).collect();
    percentiles("inclusion_proof", n, |i| {
        black_box(tree.inclusion_proof(points[i].0, points[i].1).unwrap());
    });
    let more: Vec<Hash> = (n..n + TIMED_CALLS as u64).map(leaf).collect();
    let mut growing = tree;
    percentiles("append_epoch (push + root)", n, |i| {
        growing.push(more[i]);
        black_box(growing.root(growing.size()).unwrap());
    });
}

fn log(c: &mut Criterion) {
    let n = epochs();
    let leaves: Vec<Hash> = (0..n).map(leaf).collect();
    print_percentiles(&leaves);
    let tree = build(&leaves);
    let mut g = c.benchmark_group("log");
    let mut rng = ChaCha8Rng::seed_from_u64(0x6c6f_6702);
    g.bench_function("consistency_proof", |b| {
        b.iter_batched(|| pair(&mut rng, n), |(old, new)| tree.consistency_proof(old, new).unwrap(), SMALL)
    });
    g.bench_function("inclusion_proof", |b| {
        b.iter_batched(|| pair(&mut rng, n), |(index, size)| tree.inclusion_proof(index - 1, size).unwrap(), SMALL)
    });
    let more: Vec<Hash> = (n..n + APPEND_BATCH).map(leaf).collect();
    g.sample_size(20);
    g.bench_function("append_epoch", |b| {
        // Each batch of appends starts again from the N-leaf log (rebuilt, untimed), so the log
        // stays within APPEND_BATCH of N leaves however many iterations criterion asks for.
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let batch = (iters - done).min(APPEND_BATCH);
                let mut growing = build(&leaves);
                let start = Instant::now();
                for l in &more[..usize::try_from(batch).unwrap()] {
                    growing.push(*l);
                    black_box(growing.root(growing.size()).unwrap());
                }
                timed += start.elapsed();
                done += batch;
            }
            timed
        })
    });
    g.finish();
}

const SMALL: criterion::BatchSize = criterion::BatchSize::SmallInput;

criterion_group!(benches, log);
criterion_main!(benches);
