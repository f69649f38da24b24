//! Witness cosignatures on signed heads, in the C2SP tlog-cosignature format (cosignature/v1), and
//! the client policy "at least k of these n witnesses cosigned". SPEC.md section 6.3.
//!
//! A witness that verified a head (replayed its archive and checked its root and chain) signs
//!
//! ```text
//! cosignature/v1
//! time <seconds since the Unix epoch>
//! <the head note's text>
//! ```
//!
//! with ed25519, and the server appends the line `— <witness name> base64(key id (4) || time (8,
//! big-endian) || signature (64))` to the note. The key id is the first 4 bytes of
//! SHA-256(name || "\n" || 0x04 || public key): signature type 0x04 keeps a cosignature from ever
//! passing for a plain note signature (type 0x01) by the same key.

use crate::head::{HeadError, split_note};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const COSIGNATURE_TYPE: u8 = 0x04;

/// A witness a client trusts: its name (as in its cosignature lines) and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub public_key: [u8; 32],
}

/// The cosignature key id: the first 4 bytes of SHA-256(name || "\n" || 0x04 || public key).
pub fn cosignature_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([COSIGNATURE_TYPE]);
    h.update(key.as_bytes());
    h.finalize()[..4].try_into().expect("4 bytes")
}

/// A witness's C2SP cosigner verifier key (tlog-cosignature): `name+<cosignature key id, 8 hex
/// digits>+base64(0x04 || key)`. It names the key that verifies its cosignature lines, never a
/// note signer's key (type 0x01, [`crate::vkey`]).
pub fn cosignature_vkey(name: &str, key: &VerifyingKey) -> String {
    let mut blob = vec![COSIGNATURE_TYPE];
    blob.extend_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex::encode(cosignature_key_id(name, key)), B64.encode(blob))
}

/// Parses a cosigner verifier key ([`cosignature_vkey`]); its type must be 0x04 and its key id
/// match the name and key.
pub fn parse_cosignature_vkey(vkey: &str) -> Result<(String, VerifyingKey), HeadError> {
    crate::checkpoint::parse_typed_vkey(vkey, COSIGNATURE_TYPE, cosignature_key_id, "0x04 (cosignature/v1)")
}

/// The bytes a witness signs for `text` (a note's text, ending in a newline) at `time_secs`.
pub fn cosigned_message(text: &str, time_secs: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time_secs}\n{text}").into_bytes()
}

/// A witness's cosignature line on `note` (its text only is signed; any signature lines are ignored).
pub fn cosign(note: &str, name: &str, key: &SigningKey, time_secs: u64) -> Result<String, HeadError> {
    check_witness_name(name)?;
    let (text, _) = split_note(note)?;
    let signature = key.sign(&cosigned_message(text, time_secs));
    let mut blob = cosignature_key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&time_secs.to_be_bytes());
    blob.extend_from_slice(&signature.to_bytes());
    Ok(format!("\u{2014} {name} {}\n", B64.encode(blob)))
}

/// Witness names follow the origin's rule (SPEC section 6.1): C2SP key names of 1 to 255 bytes
/// of printable ASCII, no space and no `+`.
pub fn check_witness_name(name: &str) -> Result<(), HeadError> {
    if crate::head::is_key_name(name) {
        Ok(())
    } else {
        Err(HeadError::Malformed(
            "a witness name is 1 to 255 printable ASCII characters without spaces or '+' (a C2SP key name)".into(),
        ))
    }
}

/// Checks `witness`'s cosignature among the signature lines of `note`; returns its time.
pub fn verify_cosignature(note: &str, witness: &Witness) -> Result<u64, HeadError> {
    let bad = |reason: &str| HeadError::BadCosignature { witness: witness.name.clone(), reason: reason.to_owned() };
    let key = VerifyingKey::from_bytes(&witness.public_key).map_err(|_| HeadError::InvalidPublicKey)?;
    let (text, signatures) = split_note(note)?;
    let id = cosignature_key_id(&witness.name, &key);
    let line = signatures
        .iter()
        .find(|s| s.name == witness.name && s.key_id == id)
        .ok_or_else(|| bad("no cosignature line with this name and key id"))?;
    let [t0, t1, t2, t3, t4, t5, t6, t7, rest @ ..] = line.signature.as_slice() else {
        return Err(bad("the line is too short"));
    };
    let time_secs = u64::from_be_bytes([*t0, *t1, *t2, *t3, *t4, *t5, *t6, *t7]);
    let signature: [u8; 64] = rest.try_into().map_err(|_| bad("the signature is not 64 bytes"))?;
    key.verify_strict(&cosigned_message(text, time_secs), &Signature::from_bytes(&signature))
        .map_err(|_| bad("the signature does not verify"))?;
    Ok(time_secs)
}

/// "At least `required` of these witnesses cosigned": a client refuses a head that only the
/// server vouches for. Each listed witness counts once, however many lines it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    pub witnesses: Vec<Witness>,
    pub required: usize,
}

