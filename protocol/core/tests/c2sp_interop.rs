//! Keyfold against an independent implementation of the same formats: Cloudflare's `signed_note`
//! and `tlog_tiles` crates (Rust ports of Go's golang.org/x/mod/sumdb note and tlog). Every expected
//! value comes from those crates, or from code written here from the C2SP text; none from Keyfold.
//!
//! * signed notes and verifier keys (C2SP signed-note): the golden `head_note` vectors and live
//!   Keyfold signatures verify with `signed_note`, and `signed_note` signs the same bytes;
//! * cosignatures (C2SP tlog-cosignature): a `signed_note::Verifier` for cosignature/v1 written here;
//! * checkpoints (C2SP tlog-checkpoint): `tlog_tiles::Checkpoint` parses and writes the same text;
//! * the RFC 6962 log: roots, inclusion and consistency proofs against `tlog_tiles`' own hash
//!   storage and provers, and each side's proofs accepted by the other's checker;
//! * tiles (C2SP tlog-tiles): hash tile bytes and entry bundles against `tlog_tiles`' tiles.
//!
//! One difference is by design: tlog_tiles 0.2 writes Go sumdb tile paths, which name the tile
//! height (`tile/8/0/x001/067`, data tiles `tile/8/data/...`). C2SP tlog-tiles fixes the height at 8
//! and leaves it out (`tile/0/x001/067`, entry bundles `tile/entries/...`). The tile checks map one
//! form to the other explicitly, and check that Keyfold refuses the height-prefixed form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::tiles::{TilePath, entry_bundle};
use keyfold_core::{LogTree, SigningKey, VerifyingKey, log};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use signed_note::{Note, StandardSigner, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::{
    Hash as TlogHash, HashReader, Tile, check_record, check_tree, prove_record, prove_tree, record_hash,
    stored_hash_count, stored_hash_index, stored_hashes, tree_hash,
};

const ORIGIN: &str = "example.com/keyfold";
const WITNESS: &str = "witness.example";
const WITNESS_TIME_SECS: u64 = 1_763_900_100;
const SUITES: [&str; 2] = ["blake3", "sha256"];

#[derive(Deserialize)]
struct Vector {
    name: String,
    suite: String,
    input: String,
    output: String,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("vectors/golden.json")).expect("golden.json parses")
}

/// The one golden vector `name` of `suite` whose input contains `input`.
fn golden(suite: &str, name: &str, input: &str) -> String {
    let found: Vec<Vector> =
        vectors().into_iter().filter(|v| v.suite == suite && v.name == name && v.input.contains(input)).collect();
    assert_eq!(found.len(), 1, "exactly one golden vector {name} ({suite}) with input containing {input:?}");
    found.into_iter().next().map(|v| v.output).unwrap_or_default()
}

fn flip_byte(text: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = text.to_vec();
    bytes[at] ^= 0x01;
    bytes
}

/// `signed_note`'s verdict on a note: the names of the verified signatures, or its error.
fn verified_names(note: &[u8], verifiers: Vec<Box<dyn Verifier>>) -> Result<Vec<String>, signed_note::NoteError> {
    let (verified, _) = Note::from_bytes(note)?.verify(&VerifierList::new(verifiers))?;
    Ok(verified.iter().map(|s| s.name().to_owned()).collect())
}

fn standard_verifier(vkey: &str) -> Box<dyn Verifier> {
    Box::new(StandardVerifier::new(vkey).expect("signed_note parses the verifier key"))
}

/// A `signed_note` signer key (`PRIVATE+KEY+name+id+base64(0x01 || seed)`) for an ed25519 seed.
fn signer_key(name: &str, seed: [u8; 32]) -> String {
    let public = SigningKey::from_bytes(&seed).verifying_key();
    let id = signed_note::key_id(name, &[&[0x01], public.as_bytes().as_slice()].concat());
    format!("PRIVATE+KEY+{name}+{id:08x}+{}", B64.encode([&[0x01], seed.as_slice()].concat()))
}

