//! Shared by the witness's tests: a real RFC 6962 log (keyfold_core::LogTree) that signs C2SP
//! checkpoints, a witness on a real redb file, and HTTP through the real router.
#![allow(dead_code)] // each test binary uses a different part

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::BodyExt;
use keyfold_core::{Checkpoint, Hash, LogTree, SigningKey, log};
use keyfold_witness::{LogKey, Witness, WitnessConfig, WitnessStore};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

pub const ORIGIN: &str = "example.com/log";
pub const WITNESS_NAME: &str = "witness.example/w1";

pub fn witness_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// A log: its leaves (leaf i is "<tag> leaf i") and its key.
pub struct TestLog {
    pub origin: String,
    pub key: SigningKey,
    pub tree: LogTree,
    tag: String,
}

impl TestLog {
    /// A log of `size` leaves; logs with another `tag` share no leaves (a fork).
    pub fn new(origin: &str, key_seed: u8, tag: &str, size: u64) -> TestLog {
        let mut log = TestLog {
            origin: origin.to_owned(),
            key: SigningKey::from_bytes(&[key_seed; 32]),
            tree: LogTree::new(),
            tag: tag.to_owned(),
        };
        log.grow_to(size);
        log
    }

    pub fn grow_to(&mut self, size: u64) {
        while self.tree.size() < size {
            let leaf = format!("{} leaf {}", self.tag, self.tree.size());
            self.tree.push(log::leaf_hash(leaf.as_bytes()));
        }
    }

    pub fn log_key(&self) -> LogKey {
        LogKey { origin: self.origin.clone(), name: self.origin.clone(), key: self.key.verifying_key() }
    }

    pub fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint { origin: self.origin.clone(), size, root: self.tree.root(size).unwrap(), extension: String::new() }
    }

    pub fn note(&self, size: u64) -> String {
        self.checkpoint(size).sign(&self.key)
    }

    /// The RFC 6962 proof the spec asks for: empty from 0 or between equal sizes.
    pub fn proof(&self, old: u64, size: u64) -> Vec<Hash> {
        if old == 0 || old == size { Vec::new() } else { self.tree.consistency_proof(old, size).unwrap() }
    }

    /// A correct add-checkpoint body from `old` to `size`.
    pub fn body(&self, old: u64, size: u64) -> String {
        body(old, &self.proof(old, size), &self.note(size))
    }
}

/// An add-checkpoint body: `old <old>`, the proof lines, an empty line, the note.
pub fn body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut out = format!("old {old}\n");
    for hash in proof {
        out.push_str(&B64.encode(hash.0));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(note);
    out
}

pub fn open_witness(path: &Path, logs: Vec<LogKey>) -> Arc<Witness> {
    let config = WitnessConfig { name: WITNESS_NAME.into(), signing_key: witness_key(), logs };
    Arc::new(Witness::new(config, WitnessStore::open(path).unwrap()).unwrap())
}

/// A response: status, content type, body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

async fn send(router: &axum::Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, content_type, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

pub async fn post(router: &axum::Router, body: impl Into<Vec<u8>>) -> Reply {
    let request = Request::post("/add-checkpoint").body(Body::from(body.into())).unwrap();
    send(router, request).await
}

pub async fn get(router: &axum::Router, path: &str) -> Reply {
    send(router, Request::get(path).body(Body::empty()).unwrap()).await
}
