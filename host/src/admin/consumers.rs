//! `/consumers`, `/consumers/{name}`, their API keys (`/keys`: generated here, the plaintext
//! answered once, stored as `sha256:<hex>`) and JWT credentials (`/jwt`). Answers and audit
//! entries never hold a secret: keys appear by id, JWT secrets as `<redacted>`.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Json, Path};
use super::{AdminState, ApiError, Caller, named, to_json};
use crate::config::{ConsumerConfig, GatewayConfig, JwtCredentialConfig};
use crate::control::Change;
use crate::store::sha256_hex;

/// What replaces a secret in answers, exports and audit entries.
pub const REDACTED: &str = "<redacted>";

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, replace, delete))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(delete_key))
        .routes(routes!(list_jwt, add_jwt))
        .routes(routes!(delete_jwt))
}

/// The id of a stored key: the first 12 hex digits of its SHA-256.
pub fn key_id(stored: &str) -> String {
    let hex = stored
        .strip_prefix("sha256:")
        .map_or_else(|| sha256_hex(stored.as_bytes()), str::to_owned);
    hex.chars().take(12).collect()
}

/// A key as stored: `sha256:<hex>` (plaintext given in a document is hashed).
pub fn hashed_key(key: &str) -> String {
    if key.starts_with("sha256:") {
        key.to_owned()
    } else {
        format!("sha256:{}", sha256_hex(key.as_bytes()))
    }
}

/// Hash every plaintext key of `doc` (the store keeps hashes only).
pub fn hash_keys(doc: &mut GatewayConfig) {
    for c in &mut doc.consumers {
        for k in &mut c.keys {
            *k = hashed_key(k);
        }
    }
}

/// A JWT credential as shown: its secret redacted.
pub fn jwt_view(j: &JwtCredentialConfig) -> serde_json::Value {
    let mut j = j.clone();
    if j.secret.is_some() {
        j.secret = Some(REDACTED.into());
    }
    to_json(&j)
}

/// A consumer as shown: keys by id, JWT secrets redacted.
pub fn view(c: &ConsumerConfig) -> serde_json::Value {
    serde_json::json!({
        "name": c.name,
        "keys": c.keys.iter().map(|k| serde_json::json!({ "id": key_id(k) })).collect::<Vec<_>>(),
        "jwt": c.jwt.iter().map(jwt_view).collect::<Vec<_>>(),
    })
}

/// A new consumer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewConsumer {
    /// Unique name.
    name: String,
    /// JWT credentials.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    jwt: Vec<JwtCredentialConfig>,
}

/// A consumer's replaceable parts (keys are managed under `/keys`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConsumerUpdate {
    /// JWT credentials (replace the current ones).
    #[schema(value_type = Vec<Object>)]
    jwt: Vec<JwtCredentialConfig>,
}

/// Every consumer (keys by id, secrets redacted).
#[utoipa::path(get, path = "/consumers", tag = "consumers",
    responses((status = 200, description = "The consumers", body = Vec<serde_json::Value>)))]
async fn list(State(s): State<AdminState>) -> Result<Response, ApiError> {
    named::list::<ConsumerConfig>(&s).await
}

/// Add a consumer (keys are generated under `/consumers/{name}/keys`).
#[utoipa::path(post, path = "/consumers", tag = "consumers", request_body = NewConsumer,
    responses((status = 201, description = "Created", body = serde_json::Value),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "Invalid", body = ErrorBody)))]
async fn create(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewConsumer>,
) -> Result<Response, ApiError> {
    let c = ConsumerConfig {
        name: body.name,
        keys: Vec::new(),
        jwt: body.jwt,
    };
    named::create(&s, &caller, c).await
}

/// One consumer.
#[utoipa::path(get, path = "/consumers/{name}", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses((status = 200, description = "The consumer", body = serde_json::Value),
        (status = 404, description = "No such consumer", body = ErrorBody)))]
async fn get_one(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    named::get::<ConsumerConfig>(&s, &name).await
}

/// Replace a consumer's JWT credentials (its keys stay).
#[utoipa::path(put, path = "/consumers/{name}", tag = "consumers", request_body = ConsumerUpdate,
    params(("name" = String, Path, description = "Consumer name")),
    responses((status = 200, description = "Replaced", body = serde_json::Value),
        (status = 404, description = "No such consumer", body = ErrorBody),
        (status = 422, description = "Invalid", body = ErrorBody)))]
async fn replace(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<ConsumerUpdate>,
) -> Result<Response, ApiError> {
    named::update::<ConsumerConfig>(&s, &caller, &name, |c| {
        c.jwt = body.jwt.clone();
        Ok(())
    })
    .await
}

/// Delete a consumer and its credentials.
#[utoipa::path(delete, path = "/consumers/{name}", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such consumer", body = ErrorBody)))]
async fn delete(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    named::delete::<ConsumerConfig>(&s, &caller, &name).await
}

/// A key's id.
#[derive(Debug, Serialize, ToSchema)]
struct KeyInfo {
    /// First 12 hex digits of the key's SHA-256.
    id: String,
}