#[test]
fn golden_head_notes_verify_with_signed_note() {
    let seven = SigningKey::from_bytes(&[7; 32]).verifying_key();
    for suite in SUITES {
        let note = golden(suite, "head_note", "");
        let vkey = golden(suite, "vkey", "");
        assert_eq!(vkey, signed_note::new_ed25519_verifier_key(ORIGIN, &seven), "{suite}: vkey");
        let names = verified_names(note.as_bytes(), vec![standard_verifier(&vkey)]);
        assert_eq!(names.expect("the golden head note verifies with signed_note"), [ORIGIN], "{suite}");
        let parsed = Note::from_bytes(note.as_bytes()).unwrap();
        assert_eq!(parsed.text(), golden(suite, "checkpoint_text", "").as_bytes(), "{suite}: note text");
        let text_len = parsed.text().len();
        for at in 0..text_len {
            let flipped = flip_byte(note.as_bytes(), at);
            let verdict = verified_names(&flipped, vec![standard_verifier(&vkey)]);
            assert!(verdict.is_err(), "{suite}: byte {at} of the text flipped still verifies");
        }
        // ed25519 is deterministic: signed_note signing the same text with the same key writes the
        // same note, byte for byte.
        let signer = StandardSigner::new(&signer_key(ORIGIN, [7; 32])).expect("signer key");
        let mut theirs = Note::new(parsed.text(), &[]).unwrap();
        theirs.add_sigs(&[&signer]).unwrap();
        assert_eq!(String::from_utf8(theirs.to_bytes()).unwrap(), note, "{suite}: signed_note signs other bytes");
    }
}

/// A live checkpoint, so a change to the code (not only to golden.json) meets signed_note too.
#[test]
fn live_checkpoints_and_vkeys_interoperate_with_signed_note() {
    let key = SigningKey::from_bytes(&[21; 32]);
    let root = keyfold_core::Hash(Sha256::digest(b"some log").into());
    let checkpoint = keyfold_core::Checkpoint {
        origin: ORIGIN.into(),
        size: 1_000_001,
        root,
        extension: "line one\nline 2\n".into(),
    };
    let vkey = keyfold_core::vkey(ORIGIN, &key.verifying_key());
    assert_eq!(vkey, signed_note::new_ed25519_verifier_key(ORIGIN, &key.verifying_key()));
    let note = checkpoint.sign(&key);
    assert_eq!(verified_names(note.as_bytes(), vec![standard_verifier(&vkey)]).unwrap(), [ORIGIN]);
    let mut theirs = Note::new(checkpoint.text().as_bytes(), &[]).unwrap();
    theirs.add_sigs(&[&StandardSigner::new(&signer_key(ORIGIN, [21; 32])).unwrap()]).unwrap();
    assert_eq!(String::from_utf8(theirs.to_bytes()).unwrap(), note);
    // Keyfold's verifier accepts what signed_note signs.
    let ours = keyfold_core::verify_note_signature(&note, ORIGIN, key.verifying_key().as_bytes()).unwrap();
    assert_eq!(ours, checkpoint.text());
}

#[test]
fn golden_checkpoint_texts_parse_with_tlog_tiles() {
    for suite in SUITES {
        let text = golden(suite, "checkpoint_text", "");
        let theirs = tlog_tiles::Checkpoint::from_bytes(text.as_bytes()).expect("tlog_tiles parses the checkpoint");
        assert_eq!((theirs.origin(), theirs.size()), (ORIGIN, 8), "{suite}");
        assert_eq!(hex::encode(theirs.hash().0), golden(suite, "log_root", "size 8"), "{suite}: root");
        let ours = keyfold_core::Checkpoint::parse(&text).unwrap();
        assert_eq!(theirs.extension(), ours.extension, "{suite}: extension lines");
        assert_eq!(theirs.to_bytes(), text.as_bytes(), "{suite}: tlog_tiles writes other bytes");
        let live = keyfold_core::Checkpoint { size: 8, root: keyfold_core::Hash(theirs.hash().0), ..ours };
        assert_eq!(live.text(), text, "{suite}: Keyfold writes the text tlog_tiles read");
    }
}

/// The golden log of 8 map heads, rebuilt from the golden head_body (epoch 7) by editing its epoch
/// line, and hashed by tlog_tiles: its roots are the golden log_root vectors.
#[test]
fn golden_log_roots_match_tlog_tiles() {
    for suite in SUITES {
        let body = golden(suite, "head_body", "");
        assert!(body.contains("\nepoch 7\n"), "{suite}");
        let data: Vec<Vec<u8>> =
            (0..8).map(|i| body.replacen("\nepoch 7\n", &format!("\nepoch {i}\n"), 1).into_bytes()).collect();
        let stored = tlog_stored(&data);
        for size in [3u64, 8] {
            let root = tree_hash(size, &Stored(&stored)).unwrap();
            assert_eq!(hex::encode(root.0), golden(suite, "log_root", &format!("size {size}")), "{suite} size {size}");
        }
    }
}

