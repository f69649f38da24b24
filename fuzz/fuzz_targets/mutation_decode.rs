//! Queue entries and mutations from arbitrary bytes: never a panic; whatever decodes re-encodes to
//! the same bytes (the encoding is canonical, so ids are unambiguous).
#![no_main]

use keyfold_core::Mutation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Mutation::decode(data) {
        assert_eq!(m.encode(), data, "a decoded mutation re-encodes to its bytes");
    }
    if let Ok(entry) = keyfold_ingest::decode_entry(data) {
        assert_eq!(keyfold_ingest::encode_entry(&entry), data, "a decoded entry re-encodes to its bytes");
    }
});
