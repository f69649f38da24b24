//! `POST /add-checkpoint` through the real router on a real redb file: every answer the C2SP
//! tlog-witness spec defines, and the read routes.

mod common;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{ORIGIN, Reply, TestLog, WITNESS_NAME, body, get, open_witness, post, witness_key};
use keyfold_core::{Epoch, Hash, HashSuite, Head, HeadCounts, Witness as CosigningWitness, verify_cosignature};
use keyfold_witness::{Evidence, MAX_BODY_BYTES, router};
use sha2::{Digest, Sha256};

struct Setup {
    _dir: tempfile::TempDir,
    router: axum::Router,
    log: TestLog,
}

fn setup(size: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, "main", size);
    let witness = open_witness(&dir.path().join("witness.redb"), vec![log.log_key()]);
    Setup { _dir: dir, router: router(witness), log }
}

fn cosigning_witness() -> CosigningWitness {
    CosigningWitness { name: WITNESS_NAME.into(), public_key: witness_key().verifying_key().to_bytes() }
}

fn assert_size_conflict(reply: &Reply, latest_size: u64) {
    assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
    assert_eq!(reply.content_type, "text/x.tlog.size");
    assert_eq!(reply.body, format!("{latest_size}\n"));
}

/// The witness's cosignature checked from the C2SP specs alone (tlog-cosignature, signed-note),
/// with ed25519-dalek and SHA-256 directly: `— <name> base64(key id || time (8, big-endian) ||
/// signature)`, key id = SHA-256(name || "\n" || 0x04 || public key)[..4], signed message
/// "cosignature/v1\ntime <t>\n" || checkpoint text. Returns the time.
fn check_cosignature_from_the_spec(line: &str, checkpoint_text: &str) -> u64 {
    let line = line.strip_suffix('\n').expect("a line ends in a newline");
    let rest = line.strip_prefix("\u{2014} ").expect("a signature line starts with an em dash and a space");
    let (name, b64) = rest.rsplit_once(' ').unwrap();
    assert_eq!(name, WITNESS_NAME);
    let blob = B64.decode(b64).unwrap();
    assert_eq!(blob.len(), 4 + 8 + 64);
    let public = witness_key().verifying_key();
    let mut id = Sha256::new();
    id.update(format!("{WITNESS_NAME}\n").as_bytes());
    id.update([0x04]);
    id.update(public.as_bytes());
    assert_eq!(&blob[..4], &id.finalize()[..4], "key id");
    let time = u64::from_be_bytes(blob[4..12].try_into().unwrap());
    let message = format!("cosignature/v1\ntime {time}\n{checkpoint_text}");
    let signature = ed25519_dalek::Signature::from_bytes(&blob[12..].try_into().unwrap());
    let public = ed25519_dalek::VerifyingKey::from_bytes(public.as_bytes()).unwrap();
    public.verify_strict(message.as_bytes(), &signature).expect("the cosignature verifies");
    time
}

#[tokio::test]
async fn first_add_from_zero_is_cosigned_and_the_cosignature_verifies() {
    let s = setup(5);
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let reply = post(&s.router, s.log.body(0, 5)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.content_type, "text/plain; charset=utf-8");
    let note = s.log.note(5);
    let time = verify_cosignature(&format!("{note}{}", reply.body), &cosigning_witness()).unwrap();
    assert!(time >= before, "the cosignature carries the current time");
    assert_eq!(check_cosignature_from_the_spec(&reply.body, &s.log.checkpoint(5).text()), time);
}

