//! The log of heads over HTTP: checkpoints with consistency proofs, C2SP tiles and entry bundles,
//! lookups at past epochs proven into the latest checkpoint, and caching.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::BodyExt;
use keyfold_api::{Api, router};
use keyfold_core::tiles::parse_entry_bundle;
use keyfold_core::{Epoch, Hash, HashSuite, Head, SigningKey, log, parse_vkey, verify_checkpoint_note};
use keyfold_epoch::{EpochJob, JobKeys, MemoryHeadStore};
use keyfold_ingest::{Limits, MemoryQueue};
use keyfold_map::{Map, MemoryStore, TreeConfig};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tower::ServiceExt;

const ORIGIN: &str = "example.com/keyfold";

fn api() -> Arc<Api> {
    api_with(SigningKey::from_bytes(&[3; 32]))
}

fn api_with(keys: impl Into<JobKeys>) -> Arc<Api> {
    let config = TreeConfig::new(HashSuite::Blake3, 4).unwrap();
    let job = EpochJob::open(
        MemoryQueue::new(config.suite, 1000),
        Map::new(MemoryStore::new(config)),
        MemoryHeadStore::default(),
        Arc::new(keyfold_epoch::MemoryArchives::default()),
        keys,
        ORIGIN,
        1_000,
    )
    .unwrap();
    Arc::new(Api {
        directory: Arc::new(job),
        origin: ORIGIN.into(),
        limits: Limits::default(),
        trigger: Arc::new(AtomicBool::new(false)),
        operator_token: None,
        retry_after_secs: 2,
        metrics: None,
        witnesses: Vec::new(),
        cosignatures: Arc::new(keyfold_epoch::MemoryCosignatures::default()),
        scheduler: Arc::default(),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
    })
}

async fn call(api: &Arc<Api>, uri: &str, etag: Option<&str>) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let mut request = Request::get(uri);
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let response = router(Arc::clone(api)).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

