//! A key's verified history: `keyfold lookup KEY --history` prints it, `keyfold watch` is the
//! owner's self-monitor. Both fetch `GET /v1/keys/{key}/history` (one request per check unless
//! more than a page of versions is new) and check that the listed versions chain to the key's
//! signed leaf (SPEC section 1.3), so no version can be left out, even one set and overwritten
//! within a single epoch.

use crate::client::{LookupArgs, Trust, get_json, key_url};
use crate::error::CliError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use keyfold_verify::wire::HistoryResponse;
use keyfold_verify::{HistoryError, HistoryPoint, HistoryVersion, LookupError, Pinned, VerifiedHistory, View};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where a fetched history starts.
#[derive(Debug, Clone, Copy)]
enum Since {
    /// After a point verified before (the start of the key: [`HistoryPoint::START`]).
    Point(HistoryPoint),
    /// After an epoch: from the key's signed leaf at it.
    Epoch(u64),
}

/// The pages of a key's history after `since`, verified on the last one: the versions and the
/// new view, and every page as served (the evidence a report carries).
fn fetch_verified(
    server: &str,
    key: &str,
    since: Since,
    pinned: &Pinned,
    view: Option<&View>,
) -> Result<(VerifiedHistory, View, Vec<HistoryResponse>), Fetched> {
    let mut pages: Vec<HistoryResponse> = Vec::new();
    let mut earlier = Vec::new();
    let mut after = match since {
        Since::Point(start) => start.version,
        Since::Epoch(_) => 0,
    };
    loop {
        let mut url = key_url(server, key, &["history"])?;
        url.query_pairs_mut().append_pair("after_version", &after.to_string());
        if let Since::Epoch(epoch) = since {
            url.query_pairs_mut().append_pair("after", &epoch.to_string());
        }
        if let Some(view) = view {
            url.query_pairs_mut().append_pair("from", &view.size().to_string());
        }
        let page: HistoryResponse = get_json(url)?;
        if page.lookup.is_some() {
            let verified = match since {
                Since::Point(start) => {
                    keyfold_verify::verify_history(key.as_bytes(), &start, earlier, &page, pinned, view)
                }
                Since::Epoch(epoch) => keyfold_verify::verify_history_since(
                    key.as_bytes(),
                    keyfold_core::Epoch(epoch),
                    earlier,
                    &page,
                    pinned,
                    view,
                ),
            };
            pages.push(page);
            let (history, next) = verified.map_err(Fetched::Refused)?;
            return Ok((history, next, pages));
        }
        let next_after = page.next_after_version.filter(|&next| next > after);
        let Some(next_after) = next_after else {
            return Err(CliError::verification("a history page without a lookup or a later cursor").into());
        };
        earlier.extend(keyfold_verify::decode_versions(&page.versions).map_err(Fetched::Refused)?);
        after = next_after;
        pages.push(page);
    }
}

/// Why a history could not be had: a failure on the way, or an answer that did not verify.
enum Fetched {
    Failed(CliError),
    Refused(HistoryError),
}

impl From<CliError> for Fetched {
    fn from(e: CliError) -> Fetched {
        Fetched::Failed(e)
    }
}

