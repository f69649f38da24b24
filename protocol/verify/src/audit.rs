//! Auditing an epoch without the map (SPEC section 3.2): from the verified map head of the epoch
//! before, the epoch's verified head, its archive and its epoch proof alone. No state is carried
//! from one epoch to the next, so any range of epochs can be audited in parallel once their heads
//! are verified (a chain of heads, or each head's inclusion in a trusted checkpoint).
//!
//! The archive is read twice, a record batch at a time, never whole: the first pass checks each
//! row's mutation id and key index and keeps only (index, row, id), from which the touched keys
//! and the exact duplicates follow; the second applies each row's compare-and-set to its key's
//! state, which starts from where the key's path ends in the proof, and checks its outcome. What
//! is held is one state per touched key in a dense array, never the rows: memory grows with the
//! keys an epoch touches, not with its values or the directory.

use crate::apply::{CountOutcome, Outcome, compare_and_set};
use crate::divergence::{Divergence, diverge};
use crate::replay::{compare_outcome, mutation_of};
use bytes::Bytes;
use hashbrown::HashSet;
use keyfold_archive::{ArchiveError, ArchiveRow, read_archive_batches};
use keyfold_core::{
    Epoch, FlatEpochProof, Hash, HashSuite, Head, HeadCounts, Index, KeyState, Mutation, MutationId, Version,
};
use rayon::prelude::*;

/// What an audit of one epoch checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audited {
    /// Mutations in the archive.
    pub mutations: u64,
    /// Keys the epoch touched (leaves in the proof's paths).
    pub touched: u64,
}

/// Audits `head` (whose signature and link to `previous` the caller verified) from `previous`
/// (the verified head of the epoch before), the epoch's `archive` and its `proof`: the archive's
/// digest and rows; the proof's old root equal to `previous`'s map root; the proof covering the
/// touched keys' paths and nothing else; every compare-and-set outcome against the old leaves
/// the proof holds; the counts; and the new root, from the applied leaves in the proof's tree,
/// equal to `head`'s. A failure names the row, key index or root at fault.
pub fn audit_epoch(
    previous: &Head,
    head: &Head,
    archive: Bytes,
    proof: &FlatEpochProof,
) -> Result<Audited, Divergence> {
    audit_epoch_holding(previous, head, archive, proof, AUDIT_HOLD_BYTES)
}

/// [`audit_epoch`], holding the rows of an archive of up to `hold_bytes` between the two passes
/// over it instead of reading it twice (0: always twice, the least memory).
pub fn audit_epoch_holding(
    previous: &Head,
    head: &Head,
    archive: Bytes,
    proof: &FlatEpochProof,
    hold_bytes: usize,
) -> Result<Audited, Divergence> {
    let (epoch, suite) = (head.epoch, head.suite);
    let check = |ok: bool, what: &str, expected: String, found: String| {
        if ok { Ok(()) } else { Err(diverge(epoch, None, what, expected, found)) }
    };
    check(
        previous.epoch.next() == epoch,
        "previous head",
        format!("epoch {}", epoch.0.wrapping_sub(1)),
        previous.epoch.to_string(),
    )?;
    check(proof.suite() == suite, "epoch proof suite", suite.name().into(), proof.suite().name().into())?;
    let (old_root, digest) = rayon::join(|| proof.root_before(), || suite.archive_digest(&archive));
    check(digest == head.archive, "archive digest", head.archive.to_hex(), digest.to_hex())?;
    check(old_root == previous.root, "epoch proof: old map root", previous.root.to_hex(), old_root.to_hex())?;
    let paths = |e| diverge(epoch, None, "epoch proof: touched paths", "every touched key's path and no other", e);
    // A small archive's rows are held between the passes instead of read twice.
    let mut held = (archive.len() <= hold_bytes).then(Vec::new);
    let keys = read_keys(epoch, suite, archive.clone(), held.as_mut())?;
    // One pass over the proof checks its shape and gives the state of every touched key it
    // holds a leaf of (the others were absent).
    let mut states: Vec<(KeyState, bool)> = vec![(ABSENT, false); keys.touched.len()];
    let touched_paths = proof.leaves_before(&keys.touched, &mut |k, state| states[k].0 = state).map_err(paths)?;
    let mut counts = HeadCounts { mutations: keys.rows as u64, ..HeadCounts::default() };
    let applying = Applying { suite, epoch, touched: &keys.touched, duplicates: &keys.duplicates };
    match held {
        Some(batches) => {
            for (first, rows, mutations) in batches {
                applying.batch(&mut states, first, (&rows, &mutations), &mut counts)?;
            }
        }
        None => read_rows(epoch, archive, |first, mut rows| {
            let mutations = (rows.iter_mut().enumerate())
                .map(|(i, row)| mutation_of(epoch, first + i, row).map(|(_, m)| m))
                .collect::<Result<Vec<_>, _>>()?;
            applying.batch(&mut states, first, (&rows, &mutations), &mut counts)
        })?,
    }
    check(counts == head.counts, "counts", format!("{counts:?}"), format!("{:?}", head.counts))?;
    let new_leaves = new_leaves(suite, &keys.touched, &states);
    drop(states);
    let new_root = proof.root_after(&keys.touched, &touched_paths, &new_leaves);
    check(new_root == head.root, "map root", head.root.to_hex(), new_root.to_hex())?;
    Ok(Audited { mutations: counts.mutations, touched: keys.touched.len() as u64 })
}