/// C2SP tlog-cosignature, cosignature/v1, written here from the spec: the key id is the first 4
/// bytes of SHA-256(name || "\n" || 0x04 || public key); the signature is time (8 bytes, big-endian)
/// || ed25519 over "cosignature/v1\ntime <time>\n" || the note text.
struct CosignatureV1 {
    name: String,
    key: VerifyingKey,
    signing: Option<SigningKey>,
    time_secs: u64,
}

impl CosignatureV1 {
    fn message(time_secs: u64, text: &[u8]) -> Vec<u8> {
        [format!("cosignature/v1\ntime {time_secs}\n").as_bytes(), text].concat()
    }
}

impl Verifier for CosignatureV1 {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        let hash = Sha256::new().chain_update(&self.name).chain_update(b"\n\x04").chain_update(self.key.as_bytes());
        u32::from_be_bytes(hash.finalize()[..4].try_into().expect("4 bytes"))
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, signature)) = sig.split_first_chunk::<8>() else { return false };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else { return false };
        self.key.verify_strict(&Self::message(u64::from_be_bytes(*time), msg), &signature).is_ok()
    }
}

impl signed_note::Signer for CosignatureV1 {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        Verifier::key_id(self)
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        use ed25519_dalek::Signer as _;
        let key = self.signing.as_ref().ok_or_else(ed25519_dalek::SignatureError::new)?;
        let signature = key.sign(&Self::message(self.time_secs, msg));
        Ok([self.time_secs.to_be_bytes().as_slice(), &signature.to_bytes()].concat())
    }
}

fn witness(seed: u8, time_secs: u64) -> CosignatureV1 {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    CosignatureV1 { name: WITNESS.into(), key: signing.verifying_key(), signing: Some(signing), time_secs }
}

#[test]
fn golden_cosignatures_verify_as_cosignature_v1() {
    for suite in SUITES {
        let note = golden(suite, "head_note", "");
        let line = golden(suite, "cosignature_line", "");
        let served = format!("{note}{line}");
        let vkey = golden(suite, "vkey", "");
        let both = || -> Vec<Box<dyn Verifier>> { vec![standard_verifier(&vkey), Box::new(witness(9, 0))] };
        assert_eq!(verified_names(served.as_bytes(), both()).unwrap(), [ORIGIN, WITNESS], "{suite}");
        let only_witness = verified_names(served.as_bytes(), vec![Box::new(witness(9, 0))]);
        assert_eq!(only_witness.unwrap(), [WITNESS], "{suite}");
        let impostor = verified_names(served.as_bytes(), vec![Box::new(witness(10, 0))]);
        assert!(impostor.is_err(), "{suite}: another witness key verifies");
        for at in 0..Note::from_bytes(note.as_bytes()).unwrap().text().len() {
            let flipped = flip_byte(served.as_bytes(), at);
            let verdict = verified_names(&flipped, vec![Box::new(witness(9, 0))]);
            assert!(verdict.is_err(), "{suite}: byte {at} of the text flipped still verifies the cosignature");
        }
        // The witness signs with the signer written here: the same line, byte for byte.
        let mut theirs = Note::from_bytes(note.as_bytes()).unwrap();
        theirs.add_sigs(&[&witness(9, WITNESS_TIME_SECS)]).unwrap();
        assert_eq!(String::from_utf8(theirs.to_bytes()).unwrap(), served, "{suite}: another cosignature line");
    }
}

