//! A directory's data directory: its config, keys and stores, and the operator commands on it.
//!
//! Layout of `--data DIR`: `keyfold.toml` (origin, hash suite, shard bits, group files, queue
//! bounds, epoch caps), `signing.key` (mode 0600) and `signing.pub`, `archives/` (or the local
//! directory `archives` in `keyfold.toml` names), and the embedded stores, whose files
//! `keyfold_redb::Layout` names (README, "Data directory").

use crate::error::CliError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use keyfold_core::HashSuite;
use keyfold_epoch::{EpochJob, EpochLimits, HeadStore, ObjectArchives, Retention, generate_key_files};
use keyfold_ingest::Queue;
use keyfold_map::{Map, TreeConfig};
use keyfold_redb::{
    DEFAULT_MAX_BYTES, RedbCosignatures, RedbHeadStore, RedbQueue, RedbQueueOptions, RedbStore, StoresOptions,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CONFIG_FILE: &str = "keyfold.toml";

/// What `init` fixes for the life of a directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The format of the records in the directory's stores ([`DATA_FORMAT`]). Absent in files
    /// written before it existed: format 1, whose leaves do not commit to their history.
    #[serde(default = "data_format_one")]
    pub format: u32,
    pub origin: String,
    pub hash: String,
    pub shard_bits: u8,
    pub groups: u16,
    pub queue_max_depth: u64,
    /// Bytes of pending mutations beyond which submissions are refused (503). Absent in files
    /// written before it existed: the default, 1 GiB.
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: u64,
    /// The most mutations one epoch consumes; the rest waits for the next. Default 100,000.
    #[serde(default = "default_epoch_max_mutations")]
    pub epoch_max_mutations: u64,
    /// The most bytes of mutations one epoch consumes (its memory grows by about five times this,
    /// plus per-mutation overhead). Default 64 MiB.
    #[serde(default = "default_epoch_max_bytes")]
    pub epoch_max_bytes: u64,
    /// Where the epoch archives are: a local directory (an absolute path or a `file://` URL);
    /// absent: `archives/` in the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archives: Option<String>,
    /// The retention window: the map keeps the last this many epochs, and older archives and
    /// epoch proofs are deleted (SPEC section 4.3). Absent: every epoch is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_epochs: Option<u64>,
    /// With `retain_epochs`, leave the older archives and proofs where they are (for an object
    /// store whose lifecycle rule deletes them) instead of deleting them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_archives: bool,
}

/// The data format this keyfold reads and writes: 2 since a key's leaf commits to its whole
/// version history (SPEC section 1.3: map leaf records with the epoch and previous commitment, the
/// history index with values). A directory of another format is refused, never misread.
pub const DATA_FORMAT: u32 = 2;

fn data_format_one() -> u32 {
    1
}

fn default_queue_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

fn default_epoch_max_mutations() -> u64 {
    EpochLimits::DEFAULT_MAX_MUTATIONS
}

fn default_epoch_max_bytes() -> u64 {
    EpochLimits::DEFAULT_MAX_BYTES
}

impl DirectoryConfig {
    /// The queue's bounds under `suite`.
    pub fn queue_options(&self, suite: HashSuite) -> RedbQueueOptions {
        RedbQueueOptions { suite, max_depth: self.queue_max_depth, max_bytes: self.queue_max_bytes }
    }

    /// The caps on each epoch's cut.
    pub fn epoch_limits(&self) -> EpochLimits {
        EpochLimits { max_mutations: self.epoch_max_mutations, max_bytes: self.epoch_max_bytes }
    }

    /// The retention window, if one is configured.
    pub fn retention(&self) -> Option<Retention> {
        self.retain_epochs.map(|epochs| Retention { epochs, keep_archives: self.keep_archives })
    }

    /// Every bound must let something through: the name of the first that is 0, if any.
    fn zero_bound(&self) -> Option<&'static str> {
        [
            ("retain_epochs", self.retain_epochs.unwrap_or(1)),
            ("queue_max_depth", self.queue_max_depth),
            ("queue_max_bytes", self.queue_max_bytes),
            ("epoch_max_mutations", self.epoch_max_mutations),
            ("epoch_max_bytes", self.epoch_max_bytes),
        ]
        .into_iter()
        .find_map(|(name, value)| (value == 0).then_some(name))
    }
}

/// The archives of the directory in `dir`, where its config puts them. They go through
/// `object_store`; only its local backend is built into this binary.
pub fn open_archives(dir: &Path, config: &DirectoryConfig) -> Result<ObjectArchives, CliError> {
    let local = match config.archives.as_deref() {
        None => dir.join("archives"),
        Some(location) => archives_path(location)?,
    };
    ObjectArchives::local(&local).map_err(|e| CliError::store_in(format!("archives at {}", local.display()), e))
}

