//! `keyfold bench`: the operator's benchmark of epoch jobs. Prefills N keys, then runs E epochs of
//! M seeded mutations (updates of existing keys and new keys, mixed) through the real pipeline
//! (queue append, cut, apply, tree, archive, sign, commit, log of heads), or with `--tree-only` through the map
//! alone, and reports each phase, mutations/s, cores used and peak RSS, as text and as JSON. For
//! each pipeline epoch it also reports the epoch's input (the bytes of the mutations it consumed)
//! and how far the resident set grew above its start during the epoch, and their ratio: the
//! epoch's memory per byte of input (the goal: at most 2 plus a fixed overhead).

use crate::error::CliError;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use keyfold_benches::{prefill, updates_for, user_key, w1_ids};
use keyfold_core::{HashSuite, Mutation, SigningKey, Version};
use keyfold_epoch::{
    ArchiveSink, EpochJob, EpochLimits, HeadStore, MemoryArchives, MemoryHeadStore, ObjectArchives, Retention,
};
use keyfold_ingest::{MemoryQueue, Queue};
use keyfold_map::{Map, MemoryStore, TreeConfig, TreeError, TreeStore, lookup_in};
use keyfold_redb::{Layout, RedbHeadStore, RedbOptions, RedbQueue, RedbQueueOptions, RedbStore};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 10k updates of existing keys into 1M keys, 5 epochs.
    W1,
    /// 100k new keys into 1M keys, 3 epochs.
    W2,
    /// Empty to 1M keys in one epoch.
    W3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Everything in memory (queue, map, heads, archives): the compute cost.
    Memory,
    /// The durable embedded stores (redb queue, map and heads, archive files; fsync per epoch).
    Embedded,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A named workload; explicit flags below override its values.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Keys in the map before the measured epochs (the prefill, one epoch).
    #[arg(long)]
    keys: Option<u64>,
    /// Mutations per measured epoch.
    #[arg(long)]
    mutations: Option<u64>,
    /// Number of measured epochs.
    #[arg(long)]
    epochs: Option<u32>,
    /// Share of each epoch's mutations that insert new keys; the rest update existing keys
    /// (default 0.5; W1 is 0, W2 and W3 are 1).
    #[arg(long)]
    new_fraction: Option<f64>,
    /// Bytes of each mutation's (random) value in pipeline runs: large values show an epoch's
    /// memory per byte of input (`memory_ratio`) without the per-mutation overhead.
    #[arg(long, default_value_t = 32)]
    value_bytes: usize,
    /// Rayon threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, value_enum, default_value = "embedded")]
    store: StoreKind,
    /// blake3 or sha256.
    #[arg(long, default_value = "blake3")]
    hash: String,
    #[arg(long, default_value_t = 8)]
    shard_bits: u8,
    /// Group files of the embedded map store (parallel writers).
    #[arg(long, default_value_t = 2)]
    groups: u16,
    /// Directory for the embedded stores (default: a temporary directory, removed afterwards). A
    /// pipeline run leaves a complete directory that `keyfold verify --data DIR` can replay.
    #[arg(long)]
    data: Option<PathBuf>,
    /// After the epochs, generate (from one snapshot, on all threads) and verify this many lookup
    /// proofs for keys, half of them absent (`--tree-only` runs).
    #[arg(long, default_value_t = 0)]
    proofs: u64,
    /// Time the map alone (the pure tree update, then its commit) instead of the epoch pipeline.
    #[arg(long)]
    tree_only: bool,
    /// Keep only the last N epochs (a retention window, pipeline runs): after each epoch the map
    /// is pruned and earlier archives and proofs deleted, as `serve --retain-epochs N` does.
    #[arg(long)]
    retain: Option<u64>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Serialize)]
struct Plan {
    preset: Option<Preset>,
    keys: u64,
    mutations: u64,
    epochs: u32,
    new_fraction: f64,
    /// Per epoch: how many mutations update existing keys, and how many insert new ones.
    updates_per_epoch: u64,
    new_per_epoch: u64,
    /// Bytes of each mutation's value (pipeline runs).
    value_bytes: usize,
}

