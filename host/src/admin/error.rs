//! Admin API errors (`{error, message, status, path?}`) and extractors that answer bad input
//! with them instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::config::ConfigIssue;
use crate::control::WriteError;
use crate::store::StoreError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind: `not-found`, `conflict`, `invalid`, `bad-request`,
    /// `unauthorized`, `forbidden`, `unavailable`, `too-large`.
    pub error: String,
    /// What went wrong, for people (field path first when there is one).
    pub message: String,
    /// The HTTP status.
    pub status: u16,
    /// The field path of the first issue (`routes[1].filters[0].config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Every issue of an invalid config, with its path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<IssueBody>,
}

/// One config issue.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueBody {
    /// Field path (`upstreams[0].targets`).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// An admin API error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    path: Option<String>,
    issues: Vec<ConfigIssue>,
}

impl ApiError {
    /// An error with `status`, `kind` and `message`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            path: None,
            issues: Vec::new(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// 422 naming the field `path`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::issues(vec![ConfigIssue {
            path: path.into(),
            message: message.into(),
        }])
    }

    /// 422 with every issue; the message and path are the first one's.
    pub fn issues(issues: Vec<ConfigIssue>) -> Self {
        let message = match issues.as_slice() {
            [] => "the configuration is invalid".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        let path = issues
            .first()
            .map(|i| i.path.clone())
            .filter(|p| !p.is_empty());
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid",
            message,
            path,
            issues,
        }
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict { .. } => {
                Self::conflict(format!("{e}; the change was not applied, retry it"))
            }
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            StoreError::NotFound(_) => Self::not_found(e.to_string()),
            StoreError::Invalid(m) if m.contains("already exists") => Self::conflict(m.clone()),
            StoreError::Invalid(m) => Self::invalid("", m.clone()),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(e) => e,
            WriteError::Invalid(issues) => Self::issues(issues),
            WriteError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.kind.to_owned(),
            message: self.message,
            status: self.status.as_u16(),
            path: self.path,
            issues: self
                .issues
                .into_iter()
                .map(|i| IssueBody {
                    path: i.path,
                    message: i.message,
                })
                .collect(),
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"ferrox-admin\""),
            );
        }
        r
    }
}

/// A JSON body; a malformed one is a 400, a wrongly shaped one a 422 naming the field, an
/// oversized one a 413.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(Json(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    Err(ApiError::bad_request(format!(
                        "the body is not JSON: {inner}"
                    )))
                } else {
                    let path = if path == "." { String::new() } else { path };
                    Err(ApiError::invalid(path, inner.to_string()))
                }
            }
        }
    }
}

/// The raw body, with the size limit answered as a JSON 413.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too-large"
        } else {
            "bad-request"
        };
        ApiError::new(status, kind, r.body_text())
    })
}

/// Query parameters; bad ones are a 400 naming the parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

/// Path parameters; bad ones (a non-numeric index) are a 400.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

/// A JSON body that may be absent (an empty body is `T::default()`).
#[derive(Debug)]
pub struct JsonOrEmpty<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
            || (req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none()
                && req
                    .headers()
                    .get(axum::http::header::TRANSFER_ENCODING)
                    .is_none());
        if empty {
            return Ok(JsonOrEmpty(T::default()));
        }
        Json::<T>::from_request(req, state)
            .await
            .map(|j| JsonOrEmpty(j.0))
    }
}
