//! Compare-and-set application of an epoch's mutations, in queue order. Pure.

use hashbrown::HashSet;
use keyfold_archive::{ArchiveOutcome, ArchiveRow};
pub use keyfold_core::KeyState;
use keyfold_core::{Epoch, Hash, HashSuite, HeadCounts, Index, LeafValue, Mutation, MutationId, Position, Version};
use keyfold_map::{Map, TreeError, TreeStore};
use rayon::prelude::*;

/// Why a mutation was not applied. Its [`code`](RejectReason::code) is what the archive's
/// `reason` column holds (SPEC section 7): fixed forever, so rewording a message for people never
/// changes a signed archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// `expected_version` is not the key's version when the mutation's turn came.
    VersionMismatch { expected: Version, current: Version },
    /// A tombstone for a key that has no value (absent or already deleted).
    NothingToDelete { current: Version },
}

impl RejectReason {
    /// Every reason code, with its meaning (SPEC section 7 lists the same).
    pub const CODES: [(&'static str, &'static str); 2] = [
        ("version_mismatch", "expected_version is not the key's current version when the mutation's turn comes"),
        ("nothing_to_delete", "a tombstone for a key that has no value (never set, or already deleted)"),
    ];

    /// The archived reason code: ASCII snake_case, meaning fixed (a new rule gets a new code).
    pub fn code(&self) -> &'static str {
        let at = match self {
            RejectReason::VersionMismatch { .. } => 0,
            RejectReason::NothingToDelete { .. } => 1,
        };
        RejectReason::CODES[at].0
    }
}

/// The outcome columns of one archive row (SPEC section 7): the one mapping from an
/// [`Outcome`] to what is archived, used by the writer and by every verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeColumns {
    pub outcome: ArchiveOutcome,
    /// The key's version after the mutation: applied rows only.
    pub new_version: Option<u64>,
    /// The reason code: rejected rows only.
    pub reason: Option<&'static str>,
    /// The key's leaf hash after the mutation: applied rows only.
    pub leaf_hash: Option<Hash>,
}

impl OutcomeColumns {
    /// The columns for `outcome`.
    pub fn of(outcome: &Outcome) -> OutcomeColumns {
        let none = |outcome| OutcomeColumns { outcome, new_version: None, reason: None, leaf_hash: None };
        match outcome {
            Outcome::Applied { version, leaf_hash } => OutcomeColumns {
                outcome: ArchiveOutcome::Applied,
                new_version: Some(version.0),
                reason: None,
                leaf_hash: Some(*leaf_hash),
            },
            Outcome::Rejected(reason) => {
                OutcomeColumns { reason: Some(reason.code()), ..none(ArchiveOutcome::Rejected) }
            }
            Outcome::Duplicate => none(ArchiveOutcome::Duplicate),
        }
    }
}

/// The archive rows of an epoch: each consumed mutation (queue order) with its outcome. The
/// mutations move into the rows (keys, values and signatures are not copied).
pub fn archive_rows(mutations: Vec<(Position, Mutation)>, outcomes: &[MutationOutcome]) -> Vec<ArchiveRow> {
    assert_eq!(mutations.len(), outcomes.len(), "one outcome per mutation");
    mutations
        .into_par_iter()
        .zip(outcomes)
        .with_min_len(1024)
        .map(|((position, m), o)| {
            debug_assert_eq!(position, o.position);
            let columns = OutcomeColumns::of(&o.outcome);
            ArchiveRow {
                position: position.0,
                mutation_id: o.id.0,
                key_index: Some(Hash(o.index.0)),
                tombstone: m.value.is_none(),
                key: Some(m.key),
                value: m.value,
                owner_signature: m.owner_signature,
                expected_version: m.expected_version.0,
                new_version: columns.new_version,
                outcome: columns.outcome,
                reason: columns.reason.map(str::to_owned),
                leaf_hash: columns.leaf_hash,
            }
        })
        .collect()
}

/// For people (API answers, logs); never archived or compared.
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
    /// The key's new version and its leaf hash after this mutation (SPEC section 5.4, rule 4).
    Applied {
        version: Version,
        leaf_hash: Hash,
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
    /// The final value of every changed key (one per index, ascending), for the tree update.
    pub updates: Vec<(Index, LeafValue)>,
    /// For each of `updates`, the mutation whose value it is (the key's last applied one), as a
    /// position in the epoch's list: its leaf hash is the update's.
    pub update_sources: Vec<u32>,
    /// For each of `updates`, the key's state after the epoch (its commitment as the chain gave
    /// it: what the next epoch's compare-and-set starts from, without hashing the leaf again).
    pub update_states: Vec<KeyState>,
    pub counts: HeadCounts,
}

