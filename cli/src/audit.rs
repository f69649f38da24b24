//! `keyfold audit`: checks epochs without replaying the map (SPEC section 3.2): each epoch from
//! the verified head before it, its own head, its archive and its epoch proof, with no state
//! carried between epochs. The heads are verified first as a chain from genesis (signatures under
//! the key in effect, key rollovers, links, the log of heads: a few microseconds each), then the
//! epochs `--from`..=latest are audited in parallel, each worker holding one epoch at a time.

use crate::error::CliError;
use crate::verify::{SourceArgs, open_source};
use clap::Args;
use keyfold_core::{Epoch, FlatEpochProof, Head};
use keyfold_verify::{Divergence, audit_epoch, verify_genesis_head, verify_next_head};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The first epoch to audit (its head and every earlier one are still verified as a chain).
    /// Default: 1, or the oldest epoch a directory with a retention window keeps.
    #[arg(long)]
    from: Option<u64>,
}

/// What the audit of a range found.
#[derive(Debug, Default)]
struct Totals {
    mutations: u64,
    touched: u64,
    proof_bytes: u64,
}

/// Every head from genesis to `latest` verified as a chain (signatures under the key in effect, key
/// rollovers, links, times, the log of heads); returns those of epochs `from - 1..=latest` (a few
/// hundred bytes each), the pairs an audit of epochs `from..=latest` needs.
pub(crate) fn verified_heads<E: From<Divergence>>(
    note: impl Fn(Epoch) -> Result<String, E>,
    latest: Epoch,
    from: u64,
    (origin, public, shard_bits): (&str, &[u8; 32], u8),
) -> Result<Vec<Head>, E> {
    let (mut head, mut log) = verify_genesis_head(&note(Epoch(0))?, origin, public, shard_bits)?;
    let mut key = head.next_key.map_or(*public, |next| next.to_bytes());
    let mut kept = Vec::new();
    for e in 1..=latest.0 {
        if e >= from {
            kept.push(head.clone());
        }
        let next = verify_next_head(&head, &mut log, &note(Epoch(e))?, origin, &key)?;
        key = next.next_key.map_or(key, |k| k.to_bytes());
        head = next;
    }
    kept.push(head);
    Ok(kept)
}

/// Exit 1 on the first epoch whose audit fails (naming the row, key index or root), 3 when a head,
/// archive or proof cannot be fetched.
pub fn audit(args: &AuditArgs) -> Result<(), CliError> {
    let (source, origin, public, shard_bits) = open_source(&args.source)?;
    let latest = source.latest()?;
    let from = match args.from {
        Some(from) => from.max(1),
        None => source.oldest_kept()?.0.max(1),
    };
    if from > latest.0 {
        return Err(CliError::usage(format!("--from {from} is after the latest epoch {latest}")));
    }
    let started = Instant::now();
    let origin_key = (origin.as_str(), &public, shard_bits);
    let heads = verified_heads(|epoch| source.head(epoch), latest, from, origin_key)?;
    let chained = started.elapsed();
    let source = &*source;
    let totals = heads
        .par_windows(2)
        .map(|pair| {
            let epoch = pair[1].epoch;
            let bytes = source.proof(epoch)?;
            let proof = FlatEpochProof::decode(&bytes)
                .map_err(|e| CliError::verification(format!("epoch {epoch}: the epoch proof: {e}")))?;
            let audited = audit_epoch(&pair[0], &pair[1], source.archive(epoch)?, &proof)?;
            Ok::<_, CliError>(Totals {
                mutations: audited.mutations,
                touched: audited.touched,
                proof_bytes: bytes.len() as u64,
            })
        })
        .try_reduce(Totals::default, |a, b| {
            Ok(Totals {
                mutations: a.mutations + b.mutations,
                touched: a.touched + b.touched,
                proof_bytes: a.proof_bytes + b.proof_bytes,
            })
        })?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "audited epochs {from}..={latest} of {origin} from their proofs (heads 0..={latest} verified as a chain in \
         {:.2} s): {} mutations, {} touched keys, {} proof bytes, in {secs:.2} s ({:.0} mutations/s); every \
         old root, compare-and-set outcome and new root matches",
        chained.as_secs_f64(),
        totals.mutations,
        totals.touched,
        totals.proof_bytes,
        totals.mutations as f64 / secs.max(1e-9)
    );
    Ok(())
}
