//! `keyfold fsck --data DIR`: an offline check of a whole data directory (stop the server first:
//! the stores are opened exclusively), store by store, reporting every problem found. It never
//! panics on damaged files: a library that panics on them is caught and the file is named.
//! * heads and archives: the full monitor replay from genesis (signatures, chain links, strictly
//!   increasing times, archive digests, every outcome, every root);
//! * the epoch proofs beside the archives: each audits from the heads around it and the archive
//!   (SPEC section 3.2: old root, shape, outcomes, new root); epochs without one are listed;
//! * the map: its root at every epoch is the signed root, and at the latest signed epoch every
//!   key the archives name has a lookup proof that verifies against that root and gives the value
//!   the replay computed;
//! * the outcome index (`index.redb`): every mutation of every indexed epoch has its archived
//!   outcome (its latest appearance), every key its archived history, and the index is not ahead
//!   of the heads (behind is a crash's normal state: the next start catches it up);
//! * the queue: the entries after the heads' cursor read back and decode, in position order;
//! * every redb file (queue, heads, index, cosignatures, the map's files): redb's own integrity
//!   check, the checksum of every page of its committed trees, on a copy of the file;
//! * the witnesses' cosignatures (`cosignatures.redb`): each is of an epoch that has a head, and
//!   each by a witness given with `--witness NAME=KEY` verifies on that head (the others are
//!   counted, not checked: the directory does not hold witness keys).
//!
//! Any problem found is exit 1. A store held by a running server is exit 3 (nothing could be
//! checked: stop the server and run fsck again); bad arguments or an absent directory are 2.

use crate::directory::read_config;
use crate::error::CliError;
use clap::Args;
use keyfold_core::{Epoch, FlatEpochProof, HashSuite, Head, MapRoot, Witness, verify_cosignature, with_cosignatures};
use keyfold_core::{Index, MutationId};
use keyfold_epoch::{
    ArchiveSink, HeadStore, KeyVersion, ObjectArchives, OutcomeIndex, OutcomeRecord, applied, outcome_of,
};
use keyfold_ingest::{Entry, Position, Queue};
use keyfold_map::{Map, TreeConfig, TreeStore, lookup_in};
use keyfold_redb::{Layout, RedbCosignatures, RedbHeadStore, RedbOptions, RedbOutcomeIndex, RedbQueue, RedbStore};
use keyfold_verify::{Replayer, audit_epoch};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The data directory to check (its server stopped).
    #[arg(long, env = "KEYFOLD_DATA")]
    data: PathBuf,
    /// A witness whose stored cosignatures to verify: `NAME=KEY[@URL]` as for `serve` (KEY base64
    /// or the witness's cosigner vkey; a URL is ignored here; repeat for several).
    #[arg(long = "witness", value_name = "NAME=KEY", env = "KEYFOLD_WITNESSES", value_delimiter = ',')]
    witness: Vec<String>,
}

/// What a check found: a one-line summary, or the problem.
pub(crate) type Finding = Result<String, Problem>;

/// What a check found wrong: a report line of `fsck`'s output. Every problem is a verification
/// failure (exit 1, once every check has run).
#[derive(Debug, Clone)]
pub(crate) struct Problem(String);

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Problem {
    fn from(line: String) -> Problem {
        Problem(line)
    }
}

impl From<keyfold_verify::Divergence> for Problem {
    fn from(d: keyfold_verify::Divergence) -> Problem {
        Problem(format!("divergence: {d}"))
    }
}

impl From<&str> for Problem {
    fn from(line: &str) -> Problem {
        Problem(line.to_owned())
    }
}

/// What the replay of heads and archives leaves for the map and index checks.
struct Replayed {
    replayer: Replayer,
    /// Every key the archives name.
    keys: BTreeSet<Vec<u8>>,
    mutations: u64,
    /// What the index must hold for the epochs it says it indexed.
    index: ExpectedIndex,
    /// Epochs whose stored epoch proof audits, epochs without one, and each problem found.
    proofs: ProofsChecked,
}

/// The epoch proofs (SPEC section 3.2) stored beside the archives, each audited from the two
/// heads around it and the archive.
#[derive(Default)]
struct ProofsChecked {
    audited: u64,
    missing: Vec<Epoch>,
    problems: Vec<String>,
}

