//! The admin API (axum) on its own listener: `/health` and `/openapi.json` (open), everything
//! else behind a bearer token and the role table of [`auth`].
//!
//! Modules: [`error`] (JSON errors, extractors), [`auth`] (tokens, roles), one module per
//! resource ([`upstreams`], [`routes`] with filters, [`consumers`] with keys and JWT
//! credentials, [`plugins`], [`users`], [`config`], [`status`] with audit, [`instances`]).
//! Every write goes through [`crate::control::ControlPlane::write`]: read, change, validate +
//! build, commit, swap, audited with the caller's name.

pub mod auth;
pub mod client;
pub mod config;
pub mod consumers;
pub mod error;
pub mod instances;
mod named;
pub mod plugins;
pub mod routes;
pub mod status;
pub mod upstreams;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Caller;
pub use error::ApiError;

use crate::control::ControlPlane;

/// Largest JSON body accepted by the admin API.
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest plugin component accepted by `POST /plugins`.
pub const MAX_PLUGIN: usize = 32 * 1024 * 1024;
/// Largest document accepted by `PUT /config`.
pub const MAX_DOCUMENT: usize = 8 * 1024 * 1024;

/// What every handler sees.
#[derive(Clone)]
pub struct AdminState {
    /// The instance's control plane (gateway, store).
    pub control: Arc<ControlPlane>,
    /// The bootstrap token.
    pub token: Arc<str>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferrox admin API",
        description = "Manage a running Ferrox gateway: upstreams, routes and their filter pipelines, plugins, consumers and their credentials, admin users, the whole config document, status and the audit log.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(error::ErrorBody, error::IssueBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The protected routes and the OpenAPI document describing them.
fn api() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(metrics))
        .merge(upstreams::router())
        .merge(routes::router())
        .merge(consumers::router())
        .merge(plugins::router())
        .merge(users::router())
        .merge(config::router())
        .merge(status::router())
        .merge(instances::router())
}

/// The OpenAPI document of the admin API, with the error answers every operation can give
/// (bad input, no token, role too low, store down, and for writes too large or invalid).
pub fn openapi() -> serde_json::Value {
    let (_, doc) = OpenApiRouter::<AdminState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .merge(api())
        .split_for_parts();
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            let mut common = vec![("400", "Bad request (parameters or body)")];
            if path != "/health" {
                common.push(("401", "No valid bearer token"));
                common.push(("403", "The caller's role is too low"));
                common.push(("503", "The config store is unavailable"));
            }
            if path.contains('{') {
                common.push(("404", "No such resource"));
            }
            if matches!(method.as_str(), "post" | "put" | "patch") {
                common.push(("413", "Body too large"));
                common.push(("422", "Invalid"));
            }
            for (code, description) in common {
                responses.entry(code).or_insert_with(|| {
                    serde_json::json!({
                        "description": description,
                        "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
                    })
                });
            }
        }
    }
    doc
}

/// The admin router. Every route but `/health` and `/openapi.json` requires a bearer token.
pub fn router(control: Arc<ControlPlane>, token: Arc<str>) -> Router {
    let state = AdminState { control, token };
    let (protected, _) = api().split_for_parts();
    let document: Arc<serde_json::Value> = Arc::new(openapi());
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_auth,
    ));
    Router::new()
        .route("/health", axum::routing::get(health))
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json((*document).clone()) }
            }),
        )
        .merge(protected)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Liveness and a summary of what is configured.
#[utoipa::path(get, path = "/health", tag = "status", security(()),
    responses((status = 200, description = "The instance is up", body = serde_json::Value)))]
async fn health(State(s): State<AdminState>) -> impl IntoResponse {
    let snap = s.control.gateway.snapshot();
    axum::Json(serde_json::json!({
        "status": "ok",
        "routes": snap.routes.len(),
        "upstreams": snap.upstreams.len(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String),
        (status = 401, description = "No valid token", body = error::ErrorBody)))]
async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.control.gateway.metrics.render(),
    )
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such admin resource").into_response()
}

/// Compare secrets without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON value of `v` (for audit entries and answers).
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// A resource name: 1–64 characters of letters, digits, `-`, `_`, `.`.
pub(crate) fn check_name(path: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            path,
            format!("{name:?} is not a valid name: use 1-64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// A random secret of 32 bytes from the OS, URL-safe, with `prefix`.
pub(crate) fn random_secret(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("no randomness from the operating system: {e}"),
        )
    })?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// A `201 Created` JSON answer.
pub(crate) fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}
