//! The exporter task: takes finished requests from the queue, makes their spans and sends them
//! in batches with `opentelemetry-otlp` (OTLP/HTTP, protobuf) through opentelemetry-http's
//! hyper client (plain HTTP, or rustls with the system roots for an `https://` endpoint).
//!
//! One batch is in flight at a time; while it is, new requests wait in the queue, and beyond
//! the queue they are dropped. On shutdown the task waits for the requests still in flight to
//! finish (at most `server.drain_timeout`), then exports what is queued and ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Finished, TraceExport, spans};
use crate::config::TracingConfig;
use crate::gateway::Gateway;

/// The signal path appended to `otlp_endpoint`.
const TRACES_PATH: &str = "/v1/traces";

/// Start span export when `config` asks for it: the gateway's [`TraceExport`] is set and the
/// exporter task returned; it stops when `stop` turns true, after the drain. Without a
/// `tracing` section nothing is started and the datapath makes no span.
pub fn attach(
    gw: &Arc<Gateway>,
    config: Option<&TracingConfig>,
    drain: Duration,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let Some(config) = config else {
        return Vec::new();
    };
    let exporter = match build_exporter(config) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "span export not started");
            return Vec::new();
        }
    };
    let dropped = gw.metrics.trace_dropped.clone();
    let (handle, rx) = TraceExport::new(config.queue, config.sample_ratio, dropped.clone());
    if gw.trace_export.set(handle).is_err() {
        return Vec::new();
    }
    tracing::info!(endpoint = %endpoint(config), "exporting spans over OTLP/HTTP");
    let run = Batches {
        exporter,
        batch: config.batch.max(1),
        flush: config.flush_interval.0,
        dropped,
        in_flight: gw.metrics.requests_in_flight.clone(),
        drain,
    };
    vec![tokio::spawn(run.run(rx, stop))]
}

/// `<otlp_endpoint>/v1/traces`.
fn endpoint(config: &TracingConfig) -> String {
    format!(
        "{}{TRACES_PATH}",
        config.otlp_endpoint.trim_end_matches('/')
    )
}

fn build_exporter(config: &TracingConfig) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_http::hyper::HyperClient;
    let timeout = config.timeout.0;
    let builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint(config))
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(timeout)
        .with_headers(
            config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    let builder = if config.otlp_endpoint.starts_with("https://") {
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(crate::proxy::client::crypto_provider())
            .map_err(|e| format!("tracing.otlp_endpoint: no system CA certificates: {e}"))?
            .https_only()
            .enable_http1()
            .build();
        builder.with_http_client(HyperClient::new(tls, timeout, None))
    } else {
        builder.with_http_client(HyperClient::with_default_connector(timeout, None))
    };
    let mut exporter = builder
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
    exporter.set_resource(
        &Resource::builder()
            .with_service_name(config.service_name.clone())
            .build(),
    );
    Ok(exporter)
}

/// The batching loop's settings and state.
struct Batches {
    exporter: opentelemetry_otlp::SpanExporter,
    batch: usize,
    flush: Duration,
    dropped: IntCounter,
    in_flight: IntGauge,
    drain: Duration,
}

impl Batches {
    async fn run(self, mut rx: mpsc::Receiver<Finished>, mut stop: watch::Receiver<bool>) {
        let scope = spans::scope();
        let mut buf: Vec<Finished> = Vec::with_capacity(self.batch);
        loop {
            // Wait for the first request of a batch, then at most `flush` for the rest.
            let first = tokio::select! {
                f = rx.recv() => f,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(first) = first else { break };
            buf.push(first);
            let deadline = tokio::time::Instant::now() + self.flush;
            while buf.len() < self.batch {
                tokio::select! {
                    f = tokio::time::timeout_at(deadline, rx.recv()) => match f {
                        Ok(Some(f)) => buf.push(f),
                        Ok(None) | Err(_) => break,
                    },
                    // Shutdown does not wait for a partial batch's flush interval.
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            self.export(&mut buf, &scope).await;
        }
        // Stopping: the requests still draining hand over their spans as they finish.
        let deadline = tokio::time::Instant::now() + self.drain;
        while self.in_flight.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while let Ok(f) = rx.try_recv() {
            buf.push(f);
            if buf.len() >= self.batch {
                self.export(&mut buf, &scope).await;
            }
        }
        self.export(&mut buf, &scope).await;
        let _ = self.exporter.shutdown();
    }

    /// Send the spans of `buf` (emptied); an undelivered batch is counted as dropped.
    async fn export(&self, buf: &mut Vec<Finished>, scope: &opentelemetry::InstrumentationScope) {
        if buf.is_empty() {
            return;
        }
        let requests = buf.len();
        let mut batch: Vec<SpanData> = Vec::with_capacity(requests * 4);
        for f in buf.drain(..) {
            spans::build(f, scope, &mut batch);
        }
        if let Err(e) = self.exporter.export(batch).await {
            self.dropped.inc_by(requests as u64);
            tracing::warn!(error = %e, requests, "span export failed: dropped");
        }
    }
}
