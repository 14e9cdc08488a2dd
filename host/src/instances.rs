//! The instances of a cluster that report in: each instance samples its own counters every
//! `admin.heartbeat_interval` and, with a PostgreSQL store, upserts its row in
//! `gateway_instances` (`migrations/0002_instances.sql`). `GET /instances` and the dashboard's
//! Instances panel read them back.
//!
//! - **Identity.** A random id (UUID v4 text) per process start, hostname, pid, Ferrox version,
//!   the bound proxy and admin addresses, and its heartbeat interval.
//! - **Heartbeat.** One task per instance: sample the counters (`ferrox_requests_total`, its
//!   5xx part, `ferrox_requests_in_flight`; requests per second over the last interval), upsert
//!   the row with `last_seen = now()` on PostgreSQL's clock, and delete rows not seen for
//!   [`RETENTION`]. On a graceful stop the row gets `stopped_at`. A failed heartbeat is counted
//!   (`ferrox_instance_heartbeat_failures_total`) and logged at most once a minute; nothing on
//!   the datapath waits on it.
//! - **Status.** [`status_at`]: `stopped` once `stopped_at` is set, `down` when `last_seen` is
//!   older than [`DOWN_AFTER`] × the row's own interval (compared with PostgreSQL's `now()`,
//!   one clock for every reader), else `up`. The answering instance is always `up`.
//! - With a memory or file store there is one instance, this one; nothing is written.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use serde::Serialize;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control::ControlPlane;
use crate::metrics::Metrics;
use crate::store::{Store, Version};

/// An instance not seen for this many of its heartbeat intervals is shown as down.
pub const DOWN_AFTER: u32 = 3;
/// Rows not seen for this long (down or stopped) are deleted.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// A failed heartbeat is logged at most this often (the metric counts every one).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Longest a heartbeat (or the stop mark) may take before it counts as failed.
const MAX_HEARTBEAT: Duration = Duration::from_secs(5);

/// What an instance reports about itself, fixed at start.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Random per process start (UUID v4 text).
    pub id: String,
    /// The machine's host name.
    pub hostname: String,
    /// The process id.
    pub pid: u32,
    /// The Ferrox version.
    pub version: &'static str,
    /// Where the proxy listens.
    pub proxy_addr: String,
    /// Where the admin API listens.
    pub admin_addr: String,
    /// When the instance started (its own clock).
    pub started_at: SystemTime,
    /// How often it reports in.
    pub heartbeat_interval: Duration,
}

/// Live counters of an instance as of its last sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Requests answered since start.
    pub requests_total: u64,
    /// Requests per second over the last interval.
    pub requests_per_second: f64,
    /// 5xx answers since start.
    pub responses_5xx: u64,
    /// Requests being served.
    pub in_flight: i64,
}

#[derive(Debug, Default)]
struct Sampled {
    counters: Counters,
    /// When `counters.requests_total` was read.
    at: Option<Instant>,
    /// The last heartbeat PostgreSQL accepted (this instance's clock).
    last_seen: Option<SystemTime>,
}

/// This instance: who it is and what it last sampled.
#[derive(Debug)]
pub struct Local {
    /// Fixed at start.
    pub identity: Identity,
    sampled: Mutex<Sampled>,
}

impl Local {
    /// An instance listening on `proxy` and `admin`, reporting in every `interval`.
    pub fn new(proxy: SocketAddr, admin: SocketAddr, interval: Duration) -> Self {
        Self {
            identity: Identity {
                id: new_id(),
                hostname: hostname(),
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION"),
                proxy_addr: proxy.to_string(),
                admin_addr: admin.to_string(),
                started_at: SystemTime::now(),
                heartbeat_interval: interval,
            },
            sampled: Mutex::default(),
        }
    }

