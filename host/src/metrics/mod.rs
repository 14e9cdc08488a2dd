//! Every metric name the gateway exports, in one place. Labels are names (route, upstream,
//! target, plugin), never raw paths, so cardinality is bounded by the configuration.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Label value used when a request matched no route.
pub const NO_ROUTE: &str = "";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const FILTER_BUCKETS: &[f64] = &[
    0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025,
    0.005, 0.01, 0.05,
];

/// Most metric names one plugin may publish (bounds label cardinality).
const MAX_PLUGIN_METRIC_NAMES: usize = 32;

/// The gateway's metrics, registered in their own registry (one per gateway instance, so tests
/// running several gateways in one process do not mix numbers).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    plugin_metric_names: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
    >,
    /// `ferrox_requests_total{route,method,status}`
    pub requests: IntCounterVec,
    /// `ferrox_request_duration_seconds{route}`: until the response head is sent.
    pub request_duration: HistogramVec,
    /// `ferrox_upstream_duration_seconds{upstream}`: request sent → response head received.
    pub upstream_duration: HistogramVec,
    /// `ferrox_upstream_errors_total{upstream,kind}`: connect / timeout / protocol failures.
    pub upstream_errors: IntCounterVec,
    /// `ferrox_retries_total{upstream}`
    pub retries: IntCounterVec,
    /// `ferrox_breaker_state{upstream,target}`: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// `ferrox_target_healthy{upstream,target}`: active health check verdict (1 healthy).
    pub target_healthy: IntGaugeVec,
    /// `ferrox_config_reloads_total{result}`: `success` or `failure`.
    pub config_reloads: IntCounterVec,
    /// `ferrox_connections_active`: open downstream connections.
    pub connections_active: IntGauge,
    /// `ferrox_requests_in_flight`: requests being served.
    pub requests_in_flight: IntGauge,
    /// `ferrox_websocket_tunnels_total`: upgraded connections tunnelled.
    pub websocket_tunnels: IntCounter,
    /// `ferrox_trace_dropped_total`: traced requests whose spans were dropped (export queue
    /// full, or a batch the OTLP receiver did not take).
    pub trace_dropped: IntCounter,
    /// `ferrox_rate_limited_total{route}`: requests a filter answered with 429.
    pub rate_limited: IntCounterVec,
    /// `ferrox_cache_lookups_total{route,result}`: response-cache lookups by result (`hit`,
    /// `miss`, `bypass` when a filter bypassed the cache, `error` when the store failed).
    pub cache_lookups: IntCounterVec,
    /// `ferrox_filter_duration_seconds{plugin,phase}`: time in one filter call.
    pub filter_duration: HistogramVec,
    /// `ferrox_filter_failures_total{plugin,kind}`: timeout, memory, trap, config, tripped.
    pub filter_failures: IntCounterVec,
    /// `ferrox_plugin_counter_total{plugin,name}`: counters filters publish.
    pub plugin_counters: IntCounterVec,
    /// `ferrox_plugin_histogram{plugin,name}`: histograms filters publish.
    pub plugin_histograms: HistogramVec,
    /// `ferrox_store_up`: 1 while the config store answers (PostgreSQL reachable), else 0.
    pub store_up: IntGauge,
    /// `ferrox_request_log_dropped_total`: request log entries dropped (queue full or a batch
    /// PostgreSQL refused).
    pub request_log_dropped: IntCounter,
    /// `ferrox_instance_heartbeat_failures_total`: heartbeats of this instance to the
    /// `gateway_instances` table that failed (PostgreSQL unreachable or refusing).
    pub heartbeat_failures: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

