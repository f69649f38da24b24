//! `keyfold submit` and `keyfold lookup`: real HTTP clients of a Keyfold server. `lookup` trusts
//! nothing the server says: it checks the head's signature with a pinned public key and origin, and
//! the proof against that head's root, and says exactly what it verified.

use crate::error::CliError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use keyfold_verify::wire::{DirectoryInfo, SubmitResponse};
use keyfold_verify::{LookupAnswer, LookupError, Pinned, Verified, View, verify_lookup_in_view};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Server base URL.
    #[arg(long, env = "KEYFOLD_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The key (user id).
    key: String,
    /// The new value (UTF-8 text; see --value-base64 for bytes).
    #[arg(long, conflicts_with_all = ["value_base64", "delete"], required_unless_present_any = ["value_base64", "delete"])]
    value: Option<String>,
    /// The new value as base64.
    #[arg(long, conflicts_with = "delete")]
    value_base64: Option<String>,
    /// Delete the key's value (a tombstone; the version history stays).
    #[arg(long)]
    delete: bool,
    /// The key's current version (0: the key must not exist yet).
    #[arg(long)]
    expected_version: u64,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Server base URL.
    #[arg(long, env = "KEYFOLD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub(crate) server: String,
    /// The key (user id).
    pub(crate) key: String,
    /// A past epoch (default: the latest).
    #[arg(long, conflicts_with = "history")]
    epoch: Option<u64>,
    /// List the key's complete history, every version with its epoch and value, verified against
    /// the key's signed leaf (each version's commitment chains to the one before: SPEC 1.3).
    #[arg(long)]
    pub(crate) history: bool,
    /// With --history: only the versions applied after epoch E, verified as all of them from the
    /// key's signed leaf at E (an epoch inside the directory's retention window).
    #[arg(long, value_name = "E", requires = "history")]
    pub(crate) since: Option<u64>,
    #[command(flatten)]
    pub(crate) trust: Trust,
    /// Keep this client's view of the log of heads in FILE (the last verified checkpoint): each
    /// lookup must prove consistency with it, so a rollback or a fork between two lookups is
    /// caught (exit 1, with both signed checkpoints written to --evidence).
    #[arg(long, value_name = "FILE")]
    pub(crate) state: Option<std::path::PathBuf>,
    /// Where a rollback or fork writes its evidence (default: FILE.evidence-<unix time>.txt beside
    /// --state).
    #[arg(long, value_name = "FILE", requires = "state")]
    pub(crate) evidence: Option<std::path::PathBuf>,
    /// Refuse a directory whose newest checkpoint is older than this many seconds (a frozen
    /// directory hiding newer heads).
    #[arg(long, value_name = "SECS")]
    pub(crate) max_age: Option<u64>,
}

/// What a client trusts, given on its command line: never taken from the server.
#[derive(Debug, Args)]
pub struct Trust {
    /// The directory's public key you trust: a `signing.pub` file (32 bytes), its base64 or the
    /// directory's vkey (`keyfold status` prints both). Never taken from the server.
    #[arg(long, env = "KEYFOLD_PUBLIC_KEY")]
    public_key: String,
    /// The directory's origin you trust (the first line of its heads).
    #[arg(long, env = "KEYFOLD_ORIGIN")]
    pub(crate) origin: String,
    /// A witness you trust, `NAME=KEY`: base64 of its public key or its cosigner vkey (repeat
    /// for several).
    #[arg(long = "witness", value_name = "NAME=KEY")]
    witnesses: Vec<String>,
    /// Refuse the answer unless at least this many of the --witness witnesses cosigned its head.
    #[arg(long, default_value_t = 0)]
    witnesses_required: usize,
}

impl Trust {
    /// The pinned origin, key and witness policy.
    pub(crate) fn pinned(&self) -> Result<Pinned, CliError> {
        let pinned = Pinned {
            origin: self.origin.clone(),
            public_key: pinned_key(&self.public_key)?,
            witnesses: keyfold_core::WitnessPolicy {
                witnesses: crate::serve::parse_witnesses(&self.witnesses)?,
                required: self.witnesses_required,
            },
        };
        if pinned.witnesses.required > pinned.witnesses.witnesses.len() {
            return Err(CliError::usage(format!(
                "--witnesses-required {} but only {} --witness given",
                pinned.witnesses.required,
                pinned.witnesses.witnesses.len()
            )));
        }
        Ok(pinned)
    }
}