impl BenchArgs {
    /// The workload the flags describe (flags that describe none are the user's to fix).
    fn plan(&self) -> Result<Plan, CliError> {
        let (keys, mutations, epochs, new_fraction) = match self.preset {
            Some(Preset::W1) => (1_000_000, 10_000, 5, 0.0),
            Some(Preset::W2) => (1_000_000, 100_000, 3, 1.0),
            Some(Preset::W3) => (0, 1_000_000, 1, 1.0),
            None => (100_000, 10_000, 5, 0.5),
        };
        let keys = self.keys.unwrap_or(keys);
        let mutations = self.mutations.unwrap_or(mutations);
        let epochs = self.epochs.unwrap_or(epochs);
        let new_fraction = self.new_fraction.unwrap_or(new_fraction);
        if !(0.0..=1.0).contains(&new_fraction) {
            return Err(CliError::usage(format!("--new-fraction must be between 0 and 1, got {new_fraction}")));
        }
        if epochs == 0 {
            return Err(CliError::usage("--epochs must be at least 1"));
        }
        if self.proofs > 0 && !self.tree_only {
            return Err(CliError::usage("--proofs measures the map's lookups: use it with --tree-only"));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let new_per_epoch = ((mutations as f64) * new_fraction).round() as u64;
        let updates_per_epoch = mutations - new_per_epoch;
        if updates_per_epoch > keys {
            return Err(CliError::usage(format!(
                "each epoch updates {updates_per_epoch} existing keys but only {keys} exist: raise --keys or --new-fraction"
            )));
        }
        let value_bytes = self.value_bytes;
        Ok(Plan {
            preset: self.preset,
            keys,
            mutations,
            epochs,
            new_fraction,
            updates_per_epoch,
            new_per_epoch,
            value_bytes,
        })
    }
}

/// One measured epoch: its phases in order, and what its mutations did.
#[derive(Debug, Clone, Serialize)]
struct EpochSample {
    epoch: u64,
    /// Milliseconds per phase, in pipeline order. `ingest` (queue appends) is not part of `total_ms`.
    phases_ms: BTreeMap<&'static str, f64>,
    total_ms: f64,
    applied: u64,
    rejected: u64,
    /// Bytes of the mutations the epoch consumed (their canonical encodings).
    input_bytes: u64,
    /// How far the resident set grew above its size at the epoch's start, at its peak during
    /// the epoch (Linux; `None` where the peak cannot be reset).
    memory_growth_bytes: Option<u64>,
    /// `memory_growth_bytes / input_bytes`: the epoch's memory per byte of input.
    memory_ratio: Option<f64>,
    /// After the epoch: bytes of the map store's files and of the whole data directory
    /// (embedded pipeline runs).
    tree_bytes: Option<u64>,
    data_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    avx2: bool,
    avx512f: bool,
    sha_ni: bool,
}

#[derive(Debug, Serialize)]
struct ProofFigures {
    lookups: u64,
    present: usize,
    generated_per_second: f64,
    verified_per_second: f64,
}

/// The whole report (`--json`).
#[derive(Debug, Serialize)]
struct Report {
    keyfold_version: &'static str,
    mode: &'static str,
    store: StoreKind,
    hash: &'static str,
    shard_bits: u8,
    groups: u16,
    threads: usize,
    seed: u64,
    plan: Plan,
    machine: Machine,
    prefill: Option<EpochSample>,
    epochs: Vec<EpochSample>,
    /// Median of each phase over the measured epochs.
    median_phases_ms: BTreeMap<&'static str, f64>,
    median_total_ms: f64,
    mutations_per_second: f64,
    /// CPU time over wall time during the measured epochs.
    cores_used: Option<f64>,
    peak_rss_mib: Option<u64>,
    /// The largest `memory_ratio` of the measured pipeline epochs.
    max_memory_ratio: Option<f64>,
    proofs: Option<ProofFigures>,
}

/// CPU seconds (user + system) this process has used, from /proc (Linux).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

/// A `/proc/self/status` field in KiB (`VmHWM`: peak resident set, `VmRSS`: current).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok()
}

/// The process's peak resident set before the last [`reset_peak_rss`] (KiB).
static PEAK_BEFORE_RESET_KIB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The process's peak resident set over the whole run, across the per-epoch resets.
fn peak_rss_mib() -> Option<u64> {
    let before = PEAK_BEFORE_RESET_KIB.load(std::sync::atomic::Ordering::Relaxed);
    Some(status_kib("VmHWM:")?.max(before) / 1024)
}

