//! `keyfold bench`: prefill N keys, then run E epochs of M mutations through the map and report
//! each phase. Today the epoch is the tree step (prepare = pure update, commit = store write); the
//! queue, signing and archive phases join when those crates exist.

use clap::{Args, ValueEnum};
use keyfold_benches::user_key;
use keyfold_benches::{prefill, w1_updates, w2_updates};
use keyfold_core::{HashSuite, Version};
use keyfold_shards::{Map, MemoryStore, RedbOptions, RedbStore, TreeConfig, TreeError, TreeStore, lookup_in};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// 10k updates of existing keys into 1M keys.
    W1,
    /// 100k new keys into 1M keys.
    W2,
    /// Empty to 1M keys in one epoch.
    W3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Everything in memory: the tree-only cost.
    Memory,
    /// The durable redb store (fsync per epoch).
    Embedded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// Every mutation updates an existing key.
    Updates,
    /// Every mutation inserts a new key.
    New,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A named workload; explicit flags below override its values.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Keys in the map before the measured epochs.
    #[arg(long)]
    keys: Option<u64>,
    /// Mutations per measured epoch.
    #[arg(long)]
    mutations: Option<u64>,
    /// Number of measured epochs.
    #[arg(long)]
    epochs: Option<u32>,
    /// Whether mutations update existing keys or insert new ones.
    #[arg(long, value_enum)]
    mix: Option<Mix>,
    /// Rayon threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, value_enum, default_value = "embedded")]
    store: StoreKind,
    #[arg(long, default_value = "blake3")]
    hash: String,
    #[arg(long, default_value_t = 8)]
    shard_bits: u8,
    /// Group files of the embedded store (parallel writers).
    #[arg(long, default_value_t = 2)]
    groups: u16,
    /// Directory for the embedded store (default: a temporary directory, removed afterwards).
    #[arg(long)]
    data: Option<PathBuf>,
    /// After the epochs, generate (from one shared snapshot, on all threads) and verify this many
    /// lookup proofs for random keys, half of them absent.
    #[arg(long, default_value_t = 0)]
    proofs: u64,
    /// Run the whole epoch pipeline instead of the map alone: mutations are appended to the
    /// durable queue (batches of 1,000), then each epoch is cut, applied with compare-and-set,
    /// written, signed and committed by the real epoch job.
    #[arg(long)]
    pipeline: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug)]
struct Plan {
    keys: u64,
    mutations: u64,
    epochs: u32,
    mix: Mix,
    proofs: u64,
}

impl BenchArgs {
    fn plan(&self) -> Result<Plan, String> {
        let (keys, mutations, epochs, mix) = match self.preset {
            Some(Preset::W1) => (1_000_000, 10_000, 5, Mix::Updates),
            Some(Preset::W2) => (1_000_000, 100_000, 3, Mix::New),
            Some(Preset::W3) => (0, 1_000_000, 1, Mix::New),
            None => (100_000, 10_000, 5, Mix::Updates),
        };
        let plan = Plan {
            keys: self.keys.unwrap_or(keys),
            mutations: self.mutations.unwrap_or(mutations),
            epochs: self.epochs.unwrap_or(epochs),
            mix: self.mix.unwrap_or(mix),
            proofs: self.proofs,
        };
        if plan.mix == Mix::Updates && plan.mutations > plan.keys {
            return Err(format!(
                "--mix updates needs --mutations ({}) <= --keys ({}); use --mix new to insert keys",
                plan.mutations, plan.keys
            ));
        }
        if plan.epochs == 0 {
            return Err("--epochs must be at least 1".into());
        }
        Ok(plan)
    }
}

#[derive(Debug)]
struct EpochTiming {
    prepare: Duration,
    commit: Duration,
}

