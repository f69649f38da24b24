//! `GET /v1/epochs/{epoch}/archive`: an epoch's Parquet archive, streamed from storage in pieces.
//!
//! Memory per request is bounded by one piece ([`ARCHIVE_PIECE_BYTES`]) whatever the archive's size
//! or the range asked for, and the number of archive reads in flight by [`ArchiveReads`] (503 +
//! `Retry-After` beyond). Each archive is checked once against the digest its signed head carries
//! (streaming), and remembered as verified in a cache bounded in entries; the ETag is that digest.

use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::{Api, blocking, parse_epoch};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyfold_core::{Epoch, Hash};
use keyfold_epoch::{ArchiveCheck, Directory, EpochError, verify_archive};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Archive reads (verifications and bodies being sent) in flight at once, by default.
pub const ARCHIVE_READS_MAX_DEFAULT: usize = 16;
/// The piece an archive is read and sent in: what one request holds in memory at most.
pub const ARCHIVE_PIECE_BYTES: u64 = 256 << 10;
/// Archives remembered as verified: entries of 48 bytes (epoch, digest, size) plus the map's
/// overhead, under 1 MiB in all.
pub const VERIFIED_ARCHIVES_MAX: usize = 8192;

/// The bound on concurrent archive reads, and the archives verified against their heads.
#[derive(Debug)]
pub struct ArchiveReads {
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    verified: Mutex<Verified>,
    /// One gate per epoch being verified: a request for an archive under verification waits for
    /// that verification instead of reading the file again. At most one entry per archive read
    /// in flight.
    verifying: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

/// Verified archives by epoch (digest, size in bytes), the oldest entry evicted first.
#[derive(Debug, Default)]
struct Verified {
    by_epoch: HashMap<u64, (Hash, u64)>,
    order: VecDeque<u64>,
}

impl ArchiveReads {
    /// At most `max_concurrent` archive reads at once (at least 1).
    pub fn new(max_concurrent: usize) -> ArchiveReads {
        let max_concurrent = max_concurrent.max(1);
        ArchiveReads {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            verified: Mutex::new(Verified::default()),
            verifying: Mutex::new(HashMap::new()),
        }
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<tokio::sync::Mutex<()>>>> {
        self.verifying.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The gate of `epoch`'s verification, shared by every request that verifies it now.
    fn gate(&self, epoch: u64) -> Gate<'_> {
        Gate { reads: self, epoch, gate: Arc::clone(self.gates().entry(epoch).or_default()) }
    }

    fn permit(&self, retry_after_secs: u64) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| ApiError::Unavailable {
            retry_after_secs,
            message: format!(
                "{} archive downloads are in progress (the most at once); retry later",
                self.max_concurrent
            ),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The size of `epoch`'s archive if it was verified against `digest`.
    fn verified_size(&self, epoch: u64, digest: &Hash) -> Option<u64> {
        self.lock().by_epoch.get(&epoch).filter(|(d, _)| d == digest).map(|(_, size)| *size)
    }

    fn remember(&self, epoch: u64, digest: Hash, size_bytes: u64) {
        let mut verified = self.lock();
        if verified.by_epoch.insert(epoch, (digest, size_bytes)).is_none() {
            verified.order.push_back(epoch);
        }
        while verified.order.len() > VERIFIED_ARCHIVES_MAX {
            let oldest = verified.order.pop_front().expect("longer than the bound");
            verified.by_epoch.remove(&oldest);
        }
    }
}

/// A request's hold on an epoch's verification gate. Dropped (also when the request is
/// abandoned midway), it removes the gate once no other request holds it, so the map never keeps
/// gates of finished verifications.
struct Gate<'a> {
    reads: &'a ArchiveReads,
    epoch: u64,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        let mut gates = self.reads.gates();
        // The map's clone and this one: nobody else waits (clones are made under this lock).
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(&self.epoch);
        }
    }
}

impl Default for ArchiveReads {
    fn default() -> ArchiveReads {
        ArchiveReads::new(ARCHIVE_READS_MAX_DEFAULT)
    }
}

/// Parses a single `bytes=` range against a body of `len` bytes: `Ok(None)` for no Range header,
/// `Err(())` when unsatisfiable or not a single byte range.
fn parse_range(headers: &HeaderMap, len: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(value) = headers.get(header::RANGE) else { return Ok(None) };
    let spec = value.to_str().map_err(|_| ())?.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(()); // several ranges: not served
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            len.saturating_sub(n)..len
        }
        (start, "") => start.parse().map_err(|_| ())?..len,
        (start, end) => start.parse().map_err(|_| ())?..end.parse::<u64>().map_err(|_| ())?.saturating_add(1).min(len),
    };
    if range.start >= range.end || range.start >= len {
        return Err(());
    }
    Ok(Some(range))
}

