//! `keyfold fsck` of a directory with a retention window (SPEC section 4.3), whose archives
//! before the oldest kept epoch are gone, so nothing can be replayed from genesis. Instead:
//! * heads and epoch proofs: every head from genesis verified as a chain (signatures under the key
//!   in effect, links, times, the log of heads), and every kept epoch audited from its epoch
//!   proof (SPEC section 3.2: archive digest, old root, shape, outcomes, new root);
//! * the map: its root at every kept epoch is the signed root, and every record the latest signed
//!   root reaches reads back and hashes to it (`Map::check_all`);
//! * the outcome index: every mutation of every kept, indexed epoch has its archived outcome.

use crate::fsck::{Finding, Problem, guarded, report};
use keyfold_core::{Epoch, FlatEpochProof, Head, MutationId};
use keyfold_epoch::{ArchiveSink, HeadStore, ObjectArchives, OutcomeRecord, outcome_of};
use keyfold_map::Map;
use keyfold_redb::{RedbHeadStore, RedbOutcomeIndex, RedbStore};
use keyfold_verify::audit_epoch;
use rayon::prelude::*;
use std::collections::HashMap;

/// What the audit of the kept epochs leaves for the map and index checks.
struct Audited {
    /// The latest signed head.
    latest: Head,
    /// The heads of the kept epochs, by epoch.
    roots: Vec<(Epoch, keyfold_core::Hash)>,
    mutations: u64,
    /// Each mutation's outcome in the kept epochs up to the index's, its latest appearance.
    outcomes: HashMap<MutationId, OutcomeRecord>,
}

/// Where the directory's stores are, for the window's checks.
pub(crate) struct Window<'a> {
    pub config: &'a crate::directory::DirectoryConfig,
    pub public: &'a [u8; 32],
    pub heads: &'a RedbHeadStore,
    pub archives: &'a ObjectArchives,
    pub oldest: Epoch,
    pub indexed_through: Epoch,
}

/// Runs the window's checks in place of the replay's (heads, epoch proofs, map, index).
pub(crate) fn check_window(
    window: &Window<'_>,
    store: RedbStore,
    index: Option<&RedbOutcomeIndex>,
    problems: &mut Vec<String>,
) {
    let audited = guarded("heads and epoch proofs", || audit_kept(window));
    let summary = audited.as_ref().map(|a| {
        format!(
            "heads 0..={latest} verify as a chain; the epoch proofs of epochs {}..={latest} audit ({} mutations; \
             earlier archives and proofs are outside the retention window)",
            window.oldest.0.max(1),
            a.mutations,
            latest = a.latest.epoch
        )
    });
    report(problems, "heads and epoch proofs", summary.map_err(Clone::clone));
    let Ok(audited) = &audited else {
        println!("skip  map: it is checked against the verified heads, which failed");
        return;
    };
    report(problems, "map", guarded("map", || check_map(&Map::new(store), audited)));
    match index {
        Some(index) => report(problems, "index", guarded("index", || check_outcomes(index, window, audited))),
        None => println!("skip  index: no index.redb (it is rebuilt from the archives at the next start)"),
    }
}

fn audit_kept(w: &Window<'_>) -> Result<Audited, Problem> {
    let (latest, _) = w.heads.latest().map_err(|e| e.to_string())?.ok_or("no head at all, not even genesis")?;
    let note = |epoch: Epoch| -> Result<String, Problem> {
        let note = w.heads.get(epoch).map_err(|e| e.to_string())?;
        Ok(note.ok_or_else(|| format!("epoch {epoch}: head missing"))?)
    };
    let origin_key = (w.config.origin.as_str(), w.public, w.config.shard_bits);
    let kept = crate::audit::verified_heads(note, latest, w.oldest.0.max(1), origin_key)?;
    let head = kept.last().expect("the latest head").clone();
    let audits: Vec<(u64, Vec<(MutationId, OutcomeRecord)>)> =
        kept.par_windows(2).map(|pair| audit_one(w, &pair[0], &pair[1])).collect::<Result<_, Problem>>()?;
    let mut outcomes = HashMap::new();
    for (_, rows) in &audits {
        outcomes.extend(rows.iter().cloned()); // epochs in order: a later appearance replaces an earlier
    }
    let roots = kept.iter().filter(|h| h.epoch.0 >= w.oldest.0).map(|h| (h.epoch, h.root)).collect();
    Ok(Audited { latest: head, roots, mutations: audits.iter().map(|(m, _)| m).sum(), outcomes })
}

/// Audits the epoch of `head` from `previous`; returns its mutation count and, if the index has
/// recorded the epoch, each row's outcome.
fn audit_one(w: &Window<'_>, previous: &Head, head: &Head) -> Result<(u64, Vec<(MutationId, OutcomeRecord)>), Problem> {
    let epoch = head.epoch;
    let archive = ArchiveSink::get(w.archives, epoch).map_err(|e| e.to_string())?.ok_or_else(|| {
        format!("epoch {epoch}: archive {} missing inside the retention window", w.archives.describe(epoch))
    })?;
    let proof = ArchiveSink::get_proof(w.archives, epoch)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("epoch {epoch}: its epoch proof is missing inside the retention window"))?;
    let proof = FlatEpochProof::decode(&proof).map_err(|e| format!("epoch {epoch}: the epoch proof: {e}"))?;
    let audited = audit_epoch(previous, head, archive.clone(), &proof).map_err(|d| format!("epoch {epoch}: {d}"))?;
    if epoch > w.indexed_through {
        return Ok((audited.mutations, Vec::new()));
    }
    let rows = keyfold_archive::read_archive_bytes(archive).map_err(|e| format!("epoch {epoch}: {e}"))?;
    Ok((audited.mutations, rows.iter().map(|row| (MutationId(row.mutation_id), outcome_of(row, epoch))).collect()))
}

fn check_map(map: &Map<RedbStore>, audited: &Audited) -> Finding {
    let signed = audited.latest.epoch;
    let stored = map.latest_epoch().map_err(|e| e.to_string())?;
    // One epoch committed to the map without its head is a crash's normal state (as without a window).
    if stored != signed && stored != signed.next() {
        return Err(format!("the map is at epoch {stored} but the heads at {signed}").into());
    }
    for (epoch, root) in &audited.roots {
        let stored = map.root(*epoch).map_err(|e| format!("epoch {epoch}: {e}"))?;
        if stored.hash != *root {
            return Err(format!(
                "epoch {epoch}: stored root {} but the head signs {}",
                stored.hash.to_hex(),
                root.to_hex()
            )
            .into());
        }
    }
    let leaves = map.check_all(signed).map_err(|e| format!("epoch {signed}: {e}"))?;
    let first = audited.roots.first().map_or(signed, |(e, _)| *e);
    Ok(format!(
        "the roots of the kept epochs {first}..={signed} are the signed ones; all {leaves} leaves and the nodes above \
         them at epoch {signed} read back and hash to its root"
    ))
}

fn check_outcomes(index: &RedbOutcomeIndex, w: &Window<'_>, audited: &Audited) -> Finding {
    let signed = audited.latest.epoch;
    if w.indexed_through > signed {
        return Err(format!("the index is at epoch {} but the heads only at {signed}", w.indexed_through).into());
    }
    crate::fsck::check_indexed_outcomes(index, &audited.outcomes)?;
    Ok(format!(
        "through epoch {}: the outcomes of the {} mutations of the kept epochs are the archived ones (earlier epochs' \
         archives are outside the retention window)",
        w.indexed_through,
        audited.outcomes.len()
    ))
}
