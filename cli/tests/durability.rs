//! The kill -9 durability harness: the real `keyfold serve` under concurrent submissions, killed
//! with SIGKILL at seeded random moments (mid-epoch included: epochs run every ~100 ms while
//! clients submit), restarted on the same directory, again and again. Then the checker:
//! * every acknowledged mutation appears exactly once in the archives (applied, rejected or
//!   duplicate), and no mutation appears twice;
//! * no epoch ever had two different heads (every head seen over HTTP is the stored one);
//! * every archive replays to its head's root, every signature and chain link holds and head times
//!   strictly increase (`keyfold verify --data`).
//!
//! CI size: 30 kills. The long run:
//! `KEYFOLD_DURABILITY_KILLS=200 cargo test -p keyfold-cli --test durability -- --nocapture`
//! (`KEYFOLD_DURABILITY_SEED` picks another schedule of kills).
#![allow(clippy::too_many_lines)] // a test scenario reads top to bottom; production code keeps the 70-line limit

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{json, start, stop, try_http};
use keyfold_core::verify_head_note;
use keyfold_epoch::HeadStore;
use keyfold_redb::RedbHeadStore;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Submits batches of new keys until `stop`; records the id of every acknowledged mutation.
/// Requests cut by the kill are not acknowledged, whatever became of them.
fn submit_until(addr: SocketAddr, stop: &AtomicBool, next_key: &AtomicU64, acked: &Mutex<Vec<String>>, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    while !stop.load(Ordering::SeqCst) {
        let count = rng.random_range(1..=20u64);
        let first = next_key.fetch_add(count, Ordering::SeqCst);
        let mutations: Vec<String> = (first..first + count)
            .map(|k| {
                format!(
                    r#"{{"key":"user{k}@example.com","value":"{}","expected_version":0}}"#,
                    B64.encode(k.to_le_bytes())
                )
            })
            .collect();
        let body = format!(r#"{{"mutations":[{}]}}"#, mutations.join(","));
        match try_http(addr, "POST", "/v1/mutations", &body) {
            Ok((202, response)) => {
                let receipts = json(&response)["receipts"].as_array().cloned().unwrap_or_default();
                assert_eq!(receipts.len() as u64, count, "one receipt per mutation: {response}");
                let ids = receipts.iter().map(|r| r["id"].as_str().unwrap().to_owned());
                acked.lock().unwrap().extend(ids);
            }
            Ok((503, _)) => std::thread::sleep(Duration::from_millis(10)), // back-pressure
            Ok((status, response)) => panic!("a valid submission got {status}: {response}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)), // the server is gone
        }
    }
}

/// Records every latest head served until `stop`; a second, different note for an epoch is a
/// fork and fails the run.
fn watch_heads(
    addr: SocketAddr,
    stop: &AtomicBool,
    origin: &str,
    public: &[u8; 32],
    seen: &Mutex<BTreeMap<u64, String>>,
) {
    while !stop.load(Ordering::SeqCst) {
        if let Ok((200, note)) = try_http(addr, "GET", "/v1/heads/latest", "") {
            let head = verify_head_note(&note, origin, public).expect("every served head verifies");
            let mut seen = seen.lock().unwrap();
            let first = seen.entry(head.epoch.0).or_insert_with(|| note.clone());
            assert_eq!(*first, note, "epoch {} was served with two different heads", head.epoch);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn wait_for_empty_queue(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, metrics) = try_http(addr, "GET", "/metrics", "").expect("metrics");
        if metrics.lines().any(|l| l == "keyfold_queue_depth 0") {
            return;
        }
        assert!(Instant::now() < deadline, "the queue did not drain");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let kills: u32 = env_or("KEYFOLD_DURABILITY_KILLS", 30);
    let seed: u64 = env_or("KEYFOLD_DURABILITY_SEED", 1);
    let dir = tempfile::tempdir().unwrap();
    sigkill_run(&dir.path().join("data"), kills, seed);
}

/// `keyfold init` of `dir/data` with `settings`.
fn init(dir: &std::path::Path, settings: &[&str]) -> std::path::PathBuf {
    let data = dir.join("data");
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .arg("init")
        .args(settings)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    data
}

/// The same with epochs capped at 100 mutations (`keyfold init --epoch-max-mutations 100`): the
/// clients outrun the epochs, so the backlog drains over many epochs and kills land in the middle
/// of those drains (after a capped cut, between the epochs of one backlog).
#[test]
fn sigkill_during_capped_multi_epoch_drains_loses_nothing_acknowledged() {
    let kills: u32 = env_or("KEYFOLD_DURABILITY_KILLS", 30) / 2;
    let seed: u64 = env_or("KEYFOLD_DURABILITY_SEED", 1) + 1000;
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path(), &["--epoch-max-mutations", "100"]);
    let capped_epochs = sigkill_run(&data, kills, seed);
    assert!(capped_epochs > 0, "no epoch was cut short by the cap: the variant did not test multi-epoch drains");
}

/// The same with a retention window of 3 epochs (`keyfold init --retain-epochs 3 --keep-archives`):
/// after every epoch the map forgets the epochs before the window and rebases shards, so kills
/// land in the middle of prunes. The archives are kept (a lifecycle rule's job in production) so
/// the exactly-once check can read every one; then `keyfold fsck` checks the pruned map: the
/// kept roots are the signed ones and every record the latest root reaches hashes to it.
#[test]
fn sigkill_while_pruning_to_a_retention_window_loses_nothing_acknowledged() {
    let kills: u32 = env_or("KEYFOLD_DURABILITY_KILLS", 30) / 2;
    let seed: u64 = env_or("KEYFOLD_DURABILITY_SEED", 1) + 2000;
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path(), &["--retain-epochs", "3", "--keep-archives"]);
    sigkill_run(&data, kills, seed);
    let fsck =
        std::process::Command::new(env!("CARGO_BIN_EXE_keyfold")).args(["fsck", "--data"]).arg(&data).output().unwrap();
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(fsck.status.success(), "fsck failed: {report} {}", String::from_utf8_lossy(&fsck.stderr));
    assert!(report.contains("the epoch proofs of epochs"), "fsck did not take the retention window's path: {report}");
}

/// The log of heads never forked across the kills: every checkpoint served is one of the log of
/// the stored heads (same size, same root, so consistent with every later one), and the tile files
/// on disk give the latest checkpoint's root.
fn check_log_never_forked(
    data: &std::path::Path,
    heads: &RedbHeadStore,
    latest: u64,
    seen: &BTreeMap<u64, String>,
    origin: &str,
    public: &[u8; 32],
) {
    let mut log = keyfold_core::LogTree::new();
    for epoch in 0..=latest {
        let note = heads.get(keyfold_core::Epoch(epoch)).unwrap().unwrap();
        log.push(keyfold_core::verify_head_note(&note, origin, public).unwrap().leaf_hash());
    }
    for note in seen.values() {
        let served = keyfold_core::verify_checkpoint_note(note, origin, public).unwrap().checkpoint;
        assert_eq!(log.root(served.size).unwrap(), served.root, "the checkpoint of size {} forked", served.size);
        let proof = log.consistency_proof(served.size, log.size()).unwrap();
        keyfold_core::log::verify_consistency(
            served.size,
            log.size(),
            &served.root,
            &log.root(log.size()).unwrap(),
            &proof,
        )
        .unwrap();
    }
    let on_disk = std::fs::read_to_string(data.join("log/checkpoint")).unwrap();
    assert_eq!(on_disk, heads.get(keyfold_core::Epoch(latest)).unwrap().unwrap(), "the checkpoint file is the latest");
    let mut leaves = Vec::new();
    for index in 0..=latest / 256 {
        let width = (latest + 1 - index * 256).min(256);
        let path = keyfold_core::tiles::TilePath { level: Some(0), index, width }.path();
        let tile = std::fs::read(data.join("log").join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        leaves.extend(tile.chunks(32).map(|c| keyfold_core::Hash(c.try_into().unwrap())));
    }
    assert_eq!(keyfold_core::log::root(&leaves), log.root(log.size()).unwrap(), "the tile files give the signed root");
}

/// Kills the server `kills` times on `data`, then checks; returns how many epochs the cap cut short.
fn sigkill_run(data: &std::path::Path, kills: u32, seed: u64) -> usize {
    let data = data.to_path_buf();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let acked = Mutex::new(Vec::new());
    let next_key = AtomicU64::new(0);
    let seen = Mutex::new(BTreeMap::new());
    let started = Instant::now();
    let mut identity: Option<(String, [u8; 32])> = None;

    for round in 0..kills {
        let mut server = start(&data);
        let addr = server.addr;
        let (origin, public) = identity
            .get_or_insert_with(|| {
                let info = json(&try_http(addr, "GET", "/v1/directory", "").unwrap().1);
                let public = B64.decode(info["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
                (info["origin"].as_str().unwrap().to_owned(), public)
            })
            .clone();
        let stop_flag = AtomicBool::new(false);
        let alive_ms = rng.random_range(20..400u64);
        std::thread::scope(|s| {
            for client in 0..CLIENTS {
                let client_seed = seed * 1000 + u64::from(round) * 10 + client as u64;
                let (stop_flag, next_key, acked) = (&stop_flag, &next_key, &acked);
                s.spawn(move || submit_until(addr, stop_flag, next_key, acked, client_seed));
            }
            s.spawn(|| watch_heads(addr, &stop_flag, &origin, &public, &seen));
            std::thread::sleep(Duration::from_millis(alive_ms));
            server.child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            server.child.wait().unwrap();
            stop_flag.store(true, Ordering::SeqCst);
        });
    }

    // Restart once more and let the scheduler consume everything acknowledged.
    let server = start(&data);
    wait_for_empty_queue(server.addr);
    let (origin, public) = identity.expect("at least one round");
    let stop_flag = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| watch_heads(server.addr, &stop_flag, &origin, &public, &seen));
        std::thread::sleep(Duration::from_millis(50));
        stop_flag.store(true, Ordering::SeqCst);
    });
    stop(server);

    // Every archive replays to its signed root; signatures, chain links and times hold.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "verify failed: {report} {}", String::from_utf8_lossy(&verify.stderr));

    // No fork: every head served during the run is the one stored.
    let heads = RedbHeadStore::open(&data.join("heads.redb")).unwrap();
    let (latest, _) = heads.latest().unwrap().unwrap();
    for (epoch, note) in seen.lock().unwrap().iter() {
        let stored = heads.get(keyfold_core::Epoch(*epoch)).unwrap().expect("a served head is stored");
        assert_eq!(&stored, note, "epoch {epoch}: the head served differs from the head stored");
    }
    check_log_never_forked(&data, &heads, latest.0, &seen.lock().unwrap(), &origin, &public);

    // Exactly once: every acknowledged mutation is in exactly one archive row.
    let mut archived: HashMap<String, u32> = HashMap::new();
    let config = std::fs::read_to_string(data.join("keyfold.toml")).unwrap();
    let cap: usize = config
        .lines()
        .find_map(|l| l.strip_prefix("epoch_max_mutations = "))
        .map_or(usize::MAX, |v| v.trim().parse().unwrap());
    let mut capped_epochs = 0;
    for e in 1..=latest.0 {
        let path = data.join("archives").join(format!("epoch-{e:020}.parquet"));
        let rows = keyfold_archive::read_archive(&std::fs::read(&path).unwrap()).unwrap();
        assert!(rows.len() <= cap, "epoch {e} consumed {} mutations, over the cap {cap}", rows.len());
        capped_epochs += usize::from(rows.len() == cap);
        for row in rows {
            *archived.entry(row.mutation_id.to_hex()).or_default() += 1;
        }
    }
    let acked = acked.into_inner().unwrap();
    let lost: Vec<&String> = acked.iter().filter(|id| !archived.contains_key(*id)).collect();
    let twice: Vec<(&String, &u32)> = archived.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "durability: {kills} SIGKILLs in {:.1} s, {} epochs ({capped_epochs} at the cap), {} mutations acknowledged, {} archived ({} durable without an acknowledgement), lost {}, archived twice {}",
        started.elapsed().as_secs_f64(),
        latest.0,
        acked.len(),
        archived.len(),
        archived.len() - (acked.len() - lost.len()),
        lost.len(),
        twice.len()
    );
    assert!(lost.is_empty(), "acknowledged mutations lost: {lost:?}");
    assert!(twice.is_empty(), "mutations archived twice: {twice:?}");
    assert!(acked.len() > 100, "the run acknowledged too little to mean anything: {}", acked.len());
    // Epochs grow with the backlog, so kills land mid-epoch more and more; some must complete.
    assert!(latest.0 >= 5, "too few epochs ran: {latest}");
    capped_epochs
}