/// The id and map index of every mutation, hashed once, in parallel (independent per mutation).
/// Callers use them to read the touched keys and pass them on to [`apply_mutations`].
pub fn hash_mutations(suite: HashSuite, mutations: &[(Position, Mutation)]) -> Vec<(MutationId, Index)> {
    mutations
        .par_iter()
        .with_min_len(512)
        .map_init(Vec::new, |buffer, (_, m)| (m.id_with(suite, buffer), suite.index_of(&m.key)))
        .collect()
}

/// Every index the mutations touch, ascending, once each.
pub fn touched_indexes(hashed: &[(MutationId, Index)]) -> Vec<Index> {
    let mut touched: Vec<Index> = hashed.iter().map(|(_, index)| *index).collect();
    touched.par_sort_unstable();
    touched.dedup();
    touched
}

/// The state at `epoch` of every key the mutations touch (`None` where absent), ascending by
/// index, one entry per index: the `current` state [`apply_mutations`] takes.
pub fn read_touched<S: TreeStore>(
    map: &Map<S>,
    hashed: &[(MutationId, Index)],
    epoch: Epoch,
) -> Result<Vec<(Index, Option<KeyState>)>, TreeError> {
    let touched = touched_indexes(hashed);
    let values = map.get_many(&touched, epoch)?;
    let suite = map.suite();
    Ok(touched.into_iter().zip(values).map(|(index, value)| (index, value.map(|v| KeyState::of(suite, &v)))).collect())
}

/// Mutations of one key always fall into the same bucket (by the first byte of the key's index),
/// so buckets apply independently, in parallel; results do not depend on the thread count.
const APPLY_BUCKETS: usize = 256;

/// Above this many mutations of one key in one epoch, duplicates are found with a hash set
/// instead of comparing with every earlier mutation of the key.
const SMALL_GROUP: usize = 16;

/// Applies `mutations` (in queue order; `hashed` from [`hash_mutations`]) as epoch `epoch` to the state `current`
/// (the previous epoch's value of touched indexes, ascending by index as [`read_touched`] returns
/// it; an index missing there is absent). Several mutations of one key apply in queue order, each
/// seeing the previous one's result; an exact duplicate applies once. An exact duplicate has the
/// same id, hence the same key, so each key's mutations are applied on their own: sorted by index
/// (stable, so queue order holds within a key) and merged with `current`, no hash tables.
pub fn apply_mutations(
    suite: HashSuite,
    epoch: Epoch,
    current: &[(Index, Option<KeyState>)],
    mutations: &[(Position, Mutation)],
    hashed: &[(MutationId, Index)],
) -> Applied {
    assert_eq!(mutations.len(), hashed.len(), "one (id, index) per mutation");
    debug_assert!(current.windows(2).all(|w| w[0].0 < w[1].0), "current ascends by index");
    let count = u32::try_from(mutations.len()).expect("an epoch holds fewer than 2^32 mutations");
    let mut buckets: Vec<Vec<(Index, u32)>> =
        (0..APPLY_BUCKETS).map(|_| Vec::with_capacity(mutations.len() / APPLY_BUCKETS + 16)).collect();
    for (i, (_, index)) in (0..count).zip(hashed) {
        buckets[usize::from(index.0[0])].push((*index, i));
    }
    let parts: Vec<BucketApplied> = buckets
        .into_par_iter()
        .enumerate()
        .map(|(b, mut members)| {
            members.sort_by_key(|m| m.0); // stable: queue order within a key
            let start = current.partition_point(|(index, _)| usize::from(index.0[0]) < b);
            let end = current.partition_point(|(index, _)| usize::from(index.0[0]) <= b);
            let bucket = Bucket { suite, epoch, current: &current[start..end], mutations, hashed };
            bucket.apply(&members)
        })
        .collect();
    let mut outcome_of = vec![Outcome::Duplicate; mutations.len()];
    let mut counts = HeadCounts { mutations: u64::from(count), ..HeadCounts::default() };
    let changed = parts.iter().map(|p| p.updates.len()).sum();
    let mut updates = Vec::with_capacity(changed);
    let mut update_sources = Vec::with_capacity(changed);
    let mut update_states = Vec::with_capacity(changed);
    for part in parts {
        for (i, outcome) in part.outcomes {
            outcome_of[i as usize] = outcome;
        }
        counts.applied += part.counts.applied;
        counts.rejected += part.counts.rejected;
        counts.duplicates += part.counts.duplicates;
        // Buckets come in index order and each is sorted: the concatenation is sorted.
        updates.extend(part.updates);
        update_sources.extend(part.update_sources);
        update_states.extend(part.update_states);
    }
    debug_assert!(updates.windows(2).all(|w| w[0].0 < w[1].0), "updates sorted, one per index");
    let outcomes = outcome_of
        .into_par_iter()
        .zip(mutations.par_iter().zip(hashed))
        .with_min_len(4096)
        .map(|(outcome, ((position, _), &(id, index)))| MutationOutcome { position: *position, id, index, outcome })
        .collect();
    Applied { outcomes, updates, update_sources, update_states, counts }
}

