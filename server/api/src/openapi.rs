//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and the
//! request/response types' `ToSchema` derives in `lib.rs` and `error.rs`.

use crate::error::ErrorBody;
use crate::{
    DirectoryInfo, HistoryResponse, KeyVersionResponse, LookupResponse, MutationRequest, MutationStatusResponse,
    ReceiptResponse, SubmitRequest, SubmitResponse,
};
use std::sync::OnceLock;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keyfold",
        description = "A key transparency directory: a verifiable map from keys to values, updated in signed epochs. \
            Errors are JSON `{\"error\": code, \"message\": text}`; 4xx is the client's fault, 503 with Retry-After is \
            back-pressure."
    ),
    paths(
        crate::directory,
        crate::submit,
        crate::mutation_status,
        crate::lookup,
        crate::key_history,
        crate::latest_head,
        crate::head_at,
        crate::post_cosignature,
        crate::trigger_epoch,
        crate::archive::archive,
        crate::healthz,
        crate::metrics_text,
        crate::openapi_json,
    ),
    components(schemas(
        DirectoryInfo,
        SubmitRequest,
        MutationRequest,
        SubmitResponse,
        ReceiptResponse,
        LookupResponse,
        MutationStatusResponse,
        HistoryResponse,
        KeyVersionResponse,
        crate::CosignatureLine,
        crate::HealthResponse,
        ErrorBody
    ))
)]
struct ApiDoc;

/// The document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served (built once).
pub(crate) fn openapi_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| openapi().to_pretty_json().expect("the OpenAPI document serialises"))
}
