//! `/upstreams`, `/upstreams/{name}`: the document's upstreams.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Json, Path};
use super::{AdminState, ApiError, Caller, named};
use crate::config::UpstreamConfig;

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, replace, delete))
}

/// Every upstream.
#[utoipa::path(get, path = "/upstreams", tag = "upstreams",
    responses((status = 200, description = "The upstreams", body = Vec<serde_json::Value>),
        (status = 401, description = "No valid token", body = ErrorBody)))]
async fn list(State(s): State<AdminState>) -> Result<Response, ApiError> {
    named::list::<UpstreamConfig>(&s).await
}

/// Add an upstream (the `upstreams[]` entry of the config document).
#[utoipa::path(post, path = "/upstreams", tag = "upstreams", request_body = serde_json::Value,
    responses((status = 201, description = "Created", body = serde_json::Value),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "Invalid", body = ErrorBody)))]
async fn create(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<UpstreamConfig>,
) -> Result<Response, ApiError> {
    named::create(&s, &caller, body).await
}

/// One upstream.
#[utoipa::path(get, path = "/upstreams/{name}", tag = "upstreams",
    params(("name" = String, Path, description = "Upstream name")),
    responses((status = 200, description = "The upstream", body = serde_json::Value),
        (status = 404, description = "No such upstream", body = ErrorBody)))]
async fn get_one(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    named::get::<UpstreamConfig>(&s, &name).await
}

/// Replace an upstream.
#[utoipa::path(put, path = "/upstreams/{name}", tag = "upstreams", request_body = serde_json::Value,
    params(("name" = String, Path, description = "Upstream name")),
    responses((status = 200, description = "Replaced", body = serde_json::Value),
        (status = 404, description = "No such upstream", body = ErrorBody),
        (status = 422, description = "Invalid", body = ErrorBody)))]
async fn replace(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<UpstreamConfig>,
) -> Result<Response, ApiError> {
    named::replace(&s, &caller, &name, body).await
}

/// Delete an upstream (422 while a route uses it).
#[utoipa::path(delete, path = "/upstreams/{name}", tag = "upstreams",
    params(("name" = String, Path, description = "Upstream name")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such upstream", body = ErrorBody),
        (status = 422, description = "Still used by a route", body = ErrorBody)))]
async fn delete(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    named::delete::<UpstreamConfig>(&s, &caller, &name).await
}