    /// The counters as of the last sample.
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// The last heartbeat PostgreSQL accepted.
    pub fn last_seen(&self) -> Option<SystemTime> {
        self.lock().last_seen
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sampled> {
        self.sampled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read the counters from `metrics`; requests per second over the time since the last
    /// sample.
    pub fn sample(&self, metrics: &Metrics) -> Counters {
        let (total, errors) = request_totals(metrics);
        let now = Instant::now();
        let mut s = self.lock();
        let rps = match s.at {
            Some(at) => per_second(s.counters.requests_total, total, now.duration_since(at)),
            None => 0.0,
        };
        s.counters = Counters {
            requests_total: total,
            requests_per_second: rps,
            responses_5xx: errors,
            in_flight: metrics.requests_in_flight.get(),
        };
        s.at = Some(now);
        s.counters
    }
}

/// `ferrox_requests_total` summed, and its part with a 5xx status.
fn request_totals(metrics: &Metrics) -> (u64, u64) {
    let (mut total, mut errors) = (0u64, 0u64);
    for family in metrics.requests.collect() {
        for m in family.get_metric() {
            let v = m.get_counter().get_value() as u64;
            total = total.saturating_add(v);
            if m.get_label()
                .iter()
                .any(|l| l.name() == "status" && l.value().starts_with('5'))
            {
                errors = errors.saturating_add(v);
            }
        }
    }
    (total, errors)
}

/// Requests per second between two readings of a total `elapsed` apart (rounded to 0.1).
fn per_second(before: u64, after: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (after.saturating_sub(before) as f64 / secs * 10.0).round() / 10.0
}

/// Whether an instance is serving, as others see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Reported in within the last [`DOWN_AFTER`] intervals.
    Up,
    /// Silent for longer: crashed, cut off from PostgreSQL, or stopped without cleaning up.
    Down,
    /// Shut down gracefully.
    Stopped,
}

/// The status of an instance last seen at `last_seen` with heartbeat `interval`, at `now`;
/// `last_seen` and `now` come from the same clock (PostgreSQL's). A heartbeat that looks newer
/// than `now` counts as just seen.
pub fn status_at(
    now: SystemTime,
    last_seen: SystemTime,
    interval: Duration,
    stopped: bool,
) -> Status {
    if stopped {
        return Status::Stopped;
    }
    let silent = now.duration_since(last_seen).unwrap_or(Duration::ZERO);
    if silent > interval.saturating_mul(DOWN_AFTER) {
        Status::Down
    } else {
        Status::Up
    }
}

/// One instance as `GET /instances` answers it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    /// Random per process start.
    pub id: String,
    /// Whether this is the instance answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// `up`, `down` (not seen for 3 heartbeat intervals) or `stopped` (shut down gracefully).
    pub status: Status,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// Ferrox version.
    pub version: String,
    /// Proxy listener.
    pub proxy_addr: String,
    /// Admin listener.
    pub admin_addr: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339); none before the first one (or without PostgreSQL).
    pub last_seen: Option<String>,
    /// When it shut down gracefully (RFC 3339).
    pub stopped_at: Option<String>,
    /// Seconds it has been running (until its last heartbeat when down or stopped).
    pub uptime_seconds: u64,
    /// How often it reports in, ms.
    pub heartbeat_interval_ms: u64,
    /// The config version it runs.
    pub applied_version: i64,
    /// Whether it runs an older config version than the store's current one.
    pub lagging: bool,
    /// Requests answered since start.
    pub requests_total: u64,
    /// Requests per second over its last heartbeat interval.
    pub requests_per_second: f64,
    /// 5xx answers since start.
    pub responses_5xx: u64,
    /// Requests in flight.
    pub in_flight: i64,
}

/// What `GET /instances` answers.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Listing {
    /// The config store: `memory`, `file` or `postgres` (only PostgreSQL has several instances).
    pub store: String,
    /// The store's current config version (an instance with an older `applied_version` lags).
    pub config_version: i64,
    /// False when PostgreSQL could not be read: only this instance is listed.
    pub complete: bool,
    /// Why the list is incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This instance first, then the others by start time.
    pub instances: Vec<InstanceView>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn from_epoch(secs: f64) -> SystemTime {
    if secs.is_finite() && secs > 0.0 {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    } else {
        UNIX_EPOCH
    }
}