pub(crate) fn client() -> Result<reqwest::blocking::Client, CliError> {
    client_with_timeout(Duration::from_secs(30))
}

fn client_with_timeout(timeout: Duration) -> Result<reqwest::blocking::Client, CliError> {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("keyfold/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CliError::unavailable(format!("HTTP client: {e}")))
}

/// A server's published artefacts over HTTP, for monitors (`verify --server`, `monitor`).
pub(crate) struct Published {
    pub(crate) base: String,
    pub(crate) client: reqwest::blocking::Client,
}

impl Published {
    pub(crate) fn new(server: &str) -> Result<Published, CliError> {
        // Archives can be large: a generous timeout.
        Ok(Published {
            base: server.trim_end_matches('/').to_owned(),
            client: client_with_timeout(Duration::from_secs(120))?,
        })
    }

    pub(crate) fn get(&self, path: &str) -> Result<reqwest::blocking::Response, CliError> {
        let url = format!("{}{path}", self.base);
        let request = format!("GET {url}");
        let response = self.client.get(&url).send().map_err(|e| CliError::transport(&request, &e))?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else {
            Err(CliError::refused(request, status, &response.text().unwrap_or_default()))
        }
    }

    pub(crate) fn text(&self, path: &str) -> Result<String, CliError> {
        self.get(path)?.text().map_err(|e| self.cut(path, &e))
    }

    pub(crate) fn bytes(&self, path: &str) -> Result<bytes::Bytes, CliError> {
        self.get(path)?.bytes().map_err(|e| self.cut(path, &e))
    }

    /// An answer cut while its body was read.
    fn cut(&self, path: &str, e: &reqwest::Error) -> CliError {
        CliError::unavailable(format!("GET {}{path}: reading the answer: {e}", self.base))
    }

    /// The shard bits the server states (untrusted: a wrong value makes the first root diverge).
    pub(crate) fn shard_bits(&self) -> Result<u8, CliError> {
        let info: DirectoryInfo = serde_json::from_str(&self.text("/v1/directory")?)
            .map_err(|e| CliError::verification(format!("/v1/directory: {e}")))?;
        Ok(info.shard_bits)
    }

    /// The oldest epoch whose archive and proof the server keeps (its retention window; 0 when it
    /// keeps every epoch). Untrusted: it only says where an audit can start.
    pub(crate) fn oldest_kept(&self) -> Result<keyfold_core::Epoch, CliError> {
        let info: DirectoryInfo = serde_json::from_str(&self.text("/v1/directory")?)
            .map_err(|e| CliError::verification(format!("/v1/directory: {e}")))?;
        Ok(keyfold_core::Epoch(info.oldest_epoch.unwrap_or(0)))
    }

    /// The epoch of the latest head (only to know how far to fetch: each head is verified when
    /// it is replayed).
    pub(crate) fn latest_epoch(&self) -> Result<keyfold_core::Epoch, CliError> {
        let note = self.text("/v1/heads/latest")?;
        let bad = |e: keyfold_core::HeadError| CliError::verification(format!("the latest head: {e}"));
        let (text, _) = keyfold_core::split_note(&note).map_err(bad)?;
        let checkpoint = keyfold_core::Checkpoint::parse(text).map_err(bad)?;
        Ok(keyfold_core::Head::from_checkpoint(&checkpoint).map_err(bad)?.epoch)
    }
}

/// The body of a success answer to `request`; an error status is the server's refusal.
fn get_text(request: &str, response: reqwest::blocking::Response) -> Result<String, CliError> {
    let status = response.status();
    let body = response.text().map_err(|e| CliError::unavailable(format!("{request}: reading the answer: {e}")))?;
    if status.is_success() { Ok(body) } else { Err(CliError::refused(request, status, &body)) }
}

/// A success answer that is not the JSON it must be.
fn unexpected(e: impl std::fmt::Display, text: &str) -> CliError {
    CliError::verification(format!("unexpected answer ({e}): {text}"))
}

pub fn submit(args: &SubmitArgs) -> Result<(), CliError> {
    let value = match (&args.value, &args.value_base64, args.delete) {
        (Some(text), _, _) => serde_json::Value::String(B64.encode(text.as_bytes())),
        (None, Some(b64), _) => {
            B64.decode(b64).map_err(|_| CliError::usage("--value-base64 is not valid base64"))?;
            serde_json::Value::String(b64.clone())
        }
        _ => serde_json::Value::Null,
    };
    let body = serde_json::json!({
        "mutations": [{ "key": args.key, "value": value, "expected_version": args.expected_version }]
    });
    let url = format!("{}/v1/mutations", args.server.trim_end_matches('/'));
    let request = format!("POST {url}");
    let response = client()?.post(&url).json(&body).send().map_err(|e| CliError::transport(&request, &e))?;
    let text = get_text(&request, response)?;
    let answer: SubmitResponse = serde_json::from_str(&text).map_err(|e| unexpected(e, &text))?;
    for receipt in answer.receipts {
        let slot = match (receipt.position, receipt.versionstamp) {
            (Some(p), _) => format!("queue position {p}"),
            (None, Some(v)) => format!("versionstamp {v}"),
            (None, None) => "no slot".to_owned(),
        };
        println!("queued durably: mutation {} at {slot}", receipt.id);
    }
    println!("it takes effect with the next epoch; check with `keyfold lookup`");
    Ok(())
}

/// A pinned key: a 32-byte file, base64 of the 32 bytes, or the directory's C2SP verifier key
/// (`origin+hexid+base64(0x01 || key)`, as `/v1/directory`'s `vkey` and `keyfold status` print
/// it). A key the user cannot pin is theirs to fix (2).
pub(crate) fn pinned_key(text: &str) -> Result<[u8; 32], CliError> {
    let path = Path::new(text);
    if path.exists() {
        return keyfold_epoch::load_public_key(path).map_err(CliError::usage);
    }
    // A vkey first: one whose origin is all base64 letters would also decode as base64.
    if let Ok((_, key)) = keyfold_core::parse_vkey(text.trim()) {
        return Ok(key.to_bytes());
    }
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| CliError::usage(format!("--public-key {text:?} is neither a file, base64 nor a vkey")))?;
    bytes.try_into().map_err(|_| CliError::usage("--public-key must be 32 bytes (an ed25519 public key)"))
}

