//! Mutations: `POST /v1/mutations` (202 only once durable) and `GET /v1/mutations/{id}`.

use super::*;
use keyfold_verify::wire::{MutationStatusResponse, ReceiptResponse, SubmitResponse};

/// A batch of mutations, appended all or nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    #[schema(min_items = 1, max_items = 1000)]
    mutations: Vec<MutationRequest>,
}

/// Set a key's value (or delete it) if its version is `expected_version`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MutationRequest {
    /// The key (user id), 1 to 1024 bytes of UTF-8 (256 characters always fit).
    #[schema(min_length = 1, max_length = 256)]
    key: String,
    /// Canonical base64 of the new value (at most 64 KiB), or null to delete.
    #[schema(
        max_length = 87380,
        pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    value: Option<String>,
    /// The version the key must have; 0 = it must not exist.
    #[serde(deserialize_with = "integral_u64")]
    expected_version: u64,
    /// Base64 of an owner signature, at most 512 bytes (reserved; carried and hashed, not yet verified).
    #[serde(default)]
    #[schema(
        max_length = 680,
        pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
    )]
    owner_signature: Option<String>,
}

/// A receipt on the wire: the id and the queue position or FoundationDB versionstamp.
fn receipt_response(r: Receipt) -> ReceiptResponse {
    let (position, versionstamp) = match r.slot {
        Slot::Position(p) => (Some(p.0), None),
        Slot::Versionstamp(v) => (None, Some(hex::encode(v))),
    };
    ReceiptResponse { id: r.id.to_hex(), position, versionstamp }
}

/// 2^53: every integer below it is exact as a float; at or above it, a float may be a rounded
/// neighbour of the number that was sent (`9007199254740993.0` reads as ...992).
const FLOAT_EXACT_BELOW: f64 = 9_007_199_254_740_992.0;

/// A JSON integer, also written with a zero fraction (`3.0`): JSON Schema's `integer` allows both.
/// A float is taken only below 2^53, where it is exact; above, the client must send an integer.
fn integral_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(u64),
        Float(f64),
    }
    match Number::deserialize(d)? {
        Number::Int(n) => Ok(n),
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range and fraction checked
        Number::Float(f) if f.fract() == 0.0 && (0.0..FLOAT_EXACT_BELOW).contains(&f) => Ok(f as u64),
        Number::Float(f) if f.fract() == 0.0 && f >= FLOAT_EXACT_BELOW => Err(serde::de::Error::custom(format!(
            "{f:e} is a float at or above 2^53, which may not be the number sent: send the version as an integer"
        ))),
        Number::Float(f) => {
            Err(serde::de::Error::custom(format!("{f} is not a version: send an integer from 0 to 2^64-1")))
        }
    }
}

fn decode_b64(field: &str, at: usize, text: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(text)
        .map_err(|_| ApiError::BadRequest("bad_base64", format!("mutation {at}: {field} is not valid base64")))
}

fn parse_submission(body: &[u8]) -> Result<Vec<Mutation>, ApiError> {
    let request: SubmitRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest("bad_json", format!("invalid request body: {e}")))?;
    request
        .mutations
        .into_iter()
        .enumerate()
        .map(|(at, m)| {
            Ok(Mutation {
                key: m.key.into_bytes(),
                value: m.value.map(|v| decode_b64("value", at, &v)).transpose()?,
                expected_version: Version(m.expected_version),
                owner_signature: m.owner_signature.map(|s| decode_b64("owner_signature", at, &s)).transpose()?,
            })
        })
        .collect()
}

/// Queue mutations for the next epoch. Answers 202 only once they are durable.
#[utoipa::path(post, path = "/v1/mutations", tag = "mutations", request_body = SubmitRequest,
    responses(
        (status = 202, description = "Durably queued", body = SubmitResponse),
        (status = 400, description = "Bad JSON, base64 or limits", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Queue full, request body budget spent, storage unavailable (see \
            Retry-After), or the epoch scheduler has stopped (the message names the cause)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn submit(
    State(api): State<Arc<Api>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    api.refuse_writes_if_stopped()?;
    let body = body.map_err(ApiError::from_body_rejection)?;
    let mutations = parse_submission(&body)?;
    validate(&api.limits, &mutations).map_err(|e| ApiError::BadRequest("invalid_mutation", e.to_string()))?;
    let retry_after = api.retry_after_secs;
    let job = Arc::clone(&api.directory);
    // Acknowledged only after `append` returns, i.e. after the group commit made it durable.
    let receipts = blocking(move || job.submit(mutations).map_err(|e| ApiError::from_queue(e, retry_after))).await?;
    let receipts = receipts.into_iter().map(receipt_response).collect();
    Ok((StatusCode::ACCEPTED, Json(SubmitResponse { receipts })))
}

/// The meaning of an archived reason code (an unknown code is shown as such, never guessed).
pub(crate) fn reason_text(code: &str) -> String {
    keyfold_verify::RejectReason::CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or_else(|| format!("unknown reason code {code:?}"), |(_, meaning)| (*meaning).to_owned())
}

/// A mutation's status by the id its receipt gave.
#[utoipa::path(get, path = "/v1/mutations/{id}", tag = "mutations",
    params(("id" = String, Path, description = "Hex of the 32-byte mutation id", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "Pending, or its outcome", body = MutationStatusResponse),
        (status = 400, description = "Not a mutation id", body = ErrorBody),
        (status = 404, description = "Neither pending nor in any signed epoch", body = ErrorBody),
        (status = 503, description = "Storage unavailable, or not pending while the outcome index catches up with \
            the signed epochs: retry", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub(crate) async fn mutation_status(
    State(api): State<Arc<Api>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MutationStatusResponse>, ApiError> {
    let bytes: [u8; 32] = hex::decode(&id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::BadRequest("bad_mutation_id", "a mutation id is 64 hex digits".into()))?;
    let job = Arc::clone(&api.directory);
    let mutation = keyfold_core::MutationId(keyfold_core::Hash(bytes));
    let retry = api.retry_after_secs;
    let status = blocking(move || job.mutation_status(&mutation).map_err(|e| ApiError::from_storage(e, retry))).await?;
    let empty = MutationStatusResponse {
        id: id.to_ascii_lowercase(),
        status: "pending".to_owned(),
        epoch: None,
        position: None,
        expected_version: None,
        new_version: None,
        reason: None,
        reason_text: None,
    };
    match status {
        MutationStatus::Pending => Ok(Json(empty)),
        MutationStatus::Done(r) => Ok(Json(MutationStatusResponse {
            status: r.outcome.as_str().to_owned(),
            epoch: Some(r.epoch.0),
            position: Some(r.position),
            expected_version: Some(r.expected_version.0),
            new_version: r.new_version.map(|v| v.0),
            reason_text: r.reason.as_deref().map(reason_text),
            reason: r.reason,
            ..empty
        })),
        MutationStatus::NotYetIndexed { indexed_through, latest } => Err(ApiError::Unavailable {
            retry_after_secs: api.retry_after_secs,
            message: format!(
                "mutation {id} is not pending; the outcome index is catching up (indexed through epoch \
                 {indexed_through}, signed through epoch {latest}), so it may be in a signed epoch: retry"
            ),
        }),
        MutationStatus::Unknown => {
            Err(ApiError::NotFound(format!("mutation {id} is neither pending on this server nor in an indexed epoch")))
        }
    }
}