impl Metrics {
    /// Create and register every metric.
    ///
    /// # Panics
    /// Only if the static definitions above are invalid or registered twice, which the unit
    /// test below rules out.
    pub fn new() -> Self {
        let r = Registry::new();
        let connections_active =
            IntGauge::new("ferrox_connections_active", "Open downstream connections.")
                .expect("valid metric definition");
        r.register(Box::new(connections_active.clone()))
            .expect("metric registered once");
        let requests_in_flight =
            IntGauge::new("ferrox_requests_in_flight", "Requests being served.")
                .expect("valid metric definition");
        r.register(Box::new(requests_in_flight.clone()))
            .expect("metric registered once");
        let config_reloads = counter_vec(
            &r,
            "ferrox_config_reloads_total",
            "Configuration reloads, by result (success, failure).",
            &["result"],
        );
        // Both series exist from the start at 0, so the first failed reload is an increase
        // that alerts can see rather than a series appearing at 1.
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let store_up = IntGauge::new(
            "ferrox_store_up",
            "1 while the config store answers (PostgreSQL reachable), 0 while it does not.",
        )
        .expect("valid metric definition");
        store_up.set(1);
        r.register(Box::new(store_up.clone()))
            .expect("metric registered once");
        let request_log_dropped = IntCounter::new(
            "ferrox_request_log_dropped_total",
            "Request log entries dropped: queue full, or a batch PostgreSQL refused.",
        )
        .expect("valid metric definition");
        r.register(Box::new(request_log_dropped.clone()))
            .expect("metric registered once");
        let heartbeat_failures = IntCounter::new(
            "ferrox_instance_heartbeat_failures_total",
            "Heartbeats to the gateway_instances table that failed (PostgreSQL unreachable or refusing).",
        )
        .expect("valid metric definition");
        r.register(Box::new(heartbeat_failures.clone()))
            .expect("metric registered once");
        let websocket_tunnels = IntCounter::new(
            "ferrox_websocket_tunnels_total",
            "WebSocket connections tunnelled after the upstream's 101.",
        )
        .expect("valid metric definition");
        r.register(Box::new(websocket_tunnels.clone()))
            .expect("metric registered once");
        let trace_dropped = IntCounter::new(
            "ferrox_trace_dropped_total",
            "Traced requests whose spans were dropped: export queue full, or a batch the OTLP receiver did not take.",
        )
        .expect("valid metric definition");
        r.register(Box::new(trace_dropped.clone()))
            .expect("metric registered once");
        Self {
            requests: counter_vec(
                &r,
                "ferrox_requests_total",
                "Requests answered, by route, method and status.",
                &["route", "method", "status"],
            ),
            request_duration: histogram_vec(
                &r,
                "ferrox_request_duration_seconds",
                "Time from request received to response head sent.",
                &["route"],
            ),
            upstream_duration: histogram_vec(
                &r,
                "ferrox_upstream_duration_seconds",
                "Time from request sent upstream to response head received.",
                &["upstream"],
            ),
            upstream_errors: counter_vec(
                &r,
                "ferrox_upstream_errors_total",
                "Failed upstream attempts, by kind (connect, timeout, protocol).",
                &["upstream", "kind"],
            ),
            retries: counter_vec(
                &r,
                "ferrox_retries_total",
                "Requests retried on another target.",
                &["upstream"],
            ),
            breaker_state: gauge_vec(
                &r,
                "ferrox_breaker_state",
                "Circuit breaker state per target: 0 closed, 1 open, 2 half-open.",
                &["upstream", "target"],
            ),
            target_healthy: gauge_vec(
                &r,
                "ferrox_target_healthy",
                "Active health check verdict per target (1 healthy, 0 unhealthy).",
                &["upstream", "target"],
            ),
            filter_duration: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "ferrox_filter_duration_seconds",
                        "Time in one filter call, by plugin and phase (request, response).",
                    )
                    .buckets(FILTER_BUCKETS.to_vec()),
                    &["plugin", "phase"],
                )
                .expect("valid metric definition");
                r.register(Box::new(h.clone()))
                    .expect("metric registered once");
                h
            },
            rate_limited: counter_vec(
                &r,
                "ferrox_rate_limited_total",
                "Requests refused with 429 by a filter (rate limiting), by route.",
                &["route"],
            ),
            cache_lookups: counter_vec(
                &r,
                "ferrox_cache_lookups_total",
                "Response-cache lookups by route and result (hit, miss, bypass, error).",
                &["route", "result"],
            ),
            filter_failures: counter_vec(
                &r,
                "ferrox_filter_failures_total",
                "Filter failures by plugin and kind (timeout, memory, trap, config, tripped).",
                &["plugin", "kind"],
            ),
            plugin_counters: counter_vec(
                &r,
                "ferrox_plugin_counter_total",
                "Counters published by filters through the metrics host service.",
                &["plugin", "name"],
            ),
            plugin_histograms: histogram_vec(
                &r,
                "ferrox_plugin_histogram",
                "Histograms published by filters through the metrics host service.",
                &["plugin", "name"],
            ),
            config_reloads,
            store_up,
            request_log_dropped,
            heartbeat_failures,
            connections_active,
            requests_in_flight,
            websocket_tunnels,
            trace_dropped,
            plugin_metric_names: Default::default(),
            registry: r,
        }
    }

    fn plugin_metric_allowed(&self, plugin: &str, name: &str) -> bool {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return false;
        }
        let mut seen = self
            .plugin_metric_names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let names = seen.entry(plugin.to_owned()).or_default();
        if names.contains(name) {
            return true;
        }
        if names.len() >= MAX_PLUGIN_METRIC_NAMES {
            return false;
        }
        names.insert(name.to_owned());
        true
    }

    /// Add to a filter-published counter (invalid or excess names are dropped).
    pub fn plugin_counter(&self, plugin: &str, name: &str, value: u64) {
        if self.plugin_metric_allowed(plugin, name) {
            self.plugin_counters
                .with_label_values(&[plugin, name])
                .inc_by(value);
        }
    }

    /// Observe a filter-published histogram (invalid or excess names are dropped).
    pub fn plugin_histogram(&self, plugin: &str, name: &str, value: f64) {
        if value.is_finite() && self.plugin_metric_allowed(plugin, name) {
            self.plugin_histograms
                .with_label_values(&[plugin, name])
                .observe(value);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A bounded label value for a method (unknown extension methods become `OTHER`).
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_and_render() {
        let m = Metrics::new();
        m.requests.with_label_values(&["r", "GET", "200"]).inc();
        m.config_reloads.with_label_values(&["success"]).inc();
        let text = m.render();
        assert!(
            text.contains("ferrox_requests_total{method=\"GET\",route=\"r\",status=\"200\"} 1")
        );
        assert!(text.contains("# TYPE ferrox_config_reloads_total counter"));
        assert_eq!(
            method_label(&http::Method::from_bytes(b"BREW").expect("m")),
            "OTHER"
        );
    }
}
