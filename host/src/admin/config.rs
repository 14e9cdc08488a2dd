//! `/config`: export the whole document (YAML or JSON, secrets redacted) and import one
//! (`PUT`, YAML or JSON; `?dry_run=true` answers the structured diff and writes nothing).
//!
//! Import keeps what an export cannot carry: the current `admin.token` when the document has
//! none, and a JWT secret given as `<redacted>` when the current consumer has the same
//! credential. Plaintext API keys are stored hashed.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::consumers::{REDACTED, hash_keys, jwt_view};
use super::error::{ErrorBody, Query, body_bytes};
use super::named::Named;
use super::{AdminState, ApiError, Caller, to_json};
use crate::config::{ConfigIssue, GatewayConfig};
use crate::control::Change;

pub(super) fn router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(export, import))
        .layer(axum::extract::DefaultBodyLimit::max(super::MAX_DOCUMENT))
}

/// Export format.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ExportParams {
    /// `json` (default) or `yaml`.
    #[serde(default)]
    format: Option<String>,
}

/// The document with its secrets removed: no `admin.token`, JWT secrets and span export
/// headers `<redacted>`, API keys as `sha256:<hex>`.
pub fn redacted(doc: &GatewayConfig) -> GatewayConfig {
    let mut doc = doc.clone();
    doc.admin.token = None;
    hash_keys(&mut doc);
    if let Some(t) = &mut doc.tracing {
        for v in t.headers.values_mut() {
            *v = REDACTED.into();
        }
    }
    for c in &mut doc.consumers {
        for j in &mut c.jwt {
            if j.secret.is_some() {
                j.secret = Some(REDACTED.into());
            }
        }
    }
    doc
}

/// Export the config document.
#[utoipa::path(get, path = "/config", tag = "config", params(ExportParams),
    responses((status = 200, description = "The document (secrets redacted); YAML with `format=yaml`", body = serde_json::Value),
        (status = 400, description = "Unknown format", body = ErrorBody)))]
async fn export(
    State(s): State<AdminState>,
    Query(q): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let doc = redacted(&s.control.store.load().await?.config);
    match q.format.as_deref() {
        None | Some("json") => Ok(axum::Json(to_json(&doc)).into_response()),
        Some("yaml") => {
            let text = serde_yaml::to_string(&doc)
                .map_err(|e| ApiError::bad_request(format!("cannot encode YAML: {e}")))?;
            Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response())
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "format {other:?} is not json or yaml"
        ))),
    }
}

/// Import options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportParams {
    /// Validate and answer the diff without writing anything.
    #[serde(default)]
    dry_run: Option<bool>,
}

/// One difference between the current document and an imported one.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DiffEntry {
    /// `add`, `remove` or `change`.
    pub op: String,
    /// `routes/users-api`, `upstreams/users`, or a top-level field (`listen`, `server`).
    pub path: String,
    /// Before (secrets redacted).
    pub before: Option<serde_json::Value>,
    /// After (secrets redacted).
    pub after: Option<serde_json::Value>,
}

/// The answer of an import.
#[derive(Debug, Serialize, ToSchema)]
struct ImportResult {
    /// Whether this was a dry run (nothing written).
    dry_run: bool,
    /// Whether the document differs from the current one.
    changed: bool,
    /// The store version after the import (the current one for a dry run).
    version: i64,
    /// Every difference.
    changes: Vec<DiffEntry>,
}

/// The differences between two documents, by named entry and top-level field.
pub fn diff(before: &GatewayConfig, after: &GatewayConfig) -> Vec<DiffEntry> {
    let (b, a) = (redacted(before), redacted(after));
    let mut out = Vec::new();
    named_diff::<crate::config::UpstreamConfig>(&b, &a, &mut out);
    named_diff::<crate::config::RouteConfig>(&b, &a, &mut out);
    named_diff::<crate::config::ConsumerConfig>(&b, &a, &mut out);
    let plugins = |d: &GatewayConfig| -> BTreeMap<String, serde_json::Value> {
        d.plugins
            .iter()
            .map(|p| (p.name.clone(), to_json(p)))
            .collect()
    };
    map_diff("plugins", plugins(&b), plugins(&a), &mut out);
    let fields = |d: &GatewayConfig| -> BTreeMap<String, serde_json::Value> {
        match to_json(d) {
            serde_json::Value::Object(m) => m
                .into_iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "upstreams" | "routes" | "consumers" | "plugins")
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    };
    for (k, (bv, av)) in zip_maps(fields(&b), fields(&a)) {
        if bv != av {
            out.push(entry(&k, bv, av));
        }
    }
    out
}