impl ProofsChecked {
    /// Audits epoch `head`'s stored proof (if any) from `previous`, the head before it.
    fn check(&mut self, archives: &ObjectArchives, previous: &Head, head: &Head, archive: bytes::Bytes) {
        let epoch = head.epoch;
        let proof = match ArchiveSink::get_proof(archives, epoch) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return self.missing.push(epoch),
            Err(e) => return self.problems.push(format!("epoch {epoch}: reading its proof: {e}")),
        };
        let audited = FlatEpochProof::decode(&proof)
            .map_err(|e| e.to_string())
            .and_then(|proof| audit_epoch(previous, head, archive, &proof).map_err(|d| d.to_string()));
        match audited {
            Ok(_) => self.audited += 1,
            Err(e) => self.problems.push(format!("epoch {epoch}: its epoch proof does not audit: {e}")),
        }
    }

    fn finding(&self) -> Finding {
        if let Some(first) = self.problems.first() {
            return Err(format!("{first} ({} epoch(s) with a bad proof)", self.problems.len()).into());
        }
        let missing = match (self.missing.first(), self.missing.last()) {
            (Some(first), Some(last)) => format!(
                "; {} epoch(s) have none (epochs {first}..={last}: signed before proofs were written)",
                self.missing.len()
            ),
            _ => String::new(),
        };
        Ok(format!("the proofs of {} epoch(s) audit (old root, shape, outcomes, new root){missing}", self.audited))
    }
}

/// The outcome of each mutation's latest appearance, and each key's applied changes in order, over
/// epochs `1..=through`.
#[derive(Default)]
struct ExpectedIndex {
    through: Epoch,
    outcomes: HashMap<MutationId, OutcomeRecord>,
    histories: HashMap<Index, Vec<KeyVersion>>,
}

fn replay_all(
    heads: &RedbHeadStore,
    archives: &ObjectArchives,
    origin: &str,
    public: &[u8; 32],
    shard_bits: u8,
    indexed_through: Epoch,
) -> Result<Replayed, Problem> {
    let (latest, _) = heads.latest().map_err(|e| e.to_string())?.ok_or("no head at all, not even genesis")?;
    let note = |epoch: Epoch| {
        heads.get(epoch).map_err(|e| e.to_string())?.ok_or_else(|| format!("epoch {epoch}: head missing"))
    };
    let mut replayer =
        Replayer::from_genesis(&note(Epoch(0))?, origin, public, shard_bits).map_err(|d| format!("divergence: {d}"))?;
    let (mut keys, mut mutations, mut proofs) = (BTreeSet::new(), 0, ProofsChecked::default());
    let mut index = ExpectedIndex { through: indexed_through.min(latest), ..ExpectedIndex::default() };
    for e in 1..=latest.0 {
        let epoch = Epoch(e);
        let archive = ArchiveSink::get(archives, epoch)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("epoch {epoch}: archive {} missing", archives.describe(epoch)))?;
        let previous = replayer.head().clone();
        let (head, rows) =
            replayer.replay_rows(&note(epoch)?, archive.clone()).map_err(|d| format!("divergence: {d}"))?;
        proofs.check(archives, &previous, &head, archive);
        mutations += head.counts.mutations;
        if epoch <= index.through {
            for row in &rows {
                index.outcomes.insert(MutationId(row.mutation_id), outcome_of(row, epoch));
            }
            for (key, change, _) in applied(epoch, &rows) {
                index.histories.entry(key).or_default().push(change);
            }
        }
        keys.extend(rows.into_iter().filter_map(|row| row.key));
    }
    Ok(Replayed { replayer, keys, mutations, index, proofs })
}

