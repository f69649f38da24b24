//! Monitor replay: from a trusted head, check every later head's signature and chain link, its
//! archive's digest, every archived mutation and outcome (re-running the compare-and-set rules) and
//! the map root, using nothing but the heads, the archives and the public key.

use crate::apply::{Applied, KeyState, Outcome, OutcomeColumns, apply_mutations, hash_mutations, touched_indexes};
use crate::chain::HeadChain;
use crate::divergence::{Divergence, diverge};
use crate::state::{ReplicaState, ResumeError};
use bytes::Bytes;
use hashbrown::HashMap;
use keyfold_archive::{ArchiveRow, read_archive_bytes};
use keyfold_core::{Epoch, Hash, HashSuite, Head, Index, LeafValue, Mutation, MutationId, Position, Version};
use keyfold_map::{Map, MemoryStore, TreeConfig, TreeError};
use rayon::prelude::*;

/// A monitor's replica of the map, advanced one verified epoch at a time.
#[derive(Debug)]
pub struct Replayer {
    /// The last verified head, its checkpoint, log and signer.
    chain: HeadChain,
    map: Map<MemoryStore>,
    /// Every key's version and presence at the last verified epoch (what compare-and-set reads),
    /// so an epoch reads its touched keys here instead of walking the replica's tree to them. One
    /// table per first byte of the index, updated in parallel.
    states: Vec<HashMap<Index, KeyState>>,
    /// The first head epoch the replica holds: 0 from genesis, E after [`Replayer::resume`] at E.
    resumed_at: Epoch,
    /// Head epoch minus replica epoch: 0 from genesis; E - 1 after a resume at E >= 1 (the
    /// replica holds E as its epoch 1, not E empty epochs before it).
    replica_base: u64,
    /// A replay failed after it changed the replica: it is no longer the last verified epoch's,
    /// so it is neither replayed further nor saved.
    half_advanced: bool,
}

impl Replayer {
    /// Starts from the genesis head (epoch 0, the empty map), which must verify.
    pub fn from_genesis(
        note: &str,
        origin: &str,
        public_key: &[u8; 32],
        shard_bits: u8,
    ) -> Result<Replayer, Divergence> {
        let chain = HeadChain::genesis(note, origin, public_key, shard_bits)?;
        let config = TreeConfig::new(chain.head().suite, shard_bits)
            .map_err(|e| diverge(Epoch(0), None, "config", "valid shard bits", e))?;
        Ok(Replayer {
            chain,
            map: Map::new(MemoryStore::new(config)),
            states: (0..STATE_TABLES).map(|_| HashMap::new()).collect(),
            resumed_at: Epoch(0),
            replica_base: 0,
            half_advanced: false,
        })
    }

    /// The replica of the map, at the last verified epoch and every one before (since the resumed
    /// one, after [`Replayer::resume`]): its epochs are numbered as [`Replayer::replica_epoch`] says.
    pub fn map(&self) -> &Map<MemoryStore> {
        &self.map
    }

    /// The replica's epoch that holds head epoch `epoch`: the same from genesis; `None` for an
    /// epoch before the one a resumed replayer started from, or not verified yet.
    pub fn replica_epoch(&self, epoch: Epoch) -> Option<Epoch> {
        (self.resumed_at..=self.chain.head().epoch).contains(&epoch).then(|| Epoch(epoch.0 - self.replica_base))
    }

    /// The last head verified.
    pub fn head(&self) -> &Head {
        self.chain.head()
    }

    /// The last verified head, its checkpoint, log and signer.
    pub fn chain(&self) -> &HeadChain {
        &self.chain
    }

