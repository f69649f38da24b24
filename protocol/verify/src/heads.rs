//! The rules a chain of signed heads obeys (SPEC sections 4 and 6), checked one head at a time:
//! what replay, the witness and a head export all check before they trust a head. Each head is
//! signed as a checkpoint of the log of heads; a verifier that sees every head keeps that log's
//! right edge ([`Frontier`]) and checks every checkpoint's size and root against it.

use crate::divergence::{Divergence, diverge};
use keyfold_core::{Epoch, Frontier, Head, SignedHead, verify_checkpoint_note};
use keyfold_map::{Map, MemoryStore, TreeConfig};

/// Checks the checkpoint of the log that `log` extended with `signed.head` would be.
fn check_log(epoch: Epoch, log: &Frontier, signed: &SignedHead) -> Result<Frontier, Divergence> {
    let mut next = log.clone();
    next.push(signed.head.leaf_hash());
    if signed.checkpoint.size != next.size() || signed.checkpoint.root != next.root() {
        return Err(diverge(
            epoch,
            None,
            "log of heads",
            format!("size {} with root {}", next.size(), next.root().to_hex()),
            format!("size {} with root {}", signed.checkpoint.size, signed.checkpoint.root.to_hex()),
        ));
    }
    Ok(next)
}

/// Checks the genesis head: its signature under `origin` and `public_key`, epoch 0, the root of
/// the empty map of its suite with `shard_bits`, and a checkpoint of the one-leaf log. Returns the
/// head and the log of heads so far.
pub fn verify_genesis_head(
    note: &str,
    origin: &str,
    public_key: &[u8; 32],
    shard_bits: u8,
) -> Result<(Head, Frontier), Divergence> {
    let signed = verify_checkpoint_note(note, origin, public_key)
        .map_err(|e| diverge(Epoch(0), None, "head signature", "a valid signature", e))?;
    let log = check_log(Epoch(0), &Frontier::new(), &signed)?;
    let head = signed.head;
    let config = TreeConfig::new(head.suite, shard_bits)
        .map_err(|e| diverge(Epoch(0), None, "config", "valid shard bits", e))?;
    let empty =
        Map::new(MemoryStore::new(config)).root(Epoch(0)).map_err(|e| diverge(Epoch(0), None, "map", "a map", e))?;
    if head.epoch != Epoch(0) || head.root != empty.hash {
        return Err(diverge(
            head.epoch,
            None,
            "genesis head",
            format!("epoch 0 with the empty root {}", empty.hash.to_hex()),
            head.root.to_hex(),
        ));
    }
    Ok((head, log))
}

/// Checks the head that follows the verified `previous`: its signature, epoch `previous` + 1, the
/// same suite, `previous` equal to the hash of `previous`, a greater time, and a checkpoint of
/// `log` (the log through `previous`) with this head appended; `log` then includes it.
pub fn verify_next_head(
    previous: &Head,
    log: &mut Frontier,
    note: &str,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Head, Divergence> {
    let epoch = previous.epoch.next();
    let signed = verify_checkpoint_note(note, origin, public_key)
        .map_err(|e| diverge(epoch, None, "head signature", "a valid signature", e))?;
    let head = signed.head.clone();
    let check = |ok: bool, what: &str, expected: String, found: String| {
        if ok { Ok(()) } else { Err(diverge(epoch, None, what, expected, found)) }
    };
    check(head.epoch == epoch, "epoch number", epoch.to_string(), head.epoch.to_string())?;
    check(head.suite == previous.suite, "hash suite", previous.suite.name().into(), head.suite.name().into())?;
    check(head.previous == previous.hash(), "chain link", previous.hash().to_hex(), head.previous.to_hex())?;
    check(head.time_ms > previous.time_ms, "epoch time", format!("> {}", previous.time_ms), head.time_ms.to_string())?;
    *log = check_log(epoch, log, &signed)?;
    Ok(head)
}
