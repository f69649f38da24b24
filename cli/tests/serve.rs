//! End to end: the real `keyfold serve` on an ephemeral port over a temporary directory, driven
//! over HTTP by concurrent clients; lookups verified like a client; SIGTERM, restart, persistence.
#![allow(clippy::too_many_lines)] // a test scenario reads top to bottom; production code keeps the 70-line limit

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{Epoch, Hash, HashSuite, LeafValue, MapRoot, Proof, Version, verify_head_note};
mod common;

use common::{http, json, start, start_with, stop};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn wait_for_epoch(addr: SocketAddr, origin: &str, public: &[u8; 32], epoch: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let (_, note) = http(addr, "GET", "/v1/heads/latest", "");
        if verify_head_note(&note, origin, public).unwrap().epoch.0 >= epoch {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("epoch {epoch} was not signed in time");
}

#[test]
fn serve_submit_lookup_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let info = json(&http(server.addr, "GET", "/v1/directory", "").1);
    let origin = info["origin"].as_str().unwrap().to_owned();
    let public: [u8; 32] = B64.decode(info["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();

    // 8 concurrent clients, 5 requests of 10 mutations each.
    let addr = server.addr;
    std::thread::scope(|s| {
        for client in 0..8 {
            s.spawn(move || {
                for batch in 0..5 {
                    let mutations: Vec<String> = (0..10)
                        .map(|i| {
                            let key = format!("user-{client}-{batch}-{i}@example.com");
                            format!(
                                r#"{{"key":"{key}","value":"{}","expected_version":0}}"#,
                                B64.encode(key.as_bytes())
                            )
                        })
                        .collect();
                    let (status, body) =
                        http(addr, "POST", "/v1/mutations", &format!(r#"{{"mutations":[{}]}}"#, mutations.join(",")));
                    assert_eq!(status, 202, "{body}");
                    assert_eq!(json(&body)["receipts"].as_array().unwrap().len(), 10);
                }
            });
        }
    });
    wait_for_epoch(addr, &origin, &public, 1);
    // The answer's version and value are the expected ones (`None`: absent), and its leaf, with
    // the epoch and previous commitment it states, is proven in the signed root; returns the head
    // and the leaf.
    let check = |addr: SocketAddr, key: &str, expected: Option<(u64, &[u8])>| {
        let answer = json(&http(addr, "GET", &format!("/v1/keys/{key}"), "").1);
        let head = verify_head_note(answer["head"].as_str().unwrap(), &origin, &public).unwrap();
        let proof = Proof::decode(&B64.decode(answer["proof"].as_str().unwrap()).unwrap()).unwrap();
        let leaf = expected.map(|(version, value)| {
            assert_eq!(answer["version"], version, "{answer}");
            assert_eq!(answer["value"].as_str(), Some(B64.encode(value).as_str()), "{answer}");
            let previous = B64.decode(answer["previous"].as_str().unwrap()).unwrap().try_into().unwrap();
            let epoch = Epoch(answer["version_epoch"].as_u64().unwrap());
            LeafValue::new(Version(version), epoch, Hash(previous), Some(value.to_vec()))
        });
        let root = MapRoot { epoch: head.epoch, hash: head.root };
        proof.verify(HashSuite::Blake3, &root, key.as_bytes(), leaf.as_ref()).unwrap();
        (head, leaf)
    };
    let mut applied = 0;
    for client in 0..8 {
        for batch in 0..5 {
            for i in 0..10 {
                let key = format!("user-{client}-{batch}-{i}@example.com");
                let (head, leaf) = check(addr, &key, Some((1, key.as_bytes())));
                assert_eq!(leaf.unwrap().previous, Hash::default(), "version 1 chains to nothing");
                applied = applied.max(head.counts.applied);
            }
        }
    }
    check(addr, "nobody@example.com", None);
    stop(server);

    // Restart on the same directory: everything is still there, and epochs go on.
    let server = start(dir.path());
    let key = "user-0-0-0@example.com";
    let (head, first) = check(server.addr, key, Some((1, key.as_bytes())));
    assert!(head.epoch.0 >= 1);
    let update = format!(r#"{{"mutations":[{{"key":"{key}","value":"{}","expected_version":1}}]}}"#, B64.encode(b"v2"));
    assert_eq!(http(server.addr, "POST", "/v1/mutations", &update).0, 202);
    wait_for_epoch(server.addr, &origin, &public, head.epoch.0 + 1);
    let (newer, second) = check(server.addr, key, Some((2, b"v2")));
    assert_eq!(newer.previous.0.len(), 32);
    let chained = HashSuite::Blake3.value_commitment(&first.unwrap());
    assert_eq!(second.unwrap().previous, chained, "version 2 chains to version 1");
    stop(server);
    assert!(applied >= 1);

    // A monitor's check of everything published: heads, archives, public key.
    let verify =
        Command::new(env!("CARGO_BIN_EXE_keyfold")).args(["verify", "--data"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "verify failed: {stdout} {}", String::from_utf8_lossy(&verify.stderr));
    assert!(stdout.contains("every signature, chain link, archive digest, outcome and root matches"), "{stdout}");

    // One flipped byte in an archive is found and located.
    let archive = dir.path().join("archives").join("epoch-00000000000000000001.parquet");
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    let verify =
        Command::new(env!("CARGO_BIN_EXE_keyfold")).args(["verify", "--data"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(!verify.status.success());
    assert!(stderr.contains("epoch 1") && stderr.contains("archive digest"), "{stderr}");
}

fn keyfold(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyfold")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `submit` and `lookup` clients against the real server: lookup verifies the head with the
/// pinned key and origin and the proof against it, and refuses a wrong pin.
#[test]
fn cli_clients_submit_and_verified_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let url = format!("http://{}", server.addr);
    let info = json(&http(server.addr, "GET", "/v1/directory", "").1);
    let origin = info["origin"].as_str().unwrap().to_owned();
    let public: [u8; 32] = B64.decode(info["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let pinned = dir.path().join("signing.pub");
    let pinned = pinned.to_str().unwrap();

    let (ok, stdout, stderr) =
        keyfold(&["submit", "--server", &url, "alice@example.com", "--value", "pk-alice", "--expected-version", "0"]);
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("queued durably: mutation ") && stdout.contains("at queue position "), "{stdout}");
    wait_for_epoch(server.addr, &origin, &public, 1);

    let (ok, stdout, stderr) =
        keyfold(&["lookup", "--server", &url, "alice@example.com", "--public-key", pinned, "--origin", &origin]);
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains(r#"value    "pk-alice" (version 1)"#), "{stdout}");
    assert!(stdout.contains("is signed by the pinned key") && stdout.contains("the inclusion proof"), "{stdout}");

    let pinned_b64 = B64.encode(public);
    let (ok, stdout, _) =
        keyfold(&["lookup", "--server", &url, "nobody@example.com", "--public-key", &pinned_b64, "--origin", &origin]);
    assert!(ok);
    assert!(stdout.contains("value    absent (never set)") && stdout.contains("the absence proof"), "{stdout}");

    // A pin the server's key does not match is refused, never printed as a value.
    let other = B64.encode(keyfold_core::SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes());
    let (ok, stdout, stderr) =
        keyfold(&["lookup", "--server", &url, "alice@example.com", "--public-key", &other, "--origin", &origin]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("REFUSED: the head does not verify"), "{stderr}");
    let (ok, _, stderr) =
        keyfold(&["lookup", "--server", &url, "alice@example.com", "--public-key", pinned, "--origin", "someone.else"]);
    assert!(!ok && stderr.contains("REFUSED"), "{stderr}");

    // A monitor replays everything over HTTP: heads, archives, with the key and origin pinned.
    let (ok, stdout, stderr) = keyfold(&["verify", "--server", &url, "--public-key", pinned, "--origin", &origin]);
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("every signature, chain link, archive digest, outcome and root matches"), "{stdout}");
    let (ok, _, stderr) = keyfold(&["verify", "--server", &url, "--public-key", &other, "--origin", &origin]);
    assert!(!ok && stderr.contains("divergence: epoch 0"), "{stderr}");

    // A client error comes back as the server's message.
    let long_key = "k".repeat(5000);
    let (ok, _, stderr) = keyfold(&["submit", "--server", &url, &long_key, "--delete", "--expected-version", "1"]);
    assert!(!ok && stderr.contains("400") && stderr.contains("invalid_mutation"), "{stderr}");
    stop(server);
}

/// A witness: `keyfold monitor --once` replays the server's epochs and cosigns each head; the
/// server serves the cosignature; `lookup` with a witness policy refuses before and accepts after.
#[test]
fn witness_monitor_cosigns_and_lookup_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public_file) = (dir.path().join("witness.key"), dir.path().join("witness.pub"));
    let (ok, stdout, stderr) =
        keyfold(&["keygen", "--private", private.to_str().unwrap(), "--public", public_file.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let witness_key = stdout.trim().rsplit(' ').next().unwrap().to_owned();
    let spec = format!("witness.test={witness_key}");
    let data = dir.path().join("data");
    let server = start_with(&data, &["--witness", &spec]);
    let url = format!("http://{}", server.addr);
    let info = json(&http(server.addr, "GET", "/v1/directory", "").1);
    let origin = info["origin"].as_str().unwrap().to_owned();
    let public: [u8; 32] = B64.decode(info["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let pinned = B64.encode(public);

    let (ok, _, stderr) =
        keyfold(&["submit", "--server", &url, "carol", "--value", "pk-carol", "--expected-version", "0"]);
    assert!(ok, "{stderr}");
    wait_for_epoch(server.addr, &origin, &public, 1);
    let lookup =
        ["lookup", "--server", &url, "carol", "--public-key", &pinned, "--origin", &origin, "--witness", &spec];
    let (ok, _, stderr) = keyfold(&[&lookup[..], &["--witnesses-required", "1"]].concat());
    assert!(!ok && stderr.contains("REFUSED: witness policy"), "not cosigned yet: {stderr}");

    let monitor = |name: &str| {
        let key = private.to_str().unwrap();
        let args = ["--public-key", &pinned, "--origin", &origin, "--witness-key", key, "--witness-name", name];
        keyfold(&[&["monitor", "--server", &url, "--once"][..], &args[..]].concat())
    };
    let (ok, stdout, stderr) = monitor("witness.test");
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("cosigned") && stdout.contains("as witness.test"), "{stdout}");
    let latest = http(server.addr, "GET", "/v1/heads/latest", "").1;
    assert!(latest.contains("\u{2014} witness.test "), "{latest}");

    let (ok, stdout, stderr) = keyfold(&[&lookup[..], &["--witnesses-required", "1"]].concat());
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("verified: cosigned by 1 of the 1 required witnesses: witness.test"), "{stdout}");
    // A witness name the server does not list is refused by the server, so monitor fails.
    let (ok, _, stderr) = monitor("stranger");
    assert!(!ok && stderr.contains("403"), "{stderr}");
    stop(server);
}

/// Hostile clients against the real server: invalid UTF-8, a declared length over the limit and
/// a head over 64 KiB get 4xx at once; a body trickling in gets 408 within the request timeout,
/// headers trickling in get 408 within the header timeout; idle connections are closed within the
/// header timeout; meanwhile well-behaved clients are served promptly.
#[test]
fn hostile_clients_get_4xx_or_are_closed_in_bounded_time() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--header-timeout-ms", "400", "--request-timeout-ms", "800"]);
    let addr = server.addr;
    let connect = || {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    };
    let raw = |request: &[u8]| -> String {
        let mut stream = connect();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok();
        String::from_utf8_lossy(&response).into_owned()
    };
    let post_head = |length: usize| {
        format!(
            "POST /v1/mutations HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let body: &[u8] = b"{\"mutations\":[{\"key\":\"\xff\xfe\",\"value\":null,\"expected_version\":0}]}";
    let response = raw(&[post_head(body.len()).as_bytes(), body].concat());
    assert!(response.starts_with("HTTP/1.1 400"), "invalid UTF-8: {response}");
    let response = raw(format!("{}{{}}", post_head(99_999_999_999)).as_bytes());
    assert!(response.starts_with("HTTP/1.1 413"), "a declared length over the limit: {response}");
    let huge_head = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000));
    let response = raw(huge_head.as_bytes());
    assert!(response.starts_with("HTTP/1.1 431"), "a head over 64 KiB: {response}");

    // Read until the server answers or closes; returns what it sent and how long it took.
    let wait_for_server = |stream: &mut std::net::TcpStream| {
        let started = Instant::now();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok();
        (String::from_utf8_lossy(&response).into_owned(), started.elapsed())
    };
    let idle: Vec<std::net::TcpStream> = (0..200).map(|_| connect()).collect();
    std::thread::scope(|s| {
        let body_trickle = s.spawn(|| {
            let mut stream = connect();
            stream.write_all(post_head(100).as_bytes()).unwrap();
            let writer = stream.try_clone().unwrap();
            let trickle = std::thread::spawn(move || {
                let mut writer = writer;
                while writer.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let answer = wait_for_server(&mut stream);
            drop(stream);
            let _ = trickle.join();
            answer
        });
        let header_trickle = s.spawn(|| {
            let mut stream = connect();
            let writer = stream.try_clone().unwrap();
            let trickle = std::thread::spawn(move || {
                let mut writer = writer;
                for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
                    if writer.write_all(&[*byte]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let answer = wait_for_server(&mut stream);
            drop(stream);
            let _ = trickle.join();
            answer
        });
        for _ in 0..20 {
            let started = Instant::now();
            assert_eq!(http(addr, "GET", "/healthz", "").0, 200);
            assert!(started.elapsed() < Duration::from_secs(2), "a normal request waited {:?}", started.elapsed());
        }
        let (response, took) = body_trickle.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 408"), "a trickling body: {response}");
        assert!(took < Duration::from_secs(5), "408 after {took:?}");
        let (response, took) = header_trickle.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 408"), "trickling headers: {response}");
        assert!(response.contains("request_timeout"), "the API's JSON error: {response}");
        assert!(took < Duration::from_secs(5), "trickling headers answered after {took:?}");
    });
    // The idle connections were closed by the server, not kept forever.
    for mut stream in idle.into_iter().take(5) {
        let (response, took) = wait_for_server(&mut stream);
        assert!(!response.contains("200"), "{response}");
        assert!(took < Duration::from_secs(5), "an idle connection stayed open {took:?}");
    }
    stop(server);
}

/// `keyfold fsck` passes a healthy directory and names the damage in a broken one.
#[test]
fn fsck_passes_a_healthy_directory_and_locates_damage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kf");
    let data_arg = data.to_str().unwrap();
    let (ok, _, stderr) =
        keyfold(&["bench", "--keys", "300", "--mutations", "60", "--epochs", "3", "--data", data_arg]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = keyfold(&["fsck", "--data", data_arg]);
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("no problems") && stdout.contains("proofs of all 390 keys verify"), "{stdout}");
    assert!(stdout.contains("skip  cosignatures: none stored"), "{stdout}");
    assert!(stdout.contains("ok    epoch proofs: the proofs of 4 epoch(s) audit"), "{stdout}");

    // Epoch proofs: a changed byte in one fails its audit, naming the epoch; one missing is listed.
    let proof = data.join("archives").join("epoch-00000000000000000002.proof");
    let good = std::fs::read(&proof).unwrap();
    let mut bad = good.clone();
    bad[good.len() - 40] ^= 0x01;
    std::fs::write(&proof, &bad).unwrap();
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg]);
    assert!(!ok && stdout.contains("FAIL  epoch proofs: epoch 2: its epoch proof does not audit"), "{stdout}");
    std::fs::remove_file(&proof).unwrap();
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg]);
    assert!(ok && stdout.contains("1 epoch(s) have none (epochs 2..=2"), "{stdout}");
    std::fs::write(&proof, &good).unwrap();

    // Cosignatures: a witness's line verifies with the witness's key given and is counted, not
    // checked, without it; a line that is not of its epoch's head, or of an epoch without a head,
    // fails.
    let (witness_key, witness_pub) = (dir.path().join("witness.key"), dir.path().join("witness.pub"));
    keyfold_epoch::generate_key_files(&witness_key, &witness_pub).unwrap();
    let key = keyfold_epoch::load_signing_key(&witness_key).unwrap();
    let witness = format!("witness.test={}", std::fs::read_to_string(&witness_pub).unwrap().trim());
    let note = |e: u64| {
        use keyfold_epoch::HeadStore;
        let heads = keyfold_redb::RedbHeadStore::open(&data.join("heads.redb")).unwrap();
        heads.get(keyfold_core::Epoch(e)).unwrap().unwrap()
    };
    let store = |e: u64, line: &str| {
        use keyfold_epoch::CosignatureStore;
        let stored = keyfold_redb::RedbCosignatures::open(&data.join("cosignatures.redb")).unwrap();
        stored.put(keyfold_core::Epoch(e), "witness.test", line).unwrap();
    };
    let cosign = |e: u64| keyfold_core::cosign(&note(e), "witness.test", &key, 1_900_000_000 + e).unwrap();
    store(2, &cosign(2));
    let (ok, stdout, stderr) = keyfold(&["fsck", "--data", data_arg, "--witness", &witness]);
    assert!(ok && stdout.contains("ok    cosignatures: 1 stored, 1 verified\n"), "{stdout} {stderr}");
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg]);
    assert!(ok && stdout.contains("1 stored, 0 verified; not checked, by witnesses not given"), "{stdout}");
    store(3, &cosign(2));
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg, "--witness", &witness]);
    assert!(!ok && stdout.contains("FAIL  cosignatures: epoch 3: "), "epoch 2's line as epoch 3's: {stdout}");
    store(3, &cosign(3));
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg, "--witness", &witness]);
    assert!(ok && stdout.contains("ok    cosignatures: 2 stored, 2 verified"), "{stdout}");
    store(9, &cosign(3));
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg, "--witness", &witness]);
    assert!(!ok && stdout.contains("cosignature of epoch 9, which has no head"), "{stdout}");
    std::fs::remove_file(data.join("cosignatures.redb")).unwrap();

    // A flipped byte in epoch 3's archive: the replay fails there, and the map is not checked
    // against a replay that failed.
    let archive = data.join("archives").join("epoch-00000000000000000003.parquet");
    let good = std::fs::read(&archive).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 3] ^= 0x40;
    std::fs::write(&archive, &bad).unwrap();
    let (ok, stdout, stderr) = keyfold(&["fsck", "--data", data_arg]);
    assert!(!ok);
    assert!(stdout.contains("FAIL  heads and archives") && stdout.contains("epoch 3"), "{stdout}");
    assert!(stderr.contains("1 problem(s)"), "{stderr}");
    std::fs::write(&archive, &good).unwrap();

    // The outcome index: built from the archives, it passes; built with epochs 2 and 3 swapped,
    // the outcomes and histories it serves are wrong and fsck names one.
    let build_index = |order: [u64; 4]| {
        use keyfold_epoch::OutcomeIndex;
        let path = data.join("index.redb");
        let _ = std::fs::remove_file(&path);
        let index = keyfold_redb::RedbOutcomeIndex::open(&path).unwrap();
        for (e, source) in (1..=4).zip(order) {
            let name = format!("epoch-{source:020}.parquet");
            let rows =
                keyfold_archive::read_archive(&std::fs::read(data.join("archives").join(name)).unwrap()).unwrap();
            index.record(keyfold_core::Epoch(e), &rows).unwrap();
        }
    };
    build_index([1, 2, 3, 4]);
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg]);
    assert!(ok && stdout.contains("ok    index: through epoch 4: the outcomes of all"), "{stdout}");
    build_index([1, 3, 2, 4]);
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg]);
    assert!(!ok && stdout.contains("FAIL  index: "), "a wrong index must not pass: {stdout}");
    std::fs::remove_file(data.join("index.redb")).unwrap();

    // A lost map (its files deleted) no longer agrees with the signed heads.
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg]);
    assert!(ok && stdout.contains("skip  index: no index.redb"), "restored: {stdout}");
    std::fs::remove_dir_all(data.join("tree")).unwrap();
    let (ok, stdout, _) = keyfold(&["fsck", "--data", data_arg]);
    assert!(!ok, "a lost map must not pass: {stdout}");
    assert!(stdout.contains("FAIL  map: the map is at epoch 0 but the heads at 4"), "{stdout}");
}

