//! Create, read, replace and delete of the document's named collections (upstreams, routes,
//! consumers), shared by their resource modules.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AdminState, ApiError, Caller, check_name, to_json};
use crate::config::{ConsumerConfig, GatewayConfig, RouteConfig, UpstreamConfig};
use crate::control::Change;

/// A named entry of a collection of the document.
pub trait Named: Clone + Serialize + Send + Sync + 'static {
    /// The collection's name in paths (`routes`).
    const COLLECTION: &'static str;
    /// What one entry is called in messages (`route`).
    const KIND: &'static str;
    /// The entry's name.
    fn name(&self) -> &str;
    /// The collection in a document.
    fn all(doc: &mut GatewayConfig) -> &mut Vec<Self>;
    /// How the entry is shown (secrets removed).
    fn view(&self) -> serde_json::Value {
        to_json(self)
    }
}

impl Named for UpstreamConfig {
    const COLLECTION: &'static str = "upstreams";
    const KIND: &'static str = "upstream";
    fn name(&self) -> &str {
        &self.name
    }
    fn all(doc: &mut GatewayConfig) -> &mut Vec<Self> {
        &mut doc.upstreams
    }
}

impl Named for RouteConfig {
    const COLLECTION: &'static str = "routes";
    const KIND: &'static str = "route";
    fn name(&self) -> &str {
        &self.name
    }
    fn all(doc: &mut GatewayConfig) -> &mut Vec<Self> {
        &mut doc.routes
    }
}

impl Named for ConsumerConfig {
    const COLLECTION: &'static str = "consumers";
    const KIND: &'static str = "consumer";
    fn name(&self) -> &str {
        &self.name
    }
    fn all(doc: &mut GatewayConfig) -> &mut Vec<Self> {
        &mut doc.consumers
    }
    fn view(&self) -> serde_json::Value {
        super::consumers::view(self)
    }
}

/// Every entry, as shown.
pub async fn list<T: Named>(s: &AdminState) -> Result<Response, ApiError> {
    let mut doc = s.control.store.load().await?.config;
    let all: Vec<serde_json::Value> = T::all(&mut doc).iter().map(Named::view).collect();
    Ok(axum::Json(all).into_response())
}

/// One entry, as shown.
pub async fn get<T: Named>(s: &AdminState, name: &str) -> Result<Response, ApiError> {
    let mut doc = s.control.store.load().await?.config;
    let found = T::all(&mut doc)
        .iter()
        .find(|e| e.name() == name)
        .map(Named::view)
        .ok_or_else(|| not_found::<T>(name))?;
    Ok(axum::Json(found).into_response())
}

/// 404 for entry `name`.
pub fn not_found<T: Named>(name: &str) -> ApiError {
    ApiError::not_found(format!("no {} named {name:?}", T::KIND))
}

/// The index of entry `name` in `doc`.
pub fn index_of<T: Named>(doc: &mut GatewayConfig, name: &str) -> Result<usize, ApiError> {
    T::all(doc)
        .iter()
        .position(|e| e.name() == name)
        .ok_or_else(|| not_found::<T>(name))
}

/// Add `entry` (201); a duplicate name is a 409.
pub async fn create<T: Named>(
    s: &AdminState,
    caller: &Caller,
    entry: T,
) -> Result<Response, ApiError> {
    check_name("name", entry.name())?;
    let name = entry.name().to_owned();
    let (_, change) = s
        .control
        .write(&caller.user, |doc| {
            let all = T::all(doc);
            if all.iter().any(|e| e.name() == name) {
                return Err(ApiError::conflict(format!(
                    "a {} named {name:?} already exists",
                    T::KIND
                )));
            }
            all.push(entry.clone());
            Ok(Change {
                action: "create".into(),
                resource: format!("{}/{name}", T::COLLECTION),
                before: None,
                after: Some(entry.view()),
            })
        })
        .await?;
    Ok(super::created(change.after))
}

/// Replace entry `name` with `entry` (whose name must be `name`).
pub async fn replace<T: Named>(
    s: &AdminState,
    caller: &Caller,
    name: &str,
    entry: T,
) -> Result<Response, ApiError> {
    if entry.name() != name {
        return Err(ApiError::invalid(
            "name",
            format!(
                "the body names {:?} but the path names {name:?}",
                entry.name()
            ),
        ));
    }
    update::<T>(s, caller, name, |e| {
        *e = entry.clone();
        Ok(())
    })
    .await
}

/// Change entry `name` in place with `edit`; answers the entry after the change.
pub async fn update<T: Named>(
    s: &AdminState,
    caller: &Caller,
    name: &str,
    mut edit: impl FnMut(&mut T) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let (_, change) = s
        .control
        .write(&caller.user, |doc| {
            let i = index_of::<T>(doc, name)?;
            let entry = &mut T::all(doc)[i];
            let before = entry.view();
            edit(entry)?;
            Ok(Change {
                action: "update".into(),
                resource: format!("{}/{name}", T::COLLECTION),
                before: Some(before),
                after: Some(entry.view()),
            })
        })
        .await?;
    Ok(axum::Json(change.after).into_response())
}

/// Delete entry `name` (204).
pub async fn delete<T: Named>(
    s: &AdminState,
    caller: &Caller,
    name: &str,
) -> Result<Response, ApiError> {
    s.control
        .write(&caller.user, |doc| {
            let i = index_of::<T>(doc, name)?;
            let removed = T::all(doc).remove(i);
            Ok(Change {
                action: "delete".into(),
                resource: format!("{}/{name}", T::COLLECTION),
                before: Some(removed.view()),
                after: None,
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