/// The local directory an `archives` location names (one that names none is the user's to fix).
fn archives_path(location: &str) -> Result<PathBuf, CliError> {
    let path = location.strip_prefix("file://").unwrap_or(location);
    if path.contains("://") {
        return Err(CliError::usage(format!(
            "archives = {location:?}: only local directories (an absolute path or a file:// URL) are built into this \
             keyfold; object stores such as s3:// need object_store's cloud features"
        )));
    }
    if !Path::new(path).is_absolute() {
        return Err(CliError::usage(format!("archives = {location:?}: give an absolute path (or a file:// URL)")));
    }
    Ok(PathBuf::from(path))
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Data directory (created; must be empty or absent).
    #[arg(long, env = "KEYFOLD_DATA")]
    data: PathBuf,
    /// Shard bits: 2^N shards (0..=16).
    #[arg(long, default_value_t = 8)]
    shards_bits: u8,
    /// Hash suite: blake3 or sha256.
    #[arg(long, default_value = "blake3")]
    hash: String,
    /// The directory's name in its signed heads (the C2SP note origin).
    #[arg(long, default_value = "keyfold.localhost")]
    origin: String,
    /// Embedded store group files (parallel writers).
    #[arg(long, default_value_t = 2)]
    groups: u16,
    /// Pending mutations beyond which submissions are refused (HTTP 503 + Retry-After).
    #[arg(long, default_value_t = 1_000_000)]
    queue_max_depth: u64,
    /// Bytes of pending mutations (their canonical encodings) beyond which submissions are
    /// refused (HTTP 503 + Retry-After).
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
    queue_max_bytes: u64,
    /// The most mutations one epoch consumes; the rest waits for the next epoch.
    #[arg(long, default_value_t = EpochLimits::DEFAULT_MAX_MUTATIONS)]
    epoch_max_mutations: u64,
    /// The most bytes of mutations one epoch consumes: an epoch's memory grows by about five
    /// times this, plus ~2 KB per mutation.
    #[arg(long, default_value_t = EpochLimits::DEFAULT_MAX_BYTES)]
    epoch_max_bytes: u64,
    /// Keep the epoch archives in this local directory (an absolute path or a file:// URL)
    /// instead of `archives/` in the data directory: another volume, or one a web server shares.
    #[arg(long)]
    archives: Option<String>,
    /// Keep only the last N epochs: the map forgets earlier epochs (lookups at them are refused
    /// with 410) and their archives and epoch proofs are deleted; heads, the log and key history
    /// are kept whole. Default: keep every epoch. Set or change later in keyfold.toml.
    #[arg(long)]
    retain_epochs: Option<u64>,
    /// With --retain-epochs, leave older archives and proofs in place (an object store's
    /// lifecycle rule deletes them).
    #[arg(long, requires = "retain_epochs")]
    keep_archives: bool,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Data directory created by `keyfold init`.
    #[arg(long, env = "KEYFOLD_DATA")]
    data: PathBuf,
}

pub(crate) fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

pub type DurableJob = EpochJob<RedbQueue, RedbStore, RedbHeadStore>;

/// The directory's `keyfold.toml`. A directory that has none (absent, or not a directory) or a
/// config that does not parse is the user's to fix (2); a file that cannot be read is 3.
pub(crate) fn read_config(dir: &Path) -> Result<DirectoryConfig, CliError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let message = format!(
            "cannot read {}: {e} (create a directory with `keyfold init --data {}`)",
            path.display(),
            dir.display()
        );
        CliError::file(message, &e)
    })?;
    let config: DirectoryConfig =
        toml::from_str(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    if config.format != DATA_FORMAT {
        return Err(CliError::usage(format!(
            "{}: data format {} (this keyfold reads format {DATA_FORMAT}: leaves that commit to their version \
             history); serve this directory with the keyfold that created it, or start a new one with \
             `keyfold init`",
            path.display(),
            config.format
        )));
    }
    if let Some(name) = config.zero_bound() {
        return Err(CliError::usage(format!("{}: {name} must be at least 1", path.display())));
    }
    Ok(config)
}

/// The hash suite and tree shape a config names (a config that names none is the user's to fix).
pub(crate) fn tree_config(config: &DirectoryConfig) -> Result<TreeConfig, CliError> {
    let suite = HashSuite::from_name(&config.hash)
        .ok_or_else(|| CliError::usage(format!("unknown hash {:?} in {CONFIG_FILE}", config.hash)))?;
    TreeConfig::new(suite, config.shard_bits).map_err(|e| CliError::usage(format!("{CONFIG_FILE}: {e}")))
}

/// A data directory opened for the epoch job: its config, the job over its stores, and the
/// witness cosignatures kept beside them.
pub struct Opened {
    pub config: DirectoryConfig,
    pub job: DurableJob,
    pub cosignatures: Arc<RedbCosignatures>,
}