/// CPU seconds (user + system) this process has used, from /proc (Linux).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run_epochs<S: TreeStore>(map: &Map<S>, plan: &Plan, seed: u64) -> Result<Vec<EpochTiming>, TreeError> {
    let suite = map.store().config().suite;
    let mut timings = Vec::new();
    for e in 0..u64::from(plan.epochs) {
        let updates = match plan.mix {
            Mix::Updates => w1_updates(suite, plan.keys, plan.mutations, Version(e + 2), seed + e + 1),
            Mix::New => w2_updates(suite, plan.keys + e * plan.mutations, plan.mutations, seed + e + 1),
        };
        let start = Instant::now();
        let batch = map.prepare(updates)?;
        let prepared = Instant::now();
        let root = map.commit(&batch)?;
        let done = Instant::now();
        let t = EpochTiming { prepare: prepared - start, commit: done - prepared };
        println!(
            "epoch {:>3}: prepare {:>9.2} ms  commit {:>9.2} ms  total {:>9.2} ms  ({} node writes)  root {}",
            root.epoch.0,
            ms(t.prepare),
            ms(t.commit),
            ms(t.prepare + t.commit),
            batch.node_count(),
            &root.hash.to_hex()[..16]
        );
        timings.push(t);
    }
    Ok(timings)
}

/// Proof throughput: `count` lookups of keys `0..2 * keys` (half absent) from one snapshot of the
/// latest epoch, on the current rayon pool; then the same proofs verified.
fn bench_proofs<S: TreeStore>(map: &Map<S>, keys: u64, count: u64) -> Result<(), TreeError> {
    let suite = map.store().config().suite;
    let epoch = map.latest_epoch()?;
    let root = map.root(epoch)?;
    let snapshot = map.store().snapshot(epoch)?;
    let ids: Vec<u64> = (0..count).map(|i| (i * 7919) % (2 * keys.max(1))).collect();
    let start = Instant::now();
    let lookups: Vec<_> = ids
        .par_iter()
        .map(|i| Ok((*i, lookup_in(&snapshot, suite, &suite.index_of(&user_key(*i)))?)))
        .collect::<Result<_, TreeError>>()?;
    let generated = start.elapsed();
    let start = Instant::now();
    let failures = lookups
        .par_iter()
        .filter(|(i, l)| l.proof.verify(suite, &root, &user_key(*i), l.value.as_ref()).is_err())
        .count();
    let verified = start.elapsed();
    assert_eq!(failures, 0, "every generated proof must verify");
    let present = lookups.iter().filter(|(_, l)| l.value.is_some()).count();
    println!(
        "proofs: {count} lookups ({present} present) generated at {:.0}/s ({:.2} us each), verified at {:.0}/s ({:.2} us each)",
        count as f64 / generated.as_secs_f64(),
        generated.as_secs_f64() * 1e6 / count as f64,
        count as f64 / verified.as_secs_f64(),
        verified.as_secs_f64() * 1e6 / count as f64,
    );
    Ok(())
}

fn bench_map<S: TreeStore>(map: &Map<S>, plan: &Plan, seed: u64) -> Result<(), String> {
    if plan.keys > 0 {
        let start = Instant::now();
        prefill(map, plan.keys, seed).map_err(|e| e.to_string())?;
        println!("prefill: {} keys in one epoch: {:.2} ms", plan.keys, ms(start.elapsed()));
    }
    let cpu_before = cpu_time();
    let wall = Instant::now();
    let timings = run_epochs(map, plan, seed).map_err(|e| e.to_string())?;
    let wall = wall.elapsed();
    let prepare = median(timings.iter().map(|t| t.prepare).collect());
    let commit = median(timings.iter().map(|t| t.commit).collect());
    let total = median(timings.iter().map(|t| t.prepare + t.commit).collect());
    println!(
        "median of {} epochs: prepare (tree only) {:.2} ms, commit {:.2} ms, epoch {:.2} ms; {:.0} mutations/s",
        timings.len(),
        ms(prepare),
        ms(commit),
        ms(total),
        plan.mutations as f64 / total.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
        println!("cores used during the epochs: {:.2}", (after - before).as_secs_f64() / wall.as_secs_f64());
    }
    if plan.proofs > 0 {
        let total_keys = plan.keys + if plan.mix == Mix::New { u64::from(plan.epochs) * plan.mutations } else { 0 };
        bench_proofs(map, total_keys, plan.proofs).map_err(|e| e.to_string())?;
    }
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS: {rss} MiB");
    }
    Ok(())
}