#[test]
fn live_cosignatures_interoperate_with_cosignature_v1() {
    let key = SigningKey::from_bytes(&[22; 32]);
    let checkpoint = keyfold_core::Checkpoint {
        origin: ORIGIN.into(),
        size: 5,
        root: keyfold_core::Hash([5; 32]),
        extension: String::new(),
    };
    let note = checkpoint.sign(&key);
    let witness_key = SigningKey::from_bytes(&[23; 32]);
    let line = keyfold_core::cosign(&note, WITNESS, &witness_key, 1_800_000_000).unwrap();
    let served = format!("{note}{line}");
    let verifier = witness(23, 0);
    assert_eq!(verified_names(served.as_bytes(), vec![Box::new(verifier)]).unwrap(), [WITNESS]);
    // Keyfold's cosignature check accepts what the signer written here signs.
    let mut theirs = Note::from_bytes(note.as_bytes()).unwrap();
    theirs.add_sigs(&[&witness(23, 1_700_000_123)]).unwrap();
    let theirs = String::from_utf8(theirs.to_bytes()).unwrap();
    let policy = keyfold_core::Witness { name: WITNESS.into(), public_key: witness_key.verifying_key().to_bytes() };
    assert_eq!(keyfold_core::verify_cosignature(&theirs, &policy).unwrap(), 1_700_000_123);
}

/// tlog_tiles' hash storage (Crosby-Wallach order, what `stored_hashes` writes) as its `HashReader`.
struct Stored<'a>(&'a [TlogHash]);

impl HashReader for Stored<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TlogHash>, tlog_tiles::Error> {
        let get = |i: &u64| usize::try_from(*i).ok().and_then(|i| self.0.get(i)).copied();
        indexes.iter().map(|i| get(i).ok_or(tlog_tiles::Error::IndexesNotInTree)).collect()
    }
}

/// Every stored hash of the log of `data`, computed by tlog_tiles alone.
fn tlog_stored(data: &[Vec<u8>]) -> Vec<TlogHash> {
    let mut stored: Vec<TlogHash> = Vec::new();
    for (n, record) in (0u64..).zip(data) {
        assert_eq!(stored.len() as u64, stored_hash_index(0, n));
        let new = stored_hashes(n, record, &Stored(&stored)).expect("tlog_tiles stores the record");
        stored.extend(new);
    }
    assert_eq!(stored.len() as u64, stored_hash_count(data.len() as u64));
    stored
}

/// Deterministic records of varied lengths: some empty, some over 255 bytes (both length bytes of
/// an entry bundle matter).
fn records(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| i.to_le_bytes().iter().copied().cycle().take(usize::try_from((i * 37) % 700).unwrap()).collect())
        .collect()
}

fn theirs(h: &keyfold_core::Hash) -> TlogHash {
    TlogHash(h.0)
}

fn theirs_all(hs: &[keyfold_core::Hash]) -> Vec<TlogHash> {
    hs.iter().map(theirs).collect()
}

fn keyfold_tree(data: &[Vec<u8>]) -> LogTree {
    let mut tree = LogTree::new();
    data.iter().for_each(|d| tree.push(log::leaf_hash(d)));
    tree
}

/// Keyfold's inclusion proof of `index` in the first `size` leaves is tlog_tiles' `prove_record`,
/// and `check_record` accepts it (and refuses it with one byte changed).
fn check_inclusion(tree: &LogTree, stored: &[TlogHash], data: &[Vec<u8>], index: u64, size: u64) {
    let ours = theirs_all(&tree.inclusion_proof(index, size).unwrap());
    let expected = prove_record(size, index, &Stored(stored)).unwrap();
    assert_eq!(ours, expected, "inclusion proof of {index} in size {size}");
    let root = theirs(&tree.root(size).unwrap());
    let leaf = record_hash(&data[usize::try_from(index).unwrap()]);
    check_record(&ours, size, root, index, leaf).unwrap_or_else(|e| panic!("check_record {index} in {size}: {e}"));
    if let Some(first) = ours.first() {
        let mut tampered = ours.clone();
        tampered[0] = TlogHash(flip_byte(&first.0, 31).try_into().unwrap());
        assert!(check_record(&tampered, size, root, index, leaf).is_err(), "tampered proof {index} in {size}");
    }
}

/// Keyfold's consistency proof between sizes `old` and `new` is tlog_tiles' `prove_tree`, and
/// `check_tree` accepts it (and refuses it with one byte changed).
fn check_consistency(tree: &LogTree, stored: &[TlogHash], old: u64, new: u64) {
    let ours = theirs_all(&tree.consistency_proof(old, new).unwrap());
    let expected = prove_tree(new, old, &Stored(stored)).unwrap();
    assert_eq!(ours, expected, "consistency proof from {old} to {new}");
    let (old_root, new_root) = (theirs(&tree.root(old).unwrap()), theirs(&tree.root(new).unwrap()));
    check_tree(&ours, new, new_root, old, old_root).unwrap_or_else(|e| panic!("check_tree {old} to {new}: {e}"));
    if let Some(last) = ours.last() {
        let mut tampered = ours.clone();
        *tampered.last_mut().unwrap() = TlogHash(flip_byte(&last.0, 0).try_into().unwrap());
        assert!(check_tree(&tampered, new, new_root, old, old_root).is_err(), "tampered proof {old} to {new}");
    }
}