fn check_map(map: &Map<RedbStore>, heads: &RedbHeadStore, replayed: &Replayed) -> Finding {
    let suite = map.store().config().suite;
    let signed = replayed.replayer.head().epoch;
    let stored = map.latest_epoch().map_err(|e| e.to_string())?;
    // One epoch committed to the map without its head is a crash's normal state: the next run
    // recomputes the epoch, checks it against the stored root and signs it.
    if stored != signed && stored != signed.next() {
        return Err(format!("the map is at epoch {stored} but the heads at {signed}").into());
    }
    for e in 0..=signed.0 {
        let note = heads.get(Epoch(e)).map_err(|e| e.to_string())?.ok_or_else(|| format!("epoch {e}: head missing"))?;
        // The replay verified these same stored notes, each under the key in effect at its epoch.
        let head = keyfold_core::peek_checkpoint(&note)
            .and_then(|checkpoint| keyfold_core::Head::from_checkpoint(&checkpoint))
            .map_err(|err| format!("epoch {e}: {err}"))?;
        let root = map.root(Epoch(e)).map_err(|err| format!("epoch {e}: {err}"))?;
        if root.hash != head.root {
            return Err(format!(
                "epoch {e}: stored root {} but the head signs {}",
                root.hash.to_hex(),
                head.root.to_hex()
            )
            .into());
        }
    }
    let root = MapRoot { epoch: signed, hash: replayed.replayer.head().root };
    let snapshot = map.store().snapshot(signed).map_err(|e| e.to_string())?;
    let replica = replayed.replayer.map().store().snapshot(signed).map_err(|e| e.to_string())?;
    replayed.keys.par_iter().try_for_each(|key| check_key(suite, &snapshot, &replica, &root, key))?;
    Ok(format!(
        "the roots of epochs 0..={signed} are the signed ones; the proofs of all {} keys verify at epoch {signed} and give the replayed values",
        replayed.keys.len()
    ))
}

fn check_key<A: keyfold_map::Snapshot, B: keyfold_map::Snapshot>(
    suite: HashSuite,
    stored: &A,
    replica: &B,
    root: &MapRoot,
    key: &[u8],
) -> Result<(), Problem> {
    let index = suite.index_of(key);
    let name = String::from_utf8_lossy(key);
    let lookup = lookup_in(stored, suite, &index).map_err(|e| format!("key {name:?}: {e}"))?;
    lookup.proof.verify(suite, root, key, lookup.value.as_ref()).map_err(|e| format!("key {name:?}: proof: {e}"))?;
    let replayed = lookup_in(replica, suite, &index).map_err(|e| format!("key {name:?}: replica: {e}"))?.value;
    if lookup.value != replayed {
        return Err(format!("key {name:?}: stored {:?}, replayed {:?}", lookup.value, replayed).into());
    }
    Ok(())
}

/// Every mutation's outcome in `expected` is the one the index holds for it.
pub(crate) fn check_indexed_outcomes(
    index: &RedbOutcomeIndex,
    expected: &HashMap<MutationId, OutcomeRecord>,
) -> Result<(), Problem> {
    expected.par_iter().try_for_each(|(id, want)| -> Result<(), Problem> {
        match index.outcome(id) {
            Ok(Some(found)) if &found == want => Ok(()),
            Ok(found) => Err(format!("mutation {}: indexed as {found:?}, archived as {want:?}", id.0.to_hex()).into()),
            Err(e) => Err(format!("mutation {}: {e}", id.0.to_hex()).into()),
        }
    })
}

fn check_index(index: &RedbOutcomeIndex, indexed_through: Epoch, replayed: &Replayed) -> Finding {
    let signed = replayed.replayer.head().epoch;
    if indexed_through > signed {
        return Err(format!("the index is at epoch {indexed_through} but the heads only at {signed}").into());
    }
    let expected = &replayed.index;
    check_indexed_outcomes(index, &expected.outcomes)?;
    expected.histories.par_iter().try_for_each(|(key_index, want)| -> Result<(), Problem> {
        let found = index
            .history(key_index, keyfold_epoch::HistoryAfter::default(), want.len() + 1)
            .map_err(|e| e.to_string())?;
        if &found == want {
            Ok(())
        } else {
            Err(format!("key index {}: history {found:?}, archived {want:?}", key_index.to_hex()).into())
        }
    })?;
    let behind = if indexed_through < signed {
        format!("; it is {} epoch(s) behind the heads, caught up at the next start", signed.0 - indexed_through.0)
    } else {
        String::new()
    };
    Ok(format!(
        "through epoch {indexed_through}: the outcomes of all {} mutations and the histories of all {} keys are the archived ones{behind}",
        expected.outcomes.len(),
        expected.histories.len()
    ))
}

