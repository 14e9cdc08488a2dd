//! `/metrics` against DESIGN §8: every listed metric with its type and label set, labels that are
//! names (never raw paths), and HELP/TYPE for every family.

use std::collections::{BTreeMap, BTreeSet};

use http::StatusCode;

use crate::support::*;

/// DESIGN §8's metrics: name, type, label names (sorted).
const DESIGN: &[(&str, &str, &[&str])] = &[
    (
        "ferrox_requests_total",
        "counter",
        &["method", "route", "status"],
    ),
    ("ferrox_request_duration_seconds", "histogram", &["route"]),
    (
        "ferrox_upstream_duration_seconds",
        "histogram",
        &["upstream"],
    ),
    (
        "ferrox_filter_duration_seconds",
        "histogram",
        &["phase", "plugin"],
    ),
    (
        "ferrox_filter_failures_total",
        "counter",
        &["kind", "plugin"],
    ),
    ("ferrox_rate_limited_total", "counter", &["route"]),
    (
        "ferrox_cache_lookups_total",
        "counter",
        &["result", "route"],
    ),
    ("ferrox_breaker_state", "gauge", &["target", "upstream"]),
    ("ferrox_config_reloads_total", "counter", &["result"]),
    ("ferrox_request_log_dropped_total", "counter", &[]),
];

/// One metric family as scraped: type, help present, label sets of its samples.
#[derive(Default, Debug)]
struct Family {
    kind: String,
    help: bool,
    label_sets: BTreeSet<Vec<String>>,
    label_values: BTreeSet<String>,
}

/// Parse the Prometheus text format into families (histogram samples fold into their family;
/// `le` is the bucket label, not one of the family's).
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("HELP name");
            families.entry(name.to_owned()).or_default().help = true;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, _value) = line.rsplit_once(' ').expect("sample value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| families.get(*b).is_some_and(|f| f.kind == "histogram"))
            })
            .unwrap_or(name);
        let mut names = Vec::new();
        let mut values = Vec::new();
        if !labels.is_empty() {
            for pair in labels.split("\",") {
                let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                if k != "le" {
                    names.push(k.to_owned());
                    values.push(v.trim_end_matches('"').to_owned());
                }
            }
        }
        names.sort();
        let f = families.entry(base.to_owned()).or_default();
        f.label_sets.insert(names);
        f.label_values.extend(values);
    }
    families
}

#[tokio::test]
async fn metrics_have_the_designs_names_types_and_labels() {
    let up = echo_upstream().await;
    let yaml = format!(
        "upstreams:\n{}plugins:\n{}routes:\n  - name: cached\n    match: {{ path_prefix: /cached }}\n    upstream: u\n    filters:\n      - {{ plugin: cache, timeout: 2s, config: {{}} }}\n  - name: limited\n    match: {{ path_prefix: /limited }}\n    upstream: u\n    filters:\n      - plugin: rate-limit\n        timeout: 500ms\n        config: {{ limits: [{{ requests: 1, window: 60s }}] }}\n  - name: trapped\n    match: {{ path_prefix: /trapped }}\n    upstream: u\n    filters:\n      - {{ plugin: trap, on_error: open, timeout: 500ms }}\n",
        upstream_yaml("u", &[up.addr], ""),
        guest_plugin_yaml("trap", &[]),
    );
    let gw = gateway(&yaml).await;
    assert_eq!(get(&gw.url("/limited/a")).await.status, StatusCode::OK);
    assert_eq!(
        get(&gw.url("/limited/a")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(get(&gw.url("/trapped/b")).await.status, StatusCode::OK);
    assert_eq!(get(&gw.url("/cached/c")).await.status, StatusCode::OK);
    let raw_path = "/raw-path-that-must-not-become-a-label-7f3a";
    assert_eq!(get(&gw.url(raw_path)).await.status, StatusCode::NOT_FOUND);

    let text = gw.metrics().await;
    let families = parse(&text);
    let mut missing = Vec::new();
    for (name, kind, labels) in DESIGN {
        let Some(f) = families.get(*name) else {
            missing.push(*name);
            continue;
        };
        assert_eq!(f.kind, *kind, "{name}: type");
        assert!(f.help, "{name}: HELP line");
        let want: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        assert!(!f.label_sets.is_empty(), "{name}: no samples");
        for set in &f.label_sets {
            assert_eq!(set, &want, "{name}: label set");
        }
    }
    assert!(
        missing.is_empty(),
        "DESIGN §8 metrics without series after this traffic: {missing:?}\n{text}"
    );

    // The traffic above is in them, labelled by names.
    for sample in [
        "ferrox_requests_total{method=\"GET\",route=\"limited\",status=\"429\"} 1",
        "ferrox_requests_total{method=\"GET\",route=\"\",status=\"404\"} 1",
        "ferrox_rate_limited_total{route=\"limited\"} 1",
        "ferrox_filter_failures_total{kind=\"trap\",plugin=\"trap\"} 1",
        "ferrox_config_reloads_total{result=\"failure\"} 0",
        "ferrox_cache_lookups_total{result=\"miss\",route=\"cached\"} 1",
        "ferrox_request_log_dropped_total 0",
    ] {
        assert!(text.contains(sample), "{sample} in:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "ferrox_breaker_state{{target=\"{}\",upstream=\"u\"}} 0",
            up.addr
        ))),
        "{text}"
    );
    // Labels are names, never raw paths; every family is documented.
    for (name, f) in &families {
        assert!(
            !f.label_values.iter().any(|v| v.starts_with('/')),
            "{name} has a path as a label value: {:?}",
            f.label_values
        );
        assert!(f.help && !f.kind.is_empty(), "{name}: HELP and TYPE");
    }
}

/// The Grafana dashboard in `examples/grafana/` queries only metrics the gateway defines, and
/// every DESIGN §8 metric has a panel.
#[test]
fn grafana_dashboard_is_built_on_the_gateways_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let text = std::fs::read_to_string(root.join("examples/grafana/ferrox-dashboard.json"))
        .expect("dashboard JSON");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let defined = std::fs::read_to_string(root.join("host/src/metrics/mod.rs")).expect("metrics");
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("ferrox_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                used.insert(base.to_owned());
                rest = &tail[end..];
            }
        }
    }
    for name in &used {
        assert!(
            defined.contains(&format!("\"{name}\"")),
            "the dashboard queries {name}, which the gateway does not define"
        );
    }
    for (name, _, _) in DESIGN {
        assert!(used.contains(*name), "no panel uses {name}");
    }
    let scrape = std::fs::read_to_string(root.join("examples/grafana/prometheus.yml"))
        .expect("scrape config");
    assert!(scrape.contains("metrics_path: /metrics") && scrape.contains("type: Bearer"));
}