/// Sizes that cross a subtree or tile boundary near `size`, and some random ones up to it.
fn interesting_sizes(size: u64, rng: &mut ChaCha8Rng, random: usize) -> Vec<u64> {
    let mut sizes: Vec<u64> = (0..17).flat_map(|k| [(1u64 << k) - 1, 1 << k, (1 << k) + 1]).collect();
    sizes.extend([size - 1, size]);
    sizes.extend((0..random).map(|_| rng.random_range(1..=size)));
    sizes.retain(|s| (1..=size).contains(s));
    sizes
}

#[test]
fn log_roots_and_proofs_match_tlog_tiles() {
    let all = records(70_000);
    let stored = tlog_stored(&all);
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b66_0015);
    for size in [1u64, 2, 7, 256, 257, 600, 70_000] {
        let data = &all[..usize::try_from(size).unwrap()];
        let tree = keyfold_tree(data);
        for k in interesting_sizes(size, &mut rng, 200).into_iter().chain([0]) {
            let expected = tree_hash(k, &Stored(&stored)).unwrap();
            assert_eq!(theirs(&tree.root(k).unwrap()), expected, "root of size {k} (log of {size})");
        }
        // Every index and every pair for the small logs; a seeded sample for the others.
        let indices: Vec<u64> =
            if size <= 257 { (0..size).collect() } else { (0..2_000).map(|_| rng.random_range(0..size)).collect() };
        for index in indices {
            let at = rng.random_range(index + 1..=size);
            check_inclusion(&tree, &stored, data, index, size);
            check_inclusion(&tree, &stored, data, index, at);
        }
        let pairs: Vec<(u64, u64)> = if size <= 257 {
            (1..=size).flat_map(|new| (1..=new).map(move |old| (old, new))).collect()
        } else {
            let edges = interesting_sizes(size, &mut rng, 0);
            let edge_pairs: Vec<(u64, u64)> =
                edges.iter().flat_map(|&a| edges.iter().map(move |&b| (a.min(b), a.max(b)))).collect();
            let random = (0..3_000).map(|_| (rng.random_range(1..=size), rng.random_range(1..=size)));
            edge_pairs.into_iter().chain(random.map(|(a, b)| (a.min(b), a.max(b)))).collect()
        };
        for (old, new) in pairs {
            check_consistency(&tree, &stored, old, new);
        }
        // Neither proves consistency from the empty tree.
        assert!(tree.consistency_proof(0, size).is_err() && prove_tree(size, 0, &Stored(&stored)).is_err());
    }
}

/// tlog_tiles' Go sumdb path of a height-8 tile as the C2SP tlog-tiles path (no height segment;
/// `data` tiles are entry bundles, `entries`).
fn c2sp_path(go_path: &str) -> String {
    let rest = go_path.strip_prefix("tile/8/").expect("a height-8 tile path");
    match rest.strip_prefix("data/") {
        Some(index) => format!("tile/entries/{index}"),
        None => format!("tile/{rest}"),
    }
}

/// Keyfold's path for `tile` is its C2SP form, parses back to its coordinates, and Keyfold
/// refuses tlog_tiles' height-prefixed form rather than reading it as some other tile.
fn check_path(tile: &Tile) {
    let level = if tile.is_data() { None } else { Some(tile.level()) };
    let ours = TilePath { level, index: tile.level_index(), width: u64::from(tile.width()) };
    let go_path = tile.path();
    assert_eq!(ours.path(), c2sp_path(&go_path), "path of {tile:?}");
    assert_eq!(TilePath::parse(&c2sp_path(&go_path)), Some(ours), "{go_path}");
    assert_eq!(TilePath::parse(&go_path), None, "Keyfold reads the Go sumdb path {go_path}");
    assert_eq!(Tile::from_path(&go_path).ok(), Some(*tile), "tlog_tiles reads its path {go_path} back");
}

