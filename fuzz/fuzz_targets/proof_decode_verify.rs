//! Proofs from arbitrary bytes: decoding and verification never panic; whatever decodes re-encodes
//! to the same bytes; a proof that verifies against a fixed empty-map root for some key must be an
//! absence proof (the empty map holds nothing).
#![no_main]

use keyfold_core::{Epoch, HashSuite, LeafValue, MapRoot, Proof, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = Proof::decode(data) else { return };
    assert_eq!(proof.encode(), data, "a decoded proof re-encodes to its bytes");
    for suite in [HashSuite::Blake3, HashSuite::Sha256] {
        let empty = MapRoot { epoch: Epoch(1), hash: suite.empty_hash() };
        let present = LeafValue::present(Version(1), b"v".to_vec());
        assert!(proof.verify(suite, &empty, b"alice", Some(&present)).is_err(), "nothing is in the empty map");
        let _ = proof.verify(suite, &empty, b"alice", None);
    }
});