/// Archives up to this size have their rows held between the two passes of [`audit_epoch`] (a
/// few times the file's size in memory); larger ones are read twice, so that memory follows the
/// touched keys only.
pub const AUDIT_HOLD_BYTES: usize = 16 << 20;

/// Checked rows from the archive's row number `.0` on, each with its mutation (key, value and
/// signature moved out of the row).
type Batch = (usize, Vec<ArchiveRow>, Vec<Mutation>);

/// A key's state before its first version.
const ABSENT: KeyState = KeyState { version: Version(0), has_value: false, commitment: Hash([0; 32]) };

/// What the first pass over an archive found.
struct Keys {
    rows: usize,
    /// Every touched index, ascending, once each.
    touched: Vec<Index>,
    /// The rows that repeat an earlier row's mutation id (same id, same key): applied once.
    duplicates: HashSet<u32>,
}

/// Why reading the archive stopped.
enum Stop {
    Archive(ArchiveError),
    Diverged(Divergence),
}

impl From<ArchiveError> for Stop {
    fn from(e: ArchiveError) -> Stop {
        Stop::Archive(e)
    }
}

/// The archive's rows, a batch at a time, to `on_batch` (its first row's number and its rows).
fn read_rows(
    epoch: Epoch,
    archive: Bytes,
    mut on_batch: impl FnMut(usize, Vec<ArchiveRow>) -> Result<(), Divergence>,
) -> Result<(), Divergence> {
    read_archive_batches(archive, |first, rows| on_batch(first, rows).map_err(Stop::Diverged)).map_err(
        |stop| match stop {
            Stop::Diverged(d) => d,
            Stop::Archive(e) => diverge(epoch, None, "archive", "a format 1 archive", e),
        },
    )
}

/// The first pass: each row's mutation, id and key index checked against its columns; the
/// touched keys and the duplicate rows.
/// With `held`, the checked rows (each with its mutation) are kept there for the second pass.
fn read_keys(
    epoch: Epoch,
    suite: HashSuite,
    archive: Bytes,
    mut held: Option<&mut Vec<Batch>>,
) -> Result<Keys, Divergence> {
    let mut seen: Vec<(Index, u32, MutationId)> = Vec::new();
    read_rows(epoch, archive, |first, mut rows| {
        let checked: Vec<Result<(Index, u32, MutationId, Mutation), Divergence>> = rows
            .par_iter_mut()
            .enumerate()
            .with_min_len(512)
            .map_init(Vec::new, |buffer, (i, row)| {
                let at = first + i;
                let (_, mutation) = mutation_of(epoch, at, row)?;
                let (id, index) = (mutation.id_with(suite, buffer), suite.index_of(&mutation.key));
                let wrong =
                    |what: &str, expected: String, found: String| diverge(epoch, Some(at), what, expected, found);
                if id.0 != row.mutation_id {
                    return Err(wrong("mutation id", id.to_hex(), row.mutation_id.to_hex()));
                }
                if row.key_index != Some(Hash(index.0)) {
                    let found = row.key_index.map_or("null".into(), |h| h.to_hex());
                    return Err(wrong("key index", index.to_hex(), found));
                }
                let number = u32::try_from(at).expect("an epoch holds fewer than 2^32 mutations");
                Ok((index, number, id, mutation))
            })
            .collect();
        let mut mutations = Vec::with_capacity(if held.is_some() { checked.len() } else { 0 });
        for c in checked {
            let (index, row, id, mutation) = c?;
            seen.push((index, row, id));
            if held.is_some() {
                mutations.push(mutation);
            }
        }
        if let Some(held) = held.as_deref_mut() {
            held.push((first, rows, mutations));
        }
        Ok(())
    })?;
    let rows = seen.len();
    // In place (a stable sort would allocate half the list again): each key's rows in row order.
    seen.par_sort_unstable_by_key(|(index, row, _)| (*index, *row));
    let mut touched = Vec::new();
    let mut duplicates = HashSet::new();
    for group in seen.chunk_by(|a, b| a.0 == b.0) {
        touched.push(group[0].0);
        if group.len() > 1 {
            let mut ids = HashSet::with_capacity(group.len());
            duplicates.extend(group.iter().filter(|(_, _, id)| !ids.insert(*id)).map(|(_, row, _)| *row));
        }
    }
    Ok(Keys { rows, touched, duplicates })
}

/// The second pass's inputs: the touched keys (ascending) and the duplicate rows.
struct Applying<'a> {
    suite: HashSuite,
    epoch: Epoch,
    touched: &'a [Index],
    duplicates: &'a HashSet<u32>,
}