fn check_queue(queue: &RedbQueue, cursor: Position) -> Finding {
    let (mut from, mut mutations, mut markers) = (Position(cursor.0 + 1), 0u64, 0u64);
    loop {
        let chunk =
            queue.read_bounded(from, 10_000, 16 << 20).map_err(|e| format!("after position {}: {e}", from.0))?;
        let Some((last, _)) = chunk.last() else { break };
        if let Some(w) = chunk.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!("positions out of order: {} then {}", w[0].0.0, w[1].0.0).into());
        }
        if chunk[0].0 < from {
            return Err(format!("asked from position {}, got {}", from.0, chunk[0].0.0).into());
        }
        for (_, entry) in &chunk {
            match entry {
                Entry::Mutation(_) => mutations += 1,
                Entry::Marker(_) => markers += 1,
            }
        }
        from = Position(last.0 + 1);
    }
    Ok(format!(
        "{mutations} mutations and {markers} markers after the cursor (position {}) read back in order",
        cursor.0
    ))
}

/// The stored cosignatures: each of an epoch that has a head, and each by a listed witness
/// verifying on that head.
fn check_cosignatures(stored: &RedbCosignatures, heads: &RedbHeadStore, witnesses: &[Witness]) -> Finding {
    let all = stored.all().map_err(|e| e.to_string())?;
    let (mut verified, mut unchecked) = (0usize, BTreeSet::new());
    // `all` ascends by epoch: each epoch's head is read once, for all its witnesses.
    for lines in all.chunk_by(|a, b| a.0 == b.0) {
        let (epoch, first_name, _) = &lines[0];
        let note = heads
            .get(*epoch)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{first_name}'s cosignature of epoch {epoch}, which has no head"))?;
        for (_, name, line) in lines {
            let Some(witness) = witnesses.iter().find(|w| w.name == *name) else {
                unchecked.insert(name.as_str());
                continue;
            };
            verify_cosignature(&with_cosignatures(&note, std::slice::from_ref(line)), witness)
                .map_err(|e| format!("epoch {epoch}: {e}"))?;
            verified += 1;
        }
    }
    let mut summary = format!("{} stored, {verified} verified", all.len());
    if !unchecked.is_empty() {
        let names: Vec<&str> = unchecked.into_iter().collect();
        summary
            .push_str(&format!("; not checked, by witnesses not given with --witness NAME=KEY: {}", names.join(", ")));
    }
    Ok(summary)
}

/// The checks of a directory that keeps every epoch: the replay from genesis, then the map and
/// the index against it.
fn check_replayed(
    config: &crate::directory::DirectoryConfig,
    public: &[u8; 32],
    (heads, archives, store): (&RedbHeadStore, &ObjectArchives, RedbStore),
    index: Option<&RedbOutcomeIndex>,
    indexed_through: Result<Epoch, Problem>,
    problems: &mut Vec<String>,
) {
    let replayed = guarded("heads and archives", || {
        let through = indexed_through.clone()?;
        replay_all(heads, archives, &config.origin, public, config.shard_bits, through)
    });
    let summary = replayed.as_ref().map(|r| {
        format!(
            "epochs 0..={} replay: {} mutations; signatures, links, times, digests, outcomes and roots hold",
            r.replayer.head().epoch,
            r.mutations
        )
    });
    report(problems, "heads and archives", summary.map_err(Clone::clone));
    match &replayed {
        Ok(r) => report(problems, "epoch proofs", r.proofs.finding()),
        Err(_) => println!("skip  epoch proofs: they are audited with the replayed heads, whose replay failed"),
    }
    match &replayed {
        Ok(r) => {
            let finding = guarded("map", || check_map(&Map::new(store), heads, r));
            report(problems, "map", finding);
        }
        Err(_) => println!("skip  map: it is checked against the replay, which failed"),
    }
    match (index, &replayed, &indexed_through) {
        (Some(index), Ok(r), Ok(through)) => {
            report(problems, "index", guarded("index", || check_index(index, *through, r)));
        }
        (None, _, _) => println!("skip  index: no index.redb (it is rebuilt from the archives at the next start)"),
        _ => println!("skip  index: it is checked against the archives, whose replay failed"),
    }
}

pub(crate) fn report(problems: &mut Vec<String>, what: &str, finding: Finding) {
    match finding {
        Ok(summary) => println!("ok    {what}: {summary}"),
        Err(problem) => {
            println!("FAIL  {what}: {problem}");
            problems.push(format!("{what}: {problem}"));
        }
    }
}

