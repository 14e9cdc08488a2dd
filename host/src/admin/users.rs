//! `/users` (named admin users with a role) and `/users/{name}/tokens` (their tokens: the
//! plaintext is answered once at creation and stored as SHA-256 only; optional expiry;
//! revocable). Admins only.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Json, JsonOrEmpty, Path};
use super::{AdminState, ApiError, Caller, check_name};
use crate::store::{NewAudit, Role, parse_rfc3339, sha256_hex};

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(delete))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

fn audit(
    caller: &Caller,
    action: &str,
    resource: String,
    after: Option<serde_json::Value>,
) -> NewAudit {
    NewAudit {
        actor: caller.user.clone(),
        action: action.into(),
        resource,
        before: None,
        after,
    }
}

/// An admin user.
#[derive(Debug, Serialize, ToSchema)]
struct UserView {
    /// Unique name.
    name: String,
    /// `admin`, `operator` or `viewer`.
    #[schema(value_type = String)]
    role: Role,
    /// When created (RFC 3339).
    created_at: String,
}

impl From<crate::store::AdminUser> for UserView {
    fn from(u: crate::store::AdminUser) -> Self {
        Self {
            name: u.name,
            role: u.role,
            created_at: u.created_at,
        }
    }
}

/// A new admin user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// Unique name (not `bootstrap`).
    name: String,
    /// `admin`, `operator` or `viewer`.
    #[schema(value_type = String)]
    role: Role,
}

/// Every admin user.
#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, description = "The users", body = Vec<UserView>),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
async fn list(State(s): State<AdminState>) -> Result<Response, ApiError> {
    let users: Vec<UserView> = s
        .control
        .store
        .list_users()
        .await?
        .into_iter()
        .map(UserView::from)
        .collect();
    Ok(axum::Json(users).into_response())
}

/// Create an admin user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created", body = UserView),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "Invalid", body = ErrorBody)))]
async fn create(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewUser>,
) -> Result<Response, ApiError> {
    check_name("name", &body.name)?;
    if body.name == "bootstrap" || body.name == "file" {
        return Err(ApiError::conflict(format!("{:?} is reserved", body.name)));
    }
    let after = serde_json::json!({ "name": body.name, "role": body.role });
    let user = s
        .control
        .store
        .create_user(
            &body.name,
            body.role,
            audit(
                &caller,
                "create",
                format!("users/{}", body.name),
                Some(after),
            ),
        )
        .await?;
    Ok(super::created(UserView::from(user)))
}

/// Delete an admin user and their tokens.
#[utoipa::path(delete, path = "/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = ErrorBody)))]
async fn delete(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    s.control
        .store
        .delete_user(
            &name,
            audit(&caller, "delete", format!("users/{name}"), None),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
struct TokenView {
    /// Id.
    id: i64,
    /// Owner.
    user: String,
    /// When created (RFC 3339).
    created_at: String,
    /// When it stops working (RFC 3339).
    expires_at: Option<String>,
    /// Whether it was revoked.
    revoked: bool,
}

impl From<crate::store::TokenInfo> for TokenView {
    fn from(t: crate::store::TokenInfo) -> Self {
        Self {
            id: t.id,
            user: t.user,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked: t.revoked,
        }
    }
}

/// A token just created.
#[derive(Debug, Serialize, ToSchema)]
struct NewTokenView {
    #[serde(flatten)]
    info: TokenView,
    /// The plaintext token: shown this once, stored as SHA-256 only.
    token: String,
}

/// Options of a new token.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// When the token stops working (RFC 3339, e.g. `2030-01-01T00:00:00Z`).
    #[serde(default)]
    expires_at: Option<String>,
    /// Lifetime from now instead (`30d`, `12h`).
    #[serde(default)]
    expires_in: Option<String>,
}

/// The user's tokens (no secrets).
#[utoipa::path(get, path = "/users/{name}/tokens", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The tokens", body = Vec<TokenView>),
        (status = 404, description = "No such user", body = ErrorBody)))]
async fn list_tokens(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let tokens: Vec<TokenView> = s
        .control
        .store
        .list_tokens(&name)
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(axum::Json(tokens).into_response())
}

/// Create a token for the user; the plaintext is in this answer only.
#[utoipa::path(post, path = "/users/{name}/tokens", tag = "users", request_body = NewToken,
    params(("name" = String, Path, description = "User name")),
    responses((status = 201, description = "Created (plaintext shown once)", body = NewTokenView),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Bad expiry", body = ErrorBody)))]
async fn create_token(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<NewToken>,
) -> Result<Response, ApiError> {
    let expires_at = match (&body.expires_at, &body.expires_in) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "expires_in",
                "give expires_at or expires_in, not both",
            ));
        }
        (Some(at), None) => {
            let t = parse_rfc3339(at).ok_or_else(|| {
                ApiError::invalid("expires_at", format!("{at:?} is not an RFC 3339 instant"))
            })?;
            Some(humantime::format_rfc3339_seconds(t).to_string())
        }
        (None, Some(d)) => {
            let d = humantime::parse_duration(d).map_err(|e| {
                ApiError::invalid("expires_in", format!("{d:?} is not a duration: {e}"))
            })?;
            let t = std::time::SystemTime::now()
                .checked_add(d)
                .filter(|_| d.as_secs() <= 100 * 365 * 86_400)
                .ok_or_else(|| ApiError::invalid("expires_in", "at most 100 years"))?;
            Some(humantime::format_rfc3339_seconds(t).to_string())
        }
        (None, None) => None,
    };
    let token = super::random_secret("fxa_")?;
    let info = s
        .control
        .store
        .add_token(
            &name,
            &sha256_hex(token.as_bytes()),
            expires_at.clone(),
            audit(
                &caller,
                "create",
                format!("users/{name}/tokens"),
                Some(serde_json::json!({ "expires_at": expires_at })),
            ),
        )
        .await?;
    Ok(super::created(NewTokenView {
        info: info.into(),
        token,
    }))
}

/// Revoke one of the user's tokens.
#[utoipa::path(delete, path = "/users/{name}/tokens/{id}", tag = "users",
    params(("name" = String, Path, description = "User name"), ("id" = i64, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No such user or token", body = ErrorBody)))]
async fn revoke_token(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    s.control
        .store
        .revoke_token(
            &name,
            id,
            audit(&caller, "revoke", format!("users/{name}/tokens/{id}"), None),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
