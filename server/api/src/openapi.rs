//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and the
//! request/response types' `ToSchema` derives in each resource's file and `error.rs`.

use crate::mutations::{MutationRequest, SubmitRequest};
use keyfold_verify::wire::{
    DirectoryInfo, ErrorBody, HistoryResponse, KeyVersionResponse, LookupAnswer, MutationStatusResponse,
    ReceiptResponse, SubmitResponse,
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
        crate::directory_info::directory,
        crate::mutations::submit,
        crate::mutations::mutation_status,
        crate::keys::lookup,
        crate::keys::key_history,
        crate::heads::latest_head,
        crate::heads::head_at,
        crate::heads::post_cosignature,
        crate::log::checkpoint,
        crate::log::tiles_checkpoint,
        crate::log::tile,
        crate::operations::trigger_epoch,
        crate::archive::archive,
        crate::archive::epoch_proof,
        crate::operations::healthz,
        crate::operations::metrics_text,
        crate::operations::openapi_json,
    ),
    components(schemas(
        DirectoryInfo,
        SubmitRequest,
        MutationRequest,
        SubmitResponse,
        ReceiptResponse,
        LookupAnswer,
        keyfold_verify::wire::CheckpointAnswer,
        MutationStatusResponse,
        HistoryResponse,
        KeyVersionResponse,
        crate::heads::CosignatureLine,
        crate::operations::HealthResponse,
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
