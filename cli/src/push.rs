//! The directory pushes its checkpoints to its witnesses (a C2SP tlog-witness client, SPEC
//! section 6.5): `keyfold serve --witness NAME=KEY@URL`.
//!
//! One task per witness follows the log of heads. When the log has grown past the size the task
//! believes the witness has cosigned, it posts `<URL>/add-checkpoint` with the newest checkpoint
//! and a consistency proof from that size, verifies the cosignature line the witness returns and
//! stores it by the same rules as a `POST /v1/heads/{epoch}/cosignatures`
//! ([`keyfold_api::Api::accept_cosignature`]). A push never blocks or fails an epoch: the tasks
//! run beside the scheduler, one request in flight per witness, each bounded in time and in
//! response bytes; epochs cut meanwhile are skipped (only the newest checkpoint is pushed, its
//! proof covers them). Failures are logged and counted, and retried after a backoff.

use crate::error::CliError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use keyfold_api::{Api, ApiError};
use keyfold_core::{Epoch, Hash, Witness};
use std::sync::Arc;
use std::time::Duration;

/// One `add-checkpoint` request, connecting included: a witness that takes longer is counted as
/// failed and tried again later.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a task looks at the log's size for a new epoch (an in-memory read).
const POLL: Duration = Duration::from_millis(100);
/// The first wait after a failed push; it doubles after each failure in a row, up to
/// [`RETRY_MAX`]. A witness that is down gets a request every 10 s at most.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Most response bytes read from a witness: its cosignature lines (about 150 bytes per key) or a
/// short error. A larger answer is refused without reading the rest.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 << 10;

const FAILURES: &str = "keyfold_witness_push_failures_total";
const COSIGNED_SIZE: &str = "keyfold_witness_cosigned_size";

/// A `--witness` of `keyfold serve`: whose cosignatures are accepted, and where checkpoints are
/// pushed to be cosigned (`None`: the witness posts its cosignatures itself).
#[derive(Debug, Clone)]
pub(crate) struct WitnessSpec {
    pub witness: Witness,
    /// The witness's submission prefix (`<prefix>/add-checkpoint`), without a final `/`.
    pub push_url: Option<String>,
}

/// Parses `NAME=KEY` or `NAME=KEY@URL` specs, KEY being base64 of the witness's ed25519 public
/// key or its C2SP cosigner vkey (`NAME+hexid+base64(0x04 || key)`, whose name must be NAME) and
/// URL its http(s) submission prefix. A bad one is the user's to fix (2).
pub(crate) fn parse_witness_specs(specs: &[String]) -> Result<Vec<WitnessSpec>, CliError> {
    let mut parsed: Vec<WitnessSpec> = Vec::new();
    for spec in specs {
        let bad = |why: String| CliError::usage(format!("--witness {spec:?}: {why}"));
        let (name, rest) = spec.split_once('=').ok_or_else(|| bad("write NAME=KEY or NAME=KEY@URL".to_owned()))?;
        keyfold_core::check_witness_name(name).map_err(|e| bad(e.to_string()))?;
        let (key, push_url) = split_push_url(rest).map_err(bad)?;
        let public_key = witness_key(name, key.trim()).map_err(bad)?;
        if parsed.iter().any(|w| w.witness.name == name) {
            return Err(CliError::usage(format!("--witness {name:?} is given twice")));
        }
        parsed.push(WitnessSpec { witness: Witness { name: name.to_owned(), public_key }, push_url });
    }
    Ok(parsed)
}

/// `KEY` or `KEY@URL`: the URL starts at the first `@http://` or `@https://` (a key, base64 or
/// vkey, never contains those; a witness name might contain `@`).
fn split_push_url(text: &str) -> Result<(&str, Option<String>), String> {
    let at = ["@http://", "@https://"].iter().filter_map(|scheme| text.find(scheme)).min();
    let Some(at) = at else {
        if text.contains("://") {
            return Err("the push URL must start with http:// or https://".to_owned());
        }
        return Ok((text, None));
    };
    let url = &text[at + 1..];
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("the push URL {url:?}: {e}"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("the push URL {url:?} is a prefix: no query or fragment"));
    }
    Ok((&text[..at], Some(url.trim_end_matches('/').to_owned())))
}

