//! Penumbra's Jellyfish Merkle tree (`jmt`) over its in-memory `MockTreeStore`: tree-only.
//! `put_value_set` computes the new version (compute), then the returned `TreeUpdateBatch` is
//! written into the mock store (write). jmt has no parallel update: it runs on one thread.

use crate::driver::{EpochFigures, Instance, Peer, System, What};
use crate::workload::Item;
use anyhow::Result;
use jmt::mock::MockTreeStore;
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, SimpleHasher};
use std::marker::PhantomData;
use std::time::Instant;

/// jmt with hasher `H` (`sha2::Sha256` as Penumbra ships it, or [`Blake3`] to match Keyfold's
/// and akd's hash).
#[derive(Debug)]
pub struct Jmt<H> {
    pub name: &'static str,
    pub hasher: PhantomData<H>,
}

/// BLAKE3 as a jmt hasher (jmt's blanket impl wants digest 0.10; blake3 1.8 speaks 0.11).
#[derive(Debug, Default)]
pub struct Blake3(blake3::Hasher);

impl SimpleHasher for Blake3 {
    fn new() -> Self {
        Blake3(blake3::Hasher::new())
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

pub struct JmtInstance<H> {
    store: MockTreeStore,
    next_version: u64,
    hasher: PhantomData<H>,
}

impl<H: SimpleHasher> System for Jmt<H> {
    type Instance = JmtInstance<H>;
    fn peer(&self) -> Peer {
        Peer::Jmt
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn fresh(&self) -> Result<JmtInstance<H>> {
        // No overwrites: every version's nodes are new records (the store checks it).
        Ok(JmtInstance { store: MockTreeStore::new(false), next_version: 0, hasher: PhantomData })
    }
}

impl<H: SimpleHasher> Instance for JmtInstance<H> {
    fn epoch(&mut self, batch: &[Item]) -> Result<EpochFigures> {
        let values: Vec<(KeyHash, Option<OwnedValue>)> =
            batch.iter().map(|it| (KeyHash::with::<H>(it.key()), Some(it.value.to_vec()))).collect();
        let tree = JellyfishMerkleTree::<_, H>::new(&self.store);
        let start = Instant::now();
        let (root, update) = tree.put_value_set(values, self.next_version)?;
        let compute = start.elapsed();
        let nodes = update.node_batch.nodes().len();
        let start = Instant::now();
        self.store.write_tree_update_batch(update)?;
        let write = start.elapsed();
        self.next_version += 1;
        Ok(EpochFigures {
            times: vec![(What::TreeCompute, compute), (What::TreeWrite, write)],
            root: root.0,
            detail: format!("version {}, {nodes} node writes", self.next_version - 1),
        })
    }
}