pub fn lookup(args: &LookupArgs) -> Result<(), CliError> {
    let pinned = args.trust.pinned()?;
    let view = match &args.state {
        Some(path) => crate::view_state::load(path, &pinned.origin, &pinned.public_key)?,
        None => None,
    };
    if args.history {
        return crate::history::lookup_history(args, &pinned, view);
    }
    let mut url = key_url(&args.server, &args.key, &[])?;
    if let Some(epoch) = args.epoch {
        url.query_pairs_mut().append_pair("epoch", &epoch.to_string());
    }
    if let Some(view) = &view {
        url.query_pairs_mut().append_pair("from", &view.size().to_string());
    }
    let answer: LookupAnswer = get_json(url)?;
    // A refused answer is bad data (1): never printed as a value.
    let (verified, next) = match verify_lookup_in_view(args.key.as_bytes(), &answer, &pinned, view.as_ref()) {
        Err(LookupError::View(e)) => return Err(view_refused(e, args)),
        other => other?,
    };
    finish_view(args, &next)?;
    print_verified(args, &pinned, &verified);
    print_view(view.as_ref(), &next, args.state.is_some(), &pinned);
    Ok(())
}

/// `SERVER/v1/keys/KEY` followed by `more` path segments.
pub(crate) fn key_url(server: &str, key: &str, more: &[&str]) -> Result<reqwest::Url, CliError> {
    let mut url = reqwest::Url::parse(server).map_err(|e| CliError::usage(format!("--server {server}: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| CliError::usage("--server cannot be a base URL"))?
        .extend(["v1", "keys", key])
        .extend(more);
    Ok(url)
}

/// GET `url` and read its JSON answer.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(url: reqwest::Url) -> Result<T, CliError> {
    let request = format!("GET {url}");
    let response = client()?.get(url).send().map_err(|e| CliError::transport(&request, &e))?;
    let text = get_text(&request, response)?;
    serde_json::from_str(&text).map_err(|e| unexpected(e, &text))
}

/// A rollback or fork the view check found: its evidence written beside --state.
pub(crate) fn view_refused(e: keyfold_verify::ViewError, args: &LookupArgs) -> CliError {
    let state = args.state.as_deref().unwrap_or(std::path::Path::new("."));
    crate::view_state::report(e, state, args.evidence.as_deref())
}

/// The freshness check and the stored view, once an answer verified.
pub(crate) fn finish_view(args: &LookupArgs, next: &View) -> Result<(), CliError> {
    if let Some(max_age) = args.max_age {
        next.check_fresh(crate::directory::now_ms(), max_age)
            .map_err(|e| CliError::verification(format!("REFUSED: {e}")))?;
    }
    if let Some(path) = &args.state {
        crate::view_state::store(path, next)?;
    }
    Ok(())
}

/// What the view check established.
pub(crate) fn print_view(held: Option<&View>, next: &View, state: bool, pinned: &Pinned) {
    match held {
        Some(held) if held.size() == next.size() => {
            println!("verified: the latest checkpoint (log of {} heads) is the one you held", next.size());
        }
        Some(held) => println!(
            "verified: the log of heads grew from {} to {} heads consistently (RFC 6962 consistency proof)",
            held.size(),
            next.size()
        ),
        None if state => println!(
            "first contact: the view starts at the latest checkpoint (log of {} heads); later lookups with this \
             --state file are checked against it",
            next.size()
        ),
        None => println!(
            "not verified here: consistency with earlier lookups (keep a view with --state FILE); latest checkpoint: \
             log of {} heads",
            next.size()
        ),
    }
    if next.signer != pinned.public_key
        && let Ok(key) = keyfold_core::VerifyingKey::from_bytes(&next.signer)
    {
        println!(
            "key rollover: the directory now signs with {}, handed over from the pinned key through {} signed \
             announcement(s) in the log",
            keyfold_core::vkey(&pinned.origin, &key),
            next.rollovers.len()
        );
    }
}

/// What `keyfold lookup` prints for a verified answer: the value, and what was and was not checked.
fn print_verified(args: &LookupArgs, pinned: &Pinned, verified: &Verified) {
    let head = &verified.head;
    println!("key      {}", args.key);
    match &verified.leaf {
        None => println!("value    absent (never set)"),
        Some(leaf) => match &leaf.value {
            None => println!("value    deleted at version {}", leaf.version.0),
            Some(v) => match std::str::from_utf8(v) {
                Ok(text) => println!("value    {text:?} (version {})", leaf.version.0),
                Err(_) => println!("value    base64 {} (version {})", B64.encode(v), leaf.version.0),
            },
        },
    }
    println!(
        "verified: the head of epoch {} (time {} ms, root {}) is signed by the pinned key for origin {:?}",
        head.epoch,
        head.time_ms,
        head.root.to_hex(),
        args.trust.origin
    );
    let what = if verified.leaf.is_some() { "inclusion" } else { "absence" };
    println!(
        "verified: the {what} proof ({} bytes, {} hash) matches that root",
        verified.proof_bytes,
        head.suite.name()
    );
    if verified.cosigned.is_empty() {
        println!(
            "not verified here: that other clients see the same head (require witnesses with --witness and --witnesses-required)"
        );
    } else {
        println!(
            "verified: cosigned by {} of the {} required witnesses: {}",
            verified.cosigned.len(),
            pinned.witnesses.required,
            verified.cosigned.join(", ")
        );
    }
}