/// The witness's public key from base64 or from its cosigner vkey.
fn witness_key(name: &str, key: &str) -> Result<[u8; 32], String> {
    let base64 = B64.decode(key).ok().and_then(|k| <[u8; 32]>::try_from(k).ok());
    if let Some(bytes) = base64.filter(|k| keyfold_core::VerifyingKey::from_bytes(k).is_ok()) {
        return Ok(bytes);
    }
    let (vkey_name, public) = keyfold_core::parse_cosignature_vkey(key).map_err(|e| {
        format!("the key is neither base64 of an ed25519 public key nor the witness's cosigner vkey: {e}")
    })?;
    if vkey_name != name {
        return Err(format!("the vkey is {vkey_name:?}'s, not {name:?}'s"));
    }
    Ok(public.to_bytes())
}

/// Starts one push task per witness with a URL, on the current tokio runtime.
pub(crate) fn spawn(api: &Arc<Api>, specs: &[WitnessSpec]) -> Result<(), CliError> {
    metrics::describe_counter!(
        FAILURES,
        "Checkpoint pushes to a witness (POST add-checkpoint) that failed: unreachable, timed out, refused, or \
         answered with a cosignature this server does not accept. Epochs never wait for a push."
    );
    metrics::describe_gauge!(
        COSIGNED_SIZE,
        "The size of the log of heads the witness has cosigned, as this server last learned it (0 until then)."
    );
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("keyfold/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CliError::unavailable(format!("the HTTP client for witness pushes: {e}")))?;
    for spec in specs {
        let Some(url) = &spec.push_url else { continue };
        let name = spec.witness.name.clone();
        // Registered at 0, so a dashboard sees the series before the first failure.
        metrics::counter!(FAILURES, "witness" => name.clone()).increment(0);
        metrics::gauge!(COSIGNED_SIZE, "witness" => name.clone()).set(0.0);
        tracing::info!(witness = %name, url = %url, "pushing checkpoints to this witness");
        let pusher = Pusher {
            api: Arc::clone(api),
            client: client.clone(),
            name,
            url: format!("{url}/add-checkpoint"),
            cosigned_size: 0,
            confirmed: false,
        };
        tokio::spawn(pusher.run());
    }
    Ok(())
}

/// Why a push failed (logged and counted; the task retries after a backoff).
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("no answer: {0}")]
    Transport(String),
    #[error("the witness answered {status}: {body}")]
    Refused { status: reqwest::StatusCode, body: String },
    #[error("the witness's answer is over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the witness answered 409 again, with size {size}: it may hold another checkpoint of that size")]
    Conflict { size: u64 },
    #[error(
        "the witness has cosigned size {cosigned}, more than this server's log ({size}); waiting until the log \
         is that long (another server of this directory may be ahead, or this one's store was rolled back)"
    )]
    WitnessAhead { cosigned: u64, size: u64 },
    #[error("the directory's log or heads: {0}")]
    Directory(String),
    #[error("the returned cosignature is not accepted: {0}")]
    Cosignature(String),
}

/// A witness's answer to `add-checkpoint` that the protocol expects.
enum Answer {
    /// 200: the cosignature line(s).
    Cosigned(String),
    /// 409 `text/x.tlog.size`: the size the witness has cosigned.
    Conflict(u64),
}

/// One witness's push task.
struct Pusher {
    api: Arc<Api>,
    client: reqwest::Client,
    name: String,
    /// `<prefix>/add-checkpoint`.
    url: String,
    /// The size this task believes the witness has cosigned: 0 at start (a 409 tells the truth).
    cosigned_size: u64,
    /// Whether the witness cosigned this server's own checkpoint of that size (a 200), or only
    /// named the size (a 409): then it may hold another checkpoint of it, so this server's is
    /// pushed too, and a fork at equal sizes reaches the witness (409, kept as evidence).
    confirmed: bool,
}