/// Resets the peak resident set to the current one (Linux's `clear_refs` 5) and returns the
/// current one in bytes; `None` if either is unavailable.
fn reset_peak_rss() -> Option<u64> {
    let peak = status_kib("VmHWM:")?;
    PEAK_BEFORE_RESET_KIB.fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    Some(status_kib("VmRSS:")? * 1024)
}

/// The peak resident set's growth above `start` (bytes) since [`reset_peak_rss`].
fn rss_growth_since(start: Option<u64>) -> Option<u64> {
    Some((status_kib("VmHWM:")? * 1024).saturating_sub(start?))
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(':').nth(1)).map(|v| v.trim().to_owned())
    };
    let flags = field("flags").unwrap_or_default();
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: field("model name"),
        avx2: has("avx2"),
        avx512f: has("avx512f"),
        sha_ni: has("sha_ni"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Progress on a terminal; plain lines otherwise (indicatif hides bars when stderr is not a TTY,
/// and a hidden bar drops its `println`s).
struct Progress(ProgressBar);

impl Progress {
    fn new(len: u64, what: &str) -> Progress {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        Progress(bar)
    }

    fn say(&self, line: &str) {
        if self.0.is_hidden() { println!("{line}") } else { self.0.println(line) }
    }
}

fn sample(epoch: u64, phases: &[(&'static str, Duration)], ingest: Option<Duration>) -> EpochSample {
    let mut phases_ms: BTreeMap<&'static str, f64> = phases.iter().map(|(name, d)| (*name, ms(*d))).collect();
    let total_ms = ms(phases.iter().map(|(_, d)| *d).sum());
    if let Some(ingest) = ingest {
        phases_ms.insert("ingest", ms(ingest));
    }
    EpochSample {
        epoch,
        phases_ms,
        total_ms,
        applied: 0,
        rejected: 0,
        input_bytes: 0,
        memory_growth_bytes: None,
        memory_ratio: None,
        tree_bytes: None,
        data_bytes: None,
    }
}

fn describe(s: &EpochSample, order: &[&str]) -> String {
    let phases: Vec<String> =
        order.iter().filter_map(|name| s.phases_ms.get(name).map(|v| format!("{name} {v:.1}"))).collect();
    let memory = match (s.memory_growth_bytes, s.memory_ratio) {
        (Some(growth), Some(ratio)) => format!(
            " | input {:.1} MiB, memory +{:.1} MiB ({ratio:.2}x)",
            s.input_bytes as f64 / 1048576.0,
            growth as f64 / 1048576.0
        ),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}: {:>9.1} ms ({}) | {} applied, {} rejected{memory}",
        s.epoch,
        s.total_ms,
        phases.join(", "),
        s.applied,
        s.rejected
    )
}

/// The keys each measured epoch touches: `updates_per_epoch` existing keys (seeded choice) and
/// `new_per_epoch` new keys numbered after every key so far.
fn epoch_keys(plan: &Plan, e: u64, seed: u64) -> (Vec<u64>, std::ops::Range<u64>) {
    let existing = plan.keys + e * plan.new_per_epoch;
    let updated: Vec<u64> = if plan.updates_per_epoch == 0 {
        Vec::new()
    } else {
        w1_ids(existing, plan.updates_per_epoch, seed + e + 1).into_iter().collect()
    };
    (updated, existing..existing + plan.new_per_epoch)
}

// ---------------------------------------------------------------- tree only

fn tree_epochs<S: TreeStore>(
    map: &Map<S>,
    plan: &Plan,
    seed: u64,
    progress: &Progress,
) -> Result<Vec<EpochSample>, TreeError> {
    let suite = map.store().config().suite;
    let mut samples = Vec::new();
    for e in 0..u64::from(plan.epochs) {
        let (updated, new) = epoch_keys(plan, e, seed);
        let mut updates = updates_for(suite, updated.into_iter(), Version(e + 2), seed + e + 1);
        updates.extend(updates_for(suite, new, Version(1), seed + e + 1_000_001));
        let count = updates.len() as u64;
        let start = Instant::now();
        let batch = map.prepare(updates)?;
        let prepared = Instant::now();
        let root = map.commit(&batch)?;
        let done = Instant::now();
        let mut s = sample(root.epoch.0, &[("prepare", prepared - start), ("commit", done - prepared)], None);
        s.applied = count;
        progress.say(&format!(
            "{}  ({} node writes, root {})",
            describe(&s, &["prepare", "commit"]),
            batch.node_count(),
            &root.hash.to_hex()[..16]
        ));
        progress.0.inc(1);
        samples.push(s);
    }
    Ok(samples)
}

/// Proof throughput: `count` lookups of keys `0..2 * keys` (half absent) from one snapshot of the
/// latest epoch, on the current rayon pool; then the same proofs verified.
fn bench_proofs<S: TreeStore>(map: &Map<S>, keys: u64, count: u64) -> Result<ProofFigures, TreeError> {
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
    let figures = ProofFigures {
        lookups: count,
        present: lookups.iter().filter(|(_, l)| l.value.is_some()).count(),
        generated_per_second: count as f64 / generated.as_secs_f64(),
        verified_per_second: count as f64 / verified.as_secs_f64(),
    };
    println!(
        "proofs: {count} lookups ({} present) generated at {:.0}/s, verified at {:.0}/s",
        figures.present, figures.generated_per_second, figures.verified_per_second
    );
    Ok(figures)
}

struct Measured {
    prefill: Option<EpochSample>,
    epochs: Vec<EpochSample>,
    cores_used: Option<f64>,
    proofs: Option<ProofFigures>,
}

fn bench_tree<S: TreeStore>(map: &Map<S>, plan: &Plan, args: &BenchArgs) -> Result<Measured, CliError> {
    let prefilled = if plan.keys > 0 {
        let start = Instant::now();
        prefill(map, plan.keys, args.seed).map_err(CliError::store)?;
        let mut s = sample(1, &[("prepare+commit", start.elapsed())], None);
        s.applied = plan.keys;
        println!("prefill: {} keys in one epoch: {:.1} ms", plan.keys, s.total_ms);
        Some(s)
    } else {
        None
    };
    let progress = Progress::new(u64::from(plan.epochs), "epochs");
    let (cpu_before, wall) = (cpu_time(), Instant::now());
    let epochs = tree_epochs(map, plan, args.seed, &progress).map_err(CliError::store)?;
    let cores_used = cores_used(cpu_before, wall);
    progress.0.finish_and_clear();
    let proofs = if args.proofs > 0 {
        let total_keys = plan.keys + u64::from(plan.epochs) * plan.new_per_epoch;
        Some(bench_proofs(map, total_keys, args.proofs).map_err(CliError::store)?)
    } else {
        None
    };
    Ok(Measured { prefill: prefilled, epochs, cores_used, proofs })
}

fn cores_used(cpu_before: Option<Duration>, wall: Instant) -> Option<f64> {
    let wall = wall.elapsed();
    Some((cpu_time()? - cpu_before?).as_secs_f64() / wall.as_secs_f64())
}

// ---------------------------------------------------------------- the pipeline

const PIPELINE_PHASES: [&str; 9] = ["ingest", "cut", "apply", "tree", "archive", "sign", "commit", "log", "prune"];

/// Seeded mutations with the versions the keys are at, so that every one applies.
struct Workload {
    versions: Vec<u64>,
    rng: rand_chacha::ChaCha8Rng,
    value_bytes: usize,
}

impl Workload {
    fn mutation(&mut self, id: u64) -> Mutation {
        let slot = usize::try_from(id).expect("key ids fit usize");
        if self.versions.len() <= slot {
            self.versions.resize(slot + 1, 0);
        }
        let expected = self.versions[slot];
        self.versions[slot] += 1;
        Mutation {
            key: user_key(id),
            value: Some({
                let mut value = vec![0u8; self.value_bytes];
                self.rng.fill(&mut value[..]);
                value
            }),
            expected_version: Version(expected),
            owner_signature: None,
        }
    }
}

/// Bytes on disk of the files under `path` (allocated blocks: redb grows its files sparsely, ahead
/// of use, so their lengths overstate what they hold).
fn bytes_under(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn run_pipeline<Q: Queue, S: TreeStore, H: HeadStore>(
    job: &EpochJob<Q, S, H>,
    plan: &Plan,
    args: &BenchArgs,
    dir: Option<&Path>,
) -> Result<Measured, CliError> {
    let rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let mut workload = Workload { versions: Vec::new(), rng, value_bytes: args.value_bytes };
    let mut now_ms = 1_000u64;
    let mut epoch = |ids: &mut dyn Iterator<Item = u64>, workload: &mut Workload, progress: Option<&Progress>| {
        let mut ingest = Duration::ZERO;
        // Generated and appended a chunk at a time: the bench holds none of them during the epoch.
        loop {
            let chunk: Vec<Mutation> = ids.take(1000).map(|id| workload.mutation(id)).collect();
            if chunk.is_empty() {
                break;
            }
            let (n, start) = (chunk.len() as u64, Instant::now());
            job.queue().append(chunk).map_err(CliError::store)?;
            ingest += start.elapsed();
            if let Some(p) = progress {
                p.0.inc(n);
            }
        }
        now_ms += 1000;
        let rss_start = reset_peak_rss();
        let report = job.run_epoch(now_ms).map_err(CliError::store)?;
        let mut s = sample(report.head.epoch.0, &report.timings.named(), Some(ingest));
        s.memory_growth_bytes = rss_growth_since(rss_start);
        s.input_bytes = report.input_bytes;
        s.memory_ratio = s.memory_growth_bytes.map(|g| g as f64 / report.input_bytes.max(1) as f64);
        s.applied = report.head.counts.applied;
        s.rejected = report.head.counts.rejected;
        s.tree_bytes = dir.map(|d| bytes_under(&Layout::new(d).tree()));
        s.data_bytes = dir.map(bytes_under);
        if s.rejected != 0 {
            return Err(CliError::verification(format!(
                "epoch {}: the bench's mutations must all apply, {} were rejected",
                s.epoch, s.rejected
            )));
        }
        Ok::<EpochSample, CliError>(s)
    };
    let prefilled = if plan.keys > 0 {
        let progress = Progress::new(plan.keys, "prefill (queue append)");
        let s = epoch(&mut (0..plan.keys), &mut workload, Some(&progress))?;
        progress.0.finish_and_clear();
        println!("prefill: {} keys: {}", plan.keys, describe(&s, &PIPELINE_PHASES));
        Some(s)
    } else {
        None
    };
    let progress = Progress::new(u64::from(plan.epochs), "epochs");
    let (cpu_before, wall) = (cpu_time(), Instant::now());
    let mut epochs = Vec::new();
    for e in 0..u64::from(plan.epochs) {
        let (updated, new) = epoch_keys(plan, e, args.seed);
        let s = epoch(&mut updated.into_iter().chain(new), &mut workload, None)?;
        progress.say(&describe(&s, &PIPELINE_PHASES));
        progress.0.inc(1);
        epochs.push(s);
    }
    let cores_used = cores_used(cpu_before, wall);
    progress.0.finish_and_clear();
    Ok(Measured { prefill: prefilled, epochs, cores_used, proofs: None })
}

/// A benchmark signing key (seeded, never used outside this run).
fn bench_key(seed: u64) -> SigningKey {
    SigningKey::from_bytes(&[u8::try_from(seed % 251).unwrap_or(1); 32])
}

const BENCH_ORIGIN: &str = "bench.keyfold.localhost";

/// Leaves a complete directory behind (config and public key), so `keyfold verify --data DIR`
/// can replay what this benchmark produced.
fn write_directory_files(dir: &Path, config: TreeConfig, args: &BenchArgs, key: &SigningKey) -> Result<(), CliError> {
    let dir_config = crate::directory::DirectoryConfig {
        format: crate::directory::DATA_FORMAT,
        origin: BENCH_ORIGIN.into(),
        hash: config.suite.name().into(),
        shard_bits: config.shard_bits,
        groups: args.groups,
        queue_max_depth: u64::MAX,
        queue_max_bytes: u64::MAX,
        epoch_max_mutations: u64::MAX,
        epoch_max_bytes: u64::MAX,
        archives: None,
        retain_epochs: args.retain,
        keep_archives: false,
    };
    let text = toml::to_string(&dir_config).map_err(|e| CliError::unavailable(format!("keyfold.toml: {e}")))?;
    write_file(&dir.join("keyfold.toml"), text)?;
    let public = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.verifying_key().as_bytes());
    write_file(&dir.join("signing.pub"), format!("{public}\n"))
}

fn write_file(path: &Path, contents: String) -> Result<(), CliError> {
    std::fs::write(path, contents).map_err(|e| CliError::file(format!("cannot write {}: {e}", path.display()), &e))
}

fn bench_pipeline(args: &BenchArgs, plan: &Plan, config: TreeConfig, dir: &Path) -> Result<Measured, CliError> {
    let suite = config.suite;
    let key = bench_key(args.seed);
    match args.store {
        StoreKind::Memory => {
            let archives: Arc<dyn ArchiveSink> = Arc::new(MemoryArchives::default());
            let job = EpochJob::open(
                MemoryQueue::new(suite, u64::MAX),
                Map::new(MemoryStore::new(config)),
                MemoryHeadStore::default(),
                archives,
                key,
                BENCH_ORIGIN,
                1,
            )
            .map_err(CliError::store)?
            .with_limits(EpochLimits::UNLIMITED); // each measured epoch is the plan's size
            run_pipeline(&with_retention(job, args)?, plan, args, None)
        }
        StoreKind::Embedded => {
            // The queue, map and heads only (no index or cosignatures: bench runs no server), at
            // the paths of a data directory, so `verify` and `fsck` can check what it leaves.
            let layout = Layout::new(dir);
            let unbounded = RedbQueueOptions { suite, max_depth: u64::MAX, max_bytes: u64::MAX };
            let queue = RedbQueue::open(&layout.queue(), unbounded).map_err(CliError::store)?;
            let map_options = RedbOptions { groups: args.groups, ..RedbOptions::new(config) };
            let store = RedbStore::open(&layout.tree(), map_options).map_err(CliError::store)?;
            let heads = RedbHeadStore::open(&layout.heads()).map_err(CliError::store)?;
            let archives: Arc<dyn ArchiveSink> =
                Arc::new(ObjectArchives::local(&dir.join("archives")).map_err(CliError::store)?);
            write_directory_files(dir, config, args, &key)?;
            // The log of heads as tile files too, as `serve` writes them (part of the log phase).
            let tiles = keyfold_epoch::TileFiles::new(dir.join(crate::directory::LOG_DIR));
            let job = EpochJob::open(queue, Map::new(store), heads, archives, key, BENCH_ORIGIN, 1)
                .and_then(|job| job.with_tile_files(tiles))
                .map_err(CliError::store)?
                .with_limits(EpochLimits::UNLIMITED); // each measured epoch is the plan's size
            run_pipeline(&with_retention(job, args)?, plan, args, Some(dir))
        }
    }
}

fn with_retention<Q: Queue, S: TreeStore, H: HeadStore>(
    job: EpochJob<Q, S, H>,
    args: &BenchArgs,
) -> Result<EpochJob<Q, S, H>, CliError> {
    match args.retain {
        None => Ok(job),
        Some(epochs) => job
            .with_retention(Retention { epochs, keep_archives: false })
            .map_err(|e| CliError::usage(format!("--retain: {e}"))),
    }
}

fn empty_dir(args: &BenchArgs, temp: &Path) -> Result<PathBuf, CliError> {
    let dir = args.data.clone().unwrap_or_else(|| temp.to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|e| CliError::file(format!("cannot create {}: {e}", dir.display()), &e))?;
    let mut entries =
        std::fs::read_dir(&dir).map_err(|e| CliError::file(format!("cannot read {}: {e}", dir.display()), &e))?;
    if entries.next().is_some() {
        return Err(CliError::usage(format!("{} is not empty; benchmark into an empty directory", dir.display())));
    }
    Ok(dir)
}

pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let plan = args.plan()?;
    let suite = HashSuite::from_name(&args.hash)
        .ok_or_else(|| CliError::usage(format!("unknown --hash {:?}: choose blake3 or sha256", args.hash)))?;
    let config = TreeConfig::new(suite, args.shard_bits).map_err(|e| CliError::usage(format!("--shard-bits: {e}")))?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| CliError::unavailable(format!("--threads {threads}: {e}")))?;
    let mode = if args.tree_only { "tree-only" } else { "pipeline" };
    println!(
        "keyfold bench ({mode}): {} keys, {} epochs of {} mutations ({} updates + {} new), {:?} store, {}, {} shard bits, {threads} threads, seed {}",
        plan.keys,
        plan.epochs,
        plan.mutations,
        plan.updates_per_epoch,
        plan.new_per_epoch,
        args.store,
        suite.name(),
        config.shard_bits,
        args.seed
    );
    let temp =
        tempfile::tempdir().map_err(|e| CliError::unavailable(format!("cannot create a temporary directory: {e}")))?;
    let measured = pool.install(|| match (args.tree_only, args.store) {
        (true, StoreKind::Memory) => bench_tree(&Map::new(MemoryStore::new(config)), &plan, args),
        (true, StoreKind::Embedded) => {
            let dir = empty_dir(args, temp.path())?;
            let options = RedbOptions { groups: args.groups, ..RedbOptions::new(config) };
            bench_tree(&Map::new(RedbStore::open(&dir, options).map_err(CliError::store)?), &plan, args)
        }
        (false, _) => {
            let dir = if args.store == StoreKind::Embedded {
                empty_dir(args, temp.path())?
            } else {
                temp.path().to_path_buf()
            };
            bench_pipeline(args, &plan, config, &dir)
        }
    })?;
    let report = summarise(args, plan, threads, suite, measured);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| CliError::unavailable(format!("--json: {e}")))?;
        write_file(path, json + "\n")?;
        println!("JSON report: {}", path.display());
    }
    Ok(())
}