/// `keyfold lookup KEY --history`.
pub fn lookup_history(args: &LookupArgs, pinned: &Pinned, view: Option<View>) -> Result<(), CliError> {
    let since = args.since.map_or(Since::Point(HistoryPoint::START), Since::Epoch);
    let fetched = fetch_verified(&args.server, &args.key, since, pinned, view.as_ref());
    let (history, next, _) = match fetched {
        Ok(done) => done,
        Err(Fetched::Failed(e)) => return Err(e),
        Err(Fetched::Refused(
            HistoryError::Lookup(LookupError::View(e)) | HistoryError::Start { error: LookupError::View(e), .. },
        )) => {
            return Err(crate::client::view_refused(e, args));
        }
        Err(Fetched::Refused(e)) => return Err(CliError::verification(format!("REFUSED: {e}"))),
    };
    crate::client::finish_view(args, &next)?;
    println!("key      {}", args.key);
    for v in &history.versions {
        println!("version  {:>6}  epoch {:>8}  {}", v.version.0, v.epoch.0, describe(v.value.as_deref()));
    }
    let head = &history.lookup.head;
    let what = match args.since {
        None => "the key's complete history".to_owned(),
        Some(epoch) => format!(
            "every version of the key applied after epoch {epoch}: they chain from its signed leaf at epoch {epoch} \
             (version {})",
            history.start.version
        ),
    };
    println!(
        "verified: these {} version(s) are {what}: their commitments chain to its leaf in the map of epoch {} (root \
         {}), whose head is signed by the pinned key for origin {:?}",
        history.versions.len(),
        head.epoch,
        head.root.to_hex(),
        pinned.origin
    );
    crate::client::print_view(view.as_ref(), &next, args.state.is_some(), pinned);
    Ok(())
}

fn describe(value: Option<&[u8]>) -> String {
    match value {
        None => "deleted".to_owned(),
        Some(v) => match std::str::from_utf8(v) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("base64 {}", B64.encode(v)),
        },
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Server base URL.
    #[arg(long, env = "KEYFOLD_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The key (user id) you own.
    key: String,
    #[command(flatten)]
    trust: Trust,
    /// The values you published for the key, one a line: UTF-8 text (as `submit --value`),
    /// `base64:<value>` (as `submit --value-base64`), or `<deleted>` if you deleted it. Empty
    /// lines and lines starting with `#` are skipped. Any version whose value is not listed is
    /// reported.
    #[arg(long, value_name = "FILE")]
    expect: PathBuf,
    /// Where the watch keeps what it verified (the log checkpoint and the key's last checked
    /// version and commitment), so each check asks only for the versions after it: one request.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Where a report writes its evidence (default: STATE.evidence-<unix time>.json).
    #[arg(long, value_name = "FILE")]
    evidence: Option<PathBuf>,
}

/// What `keyfold watch --state FILE` keeps.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchState {
    key: String,
    /// The last checkpoint verified, and the key rollovers from the pinned key to its signer.
    checkpoint: String,
    rollovers: Vec<String>,
    /// Where the key's verified history ends.
    history: HistoryPoint,
}

/// `keyfold watch KEY --expect FILE --state FILE`: exit 0 when every version since the last
/// check is one the owner published, 1 (with an evidence file) when one is not.
pub fn watch(args: &WatchArgs) -> Result<(), CliError> {
    let pinned = args.trust.pinned()?;
    let expected = read_expected(&args.expect)?;
    let (view, start) = match load_state(&args.state, &args.key, &pinned)? {
        Some((view, start)) => (Some(view), start),
        None => (None, HistoryPoint::START),
    };
    let (history, next, pages) =
        match fetch_verified(&args.server, &args.key, Since::Point(start), &pinned, view.as_ref()) {
            Ok(done) => done,
            Err(Fetched::Failed(e)) => return Err(e),
            Err(Fetched::Refused(HistoryError::Lookup(LookupError::View(e)))) => {
                return Err(crate::view_state::report(e, &args.state, args.evidence.as_deref()));
            }
            Err(Fetched::Refused(e)) => return Err(CliError::verification(format!("REFUSED: {e}"))),
        };
    let unexpected: Vec<&HistoryVersion> = history.versions.iter().filter(|v| !expected.contains(&v.value)).collect();
    // The evidence first, then the state. Recovery if the process dies right after the evidence
    // is written: the state still ends before the unexpected versions, so the next check reports
    // them again (a second evidence file). After the state is written the next check starts
    // after them: each is reported once, its evidence already on disk.
    let evidence = match unexpected.is_empty() {
        true => None,
        false => Some(write_evidence(args, &unexpected, &pages)?),
    };
    let state = WatchState {
        key: args.key.clone(),
        checkpoint: next.note.clone(),
        rollovers: next.rollovers.clone(),
        history: history.end,
    };
    let json = serde_json::to_string_pretty(&state).expect("strings serialize");
    crate::view_state::write_atomic(&args.state, json.as_bytes())?;
    report_watch(args, &start, &history, &unexpected, evidence.as_deref())
}