impl Pusher {
    /// Runs until the runtime shuts down (with the server). An interrupted push is safe: the
    /// witness either stored the checkpoint or not, and the next start learns which (409).
    async fn run(mut self) {
        let mut retry = RETRY_MIN;
        loop {
            while !self.behind() {
                tokio::time::sleep(POLL).await;
            }
            match self.push_latest().await {
                Ok(()) => retry = RETRY_MIN,
                Err(error) => {
                    metrics::counter!(FAILURES, "witness" => self.name.clone()).increment(1);
                    tracing::warn!(
                        witness = %self.name, url = %self.url, error = %error, retry_in_ms = retry.as_millis(),
                        "pushing the checkpoint to a witness failed; epochs go on, it is retried"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Pushes the newest checkpoint with a proof from the believed size; on 409, once more with
    /// a proof from the size the witness names. Stores the cosignature it returns.
    async fn push_latest(&mut self) -> Result<(), PushError> {
        for _ in 0..2 {
            let old_size = self.cosigned_size;
            // The log grows only after its head is stored, so the head of its last leaf is there.
            let size = self.target_size();
            let note = self.head_note(Epoch(size - 1)).await?;
            let proof = match old_size {
                // From 0 the spec wants no proof (there is nothing to prove).
                0 => Vec::new(),
                _ => self
                    .api
                    .directory
                    .log_consistency(old_size, size)
                    .map_err(|e| PushError::Directory(e.to_string()))?,
            };
            match self.add_checkpoint(&request_body(old_size, &proof, &note)).await? {
                Answer::Cosigned(lines) => {
                    // The witness stored the checkpoint before answering 200: it is its latest,
                    // whether or not its line is then accepted here.
                    self.learned(size, true);
                    return self.store(Epoch(size - 1), &lines).await;
                }
                Answer::Conflict(cosigned) if cosigned == old_size => {
                    return Err(PushError::Conflict { size: cosigned });
                }
                Answer::Conflict(cosigned) => {
                    tracing::info!(
                        witness = %self.name, believed_size = old_size, cosigned_size = cosigned,
                        "the witness has cosigned another size than this server believed; resending with a proof from it"
                    );
                    self.learned(cosigned, false);
                    let log_size = self.api.directory.log_size();
                    if cosigned > log_size {
                        return Err(PushError::WitnessAhead { cosigned, size: log_size });
                    }
                }
            }
        }
        Err(PushError::Conflict { size: self.cosigned_size })
    }

    /// The log's size or, when a key rollover lies between what the witness has cosigned and
    /// it, the size of the announcing checkpoint: a witness learns the next key from the
    /// announcement (signed by the key it trusts), so it is pushed that one first.
    fn target_size(&self) -> u64 {
        let size = self.api.directory.log_size();
        let mut announcements = self.api.directory.rollovers().into_iter().map(|epoch| epoch.0 + 1);
        announcements.find(|&at| at > self.cosigned_size && at < size).unwrap_or(size)
    }

    /// Whether the witness lacks this server's latest checkpoint, as far as this task knows.
    fn behind(&self) -> bool {
        let size = self.api.directory.log_size();
        size > self.cosigned_size || (size == self.cosigned_size && !self.confirmed)
    }

    fn learned(&mut self, cosigned_size: u64, confirmed: bool) {
        self.cosigned_size = cosigned_size;
        self.confirmed = confirmed;
        metrics::gauge!(COSIGNED_SIZE, "witness" => self.name.clone()).set(cosigned_size as f64);
    }

    /// The directory's own signed note of `epoch`, exactly as signed (no cosignatures).
    async fn head_note(&self, epoch: Epoch) -> Result<String, PushError> {
        let api = Arc::clone(&self.api);
        let read = tokio::task::spawn_blocking(move || api.directory.head_note(epoch)).await;
        match read.map_err(|e| PushError::Directory(format!("worker failed: {e}")))? {
            Ok(Some(note)) => Ok(note),
            Ok(None) => Err(PushError::Directory(format!("no head for epoch {epoch}"))),
            Err(e) => Err(PushError::Directory(e.to_string())),
        }
    }

    /// POSTs one `add-checkpoint` body; reads at most [`MAX_RESPONSE_BYTES`] of the answer.
    async fn add_checkpoint(&self, body: &str) -> Result<Answer, PushError> {
        let request = self.client.post(&self.url).header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8");
        let response = request.body(body.to_owned()).send().await.map_err(|e| PushError::Transport(chain(&e)))?;
        let status = response.status();
        let content_type = response.headers().get(reqwest::header::CONTENT_TYPE);
        let size_body = content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
        let text = String::from_utf8_lossy(&read_bounded(response).await?).into_owned();
        if status == reqwest::StatusCode::OK {
            return Ok(Answer::Cosigned(text));
        }
        let conflict = (status == reqwest::StatusCode::CONFLICT && size_body).then(|| parse_size(&text)).flatten();
        conflict.map(Answer::Conflict).ok_or_else(|| PushError::Refused { status, body: text.trim().to_owned() })
    }

    /// Stores the witness's line from its answer, as a POSTed cosignature would be. A newer line
    /// of this witness already stored (`stale_cosignature`) is kept, and that is no failure.
    async fn store(&self, epoch: Epoch, answer: &str) -> Result<(), PushError> {
        let prefix = format!("\u{2014} {} ", self.name);
        // A witness with several keys returns one line per key: any that verifies will do.
        let mine: Vec<String> = answer.lines().filter(|l| l.starts_with(&prefix)).map(str::to_owned).collect();
        if mine.is_empty() {
            let shown: String = answer.chars().take(200).collect();
            return Err(PushError::Cosignature(format!("no line by this witness in its answer {shown:?}")));
        }
        let api = Arc::clone(&self.api);
        let accepted = tokio::task::spawn_blocking(move || {
            let mut refused = String::new();
            for line in &mine {
                match api.accept_cosignature(epoch.0, line.as_bytes()) {
                    // A newer line is kept, or a newer checkpoint was cut meanwhile (the next push takes it).
                    Ok(_) | Err(ApiError::Conflict("stale_cosignature" | "not_latest", _)) => return Ok(()),
                    Err(e) => refused = e.to_string(),
                }
            }
            Err(refused)
        })
        .await
        .map_err(|e| PushError::Cosignature(format!("worker failed: {e}")))?;
        accepted.map_err(PushError::Cosignature)?;
        tracing::debug!(witness = %self.name, epoch = epoch.0, "the witness cosigned the checkpoint");
        Ok(())
    }
}

/// `old <size>\n`, the proof's base64 lines, an empty line, then the signed note (C2SP
/// tlog-witness).
fn request_body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old_size}\n");
    for hash in proof {
        body.push_str(&B64.encode(hash.0));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// A `text/x.tlog.size` body: a decimal size and a newline.
fn parse_size(text: &str) -> Option<u64> {
    let digits = text.strip_suffix('\n').unwrap_or(text);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// The response body, refused once it passes [`MAX_RESPONSE_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, PushError> {
    if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(PushError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| PushError::Transport(chain(&e)))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(PushError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its sources (reqwest keeps the cause, `Connection refused` say, in them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<WitnessSpec, CliError> {
        parse_witness_specs(&[text.to_owned()]).map(|mut specs| specs.remove(0))
    }

    #[test]
    fn witness_specs_take_base64_or_a_vkey_and_an_optional_url() {
        let key = keyfold_core::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let b64 = B64.encode(key.as_bytes());
        let plain = spec(&format!("w@example={b64}")).unwrap();
        assert_eq!(
            (plain.witness.name.as_str(), plain.witness.public_key, plain.push_url),
            ("w@example", key.to_bytes(), None)
        );
        let vkey = keyfold_core::cosignature_vkey("w@example", &key);
        let pushed = spec(&format!("w@example={vkey}@https://witness.example/prefix/")).unwrap();
        assert_eq!(pushed.witness, plain.witness);
        assert_eq!(pushed.push_url.as_deref(), Some("https://witness.example/prefix"), "the final / is dropped");

        for (bad, why) in [
            (format!("other={vkey}"), "is \"w@example\"'s, not \"other\"'s"),
            (format!("w@example={}", keyfold_core::vkey("w@example", &key)), "0x04"),
            (format!("w@example={b64}@ftp://witness.example"), "http:// or https://"),
            (format!("w@example={b64}@http://witness.example/?q=1"), "no query"),
            ("two words=x".to_owned(), "witness name"),
            ("no-equals".to_owned(), "NAME=KEY"),
        ] {
            let err = spec(&bad).unwrap_err();
            assert!(err.to_string().contains(why) && err.exit_code() == 2, "{bad}: {err}");
        }
        let twice = parse_witness_specs(&[format!("a={b64}"), format!("a={b64}@http://x.example")]).unwrap_err();
        assert!(twice.to_string().contains("given twice"), "{twice}");
    }

    #[test]
    fn add_checkpoint_bodies_and_size_answers_follow_tlog_witness() {
        let proof = [Hash([0; 32]), Hash([0xff; 32])];
        let body = request_body(3, &proof, "origin\n4\nroot\n\n\u{2014} origin sig\n");
        let expected = format!(
            "old 3\n{}\n{}\n\norigin\n4\nroot\n\n\u{2014} origin sig\n",
            B64.encode([0u8; 32]),
            B64.encode([0xffu8; 32])
        );
        assert_eq!(body, expected);
        assert_eq!(request_body(0, &[], "n\n"), "old 0\n\nn\n");
        assert_eq!((parse_size("12\n"), parse_size("12"), parse_size("")), (Some(12), Some(12), None));
        assert_eq!((parse_size("-1\n"), parse_size("1 2\n"), parse_size("99999999999999999999\n")), (None, None, None));
    }
}
