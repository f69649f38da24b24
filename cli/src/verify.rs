//! `keyfold verify`: a monitor's full check of everything a directory published, from a data
//! directory (`--data`) or over HTTP from a server (`--server`, with the public key and origin
//! pinned by the caller). It replays every epoch from the genesis head and checks every signature,
//! chain link, archive digest, outcome and root, reporting the first divergence with its epoch and
//! archive row. It needs nothing but the heads, the archives and the public key.

use crate::client::Published;
use crate::directory::read_config;
use crate::error::CliError;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keyfold_core::Epoch;
use keyfold_epoch::{ArchiveSink, HeadStore, ObjectArchives};
use keyfold_redb::{Layout, RedbHeadStore};
use keyfold_verify::Replayer;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: SourceArgs,
}

/// Where published heads and archives are read: a data directory or a server (with the key and
/// origin the caller pins).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["data", "server"])))]
pub struct SourceArgs {
    /// A data directory (its `signing.pub` and `keyfold.toml` give the key and origin).
    #[arg(long, env = "KEYFOLD_DATA")]
    data: Option<PathBuf>,
    /// A server's base URL; then --public-key and --origin are required.
    #[arg(long, requires_all = ["public_key", "origin"])]
    server: Option<String>,
    /// With --server: the directory's public key you trust (a `signing.pub` file or base64).
    #[arg(long)]
    public_key: Option<String>,
    /// With --server: the directory's origin you trust.
    #[arg(long)]
    origin: Option<String>,
}

/// Where the published artefacts come from.
pub(crate) trait Source: Sync {
    fn latest(&self) -> Result<Epoch, CliError>;
    fn head(&self, epoch: Epoch) -> Result<String, CliError>;
    fn archive(&self, epoch: Epoch) -> Result<bytes::Bytes, CliError>;
    /// The epoch proof (SPEC section 3.2) of `epoch`.
    fn proof(&self, epoch: Epoch) -> Result<bytes::Bytes, CliError>;
    /// The oldest epoch whose archive and proof are kept (a retention window, SPEC section 4.3;
    /// 0 when every epoch is kept).
    fn oldest_kept(&self) -> Result<Epoch, CliError>;
}

struct DirSource {
    heads: RedbHeadStore,
    archives: ObjectArchives,
    /// The map's oldest kept epoch when the directory has a retention window.
    oldest: Option<Epoch>,
}

impl DirSource {
    /// What a missing archive or proof means here.
    fn missing(&self, what: String) -> CliError {
        match self.oldest {
            Some(oldest) => CliError::verification(format!(
                "{what}: this directory keeps a retention window, and archives and proofs before epoch {oldest} are \
                 deleted (audit the kept epochs: `keyfold audit --from {oldest}`)"
            )),
            None => CliError::verification(what),
        }
    }
}

impl Source for DirSource {
    fn latest(&self) -> Result<Epoch, CliError> {
        let latest = self.heads.latest().map_err(CliError::store)?;
        Ok(latest.ok_or_else(|| CliError::verification("the directory has no head"))?.0)
    }

    fn head(&self, epoch: Epoch) -> Result<String, CliError> {
        let note = self.heads.get(epoch).map_err(CliError::store)?;
        note.ok_or_else(|| CliError::verification(format!("epoch {epoch}: head missing")))
    }

    fn archive(&self, epoch: Epoch) -> Result<bytes::Bytes, CliError> {
        ArchiveSink::get(&self.archives, epoch)
            .map_err(CliError::store)?
            .ok_or_else(|| self.missing(format!("epoch {epoch}: archive {} missing", self.archives.describe(epoch))))
    }

    fn proof(&self, epoch: Epoch) -> Result<bytes::Bytes, CliError> {
        ArchiveSink::get_proof(&self.archives, epoch)
            .map_err(CliError::store)?
            .ok_or_else(|| self.missing(format!("epoch {epoch}: no epoch proof beside its archive")))
    }

    fn oldest_kept(&self) -> Result<Epoch, CliError> {
        Ok(self.oldest.unwrap_or(Epoch(0)))
    }
}

impl Source for Published {
    fn latest(&self) -> Result<Epoch, CliError> {
        self.latest_epoch()
    }

    fn head(&self, epoch: Epoch) -> Result<String, CliError> {
        self.text(&format!("/v1/heads/{}", epoch.0))
    }