#[tokio::test]
async fn grows_with_valid_proofs_and_serves_the_latest() {
    let mut s = setup(3);
    assert_eq!(get(&s.router, &format!("/checkpoint/{ORIGIN}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post(&s.router, s.log.body(0, 3)).await.status, StatusCode::OK);
    for (old, size) in [(3, 4), (4, 8), (8, 13), (13, 13), (13, 100)] {
        s.log.grow_to(size);
        let reply = post(&s.router, s.log.body(old, size)).await;
        assert_eq!(reply.status, StatusCode::OK, "{old} -> {size}: {reply:?}");
        check_cosignature_from_the_spec(&reply.body, &s.log.checkpoint(size).text());
    }
    // Monitors read the latest cosigned note, by the origin as a path or percent-encoded.
    for path in [format!("/checkpoint/{ORIGIN}"), "/checkpoint/example.com%2Flog".to_owned()] {
        let reply = get(&s.router, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(reply.body.starts_with(&s.log.note(100)), "the log's note, then the cosignature");
        keyfold_core::verify_note_signature(&reply.body, ORIGIN, s.log.key.verifying_key().as_bytes()).unwrap();
        verify_cosignature(&reply.body, &cosigning_witness()).unwrap();
    }
}

#[tokio::test]
async fn wrong_old_size_is_409_with_the_latest_size() {
    let mut s = setup(5);
    assert_size_conflict(&post(&s.router, s.log.body(3, 5)).await, 0);
    assert_eq!(post(&s.router, s.log.body(0, 5)).await.status, StatusCode::OK);
    s.log.grow_to(9);
    assert_size_conflict(&post(&s.router, s.log.body(0, 9)).await, 5);
    assert_size_conflict(&post(&s.router, s.log.body(4, 9)).await, 5);
    assert_size_conflict(&post(&s.router, s.log.body(6, 9)).await, 5);
    assert_eq!(post(&s.router, s.log.body(5, 9)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn resubmitting_the_latest_is_cosigned_again() {
    let s = setup(6);
    assert_eq!(post(&s.router, s.log.body(0, 6)).await.status, StatusCode::OK);
    let reply = post(&s.router, s.log.body(6, 6)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // Equal sizes take an empty proof.
    let one = s.log.tree.consistency_proof(5, 6).unwrap();
    assert_eq!(post(&s.router, body(6, &one[..1], &s.log.note(6))).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn evidence(router: &axum::Router) -> Vec<Evidence> {
    let counts: serde_json::Value = serde_json::from_str(&get(router, "/evidence").await.body).unwrap();
    let recorded = counts["recorded"].as_u64().unwrap();
    let mut out = Vec::new();
    for i in 0..recorded {
        out.push(serde_json::from_str(&get(router, &format!("/evidence/{i}")).await.body).unwrap());
    }
    assert_eq!(get(router, &format!("/evidence/{recorded}")).await.status, StatusCode::NOT_FOUND);
    out
}

#[tokio::test]
async fn bad_proof_is_422_and_kept_as_evidence() {
    let mut s = setup(5);
    assert_eq!(post(&s.router, s.log.body(0, 5)).await.status, StatusCode::OK);
    let stored = get(&s.router, &format!("/checkpoint/{ORIGIN}")).await.body;
    s.log.grow_to(11);
    let mut proof = s.log.proof(5, 11);
    proof[0].0[0] ^= 1;
    let request = body(5, &proof, &s.log.note(11));
    assert_eq!(post(&s.router, request.clone()).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let short = body(5, &proof[1..], &s.log.note(11));
    assert_eq!(post(&s.router, short).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    // From size 0 the proof must be empty: refused, but not evidence (nothing was contradicted).
    let fresh = setup(5);
    let from_zero = body(0, &[Hash([1; 32])], &fresh.log.note(5));
    assert_eq!(post(&fresh.router, from_zero).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(evidence(&fresh.router).await.is_empty());

    // The same contradiction replayed with another proof is recorded once.
    let found = evidence(&s.router).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].origin.as_str(), &found[0].request), (ORIGIN, &request));
    assert_eq!(found[0].contradicted.as_deref(), Some(stored.as_str()));
    assert_eq!(found[0].checkpoint, s.log.checkpoint(11).text());
    // Nothing changed: the good proof is still accepted.
    assert_eq!(post(&s.router, s.log.body(5, 11)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn same_size_other_root_is_409_and_kept_as_evidence() {
    let s = setup(7);
    assert_eq!(post(&s.router, s.log.body(0, 7)).await.status, StatusCode::OK);
    let stored = get(&s.router, &format!("/checkpoint/{ORIGIN}")).await.body;
    // The same log key signs another tree of the same size: a fork.
    let mut fork = TestLog::new(ORIGIN, 1, "fork", 7);
    let request = fork.body(7, 7);
    assert_size_conflict(&post(&s.router, request.clone()).await, 7);
    let found = evidence(&s.router).await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].request.as_str(), found[0].contradicted.as_deref()),
        (request.as_str(), Some(stored.as_str()))
    );
    assert!(found[0].reason.contains("forked"), "{}", found[0].reason);
    // The fork's later checkpoints do not get cosigned either.
    fork.grow_to(9);
    assert_eq!(post(&s.router, fork.body(7, 9)).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(evidence(&s.router).await.len(), 2);
    assert!(get(&s.router, &format!("/checkpoint/{ORIGIN}")).await.body == stored, "the state did not move");
}

/// The note with one bit of its (only) signature flipped, key id untouched.
fn flip_signature_bit(note: &str) -> String {
    let (text, line) = note.split_once("\n\n").unwrap();
    let (name, b64) = line.trim_end().rsplit_once(' ').unwrap();
    let mut blob = B64.decode(b64).unwrap();
    blob[40] ^= 1;
    format!("{text}\n\n{name} {}\n", B64.encode(blob))
}

#[tokio::test]
async fn unknown_origin_is_404_and_untrusted_keys_are_403() {
    let s = setup(4);
    let other = TestLog::new("example.org/other", 1, "main", 4);
    assert_eq!(post(&s.router, other.body(0, 4)).await.status, StatusCode::NOT_FOUND);
    let impostor = TestLog::new(ORIGIN, 2, "main", 4);
    assert_eq!(post(&s.router, impostor.body(0, 4)).await.status, StatusCode::FORBIDDEN);
    // A tampered signature by the right key is no signature.
    let tampered = flip_signature_bit(&s.log.note(4));
    assert_eq!(post(&s.router, body(0, &[], &tampered)).await.status, StatusCode::FORBIDDEN, "{tampered}");
    // A bad line by the trusted key does not hide a good one after it.
    let (text, good) = s.log.note(4).split_once("\n\n").map(|(t, g)| (t.to_owned(), g.to_owned())).unwrap();
    let bad_first = format!("{}{good}", flip_signature_bit(&s.log.note(4)));
    assert!(bad_first.starts_with(&text));
    let fresh = setup(4);
    assert_eq!(post(&fresh.router, body(0, &[], &bad_first)).await.status, StatusCode::OK);
    // Unknown signatures are ignored (and not stored) when a trusted one verifies.
    let extra = impostor.note(4).split_once("\n\n").unwrap().1.replace("example.com/log", "someone.else");
    let reply = post(&s.router, format!("{}{extra}", s.log.body(0, 4))).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let stored = get(&s.router, &format!("/checkpoint/{ORIGIN}")).await.body;
    assert_eq!(stored, format!("{}{}", s.log.note(4), reply.body));
}

#[tokio::test]
async fn malformed_requests_are_400_and_oversized_413() {
    let mut s = setup(4);
    // old > size
    let reply = post(&s.router, body(5, &[], &s.log.note(4))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(reply.content_type.starts_with("application/json"));
    for garbage in [
        b"".to_vec(),
        b"hello".to_vec(),
        b"old 0\n\nnot a note\n".to_vec(),
        format!("old 00\n\n{}", s.log.note(4)).into_bytes(),
        format!("old 0\n{}", s.log.note(4)).into_bytes(),
        s.log.body(0, 4).trim_end().as_bytes().to_vec(),
        vec![0xff; 64],
    ] {
        let reply = post(&s.router, garbage.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}: {reply:?}", String::from_utf8_lossy(&garbage));
    }
    s.log.grow_to(1 << 20);
    let sixty_four = vec![Hash([3; 32]); 64];
    let reply = post(&s.router, body(1, &sixty_four, &s.log.note(1 << 20))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(reply.body.contains("63"), "{}", reply.body);
    let mut oversized = s.log.body(0, 4).into_bytes();
    oversized.resize(MAX_BODY_BYTES + 1, b'\n');
    assert_eq!(post(&s.router, oversized).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(get(&s.router, "/evidence/x").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&s.router, "/nothing").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keyfold_checkpoints_with_extension_lines_are_witnessed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = TestLog::new("keyfold.example/directory", 9, "heads", 0);
    let witness = open_witness(&dir.path().join("witness.redb"), vec![log.log_key()]);
    let router = router(witness);
    let mut old = 0;
    for epoch in [0u64, 1, 5] {
        log.grow_to(epoch + 1);
        let head = Head {
            origin: log.origin.clone(),
            suite: HashSuite::Blake3,
            epoch: Epoch(epoch),
            root: Hash([u8::try_from(epoch).unwrap(); 32]),
            previous: Hash([7; 32]),
            archive: Hash([8; 32]),
            time_ms: 1_763_900_000_000 + epoch,
            counts: HeadCounts::default(),
            next_key: None,
        };
        let checkpoint = head.checkpoint(log.tree.root(epoch + 1).unwrap());
        assert!(!checkpoint.extension.is_empty());
        let note = checkpoint.sign(&log.key);
        let reply = post(&router, body(old, &log.proof(old, epoch + 1), &note)).await;
        assert_eq!(reply.status, StatusCode::OK, "epoch {epoch}: {reply:?}");
        check_cosignature_from_the_spec(&reply.body, &checkpoint.text());
        keyfold_core::verify_checkpoint_note(
            &format!("{note}{}", reply.body),
            &log.origin,
            log.key.verifying_key().as_bytes(),
        )
        .unwrap();
        old = epoch + 1;
    }
}

#[tokio::test]
async fn evidence_is_bounded_and_keeps_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = TestLog::new(ORIGIN, 1, "main", 2);
    let store = keyfold_witness::WitnessStore::open_with(&dir.path().join("witness.redb"), 3).unwrap();
    let config = keyfold_witness::WitnessConfig {
        name: WITNESS_NAME.into(),
        signing_key: witness_key(),
        logs: vec![log.log_key()],
    };
    let router = router(std::sync::Arc::new(keyfold_witness::Witness::new(config, store).unwrap()));
    assert_eq!(post(&router, log.body(0, 2)).await.status, StatusCode::OK);
    let mut requests = Vec::new();
    for size in 3..8 {
        log.grow_to(size);
        let mut proof = log.proof(2, size);
        proof[0].0[0] ^= 1;
        let request = body(2, &proof, &log.note(size));
        assert_eq!(post(&router, request.clone()).await.status, StatusCode::UNPROCESSABLE_ENTITY);
        requests.push(request);
    }
    let counts: serde_json::Value = serde_json::from_str(&get(&router, "/evidence").await.body).unwrap();
    assert_eq!((counts["recorded"].as_u64(), counts["dropped"].as_u64()), (Some(3), Some(2)), "{counts}");
    let kept: Vec<String> = evidence(&router).await.into_iter().map(|e| e.request).collect();
    assert_eq!(kept, requests[..3], "the oldest are kept");
}