/// A key just generated.
#[derive(Debug, Serialize, ToSchema)]
struct NewKey {
    /// The key's id.
    id: String,
    /// The consumer.
    consumer: String,
    /// The plaintext key: shown this once, never stored.
    key: String,
}

/// The consumer's API keys, by id.
#[utoipa::path(get, path = "/consumers/{name}/keys", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses((status = 200, description = "The keys", body = Vec<KeyInfo>),
        (status = 404, description = "No such consumer", body = ErrorBody)))]
async fn list_keys(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let mut doc = s.control.store.load().await?.config;
    let i = named::index_of::<ConsumerConfig>(&mut doc, &name)?;
    let keys: Vec<KeyInfo> = doc.consumers[i]
        .keys
        .iter()
        .map(|k| KeyInfo { id: key_id(k) })
        .collect();
    Ok(axum::Json(keys).into_response())
}

/// Generate an API key for the consumer; the plaintext is in this answer only.
#[utoipa::path(post, path = "/consumers/{name}/keys", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses((status = 201, description = "The new key (plaintext shown once)", body = NewKey),
        (status = 404, description = "No such consumer", body = ErrorBody)))]
async fn create_key(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let key = super::random_secret("fxk_")?;
    let stored = hashed_key(&key);
    let id = key_id(&stored);
    s.control
        .write(&caller.user, |doc| {
            let i = named::index_of::<ConsumerConfig>(doc, &name)?;
            doc.consumers[i].keys.push(stored.clone());
            Ok(Change {
                action: "create".into(),
                resource: format!("consumers/{name}/keys/{id}"),
                before: None,
                after: Some(serde_json::json!({ "id": id })),
            })
        })
        .await?;
    Ok(super::created(NewKey {
        id,
        consumer: name,
        key,
    }))
}

/// Delete one of the consumer's keys.
#[utoipa::path(delete, path = "/consumers/{name}/keys/{id}", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name"), ("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such consumer or key", body = ErrorBody)))]
async fn delete_key(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    s.control
        .write(&caller.user, |doc| {
            let i = named::index_of::<ConsumerConfig>(doc, &name)?;
            let keys = &mut doc.consumers[i].keys;
            let at = keys.iter().position(|k| key_id(k) == id).ok_or_else(|| {
                ApiError::not_found(format!("consumer {name:?} has no key {id:?}"))
            })?;
            keys.remove(at);
            Ok(Change {
                action: "delete".into(),
                resource: format!("consumers/{name}/keys/{id}"),
                before: Some(serde_json::json!({ "id": id })),
                after: None,
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The consumer's JWT credentials (secrets redacted), by index.
#[utoipa::path(get, path = "/consumers/{name}/jwt", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name")),
    responses((status = 200, description = "The credentials", body = Vec<serde_json::Value>),
        (status = 404, description = "No such consumer", body = ErrorBody)))]
async fn list_jwt(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let mut doc = s.control.store.load().await?.config;
    let i = named::index_of::<ConsumerConfig>(&mut doc, &name)?;
    let all: Vec<serde_json::Value> = doc.consumers[i].jwt.iter().map(jwt_view).collect();
    Ok(axum::Json(all).into_response())
}

/// Add a JWT credential to the consumer.
#[utoipa::path(post, path = "/consumers/{name}/jwt", tag = "consumers", request_body = serde_json::Value,
    params(("name" = String, Path, description = "Consumer name")),
    responses((status = 201, description = "Added (secret redacted)", body = serde_json::Value),
        (status = 404, description = "No such consumer", body = ErrorBody),
        (status = 422, description = "Invalid credential", body = ErrorBody)))]
async fn add_jwt(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(cred): Json<JwtCredentialConfig>,
) -> Result<Response, ApiError> {
    let (_, change) = s
        .control
        .write(&caller.user, |doc| {
            let i = named::index_of::<ConsumerConfig>(doc, &name)?;
            let list = &mut doc.consumers[i].jwt;
            list.push(cred.clone());
            Ok(Change {
                action: "create".into(),
                resource: format!("consumers/{name}/jwt/{}", list.len() - 1),
                before: None,
                after: Some(jwt_view(&cred)),
            })
        })
        .await?;
    Ok(super::created(change.after))
}

/// Delete the consumer's JWT credential at `index`.
#[utoipa::path(delete, path = "/consumers/{name}/jwt/{index}", tag = "consumers",
    params(("name" = String, Path, description = "Consumer name"), ("index" = usize, Path, description = "Credential index")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such consumer or credential", body = ErrorBody)))]
async fn delete_jwt(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path((name, index)): Path<(String, usize)>,
) -> Result<Response, ApiError> {
    s.control
        .write(&caller.user, |doc| {
            let i = named::index_of::<ConsumerConfig>(doc, &name)?;
            let list = &mut doc.consumers[i].jwt;
            if index >= list.len() {
                return Err(ApiError::not_found(format!(
                    "consumer {name:?} has no JWT credential {index}"
                )));
            }
            let removed = list.remove(index);
            Ok(Change {
                action: "delete".into(),
                resource: format!("consumers/{name}/jwt/{index}"),
                before: Some(jwt_view(&removed)),
                after: None,
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
