//! The built-in `key-auth` filter through the running gateway: consumers from the config
//! (plaintext and `sha256:` keys), the consumer named upstream, the key hidden, `401`s with
//! challenges, bearer and query modes, and the key absent from replies, metrics and logs.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::support::*;

const ALICE_KEY: &str = "alice-secret-key";
/// Configured only as `sha256:<hex>`.
const CAROL_KEY: &str = "carol-hashed-key";
const WRONG_KEY: &str = "wrong-secret-key";

/// Every secret a test presents: none may leak.
const SECRETS: [&str; 3] = [ALICE_KEY, CAROL_KEY, WRONG_KEY];

fn carol_digest() -> String {
    hex::encode(Sha256::digest(CAROL_KEY.as_bytes()))
}

/// Routes `/<name>` each with one key-auth filter configured with `config`.
fn doc(up: SocketAddr, routes: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "upstreams:\n{}consumers:\n  - {{ name: alice, keys: [{ALICE_KEY}] }}\n  - {{ name: carol, keys: [\"sha256:{}\"] }}\nroutes:\n",
        upstream_yaml("u", &[up], ""),
        carol_digest()
    );
    for (name, config) in routes {
        write!(
            yaml,
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    upstream: u\n    filters:\n      - {{ plugin: key-auth, timeout: 200ms, config: {config} }}\n"
        )
        .expect("write to a String");
    }
    yaml
}

const ROUTES: [(&str, &str); 5] = [
    ("default", "{}"),
    ("multi", "{ headers: [apikey, x-api-key] }"),
    ("bearer", "{ bearer: true }"),
    ("query", "{ query: api_key }"),
    ("visible", "{ hide_credentials: false }"),
];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{s:?} appears in {what}: {text}");
    }
}

/// Assert a `401` as key-auth makes it, with `challenges`.
fn assert_401(r: &Resp, message: &str, challenges: &[&str]) {
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let got: Vec<&str> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(got, challenges);
    let body = r.json();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["message"], message);
    assert_no_secret("a 401 body", &String::from_utf8_lossy(&r.body));
    assert_no_secret("401 headers", &format!("{:?}", r.headers));
}

const KEY_CHALLENGE: &str = r#"Key realm="ferrox", header="apikey""#;

