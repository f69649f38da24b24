use crate::error::{KeyError, ValidationError};
use keyfold_core::Mutation;

/// Size limits on what a frontend may submit. Explicit at every call site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_signature_bytes: usize,
    pub max_batch_mutations: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_key_bytes: 1024, max_value_bytes: 64 * 1024, max_signature_bytes: 512, max_batch_mutations: 1000 }
    }
}

/// Checks a whole batch; a batch is accepted or refused as a unit, so nothing is half-queued.
pub fn validate(limits: &Limits, batch: &[Mutation]) -> Result<(), ValidationError> {
    if batch.is_empty() {
        return Err(ValidationError::EmptyBatch);
    }
    if batch.len() > limits.max_batch_mutations {
        return Err(ValidationError::BatchTooLarge { count: batch.len(), max: limits.max_batch_mutations });
    }
    for (at, m) in batch.iter().enumerate() {
        if m.key.is_empty() {
            return Err(ValidationError::EmptyKey { at });
        }
        // The encoding caps keys at 65,535 bytes; a configured limit above that is clamped.
        let max_key = limits.max_key_bytes.min(usize::from(u16::MAX));
        if m.key.len() > max_key {
            return Err(ValidationError::KeyTooLong { at, len: m.key.len(), max: max_key });
        }
        check_key_text(&m.key).map_err(|problem| ValidationError::Key { at, problem })?;
        let value_len = m.value.as_ref().map_or(0, Vec::len);
        if value_len > limits.max_value_bytes {
            return Err(ValidationError::ValueTooLarge { at, len: value_len, max: limits.max_value_bytes });
        }
        let max_sig = limits.max_signature_bytes.min(usize::from(u16::MAX));
        let sig_len = m.owner_signature.as_ref().map_or(0, Vec::len);
        if sig_len > max_sig {
            return Err(ValidationError::SignatureTooLarge { at, len: sig_len, max: max_sig });
        }
    }
    Ok(())
}

/// A key is UTF-8 text in Unicode Normalization Form C (SPEC section 5), so that one address has
/// one spelling and therefore one index. NFC does not fold confusables (Latin `a` and Cyrillic `а`
/// stay two keys) or case: that policy is the frontend's, which knows what its identifiers are.
pub fn check_key_text(key: &[u8]) -> Result<(), KeyError> {
    let text = std::str::from_utf8(key).map_err(|e| KeyError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    if unicode_normalization::is_nfc(text) { Ok(()) } else { Err(KeyError::NotNfc) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_core::Version;

    fn m(key: &[u8], value: Option<usize>) -> Mutation {
        Mutation {
            key: key.to_vec(),
            value: value.map(|n| vec![1; n]),
            expected_version: Version(0),
            owner_signature: None,
        }
    }

    fn limits_wide() -> Limits {
        Limits { max_key_bytes: 64, max_value_bytes: 8, max_signature_bytes: 2, max_batch_mutations: 3 }
    }

    #[test]
    fn limits_are_enforced_with_the_offending_position() {
        let limits = Limits { max_key_bytes: 4, max_value_bytes: 8, max_signature_bytes: 2, max_batch_mutations: 3 };
        assert_eq!(validate(&limits, &[]), Err(ValidationError::EmptyBatch));
        assert_eq!(validate(&limits, &[m(b"a", None), m(b"b", Some(8))]), Ok(()));
        let four = vec![m(b"a", None); 4];
        assert_eq!(validate(&limits, &four), Err(ValidationError::BatchTooLarge { count: 4, max: 3 }));
        assert_eq!(validate(&limits, &[m(b"a", None), m(b"", None)]), Err(ValidationError::EmptyKey { at: 1 }));
        assert_eq!(validate(&limits, &[m(b"abcde", None)]), Err(ValidationError::KeyTooLong { at: 0, len: 5, max: 4 }));
        assert_eq!(
            validate(&limits, &[m(b"a", Some(9))]),
            Err(ValidationError::ValueTooLarge { at: 0, len: 9, max: 8 })
        );
        let mut signed = m(b"a", None);
        signed.owner_signature = Some(vec![0; 3]);
        assert_eq!(validate(&limits, &[signed]), Err(ValidationError::SignatureTooLarge { at: 0, len: 3, max: 2 }));
        // One address, one spelling: NFD, and bytes that are not UTF-8, are refused.
        let nfc = "jos\u{e9}@example.com";
        let nfd = "jose\u{301}@example.com";
        assert_eq!(validate(&limits_wide(), &[m(nfc.as_bytes(), None)]), Ok(()));
        let refused = validate(&limits_wide(), &[m(b"a", None), m(nfd.as_bytes(), None)]);
        assert_eq!(refused, Err(ValidationError::Key { at: 1, problem: KeyError::NotNfc }));
        assert!(refused.unwrap_err().to_string().contains("NFC"));
        assert_eq!(
            validate(&limits_wide(), &[m(b"ok\xff", None)]),
            Err(ValidationError::Key { at: 0, problem: KeyError::NotUtf8 { valid_up_to: 2 } })
        );
        // Fullwidth and zero-width variants are NFC already: they stay distinct keys (confusables
        // are the frontend's policy, SPEC section 5).
        assert_eq!(check_key_text("\u{ff41}lice".as_bytes()), Ok(()));
        assert_eq!(check_key_text("al\u{200b}ice".as_bytes()), Ok(()));
        let message = ValidationError::KeyTooLong { at: 2, len: 5000, max: 1024 }.to_string();
        assert!(message.contains("mutation 2") && message.contains("1024"), "{message}");
    }
}
