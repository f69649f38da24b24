//! C2SP tlog-checkpoints (SPEC section 6.2): the signed tree head of the log of map heads, and
//! C2SP verifier keys (`name+hexid+base64`).
//!
//! A checkpoint's text is the origin, the tree size, the base64 RFC 6962 root and optional
//! extension lines. Keyfold's checkpoint for epoch E has size E + 1 (leaf E is the map head of
//! epoch E, [`Head::body`]) and carries that map head's lines after its origin as extension lines,
//! so the latest map head arrives with the checkpoint. [`Checkpoint`] knows nothing of Keyfold; a
//! witness uses it alone. [`verify_head_note`] checks the signature and the head together.

use crate::head::{ED25519_SIGNATURE_TYPE, Head, HeadError, key_id, signature_line, split_note};
use crate::log;
use crate::types::{Epoch, Hash};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Longest checkpoint text parsed (the origin, two numbers, a hash and a map head fit in 1 KiB).
pub const MAX_CHECKPOINT_TEXT_BYTES: usize = 4096;

/// A C2SP tlog-checkpoint's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    /// Leaves in the log.
    pub size: u64,
    /// RFC 6962 Merkle tree hash of the log's first `size` leaves.
    pub root: Hash,
    /// Empty, or non-empty lines each ending in `\n`.
    pub extension: String,
}

fn malformed(what: impl Into<String>) -> HeadError {
    HeadError::Malformed(what.into())
}

impl Checkpoint {
    /// The note text: origin, size, root, extension lines, each line ending in `\n`.
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}\n{}", self.origin, self.size, B64.encode(self.root.0), self.extension)
    }

    /// Parses a checkpoint text strictly (C2SP tlog-checkpoint): at least three lines, the origin a
    /// key name (SPEC section 6.1), the size in canonical decimal, the root canonical base64 of 32
    /// bytes, every extension line non-empty, and a final newline.
    pub fn parse(text: &str) -> Result<Checkpoint, HeadError> {
        if text.len() > MAX_CHECKPOINT_TEXT_BYTES {
            return Err(malformed(format!("a checkpoint is at most {MAX_CHECKPOINT_TEXT_BYTES} bytes")));
        }
        let body = text.strip_suffix('\n').ok_or_else(|| malformed("a checkpoint ends in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(malformed("a checkpoint has an origin, a size and a root line"));
        };
        crate::head::check_origin(origin)?;
        let size = crate::head::number(size, "tree size")?;
        let root = crate::head::b64_hash(root, "root hash")?;
        let mut extension = String::new();
        for line in lines {
            if line.is_empty() {
                return Err(malformed("an extension line is empty"));
            }
            extension.push_str(line);
            extension.push('\n');
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root, extension })
    }

    /// The signed note: text, blank line, the directory's signature line (SPEC section 6.2).
    pub fn sign(&self, key: &SigningKey) -> String {
        let text = self.text();
        let signature = key.sign(text.as_bytes());
        format!("{text}\n{}", signature_line(&self.origin, &key.verifying_key(), &signature))
    }
}

impl Head {
    /// The log leaf of this map head: its body (SPEC section 6.1), hashed as an RFC 6962 leaf.
    pub fn leaf_hash(&self) -> Hash {
        log::leaf_hash(self.body().as_bytes())
    }

    /// The checkpoint of the log whose last leaf is this head: size epoch + 1, root `log_root`,
    /// and the head's body after its origin line as extension lines.
    pub fn checkpoint(&self, log_root: Hash) -> Checkpoint {
        let body = self.body();
        let extension = body.split_once('\n').map_or("", |(_, rest)| rest).to_owned();
        Checkpoint { origin: self.origin.clone(), size: self.epoch.0 + 1, root: log_root, extension }
    }

