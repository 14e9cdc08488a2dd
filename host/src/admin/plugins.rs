//! `/plugins`: upload a filter component (`POST /plugins?name=&grants=`, the `.wasm` as the
//! body), list plugins, show one's exports and the host services it imports. An upload whose
//! component imports a host service it is not granted is refused.

use axum::Extension;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Path, Query, body_bytes};
use super::{AdminState, ApiError, Caller, check_name, to_json};
use crate::config::PluginConfig;
use crate::control::Change;
use crate::plugin::SERVICES;
use crate::plugin::inspect::{ComponentInfo, describe};
use crate::store::{NewAudit, PluginBlob, sha256_hex};

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list, upload))
        .routes(routes!(get_one, set_grants))
        .layer(DefaultBodyLimit::max(super::MAX_PLUGIN))
}

/// A plugin as listed.
#[derive(Debug, Serialize, ToSchema)]
struct PluginSummary {
    /// Name used in `filters[].plugin`.
    name: String,
    /// `builtin` (embedded in the binary) or `custom` (declared under `plugins`).
    kind: String,
    /// Host services granted.
    grants: Vec<String>,
    /// Where the component is (custom plugins).
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

/// A plugin's interface.
#[derive(Debug, Serialize, ToSchema)]
struct PluginDetail {
    /// Name used in `filters[].plugin`.
    name: String,
    /// `builtin` or `custom`.
    kind: String,
    /// Hex SHA-256 of the component.
    sha256: String,
    /// Host services granted.
    grants: Vec<String>,
    /// Host services the component imports (each must be granted).
    services: Vec<String>,
    /// Every import, by full name.
    imports: Vec<String>,
    /// Every export: name and kind.
    exports: Vec<ExportItem>,
    /// The `ferrox:filter` version the component was built against.
    #[serde(skip_serializing_if = "Option::is_none")]
    filter_version: Option<String>,
}

/// One export of a component.
#[derive(Debug, Serialize, ToSchema)]
struct ExportItem {
    /// Export name.
    name: String,
    /// `func`, `instance`, …
    kind: String,
}

fn detail(
    name: &str,
    kind: &str,
    bytes: &[u8],
    grants: Vec<String>,
    info: ComponentInfo,
) -> PluginDetail {
    PluginDetail {
        name: name.to_owned(),
        kind: kind.to_owned(),
        sha256: sha256_hex(bytes),
        grants,
        services: info.services,
        imports: info.imports,
        exports: info
            .exports
            .into_iter()
            .map(|(name, kind)| ExportItem {
                name,
                kind: kind.to_owned(),
            })
            .collect(),
        filter_version: info.filter_version,
    }
}

/// Built-in and custom plugins.
#[utoipa::path(get, path = "/plugins", tag = "plugins",
    responses((status = 200, description = "The plugins", body = Vec<PluginSummary>)))]
async fn list(State(s): State<AdminState>) -> Result<Response, ApiError> {
    let doc = s.control.store.load().await?.config;
    let mut all: Vec<PluginSummary> = crate::builtin::names()
        .into_iter()
        .map(|n| PluginSummary {
            name: n.to_owned(),
            kind: "builtin".into(),
            grants: crate::builtin::get(n)
                .map(|(_, g)| g.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default(),
            path: None,
        })
        .collect();
    all.extend(doc.plugins.iter().map(|p| PluginSummary {
        name: p.name.clone(),
        kind: "custom".into(),
        grants: p.grants.clone(),
        path: Some(p.path.clone()),
    }));
    Ok(axum::Json(all).into_response())
}

async fn inspect(bytes: Vec<u8>) -> Result<(Vec<u8>, ComponentInfo), ApiError> {
    tokio::task::spawn_blocking(move || describe(&bytes).map(|info| (bytes, info)))
        .await
        .map_err(|e| ApiError::bad_request(format!("inspection failed: {e}")))?
        .map_err(|e| ApiError::invalid("body", format!("not a usable filter component: {e}")))
}

/// One plugin with its exports and the host services it imports.
#[utoipa::path(get, path = "/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, description = "The plugin", body = PluginDetail),
        (status = 404, description = "No such plugin", body = ErrorBody)))]
async fn get_one(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if let Some((bytes, grants)) = crate::builtin::get(&name) {
        let (bytes, info) = inspect(bytes.to_vec()).await?;
        let grants = grants.iter().map(|g| (*g).to_owned()).collect();
        return Ok(axum::Json(detail(&name, "builtin", &bytes, grants, info)).into_response());
    }
    let doc = s.control.store.load().await?.config;
    let p = doc
        .plugins
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {name:?}")))?;
    let bytes = match s.control.store.plugin_bytes(&name).await? {
        Some(blob) => blob.bytes,
        None => tokio::fs::read(&p.path).await.map_err(|e| {
            ApiError::not_found(format!("plugin {name:?}: cannot read {}: {e}", p.path))
        })?,
    };
    let (bytes, info) = inspect(bytes).await?;
    Ok(axum::Json(detail(&name, "custom", &bytes, p.grants.clone(), info)).into_response())
}

