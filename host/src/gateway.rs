//! The running gateway's shared state: the current [`Snapshot`] (swapped atomically), the
//! metrics and the services filters use. The datapath only ever reads the snapshot; the control
//! plane replaces it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{ConfigIssue, GatewayConfig};
use crate::metrics::Metrics;
use crate::plugin::host::Services;
use crate::snapshot::Snapshot;
use crate::state::StateStore;

/// Shared state of one gateway instance.
#[derive(Debug)]
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// Every metric of this instance.
    pub metrics: Metrics,
    /// Host services shared by every filter instance.
    pub services: Arc<Services>,
    /// Serialises config applications so two reloads never interleave their builds.
    apply_lock: tokio::sync::Mutex<()>,
    /// Finished requests for the live dashboard.
    pub stats: crate::dashboard::StatsHub,
    /// Request logs to PostgreSQL, set once at start in PostgreSQL mode.
    pub request_log: std::sync::OnceLock<crate::reqlog::RequestLog>,
    /// Span export, set once at start when the config has a `tracing` section.
    pub trace_export: std::sync::OnceLock<crate::tracing_export::TraceExport>,
}

impl Gateway {
    /// Build the first snapshot from a validated config.
    pub async fn new(config: GatewayConfig) -> Result<Arc<Self>, Vec<ConfigIssue>> {
        let metrics = Metrics::new();
        let state = state_store(&config)?;
        let services = Services::with_state(metrics.clone(), state);
        let snapshot = Snapshot::build(config, None, &metrics, &services).await?;
        snapshot.credentials.jwt.prefetch(&services.jwks).await;
        services.credentials.store(snapshot.credentials.clone());
        Ok(Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            services,
            apply_lock: tokio::sync::Mutex::new(()),
            stats: crate::dashboard::StatsHub::new(),
            request_log: std::sync::OnceLock::new(),
            trace_export: std::sync::OnceLock::new(),
        }))
    }

    /// The current snapshot; a request keeps the one it started with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Build a snapshot from `config` and swap it in. On error the current snapshot stays.
    pub async fn apply(&self, config: GatewayConfig) -> Result<(), Vec<ConfigIssue>> {
        let _serialised = self.apply_lock.lock().await;
        let result = self.build(config).await.map(|built| self.swap(built));
        if result.is_err() {
            self.count_failed_reload();
        }
        result
    }

    /// Validate `config` and build its snapshot (every filter's `init` runs) without swapping
    /// it in: the admin API builds before it commits, then calls [`Gateway::swap`].
    pub async fn build(&self, config: GatewayConfig) -> Result<Built, Vec<ConfigIssue>> {
        let issues = crate::config::validate(&config);
        if !issues.is_empty() {
            return Err(issues);
        }
        let previous = self.snapshot();
        // A changed `state` or `state_options` gets a new store (counters start afresh).
        let state_changed = previous.config.state != config.state
            || previous.config.state_options != config.state_options;
        let state = if state_changed {
            Some(state_store(&config)?)
        } else {
            None
        };
        let snapshot =
            Snapshot::build(config, Some(&previous), &self.metrics, &self.services).await?;
        snapshot.credentials.jwt.prefetch(&self.services.jwks).await;
        Ok(Built { snapshot, state })
    }

    /// Swap in a snapshot made by [`Gateway::build`].
    pub fn swap(&self, built: Built) {
        let Built { snapshot, state } = built;
        let credentials = snapshot.credentials.clone();
        self.snapshot.store(Arc::new(snapshot));
        self.services.credentials.store(credentials);
        if let Some(state) = state {
            tracing::info!(state = %state.describe(), "state store replaced");
            self.services.state.store(Arc::new(state));
        }
        self.metrics
            .config_reloads
            .with_label_values(&["success"])
            .inc();
    }

    /// Record a reload that failed before a config could be parsed.
    pub fn count_failed_reload(&self) {
        self.metrics
            .config_reloads
            .with_label_values(&["failure"])
            .inc();
    }
}

/// A snapshot built from a config, ready for [`Gateway::swap`].
#[derive(Debug)]
pub struct Built {
    snapshot: Snapshot,
    /// A new state store when the config changed it.
    state: Option<StateStore>,
}

/// The state store `config` names (Redis connects in the background).
fn state_store(config: &GatewayConfig) -> Result<StateStore, Vec<ConfigIssue>> {
    StateStore::from_config(&config.state, &config.state_options).map_err(|message| {
        vec![ConfigIssue {
            path: "state".into(),
            message,
        }]
    })
}