#[test]
fn tile_paths_match_tlog_tiles() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x7469_6c65);
    let mut indices: Vec<u64> = vec![0, 1, 999, 1000, 1_234_067, u64::MAX / 256, u64::MAX];
    indices.extend((0..500).map(|_| rng.random::<u64>() >> rng.random_range(0..64)));
    for index in indices {
        for (level, width) in [(0u8, 256u32), (1, 1), (2, 17), (63, 255), (5, 256)] {
            check_path(&Tile::new(8, level, index, width, false));
        }
        check_path(&Tile::new(8, 0, index, 256, true));
        check_path(&Tile::new(8, 0, index, 88, true));
    }
}

/// Every tile a log of `size` leaves publishes, per tlog_tiles: the path, Keyfold's count of
/// tiles per level, and the bytes.
fn check_tiles(size: u64) {
    let data = records(size);
    let stored = tlog_stored(&data);
    let tree = keyfold_tree(&data);
    let tiles = Tile::new_tiles(8, 0, size);
    for tile in &tiles {
        check_path(tile);
        let expected = tile.read_data(&Stored(&stored)).unwrap();
        let ours = tree.tile(tile.level(), tile.level_index(), u64::from(tile.width())).expect("Keyfold has the tile");
        assert_eq!(first_difference(&ours, &expected), None, "bytes of {} (first differing byte)", tile.path());
    }
    for level in 0..=3u8 {
        let at_level: Vec<&Tile> = tiles.iter().filter(|t| t.level() == level).collect();
        let full = at_level.iter().filter(|t| t.width() == 256).count() as u64;
        let partial = at_level.iter().find(|t| t.width() < 256).map_or(0, |t| u64::from(t.width()));
        assert_eq!(TilePath::count_at(Some(level), size), (full, partial), "tiles at level {level} of size {size}");
    }
    let past_end = tiles.iter().find(|t| t.level() == 0 && t.width() < 256).expect("a partial level-0 tile");
    assert_eq!(tree.tile(0, past_end.level_index(), u64::from(past_end.width()) + 1), None, "beyond the log");
    check_entry_bundles(&data, &stored);
}

/// The first index where `a` and `b` differ (or the shorter one's length), `None` if equal.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (a != b).then(|| a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len())))
}

/// C2SP tlog-tiles entry bundle, read here from the spec: entries each as a big-endian u16 length
/// and its bytes, back to back.
fn read_bundle(mut bundle: &[u8]) -> Vec<&[u8]> {
    let mut entries = Vec::new();
    while let Some((len, rest)) = bundle.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let Some((entry, after)) = rest.split_at_checked(len) else {
            panic!("entry {} of a bundle claims {len} bytes but {} are left", entries.len(), rest.len())
        };
        entries.push(entry);
        bundle = after;
    }
    assert!(bundle.is_empty(), "a bundle ends after a whole entry");
    entries
}

/// tlog_tiles reads no entry bundles, so each bundle Keyfold writes is read per the spec and its
/// entries' record hashes compared to tlog_tiles' level-0 tile of the same index and width.
fn check_entry_bundles(data: &[Vec<u8>], stored: &[TlogHash]) {
    for (index, chunk) in (0u64..).zip(data.chunks(256)) {
        let width = u32::try_from(chunk.len()).unwrap();
        let bundle = entry_bundle(chunk.iter().map(Vec::as_slice)).expect("entries under 64 KiB");
        let entries = read_bundle(&bundle);
        assert_eq!(entries, chunk.iter().map(Vec::as_slice).collect::<Vec<_>>(), "bundle {index}");
        let hashes: Vec<u8> = entries.iter().flat_map(|e| record_hash(e).0).collect();
        let level0 = Tile::new(8, 0, index, width, false).read_data(&Stored(stored)).unwrap();
        let differs = first_difference(&hashes, &level0);
        assert_eq!(
            differs, None,
            "record hashes of bundle {index} against tlog_tiles' level-0 tile (first differing byte)"
        );
        check_path(&Tile::new(8, 0, index, width, true));
    }
}

#[test]
fn tiles_and_entry_bundles_match_tlog_tiles_600() {
    check_tiles(600);
}

#[test]
fn tiles_and_entry_bundles_match_tlog_tiles_70000() {
    check_tiles(70_000);
}