/// This instance as it sees itself: always up.
fn self_view(control: &ControlPlane, local: &Local, store_version: Version) -> InstanceView {
    let id = &local.identity;
    let c = local.counters();
    let applied = control.applied_version();
    InstanceView {
        id: id.id.clone(),
        is_self: true,
        status: Status::Up,
        hostname: id.hostname.clone(),
        pid: id.pid,
        version: id.version.to_owned(),
        proxy_addr: id.proxy_addr.clone(),
        admin_addr: id.admin_addr.clone(),
        started_at: rfc3339(id.started_at),
        last_seen: local.last_seen().map(rfc3339),
        stopped_at: None,
        uptime_seconds: control.started.elapsed().as_secs(),
        heartbeat_interval_ms: u64::try_from(id.heartbeat_interval.as_millis()).unwrap_or(0),
        applied_version: applied,
        lagging: applied < store_version,
        requests_total: c.requests_total,
        requests_per_second: c.requests_per_second,
        responses_5xx: c.responses_5xx,
        in_flight: c.in_flight,
    }
}

/// Every instance that reports in, as `control`'s instance sees them.
pub async fn list(control: &ControlPlane, local: &Local) -> Listing {
    let store = control.store.kind().to_owned();
    let Store::Postgres(pg) = &*control.store else {
        let version = *control.store.changes().borrow();
        return Listing {
            store,
            config_version: version,
            complete: true,
            error: None,
            instances: vec![self_view(control, local, version)],
        };
    };
    match tokio::time::timeout(MAX_HEARTBEAT, read_rows(pg.pool())).await {
        Ok(Ok((now, version, rows))) => {
            let mut instances = vec![self_view(control, local, version)];
            let me = &local.identity.id;
            for r in rows.into_iter().filter(|r| &r.id != me) {
                instances.push(r.view(now, version));
            }
            Listing {
                store,
                config_version: version,
                complete: true,
                error: None,
                instances,
            }
        }
        failed => {
            let message = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {MAX_HEARTBEAT:?}"),
            };
            let version = *control.store.changes().borrow();
            Listing {
                store,
                config_version: version,
                complete: false,
                error: Some(format!(
                    "cannot read the other instances from PostgreSQL: {message}"
                )),
                instances: vec![self_view(control, local, version)],
            }
        }
    }
}

/// A row of `gateway_instances`; instants in seconds since the epoch on PostgreSQL's clock.
#[derive(Debug)]
struct InstanceRow {
    id: String,
    hostname: String,
    pid: i64,
    version: String,
    proxy_addr: String,
    admin_addr: String,
    started_at: f64,
    last_seen: f64,
    stopped_at: Option<f64>,
    heartbeat_interval_ms: i64,
    applied_version: i64,
    requests_total: i64,
    requests_per_second: f64,
    responses_5xx: i64,
    in_flight: i64,
}

impl InstanceRow {
    fn view(self, now: f64, store_version: Version) -> InstanceView {
        let interval =
            Duration::from_millis(u64::try_from(self.heartbeat_interval_ms).unwrap_or(0));
        let status = status_at(
            from_epoch(now),
            from_epoch(self.last_seen),
            interval,
            self.stopped_at.is_some(),
        );
        let until = match status {
            Status::Up => now,
            _ => self.stopped_at.unwrap_or(self.last_seen),
        };
        InstanceView {
            id: self.id,
            is_self: false,
            status,
            hostname: self.hostname,
            pid: u32::try_from(self.pid).unwrap_or(0),
            version: self.version,
            proxy_addr: self.proxy_addr,
            admin_addr: self.admin_addr,
            started_at: rfc3339(from_epoch(self.started_at)),
            last_seen: Some(rfc3339(from_epoch(self.last_seen))),
            stopped_at: self.stopped_at.map(|s| rfc3339(from_epoch(s))),
            uptime_seconds: (until - self.started_at).max(0.0) as u64,
            heartbeat_interval_ms: u64::try_from(self.heartbeat_interval_ms).unwrap_or(0),
            applied_version: self.applied_version,
            lagging: self.applied_version < store_version,
            requests_total: u64::try_from(self.requests_total).unwrap_or(0),
            requests_per_second: self.requests_per_second,
            responses_5xx: u64::try_from(self.responses_5xx).unwrap_or(0),
            in_flight: self.in_flight,
        }
    }
}

