//! `/routes`, `/routes/{name}` and the route's filter pipeline `/routes/{name}/filters`
//! (attach at a position, reorder, update, detach).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Json, Path, Query};
use super::{AdminState, ApiError, Caller, named, to_json};
use crate::config::{FilterConfig, IsolationConfig, OnErrorConfig, RouteConfig};
use crate::control::Change;

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, replace, delete))
        .routes(routes!(list_filters, attach))
        .routes(routes!(get_filter, put_filter, patch_filter, detach))
}

/// Every route.
#[utoipa::path(get, path = "/routes", tag = "routes",
    responses((status = 200, description = "The routes", body = Vec<serde_json::Value>)))]
async fn list(State(s): State<AdminState>) -> Result<Response, ApiError> {
    named::list::<RouteConfig>(&s).await
}

/// Add a route (the `routes[]` entry of the config document, filters included).
#[utoipa::path(post, path = "/routes", tag = "routes", request_body = serde_json::Value,
    responses((status = 201, description = "Created", body = serde_json::Value),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "Invalid (unknown upstream, a filter rejects its config, …)", body = ErrorBody)))]
async fn create(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RouteConfig>,
) -> Result<Response, ApiError> {
    named::create(&s, &caller, body).await
}

/// One route.
#[utoipa::path(get, path = "/routes/{name}", tag = "routes",
    params(("name" = String, Path, description = "Route name")),
    responses((status = 200, description = "The route", body = serde_json::Value),
        (status = 404, description = "No such route", body = ErrorBody)))]
async fn get_one(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    named::get::<RouteConfig>(&s, &name).await
}

/// Replace a route.
#[utoipa::path(put, path = "/routes/{name}", tag = "routes", request_body = serde_json::Value,
    params(("name" = String, Path, description = "Route name")),
    responses((status = 200, description = "Replaced", body = serde_json::Value),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 422, description = "Invalid", body = ErrorBody)))]
async fn replace(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<RouteConfig>,
) -> Result<Response, ApiError> {
    named::replace(&s, &caller, &name, body).await
}

/// Delete a route.
#[utoipa::path(delete, path = "/routes/{name}", tag = "routes",
    params(("name" = String, Path, description = "Route name")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such route", body = ErrorBody)))]
async fn delete(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    named::delete::<RouteConfig>(&s, &caller, &name).await
}

/// The route's filters, in pipeline order.
#[utoipa::path(get, path = "/routes/{name}/filters", tag = "routes",
    params(("name" = String, Path, description = "Route name")),
    responses((status = 200, description = "The filters", body = Vec<serde_json::Value>),
        (status = 404, description = "No such route", body = ErrorBody)))]
async fn list_filters(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let mut doc = s.control.store.load().await?.config;
    let i = named::index_of::<RouteConfig>(&mut doc, &name)?;
    Ok(axum::Json(to_json(&doc.routes[i].filters)).into_response())
}

/// Where to attach a filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AttachParams {
    /// Position in the pipeline (0 = first); the end when absent.
    position: Option<usize>,
}

/// Attach a filter to a route at `position` (its `init` judges the config: 422 when it
/// refuses). Answers the whole pipeline.
#[utoipa::path(post, path = "/routes/{name}/filters", tag = "routes", request_body = serde_json::Value,
    params(("name" = String, Path, description = "Route name"), AttachParams),
    responses((status = 201, description = "Attached; the pipeline", body = Vec<serde_json::Value>),
        (status = 404, description = "No such route", body = ErrorBody),
        (status = 422, description = "Unknown plugin or config refused by the filter", body = ErrorBody)))]
async fn attach(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<AttachParams>,
    Json(filter): Json<FilterConfig>,
) -> Result<Response, ApiError> {
    let (_, change) = edit_filters(&s, &caller, &name, "attach", |filters| {
        let at = q.position.unwrap_or(filters.len());
        if at > filters.len() {
            return Err(ApiError::invalid(
                "position",
                format!(
                    "position {at} is past the end of the pipeline ({} filters)",
                    filters.len()
                ),
            ));
        }
        filters.insert(at, filter.clone());
        Ok(())
    })
    .await?;
    Ok(super::created(change.after))
}

/// One filter of a route.
#[utoipa::path(get, path = "/routes/{name}/filters/{index}", tag = "routes",
    params(("name" = String, Path, description = "Route name"), ("index" = usize, Path, description = "Position in the pipeline")),
    responses((status = 200, description = "The filter", body = serde_json::Value),
        (status = 404, description = "No such route or filter", body = ErrorBody)))]