/// One bucket's outcomes (with the mutation each belongs to), sorted updates and counts.
#[derive(Debug)]
struct BucketApplied {
    outcomes: Vec<(u32, Outcome)>,
    updates: Vec<(Index, LeafValue)>,
    update_sources: Vec<u32>,
    update_states: Vec<KeyState>,
    counts: HeadCounts,
}

/// One bucket's inputs: the epoch being applied and the previous state of its indexes.
struct Bucket<'a> {
    suite: HashSuite,
    epoch: Epoch,
    /// The bucket's slice of the previous state.
    current: &'a [(Index, Option<KeyState>)],
    mutations: &'a [(Position, Mutation)],
    hashed: &'a [(MutationId, Index)],
}

impl Bucket<'_> {
    /// Applies `members` (sorted by index, queue order within an index).
    fn apply(&self, members: &[(Index, u32)]) -> BucketApplied {
        let mut out = BucketApplied {
            outcomes: Vec::with_capacity(members.len()),
            updates: Vec::new(),
            update_sources: Vec::new(),
            update_states: Vec::new(),
            counts: HeadCounts::default(),
        };
        let mut cursor = 0;
        for group in members.chunk_by(|a, b| a.0 == b.0) {
            let index = group[0].0;
            while cursor < self.current.len() && self.current[cursor].0 < index {
                cursor += 1;
            }
            let before = self.current.get(cursor).filter(|(at, _)| *at == index).and_then(|(_, v)| *v);
            self.apply_key(index, before, group, &mut out);
        }
        out
    }

    /// Applies the mutations `group` of the key at `index`, whose state before the epoch is `before`.
    fn apply_key(&self, index: Index, before: Option<KeyState>, group: &[(Index, u32)], out: &mut BucketApplied) {
        let mut state =
            before.unwrap_or(KeyState { version: Version(0), has_value: false, commitment: Hash::default() });
        let mut last_applied = None;
        let mut seen: Option<HashSet<MutationId>> =
            (group.len() > SMALL_GROUP).then(|| HashSet::with_capacity(group.len()));
        for (j, &(_, i)) in group.iter().enumerate() {
            let m = &self.mutations[i as usize].1;
            let id = self.hashed[i as usize].0;
            let duplicate = match seen.as_mut() {
                Some(seen) => !seen.insert(id),
                None => group[..j].iter().any(|&(_, k)| self.hashed[k as usize].0 == id),
            };
            let previous = state.commitment;
            let outcome = if duplicate {
                Outcome::Duplicate
            } else {
                compare_and_set(self.suite, self.epoch, &index, &mut state, m)
            };
            if matches!(outcome, Outcome::Applied { .. }) {
                last_applied = Some((i, previous));
            }
            out.counts.add(&outcome);
            out.outcomes.push((i, outcome));
        }
        if let Some((i, previous)) = last_applied {
            let value = self.mutations[i as usize].1.value.clone();
            out.updates.push((index, LeafValue::new(state.version, self.epoch, previous, value)));
            out.update_sources.push(i);
            out.update_states.push(state);
        }
    }
}