/// What a check found: exit 0 when nothing unexpected is new, else 1 naming the evidence file.
fn report_watch(
    args: &WatchArgs,
    start: &HistoryPoint,
    history: &VerifiedHistory,
    unexpected: &[&HistoryVersion],
    evidence: Option<&Path>,
) -> Result<(), CliError> {
    let head = &history.lookup.head;
    if history.versions.is_empty() {
        println!(
            "ok: no new version of key {:?} since version {} (verified at epoch {})",
            args.key, start.version, head.epoch
        );
        return Ok(());
    }
    let Some(path) = evidence else {
        println!(
            "ok: key {:?} versions {}..={} are all expected (history verified complete at epoch {})",
            args.key,
            start.version + 1,
            history.end.version,
            head.epoch
        );
        return Ok(());
    };
    for v in unexpected {
        println!("UNEXPECTED: version {} (epoch {}): {}", v.version.0, v.epoch.0, describe(v.value.as_deref()));
    }
    Err(CliError::verification(format!(
        "{} version(s) of {:?} that --expect does not list; evidence written to {}",
        unexpected.len(),
        args.key,
        path.display()
    )))
}

/// The expected values: `None` for `<deleted>`.
fn read_expected(path: &Path) -> Result<BTreeSet<Option<Vec<u8>>>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::file(format!("reading --expect {}: {e}", path.display()), &e))?;
    let mut expected = BTreeSet::new();
    for (n, line) in (1..).zip(text.lines()) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value = match (line, line.strip_prefix("base64:")) {
            ("<deleted>", _) => None,
            (_, Some(b64)) => Some(
                B64.decode(b64.trim())
                    .map_err(|_| CliError::usage(format!("--expect {} line {n}: not base64", path.display())))?,
            ),
            (text, None) => Some(text.as_bytes().to_vec()),
        };
        expected.insert(value);
    }
    Ok(expected)
}

/// The stored watch state, its checkpoint re-verified from the pinned key; `None` before the
/// first check. A state for another key, or one that does not verify, is refused.
fn load_state(path: &Path, key: &str, pinned: &Pinned) -> Result<Option<(View, HistoryPoint)>, CliError> {
    let Some(text) = crate::view_state::read_state(path)? else { return Ok(None) };
    let refused = |e: String| {
        CliError::verification(format!(
            "--state {} is not a watch state of {key:?} ({e}); move it away to start over",
            path.display()
        ))
    };
    let state: WatchState = serde_json::from_str(&text).map_err(|e| refused(e.to_string()))?;
    if state.key != key {
        return Err(refused(format!("it watches {:?}", state.key)));
    }
    let view = View::restore(&state.checkpoint, state.rollovers, &pinned.origin, &pinned.public_key)
        .map_err(|e| refused(e.to_string()))?;
    Ok(Some((view, state.history)))
}

/// The report: the unexpected versions and every history page as served (each last page holds
/// the signed head and the proof of the leaf the versions chain to), so anyone holding the
/// directory's origin and key can check it.
fn write_evidence(
    args: &WatchArgs,
    unexpected: &[&HistoryVersion],
    pages: &[HistoryResponse],
) -> Result<PathBuf, CliError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let path =
        args.evidence.clone().unwrap_or_else(|| PathBuf::from(format!("{}.evidence-{now}.json", args.state.display())));
    let listed: Vec<serde_json::Value> = unexpected
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.version.0,
                "epoch": v.epoch.0,
                "value": v.value.as_ref().map(|b| B64.encode(b)),
            })
        })
        .collect();
    let report = serde_json::json!({
        "report": "keyfold watch evidence v1",
        "origin": args.trust.origin,
        "key": args.key,
        "detected": now,
        "unexpected": listed,
        "pages": pages,
    });
    let text = serde_json::to_string_pretty(&report).expect("JSON values serialize");
    crate::view_state::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}