/// The archive digest signed in `epoch`'s head: 404 without a head, or for the genesis head
/// (which has no archive).
async fn signed_digest(api: &Arc<Api>, epoch: u64) -> Result<Hash, ApiError> {
    let served = Arc::clone(api);
    let retry = api.retry_after_secs;
    let note = blocking(move || {
        let note = served.directory.head_note(Epoch(epoch)).map_err(|e| ApiError::from_storage(e, retry))?;
        if note.is_some() {
            check_retained(&*served.directory, Epoch(epoch)).map_err(|e| ApiError::from_storage(e, retry))??;
        }
        Ok(note)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("epoch {epoch} has no signed head")))?;
    let head = api.directory.verify_stored_head(Epoch(epoch), &note).map_err(|e| {
        ApiError::ServerFault("head_corrupt", format!("the stored head of epoch {epoch} does not verify: {e}"))
    })?;
    if head.archive == Hash::default() {
        return Err(ApiError::NotFound(format!(
            "epoch {epoch} is the genesis epoch: it has no mutations and no archive"
        )));
    }
    Ok(head.archive)
}

/// 410 for an epoch whose archive and proof the retention window deleted (SPEC section 4.3).
fn check_retained(directory: &dyn Directory, epoch: Epoch) -> Result<Result<(), ApiError>, EpochError> {
    let Some(retention) = directory.retention() else { return Ok(Ok(())) };
    let oldest = directory.oldest_epoch()?;
    if retention.keep_archives || epoch >= oldest {
        return Ok(Ok(()));
    }
    Ok(Err(ApiError::Gone(format!(
        "epoch {epoch} is outside this directory's retention window (it keeps the last {} epochs; the oldest kept \
         is {oldest}): its archive and epoch proof were deleted; audit from epoch {oldest} on (keyfold audit or \
         keyfold monitor --from {oldest})",
        retention.epochs
    ))))
}

/// Checks `epoch`'s archive against `digest` once (streaming); returns its size in bytes. A
/// missing or damaged archive of a signed head is this server's fault: 500, named, logged.
async fn verify(api: &Arc<Api>, epoch: u64, digest: Hash) -> Result<u64, ApiError> {
    let job = Arc::clone(&api.directory);
    let retry = api.retry_after_secs;
    let check = blocking(move || {
        let suite = job.suite();
        verify_archive(job.archives(), Epoch(epoch), suite, &digest, ARCHIVE_PIECE_BYTES)
            .map_err(|e| ApiError::from_storage(e, retry))
    })
    .await?;
    match check {
        ArchiveCheck::Verified { size_bytes } => {
            api.archive_reads.remember(epoch, digest, size_bytes);
            Ok(size_bytes)
        }
        ArchiveCheck::Missing => Err(ApiError::ServerFault(
            "archive_missing",
            format!(
                "epoch {epoch} has a signed head but its archive is missing from this server's storage; \
                 this is a server fault: the operator must restore it (see `keyfold fsck`)"
            ),
        )),
        ArchiveCheck::Mismatch { size_bytes, found } => Err(ApiError::ServerFault(
            "archive_corrupt",
            format!(
                "the archive of epoch {epoch} ({size_bytes} bytes) does not match the digest in its signed head \
                 (signed {}, stored file {}); this is a server fault: the operator must restore it (see `keyfold fsck`)",
                digest.to_hex(),
                found.to_hex()
            ),
        )),
    }
}

/// [`verify`], once for all the requests that ask for `epoch`'s archive while it is verified.
async fn verify_once(api: &Arc<Api>, epoch: u64, digest: Hash) -> Result<u64, ApiError> {
    let gate = api.archive_reads.gate(epoch);
    let _turn = gate.gate.lock().await;
    match api.archive_reads.verified_size(epoch, &digest) {
        Some(size) => Ok(size), // verified by the request this one waited for
        None => verify(api, epoch, digest).await,
    }
}

/// The body: `range` of `epoch`'s archive, read piece by piece as the client takes it. `permit`
/// is held until the body is done or dropped. A read failing midway ends the body with an error
/// (the connection is cut: the status was already sent).
fn streamed(job: Arc<dyn Directory>, epoch: u64, range: Range<u64>, permit: OwnedSemaphorePermit) -> Body {
    let end = range.end;
    let pieces = futures::stream::unfold((job, range.start, permit), move |(job, at, permit)| async move {
        if at >= end {
            return None;
        }
        let stop = (at + ARCHIVE_PIECE_BYTES).min(end);
        let reader = Arc::clone(&job);
        let read = tokio::task::spawn_blocking(move || reader.archives().read_range(Epoch(epoch), at..stop)).await;
        match read {
            Ok(Ok(Some(piece))) if !piece.is_empty() => {
                #[allow(clippy::cast_possible_truncation)] // at most ARCHIVE_PIECE_BYTES
                let piece = piece.slice(..piece.len().min((stop - at) as usize));
                let next = at + piece.len() as u64;
                Some((Ok::<Bytes, std::io::Error>(piece), (job, next, permit)))
            }
            other => {
                let why = format!("reading bytes {at}..{stop} of the archive of epoch {epoch}: {other:?}");
                tracing::error!(epoch, error = %why, "archive body cut short");
                Some((Err(std::io::Error::other(why)), (job, end, permit)))
            }
        }
    });
    Body::from_stream(pieces)
}

