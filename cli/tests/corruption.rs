//! Storage corruption, as a disk or an operator's mistake makes it: bits flipped at random pages
//! of every redb file (queue, heads, index, the map's files). Whatever the damage, `keyfold fsck`
//! never panics (it exits 0 or 1, naming a damaged file), and an epoch run on the damaged
//! directory either refuses or signs only what was submitted, on a history that still replays.
//! Seeded: a failure prints the file, the trial and the flipped offsets.

use keyfold_core::{Mutation, MutationId, Version};
use keyfold_ingest::Queue;
use keyfold_redb::{RedbQueue, RedbQueueOptions};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn keyfold(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyfold")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn append(data: &Path, batch: &[Mutation]) {
    let suite = keyfold_core::HashSuite::Blake3;
    let queue =
        RedbQueue::open(&data.join("queue.redb"), RedbQueueOptions { suite, max_depth: 1_000_000, max_bytes: 1 << 30 })
            .unwrap();
    queue.append(batch.to_vec()).unwrap();
}

fn mutation(key: u32, value: &str, expected: u64) -> Mutation {
    Mutation {
        key: format!("user{key}@example.com").into_bytes(),
        value: Some(value.as_bytes().to_vec()),
        expected_version: Version(expected),
        owner_signature: None,
    }
}

/// A directory with three signed epochs (400 keys, 200 of them updated twice) and its index, and
/// `pending` new mutations queued for epoch 4; returns the ids of those.
fn prepared(data: &Path, pending: u32) -> HashSet<MutationId> {
    let arg = data.to_str().unwrap();
    let (code, _, stderr) = keyfold(&["init", "--data", arg]);
    assert_eq!(code, Some(0), "{stderr}");
    for (epoch, value) in [(0u64, "first"), (1, "second"), (2, "third")] {
        let keys = if epoch == 0 { 0..400 } else { 0..200 };
        append(data, &keys.map(|k| mutation(k, value, epoch)).collect::<Vec<_>>());
        let (code, _, stderr) = keyfold(&["epoch", "--data", arg]);
        assert_eq!(code, Some(0), "{stderr}");
    }
    let batch: Vec<Mutation> = (1000..1000 + pending).map(|k| mutation(k, "as sent", 0)).collect();
    append(data, &batch);
    batch.iter().map(|m| m.id(keyfold_core::HashSuite::Blake3)).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Flips one bit in each of `pages` distinct pages of `file` that hold data (a page of zeros
/// was never written: a flip there would test nothing). Returns the flipped offsets.
fn flip_bits(file: &Path, pages: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<usize> {
    const PAGE_BYTES: usize = 4096;
    let mut bytes = std::fs::read(file).unwrap();
    let mut live: Vec<usize> = (0..bytes.len() / PAGE_BYTES)
        .filter(|p| bytes[p * PAGE_BYTES..][..PAGE_BYTES].iter().any(|b| *b != 0))
        .collect();
    let mut offsets = Vec::new();
    while offsets.len() < pages && !live.is_empty() {
        let page = live.swap_remove(rng.random_range(0..live.len()));
        let offset = page * PAGE_BYTES + rng.random_range(0..PAGE_BYTES);
        bytes[offset] ^= 1 << rng.random_range(0..8);
        offsets.push(offset);
    }
    std::fs::write(file, bytes).unwrap();
    offsets
}

/// After the damage: the history still replays, and epoch 4, signed on the damage, archives only
/// mutations that were submitted.
fn check_nothing_wrong_signed(data: &Path, pending: &HashSet<MutationId>, context: &str) {
    let arg = data.to_str().unwrap();
    let (code, stdout, stderr) = keyfold(&["verify", "--data", arg]);
    assert_eq!(
        code,
        Some(0),
        "{context}: an epoch was signed on damaged storage and does not replay: {stdout} {stderr}"
    );
    let archive = data.join("archives").join("epoch-00000000000000000004.parquet");
    let rows = keyfold_archive::read_archive(&std::fs::read(&archive).unwrap()).unwrap();
    for row in rows {
        let id = MutationId(row.mutation_id);
        assert!(pending.contains(&id), "{context}: epoch 4 signed mutation {} that nobody submitted", id.0.to_hex());
    }
}

struct Trial<'a> {
    file: &'a str,
    seed: u64,
}

/// One damaged copy: fsck must not panic; an epoch refuses or signs only what was submitted.
/// Returns whether the damage was detected (by fsck or by the epoch refusing).
fn run_trial(source: &Path, scratch: &Path, trial: &Trial<'_>, pending: &HashSet<MutationId>) -> bool {
    let data = scratch.join(format!("trial-{}-{}", trial.file.replace('/', "-"), trial.seed));
    copy_dir(source, &data);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(trial.seed);
    let offsets = flip_bits(&data.join(trial.file), 4, &mut rng);
    let context = format!("{} seed {} (bits flipped at offsets {offsets:?})", trial.file, trial.seed);
    let arg = data.to_str().unwrap();
    let (code, stdout, stderr) = keyfold(&["fsck", "--data", arg]);
    assert!(matches!(code, Some(0 | 1)), "{context}: fsck must report, not crash ({code:?}): {stdout} {stderr}");
    let fsck_named = code == Some(1) && stdout.contains("FAIL");
    let (code, _, _) = keyfold(&["epoch", "--data", arg]);
    let signed = code == Some(0);
    if signed {
        check_nothing_wrong_signed(&data, pending, &context);
    }
    let _ = std::fs::remove_dir_all(&data);
    fsck_named || !signed
}

#[test]
fn flipped_bits_in_any_store_are_reported_and_never_signed() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let pending = prepared(&source, 40);
    let tree_files: Vec<PathBuf> = std::fs::read_dir(source.join("tree"))
        .unwrap()
        .map(|e| PathBuf::from("tree").join(e.unwrap().file_name()))
        .filter(|p| p.extension().is_some_and(|e| e == "redb"))
        .collect();
    let mut files: Vec<String> = ["queue.redb", "heads.redb", "index.redb"].map(String::from).to_vec();
    files.extend(tree_files.iter().map(|p| p.to_str().unwrap().to_owned()));
    for file in &files {
        let detected =
            (0..5u64).filter(|seed| run_trial(&source, dir.path(), &Trial { file, seed: *seed }, &pending)).count();
        assert!(detected > 0, "{file}: none of 5 damaged copies was detected by fsck or refused by the epoch");
    }
}

/// A damaged page of the map's files: fsck exits 1 (not a panic's 101) and names the file.
#[test]
fn fsck_names_a_damaged_tree_file_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kf");
    prepared(&data, 5);
    let file = data.join("tree").join("group-000.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    // Every non-zero page past the file header gets a byte overwritten: the committed trees live
    // there, so redb's checksums must disagree.
    for page in 1..bytes.len() / 4096 {
        let at = page * 4096 + 100;
        if bytes[page * 4096..][..4096].iter().any(|b| *b != 0) {
            bytes[at] ^= 0xff;
        }
    }
    std::fs::write(&file, bytes).unwrap();
    let (code, stdout, stderr) = keyfold(&["fsck", "--data", data.to_str().unwrap()]);
    assert_eq!(code, Some(1), "fsck reports damage with exit 1: {stdout} {stderr}");
    assert!(stdout.contains("FAIL  tree/group-000.redb"), "the damaged file is named: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
