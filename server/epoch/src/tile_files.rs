//! The log of heads written as C2SP tlog-tiles files (SPEC section 6.4) under one directory:
//! `checkpoint`, `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, so that any web server or
//! object store can serve the log without Keyfold running.
//!
//! The files are derived from the head store: each is written to a staging name and renamed
//! (a reader never sees half a tile) but not synced, as the hashes they hold are rebuilt from the
//! heads. After a crash, [`TileFiles::publish_all`] (run when the job opens) rewrites every tile
//! that is missing or has the wrong length. Partial tiles of a level stay until its full tile
//! exists (C2SP: checkpoints of those sizes were published), then they are removed.

use crate::error::EpochError;
use keyfold_core::LogTree;
use keyfold_core::log::TILE_WIDTH;
use keyfold_core::tiles::{TilePath, entry_bundle};
use std::path::{Path, PathBuf};

/// Where the tiles of one log go.
#[derive(Debug, Clone)]
pub struct TileFiles {
    dir: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> EpochError {
    EpochError::io(format!("tile file {}: {e}", path.display()))
}

impl TileFiles {
    pub fn new(dir: impl Into<PathBuf>) -> TileFiles {
        TileFiles { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// After the log grew by one leaf: the tiles and the bundle that changed, and the checkpoint.
    /// `leaf(i)` returns leaf i's bytes (a map head body).
    pub fn publish(
        &self,
        log: &LogTree,
        leaf: &dyn Fn(u64) -> Result<String, EpochError>,
        checkpoint: &str,
    ) -> Result<(), EpochError> {
        let size = log.size();
        for level in levels(size) {
            let (full, partial) = TilePath::count_at(Some(level), size);
            // A level gains an entry only when the leaf completed a subtree of 256^level leaves;
            // then only its newest tile changes: the partial one, or the one just completed.
            if !size.is_multiple_of(TILE_WIDTH.saturating_pow(u32::from(level))) {
                continue;
            }
            let (index, width) = if partial > 0 { (full, partial) } else { (full - 1, TILE_WIDTH) };
            self.write_tile(log, level, index, width)?;
            if level == 0 {
                self.write_bundle(index, width, leaf)?;
            }
        }
        self.write(&self.dir.join("checkpoint"), checkpoint.as_bytes())
    }

    /// Every tile and bundle of a log of `log.size()` leaves, where missing or of the wrong
    /// length, and the checkpoint (at open, after a crash or for a directory without tiles yet).
    pub fn publish_all(
        &self,
        log: &LogTree,
        leaf: &dyn Fn(u64) -> Result<String, EpochError>,
        checkpoint: &str,
    ) -> Result<(), EpochError> {
        let size = log.size();
        for level in levels(size) {
            let (full, partial) = TilePath::count_at(Some(level), size);
            let tiles = (0..full).map(|i| (i, TILE_WIDTH)).chain((partial > 0).then_some((full, partial)));
            for (index, width) in tiles {
                let tile = TilePath { level: Some(level), index, width };
                if !self.has(&tile, width * 32) {
                    self.write_tile(log, level, index, width)?;
                }
                if level == 0 && !self.path(&TilePath { level: None, index, width }).exists() {
                    self.write_bundle(index, width, leaf)?;
                }
            }
        }
        self.write(&self.dir.join("checkpoint"), checkpoint.as_bytes())
    }

    fn path(&self, tile: &TilePath) -> PathBuf {
        self.dir.join(tile.path())
    }

    fn has(&self, tile: &TilePath, bytes: u64) -> bool {
        std::fs::metadata(self.path(tile)).is_ok_and(|m| m.len() == bytes)
    }

    fn write_tile(&self, log: &LogTree, level: u8, index: u64, width: u64) -> Result<(), EpochError> {
        let tile = TilePath { level: Some(level), index, width };
        let bytes = log
            .tile(level, index, width)
            .ok_or_else(|| EpochError::corrupt(format!("the log of {} heads has no {}", log.size(), tile.path())))?;
        self.write(&self.path(&tile), &bytes)?;
        if width == TILE_WIDTH {
            self.remove_partials(&tile)?;
        }
        Ok(())
    }

    /// Bundle `index` with `width` entries: the previous partial bundle plus the newest leaf when
    /// it is there (one file read instead of `width` head reads), else built from every leaf.
    fn write_bundle(
        &self,
        index: u64,
        width: u64,
        leaf: &dyn Fn(u64) -> Result<String, EpochError>,
    ) -> Result<(), EpochError> {
        let first = index * TILE_WIDTH;
        let previous = (width > 1).then(|| self.path(&TilePath { level: None, index, width: width - 1 }));
        let mut bytes = match previous.and_then(|p| std::fs::read(p).ok()) {
            Some(bytes) => bytes,
            None => {
                let leaves = (first..first + width - 1).map(leaf).collect::<Result<Vec<_>, _>>()?;
                entry_bundle(leaves.iter().map(String::as_bytes))
                    .ok_or_else(|| EpochError::corrupt("a map head longer than 65535 bytes"))?
            }
        };
        let newest = leaf(first + width - 1)?;
        bytes.extend(entry_bundle([newest.as_bytes()]).ok_or_else(|| EpochError::corrupt("a map head too long"))?);
        let tile = TilePath { level: None, index, width };
        self.write(&self.path(&tile), &bytes)?;
        if width == TILE_WIDTH {
            self.remove_partials(&tile)?;
        }
        Ok(())
    }

    /// Removes `<full tile path>.p/`, the partial versions of a tile that is now full.
    fn remove_partials(&self, full: &TilePath) -> Result<(), EpochError> {
        let dir = self.dir.join(format!("{}.p", full.path()));
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir, e)),
            _ => Ok(()),
        }
    }

    /// Staged and renamed, not synced (see the module comment for recovery).
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), EpochError> {
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let staging = parent.join(format!(".{name}.tmp"));
        std::fs::write(&staging, bytes).and_then(|()| std::fs::rename(&staging, path)).map_err(|e| io(path, e))
    }
}

/// The tile levels a log of `size` leaves has (level L exists once it has 256^L leaves).
fn levels(size: u64) -> impl Iterator<Item = u8> {
    (0..=keyfold_core::tiles::MAX_TILE_LEVEL).take_while(move |&l| TilePath::count_at(Some(l), size) != (0, 0))
}