/// Rules 2 to 4 of SPEC section 5.4 for a mutation of the key at `index` that is not a
/// duplicate, against the key's `state`, which an applied mutation advances: a new version that
/// chains to the commitment of the one before (SPEC section 1.3).
pub(crate) fn compare_and_set(
    suite: HashSuite,
    epoch: Epoch,
    index: &Index,
    state: &mut KeyState,
    m: &Mutation,
) -> Outcome {
    if m.expected_version != state.version {
        let current = state.version;
        return Outcome::Rejected(RejectReason::VersionMismatch { expected: m.expected_version, current });
    }
    if m.value.is_none() && !state.has_value {
        return Outcome::Rejected(RejectReason::NothingToDelete { current: state.version });
    }
    let version = Version(state.version.0.checked_add(1).expect("version overflow"));
    let entry = suite.entry_hash(&state.commitment, epoch, m.value.as_deref());
    *state = KeyState {
        version,
        has_value: m.value.is_some(),
        commitment: suite.version_commitment(version, m.value.is_some(), &entry),
    };
    Outcome::Applied { version, leaf_hash: suite.leaf_hash(index, &state.commitment) }
}

/// Head counts by outcome.
pub(crate) trait CountOutcome {
    fn add(&mut self, outcome: &Outcome);
}

impl CountOutcome for HeadCounts {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Applied { .. } => self.applied += 1,
            Outcome::Rejected(_) => self.rejected += 1,
            Outcome::Duplicate => self.duplicates += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::HashMap;

    fn m(key: &str, value: Option<&str>, expected: u64) -> Mutation {
        Mutation {
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
            expected_version: Version(expected),
            owner_signature: None,
        }
    }

    const EPOCH: Epoch = Epoch(7);

    fn run(current: &[(&str, LeafValue)], ms: Vec<Mutation>) -> Applied {
        let suite = HashSuite::Blake3;
        let mut current: Vec<_> =
            current.iter().map(|(k, v)| (suite.index_of(k.as_bytes()), Some(KeyState::of(suite, v)))).collect();
        current.sort_by_key(|c| c.0);
        let ms: Vec<_> = ms.into_iter().enumerate().map(|(i, m)| (Position(i as u64 + 1), m)).collect();
        apply_mutations(suite, EPOCH, &current, &ms, &hash_mutations(suite, &ms))
    }

    /// The outcomes, leaf hashes left out (the reference test checks them).
    fn outcomes(a: &Applied) -> Vec<Outcome> {
        let versions_only = |o: &Outcome| match o {
            Outcome::Applied { version, .. } => applied(version.0),
            other => other.clone(),
        };
        a.outcomes.iter().map(|o| versions_only(&o.outcome)).collect()
    }

    fn applied(version: u64) -> Outcome {
        Outcome::Applied { version: Version(version), leaf_hash: Hash::default() }
    }

