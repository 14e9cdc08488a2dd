//! The admin listener (axum): `/health` (open) and `/metrics` (bearer token).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::gateway::Gateway;

#[derive(Clone)]
struct AdminState {
    gateway: Arc<Gateway>,
    token: Arc<str>,
}

/// The admin router. Every route but `/health` requires `Authorization: Bearer <token>`.
pub fn router(gateway: Arc<Gateway>, token: Arc<str>) -> Router {
    let state = AdminState { gateway, token };
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(not_found)
        .with_state(state)
}

async fn health(State(s): State<AdminState>) -> impl IntoResponse {
    let snap = s.gateway.snapshot();
    axum::Json(serde_json::json!({
        "status": "ok",
        "routes": snap.routes.len(),
        "upstreams": snap.upstreams.len(),
    }))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.gateway.metrics.render(),
    )
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not-found", "no such admin resource")
}

fn json_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(
            serde_json::json!({ "error": kind, "message": message, "status": status.as_u16() }),
        ),
    )
        .into_response()
}

async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), s.token.as_bytes()) => next.run(req).await,
        _ => {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"ferrox-admin\""),
            );
            r
        }
    }
}

/// Compare secrets without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