/// PostgreSQL's now, the store's version and every row, oldest start first.
async fn read_rows(pool: &PgPool) -> Result<(f64, Version, Vec<InstanceRow>), sqlx::Error> {
    let head =
        sqlx::query("SELECT extract(epoch FROM now())::float8 AS now, version FROM config_version")
            .fetch_one(pool)
            .await?;
    let rows = sqlx::query(
        "SELECT id, hostname, pid, version, proxy_addr, admin_addr, \
                extract(epoch FROM started_at)::float8 AS started_at, \
                extract(epoch FROM last_seen)::float8 AS last_seen, \
                extract(epoch FROM stopped_at)::float8 AS stopped_at, \
                heartbeat_interval_ms, applied_version, requests_total, requests_per_second, \
                responses_5xx, in_flight \
         FROM gateway_instances ORDER BY started_at, id",
    )
    .fetch_all(pool)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(InstanceRow {
                id: r.try_get("id")?,
                hostname: r.try_get("hostname")?,
                pid: r.try_get("pid")?,
                version: r.try_get("version")?,
                proxy_addr: r.try_get("proxy_addr")?,
                admin_addr: r.try_get("admin_addr")?,
                started_at: r.try_get("started_at")?,
                last_seen: r.try_get("last_seen")?,
                stopped_at: r.try_get("stopped_at")?,
                heartbeat_interval_ms: r.try_get("heartbeat_interval_ms")?,
                applied_version: r.try_get("applied_version")?,
                requests_total: r.try_get("requests_total")?,
                requests_per_second: r.try_get("requests_per_second")?,
                responses_5xx: r.try_get("responses_5xx")?,
                in_flight: r.try_get("in_flight")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((head.try_get("now")?, head.try_get("version")?, rows))
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Upsert this instance's row (`last_seen = now()`, `stopped_at` cleared).
async fn heartbeat(
    pool: &PgPool,
    id: &Identity,
    uptime: Duration,
    applied: Version,
    c: Counters,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO gateway_instances (id, hostname, pid, version, proxy_addr, admin_addr, \
             started_at, last_seen, heartbeat_interval_ms, applied_version, requests_total, \
             requests_per_second, responses_5xx, in_flight) \
         VALUES ($1, $2, $3, $4, $5, $6, now() - make_interval(secs => $7), now(), $8, $9, $10, \
             $11, $12, $13) \
         ON CONFLICT (id) DO UPDATE SET last_seen = now(), stopped_at = NULL, \
             applied_version = EXCLUDED.applied_version, \
             requests_total = EXCLUDED.requests_total, \
             requests_per_second = EXCLUDED.requests_per_second, \
             responses_5xx = EXCLUDED.responses_5xx, in_flight = EXCLUDED.in_flight",
    )
    .bind(&id.id)
    .bind(&id.hostname)
    .bind(i64::from(id.pid))
    .bind(id.version)
    .bind(&id.proxy_addr)
    .bind(&id.admin_addr)
    .bind(uptime.as_secs_f64())
    .bind(as_i64(
        u64::try_from(id.heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
    ))
    .bind(applied)
    .bind(as_i64(c.requests_total))
    .bind(c.requests_per_second)
    .bind(as_i64(c.responses_5xx))
    .bind(c.in_flight)
    .execute(pool)
    .await
    .map(drop)
}

/// Mark this instance stopped, with its final counters.
async fn mark_stopped(
    pool: &PgPool,
    id: &str,
    applied: Version,
    c: Counters,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE gateway_instances SET stopped_at = now(), last_seen = now(), \
             applied_version = $2, requests_total = $3, requests_per_second = $4, \
             responses_5xx = $5, in_flight = $6 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(applied)
    .bind(as_i64(c.requests_total))
    .bind(c.requests_per_second)
    .bind(as_i64(c.responses_5xx))
    .bind(c.in_flight)
    .execute(pool)
    .await
    .map(|r| r.rows_affected())
}

/// Delete rows not seen for `retention`; returns how many went.
pub async fn delete_not_seen_for(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM gateway_instances WHERE last_seen < now() - make_interval(secs => $1)")
        .bind(retention.as_secs_f64())
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
}

/// Rate limit for heartbeat failure logs: the first failure of a run is logged, then at most
/// one line per [`LOG_EVERY`] with the count since the last line; a recovery is logged once.
#[derive(Debug, Default)]
struct FailureLog {
    /// Failures since the last success.
    failing: u64,
    /// Failures not yet logged.
    unlogged: u64,
    last_logged: Option<Instant>,
}

/// What to log after a heartbeat.
#[derive(Debug, PartialEq, Eq)]
enum LogLine {
    Nothing,
    /// Failures now logged (this one included).
    Failed(u64),
    /// Back after this many failures.
    Recovered(u64),
}

impl FailureLog {
    fn failed(&mut self, now: Instant) -> LogLine {
        self.failing += 1;
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if self.failing == 1 || due {
            self.last_logged = Some(now);
            LogLine::Failed(std::mem::take(&mut self.unlogged))
        } else {
            LogLine::Nothing
        }
    }

    fn succeeded(&mut self) -> LogLine {
        let failed = std::mem::take(&mut self.failing);
        self.unlogged = 0;
        if failed > 0 {
            LogLine::Recovered(failed)
        } else {
            LogLine::Nothing
        }
    }
}

/// Start reporting in: `control` gets its [`Local`], and a task samples the counters every
/// `interval` and, with PostgreSQL, keeps the instance's row fresh until `stop` turns true (or
/// its sender goes), then marks the row stopped.
pub fn start(
    control: &Arc<ControlPlane>,
    proxy: SocketAddr,
    admin: SocketAddr,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let local = Arc::new(Local::new(proxy, admin, interval));
    // Set once per control plane; a second start would only report the first identity.
    let local = control.instance.get_or_init(|| local).clone();
    let control = control.clone();
    tokio::spawn(async move {
        let pool = match &*control.store {
            Store::Postgres(pg) => Some(pg.pool().clone()),
            _ => None,
        };
        let metrics = &control.gateway.metrics;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log = FailureLog::default();
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let counters = local.sample(metrics);
            let Some(pool) = &pool else { continue };
            let beat = heartbeat(
                pool,
                &local.identity,
                control.started.elapsed(),
                control.applied_version(),
                counters,
            );
            let result = match tokio::time::timeout(MAX_HEARTBEAT, beat).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {MAX_HEARTBEAT:?}")),
            };
            match result {
                Ok(()) => {
                    local.lock().last_seen = Some(SystemTime::now());
                    if let LogLine::Recovered(n) = log.succeeded() {
                        tracing::info!(failures = n, "instance heartbeat recovered");
                    }
                    if let Err(e) = delete_not_seen_for(pool, RETENTION).await {
                        tracing::debug!(error = %e, "old instance rows not deleted this time");
                    }
                }
                Err(e) => {
                    metrics.heartbeat_failures.inc();
                    if let LogLine::Failed(n) = log.failed(Instant::now()) {
                        tracing::warn!(error = %e, failures = n, "instance heartbeat failed; the instance keeps serving (further failures are logged at most once a minute)");
                    }
                }
            }
        }
        let Some(pool) = &pool else { return };
        let counters = local.sample(metrics);
        let mark = mark_stopped(
            pool,
            &local.identity.id,
            control.applied_version(),
            counters,
        );
        match tokio::time::timeout(MAX_HEARTBEAT, mark).await {
            Ok(Ok(_)) => tracing::debug!("instance marked stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot mark the instance stopped"),
            Err(_) => tracing::warn!("cannot mark the instance stopped: no answer in time"),
        }
    })
}

/// A random UUID v4 in its text form.
fn new_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Uniqueness is all an instance id needs; a weaker source still gives it.
        b = fastrand::u128(..).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), or `unknown`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);

    /// A fixed instant plus `ms`.
    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn an_instance_is_down_after_three_silent_intervals() {
        let seen = at(0);
        // On a fixed clock (ms after the last heartbeat): up through 3 × 5 s, down after.
        assert_eq!(status_at(at(0), seen, INTERVAL, false), Status::Up);
        assert_eq!(status_at(at(5_000), seen, INTERVAL, false), Status::Up);
        assert_eq!(status_at(at(15_000), seen, INTERVAL, false), Status::Up);
        assert_eq!(status_at(at(15_001), seen, INTERVAL, false), Status::Down);
        assert_eq!(
            status_at(at(3_600_000), seen, INTERVAL, false),
            Status::Down
        );
        // Each row is judged by its own interval.
        let fast = Duration::from_millis(200);
        assert_eq!(status_at(at(600), seen, fast, false), Status::Up);
        assert_eq!(status_at(at(601), seen, fast, false), Status::Down);
    }

    #[test]
    fn a_stopped_instance_is_stopped_and_a_future_heartbeat_is_fresh() {
        assert_eq!(status_at(at(1), at(0), INTERVAL, true), Status::Stopped);
        assert_eq!(
            status_at(at(99_999), at(0), INTERVAL, true),
            Status::Stopped
        );
        // A heartbeat stamped after `now` (clocks read in another order) counts as just seen.
        assert_eq!(status_at(at(0), at(2_000), INTERVAL, false), Status::Up);
    }

    #[test]
    fn rows_become_views_with_status_uptime_and_lag() {
        let row = |last_seen: f64, stopped_at: Option<f64>, applied: i64| InstanceRow {
            id: "b".into(),
            hostname: "h".into(),
            pid: 42,
            version: "0.1.0".into(),
            proxy_addr: "127.0.0.1:8080".into(),
            admin_addr: "127.0.0.1:9080".into(),
            started_at: 1_000.0,
            last_seen,
            stopped_at,
            heartbeat_interval_ms: 1_000,
            applied_version: applied,
            requests_total: 7,
            requests_per_second: 1.5,
            responses_5xx: 1,
            in_flight: 0,
        };
        let up = row(1_099.0, None, 4).view(1_100.0, 4);
        assert_eq!(
            (up.status, up.uptime_seconds, up.lagging),
            (Status::Up, 100, false)
        );
        assert!(!up.is_self);
        let down = row(1_050.0, None, 3).view(1_100.0, 4);
        assert_eq!(
            (down.status, down.uptime_seconds, down.lagging),
            (Status::Down, 50, true)
        );
        let stopped = row(1_020.0, Some(1_020.0), 4).view(1_100.0, 4);
        assert_eq!(
            (stopped.status, stopped.uptime_seconds),
            (Status::Stopped, 20)
        );
        assert!(stopped.stopped_at.is_some());
    }

    #[test]
    fn failures_are_logged_at_most_once_a_minute() {
        let mut log = FailureLog::default();
        let t0 = Instant::now();
        assert_eq!(log.succeeded(), LogLine::Nothing);
        assert_eq!(log.failed(t0), LogLine::Failed(1));
        for s in 1..60 {
            assert_eq!(log.failed(t0 + Duration::from_secs(s)), LogLine::Nothing);
        }
        // The next line a minute later says how many failed meanwhile.
        assert_eq!(
            log.failed(t0 + Duration::from_secs(60)),
            LogLine::Failed(60)
        );
        assert_eq!(log.succeeded(), LogLine::Recovered(61));
        assert_eq!(log.succeeded(), LogLine::Nothing);
        // A new run of failures is logged at once.
        assert_eq!(log.failed(t0 + Duration::from_secs(61)), LogLine::Failed(1));
    }

    #[test]
    fn requests_per_second_over_the_interval() {
        assert_eq!(per_second(100, 150, Duration::from_secs(5)), 10.0);
        assert_eq!(per_second(0, 1, Duration::from_secs(3)), 0.3);
        assert_eq!(per_second(5, 5, Duration::from_secs(5)), 0.0);
        assert_eq!(per_second(5, 9, Duration::ZERO), 0.0);
    }

    #[test]
    fn counters_come_from_the_metrics() {
        let m = Metrics::new();
        m.requests.with_label_values(&["r", "GET", "200"]).inc_by(5);
        m.requests.with_label_values(&["r", "GET", "502"]).inc_by(2);
        m.requests.with_label_values(&["", "GET", "404"]).inc();
        m.requests_in_flight.set(3);
        let local = Local::new(
            "127.0.0.1:8080".parse().expect("addr"),
            "127.0.0.1:9080".parse().expect("addr"),
            INTERVAL,
        );
        let c = local.sample(&m);
        assert_eq!((c.requests_total, c.responses_5xx, c.in_flight), (8, 2, 3));
        assert_eq!(c.requests_per_second, 0.0, "no rate before a second sample");
        assert_eq!(local.counters(), c);
    }

    #[test]
    fn ids_are_uuid_v4_text() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, new_id());
        assert!(!hostname().is_empty());
    }
}
