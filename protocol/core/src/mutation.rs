//! Mutations: the canonical encoding (SPEC.md "Mutations") and the mutation id.
//!
//! The id is the hash of the canonical encoding, so an exact duplicate (same key, value,
//! expected version and signature) has the same id wherever and whenever it was submitted.

use crate::error::DecodeError;
use crate::hash::HashSuite;
use crate::types::Hash;
use crate::types::Version;

/// The only mutation encoding version this crate produces and accepts.
pub const MUTATION_FORMAT_V1: u8 = 1;

/// A request to set a key's value (or delete it, keeping its version history).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mutation {
    pub key: Vec<u8>,
    /// The new value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The version the key must have for the mutation to apply; 0 = the key must not exist.
    pub expected_version: Version,
    /// Reserved for owner-signed mutations: carried and hashed, not yet verified.
    pub owner_signature: Option<Vec<u8>>,
}

/// The hash of a mutation's canonical encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MutationId(pub Hash);

impl MutationId {
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

impl Mutation {
    /// Canonical encoding: `format (1) || key length (2) || key || expected version (8) ||
    /// value tag (1) [|| value length (4) || value] || signature tag (1) [|| length (2) || signature]`.
    /// Panics if the key is longer than 65,535 bytes, the value longer than 4 GiB or the signature
    /// longer than 65,535 bytes; validation (in `ingest`) rejects those long before.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// [`Mutation::encode`] into `out` (cleared first), so a caller encoding many mutations
    /// reuses one buffer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let value_len = self.value.as_ref().map_or(0, Vec::len);
        let sig_len = self.owner_signature.as_ref().map_or(0, Vec::len);
        out.clear();
        out.reserve(18 + self.key.len() + value_len + sig_len);
        out.push(MUTATION_FORMAT_V1);
        out.extend_from_slice(&u16::try_from(self.key.len()).expect("key <= 65535 bytes").to_be_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.expected_version.0.to_be_bytes());
        match &self.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&u32::try_from(v.len()).expect("value < 4 GiB").to_be_bytes());
                out.extend_from_slice(v);
            }
        }
        match &self.owner_signature {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&u16::try_from(s.len()).expect("signature <= 65535 bytes").to_be_bytes());
                out.extend_from_slice(s);
            }
        }
    }

    /// Decodes a canonical encoding; rejects truncation, unknown tags and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Mutation, DecodeError> {
        let mut pos = 0usize;
        let mut take = |n: usize, field: &'static str| -> Result<&[u8], DecodeError> {
            let end = pos.checked_add(n).filter(|e| *e <= bytes.len());
            let end = end.ok_or(DecodeError::Truncated { field, len: bytes.len() })?;
            let out = &bytes[pos..end];
            pos = end;
            Ok(out)
        };
        let format = take(1, "format")?[0];
        if format != MUTATION_FORMAT_V1 {
            return Err(DecodeError::UnsupportedFormat(format));
        }
        let key_len = usize::from(u16::from_be_bytes(take(2, "key length")?.try_into().expect("2")));
        let key = take(key_len, "key")?.to_vec();
        let expected_version = Version(u64::from_be_bytes(take(8, "expected version")?.try_into().expect("8")));
        let value = match take(1, "value tag")?[0] {
            0 => None,
            1 => {
                let len = u32::from_be_bytes(take(4, "value length")?.try_into().expect("4")) as usize;
                Some(take(len, "value")?.to_vec())
            }
            _ => return Err(DecodeError::NonCanonical("value tag must be 0 (tombstone) or 1 (value)")),
        };
        let owner_signature = match take(1, "signature tag")?[0] {
            0 => None,
            1 => {
                let len = usize::from(u16::from_be_bytes(take(2, "signature length")?.try_into().expect("2")));
                Some(take(len, "signature")?.to_vec())
            }
            _ => return Err(DecodeError::NonCanonical("signature tag must be 0 (none) or 1 (present)")),
        };
        if pos != bytes.len() {
            return Err(DecodeError::TrailingBytes { extra: bytes.len() - pos });
        }
        Ok(Mutation { key, value, expected_version, owner_signature })
    }

    /// The mutation id under `suite` (SPEC.md "Mutations").
    pub fn id(&self, suite: HashSuite) -> MutationId {
        MutationId(suite.mutation_id(&self.encode()))
    }

    /// [`Mutation::id`], encoding into `buffer` (reused across calls).
    pub fn id_with(&self, suite: HashSuite, buffer: &mut Vec<u8>) -> MutationId {
        self.encode_into(buffer);
        MutationId(suite.mutation_id(buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Mutation> {
        vec![
            Mutation {
                key: b"alice".to_vec(),
                value: Some(b"pk".to_vec()),
                expected_version: Version(0),
                owner_signature: None,
            },
            Mutation {
                key: b"bob".to_vec(),
                value: None,
                expected_version: Version(7),
                owner_signature: Some(vec![9; 64]),
            },
            Mutation {
                key: vec![0xff; 300],
                value: Some(vec![]),
                expected_version: Version(u64::MAX),
                owner_signature: None,
            },
        ]
    }

    #[test]
    fn round_trip_and_rejects_malformed() {
        for m in sample() {
            let bytes = m.encode();
            assert_eq!(Mutation::decode(&bytes).unwrap(), m);
            for len in 0..bytes.len() {
                assert!(Mutation::decode(&bytes[..len]).is_err(), "truncated to {len}");
            }
            let mut extended = bytes.clone();
            extended.push(0);
            assert!(matches!(Mutation::decode(&extended), Err(DecodeError::TrailingBytes { extra: 1 })));
        }
        let mut bad = sample()[0].encode();
        bad[0] = 2;
        assert!(matches!(Mutation::decode(&bad), Err(DecodeError::UnsupportedFormat(2))));
    }

    #[test]
    fn ids_separate_every_field_and_suite() {
        let base = sample()[0].clone();
        let mut variants = vec![base.clone()];
        let mut m = base.clone();
        m.key.push(b'x');
        variants.push(m);
        let mut m = base.clone();
        m.value = None;
        variants.push(m);
        let mut m = base.clone();
        m.expected_version = Version(1);
        variants.push(m);
        let mut m = base.clone();
        m.owner_signature = Some(vec![]);
        variants.push(m);
        let ids: std::collections::BTreeSet<_> = variants.iter().map(|m| m.id(HashSuite::Blake3)).collect();
        assert_eq!(ids.len(), variants.len());
        assert_ne!(base.id(HashSuite::Blake3).0, base.id(HashSuite::Sha256).0);
        assert_eq!(base.id(HashSuite::Blake3), base.clone().id(HashSuite::Blake3), "ids are deterministic");
    }
}