/// Opens every store of an initialised directory (`keyfold_redb::open`) and the epoch job over
/// them. A store that cannot be opened now (held by a running server, an I/O failure) is 3; one
/// whose data is inconsistent is 1; a missing or unusable signing key is 2.
/// The data directory's folder of C2SP tile files (the log of heads for static serving).
pub const LOG_DIR: &str = "log";

pub fn open_job(dir: &Path) -> Result<Opened, CliError> {
    let config = read_config(dir)?;
    let tree = tree_config(&config)?;
    let options = StoresOptions { tree, groups: config.groups, queue: config.queue_options(tree.suite) };
    let stores = keyfold_redb::open(dir, options).map_err(CliError::store)?;
    // The signing key, a pending rotation's next key and the keys before (key rollover).
    let key = keyfold_epoch::KeyFiles::new(dir).load().map_err(CliError::usage)?;
    let archives = Arc::new(open_archives(dir, &config)?);
    let job = EpochJob::open(stores.queue, Map::new(stores.map), stores.heads, archives, key, &config.origin, now_ms())
        .and_then(|job| job.with_index(stores.index))
        .and_then(|job| job.with_tile_files(keyfold_epoch::TileFiles::new(dir.join(LOG_DIR))))
        .map_err(CliError::store)?
        .with_limits(config.epoch_limits());
    let job = match config.retention() {
        Some(retention) => job.with_retention(retention).map_err(|e| CliError::usage(format!("{CONFIG_FILE}: {e}")))?,
        None => job,
    };
    Ok(Opened { config, job, cosignatures: stores.cosignatures })
}

/// Initialises `dir` with the defaults of `keyfold init` unless it already holds a directory.
pub fn init_if_empty(dir: &Path) -> Result<(), CliError> {
    if dir.join(CONFIG_FILE).exists() {
        return Ok(());
    }
    init(&InitArgs {
        data: dir.to_path_buf(),
        shards_bits: 8,
        hash: "blake3".into(),
        origin: "keyfold.localhost".into(),
        groups: 2,
        queue_max_depth: 1_000_000,
        queue_max_bytes: DEFAULT_MAX_BYTES,
        epoch_max_mutations: EpochLimits::DEFAULT_MAX_MUTATIONS,
        epoch_max_bytes: EpochLimits::DEFAULT_MAX_BYTES,
        archives: None,
        retain_epochs: None,
        keep_archives: false,
    })
}

/// The config `init` writes, checked before anything is written (a refused flag leaves no
/// half-made directory behind): every refusal is the user's to fix (2).
fn init_config(args: &InitArgs) -> Result<DirectoryConfig, CliError> {
    let dir = &args.data;
    if dir.join(CONFIG_FILE).exists() {
        return Err(CliError::usage(format!("{} is already a keyfold directory", dir.display())));
    }
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|e| CliError::file(format!("cannot read {}: {e}", dir.display()), &e))?;
        if entries.next().is_some() {
            return Err(CliError::usage(format!("{} is not empty; choose an empty or new directory", dir.display())));
        }
    }
    let suite = HashSuite::from_name(&args.hash)
        .ok_or_else(|| CliError::usage(format!("unknown --hash {:?}: choose blake3 or sha256", args.hash)))?;
    keyfold_core::check_origin(&args.origin).map_err(|e| CliError::usage(format!("--origin: {e}")))?;
    TreeConfig::new(suite, args.shards_bits).map_err(|e| CliError::usage(format!("--shards-bits: {e}")))?;
    if let Some(location) = &args.archives {
        archives_path(location).map_err(|e| CliError::usage(format!("--archives: {e}")))?;
    }
    let config = DirectoryConfig {
        format: DATA_FORMAT,
        origin: args.origin.clone(),
        hash: suite.name().into(),
        shard_bits: args.shards_bits,
        groups: args.groups,
        queue_max_depth: args.queue_max_depth,
        queue_max_bytes: args.queue_max_bytes,
        epoch_max_mutations: args.epoch_max_mutations,
        epoch_max_bytes: args.epoch_max_bytes,
        archives: args.archives.clone(),
        retain_epochs: args.retain_epochs,
        keep_archives: args.keep_archives,
    };
    if let Some(name) = config.zero_bound() {
        return Err(CliError::usage(format!("--{} must be at least 1", name.replace('_', "-"))));
    }
    Ok(config)
}

