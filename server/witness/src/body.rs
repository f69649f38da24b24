//! The `add-checkpoint` request body (C2SP tlog-witness), parsed strictly:
//!
//! ```text
//! old <size>\n            canonical decimal (no leading zero, "0" for zero)
//! <base64 hash>\n         0 to 63 consistency proof lines, canonical base64 of 32 bytes
//! \n                      an empty line
//! <signed checkpoint note>
//! ```

use crate::WitnessError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_core::Hash;

/// Most consistency proof lines a request may carry (the spec's bound: a proof between two
/// trees of at most 2^64 leaves has at most 2 * 64 - 1 hashes, but the spec caps it at 63).
pub const MAX_PROOF_LINES: usize = 63;

/// A parsed request; `note` borrows the body.
#[derive(Debug)]
pub(crate) struct AddCheckpoint<'a> {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub note: &'a str,
}

fn malformed(what: impl Into<String>) -> WitnessError {
    WitnessError::Malformed(what.into())
}

/// Splits off the first line (without its `\n`); every line must end in a newline.
fn next_line<'a>(rest: &'a str, what: &str) -> Result<(&'a str, &'a str), WitnessError> {
    rest.split_once('\n').ok_or_else(|| malformed(format!("{what} must end in a newline")))
}

/// Parses the body; the note is checked later (its signatures, then its checkpoint text).
pub(crate) fn parse(body: &[u8]) -> Result<AddCheckpoint<'_>, WitnessError> {
    let body = std::str::from_utf8(body).map_err(|_| malformed("the body is not UTF-8"))?;
    let (old_line, mut rest) = next_line(body, "the old size line")?;
    let old_size = parse_old_size(old_line)?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = next_line(rest, "a consistency proof line")?;
        rest = after;
        if line.is_empty() {
            break; // the empty line before the checkpoint
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(malformed(format!("more than {MAX_PROOF_LINES} consistency proof lines")));
        }
        proof.push(parse_hash(line)?);
    }
    if rest.is_empty() {
        return Err(malformed("no checkpoint after the empty line"));
    }
    Ok(AddCheckpoint { old_size, proof, note: rest })
}

/// `old <size>` with the size in canonical decimal: a size has one spelling, so two requests
/// cannot differ in it alone.
fn parse_old_size(line: &str) -> Result<u64, WitnessError> {
    let digits = line.strip_prefix("old ").ok_or_else(|| malformed("the first line must be `old <size>`"))?;
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    let size = canonical.then(|| digits.parse::<u64>().ok()).flatten();
    size.ok_or_else(|| malformed(format!("the old size {digits:?} is not a decimal u64 without leading zeros")))
}

/// One proof line: canonical standard base64 of exactly 32 bytes.
fn parse_hash(line: &str) -> Result<Hash, WitnessError> {
    let bad = || malformed(format!("consistency proof line {line:?} is not the base64 of a 32-byte hash"));
    let bytes = B64.decode(line).map_err(|_| bad())?;
    let hash: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    if B64.encode(hash) != line {
        return Err(bad());
    }
    Ok(Hash(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_proofs_and_the_note() {
        let h = B64.encode([7u8; 32]);
        let body = format!("old 12\n{h}\n{h}\n\nnote text\n\n— sig\n");
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!((parsed.old_size, parsed.proof.len(), parsed.note), (12, 2, "note text\n\n— sig\n"));
        assert_eq!(parse(b"old 0\n\nx\n").unwrap().old_size, 0);
    }

    #[test]
    fn refuses_non_canonical_input() {
        let h = B64.encode([7u8; 32]);
        let short = B64.encode([7u8; 31]);
        for bad in [
            "old 01\n\nx\n".to_owned(),
            "old +1\n\nx\n".into(),
            "old  1\n\nx\n".into(),
            "old 18446744073709551616\n\nx\n".into(),
            "new 1\n\nx\n".into(),
            "old 1".into(),
            "old 1\n".into(),
            "old 1\n\n".into(),
            format!("old 1\n{short}\n\nx\n"),
            format!("old 1\n{}\n\nx\n", h.trim_end_matches('=')),
            format!("old 1\n{h}\n"),
        ] {
            assert!(matches!(parse(bad.as_bytes()), Err(WitnessError::Malformed(_))), "{bad:?}");
        }
        assert!(parse(&[0xff, b'\n']).is_err());
    }
}