fn ms_of(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The full pipeline on the embedded stores in a temporary directory.
fn bench_pipeline(args: &BenchArgs, plan: &Plan, config: TreeConfig) -> Result<(), String> {
    use keyfold_core::{Mutation, SigningKey};
    use keyfold_epoch::{EpochJob, RedbHeadStore};
    use keyfold_ingest::{Queue, RedbQueue, RedbQueueOptions};
    use rand::{Rng, SeedableRng};

    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args.data.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let suite = config.suite;
    let queue = RedbQueue::open(&dir.join("queue.redb"), RedbQueueOptions { suite, max_depth: u64::MAX })
        .map_err(|e| e.to_string())?;
    let store = RedbStore::open(&dir.join("tree"), RedbOptions { groups: args.groups, ..RedbOptions::new(config) })
        .map_err(|e| e.to_string())?;
    let heads = RedbHeadStore::open(&dir.join("heads.redb")).map_err(|e| e.to_string())?;
    let archives =
        std::sync::Arc::new(keyfold_epoch::DirArchives::open(&dir.join("archives")).map_err(|e| e.to_string())?);
    // A benchmark key (seeded, never used outside this run).
    let key = SigningKey::from_bytes(&[u8::try_from(args.seed % 251).unwrap_or(1); 32]);
    // Leave a complete directory behind (config and public key), so `keyfold verify --data DIR`
    // can replay what this benchmark produced.
    let dir_config = crate::directory::DirectoryConfig {
        origin: "bench.keyfold.localhost".into(),
        hash: suite.name().into(),
        shard_bits: config.shard_bits,
        groups: args.groups,
        queue_max_depth: u64::MAX,
    };
    std::fs::write(dir.join("keyfold.toml"), toml::to_string(&dir_config).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("signing.pub"),
        format!(
            "{}\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.verifying_key().as_bytes())
        ),
    )
    .map_err(|e| e.to_string())?;
    let job = EpochJob::open(queue, Map::new(store), heads, archives, key, "bench.keyfold.localhost", 1)
        .map_err(|e| e.to_string())?;
    let mut versions: Vec<u64> = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let mut now = 1_000u64;
    let ingest = |mutations: Vec<Mutation>| -> Result<Duration, String> {
        let start = Instant::now();
        for chunk in mutations.chunks(1000) {
            job.queue().append(chunk.to_vec()).map_err(|e| e.to_string())?;
        }
        Ok(start.elapsed())
    };
    let value = |rng: &mut rand_chacha::ChaCha8Rng| Some(rng.random::<[u8; 32]>().to_vec());
    if plan.keys > 0 {
        let batch: Vec<Mutation> = (0..plan.keys)
            .map(|i| Mutation {
                key: user_key(i),
                value: value(&mut rng),
                expected_version: Version(0),
                owner_signature: None,
            })
            .collect();
        let appended = ingest(batch)?;
        now += 1000;
        let report = job.run_epoch(now).map_err(|e| e.to_string())?;
        versions = vec![1; usize::try_from(plan.keys).map_err(|e| e.to_string())?];
        let t = report.timings;
        println!(
            "prefill: {} keys: ingest {:.0} ms | epoch: cut {:.0}, apply {:.0}, tree {:.0}, archive {:.0}, sign {:.2}, commit {:.0} ms",
            plan.keys,
            ms_of(appended),
            ms_of(t.cut),
            ms_of(t.apply),
            ms_of(t.tree),
            ms_of(t.archive),
            ms_of(t.sign),
            ms_of(t.commit)
        );
    }
    let mut totals = Vec::new();
    let mut phases: Vec<[Duration; 6]> = Vec::new();
    for e in 0..u64::from(plan.epochs) {
        let batch: Vec<Mutation> = match plan.mix {
            Mix::Updates => keyfold_benches::w1_ids(plan.keys, plan.mutations, args.seed + e + 1)
                .into_iter()
                .map(|i| {
                    let slot = &mut versions[usize::try_from(i).expect("fits")];
                    let m = Mutation {
                        key: user_key(i),
                        value: value(&mut rng),
                        expected_version: Version(*slot),
                        owner_signature: None,
                    };
                    *slot += 1;
                    m
                })
                .collect(),
            Mix::New => (0..plan.mutations)
                .map(|j| Mutation {
                    key: user_key(plan.keys + e * plan.mutations + j),
                    value: value(&mut rng),
                    expected_version: Version(0),
                    owner_signature: None,
                })
                .collect(),
        };
        let appended = ingest(batch)?;
        now += 1000;
        let report = job.run_epoch(now).map_err(|e| e.to_string())?;
        let t = report.timings;
        let total = t.cut + t.apply + t.tree + t.archive + t.sign + t.commit;
        println!(
            "epoch {:>3}: ingest {:>7.1} ms | cut {:>6.1}  apply {:>6.1}  tree {:>6.1}  sign {:>5.2}  commit {:>5.1}  total {:>7.1} ms | {} applied, {} rejected",
            report.head.epoch,
            ms_of(appended),
            ms_of(t.cut),
            ms_of(t.apply),
            ms_of(t.tree),
            ms_of(t.sign),
            ms_of(t.commit),
            ms_of(total),
            report.head.counts.applied,
            report.head.counts.rejected
        );
        if report.head.counts.rejected != 0 {
            return Err("the bench's mutations must all apply".into());
        }
        totals.push(total);
        phases.push([t.cut, t.apply, t.tree, t.archive, t.sign, t.commit]);
    }
    let med = |i: usize| ms_of(median(phases.iter().map(|p| p[i]).collect()));
    println!(
        "median of {} epochs (queue drain to committed signed head): {:.1} ms (cut {:.1}, apply {:.1}, tree {:.1}, archive {:.1}, sign {:.2}, commit {:.1})",
        totals.len(),
        ms_of(median(totals)),
        med(0),
        med(1),
        med(2),
        med(3),
        med(4),
        med(5)
    );
    Ok(())
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    let plan = args.plan()?;
    let suite = HashSuite::from_name(&args.hash)
        .ok_or_else(|| format!("unknown --hash {:?}: choose blake3 or sha256", args.hash))?;
    let config = TreeConfig::new(suite, args.shard_bits).map_err(|e| e.to_string())?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    println!(
        "keyfold bench: {} keys, {} epochs of {} {:?} mutations, {:?} store, {}, {} shard bits, {} threads, seed {}",
        plan.keys,
        plan.epochs,
        plan.mutations,
        plan.mix,
        args.store,
        suite.name(),
        config.shard_bits,
        threads,
        args.seed
    );
    if args.pipeline {
        return pool.install(|| bench_pipeline(args, &plan, config));
    }
    pool.install(|| match args.store {
        StoreKind::Memory => bench_map(&Map::new(MemoryStore::new(config)), &plan, args.seed),
        StoreKind::Embedded => {
            let temp;
            let dir = match &args.data {
                Some(d) => d.clone(),
                None => {
                    temp = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
                    temp.path().to_path_buf()
                }
            };
            let options = RedbOptions { groups: args.groups, ..RedbOptions::new(config) };
            let store = RedbStore::open(&dir, options).map_err(|e| e.to_string())?;
            if store.latest_epoch().map_err(|e| e.to_string())?.0 != 0 {
                return Err(format!("{} already holds a map; benchmark into an empty directory", dir.display()));
            }
            bench_map(&Map::new(store), &plan, args.seed)
        }
    })
}
