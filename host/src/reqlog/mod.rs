//! Request logs in PostgreSQL: the handler hands each finished request to [`RequestLog::record`],
//! a `try_send` into a bounded queue that never waits; a background task writes the queue in
//! batches (one multi-row insert per batch) and a second one deletes rows past the retention.
//! A full queue, or a batch PostgreSQL refuses, is dropped and counted in
//! `ferrox_request_log_dropped_total`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;
use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::RequestLogsConfig;
use crate::pipeline::FilterRecord;

/// One finished request.
#[derive(Debug)]
pub struct Entry {
    /// The request id.
    pub request_id: String,
    /// When the request arrived.
    pub at: SystemTime,
    /// The route it matched.
    pub route: Option<Arc<str>>,
    /// The consumer a filter identified.
    pub consumer: Option<String>,
    /// Method.
    pub method: &'static str,
    /// Path as received (without the query).
    pub path: Box<str>,
    /// Status answered.
    pub status: u16,
    /// Time until the response head, µs.
    pub duration_us: u64,
    /// Time the upstream took, µs.
    pub upstream_us: Option<u64>,
    /// Declared request body length.
    pub request_bytes: Option<u64>,
    /// Declared response body length.
    pub response_bytes: Option<u64>,
    /// Each filter's decision.
    pub filters: Vec<FilterRecord>,
}

/// The datapath's handle: a bounded queue towards the writer.
#[derive(Debug, Clone)]
pub struct RequestLog {
    tx: mpsc::Sender<Entry>,
    dropped: IntCounter,
}

impl RequestLog {
    /// Queue `entry`, or drop and count it when the queue is full. Never waits.
    pub fn record(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.inc();
        }
    }
}

/// Start the writer and the retention task; they stop when `stop` turns true (the writer
/// first writes what is queued).
pub fn spawn(
    pool: PgPool,
    settings: &RequestLogsConfig,
    dropped: IntCounter,
    stop: watch::Receiver<bool>,
) -> (RequestLog, Vec<JoinHandle<()>>) {
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    let writer = tokio::spawn(write_batches(
        pool.clone(),
        rx,
        settings.batch.max(1),
        settings.flush_interval.0,
        dropped.clone(),
        stop.clone(),
    ));
    let retention = tokio::spawn(enforce_retention(
        pool,
        settings.retention.0,
        Duration::from_secs(60),
        stop,
    ));
    (RequestLog { tx, dropped }, vec![writer, retention])
}

async fn write_batches(
    pool: PgPool,
    mut rx: mpsc::Receiver<Entry>,
    batch: usize,
    flush: Duration,
    dropped: IntCounter,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<Entry> = Vec::with_capacity(batch);
    loop {
        // Wait for the first entry of a batch, then at most `flush` for the rest.
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else { break };
        buf.push(first);
        let deadline = tokio::time::Instant::now() + flush;
        while buf.len() < batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => buf.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        insert(&pool, &mut buf, &dropped).await;
    }
    // Stopping: write what is already queued.
    while let Ok(e) = rx.try_recv() {
        buf.push(e);
        if buf.len() >= batch {
            insert(&pool, &mut buf, &dropped).await;
        }
    }
    insert(&pool, &mut buf, &dropped).await;
}

fn micros_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn filters_json(records: &[FilterRecord]) -> serde_json::Value {
    serde_json::Value::Array(
        records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "plugin": &*r.plugin,
                    "phase": r.phase,
                    "decision": r.decision,
                    "us": r.micros,
                    "calls": r.calls,
                })
            })
            .collect(),
    )
}

/// One multi-row insert of `buf` (emptied); a failed batch is counted as dropped.
async fn insert(pool: &PgPool, buf: &mut Vec<Entry>, dropped: &IntCounter) {
    if buf.is_empty() {
        return;
    }
    let n = buf.len();
    let mut ids = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut routes = Vec::with_capacity(n);
    let mut consumers = Vec::with_capacity(n);
    let mut methods = Vec::with_capacity(n);
    let mut paths = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut upstream = Vec::with_capacity(n);
    let mut req_bytes = Vec::with_capacity(n);
    let mut resp_bytes = Vec::with_capacity(n);
    let mut filters = Vec::with_capacity(n);
    for e in buf.drain(..) {
        ids.push(e.request_id);
        at.push(epoch_secs(e.at));
        routes.push(e.route.map(|r| r.to_string()));
        consumers.push(e.consumer);
        methods.push(e.method);
        paths.push(String::from(e.path));
        statuses.push(i16::try_from(e.status).unwrap_or(i16::MAX));
        durations.push(micros_i64(e.duration_us));
        upstream.push(e.upstream_us.map(micros_i64));
        req_bytes.push(e.request_bytes.map(micros_i64));
        resp_bytes.push(e.response_bytes.map(micros_i64));
        filters.push(filters_json(&e.filters));
    }
    let result = sqlx::query(
        "INSERT INTO request_logs (request_id, at, route, consumer, method, path, status, \
         duration_us, upstream_us, request_bytes, response_bytes, filters) \
         SELECT id, to_timestamp(at), route, consumer, method, path, status, duration_us, \
                upstream_us, request_bytes, response_bytes, filters \
         FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::int2[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::jsonb[]) \
              AS t(id, at, route, consumer, method, path, status, duration_us, upstream_us, \
                   request_bytes, response_bytes, filters)",
    )
    .bind(ids)
    .bind(at)
    .bind(routes)
    .bind(consumers)
    .bind(methods)
    .bind(paths)
    .bind(statuses)
    .bind(durations)
    .bind(upstream)
    .bind(req_bytes)
    .bind(resp_bytes)
    .bind(filters)
    .execute(pool)
    .await;
    if let Err(e) = result {
        dropped.inc_by(n as u64);
        tracing::warn!(error = %e, rows = n, "request logs dropped: PostgreSQL refused the batch");
    }
}

/// Delete rows older than `retention` every `every`.
async fn enforce_retention(
    pool: PgPool,
    retention: Duration,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = delete_older_than(&pool, retention).await {
            tracing::debug!(error = %e, "request log retention not applied this time");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Delete request logs older than `retention`; returns how many rows went.
pub async fn delete_older_than(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM request_logs WHERE at < now() - make_interval(secs => $1)")
        .bind(retention.as_secs_f64())
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
}
