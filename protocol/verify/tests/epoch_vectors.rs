//! Epoch-level golden vectors (SPEC.md section 8): whole epochs, for both hash suites, with their
//! inputs (each key's leaf before the epoch, the mutations in queue order) and every output (each
//! mutation's outcome, the epoch's updates, the map root, the counts, the head), all in structured
//! form, so that an implementation written from the SPEC alone can check itself epoch by epoch.
//!
//! `tests/vectors/epochs.json` is committed. `epoch_vectors_match` recomputes it through the code
//! paths the directory's epoch job runs (`server/epoch/src/job.rs`) and compares. The `stored_*`
//! tests check the committed file without that code (compare-and-set as a loop over a `BTreeMap`,
//! hashes from the primitives, a naive map root, a hand-written decoder), so the file cannot agree
//! with a bug in it, and check that the scenario still covers every case it is there for.
//! To regenerate after a deliberate change (SPEC.md changes in the same commit):
//! `KEYFOLD_BLESS=1 cargo test -p keyfold-verify --test epoch_vectors`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_archive::{ArchiveOutcome, ArchiveRow, archive_digest, write_archive};
use keyfold_core::{
    Epoch, Frontier, Hash, HashSuite, Head, HeadCounts, Index, LeafValue, Mutation, Position, SigningKey, Version,
    verify_head_note,
};
use keyfold_map::{Map, MemoryStore, TreeConfig, TreeStore};
use keyfold_verify::{
    Replayer, ReplicaState, ResumeError, apply_mutations, archive_rows, hash_mutations, read_touched,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

const ORIGIN: &str = "example.com/keyfold";
/// The directory's ed25519 key (as in `golden.json`): heads are signed, and signatures are
/// deterministic, so the notes are vectors too.
const SIGNING_KEY_SEED: [u8; 32] = [0x07; 32];
const GENESIS_TIME_MS: u64 = 1_763_900_000_000;
/// Epoch E's time is `GENESIS_TIME_MS + E * EPOCH_MS`: fixed, and later than the previous one as
/// the scheduler guarantees.
const EPOCH_MS: u64 = 60_000;
/// The map is computed at each of these shard bits (read from the first): SPEC section 2 says the
/// root does not depend on them, and every epoch checks it.
const SHARD_BITS: [u8; 3] = [4, 0, 8];
const SUITES: [HashSuite; 2] = [HashSuite::Blake3, HashSuite::Sha256];

// ---------------------------------------------------------------------------------------------
// The file's structure. Field order is the JSON's key order; binary values are lowercase hex.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vectors {
    about: String,
    suites: Vec<SuiteVectors>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteVectors {
    suite: String,
    origin: String,
    signing_key_seed: String,
    public_key: String,
    genesis: GenesisVector,
    epochs: Vec<EpochVector>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisVector {
    time_ms: u64,
    map_root: String,
    head_body: String,
    head_hash: String,
    /// The RFC 6962 root of the log of heads (one leaf: this head's body).
    log_root: String,
    head_note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochVector {
    epoch: u64,
    time_ms: u64,
    previous_head_hash: String,
    /// Every leaf of the map of the previous epoch, ascending by index.
    state_before: Vec<LeafVector>,
    mutations: Vec<MutationVector>,
    /// One per mutation, in the same (queue) order.
    outcomes: Vec<OutcomeVector>,
    /// Index hex to the leaf hash of the key's final state, for every key with an applied mutation.
    updates: BTreeMap<String, String>,
    map_root: String,
    /// The digest of the archive Keyfold writes for this epoch (SPEC section 7).
    archive_digest: String,
    counts: CountsVector,
    head_body: String,
    head_hash: String,
    /// The RFC 6962 root of the log of heads 0..=epoch (leaf i: head i's body).
    log_root: String,
    head_note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafVector {
    key: String,
    index: String,
    version: u64,
    /// The epoch that applied `version`.
    version_epoch: u64,
    /// The commitment of the version before (hex; 32 zero bytes for version 1).
    previous: String,
    value: Option<String>,
    tombstone: bool,
    leaf_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MutationVector {
    position: u64,
    /// For people: what the mutation is there to exercise. Not an input.
    case: String,
    key: String,
    key_index: String,
    value: Option<String>,
    tombstone: bool,
    expected_version: u64,
    owner_signature: Option<String>,
    mutation_encoding: String,
    mutation_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeVector {
    position: u64,
    outcome: String,
    reason: Option<String>,
    new_version: Option<u64>,
    leaf_hash: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsVector {
    mutations: u64,
    applied: u64,
    rejected: u64,
    duplicates: u64,
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/epochs.json")
}

fn pretty(vectors: &Vectors) -> String {
    serde_json::to_string_pretty(vectors).unwrap() + "\n"
}

/// The committed vectors. With `KEYFOLD_BLESS` set they are first rewritten, once, before any
/// test of this binary reads them (tests run in parallel threads).
fn stored() -> Vectors {
    static BLESSED: OnceLock<()> = OnceLock::new();
    BLESSED.get_or_init(|| {
        if std::env::var_os("KEYFOLD_BLESS").is_some() {
            std::fs::write(path(), pretty(&compute())).unwrap();
        }
    });
    serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The scenario: the same mutations for both suites, from the empty map.

/// One queued mutation and what it is there to exercise.
struct Case {
    case: &'static str,
    m: Mutation,
}

fn put(case: &'static str, key: &str, value: &[u8], expected: u64) -> Case {
    let m = Mutation {
        key: key.as_bytes().to_vec(),
        value: Some(value.to_vec()),
        expected_version: Version(expected),
        owner_signature: None,
    };
    Case { case, m }
}

fn del(case: &'static str, key: &str, expected: u64) -> Case {
    let m = Mutation {
        key: key.as_bytes().to_vec(),
        value: None,
        expected_version: Version(expected),
        owner_signature: None,
    };
    Case { case, m }
}

fn signed(mut c: Case, signature: Vec<u8>) -> Case {
    c.m.owner_signature = Some(signature);
    c
}

/// A fixed 64-byte owner signature: carried and hashed, not verified (SPEC section 5.1).
fn owner_signature() -> Vec<u8> {
    (0..64u8).map(|i| 0xa0 ^ i).collect()
}

/// Epochs 1 to 4; epoch 4 is a heartbeat (no mutations).
fn scenario() -> Vec<Vec<Case>> {
    vec![epoch_1(), epoch_2(), epoch_3(), Vec::new()]
}

fn epoch_1() -> Vec<Case> {
    vec![
        put("create (expected_version 0)", "alice@example.com", b"pk-alice-1", 0),
        put("create", "bob@example.com", b"pk-bob-1", 0),
        put("second version of a key in the same epoch", "alice@example.com", b"pk-alice-2", 1),
        put("third version in the same epoch (v1 -> v2 -> v3)", "alice@example.com", b"pk-alice-3", 2),
        put("expected_version ahead of a never-set key: version_mismatch", "carol@example.com", b"pk-carol-2", 1),
        signed(put("create with a 64-byte owner signature", "carol@example.com", b"pk-carol-1", 0), owner_signature()),
        del("delete of a never-set key: nothing_to_delete", "dave@example.com", 0),
        put("stale expected_version: version_mismatch", "bob@example.com", b"pk-bob-stale", 0),
        put("exact copy of an applied mutation of this epoch: duplicate", "bob@example.com", b"pk-bob-1", 0),
        put("create, no owner signature", "grace@example.com", b"pk-grace-1", 0),
        signed(
            put(
                "the previous with an empty owner signature: another id, so version_mismatch",
                "grace@example.com",
                b"pk-grace-1",
                0,
            ),
            Vec::new(),
        ),
        put("UTF-8 (NFC) key, binary value", "jos\u{e9}@example.com", &(0..32u8).collect::<Vec<u8>>(), 0),
    ]
}

fn epoch_2() -> Vec<Case> {
    vec![
        del("delete", "bob@example.com", 1),
        del("delete of a key deleted earlier in this epoch: nothing_to_delete", "bob@example.com", 2),
        del("delete", "alice@example.com", 3),
        put(
            "re-create in the same epoch (expected_version = the tombstone's version)",
            "alice@example.com",
            b"pk-alice-5",
            4,
        ),
        put(
            "copy of a mutation applied in epoch 1: judged again, version_mismatch",
            "alice@example.com",
            b"pk-alice-2",
            1,
        ),
        put("copy of a mutation rejected in epoch 1: now applies", "carol@example.com", b"pk-carol-2", 1),
        put("expected_version ahead of a never-set key: version_mismatch", "erin@example.com", b"pk-erin-1", 1),
        put("create", "erin@example.com", b"pk-erin-0", 0),
        put(
            "copy of a rejected mutation of this epoch that would now apply: duplicate",
            "erin@example.com",
            b"pk-erin-1",
            1,
        ),
        signed(put("update with an empty owner signature", "grace@example.com", b"pk-grace-2", 1), Vec::new()),
    ]
}

fn epoch_3() -> Vec<Case> {
    vec![
        put("expected_version 0 on a deleted key: version_mismatch", "bob@example.com", b"pk-bob-2", 0),
        del("delete of a key deleted in an earlier epoch: nothing_to_delete", "bob@example.com", 2),
        put("re-create after delete (expected_version = the tombstone's version)", "bob@example.com", b"pk-bob-3", 2),
        put("empty value: a value, not a tombstone", "dave@example.com", b"", 0),
        del("delete of an empty value", "dave@example.com", 1),
        del("delete: the key ends the epoch as a tombstone leaf", "alice@example.com", 5),
        signed(del("delete with a 64-byte owner signature", "jos\u{e9}@example.com", 1), owner_signature()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Computing the vectors: what the directory's epoch job does, step by step.

/// A directory in memory: its map (at each of `SHARD_BITS`), its latest head and queue position.
struct Directory {
    suite: HashSuite,
    key: SigningKey,
    maps: Vec<Map<MemoryStore>>,
    /// The log of heads so far.
    log: keyfold_core::LogTree,
    head: Head,
    /// The next free queue position. Each epoch's marker takes the position after its mutations
    /// (the job appends it at the queue's end), so positions jump by one between epochs.
    next_position: u64,
    /// Every key with a leaf, by index (the map holds indexes; the vectors list keys too).
    keys: BTreeMap<Index, Vec<u8>>,
}

fn compute() -> Vectors {
    let about = "Keyfold epoch vectors: docs/SPEC.md section 8; checked by protocol/verify/tests/epoch_vectors.rs";
    Vectors { about: about.into(), suites: SUITES.into_iter().map(compute_suite).collect() }
}

fn compute_suite(suite: HashSuite) -> SuiteVectors {
    let (mut dir, genesis) = genesis(suite);
    let epochs = scenario().into_iter().map(|cases| run_epoch(&mut dir, cases)).collect();
    SuiteVectors {
        suite: suite.name().into(),
        origin: ORIGIN.into(),
        signing_key_seed: hex::encode(SIGNING_KEY_SEED),
        public_key: hex::encode(dir.key.verifying_key().to_bytes()),
        genesis,
        epochs,
    }
}

/// Epoch 0 as the job's `write_genesis` makes it: the empty map, zero `previous` and `archive`.
fn genesis(suite: HashSuite) -> (Directory, GenesisVector) {
    let maps: Vec<Map<MemoryStore>> =
        SHARD_BITS.iter().map(|&bits| Map::new(MemoryStore::new(TreeConfig::new(suite, bits).unwrap()))).collect();
    let head = Head {
        origin: ORIGIN.into(),
        suite,
        epoch: Epoch(0),
        root: maps[0].root(Epoch(0)).unwrap().hash,
        previous: Hash::default(),
        archive: Hash::default(),
        time_ms: GENESIS_TIME_MS,
        counts: HeadCounts::default(),
        next_key: None,
    };
    let key = SigningKey::from_bytes(&SIGNING_KEY_SEED);
    let mut log = keyfold_core::LogTree::new();
    log.push(head.leaf_hash());
    let log_root = log.root(1).unwrap();
    let vector = GenesisVector {
        time_ms: head.time_ms,
        map_root: head.root.to_hex(),
        head_body: head.body(),
        head_hash: head.hash().to_hex(),
        log_root: log_root.to_hex(),
        head_note: head.sign(&key, log_root),
    };
    (Directory { suite, key, maps, head, log, next_position: 1, keys: BTreeMap::new() }, vector)
}

/// Every leaf of the map's latest epoch, read from the map, ascending by index.
fn state(dir: &Directory) -> Vec<LeafVector> {
    let map = &dir.maps[0];
    let indexes: Vec<Index> = dir.keys.keys().copied().collect();
    let values = map.get_many(&indexes, map.latest_epoch().unwrap()).unwrap();
    indexes
        .iter()
        .zip(values)
        .map(|(index, value)| {
            let leaf = value.expect("a key once set keeps its leaf");
            LeafVector {
                key: hex::encode(&dir.keys[index]),
                index: index.to_hex(),
                version: leaf.version.0,
                version_epoch: leaf.epoch.0,
                previous: leaf.previous.to_hex(),
                value: leaf.value.as_ref().map(hex::encode),
                tombstone: leaf.value.is_none(),
                leaf_hash: dir.suite.leaf_hash_of(index, &leaf).to_hex(),
            }
        })
        .collect()
}

/// One epoch as `EpochJob::run` does it: ids and indexes, the touched keys' state at the previous
/// epoch read from the map, compare-and-set, the archive and its digest, the tree, the head.
fn run_epoch(dir: &mut Directory, cases: Vec<Case>) -> EpochVector {
    let (suite, previous_epoch) = (dir.suite, dir.head.epoch);
    let epoch = previous_epoch.next();
    let state_before = state(dir);
    let mut mutation_vectors = Vec::new();
    let mut mutations = Vec::new();
    for Case { case, m } in cases {
        let position = Position(dir.next_position);
        dir.next_position += 1;
        mutation_vectors.push(mutation_vector(suite, position, &m, case));
        mutations.push((position, m));
    }
    dir.next_position += 1; // the epoch's marker
    let hashed = hash_mutations(suite, &mutations);
    let current = read_touched(&dir.maps[0], &hashed, previous_epoch).unwrap();
    let applied = apply_mutations(suite, epoch, &current, &mutations, &hashed);
    for &source in &applied.update_sources {
        let key = &mutations[source as usize].1.key;
        dir.keys.insert(suite.index_of(key), key.clone());
    }
    let rows = archive_rows(mutations, &applied.outcomes);
    let archive = archive_digest(suite, &write_archive(&rows).unwrap());
    let mut updates = BTreeMap::new();
    for ((index, value), &source) in applied.updates.iter().zip(&applied.update_sources) {
        let leaf_hash = suite.leaf_hash_of(index, value);
        assert_eq!(Some(leaf_hash), rows[source as usize].leaf_hash, "an update's leaf is its source row's");
        updates.insert(index.to_hex(), leaf_hash.to_hex());
    }
    let root = write_tree(dir, previous_epoch, applied.updates);
    let head = Head {
        origin: ORIGIN.into(),
        suite,
        epoch,
        root,
        previous: dir.head.hash(),
        archive,
        time_ms: GENESIS_TIME_MS + epoch.0 * EPOCH_MS,
        counts: applied.counts,
        next_key: None,
    };
    dir.log.push(head.leaf_hash());
    let log_root = dir.log.root(dir.log.size()).unwrap();
    let vector = epoch_vector(&head, (&dir.key, log_root), state_before, mutation_vectors, &rows, updates);
    dir.head = head;
    vector
}

fn epoch_vector(
    head: &Head,
    (key, log_root): (&SigningKey, Hash),
    state_before: Vec<LeafVector>,
    mutations: Vec<MutationVector>,
    rows: &[ArchiveRow],
    updates: BTreeMap<String, String>,
) -> EpochVector {
    let c = head.counts;
    EpochVector {
        epoch: head.epoch.0,
        time_ms: head.time_ms,
        previous_head_hash: head.previous.to_hex(),
        state_before,
        mutations,
        outcomes: rows.iter().map(outcome_vector).collect(),
        updates,
        map_root: head.root.to_hex(),
        archive_digest: head.archive.to_hex(),
        counts: CountsVector {
            mutations: c.mutations,
            applied: c.applied,
            rejected: c.rejected,
            duplicates: c.duplicates,
        },
        head_body: head.body(),
        head_hash: head.hash().to_hex(),
        log_root: log_root.to_hex(),
        head_note: head.sign(key, log_root),
    }
}

fn mutation_vector(suite: HashSuite, position: Position, m: &Mutation, case: &str) -> MutationVector {
    MutationVector {
        position: position.0,
        case: case.into(),
        key: hex::encode(&m.key),
        key_index: suite.index_of(&m.key).to_hex(),
        value: m.value.as_ref().map(hex::encode),
        tombstone: m.value.is_none(),
        expected_version: m.expected_version.0,
        owner_signature: m.owner_signature.as_ref().map(hex::encode),
        mutation_encoding: hex::encode(m.encode()),
        mutation_id: m.id(suite).to_hex(),
    }
}

/// The outcome columns as archived: what a monitor compares.
fn outcome_vector(row: &ArchiveRow) -> OutcomeVector {
    OutcomeVector {
        position: row.position,
        outcome: row.outcome.as_str().into(),
        reason: row.reason.clone(),
        new_version: row.new_version,
        leaf_hash: row.leaf_hash.map(|h| h.to_hex()),
    }
}

/// As the job's `write_tree`: the batch is prepared on the previous epoch and verified from its own
/// records before it is committed. Every shard-bits variant must reach the same root.
fn write_tree(dir: &Directory, previous: Epoch, updates: Vec<(Index, LeafValue)>) -> Hash {
    let roots: Vec<Hash> = dir
        .maps
        .iter()
        .map(|map| {
            let batch = map.prepare_at(previous, updates.clone()).unwrap();
            batch.verify(dir.suite, map.store().config().shard_bits).unwrap();
            map.commit(&batch).unwrap().hash
        })
        .collect();
    assert!(roots.iter().all(|r| *r == roots[0]), "the map root depends on shard bits: {roots:?}");
    roots[0]
}

#[test]
fn epoch_vectors_match() {
    let computed = compute();
    let stored = stored();
    assert_eq!(stored.suites.len(), computed.suites.len(), "suite count changed");
    for (s, c) in stored.suites.iter().zip(&computed.suites) {
        assert_eq!(s.genesis, c.genesis, "{}: genesis differs", c.suite);
        assert_eq!(s.epochs.len(), c.epochs.len(), "{}: epoch count changed", c.suite);
        for (se, ce) in s.epochs.iter().zip(&c.epochs) {
            assert_eq!(se, ce, "{} epoch {}: the vector differs", c.suite, ce.epoch);
        }
    }
    assert_eq!(stored, computed);
    let text = std::fs::read_to_string(path()).unwrap();
    assert_eq!(text, pretty(&computed), "the file is exactly the pretty-printed vectors (no hand edits)");
    assert!(text.len() < 200_000, "the vectors stay small: {} bytes", text.len());
}

// ---------------------------------------------------------------------------------------------
// Checks of the stored file that do not use the code under test.

/// SPEC section 1 from the primitives (`blake3`, `sha2`), not through `keyfold-core`.
mod spec {
    use sha2::{Digest, Sha256};

    /// BLAKE3: keyed by `derive_key(context, "")` (SPEC section 1.1); SHA-256: `prefix || input`.
    fn hash(suite: &str, context: &str, prefix: u8, parts: &[&[u8]]) -> [u8; 32] {
        match suite {
            "blake3" => {
                let key = blake3::derive_key(context, b"");
                let mut h = blake3::Hasher::new_keyed(&key);
                for p in parts {
                    h.update(p);
                }
                *h.finalize().as_bytes()
            }
            "sha256" => {
                let mut h = Sha256::new();
                h.update([prefix]);
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
            other => panic!("unknown suite {other}"),
        }
    }

    /// RFC 6962 MTH over SHA-256: leaves `0x00 || data`, nodes `0x01 || left || right`, split at
    /// the largest power of two below the size.
    pub fn log_root(leaves: &[&[u8]]) -> [u8; 32] {
        let sha = |parts: &[&[u8]]| -> [u8; 32] {
            let mut h = Sha256::new();
            parts.iter().for_each(|p| h.update(p));
            h.finalize().into()
        };
        match leaves {
            [] => sha(&[]),
            [one] => sha(&[&[0x00], one]),
            _ => {
                let k = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
                sha(&[&[0x01], &log_root(&leaves[..k]), &log_root(&leaves[k..])])
            }
        }
    }

    pub fn index(suite: &str, key: &[u8]) -> [u8; 32] {
        hash(suite, "keyfold 2026-11 key index v1", 0x10, &[key])
    }

    /// A version's commitment (SPEC section 1.3): the entry binds the previous version's
    /// commitment, the epoch and the value; the commitment binds the version, the tag and the entry.
    pub fn commitment(suite: &str, version: u64, epoch: u64, previous: &[u8; 32], value: Option<&[u8]>) -> [u8; 32] {
        let (tag, bytes): (u8, &[u8]) = value.map_or((0x00, &[]), |v| (0x01, v));
        let entry_context = "keyfold 2026-12 version entry v2";
        let entry = hash(suite, entry_context, 0x15, &[previous, &epoch.to_be_bytes(), &[tag], bytes]);
        hash(suite, "keyfold 2026-12 version commitment v2", 0x11, &[&version.to_be_bytes(), &[tag], &entry])
    }

    pub fn leaf(suite: &str, index: &[u8; 32], commitment: &[u8; 32]) -> [u8; 32] {
        hash(suite, "keyfold 2026-11 map leaf v1", 0x00, &[index, commitment])
    }

    pub fn mutation_id(suite: &str, encoding: &[u8]) -> [u8; 32] {
        hash(suite, "keyfold 2026-11 mutation id v1", 0x12, &[encoding])
    }

    pub fn head(suite: &str, body: &str) -> [u8; 32] {
        hash(suite, "keyfold 2026-11 head v1", 0x13, &[body.as_bytes()])
    }

    /// The compressed tree's root (SPEC section 2) of `(index, leaf hash)` ascending by index:
    /// empty, the one leaf, or `node(left, right)` split on bit `depth`.
    pub fn root(suite: &str, leaves: &[([u8; 32], [u8; 32])], depth: usize) -> [u8; 32] {
        match leaves {
            [] => hash(suite, "keyfold 2026-11 map empty v1", 0x02, &[]),
            [(_, leaf)] => *leaf,
            _ => {
                let bit = |i: &[u8; 32]| i[depth / 8] >> (7 - depth % 8) & 1 == 1;
                let (left, right) = leaves.split_at(leaves.partition_point(|(i, _)| !bit(i)));
                let (l, r) = (root(suite, left, depth + 1), root(suite, right, depth + 1));
                hash(suite, "keyfold 2026-11 map node v1", 0x01, &[&l, &r])
            }
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    let bytes = hex::decode(s).unwrap_or_else(|e| panic!("{s:?} is not hex: {e}"));
    assert_eq!(hex::encode(&bytes), s, "hex is lowercase");
    bytes
}

fn unhex32(s: &str) -> [u8; 32] {
    unhex(s).try_into().expect("32 bytes")
}

/// A mutation decoded by hand from its canonical encoding (SPEC section 5.1).
#[derive(Debug, PartialEq)]
struct Decoded {
    key: Vec<u8>,
    expected_version: u64,
    value: Option<Vec<u8>>,
    owner_signature: Option<Vec<u8>>,
}

fn decode(mut bytes: &[u8]) -> Decoded {
    let mut take = |n: usize| -> Vec<u8> {
        let (head, rest) = bytes.split_at(n);
        bytes = rest;
        head.to_vec()
    };
    assert_eq!(take(1), [0x01], "format 1");
    let key_len = usize::from(u16::from_be_bytes(take(2).try_into().unwrap()));
    let key = take(key_len);
    let expected_version = u64::from_be_bytes(take(8).try_into().unwrap());
    let value = match take(1)[..] {
        [0x00] => None,
        [0x01] => {
            let len = u32::from_be_bytes(take(4).try_into().unwrap());
            Some(take(usize::try_from(len).unwrap()))
        }
        ref tag => panic!("value tag {tag:?}"),
    };
    let owner_signature = match take(1)[..] {
        [0x00] => None,
        [0x01] => {
            let len = u16::from_be_bytes(take(2).try_into().unwrap());
            Some(take(usize::from(len)))
        }
        ref tag => panic!("signature tag {tag:?}"),
    };
    assert!(bytes.is_empty(), "no trailing bytes");
    Decoded { key, expected_version, value, owner_signature }
}

#[test]
fn stored_mutations_decode_to_their_fields_and_ids() {
    let stored = stored();
    for s in &stored.suites {
        let mut positions = Vec::new();
        for m in s.epochs.iter().flat_map(|e| &e.mutations) {
            let decoded = decode(&unhex(&m.mutation_encoding));
            let fields = Decoded {
                key: unhex(&m.key),
                expected_version: m.expected_version,
                value: m.value.as_deref().map(unhex),
                owner_signature: m.owner_signature.as_deref().map(unhex),
            };
            assert_eq!(decoded, fields, "{} position {}: encoding and fields differ", s.suite, m.position);
            assert_eq!(m.tombstone, m.value.is_none());
            assert!(std::str::from_utf8(&fields.key).is_ok(), "keys are UTF-8 text (SPEC 5.2)");
            assert_eq!(unhex32(&m.mutation_id), spec::mutation_id(&s.suite, &unhex(&m.mutation_encoding)));
            assert_eq!(unhex32(&m.key_index), spec::index(&s.suite, &fields.key));
            positions.push(m.position);
        }
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}: queue positions increase", s.suite);
    }
}

/// A key's state in the reference loop: its version, the epoch that applied it, the commitment
/// of the version before and its value (hex; `None`: no value).
#[derive(Debug, Clone, PartialEq)]
struct KeyNow {
    version: u64,
    epoch: u64,
    previous: [u8; 32],
    value: Option<String>,
}

impl KeyNow {
    const NEVER_SET: KeyNow = KeyNow { version: 0, epoch: 0, previous: [0; 32], value: None };

    /// Its commitment: what the next version chains to (32 zero bytes for a key never set).
    fn commitment(&self, suite: &str) -> [u8; 32] {
        if self.version == 0 {
            return [0; 32];
        }
        let value = self.value.as_deref().map(unhex);
        spec::commitment(suite, self.version, self.epoch, &self.previous, value.as_deref())
    }
}

/// What the reference loop says of one mutation, and what it saw.
#[derive(Debug, Clone)]
struct Judged {
    outcome: &'static str,
    reason: Option<&'static str>,
    new_version: Option<u64>,
    /// The key's state when the mutation's turn came.
    before: KeyNow,
    /// Its state after, when applied.
    after: Option<KeyNow>,
    /// For a duplicate: the outcome of its first copy in the epoch.
    first_copy: Option<&'static str>,
}

/// SPEC section 5.4, rules 1 to 4 as written, one mutation after another; `state` (by key hex)
/// is the current state and is updated in place.
fn judge(suite: &str, epoch: u64, state: &mut BTreeMap<String, KeyNow>, mutations: &[MutationVector]) -> Vec<Judged> {
    let mut first_copies: BTreeMap<&str, &'static str> = BTreeMap::new();
    let mut out = Vec::new();
    for m in mutations {
        let before = state.get(&m.key).cloned().unwrap_or(KeyNow::NEVER_SET);
        let mut j =
            Judged { outcome: "applied", reason: None, new_version: None, before, after: None, first_copy: None };
        if let Some(&first) = first_copies.get(m.mutation_id.as_str()) {
            (j.outcome, j.first_copy) = ("duplicate", Some(first));
        } else if m.expected_version != j.before.version {
            (j.outcome, j.reason) = ("rejected", Some("version_mismatch"));
        } else if m.tombstone && j.before.value.is_none() {
            (j.outcome, j.reason) = ("rejected", Some("nothing_to_delete"));
        } else {
            j.new_version = Some(j.before.version + 1);
            let previous = j.before.commitment(suite);
            let after = KeyNow { version: j.before.version + 1, epoch, previous, value: m.value.clone() };
            state.insert(m.key.clone(), after.clone());
            j.after = Some(after);
        }
        first_copies.entry(&m.mutation_id).or_insert(j.outcome);
        out.push(j);
    }
    out
}

fn index_of_key(suite: &str, key_hex: &str) -> [u8; 32] {
    spec::index(suite, &unhex(key_hex))
}

fn leaf_of(suite: &str, key_hex: &str, now: &KeyNow) -> String {
    hex::encode(spec::leaf(suite, &index_of_key(suite, key_hex), &now.commitment(suite)))
}

/// The listing of the previous state is the reference state, ascending by index, with its leaves.
fn check_state_listing(suite: &str, state: &BTreeMap<String, KeyNow>, listing: &[LeafVector]) {
    assert!(listing.windows(2).all(|w| w[0].index < w[1].index), "state_before ascends by index");
    let now = |l: &LeafVector| KeyNow {
        version: l.version,
        epoch: l.version_epoch,
        previous: unhex32(&l.previous),
        value: l.value.clone(),
    };
    let listed: BTreeMap<String, KeyNow> = listing.iter().map(|l| (l.key.clone(), now(l))).collect();
    assert_eq!(&listed, state, "{suite}: state_before is the state the previous epochs left");
    for l in listing {
        assert_eq!(l.index, hex::encode(index_of_key(suite, &l.key)));
        assert_eq!(l.tombstone, l.value.is_none());
        assert_eq!(l.leaf_hash, leaf_of(suite, &l.key, &now(l)));
    }
}

fn check_outcomes(suite: &str, e: &EpochVector, judged: &[Judged]) {
    assert_eq!(e.outcomes.len(), e.mutations.len(), "one outcome per mutation");
    for ((m, o), j) in e.mutations.iter().zip(&e.outcomes).zip(judged) {
        let at = format!("{suite} epoch {} position {}", e.epoch, m.position);
        assert_eq!(o.position, m.position, "{at}");
        assert_eq!(
            (o.outcome.as_str(), o.reason.as_deref(), o.new_version),
            (j.outcome, j.reason, j.new_version),
            "{at}"
        );
        let leaf = j.after.as_ref().map(|after| leaf_of(suite, &m.key, after));
        assert_eq!(o.leaf_hash, leaf, "{at}: leaf hash");
    }
    let count = |outcome: &str| judged.iter().filter(|j| j.outcome == outcome).count() as u64;
    let c = e.counts;
    assert_eq!(c.mutations, e.mutations.len() as u64);
    assert_eq!((c.applied, c.rejected, c.duplicates), (count("applied"), count("rejected"), count("duplicate")));
    assert_eq!(c.applied + c.rejected + c.duplicates, c.mutations, "counts add up");
}

/// The updates are the final leaves of the keys with an applied mutation; the root is the naive
/// root of every leaf after the epoch.
fn check_updates_and_root(suite: &str, e: &EpochVector, judged: &[Judged], state: &BTreeMap<String, KeyNow>) {
    let changed: BTreeSet<&String> =
        e.mutations.iter().zip(judged).filter(|(_, j)| j.outcome == "applied").map(|(m, _)| &m.key).collect();
    let updates: BTreeMap<String, String> = changed
        .into_iter()
        .map(|key| {
            let now = &state[key];
            (hex::encode(index_of_key(suite, key)), leaf_of(suite, key, now))
        })
        .collect();
    assert_eq!(e.updates, updates, "{suite} epoch {}: updates", e.epoch);
    let mut leaves: Vec<([u8; 32], [u8; 32])> =
        state.iter().map(|(key, now)| (index_of_key(suite, key), unhex32(&leaf_of(suite, key, now)))).collect();
    leaves.sort();
    assert_eq!(e.map_root, hex::encode(spec::root(suite, &leaves, 0)), "{suite} epoch {}: map root", e.epoch);
}

#[test]
fn stored_outcomes_follow_the_compare_and_set_rules() {
    for s in &stored().suites {
        let suite = s.suite.as_str();
        assert_eq!(s.genesis.map_root, hex::encode(spec::root(suite, &[], 0)), "genesis is the empty map");
        let mut state = BTreeMap::new();
        for e in &s.epochs {
            check_state_listing(suite, &state, &e.state_before);
            let judged = judge(suite, e.epoch, &mut state, &e.mutations);
            check_outcomes(suite, e, &judged);
            check_updates_and_root(suite, e, &judged, &state);
        }
    }
}

/// SPEC section 6.1, written out.
fn body(s: &SuiteVectors, epoch: u64, hashes: [&str; 3], time_ms: u64, c: CountsVector) -> String {
    let [root, previous, archive] = hashes.map(|h| B64.encode(unhex(h)));
    format!(
        "{}\nkeyfold map v1 {}\nepoch {epoch}\nroot {root}\nprevious {previous}\narchive {archive}\ntime {time_ms}\n\
         mutations {} applied {} rejected {} duplicates {}\n",
        s.origin, s.suite, c.mutations, c.applied, c.rejected, c.duplicates
    )
}

/// The head hash from the primitives, and the note: the checkpoint of the log of heads (origin,
/// size, base64 root, the body after its origin line), a blank line, the directory's signature
/// line, verifying with the public key.
fn check_head(s: &SuiteVectors, (body, hash): (&str, &str), (size, log_root): (u64, &str), note: &str) {
    assert_eq!(unhex32(hash), spec::head(&s.suite, body), "{}: head hash", s.suite);
    let root = B64.encode(unhex32(log_root));
    let extension = body.split_once('\n').unwrap().1;
    let checkpoint = format!("{}\n{size}\n{root}\n{extension}", s.origin);
    assert!(note.starts_with(&format!("{checkpoint}\n\u{2014} {} ", s.origin)), "{}: note {note:?}", s.suite);
    verify_head_note(note, &s.origin, &unhex32(&s.public_key)).unwrap();
}

#[test]
fn stored_heads_chain_and_verify() {
    for s in &stored().suites {
        let seed = unhex32(&s.signing_key_seed);
        assert_eq!(s.public_key, hex::encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes()));
        let (g, zero) = (&s.genesis, hex::encode([0u8; 32]));
        let none = CountsVector { mutations: 0, applied: 0, rejected: 0, duplicates: 0 };
        assert_eq!(g.head_body, body(s, 0, [&g.map_root, &zero, &zero], g.time_ms, none));
        let mut bodies = vec![g.head_body.as_bytes()];
        assert_eq!(unhex32(&g.log_root), spec::log_root(&bodies), "{}: log root of size 1", s.suite);
        check_head(s, (&g.head_body, &g.head_hash), (1, &g.log_root), &g.head_note);
        let (mut previous_hash, mut previous_time) = (&g.head_hash, g.time_ms);
        for (e, number) in s.epochs.iter().zip(1..) {
            assert_eq!(e.epoch, number, "epochs follow genesis one by one");
            assert_eq!(&e.previous_head_hash, previous_hash, "{} epoch {}: chain link", s.suite, e.epoch);
            assert!(e.time_ms > previous_time, "epoch times increase");
            let hashes = [e.map_root.as_str(), &e.previous_head_hash, &e.archive_digest];
            assert_eq!(e.head_body, body(s, e.epoch, hashes, e.time_ms, e.counts));
            bodies.push(e.head_body.as_bytes());
            assert_eq!(unhex32(&e.log_root), spec::log_root(&bodies), "{} epoch {}: log root", s.suite, e.epoch);
            check_head(s, (&e.head_body, &e.head_hash), (e.epoch + 1, &e.log_root), &e.head_note);
            (previous_hash, previous_time) = (&e.head_hash, e.time_ms);
        }
    }
}

/// The archive rows an epoch's vector describes (SPEC section 7.2).
fn archived_rows(e: &EpochVector) -> Vec<ArchiveRow> {
    let outcome = |o: &str| match o {
        "applied" => ArchiveOutcome::Applied,
        "rejected" => ArchiveOutcome::Rejected,
        "duplicate" => ArchiveOutcome::Duplicate,
        other => panic!("unknown outcome {other:?}"),
    };
    let hash = |h: &str| Hash(unhex32(h));
    e.mutations
        .iter()
        .zip(&e.outcomes)
        .map(|(m, o)| ArchiveRow {
            position: m.position,
            mutation_id: hash(&m.mutation_id),
            key_index: Some(hash(&m.key_index)),
            key: Some(unhex(&m.key)),
            value: m.value.as_deref().map(unhex),
            tombstone: m.tombstone,
            owner_signature: m.owner_signature.as_deref().map(unhex),
            expected_version: m.expected_version,
            new_version: o.new_version,
            outcome: outcome(&o.outcome),
            reason: o.reason.clone(),
            leaf_hash: o.leaf_hash.as_deref().map(hash),
        })
        .collect()
}

/// The stored epochs, as archives of their rows and their signed notes, pass a monitor's replay
/// from the genesis head: the chain, digests, outcomes, counts and roots all agree.
#[test]
fn stored_epochs_replay_as_a_monitor_would() {
    for s in &stored().suites {
        let suite = HashSuite::from_name(&s.suite).unwrap();
        let public = unhex32(&s.public_key);
        let mut replayer = Replayer::from_genesis(&s.genesis.head_note, &s.origin, &public, SHARD_BITS[0]).unwrap();
        for e in &s.epochs {
            let file = write_archive(&archived_rows(e)).unwrap();
            assert_eq!(
                archive_digest(suite, &file).to_hex(),
                e.archive_digest,
                "{} epoch {}: archive",
                s.suite,
                e.epoch
            );
            let head = replayer
                .replay(&e.head_note, bytes::Bytes::from(file))
                .unwrap_or_else(|d| panic!("{} epoch {}: {d}", s.suite, e.epoch));
            assert_eq!(head.body(), e.head_body);
        }
    }
}

/// A replayer saved after any epoch and resumed from the state's bytes replays the rest exactly as
/// the one that never stopped; the resumed replica holds the saved epoch.
#[test]
fn stored_epochs_resume_from_a_state_saved_after_any_epoch() {
    for s in &stored().suites {
        let public = unhex32(&s.public_key);
        let archives: Vec<bytes::Bytes> =
            s.epochs.iter().map(|e| bytes::Bytes::from(write_archive(&archived_rows(e)).unwrap())).collect();
        for stop in 0..=s.epochs.len() {
            let mut replayer = Replayer::from_genesis(&s.genesis.head_note, &s.origin, &public, SHARD_BITS[0]).unwrap();
            for (e, archive) in s.epochs[..stop].iter().zip(&archives) {
                replayer.replay(&e.head_note, archive.clone()).unwrap();
            }
            let bytes = replayer.snapshot().unwrap().encode();
            let state = ReplicaState::decode(&bytes).unwrap();
            let mut resumed = Replayer::resume(state, &s.origin, &public, SHARD_BITS[1]).unwrap();
            assert_eq!(resumed.head(), replayer.head(), "{} resumed after {stop} epochs", s.suite);
            let at = resumed.replica_epoch(resumed.head().epoch).unwrap();
            assert_eq!(resumed.map().root(at).unwrap().hash, resumed.head().root);
            for (e, archive) in s.epochs[stop..].iter().zip(&archives[stop..]) {
                let head = resumed.replay(&e.head_note, archive.clone()).unwrap_or_else(|d| panic!("{d}"));
                assert_eq!(head.body(), e.head_body);
            }
        }
    }
}

/// A saved state is checked, not trusted: a changed value, a changed log peak or a checkpoint
/// signed by another key is refused at resume, each with its own error.
#[test]
fn a_changed_state_is_refused_at_resume() {
    let s = &stored().suites[0];
    let public = unhex32(&s.public_key);
    let mut replayer = Replayer::from_genesis(&s.genesis.head_note, &s.origin, &public, SHARD_BITS[0]).unwrap();
    for e in &s.epochs {
        replayer.replay(&e.head_note, bytes::Bytes::from(write_archive(&archived_rows(e)).unwrap())).unwrap();
    }
    let state = replayer.snapshot().unwrap();
    let resume = |state: ReplicaState| Replayer::resume(state, &s.origin, &public, SHARD_BITS[0]).map(|_| ());
    resume(state.clone()).unwrap();

    let mut changed = state.clone();
    let (_, leaf) = changed.leaves.iter_mut().find(|(_, leaf)| leaf.value.is_some()).unwrap();
    leaf.value.as_mut().unwrap()[0] ^= 1;
    assert!(matches!(resume(changed), Err(ResumeError::MapRoot { .. })));
    let mut changed = state.clone();
    changed.leaves.pop();
    assert!(matches!(resume(changed), Err(ResumeError::MapRoot { .. })));

    let mut peaks = state.log.peaks().to_vec();
    peaks[0].0[0] ^= 1;
    let changed = ReplicaState { log: Frontier::from_peaks(state.log.size(), peaks).unwrap(), ..state.clone() };
    assert!(matches!(resume(changed), Err(ResumeError::LogRoot { .. })));

    let other = Replayer::resume(state.clone(), &s.origin, &[9; 32], SHARD_BITS[0]).map(|_| ());
    assert!(matches!(other, Err(ResumeError::Checkpoint(_))));
}

/// The cases the scenario is there for (the task that added it, and SPEC 5.4's consequences).
const COVERED: [&str; 18] = [
    "applied",
    "delete",
    "re-create after delete",
    "expected_version 0 on a deleted key",
    "stale expected_version",
    "expected_version ahead of the key",
    "delete of a never-set key",
    "delete of a deleted key",
    "duplicate of an applied first copy",
    "duplicate of a rejected first copy",
    "duplicate that would now apply",
    "v1 -> v2 -> v3 in one epoch",
    "owner signature",
    "empty owner signature",
    "empty value",
    "copy of an earlier epoch's mutation: applied, then rejected",
    "copy of an earlier epoch's mutation: rejected, then applied",
    "heartbeat epoch",
];

/// The cases one mutation exercises, from what the reference loop saw.
fn cases_of(m: &MutationVector, j: &Judged, earlier: Option<&str>) -> Vec<&'static str> {
    let deleted = j.before.version > 0 && j.before.value.is_none();
    let mismatch = j.reason == Some("version_mismatch");
    let mut found = Vec::new();
    let mut flag = |yes: bool, case: &'static str| {
        if yes {
            found.push(case);
        }
    };
    flag(j.outcome == "applied", "applied");
    flag(j.outcome == "applied" && m.tombstone, "delete");
    flag(j.outcome == "applied" && !m.tombstone && deleted, "re-create after delete");
    flag(mismatch && m.expected_version == 0 && deleted, "expected_version 0 on a deleted key");
    flag(mismatch && m.expected_version < j.before.version && j.before.value.is_some(), "stale expected_version");
    flag(mismatch && m.expected_version > j.before.version, "expected_version ahead of the key");
    flag(j.reason == Some("nothing_to_delete") && j.before.version == 0, "delete of a never-set key");
    flag(j.reason == Some("nothing_to_delete") && deleted, "delete of a deleted key");
    flag(j.first_copy == Some("applied"), "duplicate of an applied first copy");
    flag(j.first_copy == Some("rejected"), "duplicate of a rejected first copy");
    flag(j.first_copy.is_some() && m.expected_version == j.before.version, "duplicate that would now apply");
    flag(m.owner_signature.as_deref().is_some_and(|s| !s.is_empty()), "owner signature");
    flag(m.owner_signature.as_deref() == Some(""), "empty owner signature");
    flag(m.value.as_deref() == Some(""), "empty value");
    let stale_copy = earlier == Some("applied") && j.outcome == "rejected";
    flag(stale_copy, "copy of an earlier epoch's mutation: applied, then rejected");
    let fresh_copy = earlier == Some("rejected") && j.outcome == "applied";
    flag(fresh_copy, "copy of an earlier epoch's mutation: rejected, then applied");
    found
}

#[test]
fn stored_vectors_cover_every_case() {
    for s in &stored().suites {
        let (mut found, mut state) = (BTreeSet::new(), BTreeMap::new());
        let mut earlier: BTreeMap<String, &'static str> = BTreeMap::new();
        for e in &s.epochs {
            let judged = judge(&s.suite, e.epoch, &mut state, &e.mutations);
            for (m, j) in e.mutations.iter().zip(&judged) {
                found.extend(cases_of(m, j, earlier.get(&m.mutation_id).copied()));
            }
            let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for (m, j) in e.mutations.iter().zip(&judged) {
                versions.entry(&m.key).or_default().extend(j.new_version);
                earlier.entry(m.mutation_id.clone()).or_insert(j.outcome);
            }
            if versions.values().any(|v| v.starts_with(&[1, 2, 3])) {
                found.insert("v1 -> v2 -> v3 in one epoch");
            }
            if e.mutations.is_empty() {
                found.insert("heartbeat epoch");
            }
        }
        assert_eq!(found, BTreeSet::from(COVERED), "{}: the cases the vectors exercise", s.suite);
    }
}
