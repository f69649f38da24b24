//! The comparison table and the roots.

use crate::driver::{Peer, SystemRun, What, hex16};
use crate::workload::Workload;
use std::time::Duration;

/// The median as `keyfold bench` takes it (upper middle for an even count).
fn median(samples: &[Duration]) -> Option<Duration> {
    let mut v = samples.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Keyfold's median for one workload and kind: the base of the ratios.
fn keyfold_median(runs: &[SystemRun], workload: Workload, what: What) -> Option<Duration> {
    runs.iter()
        .filter(|r| r.peer == Peer::Keyfold)
        .find_map(|r| r.samples.get(&(workload, what)))
        .and_then(|s| median(s))
}

/// workload | system | what | median ms | ratio vs Keyfold (same workload, same kind).
pub fn print_table(runs: &[SystemRun], workloads: &[Workload]) {
    println!();
    println!("ratio = this median / Keyfold's median of the same workload and kind (> 1: slower than Keyfold)");
    println!(
        "{:<8} | {:<14} | {:<27} | {:>12} | {:>9} | {:>7}",
        "workload", "system", "what", "median ms", "ratio", "samples"
    );
    println!("{}", "-".repeat(93));
    let whats = [What::TreeCompute, What::TreeWrite, What::TreeTotal, What::FullEpoch, What::Ingest];
    for &workload in workloads {
        for what in whats {
            for run in runs {
                let Some(samples) = run.samples.get(&(workload, what)) else { continue };
                let Some(m) = median(samples) else { continue };
                let ratio = keyfold_median(runs, workload, what)
                    .filter(|base| !base.is_zero())
                    .map_or_else(|| "-".into(), |base| format!("{:.2}x", m.as_secs_f64() / base.as_secs_f64()));
                println!(
                    "{:<8} | {:<14} | {:<27} | {:>12.1} | {:>9} | {:>7}",
                    workload.to_string(),
                    run.name,
                    what.label(),
                    ms(m),
                    ratio,
                    samples.len()
                );
            }
        }
        println!("{}", "-".repeat(93));
    }
}

/// Each system's root after the build and after its last epoch (compare between runs: the same
/// arguments must print the same roots).
pub fn print_roots(runs: &[SystemRun]) {
    println!();
    println!("roots (first 8 bytes) after the build and after the last epoch; wall time of each system's run:");
    for run in runs {
        let build = run.roots.first().map_or_else(|| "-".into(), |(_, r)| hex16(r));
        let last = run.roots.last().map_or_else(|| "-".into(), |(stage, r)| format!("{} ({stage})", hex16(r)));
        println!("  {:<14} build {build}  last {last}  wall {:.1} s", run.name, run.wall.as_secs_f64());
    }
}
