//! Map heads: the head body (SPEC.md section 6.1), the leaf the epoch appends to the log of heads,
//! its hash (the chain link), and the C2SP signed-note envelope's signature lines. The head is
//! signed inside a checkpoint ([`crate::checkpoint`]); a client verifies it with only the
//! directory's origin and public key: [`crate::verify_head_note`].

use crate::hash::HashSuite;
use crate::types::Epoch;
use crate::types::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The optional ninth line of a head body: the key that signs the heads after it.
const NEXT_KEY_PREFIX: &str = "next-key ";
/// The head format line: names the format and the suite.
const FORMAT_LINE_PREFIX: &str = "keyfold map v1 ";
/// C2SP signed-note signature type for ed25519.
pub(crate) const ED25519_SIGNATURE_TYPE: u8 = 0x01;
/// Longest origin accepted.
pub const MAX_ORIGIN_BYTES: usize = 255;

/// How many mutations an epoch consumed, and what became of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadCounts {
    pub mutations: u64,
    pub applied: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

/// What the directory signs once per epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub origin: String,
    pub suite: HashSuite,
    pub epoch: Epoch,
    pub root: Hash,
    /// Hash of the previous epoch's head ([`Head::hash`]); all zero for epoch 0.
    pub previous: Hash,
    /// Digest of the epoch's archive (SPEC.md section 7); all zero for the genesis head (epoch 0).
    pub archive: Hash,
    /// The epoch's time (milliseconds since the Unix epoch), taken from the queue marker.
    pub time_ms: u64,
    pub counts: HeadCounts,
    /// Key rollover (SPEC section 6.6): the key that signs the heads after this one, announced by
    /// the key that signs this one. `None` in every head but the announcement.
    pub next_key: Option<VerifyingKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeadError {
    #[error(
        "the origin must be 1 to {MAX_ORIGIN_BYTES} printable ASCII characters without spaces or '+' (a C2SP \
         signed-note key name, e.g. example.com/keyfold)"
    )]
    InvalidOrigin,
    #[error("malformed head: {0}")]
    Malformed(String),
    #[error("the note has no signature by {origin} with key id {key_id}")]
    MissingSignature { origin: String, key_id: String },
    #[error("the signature by {0} does not verify against the pinned public key")]
    BadSignature(String),
    #[error("the head is for origin {found:?}, expected {expected:?}")]
    OriginMismatch { expected: String, found: String },
    #[error("invalid ed25519 public key")]
    InvalidPublicKey,
    #[error("the cosignature by {witness} is invalid: {reason}")]
    BadCosignature { witness: String, reason: String },
    #[error("{found} of the required {required} witnesses cosigned this head ({detail})")]
    NotEnoughWitnesses { required: usize, found: usize, detail: String },
}

/// Checks the origin rule (SPEC section 6.1; [`is_key_name`]).
pub fn check_origin(origin: &str) -> Result<(), HeadError> {
    if is_key_name(origin) { Ok(()) } else { Err(HeadError::InvalidOrigin) }
}

/// A C2SP signed-note key name as SPEC section 6.1 narrows it: 1 to 255 bytes of printable ASCII
/// other than space (0x21..=0x7e) and without `+`, so C2SP tools accept every note Keyfold signs.
pub fn is_key_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_ORIGIN_BYTES && name.bytes().all(|b| b.is_ascii_graphic() && b != b'+')
}

fn malformed(what: impl Into<String>) -> HeadError {
    HeadError::Malformed(what.into())
}

pub(crate) fn b64_hash(s: &str, field: &str) -> Result<Hash, HeadError> {
    let bytes = B64.decode(s).map_err(|_| malformed(format!("{field} is not base64")))?;
    let array: [u8; 32] = bytes.try_into().map_err(|_| malformed(format!("{field} is not 32 bytes")))?;
    if B64.encode(array) != s {
        return Err(malformed(format!("{field} is not canonical base64")));
    }
    Ok(Hash(array))
}

pub(crate) fn number(s: &str, field: &str) -> Result<u64, HeadError> {
    let n: u64 = s.parse().map_err(|_| malformed(format!("{field} is not a number")))?;
    if n.to_string() != s {
        return Err(malformed(format!("{field} is not in canonical decimal")));
    }
    Ok(n)
}