/// The map store and the data directory after the first measured epoch, the 20th and the last.
fn print_store_growth(epochs: &[EpochSample]) {
    let mib = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{:.1} MiB", b as f64 / f64::from(1 << 20)));
    let mut shown: Vec<&EpochSample> = [epochs.first(), epochs.get(19), epochs.last()].into_iter().flatten().collect();
    shown.dedup_by_key(|s| s.epoch);
    for s in shown.into_iter().filter(|s| s.tree_bytes.is_some()) {
        println!("after epoch {}: map store {}, data directory {}", s.epoch, mib(s.tree_bytes), mib(s.data_bytes));
    }
}

fn summarise(args: &BenchArgs, plan: Plan, threads: usize, suite: HashSuite, m: Measured) -> Report {
    let names: Vec<&'static str> = m.epochs.first().map(|s| s.phases_ms.keys().copied().collect()).unwrap_or_default();
    let median_phases_ms: BTreeMap<&'static str, f64> = names
        .into_iter()
        .map(|name| (name, median(m.epochs.iter().filter_map(|s| s.phases_ms.get(name).copied()).collect())))
        .collect();
    let median_total_ms = median(m.epochs.iter().map(|s| s.total_ms).collect());
    let mutations_per_second = plan.mutations as f64 / (median_total_ms / 1e3);
    let order: Vec<&str> = if args.tree_only { vec!["prepare", "commit"] } else { PIPELINE_PHASES.to_vec() };
    let phases: Vec<String> =
        order.iter().filter_map(|name| median_phases_ms.get(name).map(|v| format!("{name} {v:.1}"))).collect();
    println!(
        "median of {} epochs: {median_total_ms:.1} ms per epoch ({}); {mutations_per_second:.0} mutations/s",
        m.epochs.len(),
        phases.join(", ")
    );
    if let Some(cores) = m.cores_used {
        println!("cores used during the epochs: {cores:.2}");
    }
    let peak_rss_mib = peak_rss_mib();
    if let Some(rss) = peak_rss_mib {
        println!("peak RSS: {rss} MiB");
    }
    let max_memory_ratio = m.epochs.iter().filter_map(|s| s.memory_ratio).max_by(f64::total_cmp);
    if let Some(ratio) = max_memory_ratio {
        println!("largest epoch memory growth per input byte: {ratio:.2}x");
    }
    print_store_growth(&m.epochs);
    Report {
        keyfold_version: env!("CARGO_PKG_VERSION"),
        mode: if args.tree_only { "tree-only" } else { "pipeline" },
        store: args.store,
        hash: suite.name(),
        shard_bits: args.shard_bits,
        groups: args.groups,
        threads,
        seed: args.seed,
        plan,
        machine: machine(),
        prefill: m.prefill,
        epochs: m.epochs,
        median_phases_ms,
        median_total_ms,
        mutations_per_second,
        cores_used: m.cores_used,
        peak_rss_mib,
        max_memory_ratio,
        proofs: m.proofs,
    }
}