#[tokio::test]
async fn a_valid_key_names_the_consumer_upstream_and_the_key_is_not_forwarded() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, &ROUTES)).await;

    // A client-sent consumer name is replaced, never joined, even on success.
    let r = get_with(
        &gw.url("/default/x"),
        &[
            ("apikey", ALICE_KEY),
            ("x-consumer-name", "mallory"),
            ("x-other", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["headers"]["x-consumer-name"], "alice");
    assert_eq!(seen["headers"]["x-other"], "kept");
    assert!(seen["headers"].get("apikey").is_none(), "{seen}");
    assert_no_secret("what the upstream saw", &seen.to_string());

    // The second header of a multi-header route works the same.
    let r = get_with(&gw.url("/multi"), &[("X-API-Key", ALICE_KEY)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-consumer-name"], "alice");
    assert!(r.json()["headers"].get("x-api-key").is_none());

    // With hide_credentials: false the key goes upstream, the consumer too.
    let r = get_with(&gw.url("/visible"), &[("apikey", ALICE_KEY)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["apikey"], ALICE_KEY);
    assert_eq!(r.json()["headers"]["x-consumer-name"], "alice");
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn a_client_sent_consumer_name_never_reaches_the_upstream() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, &ROUTES)).await;
    // Refused: nothing reaches the upstream at all.
    let r = get_with(&gw.url("/default"), &[("x-consumer-name", "mallory")]).await;
    assert_401(&r, "no API key in the request", &[KEY_CHALLENGE]);
    let r = get_with(
        &gw.url("/default"),
        &[("x-consumer-name", "mallory"), ("apikey", WRONG_KEY)],
    )
    .await;
    assert_401(&r, "the API key is not valid", &[KEY_CHALLENGE]);
    assert_eq!(up.hits(), 0);
    // Accepted: the upstream sees the authenticated name only.
    let r = get_with(
        &gw.url("/default"),
        &[("x-consumer-name", "mallory"), ("apikey", CAROL_KEY)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-consumer-name"], "carol");
    assert!(!String::from_utf8_lossy(&r.body).contains("mallory"));
}

#[tokio::test]
async fn sha256_configured_keys_authenticate_by_the_plaintext_key_only() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, &ROUTES)).await;
    let r = get_with(&gw.url("/default"), &[("apikey", CAROL_KEY)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-consumer-name"], "carol");
    // The stored digest is not itself a key.
    let bare = carol_digest();
    let prefixed = format!("sha256:{bare}");
    for presented in [prefixed.as_str(), bare.as_str()] {
        let r = get_with(&gw.url("/default"), &[("apikey", presented)]).await;
        assert_401(&r, "the API key is not valid", &[KEY_CHALLENGE]);
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn missing_unknown_and_ambiguous_keys_are_401_with_challenges() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, &ROUTES)).await;
    let url = gw.url("/default");
    assert_401(
        &get(&url).await,
        "no API key in the request",
        &[KEY_CHALLENGE],
    );
    assert_401(
        &get_with(&url, &[("apikey", WRONG_KEY)]).await,
        "the API key is not valid",
        &[KEY_CHALLENGE],
    );
    // Another header is not a key header on this route.
    assert_401(
        &get_with(&url, &[("x-api-key", ALICE_KEY)]).await,
        "no API key in the request",
        &[KEY_CHALLENGE],
    );
    // The header twice with different values, even with one valid key: ambiguous.
    for other in [CAROL_KEY, WRONG_KEY] {
        assert_401(
            &get_with(&url, &[("apikey", ALICE_KEY), ("apikey", other)]).await,
            "more than one API key in the request",
            &[KEY_CHALLENGE],
        );
    }
    // Different keys in two configured headers: ambiguous too.
    assert_401(
        &get_with(
            &gw.url("/multi"),
            &[("apikey", ALICE_KEY), ("x-api-key", CAROL_KEY)],
        )
        .await,
        "more than one API key in the request",
        &[KEY_CHALLENGE],
    );
    // The same key twice is one key.
    let r = get_with(&url, &[("apikey", ALICE_KEY), ("apikey", ALICE_KEY)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.hits(), 1, "no refused request reached the upstream");
}

#[tokio::test]
async fn bearer_mode_accepts_authorization_and_removes_only_the_key() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, &ROUTES)).await;
    let url = gw.url("/bearer");
    let bearer_challenge = |error: Option<&str>| match error {
        Some(e) => format!(r#"Bearer realm="ferrox", error="{e}""#),
        None => r#"Bearer realm="ferrox""#.to_owned(),
    };

    let r = get_with(&url, &[("authorization", &format!("Bearer {ALICE_KEY}"))]).await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["headers"]["x-consumer-name"], "alice");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");

    // The apikey header works on the same route.
    let r = get_with(&url, &[("apikey", CAROL_KEY)]).await;
    assert_eq!(r.json()["headers"]["x-consumer-name"], "carol");

    // Bearer off: Authorization is not a key source.
    let r = get_with(
        &gw.url("/default"),
        &[("authorization", &format!("Bearer {ALICE_KEY}"))],
    )
    .await;
    assert_401(&r, "no API key in the request", &[KEY_CHALLENGE]);

    let missing = bearer_challenge(None);
    assert_401(
        &get_with(&url, &[("authorization", "Basic dXNlcjpwdw==")]).await,
        "no API key in the request",
        &[KEY_CHALLENGE, &missing],
    );
    let invalid = bearer_challenge(Some("invalid_token"));
    assert_401(
        &get_with(&url, &[("authorization", &format!("Bearer {WRONG_KEY}"))]).await,
        "the API key is not valid",
        &[KEY_CHALLENGE, &invalid],
    );
    let ambiguous = bearer_challenge(Some("invalid_request"));
    assert_401(
        &get_with(
            &url,
            &[
                ("apikey", ALICE_KEY),
                ("authorization", &format!("Bearer {CAROL_KEY}")),
            ],
        )
        .await,
        "more than one API key in the request",
        &[KEY_CHALLENGE, &ambiguous],
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn query_mode_reads_and_strips_only_the_configured_parameter() {
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, &ROUTES)).await;

    let r = get(&gw.url(&format!(
        "/query/items?page=2&api_key={ALICE_KEY}&sort=name"
    )))
    .await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["headers"]["x-consumer-name"], "alice");
    assert_eq!(seen["path"], "/query/items");
    assert_eq!(seen["query"], "page=2&sort=name");
    assert_no_secret("what the upstream saw", &seen.to_string());

    let r = get(&gw.url(&format!("/query?api_key={CAROL_KEY}"))).await;
    assert_eq!(r.json()["headers"]["x-consumer-name"], "carol");
    assert_eq!(
        r.json()["query"],
        serde_json::Value::Null,
        "empty query dropped"
    );

    let challenge = r#"Key realm="ferrox", header="apikey", query="api_key""#;
    assert_401(
        &get(&gw.url(&format!("/query?api_key={WRONG_KEY}"))).await,
        "the API key is not valid",
        &[challenge],
    );
    assert_401(
        &get(&gw.url(&format!("/query?api_key={ALICE_KEY}&api_key={CAROL_KEY}"))).await,
        "more than one API key in the request",
        &[challenge],
    );
    // Never read where not configured.
    assert_401(
        &get(&gw.url(&format!("/default?apikey={ALICE_KEY}&api_key={ALICE_KEY}"))).await,
        "no API key in the request",
        &[KEY_CHALLENGE],
    );
    assert_eq!(up.hits(), 2);
}

