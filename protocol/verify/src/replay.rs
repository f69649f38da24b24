//! Monitor replay: from a trusted head, check every later head's signature and chain link, its
//! archive's digest, every archived mutation and outcome (re-running the compare-and-set rules) and
//! the map root, using nothing but the heads, the archives and the public key.

use crate::apply::{Applied, KeyState, Outcome, OutcomeColumns, apply_mutations, hash_mutations, touched_indexes};
use crate::divergence::{Divergence, diverge};
use crate::heads::{verify_genesis_head, verify_next_head};
use bytes::Bytes;
use hashbrown::HashMap;
use keyfold_archive::{ArchiveRow, read_archive_bytes};
use keyfold_core::{Epoch, Frontier, Hash, HashSuite, Head, Index, Mutation, MutationId, Position, Version};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use rayon::prelude::*;

/// A monitor's replica of the map, advanced one verified epoch at a time.
#[derive(Debug)]
pub struct Replayer {
    origin: String,
    public_key: [u8; 32],
    map: Map<MemoryStore>,
    /// Every key's version and presence at the last verified epoch (what compare-and-set reads),
    /// so an epoch reads its touched keys here instead of walking the replica's tree to them. One
    /// table per first byte of the index, updated in parallel.
    states: Vec<HashMap<Index, KeyState>>,
    previous: Head,
    /// The log of heads through `previous` (its right edge: O(log n) hashes).
    log: Frontier,
}

impl Replayer {
    /// Starts from the genesis head (epoch 0, the empty map), which must verify.
    pub fn from_genesis(
        note: &str,
        origin: &str,
        public_key: &[u8; 32],
        shard_bits: u8,
    ) -> Result<Replayer, Divergence> {
        let (head, log) = verify_genesis_head(note, origin, public_key, shard_bits)?;
        let config = TreeConfig::new(head.suite, shard_bits)
            .map_err(|e| diverge(Epoch(0), None, "config", "valid shard bits", e))?;
        let map = Map::new(MemoryStore::new(config));
        Ok(Replayer {
            origin: origin.to_owned(),
            public_key: *public_key,
            map,
            states: (0..STATE_TABLES).map(|_| HashMap::new()).collect(),
            previous: head,
            log,
        })
    }

    /// The replica of the map, at the last verified epoch and every one before.
    pub fn map(&self) -> &Map<MemoryStore> {
        &self.map
    }

    /// The last head verified.
    pub fn head(&self) -> &Head {
        &self.previous
    }

    /// The log of heads through the last head verified.
    pub fn log(&self) -> &Frontier {
        &self.log
    }

    /// Verifies the next epoch: its signed head and its archive.
    pub fn replay(&mut self, note: &str, archive: Bytes) -> Result<Head, Divergence> {
        self.replay_rows(note, archive).map(|(head, _)| head)
    }

    /// As [`Replayer::replay`], also handing back the archive's rows (verified), so a caller that
    /// needs them does not decode the archive a second time.
    pub fn replay_rows(&mut self, note: &str, archive: Bytes) -> Result<(Head, Vec<ArchiveRow>), Divergence> {
        let (head, log) = self.check_head(note)?;
        let (epoch, suite) = (head.epoch, head.suite);
        let check = |ok: bool, what: &str, expected: String, found: String| {
            if ok { Ok(()) } else { Err(diverge(epoch, None, what, expected, found)) }
        };
        // The digest while the archive decodes (a bad digest is reported whatever the decoding
        // found; the decoder is hardened against any bytes, see `read_archive`).
        let (digest, read) = rayon::join(|| suite.archive_digest(&archive), || read_archive_bytes(archive.clone()));
        check(digest == head.archive, "archive digest", head.archive.to_hex(), digest.to_hex())?;
        let mut rows = read.map_err(|e| diverge(epoch, None, "archive", "a format 1 archive", e))?;
        // In parallel; the first failure in row order is reported (`collect` into a `Result` does
        // not promise which one).
        let converted: Vec<Result<(Position, Mutation), Divergence>> =
            rows.par_iter_mut().enumerate().with_min_len(1024).map(|(i, r)| mutation_of(epoch, i, r)).collect();
        let mutations = converted.into_iter().collect::<Result<Vec<_>, _>>()?;
        let hashed = hash_mutations(suite, &mutations);
        first_divergence(check_ids(epoch, &rows, &hashed))?;
        let states = &self.states;
        let current: Vec<(Index, Option<KeyState>)> =
            touched_indexes(&hashed).into_par_iter().map(|index| (index, state_of(states, &index))).collect();
        let applied = apply_mutations(&current, &mutations, &hashed);
        first_divergence(check_outcomes(suite, epoch, &rows, &applied, &mutations))?;
        check(applied.counts == head.counts, "counts", format!("{:?}", applied.counts), format!("{:?}", head.counts))?;
        let root = self.advance(epoch, applied, &rows)?;
        check(root == head.root, "map root", root.to_hex(), head.root.to_hex())?;
        self.previous = head.clone();
        self.log = log;
        // The keys, values and signatures moved into the mutations go back into their rows.
        for (row, (_, m)) in rows.iter_mut().zip(mutations) {
            (row.key, row.value, row.owner_signature) = (Some(m.key), m.value, m.owner_signature);
        }
        Ok((head, rows))
    }

    /// The next head: signed by the pinned key for the origin, numbered, hashed and chained after
    /// the last verified one, and later in time.
    fn check_head(&self, note: &str) -> Result<(Head, Frontier), Divergence> {
        let mut log = self.log.clone();
        let head = verify_next_head(&self.previous, &mut log, note, &self.origin, &self.public_key)?;
        Ok((head, log))
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
            applied.updates.iter().map(|(index, value)| (*index, KeyState::of(value))).collect();
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
fn check_outcomes(
    suite: HashSuite,
    epoch: Epoch,
    rows: &[ArchiveRow],
    applied: &Applied,
    mutations: &[(Position, Mutation)],
) -> Option<Divergence> {
    rows.par_iter().zip(&applied.outcomes).zip(mutations).enumerate().with_min_len(1024).find_map_first(
        |(i, ((row, outcome), (_, m)))| {
            compare_outcome(suite, epoch, i, row, m.value.as_deref(), &outcome.outcome, &outcome.index).err()
        },
    )
}

/// Key-state tables, by the first byte of the index.
const STATE_TABLES: usize = 256;

fn state_of(states: &[HashMap<Index, KeyState>], index: &Index) -> Option<KeyState> {
    states[usize::from(index.0[0])].get(index).copied()
}

/// The mutation an archive row records; its key, value and signature move out of the row.
fn mutation_of(epoch: Epoch, i: usize, row: &mut ArchiveRow) -> Result<(Position, Mutation), Divergence> {
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

fn compare_outcome(
    suite: HashSuite,
    epoch: Epoch,
    i: usize,
    row: &ArchiveRow,
    value: Option<&[u8]>,
    outcome: &Outcome,
    index: &Index,
) -> Result<(), Divergence> {
    let expected = OutcomeColumns::of(suite, outcome, index, value);
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
