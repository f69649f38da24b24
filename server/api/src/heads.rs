//! Heads: `GET /v1/heads/latest`, `GET /v1/heads/{epoch}` (C2SP signed notes with the stored
//! cosignatures) and `POST /v1/heads/{epoch}/cosignatures`.

use super::*;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The latest signed head (a C2SP signed note).
#[utoipa::path(get, path = "/v1/heads/latest", tag = "heads",
    responses(
        (status = 200, description = "Signed checkpoint (C2SP signed note) with cosignatures; an ETag, and \
            `Cache-Control` immutable for an epoch older than the latest", body = String, content_type = "text/plain"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn latest_head(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let served = Arc::clone(&api);
    let note = blocking(move || {
        let (epoch, note) = served
            .directory
            .latest_head_note()
            .map_err(|e| served.storage(e))?
            .ok_or_else(|| ApiError::Internal("no head".into()))?;
        served.served_note(epoch, note)
    })
    .await?;
    Ok(crate::log::cached(&headers, note.into_bytes(), crate::log::SHORT_LIVED, TEXT_PLAIN))
}

/// The signed head of one epoch.
#[utoipa::path(get, path = "/v1/heads/{epoch}", tag = "heads",
    params(("epoch" = u64, Path, description = "Epoch number")),
    responses(
        (status = 200, description = "Signed checkpoint (C2SP signed note) with cosignatures; an ETag, and \
            `Cache-Control` immutable for an epoch older than the latest", body = String, content_type = "text/plain"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Not an epoch number", body = ErrorBody),
        (status = 404, description = "No head for that epoch", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn head_at(
    State(api): State<Arc<Api>>,
    ApiPath(epoch): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let epoch = parse_epoch(&epoch)?;
    let served = Arc::clone(&api);
    let note = blocking(move || match served.directory.head_note(Epoch(epoch)).map_err(|e| served.storage(e))? {
        Some(note) => {
            // A checkpoint older than the latest never changes again (cosignatures are taken on
            // the latest only), so caches may keep it for good.
            let latest = served.directory.log_size().saturating_sub(1);
            Ok(Some((served.served_note(Epoch(epoch), note)?, epoch < latest)))
        }
        None => Ok(None),
    })
    .await?;
    let (note, immutable) = note.ok_or_else(|| ApiError::NotFound(format!("no signed head for epoch {epoch}")))?;
    let cache = if immutable { crate::log::IMMUTABLE } else { crate::log::SHORT_LIVED };
    Ok(crate::log::cached(&headers, note.into_bytes(), cache, TEXT_PLAIN))
}

/// One cosignature line, as the request body of `POST /v1/heads/{epoch}/cosignatures`.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^\u{2014} [!-~]{1,255} [A-Za-z0-9+/=]{104}\n?$")]
#[allow(dead_code)] // documents the body; the handler reads raw text
pub(crate) struct CosignatureLine(String);

/// Longest cosignature line accepted (a 255-byte name and a 76-byte signature blob fit).
const MAX_COSIGNATURE_BYTES: usize = 1024;

/// A witness's cosignature of a head: one line `— <name> <base64(key id || time || signature)>`
/// (SPEC section 6.3), verified against the configured witness key before it is stored. Its time
/// must not be before the head's time (seconds, rounded down) nor more than the configured skew
/// after this server's clock. A witness's stored line is replaced only by a newer one: an older
/// line is refused with 409 and the same line again is answered 201 (idempotent).
#[utoipa::path(post, path = "/v1/heads/{epoch}/cosignatures", tag = "heads",
    params(("epoch" = u64, Path, description = "Epoch number")),
    request_body(content = CosignatureLine, content_type = "text/plain", description = "One cosignature line"),
    responses(
        (status = 201, description = "Verified and stored (or the same line was already stored)", body = Object),
        (status = 400, description = "Not a cosignature line, it does not verify (`bad_cosignature`), or its \
            time is before the head or too far in the future (`bad_cosignature_time`)", body = ErrorBody),
        (status = 403, description = "Not a witness this server accepts", body = ErrorBody),
        (status = 404, description = "No head for that epoch", body = ErrorBody),
        (status = 409, description = "A newer cosignature from this witness is stored (`stale_cosignature`; it \
            is kept), or the epoch is no longer the latest (`not_latest`: past checkpoints are immutable)",
            body = ErrorBody),
        (status = 413, description = "Line too long", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn post_cosignature(
    State(api): State<Arc<Api>>,
    ApiPath(epoch): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let epoch = parse_epoch(&epoch)?;
    let body = body.map_err(ApiError::from_body_rejection)?;
    if body.len() > MAX_COSIGNATURE_BYTES {
        return Err(ApiError::PayloadTooLarge(format!("a cosignature line is at most {MAX_COSIGNATURE_BYTES} bytes")));
    }
    let served = Arc::clone(&api);
    let accepted = blocking(move || served.accept_cosignature(epoch, &body)).await?;
    let body = serde_json::json!({ "epoch": epoch, "witness": accepted.witness, "time": accepted.time_secs });
    Ok((StatusCode::CREATED, Json(body)))
}

/// A cosignature line [`Api::accept_cosignature`] verified and stored (or found stored already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedCosignature {
    pub witness: String,
    /// The cosignature's time, in seconds since the Unix epoch.
    pub time_secs: u64,
}

impl Api {
    /// Verifies one cosignature line (`body`, its final newline optional) on the head of `epoch`
    /// and stores it, by the rules of `POST /v1/heads/{epoch}/cosignatures` (SPEC section 6.3):
    /// a configured witness, a signature that verifies with its key, a time not before the head
    /// nor too far ahead, and the newest line per witness kept. Both a POSTed line and one a
    /// witness returned to a push (`keyfold serve --witness NAME=KEY@URL`) come through here, so
    /// the rules live in one place. Blocks on storage: async callers run it on a blocking thread.
    pub fn accept_cosignature(&self, epoch: u64, body: &[u8]) -> Result<AcceptedCosignature, ApiError> {
        let (line, witness) = cosignature_line(&self.witnesses, body)?;
        let latest = self.directory.log_size().saturating_sub(1);
        if epoch < latest {
            return Err(ApiError::Conflict(
                "not_latest",
                format!(
                    "epoch {epoch} is no longer the latest checkpoint (epoch {latest} is): a checkpoint older than \
                     the latest is immutable, so cosign the latest (it is consistent with every earlier one)"
                ),
            ));
        }
        let note = self
            .directory
            .head_note(Epoch(epoch))
            .map_err(|e| self.storage(e))?
            .ok_or_else(|| ApiError::NotFound(format!("no signed head for epoch {epoch}")))?;
        let time_secs = verify_cosignature(&with_cosignatures(&note, std::slice::from_ref(&line)), &witness)
            .map_err(|e| ApiError::BadRequest("bad_cosignature", e.to_string()))?;
        self.check_cosignature_time(epoch, &note, time_secs)?;
        match self.cosignatures.put(Epoch(epoch), &witness.name, &line).map_err(|e| self.storage(e))? {
            CosignaturePut::Stored | CosignaturePut::Kept { identical: true, .. } => {
                Ok(AcceptedCosignature { witness: witness.name, time_secs })
            }
            CosignaturePut::Kept { stored_time_secs, identical: false } => Err(ApiError::Conflict(
                "stale_cosignature",
                format!(
                    "a cosignature of epoch {epoch} by {} with time {stored_time_secs} is stored, not older than \
                     this one ({time_secs}); it is kept",
                    witness.name
                ),
            )),
        }
    }
}

/// The one cosignature line in `body` (with its final newline) and the configured witness it names.
fn cosignature_line(witnesses: &[Witness], body: &[u8]) -> Result<(String, Witness), ApiError> {
    let bad = |m: &str| ApiError::BadRequest("bad_cosignature", m.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    let line = format!("{}\n", text.strip_suffix('\n').unwrap_or(text));
    if line.matches('\n').count() != 1 {
        return Err(bad("send exactly one cosignature line"));
    }
    let name = line
        .strip_prefix("\u{2014} ")
        .and_then(|rest| rest.trim_end().rsplit_once(' '))
        .map(|(name, _)| name.to_owned())
        .ok_or_else(|| bad("a cosignature line is `\u{2014} <witness name> <base64>`"))?;
    let Some(witness) = witnesses.iter().find(|w| w.name == name).cloned() else {
        let known: Vec<&str> = witnesses.iter().map(|w| w.name.as_str()).collect();
        return Err(ApiError::Forbidden(format!("{name:?} is not a witness of this server (known: {known:?})")));
    };
    Ok((line, witness))
}

impl Api {
    /// The directory's C2SP verifier key.
    pub(crate) fn vkey(&self) -> String {
        match keyfold_core::VerifyingKey::from_bytes(&self.directory.public_key()) {
            Ok(key) => keyfold_core::vkey(&self.origin, &key),
            Err(_) => String::new(), // unreachable: the job verified its own signatures with it
        }
    }

    /// A cosignature's time (seconds) is not before its head's time and at most
    /// `cosignature_max_future_secs` after this server's clock: a witness that verified the head
    /// did so after it was signed, and a line dated far ahead would outrank every honest later one.
    pub(crate) fn check_cosignature_time(&self, epoch: u64, note: &str, time_secs: u64) -> Result<(), ApiError> {
        let head = self
            .directory
            .verify_stored_head(Epoch(epoch), note)
            .map_err(|e| ApiError::Internal(format!("the stored head of epoch {epoch} does not verify: {e}")))?;
        let head_secs = head.time_ms / 1000;
        let bad = |m: String| Err(ApiError::BadRequest("bad_cosignature_time", m));
        if time_secs < head_secs {
            return bad(format!(
                "the cosignature's time {time_secs} is before the head of epoch {epoch} was signed ({head_secs}, \
                 seconds since the Unix epoch); a witness cosigns a head after verifying it"
            ));
        }
        let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let latest = now_secs.saturating_add(self.cosignature_max_future_secs);
        if time_secs > latest {
            return bad(format!(
                "the cosignature's time {time_secs} is in the future: more than {} s after this server's clock \
                 ({now_secs}); check the witness's clock",
                self.cosignature_max_future_secs
            ));
        }
        Ok(())
    }
}
