//! `/instances`: the instances of the cluster that report in (with PostgreSQL), or this one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminState, ApiError};
use crate::instances::Listing;

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new().routes(routes!(instances))
}

/// Every instance that reports in, with its status (`up`, `down` after 3 silent heartbeat
/// intervals, `stopped` after a graceful shutdown), version, the config version it runs against
/// the store's (`lagging`), uptime and counters. The answering instance has `self: true` and is
/// listed first. With a memory or file store, only this instance.
#[utoipa::path(get, path = "/instances", tag = "status",
    responses((status = 200, description = "The instances", body = Listing)))]
async fn instances(State(s): State<AdminState>) -> Result<Response, ApiError> {
    let Some(local) = s.control.instance.get() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the instance is still starting",
        ));
    };
    let listing = crate::instances::list(&s.control, local).await;
    Ok(axum::Json(listing).into_response())
}
