//! The control plane of one instance: it ties the [`Store`] to the [`Gateway`].
//!
//! - [`ControlPlane::follow`]: a task that watches [`Store::changes`] and applies every version
//!   newer than the one this instance runs (commits by other instances, external file edits).
//! - [`ControlPlane::write`]: one admin change: read the document, apply the change, validate
//!   and build the snapshot (filters' `init` run), commit with the version read (one retry on a
//!   conflict), then swap the built snapshot in. Nothing is written when the build fails.
//! - [`ControlPlane::adopt_file`]: an external edit of the config file, seen by the watcher.
//!
//! Writes, follows and adoptions of one instance are serialised by one lock, so the version
//! this instance runs only moves forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use crate::config::{ConfigIssue, GatewayConfig, Overrides};
use crate::gateway::Gateway;
use crate::store::{NewAudit, Store, StoreError, Version};

/// Why an admin write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// The change itself is refused (unknown resource, duplicate name, bad request): the
    /// change function's own error.
    Refused(crate::admin::ApiError),
    /// The resulting document is invalid or a filter rejected its config (422).
    Invalid(Vec<ConfigIssue>),
    /// The store refused or failed.
    Store(StoreError),
}

/// The result of a change function: what the audit entry records.
#[derive(Debug)]
pub struct Change {
    /// `create`, `update`, `delete`, …
    pub action: String,
    /// E.g. `routes/users-api`.
    pub resource: String,
    /// Before the change (no secrets).
    pub before: Option<serde_json::Value>,
    /// After the change (no secrets).
    pub after: Option<serde_json::Value>,
}

/// The control plane of one instance.
#[derive(Debug)]
pub struct ControlPlane {
    /// The instance.
    pub gateway: Arc<Gateway>,
    /// Where the document lives.
    pub store: Arc<Store>,
    /// Bootstrap overrides applied on top of every stored document.
    pub overrides: Overrides,
    /// The store version this instance runs.
    applied: AtomicI64,
    lock: tokio::sync::Mutex<()>,
    /// When the instance started.
    pub started: Instant,
    /// This instance as it reports in (`GET /instances`); set once at start.
    pub instance: std::sync::OnceLock<Arc<crate::instances::Local>>,
}

impl ControlPlane {
    /// A control plane whose gateway runs `version` of `store`.
    pub fn new(
        gateway: Arc<Gateway>,
        store: Arc<Store>,
        overrides: Overrides,
        version: Version,
    ) -> Arc<Self> {
        Arc::new(Self {
            gateway,
            store,
            overrides,
            applied: AtomicI64::new(version),
            lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            instance: std::sync::OnceLock::new(),
        })
    }

    /// The store version this instance runs.
    pub fn applied_version(&self) -> Version {
        self.applied.load(Ordering::Acquire)
    }

    fn effective(&self, mut doc: GatewayConfig) -> GatewayConfig {
        self.overrides.apply(&mut doc);
        doc
    }

    /// Follow the store until `stop` fires: apply every newer version.
    pub fn follow(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let mut changes = self.store.changes();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = stop.changed() => return,
                }
                let seen = *changes.borrow_and_update();
                if seen > me.applied_version() {
                    me.catch_up().await;
                }
            }
        })
    }

    /// Load the stored document and apply it when it is newer than what runs.
    pub async fn catch_up(&self) {
        let _serialised = self.lock.lock().await;
        let stored = match self.store.load().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the config from the store; the current config keeps serving");
                return;
            }
        };
        if stored.version <= self.applied_version() {
            return;
        }
        match self.gateway.apply(self.effective(stored.config)).await {
            Ok(()) => {
                self.applied.fetch_max(stored.version, Ordering::AcqRel);
                tracing::info!(
                    version = stored.version,
                    "configuration applied from the store"
                );
            }
            Err(issues) => {
                // `applied_version` stays behind (and `/status` shows it); the next change
                // is tried afresh.
                let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
                tracing::error!(version = stored.version, issues = ?list, "stored configuration rejected; the previous configuration keeps serving");
            }
        }
    }

    /// Apply one admin change made by `actor`. `change` edits the document and describes the
    /// change; it may run twice (once more after a conflict). Returns the new version and the
    /// change.
    pub async fn write<F>(
        &self,
        actor: &str,
        mut change: F,
    ) -> Result<(Version, Change), WriteError>
    where
        F: FnMut(&mut GatewayConfig) -> Result<Change, crate::admin::ApiError>,
    {
        let _serialised = self.lock.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.store.load().await.map_err(WriteError::Store)?;
            let mut doc = stored.config.clone();
            let described = change(&mut doc).map_err(WriteError::Refused)?;
            let built = self
                .gateway
                .build(self.effective(doc.clone()))
                .await
                .map_err(WriteError::Invalid)?;
            let audit = NewAudit {
                actor: actor.to_owned(),
                action: described.action.clone(),
                resource: described.resource.clone(),
                before: described.before.clone(),
                after: described.after.clone(),
            };
            match self.store.commit(stored.version, &doc, audit).await {
                Ok(version) => {
                    self.gateway.swap(built);
                    self.applied.fetch_max(version, Ordering::AcqRel);
                    return Ok((version, described));
                }
                Err(StoreError::Conflict { .. }) if attempt < 2 => continue,
                Err(e) => return Err(WriteError::Store(e)),
            }
        }
    }

    /// Validate and build `doc` as a write would, without committing or swapping.
    pub async fn check(&self, doc: &GatewayConfig) -> Result<(), Vec<ConfigIssue>> {
        self.gateway
            .build(self.effective(doc.clone()))
            .await
            .map(drop)
    }

    /// An external edit of the config file (`bytes`, parsed as `doc`): apply it and, when it
    /// applies, make it the stored document at a new version. An invalid edit is reported and
    /// the current config keeps serving.
    pub async fn adopt_file(
        &self,
        bytes: &[u8],
        doc: GatewayConfig,
    ) -> Result<(), Vec<ConfigIssue>> {
        let _serialised = self.lock.lock().await;
        let Some(file) = self.store.as_file() else {
            return self.gateway.apply(self.effective(doc)).await;
        };
        if file.is_known(bytes) {
            return Ok(());
        }
        self.gateway.apply(self.effective(doc.clone())).await?;
        let version = file.adopt_external(bytes, doc).await;
        self.applied.fetch_max(version, Ordering::AcqRel);
        Ok(())
    }
}