/// The `next-key <vkey>` line: a C2SP ed25519 verifier key named after the origin.
fn parse_next_key(line: &str, origin: &str) -> Result<VerifyingKey, HeadError> {
    let vkey = line.strip_prefix(NEXT_KEY_PREFIX).ok_or_else(|| malformed("the ninth line must be next-key"))?;
    let (name, key) = crate::checkpoint::parse_vkey(vkey)?;
    if crate::checkpoint::vkey(&name, &key) != vkey {
        return Err(malformed("next-key is not in canonical form"));
    }
    if name != origin {
        return Err(malformed(format!("next-key names {name:?}, not the origin {origin:?}")));
    }
    Ok(key)
}

impl Head {
    /// The signed text: eight lines, each ending in `\n`, and a ninth, `next-key <vkey>`, in an
    /// announcement of a key rollover (SPEC section 6.1).
    pub fn body(&self) -> String {
        let c = &self.counts;
        let mut body = format!(
            "{}\n{}{}\nepoch {}\nroot {}\nprevious {}\narchive {}\ntime {}\nmutations {} applied {} rejected {} duplicates {}\n",
            self.origin,
            FORMAT_LINE_PREFIX,
            self.suite.name(),
            self.epoch.0,
            B64.encode(self.root.0),
            B64.encode(self.previous.0),
            B64.encode(self.archive.0),
            self.time_ms,
            c.mutations,
            c.applied,
            c.rejected,
            c.duplicates,
        );
        if let Some(next) = &self.next_key {
            body.push_str(&format!("{NEXT_KEY_PREFIX}{}\n", crate::checkpoint::vkey(&self.origin, next)));
        }
        body
    }

    /// Parses a body produced by [`Head::body`]; anything else (extra spaces, non-canonical
    /// numbers or base64, missing or extra lines) is rejected.
    pub fn parse_body(body: &str) -> Result<Head, HeadError> {
        let lines: Vec<&str> =
            body.strip_suffix('\n').ok_or_else(|| malformed("body must end in a newline"))?.split('\n').collect();
        let (lines, next_key) = match lines[..] {
            [ref eight @ .., last] if lines.len() == 9 => (eight, Some(last)),
            _ => (&lines[..], None),
        };
        let [origin, format, epoch, root, previous, archive, time, counts] = lines[..] else {
            return Err(malformed(format!("expected 8 lines (9 with next-key), found {}", lines.len())));
        };
        check_origin(origin)?;
        let suite_name = format.strip_prefix(FORMAT_LINE_PREFIX).ok_or_else(|| malformed("unknown head format"))?;
        let suite = HashSuite::from_name(suite_name).ok_or_else(|| malformed("unknown hash suite"))?;
        let field = |line: &str, name: &str| -> Result<String, HeadError> {
            line.strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| malformed(format!("expected the {name} line")))
        };
        let c: Vec<&str> = counts.split(' ').collect();
        let ["mutations", m, "applied", a, "rejected", r, "duplicates", d] = c[..] else {
            return Err(malformed("malformed counts line"));
        };
        let head = Head {
            origin: origin.to_owned(),
            suite,
            epoch: Epoch(number(&field(epoch, "epoch")?, "epoch")?),
            root: b64_hash(&field(root, "root")?, "root")?,
            previous: b64_hash(&field(previous, "previous")?, "previous")?,
            archive: b64_hash(&field(archive, "archive")?, "archive")?,
            time_ms: number(&field(time, "time")?, "time")?,
            counts: HeadCounts {
                mutations: number(m, "mutations")?,
                applied: number(a, "applied")?,
                rejected: number(r, "rejected")?,
                duplicates: number(d, "duplicates")?,
            },
            next_key: next_key.map(|line| parse_next_key(line, origin)).transpose()?,
        };
        debug_assert_eq!(head.body(), body);
        Ok(head)
    }

    /// The chain link: the next head's `previous` (signatures are not hashed, so cosignatures
    /// added later do not change it).
    pub fn hash(&self) -> Hash {
        self.suite.head_hash(self.body().as_bytes())
    }
}

/// The C2SP key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key).
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519_SIGNATURE_TYPE]);
    h.update(key.as_bytes());
    h.finalize()[..4].try_into().expect("4 bytes")
}