impl WitnessPolicy {
    /// The names of the listed witnesses whose cosignature on `note` verifies, if there are at
    /// least `required` of them. Check the server's own signature separately (`verify_head_note`).
    pub fn check(&self, note: &str) -> Result<Vec<String>, HeadError> {
        let mut cosigned = Vec::new();
        let mut problems = Vec::new();
        for witness in &self.witnesses {
            if cosigned.contains(&witness.name) {
                continue; // listed twice: counts once
            }
            match verify_cosignature(note, witness) {
                Ok(_) => cosigned.push(witness.name.clone()),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if cosigned.len() >= self.required {
            Ok(cosigned)
        } else {
            Err(HeadError::NotEnoughWitnesses {
                required: self.required,
                found: cosigned.len(),
                detail: if problems.is_empty() { "no witnesses listed".into() } else { problems.join("; ") },
            })
        }
    }
}

/// Appends cosignature lines to a signed note (what the server serves), keeping the note valid.
pub fn with_cosignatures(note: &str, lines: &[String]) -> String {
    let mut out = String::with_capacity(note.len() + lines.iter().map(String::len).sum::<usize>());
    out.push_str(note);
    for line in lines {
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Epoch, Hash, HashSuite, Head, HeadCounts, verify_head_note};

    fn note() -> (String, [u8; 32]) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let head = Head {
            origin: "example.com/keyfold".into(),
            suite: HashSuite::Blake3,
            epoch: Epoch(3),
            root: Hash([1; 32]),
            previous: Hash([2; 32]),
            archive: Hash([3; 32]),
            time_ms: 1_700_000_000_000,
            counts: HeadCounts::default(),
            next_key: None,
        };
        (head.sign(&key, Hash([5; 32])), key.verifying_key().to_bytes())
    }

    fn witness(seed: u8, name: &str) -> (SigningKey, Witness) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let w = Witness { name: name.into(), public_key: key.verifying_key().to_bytes() };
        (key, w)
    }

    #[test]
    fn cosignatures_verify_and_keep_the_note_valid() {
        let (note, server) = note();
        let (ka, a) = witness(11, "witness.a.example");
        let (kb, b) = witness(12, "witness.b.example");
        let line_a = cosign(&note, &a.name, &ka, 1_700_000_100).unwrap();
        let line_b = cosign(&note, &b.name, &kb, 1_700_000_200).unwrap();
        let served = with_cosignatures(&note, &[line_a.clone(), line_b]);
        verify_head_note(&served, "example.com/keyfold", &server).expect("the server signature still verifies");
        assert_eq!(verify_cosignature(&served, &a).unwrap(), 1_700_000_100);
        assert_eq!(verify_cosignature(&served, &b).unwrap(), 1_700_000_200);
        // Cosigning a note that already carries cosignatures signs the same text.
        assert_eq!(cosign(&served, &a.name, &ka, 1_700_000_100).unwrap(), line_a);

        // Not a plain signature: the cosignature key id differs from the note key id.
        assert_ne!(cosignature_key_id(&a.name, &ka.verifying_key()), crate::key_id(&a.name, &ka.verifying_key()));
        // Another key under the same name, or a changed time, fails.
        let (_, impostor) = witness(13, "witness.a.example");
        assert!(verify_cosignature(&served, &impostor).is_err());
        let tampered = served.replacen("epoch 3", "epoch 4", 1);
        assert!(matches!(verify_cosignature(&tampered, &a), Err(HeadError::BadCosignature { .. })));
        assert!(cosign(&note, "two words", &ka, 1).is_err());
    }

    #[test]
    fn cosignature_vkeys_round_trip_and_are_not_signer_vkeys() {
        let key = SigningKey::from_bytes(&[11; 32]).verifying_key();
        let v = cosignature_vkey("witness.example/w1", &key);
        let id = hex::encode(cosignature_key_id("witness.example/w1", &key));
        assert!(v.starts_with(&format!("witness.example/w1+{id}+")), "{v}");
        assert_eq!(B64.decode(v.splitn(3, '+').nth(2).unwrap()).unwrap()[0], 0x04);
        assert_eq!(parse_cosignature_vkey(&v).unwrap(), ("witness.example/w1".to_owned(), key));
        // A signer's (type 0x01) vkey is not a cosigner's, nor the reverse: the key ids differ too.
        let signer = crate::vkey("witness.example/w1", &key);
        let err = parse_cosignature_vkey(&signer).unwrap_err().to_string();
        assert!(err.contains("0x04"), "{err}");
        assert!(crate::parse_vkey(&v).is_err());
        assert!(parse_cosignature_vkey(&v.replacen("w1", "w2", 1)).is_err(), "id of another name");
    }

    #[test]
    fn policy_counts_distinct_listed_witnesses() {
        let (note, _) = note();
        let (ka, a) = witness(11, "a");
        let (kb, b) = witness(12, "b");
        let (_, c) = witness(14, "c");
        let served =
            with_cosignatures(&note, &[cosign(&note, "a", &ka, 5).unwrap(), cosign(&note, "b", &kb, 6).unwrap()]);
        let policy = WitnessPolicy { witnesses: vec![a.clone(), b.clone(), c.clone()], required: 2 };
        assert_eq!(policy.check(&served).unwrap(), ["a", "b"]);
        let strict = WitnessPolicy { required: 3, ..policy.clone() };
        let err = strict.check(&served).unwrap_err();
        assert!(matches!(err, HeadError::NotEnoughWitnesses { required: 3, found: 2, .. }), "{err}");
        let twice = WitnessPolicy { witnesses: vec![a.clone(), a], required: 2 };
        assert!(twice.check(&served).is_err(), "one witness listed twice counts once");
        assert!(WitnessPolicy { witnesses: vec![b, c], required: 1 }.check(&note).is_err(), "no cosignatures at all");
    }
}