async fn get_filter(
    State(s): State<AdminState>,
    Path((name, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    let mut doc = s.control.store.load().await?.config;
    let i = named::index_of::<RouteConfig>(&mut doc, &name)?;
    let f = doc.routes[i]
        .filters
        .get(index)
        .ok_or_else(|| no_filter(&name, index))?;
    Ok(axum::Json(to_json(f)).into_response())
}

/// Replace one filter of a route.
#[utoipa::path(put, path = "/routes/{name}/filters/{index}", tag = "routes", request_body = serde_json::Value,
    params(("name" = String, Path, description = "Route name"), ("index" = usize, Path, description = "Position in the pipeline")),
    responses((status = 200, description = "Replaced; the pipeline", body = Vec<serde_json::Value>),
        (status = 404, description = "No such route or filter", body = ErrorBody),
        (status = 422, description = "Config refused by the filter", body = ErrorBody)))]
async fn put_filter(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((name, index)): Path<(String, usize)>,
    Json(filter): Json<FilterConfig>,
) -> Result<Response, ApiError> {
    let (_, change) = edit_filters(&s, &caller, &name, "update", |filters| {
        let slot = filters
            .get_mut(index)
            .ok_or_else(|| no_filter(&name, index))?;
        *slot = filter.clone();
        Ok(())
    })
    .await?;
    Ok(axum::Json(change.after).into_response())
}

/// A partial change of one filter: move it and/or change its settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FilterPatch {
    /// New position in the pipeline (0 = first).
    #[serde(default)]
    position: Option<usize>,
    /// New filter config (judged by the filter's `init`).
    #[serde(default)]
    config: Option<serde_json::Value>,
    /// New failure policy.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    on_error: Option<OnErrorConfig>,
    /// New isolation.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    isolation: Option<IsolationConfig>,
}

/// Move a filter (`position`) and/or change its `config`, `on_error`, `isolation`.
#[utoipa::path(patch, path = "/routes/{name}/filters/{index}", tag = "routes", request_body = FilterPatch,
    params(("name" = String, Path, description = "Route name"), ("index" = usize, Path, description = "Position in the pipeline")),
    responses((status = 200, description = "Changed; the pipeline", body = Vec<serde_json::Value>),
        (status = 404, description = "No such route or filter", body = ErrorBody),
        (status = 422, description = "Bad position or config refused by the filter", body = ErrorBody)))]
async fn patch_filter(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((name, index)): Path<(String, usize)>,
    Json(patch): Json<FilterPatch>,
) -> Result<Response, ApiError> {
    let action = if patch.position.is_some() {
        "reorder"
    } else {
        "update"
    };
    let (_, change) = edit_filters(&s, &caller, &name, action, |filters| {
        if index >= filters.len() {
            return Err(no_filter(&name, index));
        }
        let mut f = filters.remove(index);
        if let Some(c) = &patch.config {
            f.config = c.clone();
        }
        if let Some(o) = patch.on_error {
            f.on_error = o;
        }
        if let Some(i) = patch.isolation {
            f.isolation = i;
        }
        let to = patch.position.unwrap_or(index);
        if to > filters.len() {
            return Err(ApiError::invalid(
                "position",
                format!(
                    "position {to} is past the end of the pipeline ({} filters)",
                    filters.len() + 1
                ),
            ));
        }
        filters.insert(to, f);
        Ok(())
    })
    .await?;
    Ok(axum::Json(change.after).into_response())
}

/// Detach a filter from a route.
#[utoipa::path(delete, path = "/routes/{name}/filters/{index}", tag = "routes",
    params(("name" = String, Path, description = "Route name"), ("index" = usize, Path, description = "Position in the pipeline")),
    responses((status = 204, description = "Detached"),
        (status = 404, description = "No such route or filter", body = ErrorBody)))]
async fn detach(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((name, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    edit_filters(&s, &caller, &name, "detach", |filters| {
        if index >= filters.len() {
            return Err(no_filter(&name, index));
        }
        filters.remove(index);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn no_filter(route: &str, index: usize) -> ApiError {
    ApiError::not_found(format!("route {route:?} has no filter at position {index}"))
}

/// One change of route `name`'s pipeline, audited as `routes/{name}/filters`.
async fn edit_filters(
    s: &AdminState,
    caller: &Caller,
    name: &str,
    action: &str,
    mut edit: impl FnMut(&mut Vec<FilterConfig>) -> Result<(), ApiError>,
) -> Result<(crate::store::Version, Change), ApiError> {
    Ok(s.control
        .write(&caller.user, |doc| {
            let i = named::index_of::<RouteConfig>(doc, name)?;
            let filters = &mut doc.routes[i].filters;
            let before = to_json(filters);
            edit(filters)?;
            Ok(Change {
                action: action.into(),
                resource: format!("routes/{name}/filters"),
                before: Some(before),
                after: Some(to_json(filters)),
            })
        })
        .await?)
}
