//! Queue entries and mutations from arbitrary bytes: never a panic; whatever decodes re-encodes to
//! the same bytes (the encoding is canonical, so ids are unambiguous).
#![no_main]

use keyfold_core::Mutation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Mutation::decode(data) {
        assert_eq!(m.encode(), data, "a decoded mutation re-encodes to its bytes");
    }
    let (suite, at) = (keyfold_core::HashSuite::Blake3, keyfold_ingest::Position(1));
    if let Ok(entry) = keyfold_ingest::decode_entry(suite, at, data) {
        // Only a record whose stored id matches its bytes decodes, so re-encoding reproduces it.
        assert_eq!(keyfold_ingest::encode_entry(suite, &entry), data, "a decoded entry re-encodes to its bytes");
    }
});
