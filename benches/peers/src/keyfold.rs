//! Keyfold: the map alone on the memory store (tree-only), and the real epoch pipeline on the
//! embedded (redb, durable) stores (full epoch), as `keyfold bench` and `keyfold bench --pipeline`
//! drive them.

use keyfold_redb::{RedbHeadStore, RedbOptions, RedbQueue, RedbQueueOptions, RedbStore};
use crate::driver::{EpochFigures, Instance, Peer, System, What};
use crate::workload::Item;
use anyhow::{Context, Result, bail};
use keyfold_core::{HashSuite, LeafValue, Mutation, SigningKey, Version};
use keyfold_epoch::{EpochJob, EpochLimits, ObjectArchives};
use keyfold_ingest::Queue;
use keyfold_map::{Map, MemoryStore, TreeConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORIGIN: &str = "bench.keyfold.localhost";
/// Mutations per queue append, as `keyfold bench --pipeline`.
const APPEND_CHUNK: usize = 1000;

/// `Map<MemoryStore>`: `prepare` (the pure update) and `commit` into memory.
#[derive(Debug)]
pub struct TreeOnly {
    pub config: TreeConfig,
}

#[derive(Debug)]
pub struct TreeInstance {
    map: Map<MemoryStore>,
    suite: HashSuite,
}

impl System for TreeOnly {
    type Instance = TreeInstance;
    fn peer(&self) -> Peer {
        Peer::Keyfold
    }
    fn name(&self) -> &'static str {
        "keyfold mem"
    }
    fn fresh(&self) -> Result<TreeInstance> {
        Ok(TreeInstance { map: Map::new(MemoryStore::new(self.config)), suite: self.config.suite })
    }
}

impl Instance for TreeInstance {
    fn epoch(&mut self, batch: &[Item]) -> Result<EpochFigures> {
        let updates = batch
            .iter()
            .map(|it| (self.suite.index_of(&it.key()), LeafValue::present(Version(it.version), it.value.to_vec())))
            .collect();
        let start = Instant::now();
        let prepared = self.map.prepare(updates)?;
        let compute = start.elapsed();
        let start = Instant::now();
        let root = self.map.commit(&prepared)?;
        let write = start.elapsed();
        Ok(EpochFigures {
            times: vec![(What::TreeCompute, compute), (What::TreeWrite, write)],
            root: root.hash.0,
            detail: format!("{} node writes", prepared.node_count()),
        })
    }
}

/// The whole epoch on the embedded stores in a temporary directory: queue append (ingest,
/// reported apart), then `EpochJob::run_epoch`: cut, CAS apply, tree, archive, sign, commit.
#[derive(Debug)]
pub struct FullEpoch {
    pub config: TreeConfig,
    /// Group files of the tree store (`keyfold bench`'s default: 2).
    pub groups: u16,
}

pub struct FullInstance {
    job: EpochJob<RedbQueue, RedbStore, RedbHeadStore>,
    now_ms: u64,
    // Dropped last: the stores above live in it.
    _dir: tempfile::TempDir,
}

impl System for FullEpoch {
    type Instance = FullInstance;
    fn peer(&self) -> Peer {
        Peer::Keyfold
    }
    fn name(&self) -> &'static str {
        "keyfold redb"
    }
    fn fresh(&self) -> Result<FullInstance> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let path = dir.path();
        let suite = self.config.suite;
        let unbounded = RedbQueueOptions { suite, max_depth: u64::MAX, max_bytes: u64::MAX };
        let queue = RedbQueue::open(&path.join("queue.redb"), unbounded)?;
        let store =
            RedbStore::open(&path.join("tree"), RedbOptions { groups: self.groups, ..RedbOptions::new(self.config) })?;
        let heads = RedbHeadStore::open(&path.join("heads.redb"))?;
        let archives = Arc::new(ObjectArchives::local(&path.join("archives"))?);
        // A fixed benchmark key: ed25519 signing is deterministic, so heads are too.
        let key = SigningKey::from_bytes(&[7; 32]);
        // Each measured epoch is the workload's size, uncapped.
        let job = EpochJob::open(queue, Map::new(store), heads, archives, key, ORIGIN, 1)?.with_limits(EpochLimits::UNLIMITED);
        Ok(FullInstance { job, now_ms: 1, _dir: dir })
    }
}

impl FullInstance {
    fn ingest(&self, mutations: &[Mutation]) -> Result<Duration> {
        let start = Instant::now();
        for chunk in mutations.chunks(APPEND_CHUNK) {
            self.job.queue().append(chunk.to_vec())?;
        }
        Ok(start.elapsed())
    }
}

impl Instance for FullInstance {
    fn epoch(&mut self, batch: &[Item]) -> Result<EpochFigures> {
        let mutations: Vec<Mutation> = batch
            .iter()
            .map(|it| Mutation {
                key: it.key(),
                value: Some(it.value.to_vec()),
                expected_version: Version(it.version - 1),
                owner_signature: None,
            })
            .collect();
        let ingest = self.ingest(&mutations)?;
        self.now_ms += 1000;
        let report = self.job.run_epoch(self.now_ms)?;
        let counts = report.head.counts;
        if counts.applied != batch.len() as u64 || counts.rejected != 0 {
            bail!("{} of {} mutations applied, {} rejected", counts.applied, batch.len(), counts.rejected);
        }
        let t = report.timings;
        let epoch = t.cut + t.apply + t.tree + t.archive + t.sign + t.commit;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Ok(EpochFigures {
            times: vec![(What::FullEpoch, epoch), (What::Ingest, ingest)],
            root: report.head.root.0,
            detail: format!(
                "cut {:.1}, apply {:.1}, tree {:.1}, archive {:.1}, sign {:.2}, commit {:.1} ms",
                ms(t.cut),
                ms(t.apply),
                ms(t.tree),
                ms(t.archive),
                ms(t.sign),
                ms(t.commit)
            ),
        })
    }
}
