//! `peers`: Keyfold next to jmt and akd, in one process, on the same seeded workloads.
//! See README.md for what each row measures.

mod driver;
mod keyfold;
mod machine;
mod peer_akd;
mod peer_jmt;
mod report;
mod workload;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use driver::{Peer, SystemRun, drive, hex16};
use keyfold_core::HashSuite;
use keyfold_map::TreeConfig;
use std::marker::PhantomData;
use std::process::ExitCode;
use std::time::Instant;
use workload::{Sizes, VALUE_BYTES, Workload, Workloads};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum JmtHash {
    /// `sha2::Sha256`, as Penumbra ships jmt (`Sha256Jmt`).
    Sha256,
    /// BLAKE3 (one hash call per node, as jmt's `SimpleHasher`), Keyfold's and akd's hash.
    Blake3,
}

#[derive(Debug, Parser)]
#[command(about = "Keyfold, jmt and akd on the same seeded workloads (W1 updates, W2 inserts, W3 build)")]
struct Args {
    /// Keys in the map before W1 and W2; W3 builds this many from empty.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Workloads to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "w1,w2,w3")]
    workloads: Vec<Workload>,
    /// Measured epochs per workload (W3: fresh builds); the median is reported.
    #[arg(long, default_value_t = 3)]
    epochs: u32,
    /// Systems to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "keyfold,jmt,akd")]
    only: Vec<Peer>,
    /// Hashers to run jmt with.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sha256,blake3")]
    jmt_hash: Vec<JmtHash>,
    /// Threads for Keyfold's rayon pool, tokio's workers and akd's parallelism (default: all CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Keyfold's shard bits (as `keyfold bench`).
    #[arg(long, default_value_t = 8)]
    shard_bits: u8,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().context("cannot start the rayon pool")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .build()
        .context("cannot start the tokio runtime")?;
    let sizes = Sizes::for_keys(args.keys);
    print_header(args, sizes, threads);

    let start = Instant::now();
    let workloads = workload::generate(sizes, args.epochs, args.seed)?;
    println!("workloads generated in {:.1} s (not measured)", start.elapsed().as_secs_f64());

    let mut selected = args.workloads.clone();
    selected.sort();
    selected.dedup();
    let mut runs = Vec::new();
    if args.only.contains(&Peer::Keyfold) {
        run_keyfold(args, &workloads, &selected, &mut runs)?;
    }
    if args.only.contains(&Peer::Jmt) {
        run_jmt(args, &workloads, &selected, &mut runs)?;
    }
    if args.only.contains(&Peer::Akd) {
        println!("akd Azks (tree-only) and akd Directory (full epoch: publish):");
        runs.push(drive(&peer_akd::AzksTree { runtime: &runtime, threads }, &workloads, &selected, args.epochs)?);
        runs.push(drive(&peer_akd::AkdDirectory { runtime: &runtime, threads }, &workloads, &selected, args.epochs)?);
    }
    report::print_table(&runs, &selected);
    report::print_roots(&runs);
    if let Some(rss) = machine::peak_rss_mib() {
        println!("peak RSS of the process: {rss} MiB");
    }
    Ok(())
}

fn print_header(args: &Args, sizes: Sizes, threads: usize) {
    println!("{}", machine::describe());
    println!(
        "{}; jmt {}, akd {}; release profile",
        env!("PEERS_RUSTC_VERSION"),
        env!("PEERS_JMT_VERSION"),
        env!("PEERS_AKD_VERSION")
    );
    println!(
        "threads: {threads} (Keyfold rayon pool, tokio workers, akd insert/preload/VRF parallelism); jmt has no parallel update (1 thread)"
    );
    println!(
        "N = {} keys; W1 = {} updates of existing keys, W2 = {} new keys, W3 = empty to N; {} measured epochs each (median); {VALUE_BYTES}-byte values; seed {}",
        sizes.keys, sizes.w1, sizes.w2, args.epochs, args.seed
    );
    if sizes.scaled {
        println!("NOTE: N < 100k, so W1 and W2 are scaled with N (N/100 and N/10) instead of 10k and 100k");
    }
    println!(
        "hashes: Keyfold BLAKE3 ({} shard bits), akd BLAKE3 (experimental configuration), jmt {:?}",
        args.shard_bits, args.jmt_hash
    );
}

fn run_keyfold(args: &Args, workloads: &Workloads, selected: &[Workload], runs: &mut Vec<SystemRun>) -> Result<()> {
    let suite = HashSuite::from_name("blake3").context("the blake3 suite must exist")?;
    let config = TreeConfig::new(suite, args.shard_bits)?;
    println!(
        "keyfold tree-only (Map<MemoryStore>: prepare, commit) and full epoch (redb: queue, EpochJob::run_epoch):"
    );
    let tree = drive(&keyfold::TreeOnly { config }, workloads, selected, args.epochs)?;
    let full = drive(&keyfold::FullEpoch { config, groups: 2 }, workloads, selected, args.epochs)?;
    check_same_roots(&tree, &full)?;
    println!("  keyfold: the tree-only and full-epoch roots agree at all {} stages", tree.roots.len());
    runs.push(tree);
    runs.push(full);
    Ok(())
}

/// The memory map and the pipeline apply the same leaves in the same order: same roots.
fn check_same_roots(a: &SystemRun, b: &SystemRun) -> Result<()> {
    if a.roots.len() != b.roots.len() {
        bail!("{} has {} roots, {} has {}", a.name, a.roots.len(), b.name, b.roots.len());
    }
    for ((stage, x), (_, y)) in a.roots.iter().zip(&b.roots) {
        if x != y {
            bail!("{stage}: {} root {} but {} root {}", a.name, hex16(x), b.name, hex16(y));
        }
    }
    Ok(())
}

fn run_jmt(args: &Args, workloads: &Workloads, selected: &[Workload], runs: &mut Vec<SystemRun>) -> Result<()> {
    println!("jmt tree-only (put_value_set over MockTreeStore, then write_tree_update_batch):");
    for hash in &args.jmt_hash {
        let run = match hash {
            JmtHash::Sha256 => {
                let system = peer_jmt::Jmt::<sha2::Sha256> { name: "jmt sha256", hasher: PhantomData };
                drive(&system, workloads, selected, args.epochs)?
            }
            JmtHash::Blake3 => {
                let system = peer_jmt::Jmt::<peer_jmt::Blake3> { name: "jmt blake3", hasher: PhantomData };
                drive(&system, workloads, selected, args.epochs)?
            }
        };
        runs.push(run);
    }
    Ok(())
}