/// The Parquet archive of an epoch's mutations and outcomes (immutable). A `Range: bytes=a-b`
/// header (one range) gets 206 with that part, or 416 if it lies outside the archive. The ETag is
/// the archive digest signed in the epoch's head.
#[utoipa::path(get, path = "/v1/epochs/{epoch}/archive", tag = "archives",
    params(("epoch" = u64, Path, description = "Epoch number")),
    responses(
        (status = 200, description = "The archive", content_type = "application/vnd.apache.parquet",
            headers(("ETag" = String, description = "The archive digest signed in the head, hex, quoted"))),
        (status = 206, description = "The requested range", content_type = "application/vnd.apache.parquet"),
        (status = 400, description = "Not an epoch number", body = ErrorBody),
        (status = 404, description = "No signed head for that epoch, or the genesis epoch (no archive)",
            body = ErrorBody),
        (status = 416, description = "Unsatisfiable range", body = ErrorBody),
        (status = 500, description = "The archive of a signed head is missing (`archive_missing`) or does not \
            match its signed digest (`archive_corrupt`): a server fault", body = ErrorBody),
        (status = 410, description = "Deleted by the directory's retention window", body = ErrorBody),
        (status = 503, description = "Too many archive downloads at once, or storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn archive(
    State(api): State<Arc<Api>>,
    ApiPath(epoch): ApiPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let epoch = parse_epoch(&epoch)?;
    let digest = signed_digest(&api, epoch).await?;
    let retry = api.retry_after_secs;
    let mut permit = None;
    let size = match api.archive_reads.verified_size(epoch, &digest) {
        Some(size) => size,
        None => {
            permit = Some(api.archive_reads.permit(retry)?);
            verify_once(&api, epoch, digest).await?
        }
    };
    let mut response = Response::new(Body::empty());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, "application/vnd.apache.parquet".parse().expect("ascii"));
    h.insert(header::CACHE_CONTROL, "public, max-age=31536000, immutable".parse().expect("ascii"));
    h.insert(header::ETAG, format!("\"{}\"", digest.to_hex()).parse().expect("ascii"));
    h.insert(header::ACCEPT_RANGES, "bytes".parse().expect("ascii"));
    let range = match parse_range(&headers, size) {
        Ok(None) => 0..size,
        Ok(Some(range)) => {
            let content_range = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            response.headers_mut().insert(header::CONTENT_RANGE, content_range.parse().expect("ascii"));
            range
        }
        Err(()) => {
            let message = format!("the archive has {size} bytes; send one `bytes=a-b` range");
            let mut refused = ApiError::RangeNotSatisfiable(message).into_response();
            refused.headers_mut().insert(header::CONTENT_RANGE, format!("bytes */{size}").parse().expect("ascii"));
            return Ok(refused);
        }
    };
    response.headers_mut().insert(header::CONTENT_LENGTH, (range.end - range.start).into());
    if method == Method::HEAD || range.is_empty() {
        return Ok(response); // the headers only: nothing of the file is read
    }
    let permit = match permit {
        Some(permit) => permit,
        None => api.archive_reads.permit(retry)?,
    };
    *response.body_mut() = streamed(Arc::clone(&api.directory), epoch, range, permit);
    Ok(response)
}

/// The epoch proof of an epoch (SPEC section 3.2, immutable): what an auditor needs, beside the
/// archive and the two heads, to check the epoch without the map. It is not signed: both roots it
/// leads to are, so a wrong one fails the audit.
#[utoipa::path(get, path = "/v1/epochs/{epoch}/proof", tag = "archives",
    params(("epoch" = u64, Path, description = "Epoch number")),
    responses(
        (status = 200, description = "The epoch proof (format 1)", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 400, description = "Not an epoch number", body = ErrorBody),
        (status = 404, description = "No signed head for that epoch, the genesis epoch, or an epoch signed \
            before epoch proofs were written", body = ErrorBody),
        (status = 410, description = "Deleted by the directory's retention window", body = ErrorBody),
        (status = 503, description = "Too many downloads at once, or storage unavailable", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn epoch_proof(
    State(api): State<Arc<Api>>,
    ApiPath(epoch): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let epoch = parse_epoch(&epoch)?;
    signed_digest(&api, epoch).await?; // 404 without a signed head, or for the genesis epoch
    let _permit = api.archive_reads.permit(api.retry_after_secs)?;
    let served = Arc::clone(&api);
    let retry = api.retry_after_secs;
    let proof = blocking(move || {
        served.directory.archives().get_proof(Epoch(epoch)).map_err(|e| ApiError::from_storage(e, retry))
    })
    .await?
    .ok_or_else(|| {
        ApiError::NotFound(format!("epoch {epoch} has no epoch proof (signed before proofs were written)"))
    })?;
    Ok(crate::log::cached(&headers, proof.to_vec(), crate::log::IMMUTABLE, "application/octet-stream"))
}
