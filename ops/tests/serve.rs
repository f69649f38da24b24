//! End to end: the real `keyfold serve` on an ephemeral port over a temporary directory, driven
//! over HTTP by concurrent clients; lookups verified like a client; SIGTERM, restart, persistence.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::{HashSuite, LeafValue, MapRoot, Proof, Version, verify_head_note};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: SocketAddr,
}

fn start(data: &std::path::Path) -> Server {
    start_with(data, &[])
}

fn start_with(data: &std::path::Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--epoch-interval-min-ms", "100", "--epoch-interval-max-ms", "600000"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start keyfold serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(url) = line.split("http://").nth(1) {
            break url.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop)); // keep draining stdout
    Server { child, addr }
}

fn stop(mut server: Server) {
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
            return;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

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
    let check = |addr: SocketAddr, key: &str, expected: Option<LeafValue>| {
        let answer = json(&http(addr, "GET", &format!("/v1/keys/{key}"), "").1);
        let head = verify_head_note(answer["head"].as_str().unwrap(), &origin, &public).unwrap();
        let proof = Proof::decode(&B64.decode(answer["proof"].as_str().unwrap()).unwrap()).unwrap();
        proof
            .verify(
                HashSuite::Blake3,
                &MapRoot { epoch: head.epoch, hash: head.root },
                key.as_bytes(),
                expected.as_ref(),
            )
            .unwrap();
        head
    };
    let mut applied = 0;
    for client in 0..8 {
        for batch in 0..5 {
            for i in 0..10 {
                let key = format!("user-{client}-{batch}-{i}@example.com");
                let head = check(addr, &key, Some(LeafValue::present(Version(1), key.clone().into_bytes())));
                applied = applied.max(head.counts.applied);
            }
        }
    }
    check(addr, "nobody@example.com", None);
    stop(server);

    // Restart on the same directory: everything is still there, and epochs go on.
    let server = start(dir.path());
    let key = "user-0-0-0@example.com";
    let head = check(server.addr, key, Some(LeafValue::present(Version(1), key.as_bytes().to_vec())));
    assert!(head.epoch.0 >= 1);
    let update = format!(r#"{{"mutations":[{{"key":"{key}","value":"{}","expected_version":1}}]}}"#, B64.encode(b"v2"));
    assert_eq!(http(server.addr, "POST", "/v1/mutations", &update).0, 202);
    wait_for_epoch(server.addr, &origin, &public, head.epoch.0 + 1);
    let newer = check(server.addr, key, Some(LeafValue::present(Version(2), b"v2".to_vec())));
    assert_eq!(newer.previous.0.len(), 32);
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
