//! `keyfold lookup --state FILE`: the client's view of the log of heads, kept between runs, and
//! the evidence file a rollback or a fork leaves behind.

use crate::error::CliError;
use keyfold_verify::{View, ViewError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The view stored in `path`, re-verified with the pinned origin and key (through the key
/// rollovers it lists); `None` before the first lookup. A file that does not verify is refused,
/// never replaced: it is what this client saw, and only its owner may discard it.
///
/// The file is the last verified checkpoint note; after a key rollover it is a JSON object
/// `{"checkpoint": note, "rollovers": [announcing notes, oldest first]}` instead.
pub fn load(path: &Path, origin: &str, public_key: &[u8; 32]) -> Result<Option<View>, CliError> {
    let Some(text) = read_state(path)? else { return Ok(None) };
    let refused = |e: String| {
        CliError::verification(format!(
            "--state {} does not hold a checkpoint of {origin:?} signed by the pinned key or a key it handed over \
             to ({e}); move it away to start a new view",
            path.display()
        ))
    };
    let stored = match text.starts_with('{') {
        true => serde_json::from_str::<Stored>(&text).map_err(|e| refused(e.to_string()))?,
        false => Stored { checkpoint: text, rollovers: Vec::new() },
    };
    View::restore(&stored.checkpoint, stored.rollovers, origin, public_key)
        .map(Some)
        .map_err(|e| refused(e.to_string()))
}

/// The text of the state file `path`; `None` if there is none yet.
pub(crate) fn read_state(path: &Path) -> Result<Option<String>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::file(format!("reading --state {}: {e}", path.display()), &e)),
    }
}

/// A view after a key rollover, as stored.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    checkpoint: String,
    rollovers: Vec<String>,
}

/// Stores `view` in `path` atomically: staged beside it, synced, renamed, directory synced.
/// Recovery if the process dies right after the rename: the new view is in place. If it dies
/// before: the old view stays (a staging file may be left, overwritten next time), and the next
/// lookup proves consistency from the old view again, which an honest directory always can.
pub fn store(path: &Path, view: &View) -> Result<(), CliError> {
    if view.rollovers.is_empty() {
        return write_atomic(path, view.note.as_bytes());
    }
    let stored = Stored { checkpoint: view.note.clone(), rollovers: view.rollovers.clone() };
    let json = serde_json::to_string_pretty(&stored).expect("strings serialize");
    write_atomic(path, json.as_bytes())
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = dir.join(format!(".{name}.tmp"));
    let written = std::fs::File::create(&staging).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&staging, path))
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| CliError::file(format!("writing {}: {e}", path.display()), &e))
}

/// For a rollback or a fork: writes both signed checkpoints to `evidence` (default: beside the
/// state file) and returns the error naming it (exit code 1). Other view errors pass through.
pub fn report(error: ViewError, state: &Path, evidence: Option<&Path>) -> CliError {
    let Some((held, got)) = error.evidence() else {
        return CliError::verification(format!("REFUSED: {error}"));
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let path =
        evidence.map_or_else(|| PathBuf::from(format!("{}.evidence-{now}.txt", state.display())), Path::to_path_buf);
    let text = format!(
        "# {error}\n# The checkpoint this client held (from {}):\n{held}\n# The checkpoint the directory served:\n{got}",
        state.display()
    );
    match write_atomic(&path, text.as_bytes()) {
        Ok(()) => CliError::verification(format!("{error}; evidence written to {}", path.display())),
        Err(e) => CliError::verification(format!("{error}; writing the evidence failed: {e}\n{text}")),
    }
}
