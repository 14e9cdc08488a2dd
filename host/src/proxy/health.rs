//! Active health checks: a task per upstream probes each target's `health_check.path` and flips
//! the target's health after `unhealthy` consecutive failures / `healthy` consecutive successes.
//! The task ends by itself when the upstream is dropped (replaced by a reload).

use std::sync::Weak;
use std::sync::atomic::Ordering;

use http::{Request, header};

use super::upstream::{Target, Upstream};
use crate::body::empty;
use crate::config::HealthCheckConfig;
use crate::metrics::Metrics;

/// Start checking `upstream`'s targets.
pub fn spawn(upstream: Weak<Upstream>, cfg: HealthCheckConfig, metrics: Metrics) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(up) = upstream.upgrade() else { return };
            let checks = up.targets.iter().map(|t| check(&up, t, &cfg, &metrics));
            futures_util::future::join_all(checks).await;
        }
    });
}

async fn check(up: &Upstream, target: &Target, cfg: &HealthCheckConfig, metrics: &Metrics) {
    let ok = probe(up, target, cfg).await;
    // One checker task per upstream: nothing else writes the streak.
    let prev = target.streak.load(Ordering::Relaxed);
    let streak = match (ok, prev) {
        (true, s) if s >= 0 => s.saturating_add(1),
        (true, _) => 1,
        (false, s) if s <= 0 => s.saturating_sub(1),
        (false, _) => -1,
    };
    target.streak.store(streak, Ordering::Relaxed);
    let was = target.is_healthy();
    let now = if was {
        streak > -i64::from(cfg.unhealthy)
    } else {
        streak >= i64::from(cfg.healthy)
    };
    if now != was {
        target.set_healthy(now);
        if now {
            tracing::info!(upstream = up.name(), target = %target.label, "target healthy again");
        } else {
            tracing::warn!(upstream = up.name(), target = %target.label, "target marked unhealthy");
        }
    }
    metrics
        .target_healthy
        .with_label_values(&[up.name(), target.label.as_str()])
        .set(i64::from(now));
}

async fn probe(up: &Upstream, target: &Target, cfg: &HealthCheckConfig) -> bool {
    let uri = format!(
        "{}://{}{}",
        target.addr.scheme, target.addr.authority, cfg.path
    );
    let Ok(req) = Request::get(uri)
        .header(header::HOST, target.addr.authority.as_str())
        .header(header::USER_AGENT, "ferrox-health-check")
        .body(empty())
    else {
        return false;
    };
    match tokio::time::timeout(cfg.timeout.0, up.client.request(req)).await {
        Ok(Ok(resp)) => {
            let ok = resp.status().is_success() || resp.status().is_redirection();
            // Drain (small) bodies so the connection goes back to the pool.
            let _ = tokio::time::timeout(
                cfg.timeout.0,
                http_body_util::BodyExt::collect(resp.into_body()),
            )
            .await;
            ok
        }
        _ => false,
    }
}
