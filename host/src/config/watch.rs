//! Live reload of the config file: polled for changes (mtime, size, content), every valid
//! change applied atomically, every invalid one logged with its issues while the old config
//! keeps serving. Polling works the same on every filesystem (bind mounts, ConfigMaps that
//! swap symlinks, editors that replace files).
//!
//! The file is also the document of the file store: content the store wrote itself (an admin
//! API commit) is recognised by its hash and not treated as an external edit; an external edit
//! that applies becomes the stored document at a new version.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::control::ControlPlane;

/// Watch `path` until `stop` fires.
pub fn spawn(
    control: Arc<ControlPlane>,
    path: PathBuf,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // The baseline is read now, not when the task first runs: a change written right after
    // the instance started must not become the baseline and be missed.
    let mut last = std::fs::read(&path).ok();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let current = match tokio::fs::read(&path).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    if last.is_some() {
                        tracing::warn!(path = %path.display(), error = %e, "config file unreadable; keeping the current config");
                        last = None;
                    }
                    continue;
                }
            };
            if last.as_deref() == Some(current.as_slice()) {
                continue;
            }
            last = Some(current.clone());
            if control
                .store
                .as_file()
                .is_some_and(|f| f.is_known(&current))
            {
                continue;
            }
            let text = String::from_utf8_lossy(&current);
            // An empty file is far likelier a write caught half-way (truncate, then write) than
            // a wish to drop every route: never applied live (at start it means defaults).
            let parsed = if text.trim().is_empty() {
                Err(vec![super::ConfigIssue {
                    path: String::new(),
                    message: "the config file is empty".into(),
                }])
            } else {
                super::parse_yaml(&text).map_err(|e| e.issues())
            };
            let result = match parsed {
                Ok(cfg) => control.adopt_file(&current, cfg).await,
                Err(issues) => {
                    control.gateway.count_failed_reload();
                    Err(issues)
                }
            };
            match result {
                Ok(()) => tracing::info!(path = %path.display(), "configuration reloaded"),
                Err(issues) => {
                    let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
                    tracing::error!(
                        path = %path.display(),
                        issues = ?list,
                        "configuration change rejected; the previous configuration keeps serving"
                    );
                }
            }
        }
    })
}
