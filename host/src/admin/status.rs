//! `/status` (versions, store and state store health, breaker states, uptime) and `/audit`
//! (the audit log, filtered by user, resource prefix and time range).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Query};
use super::{AdminState, ApiError};
use crate::store::{AuditQuery, parse_rfc3339};

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(audit))
}

/// The instance's state.
#[derive(Debug, Serialize, ToSchema)]
struct Status {
    /// Ferrox version.
    version: String,
    /// The store's current config version.
    config_version: Option<i64>,
    /// The config version this instance runs.
    applied_version: i64,
    /// The config store.
    store: Health,
    /// The state store (counters, cache).
    state: Health,
    /// Seconds since the instance started.
    uptime_seconds: u64,
    /// Every upstream target and its circuit breaker.
    upstreams: Vec<UpstreamStatus>,
}

/// A component's health.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// `memory`, `file`, `postgres`, `local`, `redis`.
    kind: String,
    /// Where it is.
    describe: String,
    /// Whether it answers.
    healthy: bool,
}

/// One upstream's targets.
#[derive(Debug, Serialize, ToSchema)]
struct UpstreamStatus {
    /// Upstream name.
    name: String,
    /// Its targets.
    targets: Vec<TargetStatus>,
}

/// One target.
#[derive(Debug, Serialize, ToSchema)]
struct TargetStatus {
    /// `host:port`.
    target: String,
    /// `closed`, `open` or `half_open`.
    breaker: String,
    /// Active health (true without health checks).
    healthy: bool,
    /// Requests in flight.
    in_flight: usize,
}

/// Versions, store and state health, breaker states, uptime.
#[utoipa::path(get, path = "/status", tag = "status",
    responses((status = 200, description = "The instance's state", body = Status)))]
async fn status(State(s): State<AdminState>) -> Result<Response, ApiError> {
    let c = &s.control;
    let config_version = c.store.load().await.ok().map(|st| st.version);
    let store = Health {
        kind: c.store.kind().into(),
        describe: c.store.describe(),
        healthy: c.store.healthy().await,
    };
    let state_store = c.gateway.services.state.load_full();
    let state_healthy = state_store
        .get(
            "ferrox:health-probe",
            Some(Instant::now() + Duration::from_millis(500)),
        )
        .await
        .is_ok();
    let describe = state_store.describe();
    let state = Health {
        kind: if describe == "local" {
            "local"
        } else {
            "redis"
        }
        .into(),
        describe,
        healthy: state_healthy,
    };
    let snap = c.gateway.snapshot();
    let mut upstreams: Vec<UpstreamStatus> = snap
        .upstreams
        .values()
        .map(|u| UpstreamStatus {
            name: u.name().to_owned(),
            targets: u
                .targets
                .iter()
                .map(|t| TargetStatus {
                    target: t.label.clone(),
                    breaker: breaker_name(t.breaker_state()).into(),
                    healthy: t.is_healthy(),
                    in_flight: t.in_flight(),
                })
                .collect(),
        })
        .collect();
    upstreams.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(axum::Json(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        config_version,
        applied_version: c.applied_version(),
        store,
        state,
        uptime_seconds: c.started.elapsed().as_secs(),
        upstreams,
    })
    .into_response())
}

fn breaker_name(s: crate::breaker::BreakerState) -> &'static str {
    match s {
        crate::breaker::BreakerState::Closed => "closed",
        crate::breaker::BreakerState::Open => "open",
        crate::breaker::BreakerState::HalfOpen => "half_open",
    }
}

/// Audit log filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only this user (`bootstrap` for the bootstrap token, `file` for file edits).
    user: Option<String>,
    /// Only resources starting with this (`routes/`, `consumers/alice`).
    resource: Option<String>,
    /// Not before (RFC 3339).
    since: Option<String>,
    /// Not after (RFC 3339).
    until: Option<String>,
    /// At most this many entries, newest first (default 100, at most 1000).
    limit: Option<u32>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
struct AuditView {
    /// Id.
    id: i64,
    /// When (RFC 3339).
    at: String,
    /// Who.
    actor: String,
    /// What.
    action: String,
    /// To what.
    resource: String,
    /// Before the change.
    before: Option<serde_json::Value>,
    /// After the change.
    after: Option<serde_json::Value>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/audit", tag = "status", params(AuditParams),
    responses((status = 200, description = "Audit entries", body = Vec<AuditView>),
        (status = 400, description = "Bad filter", body = ErrorBody)))]
async fn audit(
    State(s): State<AdminState>,
    Query(q): Query<AuditParams>,
) -> Result<Response, ApiError> {
    for (name, v) in [("since", &q.since), ("until", &q.until)] {
        if let Some(v) = v
            && parse_rfc3339(v).is_none()
        {
            return Err(ApiError::bad_request(format!(
                "{name}: {v:?} is not an RFC 3339 instant"
            )));
        }
    }
    let query = AuditQuery {
        actor: q.user,
        resource_prefix: q.resource,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(100).min(1000),
    };
    let entries: Vec<AuditView> = s
        .control
        .store
        .audit(&query)
        .await?
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            resource: e.resource,
            before: e.before,
            after: e.after,
        })
        .collect();
    Ok(axum::Json(entries).into_response())
}