/// Upload parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadParams {
    /// Name routes use in `filters[].plugin`.
    name: String,
    /// Host services granted, comma-separated (`log,counters`).
    #[serde(default)]
    grants: Option<String>,
}

/// Upload a filter component (the `.wasm` as the body, up to 32 MiB) under `name` with the
/// host services `grants`; replaces a custom plugin of that name. Refused when the component
/// imports a service it is not granted.
#[utoipa::path(post, path = "/plugins", tag = "plugins", params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component"),
    responses((status = 201, description = "Stored", body = PluginDetail),
        (status = 409, description = "The name is a built-in plugin's", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
        (status = 422, description = "Not a filter component, or imports not granted", body = ErrorBody)))]
async fn upload(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UploadParams>,
    req: Request,
) -> Result<Response, ApiError> {
    check_name("name", &q.name)?;
    if crate::builtin::get(&q.name).is_some() {
        return Err(ApiError::conflict(format!(
            "{:?} is a built-in plugin's name",
            q.name
        )));
    }
    let grants: Vec<String> = q
        .grants
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = grants.iter().find(|g| !SERVICES.contains(&g.as_str())) {
        return Err(ApiError::invalid(
            "grants",
            format!(
                "{bad:?} is not a host service; known: {}",
                SERVICES.join(", ")
            ),
        ));
    }
    let bytes = body_bytes(req, &()).await?.to_vec();
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "the body must be the component (.wasm)",
        ));
    }
    let (bytes, info) = inspect(bytes).await?;
    if !info.unknown_services.is_empty() {
        return Err(ApiError::invalid(
            "body",
            format!(
                "the component imports host services this gateway does not provide: {}",
                info.unknown_services.join(", ")
            ),
        ));
    }
    let missing: Vec<&String> = info
        .services
        .iter()
        .filter(|i| !grants.contains(i))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::invalid(
            "grants",
            format!(
                "the component imports {} but is not granted {}",
                info.services.join(", "),
                missing
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let name = q.name.clone();
    let sha256 = sha256_hex(&bytes);
    let store = &s.control.store;
    let previous = store.plugin_bytes(&name).await?;
    let audit = |action: &str| NewAudit {
        actor: caller.user.clone(),
        action: action.into(),
        resource: format!("plugins/{name}/component"),
        before: None,
        after: Some(serde_json::json!({ "sha256": sha256 })),
    };
    store
        .put_plugin(
            PluginBlob {
                name: name.clone(),
                sha256: sha256.clone(),
                bytes: bytes.clone(),
            },
            audit("upload"),
        )
        .await?;
    let entry = PluginConfig {
        name: name.clone(),
        path: store.plugin_path(&name),
        grants: grants.clone(),
    };
    let written = s
        .control
        .write(&caller.user, |doc| {
            let before = doc.plugins.iter().find(|p| p.name == name).map(to_json);
            doc.plugins.retain(|p| p.name != name);
            doc.plugins.push(entry.clone());
            Ok(Change {
                action: if before.is_some() { "update" } else { "create" }.into(),
                resource: format!("plugins/{name}"),
                before,
                after: Some(
                    serde_json::json!({ "name": name, "grants": grants, "sha256": sha256 }),
                ),
            })
        })
        .await;
    if let Err(e) = written {
        // Put the component that runs back in place.
        if let Some(old) = previous {
            let _ = store.put_plugin(old, audit("restore")).await;
        }
        return Err(e.into());
    }
    Ok(super::created(detail(
        &name, "custom", &bytes, grants, info,
    )))
}

/// New grants of a custom plugin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Grants {
    /// Host services granted (`log`, `counters`, …); the component's imports must stay granted.
    grants: Vec<String>,
}

/// Change the host services a custom plugin is granted (422 when the component imports one no
/// longer granted).
#[utoipa::path(patch, path = "/plugins/{name}", tag = "plugins", request_body = Grants,
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, description = "The plugin's entry", body = serde_json::Value),
        (status = 404, description = "No such custom plugin", body = ErrorBody),
        (status = 422, description = "Unknown service, or an import no longer granted", body = ErrorBody)))]
async fn set_grants(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    super::error::Json(body): super::error::Json<Grants>,
) -> Result<Response, ApiError> {
    if let Some(bad) = body.grants.iter().find(|g| !SERVICES.contains(&g.as_str())) {
        return Err(ApiError::invalid(
            "grants",
            format!(
                "{bad:?} is not a host service; known: {}",
                SERVICES.join(", ")
            ),
        ));
    }
    let (_, change) = s
        .control
        .write(&caller.user, |doc| {
            let p = doc
                .plugins
                .iter_mut()
                .find(|p| p.name == name)
                .ok_or_else(|| ApiError::not_found(format!("no custom plugin named {name:?}")))?;
            let before = to_json(p);
            p.grants = body.grants.clone();
            Ok(Change {
                action: "grant".into(),
                resource: format!("plugins/{name}"),
                before: Some(before),
                after: Some(to_json(p)),
            })
        })
        .await?;
    Ok(axum::Json(change.after).into_response())
}