fn entry(
    path: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> DiffEntry {
    let op = match (&before, &after) {
        (None, _) => "add",
        (_, None) => "remove",
        _ => "change",
    };
    DiffEntry {
        op: op.into(),
        path: path.to_owned(),
        before,
        after,
    }
}

type Pair = (Option<serde_json::Value>, Option<serde_json::Value>);

fn zip_maps(
    b: BTreeMap<String, serde_json::Value>,
    a: BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, Pair> {
    let mut all: BTreeMap<String, Pair> = BTreeMap::new();
    for (k, v) in b {
        all.entry(k).or_default().0 = Some(v);
    }
    for (k, v) in a {
        all.entry(k).or_default().1 = Some(v);
    }
    all
}

fn map_diff(
    collection: &str,
    b: BTreeMap<String, serde_json::Value>,
    a: BTreeMap<String, serde_json::Value>,
    out: &mut Vec<DiffEntry>,
) {
    for (name, (bv, av)) in zip_maps(b, a) {
        if bv != av {
            out.push(entry(&format!("{collection}/{name}"), bv, av));
        }
    }
}

fn named_diff<T: Named>(b: &GatewayConfig, a: &GatewayConfig, out: &mut Vec<DiffEntry>) {
    let map = |d: &GatewayConfig| -> BTreeMap<String, serde_json::Value> {
        let mut d = d.clone();
        T::all(&mut d)
            .iter()
            .map(|e| (e.name().to_owned(), e.view()))
            .collect()
    };
    map_diff(T::COLLECTION, map(b), map(a), out);
}

/// Make an imported document storable against the current one: keep the admin token, restore
/// redacted JWT secrets and span export headers, hash plaintext keys.
pub fn prepare(mut doc: GatewayConfig, current: &GatewayConfig) -> Result<GatewayConfig, ApiError> {
    if doc.admin.token.is_none() {
        doc.admin.token.clone_from(&current.admin.token);
    }
    let mut issues = Vec::new();
    for (i, c) in doc.consumers.iter_mut().enumerate() {
        let old = current.consumers.iter().find(|o| o.name == c.name);
        for (j, cred) in c.jwt.iter_mut().enumerate() {
            if cred.secret.as_deref() != Some(REDACTED) {
                continue;
            }
            let same = old.and_then(|o| {
                o.jwt.iter().find(|oc| {
                    oc.issuer == cred.issuer
                        && oc.key_id == cred.key_id
                        && jwt_view(oc) == jwt_view(cred)
                })
            });
            match same.and_then(|oc| oc.secret.clone()) {
                Some(secret) => cred.secret = Some(secret),
                None => issues.push(ConfigIssue {
                    path: format!("consumers[{i}].jwt[{j}].secret"),
                    message: format!(
                        "{REDACTED} stands for the stored secret, but consumer {:?} has no such credential; give the secret",
                        c.name
                    ),
                }),
            }
        }
    }
    if let Some(t) = &mut doc.tracing {
        let old = current.tracing.as_ref().map(|o| &o.headers);
        for (name, value) in t.headers.iter_mut().filter(|(_, v)| *v == REDACTED) {
            match old.and_then(|o| o.get(name)) {
                Some(stored) => value.clone_from(stored),
                None => issues.push(ConfigIssue {
                    path: format!("tracing.headers.{name}"),
                    message: format!(
                        "{REDACTED} stands for the stored value, but there is none; give the value"
                    ),
                }),
            }
        }
    }
    if !issues.is_empty() {
        return Err(ApiError::issues(issues));
    }
    hash_keys(&mut doc);
    Ok(doc)
}

/// Import a whole document (YAML or JSON body). With `dry_run=true` nothing is written and the
/// answer is the diff; an invalid document is a 422 either way.
#[utoipa::path(put, path = "/config", tag = "config", params(ImportParams),
    request_body(content = serde_json::Value, description = "The config document, JSON or YAML"),
    responses((status = 200, description = "Imported (or the dry run's diff)", body = ImportResult),
        (status = 409, description = "The document changed meanwhile", body = ErrorBody),
        (status = 422, description = "Invalid document", body = ErrorBody)))]
async fn import(
    State(s): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ImportParams>,
    req: Request,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(req, &()).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the document is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid("", "the document is empty"));
    }
    let imported = crate::config::parse_yaml(text).map_err(|e| ApiError::issues(e.issues()))?;
    if q.dry_run.unwrap_or(false) {
        let stored = s.control.store.load().await?;
        let doc = prepare(imported, &stored.config)?;
        s.control.check(&doc).await.map_err(ApiError::issues)?;
        let changes = diff(&stored.config, &doc);
        return Ok(axum::Json(ImportResult {
            dry_run: true,
            changed: !changes.is_empty(),
            version: stored.version,
            changes,
        })
        .into_response());
    }
    let (version, change) = s
        .control
        .write(&caller.user, |doc| {
            let next = prepare(imported.clone(), doc)?;
            let changes = diff(doc, &next);
            *doc = next;
            Ok(Change {
                action: "import".into(),
                resource: "config".into(),
                before: None,
                after: Some(to_json(&changes)),
            })
        })
        .await?;
    let changes: Vec<DiffEntry> = change
        .after
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    Ok(axum::Json(ImportResult {
        dry_run: false,
        changed: !changes.is_empty(),
        version,
        changes,
    })
    .into_response())
}