async fn json(api: &Arc<Api>, uri: &str) -> serde_json::Value {
    let (status, _, body) = call(api, uri, None).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn hashes(value: &serde_json::Value) -> Vec<Hash> {
    let list = value.as_array().unwrap_or_else(|| panic!("not a proof: {value}"));
    list.iter().map(|h| Hash(B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())).collect()
}

fn public() -> [u8; 32] {
    SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes()
}

/// `/v1/directory` names the log and the C2SP verifier key; `/v1/checkpoint?from=` proves
/// consistency with what a client holds; the latest checkpoint is short-lived and answers 304.
#[tokio::test]
async fn checkpoints_prove_consistency_and_name_their_key() {
    let api = api();
    for epoch in 1..=4 {
        api.directory.run_epoch(1_000 + epoch * 1_000).unwrap();
    }
    let info = json(&api, "/v1/directory").await;
    let (name, key) = parse_vkey(info["vkey"].as_str().unwrap()).unwrap();
    assert_eq!((name.as_str(), key.to_bytes()), (ORIGIN, public()));
    assert_eq!(
        (info["checkpoint_url"].as_str(), info["tiles_url"].as_str()),
        (Some("/v1/log/checkpoint"), Some("/v1/log"))
    );

    let (status, headers, note) = call(&api, "/v1/log/checkpoint", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=2");
    let latest = verify_checkpoint_note(std::str::from_utf8(&note).unwrap(), ORIGIN, &public()).unwrap();
    assert_eq!((latest.checkpoint.size, latest.head.epoch), (5, Epoch(4)));
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(call(&api, "/v1/log/checkpoint", Some(&etag)).await.0, StatusCode::NOT_MODIFIED);

    // From every size a client can hold (the checkpoint of epoch from - 1) to the latest.
    for from in 1..=5u64 {
        let (_, _, old) = call(&api, &format!("/v1/heads/{}", from - 1), None).await;
        let old = verify_checkpoint_note(std::str::from_utf8(&old).unwrap(), ORIGIN, &public()).unwrap();
        assert_eq!(old.checkpoint.size, from);
        let answer = json(&api, &format!("/v1/checkpoint?from={from}")).await;
        let proof = hashes(&answer["consistency"]);
        log::verify_consistency(from, 5, &old.checkpoint.root, &latest.checkpoint.root, &proof).unwrap();
        if let Some(first) = proof.first() {
            let mut wrong = proof.clone();
            wrong[0] = Hash([first.0[0] ^ 1; 32]);
            assert!(log::verify_consistency(from, 5, &old.checkpoint.root, &latest.checkpoint.root, &wrong).is_err());
        }
    }
    // No proof from 0 or from beyond the log (that client holds a larger checkpoint: a rollback).
    for from in ["0", "6"] {
        assert!(json(&api, &format!("/v1/checkpoint?from={from}")).await.get("consistency").is_none());
    }
    assert_eq!(call(&api, "/v1/checkpoint?from=x", None).await.0, StatusCode::BAD_REQUEST);

    // A checkpoint older than the latest never changes: cached for good, 304 on its ETag; the
    // latest is short-lived.
    let (status, headers, _) = call(&api, "/v1/heads/2", None).await;
    assert_eq!(
        (status, headers[header::CACHE_CONTROL].to_str().unwrap()),
        (StatusCode::OK, "public, max-age=31536000, immutable")
    );
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(call(&api, "/v1/heads/2", Some(&etag)).await.0, StatusCode::NOT_MODIFIED);
    assert_eq!(call(&api, "/v1/heads/2", Some("\"other\"")).await.0, StatusCode::OK);
    for latest in ["/v1/heads/4", "/v1/heads/latest"] {
        let (_, headers, _) = call(&api, latest, None).await;
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=2", "{latest}");
    }
}

/// Hash tiles and entry bundles per C2SP tlog-tiles: the bundle's entries are the map heads, the
/// level-0 tile their leaf hashes, and together they give the checkpoint's root; both immutable.
#[tokio::test]
async fn tiles_and_bundles_rebuild_the_checkpoint() {
    let api = api();
    for epoch in 1..=6 {
        api.directory.run_epoch(1_000 + epoch * 1_000).unwrap();
    }
    let (_, _, note) = call(&api, "/v1/log/checkpoint", None).await;
    let latest = verify_checkpoint_note(std::str::from_utf8(&note).unwrap(), ORIGIN, &public()).unwrap();
    let (status, headers, tile) = call(&api, "/v1/log/tile/0/000.p/7", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    let leaves: Vec<Hash> = tile.chunks(32).map(|c| Hash(c.try_into().unwrap())).collect();
    assert_eq!(log::root(&leaves), latest.checkpoint.root);

    let (status, headers, bundle) = call(&api, "/v1/log/tile/entries/000.p/7", None).await;
    assert_eq!(status, StatusCode::OK);
    let entries = parse_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 7);
    for (epoch, (entry, leaf)) in entries.iter().zip(&leaves).enumerate() {
        let head = Head::parse_body(std::str::from_utf8(entry).unwrap()).unwrap();
        assert_eq!((head.epoch.0, log::leaf_hash(entry)), (epoch as u64, *leaf));
    }
    assert_eq!(Head::parse_body(std::str::from_utf8(entries[6]).unwrap()).unwrap(), latest.head);
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(call(&api, "/v1/log/tile/entries/000.p/7", Some(&etag)).await.0, StatusCode::NOT_MODIFIED);
    assert_eq!(call(&api, "/v1/log/tile/0/000.p/3", None).await.2, tile[..96], "a narrower partial tile");

    for missing in ["0/000.p/8", "0/000", "entries/000", "1/000.p/1", "0/001.p/1", "0/0.p/1", "x/000", "0/000.p/07"] {
        let (status, _, _) = call(&api, &format!("/v1/log/tile/{missing}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
}

/// A lookup at a past epoch carries the latest checkpoint and the inclusion proof of that epoch's
/// map head in it, and the consistency proof from the client's `from`.
#[tokio::test]
async fn past_lookups_prove_their_head_into_the_latest_checkpoint() {
    let api = api();
    for epoch in 1..=5 {
        api.directory.run_epoch(1_000 + epoch * 1_000).unwrap();
    }
    let answer = json(&api, "/v1/keys/alice?epoch=2&from=3").await;
    let head = verify_checkpoint_note(answer["head"].as_str().unwrap(), ORIGIN, &public()).unwrap().head;
    let latest = verify_checkpoint_note(answer["checkpoint"].as_str().unwrap(), ORIGIN, &public()).unwrap();
    assert_eq!((head.epoch, latest.checkpoint.size), (Epoch(2), 6));
    let inclusion = hashes(&answer["head_inclusion"]);
    log::verify_inclusion(&head.leaf_hash(), 2, 6, &inclusion, &latest.checkpoint.root).unwrap();
    let other = Head { time_ms: head.time_ms + 1, ..head.clone() };
    assert!(log::verify_inclusion(&other.leaf_hash(), 2, 6, &inclusion, &latest.checkpoint.root).is_err());
    let (_, _, at3) = call(&api, "/v1/heads/2", None).await;
    let at3 = verify_checkpoint_note(std::str::from_utf8(&at3).unwrap(), ORIGIN, &public()).unwrap();
    log::verify_consistency(3, 6, &at3.checkpoint.root, &latest.checkpoint.root, &hashes(&answer["consistency"]))
        .unwrap();

    let answer = json(&api, "/v1/keys/alice").await;
    assert!(answer.get("checkpoint").is_none() && answer.get("head_inclusion").is_none(), "the head is the latest");
}

/// Key rollover over HTTP (SPEC section 6.6): epoch 1 announces the next key under the first;
/// every answer lists the announcements after the client's `from` (all without it) with their
/// consistency proofs, which lead a client pinned to the first key to the new one; a lookup at a
/// past epoch signed by the first key verifies for a client pinned to either.
#[tokio::test]
async fn rollovers_after_from_lead_a_client_from_the_first_key_to_the_next() {
    let (first, next) = (SigningKey::from_bytes(&[3; 32]), SigningKey::from_bytes(&[4; 32]));
    let pinned = |key: &SigningKey| key.verifying_key().to_bytes();
    let api = api_with(JobKeys { current: first.clone(), next: Some(next.clone()), previous: None, files: None });
    for epoch in 1..=3 {
        api.directory.run_epoch(1_000 + epoch * 1_000).unwrap();
    }
    assert_eq!(api.directory.public_key(), pinned(&next));
    let listed = |answer: &serde_json::Value| answer["rollovers"].as_array().map_or(0, Vec::len);
    for (query, expected) in [("", 1), ("?from=1", 1), ("?from=2", 0), ("?from=4", 0)] {
        let answer = json(&api, &format!("/v1/checkpoint{query}")).await;
        assert_eq!(listed(&answer), expected, "{query}: {answer}");
    }
    let answer: keyfold_verify::wire::CheckpointAnswer =
        serde_json::from_value(json(&api, "/v1/checkpoint?from=1").await).unwrap();
    let rollovers = keyfold_verify::decode_rollovers(&answer.rollovers).unwrap();
    let view = keyfold_verify::View::open(None, ORIGIN, &pinned(&first), &answer.checkpoint, &rollovers).unwrap();
    assert_eq!((view.signer, view.size(), view.rollovers.len()), (pinned(&next), 4, 1));
    // Without the announcements the first key cannot reach the latest checkpoint.
    assert!(keyfold_verify::View::open(None, ORIGIN, &pinned(&first), &answer.checkpoint, &[]).is_err());
    let mut forged = rollovers.clone();
    forged[0].consistency.clear();
    assert!(keyfold_verify::View::open(None, ORIGIN, &pinned(&first), &answer.checkpoint, &forged).is_err());

    let lookup: keyfold_verify::LookupAnswer =
        serde_json::from_value(json(&api, "/v1/keys/alice?epoch=0").await).unwrap();
    for key in [&first, &next] {
        let pin = keyfold_verify::Pinned {
            origin: ORIGIN.into(),
            public_key: pinned(key),
            witnesses: keyfold_core::WitnessPolicy { witnesses: Vec::new(), required: 0 },
        };
        let verified = keyfold_verify::verify_lookup(b"alice", &lookup, &pin).unwrap();
        assert_eq!(verified.head.epoch, Epoch(0));
    }
}
