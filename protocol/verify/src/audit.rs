//! Auditing an epoch without the map (SPEC section 3.2): from the verified map head of the epoch
//! before, the epoch's verified head, its archive and its epoch proof alone. No state is carried
//! from one epoch to the next, so any range of epochs can be audited in parallel once their heads
//! are verified (a chain of heads, or each head's inclusion in a trusted checkpoint).

use crate::apply::{apply_mutations, touched_indexes};
use crate::divergence::{Divergence, diverge};
use crate::replay::{EpochRows, check_outcomes, first_divergence, read_epoch_rows};
use bytes::Bytes;
use keyfold_core::{EpochProof, Hash, Head, Index};

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
pub fn audit_epoch(previous: &Head, head: &Head, archive: Bytes, proof: &EpochProof) -> Result<Audited, Divergence> {
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
    check(proof.suite == suite, "epoch proof suite", suite.name().into(), proof.suite.name().into())?;
    let (old_root, read) = rayon::join(|| proof.root_before(), || read_epoch_rows(head, archive));
    let EpochRows { rows, mutations, hashed } = read?;
    check(old_root == previous.root, "epoch proof: old map root", previous.root.to_hex(), old_root.to_hex())?;
    let touched = touched_indexes(&hashed);
    let olds = proof
        .leaves_before(&touched)
        .map_err(|e| diverge(epoch, None, "epoch proof: touched paths", "every touched key's path and no other", e))?;
    let applied = apply_mutations(suite, epoch, &olds, &mutations, &hashed);
    first_divergence(check_outcomes(epoch, &rows, &applied))?;
    check(applied.counts == head.counts, "counts", format!("{:?}", applied.counts), format!("{:?}", head.counts))?;
    // Every applied row's leaf hash was recomputed and matched: each key's final one is its last
    // applied row's.
    let updates: Vec<(Index, Hash)> = applied
        .updates
        .iter()
        .zip(&applied.update_sources)
        .map(|((index, _), &i)| (*index, rows[i as usize].leaf_hash.expect("an applied row's leaf hash was checked")))
        .collect();
    let new_root = proof
        .root_after(&updates)
        .map_err(|e| diverge(epoch, None, "epoch proof: new leaves", "paths for every changed key", e))?;
    check(new_root == head.root, "map root", head.root.to_hex(), new_root.to_hex())?;
    Ok(Audited { mutations: mutations.len() as u64, touched: touched.len() as u64 })
}
