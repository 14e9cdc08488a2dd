//! `ferrox plugin test FILE.wasm --request fixtures.yaml`: golden tests for a filter without a
//! gateway. The component runs in the gateway's own runtime — the same engine, linker, grant
//! check, host services (a local state store) and instance pool — against written requests, and
//! each outcome is compared with the expected one. The format is documented in
//! `docs/writing-filters.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use crate::config::units::{ByteSize, Dur};
use crate::metrics::Metrics;
use crate::plugin::host::{Credentials, Services};
use crate::plugin::{
    FilterFailure, FilterPool, Flow, Isolation, Plugin, PoolSettings, RequestState, ResponseState,
};

/// A fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    /// How the filter is configured, as on a route.
    #[serde(default)]
    pub plugin: PluginFixture,
    /// Consumers and their API keys, for the `credentials` service.
    #[serde(default)]
    pub consumers: Vec<ConsumerFixture>,
    /// The requests and what must happen to them.
    pub cases: Vec<Case>,
}

/// The filter's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginFixture {
    /// Plugin name (metrics, logs, key namespaces). Default: the file's stem.
    pub name: Option<String>,
    /// Host services granted. Default: the ones the component imports.
    pub grants: Option<Vec<String>>,
    /// The filter's JSON config.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Deadline of one call (default as on a route: 5ms).
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Memory cap of one instance (default as on a route: 16MiB).
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
}

impl Default for PluginFixture {
    fn default() -> Self {
        Self {
            name: None,
            grants: None,
            config: empty_object(),
            timeout: default_timeout(),
            memory: default_memory(),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
fn default_timeout() -> Dur {
    Dur::millis(5)
}
fn default_memory() -> ByteSize {
    ByteSize::mib(16)
}

/// A consumer with API keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerFixture {
    /// Its name.
    pub name: String,
    /// Its keys (plaintext or `sha256:<hex>`).
    pub keys: Vec<String>,
}

/// One request and its expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in the report.
    pub name: String,
    /// A config for this case only (e.g. to check that `init` rejects it).
    pub config: Option<serde_json::Value>,
    /// The request.
    #[serde(default)]
    pub request: RequestFixture,
    /// The upstream's response, to run `on-response` on when the filter lets the request go.
    pub response: Option<ResponseFixture>,
    /// What must happen.
    pub expect: Expect,
}

/// A request as the filter sees it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFixture {
    /// Method.
    #[serde(default = "get")]
    pub method: String,
    /// Path (after the route's prefix handling).
    #[serde(default = "root")]
    pub path: String,
    /// Query string without `?`.
    pub query: Option<String>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Client address.
    #[serde(default = "localhost")]
    pub client_ip: IpAddr,
    /// A consumer an earlier filter authenticated.
    pub consumer: Option<String>,
    /// Route name.
    #[serde(default = "route")]
    pub route: String,
}

impl Default for RequestFixture {
    fn default() -> Self {
        Self {
            method: get(),
            path: root(),
            query: None,
            headers: BTreeMap::new(),
            client_ip: localhost(),
            consumer: None,
            route: route(),
        }
    }
}

fn get() -> String {
    "GET".into()
}
fn root() -> String {
    "/".into()
}
fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}
fn route() -> String {
    "fixture".into()
}

/// An upstream response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFixture {
    /// Status.
    #[serde(default = "ok")]
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn ok() -> u16 {
    200
}

/// What the filter does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It lets the request go on.
    Continue,
    /// It answers.
    Respond,
    /// It traps.
    Trap,
    /// Its deadline passes.
    Timeout,
    /// It hits its memory cap.
    Memory,
    /// `init` rejects the config.
    Config,
}

/// The expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// What happens.
    pub outcome: Outcome,
    /// Status the client gets (the filter's answer, or the upstream response after
    /// `on-response`).
    pub status: Option<u16>,
    /// Headers the client gets, with these values (`"*"`: present with any value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers the client does not get.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Text the filter's answer body contains.
    pub body: Option<String>,
    /// Text the failure message contains (trap, config).
    pub error: Option<String>,
    /// The request as it goes upstream (`continue`).
    pub upstream: Option<UpstreamExpect>,
}

/// The request the upstream would get.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamExpect {
    /// Forwarded path.
    pub path: Option<String>,
    /// Forwarded query (`""`: none).
    pub query: Option<String>,
    /// Headers with these values (`"*"`: present).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers not forwarded.
    #[serde(default)]
    pub absent: Vec<String>,
    /// The consumer named by the filter (`""`: none).
    pub consumer: Option<String>,
}

