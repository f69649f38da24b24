//! Path and query extractors whose rejection is the JSON [`ApiError`] (axum's own answer
//! `text/plain`): a path that is not UTF-8 or a malformed query is a 400 like every other error.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// `axum::extract::Path`, rejected as `bad_path`.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(ApiPath(Path::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// `axum::extract::Query`, rejected as `bad_query`.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(ApiQuery(Query::<T>::from_request_parts(parts, state).await?.0))
    }
}
