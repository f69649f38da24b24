//! Criterion benches of the authenticated map (seeded). Run: `cargo bench -p keyfold-benches`.
//! Set `KEYFOLD_BENCH_KEYS` to change N (default 1,000,000).
//!
//! * `tree_only/*`: the pure update (`Map::prepare`) against the in-memory store: no writes.
//! * `embedded/*`: prepare + durable commit to the redb store (each iteration is a new epoch).
//! * `proofs/*`: lookup with proof generation from the redb store; proof verification.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use keyfold_benches::{prefill, user_key, w1_updates, w2_updates};
use keyfold_core::{HashSuite, Version};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use keyfold_redb::{RedbOptions, RedbStore};
use std::cell::Cell;
use std::time::Duration;

fn keys() -> u64 {
    std::env::var("KEYFOLD_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn config() -> TreeConfig {
    TreeConfig::new(HashSuite::Blake3, 8).unwrap()
}

fn tree_only(c: &mut Criterion) {
    let n = keys();
    let suite = config().suite;
    let map = Map::new(MemoryStore::new(config()));
    prefill(&map, n, 1).unwrap();
    let mut g = c.benchmark_group("tree_only");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    let seed = Cell::new(100u64);
    g.bench_function("w1_10k_updates", |b| {
        b.iter_batched(
            || {
                seed.set(seed.get() + 1);
                w1_updates(suite, n, 10_000, Version(2), seed.get())
            },
            |u| map.prepare(u).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("w2_100k_new", |b| {
        b.iter_batched(|| w2_updates(suite, n, 100_000, 7), |u| map.prepare(u).unwrap(), BatchSize::LargeInput)
    });
    let empty = Map::new(MemoryStore::new(config()));
    g.sample_size(10);
    g.bench_function("w3_empty_to_n", |b| {
        b.iter_batched(
            || keyfold_benches::updates_for(suite, 0..n, Version(1), 1),
            |u| empty.prepare(u).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn embedded(c: &mut Criterion) {
    let n = keys();
    let suite = config().suite;
    let dir = tempfile::tempdir().unwrap();
    let map = Map::new(RedbStore::open(dir.path(), RedbOptions::new(config())).unwrap());
    prefill(&map, n, 1).unwrap();
    let mut g = c.benchmark_group("embedded");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let round = Cell::new(0u64);
    g.bench_function("w1_10k_updates", |b| {
        b.iter_batched(
            || {
                round.set(round.get() + 1);
                w1_updates(suite, n, 10_000, Version(1 + round.get()), round.get())
            },
            |u| map.apply(u).unwrap(),
            BatchSize::LargeInput,
        )
    });
    let next_key = Cell::new(n);
    g.bench_function("w2_100k_new", |b| {
        b.iter_batched(
            || {
                let first = next_key.get();
                next_key.set(first + 100_000);
                w2_updates(suite, first, 100_000, first)
            },
            |u| map.apply(u).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn embedded_w3(c: &mut Criterion) {
    let n = keys();
    let suite = config().suite;
    let mut g = c.benchmark_group("embedded");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.bench_function("w3_empty_to_n", |b| {
        b.iter_batched(
            || (tempfile::tempdir().unwrap(), keyfold_benches::updates_for(suite, 0..n, Version(1), 1)),
            |(dir, u)| {
                let map = Map::new(RedbStore::open(dir.path(), RedbOptions::new(config())).unwrap());
                map.apply(u).unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let n = keys();
    let suite = config().suite;
    let dir = tempfile::tempdir().unwrap();
    let map = Map::new(RedbStore::open(dir.path(), RedbOptions::new(config())).unwrap());
    prefill(&map, n, 1).unwrap();
    let epoch = map.latest_epoch().unwrap();
    let root = map.root(epoch).unwrap();
    let mut g = c.benchmark_group("proofs");
    let i = Cell::new(0u64);
    g.bench_function("generate_from_redb", |b| {
        b.iter(|| {
            i.set((i.get() + 7919) % n);
            map.lookup(&suite.index_of(&user_key(i.get())), epoch).unwrap()
        })
    });
    let lookup = map.lookup(&suite.index_of(&user_key(42)), epoch).unwrap();
    let key = user_key(42);
    g.bench_function("verify", |b| b.iter(|| lookup.proof.verify(suite, &root, &key, lookup.value.as_ref()).unwrap()));
    g.finish();
}

criterion_group!(benches, tree_only, embedded, embedded_w3, proofs);
criterion_main!(benches);