    fn archive(&self, epoch: Epoch) -> Result<bytes::Bytes, CliError> {
        self.bytes(&format!("/v1/epochs/{}/archive", epoch.0))
    }

    fn proof(&self, epoch: Epoch) -> Result<bytes::Bytes, CliError> {
        self.bytes(&format!("/v1/epochs/{}/proof", epoch.0))
    }

    fn oldest_kept(&self) -> Result<Epoch, CliError> {
        Published::oldest_kept(self)
    }
}

/// Epochs fetched ahead of the one replaying.
const FETCHED_AHEAD: usize = 1;

/// Where `verify` reads heads and archives, with the origin, key and shard bits to replay with.
type Opened = (Box<dyn Source>, String, [u8; 32], u8);

pub(crate) fn open_source(args: &SourceArgs) -> Result<Opened, CliError> {
    match (&args.data, &args.server) {
        (Some(dir), _) => {
            let config = read_config(dir)?;
            let public = keyfold_epoch::KeyFiles::new(dir).genesis_public().map_err(CliError::usage)?;
            let heads = RedbHeadStore::open(&Layout::new(dir).heads()).map_err(CliError::store)?;
            let archives = crate::directory::open_archives(dir, &config)?;
            let oldest = match config.retain_epochs {
                Some(_) => Some(oldest_kept(dir, &config)?),
                None => None,
            };
            Ok((Box::new(DirSource { heads, archives, oldest }), config.origin, public, config.shard_bits))
        }
        (None, Some(server)) => {
            let public = crate::client::pinned_key(args.public_key.as_deref().expect("clap requires it"))?;
            let origin = args.origin.clone().expect("clap requires it");
            let source = Published::new(server)?;
            let shard_bits = source.shard_bits()?;
            Ok((Box::new(source), origin, public, shard_bits))
        }
        (None, None) => unreachable!("clap requires --data or --server"),
    }
}

/// The oldest epoch the map of the directory in `dir` keeps (its server stopped: the map's files
/// are opened exclusively).
fn oldest_kept(dir: &std::path::Path, config: &crate::directory::DirectoryConfig) -> Result<Epoch, CliError> {
    let tree = crate::directory::tree_config(config)?;
    let options = keyfold_redb::RedbOptions { groups: config.groups, ..keyfold_redb::RedbOptions::new(tree) };
    let store = keyfold_redb::RedbStore::open(&Layout::new(dir).tree(), options).map_err(CliError::store)?;
    keyfold_map::TreeStore::oldest_epoch(&store).map_err(CliError::store)
}

/// A divergence, any check that fails, is exit 1; a head or archive that cannot be fetched is 3
/// (or 4, refused by the server).
pub fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let (source, origin, public, shard_bits) = open_source(&args.source)?;
    let latest = source.latest()?;
    let genesis = source.head(Epoch(0))?;
    let mut replayer = Replayer::from_genesis(&genesis, &origin, &public, shard_bits)?;
    let progress = ProgressBar::new(latest.0);
    progress.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} epochs, {per_sec}, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    progress.set_message("replaying");
    let started = Instant::now();
    let mut mutations = 0u64;
    // The next epoch's head and archive are fetched (from disk or the network) while this one
    // replays; at most FETCHED_AHEAD epochs wait in memory.
    let (fetched, arrivals) = std::sync::mpsc::sync_channel(FETCHED_AHEAD);
    let source = &*source;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for e in 1..=latest.0 {
                let epoch = Epoch(e);
                let fetch = source.head(epoch).and_then(|note| Ok((note, source.archive(epoch)?)));
                let failed = fetch.is_err();
                if fetched.send((epoch, fetch)).is_err() || failed {
                    return; // the replay stopped, or cannot go past this epoch
                }
            }
        });
        for (epoch, fetch) in arrivals {
            let (note, archive) = fetch.inspect_err(|_| progress.abandon())?;
            let head = replayer.replay(&note, archive).inspect_err(|_| progress.abandon())?;
            debug_assert_eq!(head.epoch, epoch);
            mutations += head.counts.mutations;
            progress.inc(1);
        }
        Ok::<(), CliError>(())
    })?;
    progress.finish_and_clear();
    let head = replayer.head();
    println!(
        "verified epochs 0..={} of {}: {} mutations replayed in {:.2} s; every signature, chain link, archive digest, outcome and root matches (root {})",
        head.epoch,
        origin,
        mutations,
        started.elapsed().as_secs_f64(),
        head.root.to_hex()
    );
    Ok(())
}
