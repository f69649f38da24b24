//! The RFC 6962 log against public vectors: transparency-dev/merkle's inclusion and consistency
//! test data (`tests/vectors/transparency-dev-merkle/`, see its SOURCE.txt and LICENSE), and the
//! RFC 6962 reference tree of 8 leaves with its roots.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::Hash;
use keyfold_core::log::{self, LogError};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Files under testdata/inclusion and testdata/consistency at the pinned commit (SOURCE.txt).
const INCLUSION_FILES: usize = 98;
const CONSISTENCY_FILES: usize = 98;
/// Of those, the ones with `"wantErr": false`.
const INCLUSION_VALID: usize = 6;
const CONSISTENCY_VALID: usize = 6;
/// Inclusion vectors whose leaf hash is not 32 bytes ("" or "WrongLeaf"): rejected for the type.
const ODD_SIZED_LEAF_HASHES: usize = 11;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InclusionVector {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsistencyVector {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

fn testdata(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/transparency-dev-merkle/testdata").join(kind)
}

/// Every `.json` file under `dir`, recursively, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A vector's base64 value as a [`Hash`]. The Go verifier takes byte slices, and some vectors pass
/// values that are not 32 bytes ("", "WrongLeaf", "don't care 1"); our API cannot even hold those.
/// A root or proof hash of another length maps to a deterministic stand-in hash, so that the
/// verifier itself (not this decoding) has to reject the vector: equal values stay equal, and one
/// valid vector (sizes equal, both roots "don't care 2") depends on that. A leaf hash of another
/// length is the one case the Go verifier rejects for its size; see [`inclusion_vectors`].
fn to_hash(b64: &str, odd_sized: &mut usize) -> Hash {
    let bytes = B64.decode(b64).unwrap();
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(h) => Hash(h),
        Err(_) => {
            *odd_sized += 1;
            let mut h = Sha256::new();
            h.update(b"keyfold test stand-in for a value that is not 32 bytes:");
            h.update(&bytes);
            Hash(h.finalize().into())
        }
    }
}

fn to_proof(proof: Option<&Vec<String>>, odd_sized: &mut usize) -> Vec<Hash> {
    proof.map(|p| p.iter().map(|h| to_hash(h, odd_sized)).collect()).unwrap_or_default()
}

fn reason(e: &LogError) -> &'static str {
    match e {
        LogError::IndexOutOfRange { .. } => "index",
        LogError::SizesOutOfOrder { .. } => "order",
        LogError::SizeExceedsLeaves { .. } => "leaves",
        LogError::EmptyOldTree { .. } => "empty-old",
        LogError::WrongProofLength { .. } => "length",
        LogError::RootMismatch { .. } => "root",
        LogError::SameSizeDifferentRoots { .. } => "fork",
    }
}

/// The rejection reason a vector's description implies, where it implies exactly one. Vectors
/// that change an index or size may fail on range, proof length or root, so they are not pinned.
fn expected_reason(desc: &str) -> Option<&'static str> {
    let length =
        ["garbage", "trailing", "preceding", "component", "empty proof", "proof is empty", "truncated", "not empty"];
    if desc.contains("is greater than") {
        Some("order")
    } else if desc.contains("size1 is zero") || desc.contains("(zero)") || desc.ends_with("sizes are zero") {
        Some("empty-old")
    } else if length.iter().any(|w| desc.contains(w)) {
        Some("length")
    } else if ["modified proof", "wrong", "random root", "swapped roots"].iter().any(|w| desc.starts_with(w)) {
        Some("root")
    } else if desc.contains("sizes are one") || desc.contains("(one) but") {
        Some("fork")
    } else {
        None
    }
}

fn check_outcome(path: &Path, desc: &str, want_err: bool, got: Result<(), LogError>) {
    match (want_err, got) {
        (false, Ok(())) => {}
        (false, Err(e)) => panic!("{}: valid vector ({desc}) rejected: {e}", path.display()),
        (true, Ok(())) => panic!("{}: invalid vector ({desc}) accepted", path.display()),
        (true, Err(e)) => {
            assert!(!e.to_string().is_empty());
            if let Some(want) = expected_reason(desc) {
                assert_eq!(reason(&e), want, "{}: {desc}: rejected for the wrong reason: {e}", path.display());
            }
        }
    }
}