    #[test]
    fn compare_and_set_in_queue_order() {
        let a = run(&[], vec![m("k", Some("a"), 0), m("k", Some("b"), 1), m("k", Some("c"), 1), m("k", None, 2)]);
        assert_eq!(
            outcomes(&a),
            vec![
                applied(1),
                applied(2),
                Outcome::Rejected(RejectReason::VersionMismatch { expected: Version(1), current: Version(2) }),
                applied(3),
            ]
        );
        assert_eq!(a.updates.len(), 1);
        // The tombstone keeps the version, and chains to version 2 (which chains to version 1).
        let suite = HashSuite::Blake3;
        let v1 = LeafValue::new(Version(1), EPOCH, Hash::default(), Some(b"a".to_vec()));
        let v2 = LeafValue::new(Version(2), EPOCH, suite.value_commitment(&v1), Some(b"b".to_vec()));
        assert_eq!(a.updates[0].1, LeafValue::new(Version(3), EPOCH, suite.value_commitment(&v2), None));
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
                applied(5),
                applied(6),
                Outcome::Rejected(RejectReason::NothingToDelete { current: Version(6) }),
            ]
        );
        let reason = RejectReason::VersionMismatch { expected: Version(1), current: Version(3) }.to_string();
        assert!(reason.contains("expected version 1") && reason.contains("version 3"), "{reason}");
    }

    /// The definition, one mutation after the other over one table: the sharded, parallel apply
    /// must agree with it exactly, whatever the thread count. Returns the outcomes and the final
    /// value of every changed key.
    fn reference(
        current: &[(Index, Option<KeyState>)],
        ms: &[(Position, Mutation)],
    ) -> (Vec<Outcome>, HashMap<Index, LeafValue>) {
        let suite = HashSuite::Blake3;
        let current: HashMap<Index, Option<KeyState>> = current.iter().copied().collect();
        let mut state: HashMap<Index, LeafValue> = HashMap::new();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (_, m) in ms {
            let index = suite.index_of(&m.key);
            if !seen.insert(m.id(suite)) {
                out.push(Outcome::Duplicate);
                continue;
            }
            let now =
                state.get(&index).map(|l| KeyState::of(suite, l)).or_else(|| current.get(&index).copied().flatten());
            let version = now.map_or(Version(0), |v| v.version);
            if m.expected_version != version {
                out.push(Outcome::Rejected(RejectReason::VersionMismatch {
                    expected: m.expected_version,
                    current: version,
                }));
            } else if m.value.is_none() && now.is_none_or(|v| !v.has_value) {
                out.push(Outcome::Rejected(RejectReason::NothingToDelete { current: version }));
            } else {
                let previous = now.map_or(Hash::default(), |v| v.commitment);
                let leaf = LeafValue::new(Version(version.0 + 1), EPOCH, previous, m.value.clone());
                out.push(Outcome::Applied { version: leaf.version, leaf_hash: suite.leaf_hash_of(&index, &leaf) });
                state.insert(index, leaf);
            }
        }
        (out, state)
    }

    #[test]
    fn sharded_apply_agrees_with_the_sequential_definition_at_any_thread_count() {
        use rand::{Rng, SeedableRng};
        let suite = HashSuite::Blake3;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        let key = |k: u64| format!("user{k}").into_bytes();
        // Some keys start as tombstones.
        let mut current: Vec<(Index, Option<KeyState>)> = (0..300u64)
            .map(|k| {
                let version = Version(k % 3 + 1);
                let commitment = Hash([u8::try_from(k % 251).unwrap(); 32]);
                (suite.index_of(&key(k)), Some(KeyState { version, has_value: k % 5 != 0, commitment }))
            })
            .collect();
        current.sort_by_key(|c| c.0);
        let mut ms: Vec<Mutation> = Vec::new();
        for i in 0..20_000u64 {
            let m = if i > 0 && rng.random_ratio(1, 20) {
                ms[rng.random_range(0..ms.len())].clone()
            } else {
                Mutation {
                    // Hot keys (many mutations each: the hash-set path) and a long tail (few each).
                    key: key(if rng.random() { rng.random_range(0..600) } else { rng.random_range(0..20_000) }),
                    value: (!rng.random_ratio(1, 8)).then(|| vec![rng.random::<u8>()]),
                    expected_version: Version(rng.random_range(0..6)),
                    owner_signature: None,
                }
            };
            ms.push(m);
        }
        let ms: Vec<_> = ms.into_iter().enumerate().map(|(i, m)| (Position(i as u64 + 1), m)).collect();
        let (expected, state) = reference(&current, &ms);
        let applied: Vec<Applied> = [1, 3]
            .iter()
            .map(|&threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| apply_mutations(suite, EPOCH, &current, &ms, &hash_mutations(suite, &ms)))
            })
            .collect();
        assert_eq!(applied[0], applied[1], "thread count changes nothing");
        let found: Vec<Outcome> = applied[0].outcomes.iter().map(|o| o.outcome.clone()).collect();
        assert_eq!(found, expected, "outcomes and leaf hashes");
        let mut changed: Vec<(Index, LeafValue)> = state.into_iter().collect();
        changed.sort_by_key(|c| c.0);
        assert_eq!(applied[0].updates, changed, "each changed key's final value, ascending");
        let states: Vec<KeyState> = changed.iter().map(|(_, leaf)| KeyState::of(suite, leaf)).collect();
        assert_eq!(applied[0].update_states, states, "each changed key's state, its commitment chained");
        for (update, &source) in applied[0].updates.iter().zip(&applied[0].update_sources) {
            let (_, m) = &ms[source as usize];
            assert_eq!((suite.index_of(&m.key), &m.value), (update.0, &update.1.value), "the source is its last write");
            let leaf_hash = suite.leaf_hash_of(&update.0, &update.1);
            assert_eq!(
                applied[0].outcomes[source as usize].outcome,
                Outcome::Applied { version: update.1.version, leaf_hash }
            );
        }
        let c = applied[0].counts;
        assert!(
            c.applied > 1000 && c.rejected > 1000 && c.duplicates > 100,
            "the workload exercises every outcome: {c:?}"
        );
        assert_eq!(c.applied + c.rejected + c.duplicates, c.mutations);
    }
}