    /// The map head a Keyfold checkpoint carries: its origin line and extension lines, which must
    /// name epoch size - 1.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Head, HeadError> {
        let head = Head::parse_body(&format!("{}\n{}", checkpoint.origin, checkpoint.extension))?;
        if checkpoint.size != head.epoch.0.saturating_add(1) || head.epoch == Epoch(u64::MAX) {
            return Err(malformed(format!(
                "a checkpoint of size {} carries the map head of epoch {} (its last leaf is epoch size - 1)",
                checkpoint.size, head.epoch
            )));
        }
        Ok(head)
    }

    /// This head signed as the checkpoint of the log with root `log_root` (SPEC section 6.2).
    pub fn sign(&self, key: &SigningKey, log_root: Hash) -> String {
        self.checkpoint(log_root).sign(key)
    }
}

/// A verified Keyfold checkpoint: the log's size and root and the map head it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub checkpoint: Checkpoint,
    pub head: Head,
}

/// Verifies a signed note's signature by `origin` under `public_key` (ed25519, type 0x01) and
/// returns its text; other signature lines (cosignatures, other keys) are ignored.
pub fn verify_note_signature<'a>(note: &'a str, origin: &str, public_key: &[u8; 32]) -> Result<&'a str, HeadError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| HeadError::InvalidPublicKey)?;
    let (text, signatures) = split_note(note)?;
    let id = key_id(origin, &key);
    let found = signatures.iter().find(|s| s.name == origin && s.key_id == id);
    let found =
        found.ok_or_else(|| HeadError::MissingSignature { origin: origin.to_owned(), key_id: hex::encode(id) })?;
    let sig_bytes: [u8; 64] =
        found.signature.as_slice().try_into().map_err(|_| HeadError::BadSignature(origin.to_owned()))?;
    key.verify_strict(text.as_bytes(), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| HeadError::BadSignature(origin.to_owned()))?;
    Ok(text)
}

/// Verifies a Keyfold checkpoint note (signature, checkpoint text, the map head in its extension
/// lines, origin) against the pinned origin and public key.
pub fn verify_checkpoint_note(note: &str, origin: &str, public_key: &[u8; 32]) -> Result<SignedHead, HeadError> {
    let text = verify_note_signature(note, origin, public_key)?;
    let checkpoint = Checkpoint::parse(text)?;
    if checkpoint.origin != origin {
        return Err(HeadError::OriginMismatch { expected: origin.to_owned(), found: checkpoint.origin });
    }
    let head = Head::from_checkpoint(&checkpoint)?;
    Ok(SignedHead { checkpoint, head })
}

/// [`verify_checkpoint_note`], keeping only the map head.
pub fn verify_head_note(note: &str, origin: &str, public_key: &[u8; 32]) -> Result<Head, HeadError> {
    Ok(verify_checkpoint_note(note, origin, public_key)?.head)
}

/// The unverified checkpoint of a signed note: for reading its size (and so its epoch) before
/// knowing which key must have signed it.
pub fn peek_checkpoint(note: &str) -> Result<Checkpoint, HeadError> {
    Checkpoint::parse(split_note(note)?.0)
}

impl SignedHead {
    /// The key that signs the heads after this one: the announced next key, or `signer`.
    pub fn next_signer(&self, signer: &[u8; 32]) -> [u8; 32] {
        self.head.next_key.map_or(*signer, |key| key.to_bytes())
    }
}

/// Key rollover (SPEC section 6.6): the key that signs the head of epoch `epoch`, starting from
/// `pinned` and following `announcements` (signed checkpoint notes whose heads carry `next-key`,
/// ascending by epoch). Each announcement before `epoch` must verify with the key in effect at
/// its epoch and hands over to the key it names; announcements at `epoch` or later are skipped.
pub fn key_after_rollovers(
    origin: &str,
    pinned: &[u8; 32],
    announcements: &[String],
    epoch: Epoch,
) -> Result<[u8; 32], HeadError> {
    let mut key = *pinned;
    let mut last = None;
    for note in announcements {
        let at = Head::from_checkpoint(&peek_checkpoint(note)?)?.epoch;
        if last.is_some_and(|last| at <= last) {
            return Err(malformed(format!("the key rollover at epoch {at} is listed after a later one")));
        }
        last = Some(at);
        if at >= epoch {
            continue;
        }
        let signed = verify_checkpoint_note(note, origin, &key)?;
        let next = signed.head.next_key.ok_or_else(|| malformed(format!("the head of epoch {at} announces no key")))?;
        key = next.to_bytes();
    }
    Ok(key)
}