/// One signature line: `— <name> <base64(key id || signature)>\n`.
pub fn signature_line(name: &str, key: &VerifyingKey, signature: &Signature) -> String {
    let mut blob = key_id(name, key).to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    format!("\u{2014} {name} {}\n", B64.encode(blob))
}

/// One signature line of a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature<'a> {
    pub name: &'a str,
    pub key_id: [u8; 4],
    pub signature: Vec<u8>,
}

/// Splits a signed note into its text and its signature lines.
pub fn split_note(note: &str) -> Result<(&str, Vec<NoteSignature<'_>>), HeadError> {
    let split = note.find("\n\n").ok_or_else(|| malformed("no blank line between text and signatures"))?;
    let (text, rest) = (&note[..=split], &note[split + 2..]);
    let mut signatures = Vec::new();
    for line in rest.strip_suffix('\n').ok_or_else(|| malformed("signatures must end in a newline"))?.split('\n') {
        let line =
            line.strip_prefix("\u{2014} ").ok_or_else(|| malformed("a signature line starts with an em dash"))?;
        let (name, b64) = line.rsplit_once(' ').ok_or_else(|| malformed("a signature line is `— name base64`"))?;
        let blob = B64.decode(b64).map_err(|_| malformed("signature is not base64"))?;
        if blob.len() < 5 {
            return Err(malformed("signature too short"));
        }
        signatures.push(NoteSignature {
            name,
            key_id: blob[..4].try_into().expect("4 bytes"),
            signature: blob[4..].to_vec(),
        });
    }
    if signatures.is_empty() {
        return Err(malformed("no signature lines"));
    }
    Ok((text, signatures))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A head with every field set (shared by the checkpoint tests).
    pub(crate) fn head() -> Head {
        Head {
            origin: "example.com/keyfold".into(),
            suite: HashSuite::Blake3,
            epoch: Epoch(42),
            root: Hash([1; 32]),
            previous: Hash([2; 32]),
            archive: Hash([0; 32]),
            time_ms: 1_763_900_000_000,
            counts: HeadCounts { mutations: 10, applied: 7, rejected: 2, duplicates: 1 },
            next_key: None,
        }
    }

    #[test]
    fn body_round_trips_and_is_strict() {
        let h = head();
        assert_eq!(Head::parse_body(&h.body()).unwrap(), h);
        assert!(Head::parse_body(&h.body().replace("epoch 42", "epoch 042")).is_err());
        assert!(Head::parse_body(&h.body().replace("time ", "time  ")).is_err());
        assert!(Head::parse_body(&format!("{}extra\n", h.body())).is_err());
        assert!(check_origin("").is_err() && check_origin(" a").is_err() && check_origin("a\nb").is_err());
        // C2SP key names: no inner space, no '+', nothing beyond printable ASCII.
        for bad in ["key transparency", "a+b", "caf\u{e9}", "tab\there", &"x".repeat(256)] {
            assert!(check_origin(bad).is_err(), "{bad:?}");
            assert!(crate::check_witness_name(bad).is_err(), "{bad:?}");
        }
        for good in ["example.com/keyfold", "keyfold.localhost", "a", &"x".repeat(255)] {
            assert!(check_origin(good).is_ok() && crate::check_witness_name(good).is_ok(), "{good:?}");
        }
        assert_ne!(h.hash(), Head { epoch: Epoch(43), ..h.clone() }.hash());
    }

    #[test]
    fn next_key_is_a_ninth_line_named_after_the_origin() {
        let next = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        let h = Head { next_key: Some(next), ..head() };
        let body = h.body();
        let vkey = crate::checkpoint::vkey("example.com/keyfold", &next);
        assert!(body.ends_with(&format!("duplicates 1\nnext-key {vkey}\n")), "{body}");
        assert_eq!(Head::parse_body(&body).unwrap(), h);
        assert_ne!(h.hash(), head().hash());
        let other_name = crate::checkpoint::vkey("example.org", &next);
        assert!(Head::parse_body(&body.replace(&vkey, &other_name)).is_err(), "a key of another name");
        assert!(Head::parse_body(&body.replace("next-key ", "next-key  ")).is_err());
        assert!(Head::parse_body(&body.replace("next-key", "nextkey")).is_err());
        assert!(Head::parse_body(&format!("{body}next-key {vkey}\n")).is_err(), "ten lines");
    }
}