/// `init --archives DIR` keeps the archives in another local directory: epochs write there, and
/// `verify` and `fsck` read them there; a location that is not a local directory is refused.
#[test]
fn archives_can_live_in_another_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kf");
    let elsewhere = dir.path().join("shared").join("archives");
    let (data_arg, elsewhere_arg) = (data.to_str().unwrap(), format!("file://{}", elsewhere.display()));
    let (ok, _, stderr) = keyfold(&["init", "--data", data_arg, "--archives", "s3://bucket/prefix"]);
    assert!(!ok && stderr.contains("only local directories"), "{stderr}");
    let (ok, _, stderr) = keyfold(&["init", "--data", data_arg, "--archives", "relative/dir"]);
    assert!(!ok && stderr.contains("absolute path"), "{stderr}");
    let (ok, _, stderr) = keyfold(&["init", "--data", data_arg, "--archives", &elsewhere_arg]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = keyfold(&["epoch", "--data", data_arg]);
    assert!(ok, "{stderr}");
    assert!(elsewhere.join("epoch-00000000000000000001.parquet").exists(), "the archive is in the other directory");
    assert!(!data.join("archives").exists(), "and not in the data directory");
    let (ok, stdout, stderr) = keyfold(&["verify", "--data", data_arg]);
    assert!(ok, "{stdout} {stderr}");
    let (ok, stdout, stderr) = keyfold(&["fsck", "--data", data_arg]);
    assert!(ok && stdout.contains("no problems"), "{stdout} {stderr}");
}