/// A tracing subscriber that keeps every event (with its fields) and span as text.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

/// One process-wide capture. A thread-scoped subscriber misses events whose callsites other
/// tests (running in parallel without a subscriber) registered first, so the capture is the
/// global default, installed once, and records only the gateway's own targets.
pub(crate) fn global_capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let c = Capture::default();
            tracing::subscriber::set_global_default(c.clone())
                .expect("no other global subscriber in the test binary");
            c
        })
        .clone()
}

impl Capture {
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().expect("capture lock").clone()
    }
    fn push(&self, line: String) {
        self.0.lock().expect("capture lock").push(line);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target().starts_with("ferrox")
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Fields(&mut line));
        self.push(line);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = "record".to_owned();
        values.record(&mut Fields(&mut line));
        self.push(line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut line));
        self.push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Keys appear nowhere: not in 401 bodies (checked above), not in `/metrics`, not in the
/// gateway's log (the filter's own lines and the access log), captured in-process. The test
/// runtime is single-threaded, so the gateway's tasks and the filter calls run on this thread
/// and a thread-scoped subscriber sees them.
#[tokio::test]
async fn keys_never_reach_metrics_or_logs_and_outcomes_are_counted() {
    let capture = global_capture();
    let up = echo_upstream().await;
    let gw = gateway(&doc(up.addr, &ROUTES)).await;

    let ok = [
        get_with(&gw.url("/default"), &[("apikey", ALICE_KEY)]).await,
        get_with(
            &gw.url("/bearer"),
            &[("authorization", &format!("Bearer {CAROL_KEY}"))],
        )
        .await,
        get(&gw.url(&format!("/query?api_key={ALICE_KEY}"))).await,
    ];
    assert!(ok.iter().all(|r| r.status == 200));
    let refused = [
        get(&gw.url("/default")).await,
        get_with(&gw.url("/default"), &[("apikey", WRONG_KEY)]).await,
        get(&gw.url(&format!("/query?api_key={WRONG_KEY}"))).await,
        get_with(
            &gw.url("/bearer"),
            &[
                ("apikey", ALICE_KEY),
                ("authorization", &format!("Bearer {WRONG_KEY}")),
            ],
        )
        .await,
    ];
    for r in &refused {
        assert_eq!(r.status, 401);
        assert_no_secret("a 401 body", &String::from_utf8_lossy(&r.body));
    }

    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "ferrox_plugin_counter_total{name=\"auth_success\",plugin=\"key-auth\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "ferrox_plugin_counter_total{name=\"auth_failure\",plugin=\"key-auth\"}"
        ),
        Some(4.0),
        "{m}"
    );
    assert_no_secret("/metrics", &m);

    let lines = capture.lines();
    let filter_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("ferrox::filter"))
        .collect();
    // The capture works: the filter's lines are there, naming the consumer or the reason.
    for expected in [
        "authenticated consumer alice",
        "authenticated consumer carol",
        "rejected: missing key",
        "rejected: unknown key",
        "rejected: ambiguous",
    ] {
        assert!(
            filter_lines.iter().any(|l| l.contains(expected)),
            "no filter log line with {expected:?} in {lines:#?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("ferrox::access")),
        "access log captured: {lines:#?}"
    );
    for line in &lines {
        assert_no_secret("the log", line);
    }
}

#[tokio::test]
async fn key_auth_cannot_fail_open() {
    let yaml = format!(
        "upstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: key-auth, on_error: open }}\n",
        upstream_yaml("u", &["127.0.0.1:9".parse().expect("addr")], "")
    );
    let err = ferrox_host::config::load_str(&yaml, &Default::default())
        .expect_err("on_error: open refused");
    let issues: Vec<String> = err.issues().iter().map(ToString::to_string).collect();
    assert!(
        issues
            .iter()
            .any(|i| i.starts_with("routes[0].filters[0].on_error:")
                && i.contains("authentication filters always fail closed")),
        "{issues:?}"
    );
}

#[tokio::test]
async fn a_bad_config_is_refused_with_the_field_named() {
    let yaml = doc(
        "127.0.0.1:9".parse().expect("addr"),
        &[("r", "{ header: apikey, hide_credential: false }")],
    );
    let cfg = ferrox_host::config::load_str(&yaml, &Default::default()).expect("valid document");
    let err = ferrox_host::gateway::Gateway::new(cfg)
        .await
        .expect_err("key-auth rejects its config");
    let text: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(
            |t| t.starts_with("routes[0].filters[0].config: rejected by key-auth:")
                && t.contains("unknown field `hide_credential`")
        ),
        "{text:?}"
    );
}