fn header_map(h: &BTreeMap<String, String>, what: &str) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in h {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("{what}: {k:?} is not a header name"))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| format!("{what}.{k}: not a header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Compare headers; each mismatch is one line of `diff`.
fn check_headers(
    diff: &mut String,
    what: &str,
    got: &HeaderMap,
    want: &BTreeMap<String, String>,
    absent: &[String],
) {
    for (k, v) in want {
        match text(got, k) {
            Some(g) if v == "*" || &g == v => {}
            g => {
                let _ = writeln!(diff, "  {what} header {k}: expected {v:?}, got {g:?}");
            }
        }
    }
    for k in absent {
        if let Some(g) = text(got, k) {
            let _ = writeln!(diff, "  {what} header {k}: expected absent, got {g:?}");
        }
    }
}

/// Settings of the fixture's pools: as on a route, one warm instance reused across cases.
fn settings(p: &PluginFixture) -> PoolSettings {
    PoolSettings {
        timeout: p.timeout.0,
        memory: usize::try_from(p.memory.0).unwrap_or(usize::MAX),
        isolation: Isolation::Pooled,
        max_idle: 1,
        max_uses: u32::MAX,
    }
}

fn failure_outcome(f: &FilterFailure) -> Outcome {
    match f {
        FilterFailure::Timeout => Outcome::Timeout,
        FilterFailure::Memory => Outcome::Memory,
        FilterFailure::Trap(_) => Outcome::Trap,
        FilterFailure::Config(_) => Outcome::Config,
    }
}

fn check_failure(diff: &mut String, expect: &Expect, got: &FilterFailure) {
    let outcome = failure_outcome(got);
    if outcome != expect.outcome {
        // A trap's whole text: the guest's backtrace is what the author needs.
        let detail = match got {
            FilterFailure::Trap(t) => t.replace('\n', "\n    "),
            other => other.to_string(),
        };
        let _ = writeln!(
            diff,
            "  outcome: expected {:?}, got {outcome:?} ({detail})",
            expect.outcome
        );
    } else if let Some(e) = &expect.error
        && !got.to_string().contains(e.as_str())
    {
        let _ = writeln!(
            diff,
            "  error: expected to contain {e:?}, got {:?}",
            got.to_string()
        );
    }
}

/// Run one case on `pool`; returns the diff (empty when it passed).
async fn run_case(pool: &FilterPool, case: &Case) -> Result<String, String> {
    let r = &case.request;
    let what = format!("cases[{}].request", case.name);
    let method = Method::from_bytes(r.method.as_bytes())
        .map_err(|_| format!("{what}.method: not a method"))?;
    if !r.path.starts_with('/') {
        return Err(format!("{what}.path: must start with /"));
    }
    let request_id = HeaderValue::from_static("fixture-request");
    let mut req = Some(RequestState {
        method,
        path: r.path.clone(),
        query: r.query.clone(),
        headers: header_map(&r.headers, &format!("{what}.headers"))?,
        client_ip: r.client_ip,
        route: r.route.as_str().into(),
        request_id,
        consumer: r.consumer.clone(),
        context: Vec::new(),
        cache: Default::default(),
    });
    let e = &case.expect;
    let mut diff = String::new();
    let flow = match pool.on_request(&mut req).await.result {
        Ok(flow) => flow,
        Err(f) => {
            check_failure(&mut diff, e, &f);
            return Ok(diff);
        }
    };
    let (got, mut resp, body) = match flow {
        Flow::Continue => {
            let resp = match &case.response {
                Some(rf) => Some(ResponseState {
                    status: StatusCode::from_u16(rf.status)
                        .map_err(|_| format!("cases[{}].response.status: invalid", case.name))?,
                    headers: header_map(&rf.headers, &format!("cases[{}].response", case.name))?,
                    store: None,
                }),
                None => None,
            };
            (Outcome::Continue, resp, None)
        }
        Flow::Respond(reply) => {
            let mut headers = HeaderMap::new();
            for (k, v) in &reply.headers {
                match (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    (Ok(n), Ok(v)) => {
                        headers.append(n, v);
                    }
                    _ => {
                        let _ = writeln!(diff, "  the answer has an invalid header {k:?}");
                    }
                }
            }
            let status = StatusCode::from_u16(reply.status)
                .ok()
                .filter(|s| !s.is_informational());
            let Some(status) = status else {
                let _ = writeln!(
                    diff,
                    "  the answer's status {} is invalid: the gateway would fail the filter",
                    reply.status
                );
                return Ok(diff);
            };
            let resp = ResponseState {
                status,
                headers,
                store: None,
            };
            (Outcome::Respond, Some(resp), Some(reply.body))
        }
    };
    if got != e.outcome {
        let _ = writeln!(diff, "  outcome: expected {:?}, got {got:?}", e.outcome);
        if let Some(s) = resp.as_ref().filter(|_| got == Outcome::Respond) {
            let _ = writeln!(diff, "  (the filter answered {})", s.status.as_u16());
        }
        return Ok(diff);
    }
    if let (Some(u), Some(rq)) = (&e.upstream, req.as_ref()) {
        if let Some(p) = &u.path
            && p != &rq.path
        {
            let _ = writeln!(diff, "  upstream path: expected {p:?}, got {:?}", rq.path);
        }
        if let Some(q) = &u.query {
            let want = (!q.is_empty()).then_some(q);
            if want != rq.query.as_ref() {
                let _ = writeln!(
                    diff,
                    "  upstream query: expected {want:?}, got {:?}",
                    rq.query
                );
            }
        }
        if let Some(c) = &u.consumer {
            let want = (!c.is_empty()).then_some(c);
            if want != rq.consumer.as_ref() {
                let _ = writeln!(
                    diff,
                    "  upstream consumer: expected {want:?}, got {:?}",
                    rq.consumer
                );
            }
        }
        check_headers(&mut diff, "upstream", &rq.headers, &u.headers, &u.absent);
    }
    // The response hook runs as in the gateway: on the upstream's response, or on the
    // filter's own answer.
    if resp.is_some() {
        if let Err(f) = pool.on_response(&mut req, &mut resp).await.result {
            let _ = writeln!(diff, "  on-response failed: {f}");
            return Ok(diff);
        }
    } else if e.status.is_some() || !e.headers.is_empty() || !e.absent.is_empty() {
        let _ = writeln!(
            diff,
            "  the case expects a response but gives none for the upstream (add `response:`)"
        );
    }
    if let Some(s) = resp.as_ref() {
        if let Some(want) = e.status
            && want != s.status.as_u16()
        {
            let _ = writeln!(diff, "  status: expected {want}, got {}", s.status.as_u16());
        }
        check_headers(&mut diff, "response", &s.headers, &e.headers, &e.absent);
    }
    if let Some(want) = &e.body {
        let got = body
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if !got.contains(want.as_str()) {
            let _ = writeln!(diff, "  body: expected to contain {want:?}, got {got:?}");
        }
    }
    Ok(diff)
}

/// Run every case; returns the report and whether all passed.
pub async fn run_fixtures(
    wasm: &[u8],
    default_name: &str,
    fixtures: &Fixtures,
) -> Result<(String, bool), String> {
    let p = &fixtures.plugin;
    let name = p.name.clone().unwrap_or_else(|| default_name.to_owned());
    let grants = match &p.grants {
        Some(g) => g.clone(),
        None => crate::plugin::inspect::describe(wasm)?.services,
    };
    let plugin = Plugin::load(&name, wasm, &grants)?;
    let services = Services::new(Metrics::new());
    let keys: Vec<(&str, &str)> = fixtures
        .consumers
        .iter()
        .flat_map(|c| c.keys.iter().map(|k| (k.as_str(), c.name.as_str())))
        .collect();
    services.credentials.store(Arc::new(
        Credentials::build(keys).map_err(|e| format!("consumers: {e}"))?,
    ));
    let mut shared: Option<Result<FilterPool, FilterFailure>> = None;
    let mut report = String::new();
    let mut failed = 0;
    for case in &fixtures.cases {
        let own;
        let pool = match &case.config {
            Some(config) => {
                own = FilterPool::new(
                    plugin.clone(),
                    config.to_string(),
                    case.request.route.as_str().into(),
                    services.clone(),
                    settings(p),
                )
                .await;
                &own
            }
            None => {
                if shared.is_none() {
                    shared = Some(
                        FilterPool::new(
                            plugin.clone(),
                            p.config.to_string(),
                            "fixture".into(),
                            services.clone(),
                            settings(p),
                        )
                        .await,
                    );
                }
                shared.as_ref().ok_or("no pool")?
            }
        };
        let diff = match pool {
            Ok(pool) => run_case(pool, case).await?,
            Err(f) => {
                let mut diff = String::new();
                check_failure(&mut diff, &case.expect, f);
                diff
            }
        };
        if diff.is_empty() {
            let _ = writeln!(report, "ok    {}", case.name);
        } else {
            failed += 1;
            let _ = write!(report, "FAIL  {}\n{diff}", case.name);
        }
    }
    let passed = fixtures.cases.len() - failed;
    let _ = writeln!(report, "\n{passed} passed, {failed} failed");
    Ok((report, failed == 0))
}

/// `ferrox plugin test`.
pub(super) fn run(file: &Path, fixtures: &Path) -> Result<ExitCode, String> {
    let wasm = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let text = std::fs::read_to_string(fixtures)
        .map_err(|e| format!("cannot read {}: {e}", fixtures.display()))?;
    let parsed: Fixtures =
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text))
            .map_err(|e| format!("{}: {}: {}", fixtures.display(), e.path(), e.inner()))?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "filter".into());
    let (report, ok) = super::runtime()?.block_on(run_fixtures(&wasm, &name, &parsed))?;
    print!("{report}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