    /// Everything [`Replayer::resume`] needs to continue from the last verified epoch: its
    /// checkpoint, the log's right edge and every key's leaf (read from the replica, so the
    /// values are copied: memory for one more copy of the map's leaves while the state is held).
    pub fn snapshot(&self) -> Result<ReplicaState, TreeError> {
        if self.half_advanced {
            return Err(TreeError::corrupt("the replica is past a failed replay: it is not the verified epoch's"));
        }
        let mut indexes: Vec<Index> = self.states.iter().flat_map(|table| table.keys().copied()).collect();
        indexes.par_sort_unstable();
        let at = self.replica_epoch(self.head().epoch).expect("the last verified epoch is in the replica");
        let values = self.map.get_many(&indexes, at)?;
        let leaves = indexes
            .into_iter()
            .zip(values)
            .map(|(index, leaf)| leaf.map(|leaf| (index, leaf)).ok_or_else(|| missing_leaf(&index)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReplicaState {
            checkpoint: self.chain.checkpoint_note().to_owned(),
            rollovers: self.chain.rollovers().to_vec(),
            log: self.chain.log().clone(),
            leaves,
        })
    }

    /// Continues from a saved state, trusting none of it: the checkpoint must verify under the
    /// pinned `origin` and `public_key`, the saved log must have its size and root, and the map
    /// rebuilt from the saved leaves must have its head's root. Then the replayer is the one
    /// that verified that epoch (its later epochs replay exactly as they would have).
    pub fn resume(
        state: ReplicaState,
        origin: &str,
        public_key: &[u8; 32],
        shard_bits: u8,
    ) -> Result<Replayer, ResumeError> {
        let ReplicaState { checkpoint, rollovers, log, leaves } = state;
        let chain = HeadChain::resume(checkpoint, rollovers, log, origin, public_key)?;
        let head = chain.head();
        let config = TreeConfig::new(head.suite, shard_bits).map_err(|e| ResumeError::Replica(e.to_string()))?;
        let map = Map::new(MemoryStore::new(config));
        let states = key_states(head.suite, &leaves);
        let replica = |e: TreeError| ResumeError::Replica(e.to_string());
        // Epoch 0 is the empty map (the replica's own epoch 0); any later epoch is one batch.
        let found = if head.epoch == Epoch(0) && leaves.is_empty() {
            map.root(Epoch(0)).map_err(replica)?.hash
        } else {
            map.apply(leaves).map_err(replica)?.hash
        };
        if found != head.root {
            return Err(ResumeError::MapRoot { epoch: head.epoch.0, expected: head.root, found });
        }
        let replica_base = head.epoch.0.saturating_sub(1);
        let resumed_at = head.epoch;
        Ok(Replayer { chain, map, states, resumed_at, replica_base, half_advanced: false })
    }

    /// Verifies the next epoch: its signed head and its archive.
    pub fn replay(&mut self, note: &str, archive: Bytes) -> Result<Head, Divergence> {
        self.replay_rows(note, archive).map(|(head, _)| head)
    }

    /// As [`Replayer::replay`], also handing back the archive's rows (verified), so a caller that
    /// needs them does not decode the archive a second time.
    pub fn replay_rows(&mut self, note: &str, archive: Bytes) -> Result<(Head, Vec<ArchiveRow>), Divergence> {
        if self.half_advanced {
            let epoch = self.head().epoch.next();
            return Err(diverge(epoch, None, "replica", "the last verified epoch", "a replica past a divergence"));
        }
        let (head, log) = self.chain.check_next(note)?;
        let (epoch, suite) = (head.epoch, head.suite);
        let check = |ok: bool, what: &str, expected: String, found: String| {
            if ok { Ok(()) } else { Err(diverge(epoch, None, what, expected, found)) }
        };
        let EpochRows { mut rows, mutations, hashed } = read_epoch_rows(&head, archive)?;
        let states = &self.states;
        let current: Vec<(Index, Option<KeyState>)> =
            touched_indexes(&hashed).into_par_iter().map(|index| (index, state_of(states, &index))).collect();
        let applied = apply_mutations(suite, epoch, &current, &mutations, &hashed);
        first_divergence(check_outcomes(epoch, &rows, &applied))?;
        check(applied.counts == head.counts, "counts", format!("{:?}", applied.counts), format!("{:?}", head.counts))?;
        // From here the replica changes: until the root matches, it is not the verified epoch's.
        self.half_advanced = true;
        let root = self.advance(epoch, applied, &rows)?;
        check(root == head.root, "map root", root.to_hex(), head.root.to_hex())?;
        self.half_advanced = false;
        self.chain.advance(head.clone(), log, note);
        // The keys, values and signatures moved into the mutations go back into their rows.
        for (row, (_, m)) in rows.iter_mut().zip(mutations) {
            (row.key, row.value, row.owner_signature) = (Some(m.key), m.value, m.owner_signature);
        }
        Ok((head, rows))
    }

    /// Applies a verified epoch to the replica and the key states; returns the new root.
    fn advance(&mut self, epoch: Epoch, applied: Applied, rows: &[ArchiveRow]) -> Result<Hash, Divergence> {
        // Every applied row's leaf hash was recomputed and matched: each key's final one is its
        // last applied row's, and the tree takes it instead of hashing the leaf again.
        let leaf_hashes = applied
            .update_sources
            .iter()
            .map(|&i| rows[i as usize].leaf_hash.expect("an applied row's leaf hash was checked"))
            .collect();
        let changed: Vec<(Index, KeyState)> =
            applied.updates.iter().map(|(index, _)| *index).zip(applied.update_states.iter().copied()).collect();
        let root = self
            .map
            .apply_hashed(applied.updates, leaf_hashes)
            .map_err(|e| diverge(epoch, None, "replica", "updatable", e))?;
        // `changed` ascends by index, so each table's share is one run.
        self.states.par_iter_mut().enumerate().for_each(|(t, table)| {
            let start = changed.partition_point(|(index, _)| usize::from(index.0[0]) < t);
            let end = changed.partition_point(|(index, _)| usize::from(index.0[0]) <= t);
            table.extend(changed[start..end].iter().copied());
        });
        Ok(root.hash)
    }
}

/// An epoch's archive rows, checked against the head's digest, with the mutations they record
/// (keys, values and signatures moved out of the rows) and each mutation's id and index, checked
/// against the row's.
struct EpochRows {
    rows: Vec<ArchiveRow>,
    mutations: Vec<(Position, Mutation)>,
    hashed: Vec<(MutationId, Index)>,
}

fn read_epoch_rows(head: &Head, archive: Bytes) -> Result<EpochRows, Divergence> {
    let (epoch, suite) = (head.epoch, head.suite);
    // The digest while the archive decodes (a bad digest is reported whatever the decoding
    // found; the decoder is hardened against any bytes, see `read_archive`).
    let (digest, read) = rayon::join(|| suite.archive_digest(&archive), || read_archive_bytes(archive.clone()));
    if digest != head.archive {
        return Err(diverge(epoch, None, "archive digest", head.archive.to_hex(), digest.to_hex()));
    }
    let mut rows = read.map_err(|e| diverge(epoch, None, "archive", "a format 1 archive", e))?;
    // In parallel; the first failure in row order is reported (`collect` into a `Result` does
    // not promise which one).
    let converted: Vec<Result<(Position, Mutation), Divergence>> =
        rows.par_iter_mut().enumerate().with_min_len(1024).map(|(i, r)| mutation_of(epoch, i, r)).collect();
    let mutations = converted.into_iter().collect::<Result<Vec<_>, _>>()?;
    let hashed = hash_mutations(suite, &mutations);
    first_divergence(check_ids(epoch, &rows, &hashed))?;
    Ok(EpochRows { rows, mutations, hashed })
}

/// Every key's state, in the tables [`Replayer`] keeps.
fn key_states(suite: HashSuite, leaves: &[(Index, LeafValue)]) -> Vec<HashMap<Index, KeyState>> {
    let mut states: Vec<HashMap<Index, KeyState>> = (0..STATE_TABLES).map(|_| HashMap::new()).collect();
    let each: Vec<(Index, KeyState)> =
        leaves.par_iter().map(|(index, leaf)| (*index, KeyState::of(suite, leaf))).collect();
    for (index, state) in each {
        states[usize::from(index.0[0])].insert(index, state);
    }
    states
}

/// A key the replayer's states hold but its replica does not: a bug, reported, not a panic.
fn missing_leaf(index: &Index) -> TreeError {
    TreeError::corrupt(format!("the replica has no leaf for key index {}", index.to_hex()))
}

fn first_divergence(found: Option<Divergence>) -> Result<(), Divergence> {
    found.map_or(Ok(()), Err)
}

/// The first row (in row order) whose mutation id or key index is not the one its mutation hashes to.
fn check_ids(epoch: Epoch, rows: &[ArchiveRow], hashed: &[(MutationId, Index)]) -> Option<Divergence> {
    rows.par_iter().zip(hashed).enumerate().with_min_len(1024).find_map_first(|(i, (row, (id, index)))| {
        let at = |what: &str, expected: String, found: String| Some(diverge(epoch, Some(i), what, expected, found));
        if id.0 != row.mutation_id {
            return at("mutation id", id.to_hex(), row.mutation_id.to_hex());
        }
        if row.key_index != Some(Hash(index.0)) {
            return at("key index", index.to_hex(), row.key_index.map_or("null".into(), |h| h.to_hex()));
        }
        None
    })
}

/// The first row (in row order) whose archived outcome is not the one the rules give.
fn check_outcomes(epoch: Epoch, rows: &[ArchiveRow], applied: &Applied) -> Option<Divergence> {
    rows.par_iter()
        .zip(&applied.outcomes)
        .enumerate()
        .with_min_len(1024)
        .find_map_first(|(i, (row, outcome))| compare_outcome(epoch, i, row, &outcome.outcome).err())
}

/// Key-state tables, by the first byte of the index.
const STATE_TABLES: usize = 256;

fn state_of(states: &[HashMap<Index, KeyState>], index: &Index) -> Option<KeyState> {
    states[usize::from(index.0[0])].get(index).copied()
}

/// The mutation an archive row records; its key, value and signature move out of the row.
pub(crate) fn mutation_of(epoch: Epoch, i: usize, row: &mut ArchiveRow) -> Result<(Position, Mutation), Divergence> {
    let at = |what: &str, expected: String, found: String| diverge(epoch, Some(i), what, expected, found);
    if row.tombstone != row.value.is_none() {
        return Err(at("tombstone flag", format!("{}", row.value.is_none()), format!("{}", row.tombstone)));
    }
    let key = row.key.take().ok_or_else(|| at("key", "a key".into(), "null".into()))?;
    let m = Mutation {
        key,
        value: row.value.take(),
        expected_version: Version(row.expected_version),
        owner_signature: row.owner_signature.take(),
    };
    Ok((Position(row.position), m))
}

pub(crate) fn compare_outcome(epoch: Epoch, i: usize, row: &ArchiveRow, outcome: &Outcome) -> Result<(), Divergence> {
    let expected = OutcomeColumns::of(outcome);
    let at = |what: &str, expected: String, found: String| Err(diverge(epoch, Some(i), what, expected, found));
    if expected.outcome != row.outcome {
        return at("outcome", expected.outcome.as_str().into(), row.outcome.as_str().into());
    }
    if expected.new_version != row.new_version {
        return at("new version", format!("{:?}", expected.new_version), format!("{:?}", row.new_version));
    }
    if expected.reason != row.reason.as_deref() {
        return at("reason code", format!("{:?}", expected.reason), format!("{:?}", row.reason));
    }
    if expected.leaf_hash != row.leaf_hash {
        return at("leaf hash", format!("{:?}", expected.leaf_hash), format!("{:?}", row.leaf_hash));
    }
    Ok(())
}
