//! Compare-and-set application of an epoch's mutations, in queue order. Pure.

use hashbrown::{HashMap, HashSet};
use keyfold_core::{HashSuite, HeadCounts, Index, LeafValue, Mutation, MutationId, Version};
use keyfold_ingest::Position;
use rayon::prelude::*;

/// Why a mutation was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// `expected_version` is not the key's version when the mutation's turn came.
    VersionMismatch { expected: Version, current: Version },
    /// A tombstone for a key that has no value (absent or already deleted).
    NothingToDelete { current: Version },
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::VersionMismatch { expected, current } => {
                write!(f, "expected version {expected} but the key is at version {current}")
            }
            RejectReason::NothingToDelete { current } => {
                write!(f, "the key has no value to delete (version {current})")
            }
        }
    }
}

/// What happened to one mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied {
        version: Version,
    },
    Rejected(RejectReason),
    /// The same mutation id was already consumed earlier in this epoch; applied once.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationOutcome {
    pub position: Position,
    pub id: MutationId,
    pub index: Index,
    pub outcome: Outcome,
}

/// The result of applying an epoch's mutations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// One per mutation, in queue order.
    pub outcomes: Vec<MutationOutcome>,
    /// The final value of every changed key (one per index), for the tree update.
    pub updates: Vec<(Index, LeafValue)>,
    pub counts: HeadCounts,
}

/// The id and map index of every mutation, hashed once, in parallel (independent per mutation).
/// Callers use them to read the touched keys and pass them on to [`apply_mutations`].
pub fn hash_mutations(suite: HashSuite, mutations: &[(Position, Mutation)]) -> Vec<(MutationId, Index)> {
    mutations.par_iter().with_min_len(512).map(|(_, m)| (m.id(suite), suite.index_of(&m.key))).collect()
}

/// Applies `mutations` (in queue order; `hashed` from [`hash_mutations`]) to the state `current`
/// (the value of every touched index at the previous epoch; absent keys may be missing or `None`).
/// Several mutations of one key apply in order, each seeing the previous one's result; an exact
/// duplicate applies once. Sequential: the order is the semantics.
pub fn apply_mutations(
    current: &HashMap<Index, Option<LeafValue>>,
    mutations: &[(Position, Mutation)],
    hashed: &[(MutationId, Index)],
) -> Applied {
    assert_eq!(mutations.len(), hashed.len(), "one (id, index) per mutation");
    let mut state: HashMap<Index, Option<LeafValue>> = HashMap::new();
    let mut seen: HashSet<MutationId> = HashSet::with_capacity(mutations.len());
    let mut outcomes = Vec::with_capacity(mutations.len());
    let mut counts = HeadCounts { mutations: mutations.len() as u64, ..HeadCounts::default() };
    for ((position, m), &(id, index)) in mutations.iter().zip(hashed) {
        let outcome = if !seen.insert(id) {
            counts.duplicates += 1;
            Outcome::Duplicate
        } else {
            let now = state.get(&index).cloned().unwrap_or_else(|| current.get(&index).cloned().flatten());
            let version = now.as_ref().map_or(Version(0), |v| v.version);
            let has_value = now.as_ref().is_some_and(|v| v.value.is_some());
            if m.expected_version != version {
                counts.rejected += 1;
                Outcome::Rejected(RejectReason::VersionMismatch { expected: m.expected_version, current: version })
            } else if m.value.is_none() && !has_value {
                counts.rejected += 1;
                Outcome::Rejected(RejectReason::NothingToDelete { current: version })
            } else {
                let next = Version(version.0.checked_add(1).expect("version overflow"));
                state.insert(index, Some(LeafValue { version: next, value: m.value.clone() }));
                counts.applied += 1;
                Outcome::Applied { version: next }
            }
        };
        outcomes.push(MutationOutcome { position: *position, id, index, outcome });
    }
    let mut updates: Vec<(Index, LeafValue)> =
        state.into_iter().map(|(i, v)| (i, v.expect("applied mutations leave a value or tombstone"))).collect();
    updates.sort_unstable_by_key(|u| u.0);
    Applied { outcomes, updates, counts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str, value: Option<&str>, expected: u64) -> Mutation {
        Mutation {
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
            expected_version: Version(expected),
            owner_signature: None,
        }
    }

    fn run(current: &[(&str, LeafValue)], ms: Vec<Mutation>) -> Applied {
        let suite = HashSuite::Blake3;
        let current = current.iter().map(|(k, v)| (suite.index_of(k.as_bytes()), Some(v.clone()))).collect();
        let ms: Vec<_> = ms.into_iter().enumerate().map(|(i, m)| (Position(i as u64 + 1), m)).collect();
        apply_mutations(&current, &ms, &hash_mutations(suite, &ms))
    }

    fn outcomes(a: &Applied) -> Vec<Outcome> {
        a.outcomes.iter().map(|o| o.outcome.clone()).collect()
    }

    #[test]
    fn compare_and_set_in_queue_order() {
        let a = run(&[], vec![m("k", Some("a"), 0), m("k", Some("b"), 1), m("k", Some("c"), 1), m("k", None, 2)]);
        assert_eq!(
            outcomes(&a),
            vec![
                Outcome::Applied { version: Version(1) },
                Outcome::Applied { version: Version(2) },
                Outcome::Rejected(RejectReason::VersionMismatch { expected: Version(1), current: Version(2) }),
                Outcome::Applied { version: Version(3) },
            ]
        );
        assert_eq!(a.updates.len(), 1);
        assert_eq!(a.updates[0].1, LeafValue::tombstone(Version(3)), "tombstone keeps the version");
        assert_eq!((a.counts.mutations, a.counts.applied, a.counts.rejected, a.counts.duplicates), (4, 3, 1, 0));
    }

    #[test]
    fn duplicates_apply_once_and_tombstones_keep_history() {
        let dup = m("k", Some("a"), 0);
        let a = run(&[], vec![dup.clone(), dup.clone(), m("x", None, 0)]);
        assert_eq!(outcomes(&a)[1], Outcome::Duplicate);
        assert_eq!(outcomes(&a)[2], Outcome::Rejected(RejectReason::NothingToDelete { current: Version(0) }));
        // A deleted key is re-created from its tombstone's version, never from 0.
        let deleted = [("k", LeafValue::tombstone(Version(4)))];
        let a = run(&deleted, vec![m("k", Some("v"), 0), m("k", Some("v"), 4), m("k", None, 5), m("k", None, 6)]);
        assert_eq!(
            outcomes(&a),
            vec![
                Outcome::Rejected(RejectReason::VersionMismatch { expected: Version(0), current: Version(4) }),
                Outcome::Applied { version: Version(5) },
                Outcome::Applied { version: Version(6) },
                Outcome::Rejected(RejectReason::NothingToDelete { current: Version(6) }),
            ]
        );
        let reason = RejectReason::VersionMismatch { expected: Version(1), current: Version(3) }.to_string();
        assert!(reason.contains("expected version 1") && reason.contains("version 3"), "{reason}");
    }
}
