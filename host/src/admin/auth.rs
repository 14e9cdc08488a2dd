//! Authentication and authorisation of admin calls: one layer in front of every route but
//! `/health` and `/openapi.json`.
//!
//! A caller presents `Authorization: Bearer <token>`: the bootstrap token (`admin.token` /
//! `FERROX_ADMIN_TOKEN`, role admin, audited as `bootstrap`) or a token of a named admin user
//! (stored as SHA-256 only; revoked or expired tokens are refused). [`POLICY`] then gives the
//! least role each resource × method needs.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AdminState, ApiError};
use crate::store::{Role, sha256_hex};

/// Read (`GET`, `HEAD`) or write (everything else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `GET`, `HEAD`.
    Read,
    /// `POST`, `PUT`, `PATCH`, `DELETE`.
    Write,
}

impl Access {
    /// The access a method needs.
    pub fn of(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Access::Read
        } else {
            Access::Write
        }
    }
}

/// The least role for each resource (first path segment) × access. Admin users are managed by
/// admins only; plugin uploads and whole-document imports need admin; operators change
/// upstreams, routes, filters and consumers; viewers read.
pub const POLICY: &[(&str, Access, Role)] = &[
    ("users", Access::Read, Role::Admin),
    ("users", Access::Write, Role::Admin),
    ("plugins", Access::Read, Role::Viewer),
    ("plugins", Access::Write, Role::Admin),
    ("config", Access::Read, Role::Viewer),
    ("config", Access::Write, Role::Admin),
    ("upstreams", Access::Read, Role::Viewer),
    ("upstreams", Access::Write, Role::Operator),
    ("routes", Access::Read, Role::Viewer),
    ("routes", Access::Write, Role::Operator),
    ("consumers", Access::Read, Role::Viewer),
    ("consumers", Access::Write, Role::Operator),
    ("status", Access::Read, Role::Viewer),
    ("instances", Access::Read, Role::Viewer),
    ("audit", Access::Read, Role::Viewer),
    ("metrics", Access::Read, Role::Viewer),
];

/// The least role `method` on `path` (`/routes/users-api`, or a template) needs. Anything
/// the table does not name needs admin.
pub fn required_role(method: &Method, path: &str) -> Role {
    let resource = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let access = Access::of(method);
    POLICY
        .iter()
        .find(|(r, a, _)| *r == resource && *a == access)
        .map_or(Role::Admin, |(_, _, role)| *role)
}

/// Who is calling (put in the request's extensions by [`require_auth`]).
#[derive(Clone, Debug)]
pub struct Caller {
    /// User name, `bootstrap` for the bootstrap token.
    pub user: String,
    /// Their role.
    pub role: Role,
}

/// The authentication and authorisation layer.
pub async fn require_auth(State(s): State<AdminState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = presented else {
        return unauthorized();
    };
    let caller = if super::constant_time_eq(token.as_bytes(), s.token.as_bytes()) {
        Caller {
            user: "bootstrap".into(),
            role: Role::Admin,
        }
    } else {
        match s
            .control
            .store
            .principal_for(&sha256_hex(token.as_bytes()))
            .await
        {
            Ok(Some(p)) => Caller {
                user: p.user,
                role: p.role,
            },
            Ok(None) => return unauthorized(),
            Err(e) => return ApiError::from(e).into_response(),
        }
    };
    // The policy keys on the first path segment, which is literal in every route.
    let template = req.uri().path().to_owned();
    let needed = required_role(req.method(), &template);
    if caller.role < needed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} {} needs role {} or higher; {} has role {}",
                req.method(),
                template,
                needed.as_str(),
                caller.user,
                caller.role.as_str()
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn unauthorized() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid admin bearer token is required",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_covers_every_resource() {
        assert_eq!(required_role(&Method::GET, "/routes/{name}"), Role::Viewer);
        assert_eq!(
            required_role(&Method::PATCH, "/routes/{name}/filters/{index}"),
            Role::Operator
        );
        assert_eq!(required_role(&Method::POST, "/plugins"), Role::Admin);
        assert_eq!(required_role(&Method::GET, "/users"), Role::Admin);
        assert_eq!(required_role(&Method::GET, "/unknown"), Role::Admin);
        assert_eq!(required_role(&Method::GET, "/instances"), Role::Viewer);
        assert_eq!(required_role(&Method::DELETE, "/instances"), Role::Admin);
    }
}