// The RFC 6962 reference tree, from transparency-dev/merkle `proof/verify_test.go` (variables
// `leaves` and `roots`; read at commit 02194e9afb6c1d95b5381350007963aa70fff472).
const REFERENCE_LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
const REFERENCE_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn reference_leaf_hashes() -> Vec<Hash> {
    REFERENCE_LEAVES.iter().map(|l| log::leaf_hash(&hex::decode(l).unwrap())).collect()
}

/// The reference root of `size` leaves, if `size` is 1..=8.
fn reference_root(size: u64) -> Option<Hash> {
    let i = usize::try_from(size).ok()?.checked_sub(1)?;
    REFERENCE_ROOTS.get(i).map(|h| Hash(hex::decode(h).unwrap().try_into().unwrap()))
}

#[test]
fn reference_tree_roots() {
    let leaves = reference_leaf_hashes();
    for size in 1..=8u64 {
        let n = usize::try_from(size).unwrap();
        assert_eq!(Some(log::root(&leaves[..n])), reference_root(size), "root of the first {size} leaves");
    }
    assert_eq!(log::root(&[]).to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn inclusion_vectors() {
    let files = json_files(&testdata("inclusion"));
    assert_eq!(files.len(), INCLUSION_FILES, "inclusion vector files");
    let leaves = reference_leaf_hashes();
    let (mut valid, mut odd_sized, mut compared, mut odd_leaf) = (0, 0, 0, 0);
    for path in &files {
        let v: InclusionVector = load(path);
        // Go's VerifyInclusion rejects a leaf hash that is not 32 bytes before anything else ("leafHash
        // has unexpected size"); our `&Hash` argument cannot be one, so the vector is rejected here.
        let Ok(leaf) = <[u8; 32]>::try_from(B64.decode(&v.leaf_hash).unwrap()) else {
            assert!(v.want_err, "{}: a leaf hash that is not 32 bytes cannot be valid", path.display());
            odd_leaf += 1;
            continue;
        };
        let (root, leaf) = (to_hash(&v.root, &mut odd_sized), Hash(leaf));
        let proof = to_proof(v.proof.as_ref(), &mut odd_sized);
        let got = log::verify_inclusion(&leaf, v.leaf_idx, v.tree_size, &proof, &root);
        check_outcome(path, &v.desc, v.want_err, got);
        valid += usize::from(!v.want_err);
        // A valid proof on the reference tree must also be what our generator produces.
        if !v.want_err && reference_root(v.tree_size) == Some(root) {
            let n = usize::try_from(v.tree_size).unwrap();
            assert_eq!(log::inclusion_proof(&leaves[..n], v.leaf_idx).unwrap(), proof, "{}", path.display());
            compared += 1;
        }
    }
    assert_eq!(valid, INCLUSION_VALID, "valid inclusion vectors");
    assert_eq!(compared, 5, "valid inclusion vectors on the reference tree");
    assert_eq!(odd_leaf, ODD_SIZED_LEAF_HASHES, "vectors whose leaf hash is not 32 bytes");
    assert!(odd_sized > 0, "the vectors include roots or proof hashes that are not 32 bytes");
}

#[test]
fn consistency_vectors() {
    let files = json_files(&testdata("consistency"));
    assert_eq!(files.len(), CONSISTENCY_FILES, "consistency vector files");
    let leaves = reference_leaf_hashes();
    let (mut valid, mut odd_sized, mut compared) = (0, 0, 0);
    for path in &files {
        let v: ConsistencyVector = load(path);
        let root1 = to_hash(&v.root1, &mut odd_sized);
        let root2 = to_hash(&v.root2, &mut odd_sized);
        let proof = to_proof(v.proof.as_ref(), &mut odd_sized);
        let got = log::verify_consistency(v.size1, v.size2, &root1, &root2, &proof);
        check_outcome(path, &v.desc, v.want_err, got);
        valid += usize::from(!v.want_err);
        let on_reference = reference_root(v.size1) == Some(root1) && reference_root(v.size2) == Some(root2);
        if !v.want_err && on_reference {
            let n = usize::try_from(v.size2).unwrap();
            let generated = log::consistency_proof(&leaves[..n], v.size1, v.size2).unwrap();
            assert_eq!(generated, proof, "{}", path.display());
            compared += 1;
        }
    }
    assert_eq!(valid, CONSISTENCY_VALID, "valid consistency vectors");
    assert_eq!(compared, 5, "valid consistency vectors on the reference tree");
    assert!(odd_sized > 0, "the vectors include values that are not 32 bytes");
}
