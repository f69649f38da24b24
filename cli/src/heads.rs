//! `keyfold heads export`: every signed head as a plain file (SPEC section 4.2), verified before
//! it is written, from a stopped data directory or a server. The files can be served by any web
//! server or object store next to the archives, and a rerun into the same folder resumes; a file
//! that holds a different head for an epoch stops the export.

use crate::error::CliError;
use crate::verify::{SourceArgs, open_source};
use clap::{Args, Subcommand};
use keyfold_core::{
    Epoch, Frontier, Head, Signature, VerifyingKey, key_id, signature_line, split_note, verify_head_note,
};
use keyfold_verify::{verify_genesis_head, verify_next_head};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct HeadsArgs {
    #[command(subcommand)]
    command: HeadsCommand,
}

#[derive(Debug, Subcommand)]
enum HeadsCommand {
    /// Write every signed head, verified, as `head-<epoch>.note` in a folder (SPEC section 4.2).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The folder the head files go to (created if absent; a rerun resumes).
    #[arg(long)]
    out: PathBuf,
}

pub fn heads(args: &HeadsArgs) -> Result<(), CliError> {
    match &args.command {
        HeadsCommand::Export(export_args) => export(export_args),
    }
}

/// The file of `epoch`'s head in `out`.
pub fn head_path(out: &Path, epoch: Epoch) -> PathBuf {
    out.join(format!("head-{:020}.note", epoch.0))
}

/// What an export did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Exported {
    written: u64,
    kept: u64,
}

fn export(args: &ExportArgs) -> Result<(), CliError> {
    let (source, origin, public_key, shard_bits) = open_source(&args.source)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::file(format!("creating {}: {e}", args.out.display()), &e))?;
    let latest = source.latest()?;
    let mut done = Exported::default();
    let mut previous: Option<(Head, Frontier)> = None;
    // The key that signs the next head: the pinned one, then each key a rollover announces.
    let mut key = public_key;
    for e in 0..=latest.0 {
        let note = source.head(Epoch(e))?;
        let (head, log) = match previous.take() {
            None => verify_genesis_head(&note, &origin, &key, shard_bits)?,
            Some((previous, mut log)) => (verify_next_head(&previous, &mut log, &note, &origin, &key)?, log),
        };
        let note = directory_note(&note, &origin, &key)?;
        if write_head(&args.out, head.epoch, &note, &origin, &key)? {
            done.written += 1;
        } else {
            done.kept += 1;
        }
        key = head.next_key.map_or(key, |next| next.to_bytes());
        previous = Some((head, log));
    }
    sync_dir(&args.out)?;
    println!(
        "exported the heads of epochs 0..={} to {}: {} written, {} already there",
        latest.0,
        args.out.display(),
        done.written,
        done.kept
    );
    Ok(())
}

/// The note as the directory signed it: its text and the directory's own signature line, without
/// the witness cosignatures a server appends.
fn directory_note(note: &str, origin: &str, public_key: &[u8; 32]) -> Result<String, CliError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|e| CliError::usage(format!("the pinned key: {e}")))?;
    let (text, signatures) = split_note(note).map_err(CliError::verification)?;
    let id = key_id(origin, &key);
    let own = signatures
        .iter()
        .find(|s| s.name == origin && s.key_id == id)
        .ok_or_else(|| CliError::verification("a verified head lost its signature line"))?;
    let signature = Signature::from_slice(&own.signature).map_err(CliError::verification)?;
    Ok(format!("{text}\n{}", signature_line(origin, &key, &signature)))
}

/// Writes `note` as the head of `epoch` unless the same bytes are there (false). Different bytes
/// stop the export: a validly signed different head is evidence of a fork (exit 1); anything else
/// in the file is for the user to move away (exit 2).
fn write_head(out: &Path, epoch: Epoch, note: &str, origin: &str, key: &[u8; 32]) -> Result<bool, CliError> {
    let path = head_path(out, epoch);
    match std::fs::read(&path) {
        Ok(existing) if existing == note.as_bytes() => return Ok(false),
        Ok(existing) => return Err(conflict(&path, epoch, &existing, origin, key)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CliError::file(format!("reading {}: {e}", path.display()), &e)),
    }
    // Staged, synced, then renamed into place. Recovery if the process dies right after the
    // rename: the file is complete and a rerun keeps it. If it dies before: at most a staging
    // file is left, which the rerun overwrites; no partial head file ever exists.
    let staging = out.join(format!(".head-{:020}.note.tmp", epoch.0));
    let written = std::fs::File::create(&staging).and_then(|mut file| {
        file.write_all(note.as_bytes())?;
        file.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&staging, &path))
        .map_err(|e| CliError::file(format!("writing {}: {e}", path.display()), &e))?;
    Ok(true)
}

fn conflict(path: &Path, epoch: Epoch, existing: &[u8], origin: &str, key: &[u8; 32]) -> CliError {
    let other = std::str::from_utf8(existing).ok().and_then(|text| verify_head_note(text, origin, key).ok());
    match other {
        Some(head) if head.epoch == epoch => CliError::verification(format!(
            "EVIDENCE: {} holds a different head for epoch {epoch}, also signed by the directory's key: \
             two signed heads for one epoch mean the directory forked; keep both files",
            path.display()
        )),
        _ => CliError::usage(format!(
            "{} is not this directory's head of epoch {epoch}; move it away and export again",
            path.display()
        )),
    }
}

/// Makes the renames durable.
fn sync_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CliError::file(format!("syncing {}: {e}", dir.display()), &e))
}
