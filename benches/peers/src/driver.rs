//! Runs one system through the workloads: fresh builds (W3, the last one kept as the prefill),
//! then the W1 epochs, then the W2 epochs, recording every epoch's figures and root.

use crate::workload::{Item, Workload, Workloads};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a figure measures. Ratios compare only figures of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum What {
    /// The tree update alone, in memory (no storage, no signing).
    TreeCompute,
    /// Writing that update into the system's in-memory store.
    TreeWrite,
    /// The two above, per epoch.
    TreeTotal,
    /// A whole epoch of the directory (see each system's description).
    FullEpoch,
    /// Keyfold only: appending the epoch's mutations to the durable queue.
    Ingest,
}

impl What {
    pub fn label(self) -> &'static str {
        match self {
            What::TreeCompute => "tree-only: compute",
            What::TreeWrite => "tree-only: write to memory",
            What::TreeTotal => "tree-only: compute + write",
            What::FullEpoch => "full epoch",
            What::Ingest => "ingest (queue append)",
        }
    }
}

/// The systems compared; a ratio divides by Keyfold's figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Peer {
    Keyfold,
    Jmt,
    Akd,
}

/// One epoch's measured figures and resulting root.
#[derive(Debug)]
pub struct EpochFigures {
    pub times: Vec<(What, Duration)>,
    pub root: [u8; 32],
    /// Extra detail for the per-epoch log line (phases, counts).
    pub detail: String,
}

/// A running instance of a system (its tree and store).
pub trait Instance {
    /// Applies one batch as one epoch (or version) and measures it. Converting the batch into
    /// the system's input types happens before the clock starts.
    fn epoch(&mut self, batch: &[Item]) -> Result<EpochFigures>;
}

/// A system under test: makes fresh, empty instances.
pub trait System {
    type Instance: Instance;
    fn peer(&self) -> Peer;
    /// Short name for the table.
    fn name(&self) -> &'static str;
    fn fresh(&self) -> Result<Self::Instance>;
}

/// Everything one system's run produced.
#[derive(Debug)]
pub struct SystemRun {
    pub peer: Peer,
    pub name: &'static str,
    pub samples: BTreeMap<(Workload, What), Vec<Duration>>,
    /// Root after each stage ("build", "W1 #1", ...), in order.
    pub roots: Vec<(String, [u8; 32])>,
    /// Wall time of the whole run (builds, prefill and epochs).
    pub wall: Duration,
}

impl SystemRun {
    fn record(&mut self, workload: Workload, figures: &EpochFigures) {
        for (what, d) in &figures.times {
            self.samples.entry((workload, *what)).or_default().push(*d);
        }
        let part = |w| figures.times.iter().find(|(what, _)| *what == w).map(|(_, d)| *d);
        if let (Some(compute), Some(write)) = (part(What::TreeCompute), part(What::TreeWrite)) {
            self.samples.entry((workload, What::TreeTotal)).or_default().push(compute + write);
        }
    }
}

pub fn hex16(root: &[u8; 32]) -> String {
    root.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn log(name: &str, stage: &str, figures: &EpochFigures) {
    let times: Vec<String> =
        figures.times.iter().map(|(w, d)| format!("{} {:.1} ms", w.label(), d.as_secs_f64() * 1e3)).collect();
    let detail = if figures.detail.is_empty() { String::new() } else { format!(" | {}", figures.detail) };
    println!("  {name:<14} {stage:<9} {}{detail} | root {}", times.join(", "), hex16(&figures.root));
}

/// Runs `system` through the selected workloads. `builds` fresh builds of N keys are made (all
/// must give the same root: determinism); they are W3's samples when W3 is selected, and the
/// last one is the prefill of W1 and W2.
pub fn drive<S: System>(system: &S, workloads: &Workloads, selected: &[Workload], epochs: u32) -> Result<SystemRun> {
    let start = Instant::now();
    let name = system.name();
    let mut run =
        SystemRun { peer: system.peer(), name, samples: BTreeMap::new(), roots: Vec::new(), wall: Duration::ZERO };
    let w3 = selected.contains(&Workload::W3);
    let builds = if w3 { epochs } else { 1 };
    let mut instance = None;
    for b in 1..=builds {
        drop(instance.take()); // free the previous build before making the next
        let mut fresh = system.fresh().with_context(|| format!("{name}: cannot create an instance"))?;
        let figures = fresh.epoch(&workloads.build).with_context(|| format!("{name}: build {b} failed"))?;
        log(name, &format!("{} #{b}", if w3 { "W3" } else { "prefill" }), &figures);
        if let Some((_, first)) = run.roots.first() {
            if *first != figures.root {
                bail!("{name}: build {b} gave root {} but build 1 gave {}", hex16(&figures.root), hex16(first));
            }
        } else {
            run.roots.push(("build".into(), figures.root));
        }
        if w3 {
            run.record(Workload::W3, &figures);
        }
        instance = Some(fresh);
    }
    let instance = instance.as_mut().context("no build ran (--epochs 0?)")?;
    for (workload, batches) in [(Workload::W1, &workloads.w1), (Workload::W2, &workloads.w2)] {
        if !selected.contains(&workload) {
            continue;
        }
        for (e, batch) in batches.iter().enumerate() {
            let stage = format!("{workload} #{}", e + 1);
            let figures = instance.epoch(batch).with_context(|| format!("{name}: {stage} failed"))?;
            log(name, &stage, &figures);
            run.record(workload, &figures);
            run.roots.push((stage, figures.root));
        }
    }
    run.wall = start.elapsed();
    let rss = crate::machine::rss_mib().map_or_else(String::new, |m| format!("; process RSS with it loaded {m} MiB"));
    println!("  {name:<14} done in {:.1} s{rss}", run.wall.as_secs_f64());
    Ok(run)
}