/// A store that cannot be opened: held by another process (a running server) is unavailable
/// (3, nothing checked); anything else is damage (1).
fn busy(what: &str, e: &(dyn std::error::Error + 'static)) -> CliError {
    let message = format!("cannot open the {what}: {e} (is a server running on this directory? stop it first)");
    if held_elsewhere(e) { CliError::unavailable(message) } else { CliError::verification(message) }
}

/// Whether `e` or an error it wraps is redb's refusal to open a file another process holds.
fn held_elsewhere(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if matches!(err.downcast_ref::<redb::Error>(), Some(redb::Error::DatabaseAlreadyOpen))
            || matches!(err.downcast_ref::<redb::DatabaseError>(), Some(redb::DatabaseError::DatabaseAlreadyOpen))
            || err.to_string().contains("Database already open")
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// A panic caught by [`guarded`], as a problem.
pub(crate) struct Panicked(String);

impl From<Panicked> for Problem {
    fn from(p: Panicked) -> Problem {
        Problem(p.0)
    }
}

impl From<Panicked> for CliError {
    fn from(p: Panicked) -> CliError {
        CliError::Verification(p.0)
    }
}

/// Runs `f`, turning a panic (a library meeting bytes it did not expect, such as a redb page
/// altered on disk) into a finding: fsck reports damage, it never dies of it.
pub(crate) fn guarded<T, E: From<Panicked>>(what: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let cause = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(Panicked(format!("{what}: reading it failed with a panic ({cause}): its storage is corrupt")).into())
        }
    }
}

/// The redb files of a data directory, relative to it, in a fixed order.
fn redb_files(dir: &Path) -> Vec<PathBuf> {
    let layout = Layout::new(dir);
    let mut files: Vec<PathBuf> = [layout.queue(), layout.heads(), layout.index(), layout.cosignatures()]
        .into_iter()
        .filter(|f| f.exists())
        .filter_map(|f| f.strip_prefix(dir).ok().map(Path::to_path_buf))
        .collect();
    let tree_dir = layout.tree();
    let relative = tree_dir.strip_prefix(dir).unwrap_or(&tree_dir).to_path_buf();
    let mut tree: Vec<PathBuf> = std::fs::read_dir(&tree_dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| relative.join(e.file_name())).collect())
        .unwrap_or_default();
    tree.retain(|f| f.extension().is_some_and(|e| e == "redb"));
    tree.sort();
    files.extend(tree);
    files
}

/// redb's own integrity check of one file (the checksum of every page of its committed trees),
/// run on a copy: the check repairs what it can by going back to the previous commit, which on
/// the live file would silently drop the latest acknowledged write. Repairable damage is reported
/// too, since it means the newest commit is unreadable.
fn check_redb_file(dir: &Path, file: &Path, scratch: &Path) -> Finding {
    let copy = scratch.join(file.file_name().unwrap_or_default());
    std::fs::copy(dir.join(file), &copy).map_err(|e| format!("cannot copy it for the check: {e}"))?;
    let checked = guarded("redb", || -> Result<bool, Problem> {
        let mut db = redb::Database::open(&copy).map_err(|e| format!("redb cannot open it: {e}"))?;
        Ok(db.check_integrity().map_err(|e| format!("redb's integrity check failed: {e}"))?)
    });
    let _ = std::fs::remove_file(&copy);
    match checked? {
        true => Ok("redb integrity check: every page checksum holds".into()),
        false => {
            Err("redb integrity check: damaged; redb could only repair it by rolling back its latest commit".into())
        }
    }
}

fn check_redb_files(dir: &Path, problems: &mut Vec<String>) -> Result<(), CliError> {
    let scratch = tempfile::tempdir()
        .map_err(|e| CliError::unavailable(format!("a scratch directory for redb's checks: {e}")))?;
    for file in redb_files(dir) {
        report(problems, &file.display().to_string(), check_redb_file(dir, &file, scratch.path()));
    }
    Ok(())
}

/// Every store of a directory, opened (exclusively: a running server holds them).
struct Stores {
    heads: RedbHeadStore,
    archives: ObjectArchives,
    store: RedbStore,
    queue: RedbQueue,
    index: Option<RedbOutcomeIndex>,
}