pub fn init(args: &InitArgs) -> Result<(), CliError> {
    let dir = &args.data;
    let config = init_config(args)?;
    std::fs::create_dir_all(dir).map_err(|e| CliError::file(format!("cannot create {}: {e}", dir.display()), &e))?;
    let public =
        generate_key_files(&dir.join("signing.key"), &dir.join("signing.pub")).map_err(CliError::unavailable)?;
    let text = toml::to_string(&config).map_err(|e| CliError::unavailable(format!("{CONFIG_FILE}: {e}")))?;
    // The config is written last but one: a directory with a config and keys opens; the genesis
    // head is created by the first open if this process dies before it.
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, text).map_err(|e| CliError::unavailable(format!("cannot write {}: {e}", path.display())))?;
    drop(open_job(dir)?);
    println!(
        "initialised {} ({}, {} shard bits, origin {})",
        dir.display(),
        config.hash,
        args.shards_bits,
        args.origin
    );
    println!("public key: {}", B64.encode(public.as_bytes()));
    // What a witness is configured with (`keyfold witness serve --log ORIGIN=VKEY`).
    println!("vkey: {}", keyfold_core::vkey(&config.origin, &public));
    Ok(())
}

pub fn epoch(args: &DataArgs) -> Result<(), CliError> {
    let job = open_job(&args.data)?.job;
    let report = job.run_epoch(now_ms()).map_err(CliError::store)?;
    let h = &report.head;
    println!(
        "epoch {}: {} mutations ({} applied, {} rejected, {} duplicates), root {}",
        h.epoch,
        h.counts.mutations,
        h.counts.applied,
        h.counts.rejected,
        h.counts.duplicates,
        h.root.to_hex()
    );
    let t = report.timings;
    println!(
        "phases: cut {:.1} ms, apply {:.1} ms, tree {:.1} ms, archive {:.1} ms, sign {:.1} ms, commit {:.1} ms",
        t.cut.as_secs_f64() * 1e3,
        t.apply.as_secs_f64() * 1e3,
        t.tree.as_secs_f64() * 1e3,
        t.archive.as_secs_f64() * 1e3,
        t.sign.as_secs_f64() * 1e3,
        t.commit.as_secs_f64() * 1e3
    );
    print!("{}", report.note);
    Ok(())
}

/// `keyfold rotate-key`: stages the next signing key in the data directory (SPEC section 6.6).
pub fn rotate_key(args: &DataArgs) -> Result<(), CliError> {
    let config = read_config(&args.data)?;
    let next = keyfold_epoch::KeyFiles::new(&args.data).stage_next().map_err(CliError::usage)?;
    println!("next key: {}", B64.encode(next.as_bytes()));
    println!("next vkey: {}", keyfold_core::vkey(&config.origin, &next));
    println!(
        "the next epoch's head announces this key (signed by the current one); the epochs after it are signed \
         with it"
    );
    Ok(())
}

pub fn status(args: &DataArgs) -> Result<(), CliError> {
    let Opened { config, job, .. } = open_job(&args.data)?;
    let (epoch, note) =
        job.heads().latest().map_err(CliError::store)?.ok_or_else(|| CliError::verification("no head"))?;
    let head = job
        .verify_stored(epoch, &note)
        .map_err(|e| CliError::verification(format!("the latest head (epoch {epoch}): {e}")))?;
    println!("directory: {} ({}, {} shard bits)", config.origin, config.hash, config.shard_bits);
    println!("public key: {}", B64.encode(job.public_key()));
    if let Ok(key) = keyfold_core::VerifyingKey::from_bytes(&job.public_key()) {
        println!("vkey: {}", keyfold_core::vkey(&config.origin, &key));
    }
    println!("latest epoch: {epoch} at {} ms, root {}", head.time_ms, head.root.to_hex());
    println!(
        "pending mutations: {} of {} bytes (bounds {} mutations, {} bytes)",
        job.queue().depth(),
        job.queue().pending_bytes(),
        config.queue_max_depth,
        config.queue_max_bytes
    );
    println!("epoch caps: {} mutations, {} bytes", config.epoch_max_mutations, config.epoch_max_bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `keyfold.toml` written before the byte bound and the epoch caps existed opens with their
    /// defaults; a zero bound is refused with its name.
    #[test]
    fn old_config_files_get_the_default_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let old = "format = 2\norigin = \"a.example\"\nhash = \"blake3\"\nshard_bits = 4\ngroups = 2\nqueue_max_depth = 500\n";
        std::fs::write(dir.path().join(CONFIG_FILE), old).unwrap();
        let config = read_config(dir.path()).unwrap();
        assert_eq!(config.queue_max_depth, 500);
        assert_eq!(config.queue_options(HashSuite::Blake3).max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(config.epoch_limits(), EpochLimits::default());
        let written = toml::to_string(&config).unwrap();
        assert!(written.contains("epoch_max_bytes = 67108864"), "{written}");
        std::fs::write(dir.path().join(CONFIG_FILE), format!("{old}epoch_max_mutations = 0\n")).unwrap();
        let err = read_config(dir.path()).unwrap_err();
        assert!(err.to_string().contains("epoch_max_mutations must be at least 1"), "{err}");
        assert_eq!(err.exit_code(), 2, "a bad config file is the user's to fix");
    }
}