/// The C2SP verifier key of an ed25519 signer: `name+<key id, 8 hex digits>+base64(0x01 || key)`.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    let mut blob = vec![ED25519_SIGNATURE_TYPE];
    blob.extend_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex::encode(key_id(name, key)), B64.encode(blob))
}

/// Parses a C2SP ed25519 verifier key; the key id must match the name and key.
pub fn parse_vkey(vkey: &str) -> Result<(String, VerifyingKey), HeadError> {
    parse_typed_vkey(vkey, ED25519_SIGNATURE_TYPE, key_id, "0x01 (ed25519)")
}

/// Parses a C2SP verifier key `name+hexid+base64(type || key)` whose type byte must be
/// `signature_type` (`type_name` in errors) and whose id must be `key_id(name, key)`: a key of
/// another type (a cosigner's 0x04 where a signer's 0x01 is expected, say) is refused, since the
/// two sign different messages under different ids.
pub(crate) fn parse_typed_vkey(
    vkey: &str,
    signature_type: u8,
    key_id: fn(&str, &VerifyingKey) -> [u8; 4],
    type_name: &str,
) -> Result<(String, VerifyingKey), HeadError> {
    let bad = |why: &str| malformed(format!("not a C2SP {type_name} verifier key (name+hexid+base64): {why}"));
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id), Some(blob)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected three parts separated by '+'"));
    };
    if !crate::head::is_key_name(name) {
        return Err(bad("the name is not a key name"));
    }
    let blob = B64.decode(blob).map_err(|_| bad("the key is not base64"))?;
    let key = match blob.split_first() {
        Some((&found, key)) if found == signature_type => key,
        _ => return Err(bad(&format!("the key type is not {type_name}"))),
    };
    let key: [u8; 32] = key.try_into().map_err(|_| bad("an ed25519 key is 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| HeadError::InvalidPublicKey)?;
    if id.len() != 8 || hex::encode(key_id(name, &key)) != id {
        return Err(bad("the key id does not match the name and key"));
    }
    Ok((name.to_owned(), key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::tests::head;

    #[test]
    fn checkpoint_carries_the_head_and_round_trips() {
        let checkpoint = head().checkpoint(Hash([9; 32]));
        assert!(checkpoint.text().starts_with("example.com/keyfold\n43\nCQkJ"));
        assert_eq!(Checkpoint::parse(&checkpoint.text()).unwrap(), checkpoint);
        assert_eq!(Head::from_checkpoint(&checkpoint).unwrap(), head());
        let wrong_size = Checkpoint { size: 42, ..checkpoint.clone() };
        assert!(Head::from_checkpoint(&wrong_size).is_err());
        for bad in ["a\n1\n", "a\n01\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n", "a\n1\nCQkJ\n"] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
        let empty_extension_line = format!("{}\nx\n", checkpoint.text().trim_end());
        assert!(Checkpoint::parse(&empty_extension_line.replace("\nx\n", "\n\nx\n")).is_err());
    }

    #[test]
    fn sign_verify_and_reject_tampering() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let note = head().sign(&key, Hash([9; 32]));
        let signed = verify_checkpoint_note(&note, "example.com/keyfold", &public).unwrap();
        assert_eq!((signed.head, signed.checkpoint.size, signed.checkpoint.root), (head(), 43, Hash([9; 32])));
        assert!(matches!(verify_head_note(&note, "other.org", &public), Err(HeadError::MissingSignature { .. })));
        for i in 0..note.len() {
            let mut bytes = note.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            if let Ok(s) = String::from_utf8(bytes) {
                assert!(verify_head_note(&s, "example.com/keyfold", &public).is_err(), "byte {i} flipped was accepted");
            }
        }
    }

    #[test]
    fn vkeys_round_trip_and_check_their_id() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let v = vkey("example.com/keyfold", &key);
        assert_eq!(parse_vkey(&v).unwrap(), ("example.com/keyfold".to_owned(), key));
        assert!(parse_vkey(&v.replacen("example.com", "example.org", 1)).is_err(), "id of another name");
        assert!(parse_vkey("example.com/keyfold+00000000+AQ==").is_err());
    }
}