/// Key-state tables by the first bits of the index: a batch's rows apply table by table, in
/// parallel (a key's rows always meet the same table, in queue order). At most this many.
const TABLES: usize = 256;
/// Rows per table a batch aims at (fewer tables for small batches: each costs a task and a list).
const ROWS_PER_TABLE: usize = 1024;

impl Applying<'_> {
    /// Applies the rows `first..` of the archive to `states` (one per touched key, with whether an
    /// applied mutation changed it); the first divergence in row order.
    fn batch(
        &self,
        states: &mut [(KeyState, bool)],
        first: usize,
        rows: (&[ArchiveRow], &[Mutation]),
        counts: &mut HeadCounts,
    ) -> Result<(), Divergence> {
        let tables_count = (rows.0.len() / ROWS_PER_TABLE).clamp(1, TABLES).next_power_of_two();
        let shift = 8 - tables_count.trailing_zeros();
        let table_of = |index: &Index| usize::from(index.0[0]) >> shift;
        // Each table's rows by number: the rows stay where they are.
        let mut members: Vec<Vec<u32>> = (0..tables_count).map(|_| Vec::new()).collect();
        for (i, row) in (0u32..).zip(rows.0) {
            let table = row.key_index.map_or(0, |index| table_of(&Index(index.0)));
            members[table].push(i);
        }
        // The touched keys and their states, cut at the same first bits.
        let mut tables = Vec::with_capacity(tables_count);
        let (mut rest, mut done) = (&mut *states, 0);
        for b in 0..tables_count {
            let end = self.touched.partition_point(|index| table_of(index) <= b);
            let (these, after) = rest.split_at_mut(end - done);
            tables.push((&self.touched[done..end], these));
            (rest, done) = (after, end);
        }
        let applied: Vec<Result<HeadCounts, (usize, Divergence)>> = tables
            .into_par_iter()
            .zip(members)
            .map(|((touched, states), members)| self.table(touched, states, first, rows, &members))
            .collect();
        // The first divergence in row order, whichever table met it.
        let mut failed: Option<(usize, Divergence)> = None;
        for result in applied {
            match result {
                Ok(c) => {
                    counts.applied += c.applied;
                    counts.rejected += c.rejected;
                    counts.duplicates += c.duplicates;
                }
                Err((row, d)) if failed.as_ref().is_none_or(|(at, _)| row < *at) => failed = Some((row, d)),
                Err(_) => {}
            }
        }
        failed.map_or(Ok(()), |(_, d)| Err(d))
    }

    /// Applies one table's rows of a batch (queue order) to its keys' states.
    fn table(
        &self,
        touched: &[Index],
        states: &mut [(KeyState, bool)],
        first: usize,
        (rows, mutations): (&[ArchiveRow], &[Mutation]),
        members: &[u32],
    ) -> Result<HeadCounts, (usize, Divergence)> {
        let (suite, epoch) = (self.suite, self.epoch);
        let mut counts = HeadCounts::default();
        for &i in members {
            let (row, mutation) = (&rows[i as usize], &mutations[i as usize]);
            let at = first + i as usize;
            // The first pass checked the key index column against the key.
            let index = Index(row.key_index.expect("checked by the first pass").0);
            let Ok(k) = touched.binary_search(&index) else {
                return Err((at, diverge(epoch, Some(at), "key index", "a key of the first pass", index.to_hex())));
            };
            let duplicate = self.duplicates.contains(&u32::try_from(at).expect("checked by the first pass"));
            let (state, changed) = &mut states[k];
            let outcome =
                if duplicate { Outcome::Duplicate } else { compare_and_set(suite, epoch, &index, state, mutation) };
            *changed |= matches!(outcome, Outcome::Applied { .. });
            counts.add(&outcome);
            compare_outcome(epoch, at, row, &outcome).map_err(|d| (at, d))?;
        }
        Ok(counts)
    }
}

/// Each touched key's new leaf hash, `None` for a key no applied mutation changed. Hashed again
/// (its last applied row's was checked): keeping 32 more bytes per touched key instead would cost
/// more memory than the hash costs time. Many at a time, through the suite's multi-input path.
fn new_leaves(suite: HashSuite, touched: &[Index], states: &[(KeyState, bool)]) -> Vec<Option<Hash>> {
    const CHUNK: usize = 2048;
    (touched.par_chunks(CHUNK).zip(states.par_chunks(CHUNK)))
        .flat_map_iter(|(touched, states)| {
            let inputs: Vec<[u8; 64]> = (touched.iter().zip(states))
                .filter(|(_, (_, changed))| *changed)
                .map(|(index, (state, _))| {
                    let mut input = [0u8; 64];
                    input[..32].copy_from_slice(&index.0);
                    input[32..].copy_from_slice(&state.commitment.0);
                    input
                })
                .collect();
            let mut hashes = Vec::with_capacity(inputs.len());
            suite.leaf_hashes(&inputs, &mut hashes);
            let mut hashes = hashes.into_iter();
            let leaves: Vec<Option<Hash>> =
                states.iter().map(|(_, changed)| changed.then(|| hashes.next().expect("one per change"))).collect();
            leaves
        })
        .collect()
}