fn open_stores(dir: &Path, config: &crate::directory::DirectoryConfig, tree: TreeConfig) -> Result<Stores, CliError> {
    let layout = Layout::new(dir);
    let heads = guarded("heads.redb", || RedbHeadStore::open(&layout.heads()).map_err(|e| busy("heads", &e)))?;
    let archives = crate::directory::open_archives(dir, config)?;
    let options = RedbOptions { groups: config.groups, ..RedbOptions::new(tree) };
    let store = guarded("tree", || RedbStore::open(&layout.tree(), options).map_err(|e| busy("map", &e)))?;
    let queue_options = config.queue_options(tree.suite);
    let queue =
        guarded("queue.redb", || RedbQueue::open(&layout.queue(), queue_options).map_err(|e| busy("queue", &e)))?;
    let index_path = layout.index();
    let index = match index_path.exists() {
        true => Some(guarded("index.redb", || RedbOutcomeIndex::open(&index_path).map_err(|e| busy("index", &e)))?),
        false => None,
    };
    Ok(Stores { heads, archives, store, queue, index })
}

pub fn fsck(args: &FsckArgs) -> Result<(), CliError> {
    // Panics are caught and reported as findings (`guarded`); the default hook would also print
    // each one as if fsck itself had crashed.
    std::panic::set_hook(Box::new(|_| {}));
    let dir: &Path = &args.data;
    let witnesses = crate::serve::parse_witnesses(&args.witness)?;
    let config = read_config(dir)?;
    let tree = crate::directory::tree_config(&config)?;
    // A replay from genesis starts at the key that signed it (the first of any rollovers).
    let public = keyfold_epoch::KeyFiles::new(dir).genesis_public().map_err(CliError::usage)?;
    let mut problems = Vec::new();
    check_redb_files(dir, &mut problems)?;
    // Closing a damaged store may panic too, so the stores are opened, checked and dropped inside.
    let checked = guarded("stores", || {
        let stores = open_stores(dir, &config, tree)?;
        check_stores(dir, &config, &public, &witnesses, stores, &mut problems);
        Ok::<(), CliError>(())
    });
    match checked {
        Ok(()) => {}
        Err(problem @ CliError::Verification(_)) => report(&mut problems, "stores", Err(problem.to_string().into())),
        // Held by a running server, or not where the config says: nothing was checked.
        Err(cannot_check) => return Err(cannot_check),
    }
    match problems.first() {
        None => {
            println!("fsck {}: no problems", dir.display());
            Ok(())
        }
        Some(first) => Err(CliError::verification(format!(
            "fsck {}: {} problem(s); the first: {first}",
            dir.display(),
            problems.len()
        ))),
    }
}

fn check_stores(
    dir: &Path,
    config: &crate::directory::DirectoryConfig,
    public: &[u8; 32],
    witnesses: &[Witness],
    stores: Stores,
    problems: &mut Vec<String>,
) {
    let Stores { heads, archives, store, queue, index } = stores;
    let indexed_through = match &index {
        Some(index) => guarded("index", || index.indexed_through().map_err(|e| Problem(e.to_string()))),
        None => Ok(Epoch(0)),
    };
    match store.oldest_epoch() {
        // A retention window forgot the epochs before `oldest`: nothing to replay from genesis.
        Ok(oldest) if oldest > Epoch(0) => {
            let window = crate::fsck_window::Window {
                config,
                public,
                heads: &heads,
                archives: &archives,
                oldest,
                indexed_through: indexed_through.clone().unwrap_or(Epoch(0)),
            };
            crate::fsck_window::check_window(&window, store, index.as_ref(), problems);
        }
        Ok(_) => check_replayed(config, public, (&heads, &archives, store), index.as_ref(), indexed_through, problems),
        Err(e) => report(problems, "map", Err(format!("reading its oldest kept epoch: {e}").into())),
    }
    let queue_finding =
        guarded("queue", || check_queue(&queue, heads.cursor().map_err(|e| format!("the heads' cursor: {e}"))?));
    report(problems, "queue", queue_finding);
    let cosignatures_path = Layout::new(dir).cosignatures();
    match cosignatures_path.exists() {
        true => {
            let finding = guarded("cosignatures", || {
                let stored =
                    RedbCosignatures::open(&cosignatures_path).map_err(|e| busy("cosignatures", &e).to_string())?;
                check_cosignatures(&stored, &heads, witnesses)
            });
            report(problems, "cosignatures", finding);
        }
        false => println!("skip  cosignatures: none stored (no cosignatures.redb)"),
    }
}
