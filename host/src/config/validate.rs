//! Semantic validation: every error in the document, each with its path
//! (`routes[2].upstream: unknown upstream "userz"`). Pure functions, no I/O.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

use http::uri::{Authority, Scheme};

use super::model::{Balance, GatewayConfig, MatchConfig, RouteConfig, UpstreamConfig};

/// Built-in plugins that authenticate: they never fail open.
pub const AUTH_PLUGINS: [&str; 2] = ["key-auth", "jwt-auth"];

/// One problem in a configuration document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: `routes[2].upstream`.
    pub path: String,
    /// What is wrong, and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Collects issues while walking the document.
#[derive(Default)]
pub struct Issues(pub Vec<ConfigIssue>);

impl Issues {
    /// Record an issue at `path`.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A parsed upstream target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetAddr {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`, as sent in requests.
    pub authority: Authority,
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme == Scheme::HTTPS {
            write!(f, "https://{}", self.authority)
        } else {
            write!(f, "{}", self.authority)
        }
    }
}

/// Parse `host:port`, `http://host[:port]` or `https://host[:port]`.
pub fn parse_target(raw: &str) -> Result<TargetAddr, String> {
    let (scheme, rest) = if let Some(rest) = raw.strip_prefix("https://") {
        (Scheme::HTTPS, rest)
    } else if let Some(rest) = raw.strip_prefix("http://") {
        (Scheme::HTTP, rest)
    } else if raw.contains("://") {
        return Err(format!(
            "target {raw:?} has an unsupported scheme; use host:port, http:// or https://"
        ));
    } else {
        (Scheme::HTTP, raw)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(format!(
            "target {raw:?} must be host:port without path, query or user info"
        ));
    }
    let with_port = if rest.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':')
    }) {
        rest.to_string()
    } else {
        let port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        format!("{rest}:{port}")
    };
    let authority: Authority = with_port
        .parse()
        .map_err(|_| format!("target {raw:?} is not a valid host:port"))?;
    if authority.host().is_empty() || authority.port_u16().is_none_or(|p| p == 0) {
        return Err(format!("target {raw:?} needs a host and a non-zero port"));
    }
    Ok(TargetAddr { scheme, authority })
}

/// `database_url` and `request_logs`.
fn check_database(issues: &mut Issues, cfg: &GatewayConfig) {
    if let Some(url) = &cfg.database_url
        && let Err(e) = crate::store::pg::connect_options(url)
    {
        issues.add(
            "database_url",
            e.to_string().trim_start_matches("database_url: "),
        );
    }
    let rl = &cfg.request_logs;
    if rl.queue == 0 || rl.queue > 1_000_000 {
        issues.add("request_logs.queue", "must be between 1 and 1000000");
    }
    if rl.batch == 0 || rl.batch > 10_000 {
        issues.add("request_logs.batch", "must be between 1 and 10000");
    }
    if rl.flush_interval.0 < std::time::Duration::from_millis(1)
        || rl.flush_interval.0 > std::time::Duration::from_secs(60)
    {
        issues.add("request_logs.flush_interval", "must be between 1ms and 60s");
    }
    if rl.retention.0 < std::time::Duration::from_secs(60) {
        issues.add("request_logs.retention", "must be at least 1m");
    }
}

/// `tracing`: the OTLP endpoint, the sample ratio, export headers and the queue's bounds.
fn check_tracing(issues: &mut Issues, cfg: &GatewayConfig) {
    use std::time::Duration;
    let Some(t) = &cfg.tracing else { return };
    match t.otlp_endpoint.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
                && uri.query().is_none() => {}
        _ => issues.add(
            "tracing.otlp_endpoint",
            format!(
                "{:?} is not an http:// or https:// URL without a query",
                t.otlp_endpoint
            ),
        ),
    }
    if t.service_name.is_empty() {
        issues.add("tracing.service_name", "must not be empty");
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        issues.add("tracing.sample_ratio", "must be between 0.0 and 1.0");
    }
    for (name, value) in &t.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            issues.add(
                format!("tracing.headers.{name}"),
                "is not a valid header name",
            );
        } else if http::HeaderValue::from_str(value).is_err() {
            issues.add(
                format!("tracing.headers.{name}"),
                "is not a valid header value",
            );
        }
    }
    if t.timeout.0 < Duration::from_millis(1) || t.timeout.0 > Duration::from_secs(60) {
        issues.add("tracing.timeout", "must be between 1ms and 60s");
    }
    if t.queue == 0 || t.queue > 1_000_000 {
        issues.add("tracing.queue", "must be between 1 and 1000000");
    }
    if t.batch == 0 || t.batch > 10_000 {
        issues.add("tracing.batch", "must be between 1 and 10000");
    }
    if t.flush_interval.0 < Duration::from_millis(1) || t.flush_interval.0 > Duration::from_secs(60)
    {
        issues.add("tracing.flush_interval", "must be between 1ms and 60s");
    }
}

/// Validate a parsed document; returns every issue found (empty when valid).
pub fn validate(cfg: &GatewayConfig) -> Vec<ConfigIssue> {
    let mut issues = Issues::default();
    check_addr(&mut issues, "listen", &cfg.listen);
    check_addr(&mut issues, "admin.listen", &cfg.admin.listen);
    if let Ok(addr) = cfg.admin.listen.parse::<SocketAddr>()
        && !addr.ip().is_loopback()
        && cfg.admin.token.as_deref().is_none_or(str::is_empty)
    {
        issues.add(
                "admin.listen",
                format!(
                    "{addr} is not a loopback address: set admin.token (or FERROX_ADMIN_TOKEN) to expose the admin API"
                ),
            );
    }
    if cfg.admin.token.as_deref() == Some("") {
        issues.add("admin.token", "must not be empty");
    }
    let hb = cfg.admin.heartbeat_interval;
    if hb.0 < std::time::Duration::from_millis(100) || hb.0 > std::time::Duration::from_secs(300) {
        issues.add(
            "admin.heartbeat_interval",
            format!("must be between 100ms and 5m (got {hb})"),
        );
    }
    if let Err(message) = crate::state::check_state(&cfg.state) {
        issues.add("state", message);
    }
    check_database(&mut issues, cfg);
    check_tracing(&mut issues, cfg);
    let so = &cfg.state_options;
    if so.timeout.0 < std::time::Duration::from_millis(1)
        || so.timeout.0 > std::time::Duration::from_secs(10)
    {
        issues.add(
            "state_options.timeout",
            format!("must be between 1ms and 10s (got {})", so.timeout),
        );
    }
    if so.key_prefix.len() > 128 {
        issues.add("state_options.key_prefix", "must be at most 128 bytes");
    }
    let s = &cfg.server;
    if s.max_headers == 0 || s.max_headers > 1000 {
        issues.add("server.max_headers", "must be between 1 and 1000");
    }
    if s.max_header_bytes.0 < 1024 || s.max_header_bytes.0 > 1024 * 1024 {
        issues.add("server.max_header_bytes", "must be between 1KiB and 1MiB");
    }
    if s.header_read_timeout.0.is_zero() {
        issues.add("server.header_read_timeout", "must be greater than zero");
    }
    if s.body_idle_timeout.0.is_zero() {
        issues.add("server.body_idle_timeout", "must be greater than zero");
    }
    if s.keepalive_timeout.0.is_zero() {
        issues.add("server.keepalive_timeout", "must be greater than zero");
    }
    if s.max_concurrent_streams == 0 {
        issues.add("server.max_concurrent_streams", "must be at least 1");
    }
    if http::HeaderName::from_bytes(s.request_id_header.as_bytes()).is_err() {
        issues.add(
            "server.request_id_header",
            format!("{:?} is not a valid header name", s.request_id_header),
        );
    }

    let mut upstream_names = HashMap::new();
    for (i, up) in cfg.upstreams.iter().enumerate() {
        let path = format!("upstreams[{i}]");
        if let Some(first) = upstream_names.insert(up.name.as_str(), i) {
            issues.add(
                format!("{path}.name"),
                format!(
                    "duplicate upstream name {:?} (also upstreams[{first}])",
                    up.name
                ),
            );
        }
        check_upstream(&mut issues, &path, up);
    }

    let mut plugin_names: HashSet<&str> = crate::builtin::names().into_iter().collect();
    for (i, p) in cfg.plugins.iter().enumerate() {
        let ppath = format!("plugins[{i}]");
        check_name(&mut issues, format!("{ppath}.name"), &p.name);
        if !plugin_names.insert(p.name.as_str()) {
            issues.add(
                format!("{ppath}.name"),
                format!(
                    "duplicate plugin name {:?} (built-in or declared earlier)",
                    p.name
                ),
            );
        }
        for (k, g) in p.grants.iter().enumerate() {
            if !crate::plugin::SERVICES.contains(&g.as_str()) {
                issues.add(
                    format!("{ppath}.grants[{k}]"),
                    format!(
                        "unknown host service {g:?}; one of {}",
                        crate::plugin::SERVICES.join(", ")
                    ),
                );
            }
        }
    }
    let mut route_names = HashMap::new();
    let mut matchers: Vec<(usize, &MatchConfig)> = Vec::new();
    for (i, route) in cfg.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(first) = route_names.insert(route.name.as_str(), i) {
            issues.add(
                format!("{path}.name"),
                format!(
                    "duplicate route name {:?} (also routes[{first}])",
                    route.name
                ),
            );
        }
        check_route(&mut issues, &path, route, &upstream_names, &plugin_names);
        if let Some((j, _)) = matchers.iter().find(|(_, m)| **m == route.matcher) {
            issues.add(
                format!("{path}.match"),
                format!("same match as routes[{j}]; one of them could never be chosen"),
            );
        }
        matchers.push((i, &route.matcher));
    }

    let mut consumer_names = HashSet::new();
    for (i, c) in cfg.consumers.iter().enumerate() {
        if c.name.trim().is_empty() {
            issues.add(format!("consumers[{i}].name"), "must not be empty");
        } else if !consumer_names.insert(c.name.as_str()) {
            issues.add(
                format!("consumers[{i}].name"),
                format!("duplicate consumer name {:?}", c.name),
            );
        }
    }
    check_jwt_credentials(&mut issues, cfg);
    issues.0
}

/// Each JWT credential on its own, then across consumers: a `key_id` names one credential,
/// and an issuer has at most one credential without `key_id` (the one its tokens without a
/// known `kid` use).
fn check_jwt_credentials(issues: &mut Issues, cfg: &GatewayConfig) {
    let mut key_ids: HashMap<&str, String> = HashMap::new();
    let mut issuers: HashMap<&str, String> = HashMap::new();
    for (i, c) in cfg.consumers.iter().enumerate() {
        for (j, cred) in c.jwt.iter().enumerate() {
            let path = format!("consumers[{i}].jwt[{j}]");
            for (field, message) in crate::jwt::check_credential(cred) {
                issues.add(format!("{path}.{field}"), message);
            }
            let (field, taken, value) = match &cred.key_id {
                Some(kid) => ("key_id", &mut key_ids, kid.as_str()),
                None => ("issuer", &mut issuers, cred.issuer.as_str()),
            };
            if let Some(first) = taken.get(value) {
                let message = if field == "key_id" {
                    format!("key_id {value:?} is also used by {first}")
                } else {
                    format!(
                        "issuer {value:?} already has a credential without key_id ({first}); \
                         give each of them a key_id"
                    )
                };
                issues.add(format!("{path}.{field}"), message);
            } else {
                taken.insert(value, path);
            }
        }
    }
}

fn check_addr(issues: &mut Issues, path: &str, value: &str) {
    if value.parse::<SocketAddr>().is_err() {
        issues.add(
            path,
            format!("{value:?} is not an address; write ip:port, e.g. 127.0.0.1:8080"),
        );
    }
}

fn check_name(issues: &mut Issues, path: String, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        issues.add(
            path,
            format!("{name:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"),
        );
    }
}

fn check_upstream(issues: &mut Issues, path: &str, up: &UpstreamConfig) {
    check_name(issues, format!("{path}.name"), &up.name);
    if up.targets.is_empty() {
        issues.add(format!("{path}.targets"), "needs at least one target");
    }
    for (j, t) in up.targets.iter().enumerate() {
        if let Err(e) = parse_target(t) {
            issues.add(format!("{path}.targets[{j}]"), e);
        }
    }
    match (&up.balance, &up.hash_header) {
        (Balance::Hash, None) => issues.add(
            format!("{path}.hash_header"),
            "required when balance is `hash`",
        ),
        (Balance::Hash, Some(h)) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => issues
            .add(
                format!("{path}.hash_header"),
                format!("{h:?} is not a valid header name"),
            ),
        (Balance::RoundRobin | Balance::LeastRequests, Some(_)) => issues.add(
            format!("{path}.hash_header"),
            "only used with `balance: hash`",
        ),
        _ => {}
    }
    if let Some(hc) = &up.health_check {
        if !hc.path.starts_with('/') {
            issues.add(format!("{path}.health_check.path"), "must start with '/'");
        }
        if hc.interval.0.is_zero() {
            issues.add(
                format!("{path}.health_check.interval"),
                "must be greater than zero",
            );
        }
        if hc.timeout.0.is_zero() {
            issues.add(
                format!("{path}.health_check.timeout"),
                "must be greater than zero",
            );
        }
        if hc.healthy == 0 {
            issues.add(format!("{path}.health_check.healthy"), "must be at least 1");
        }
        if hc.unhealthy == 0 {
            issues.add(
                format!("{path}.health_check.unhealthy"),
                "must be at least 1",
            );
        }
    }
    if up.circuit_breaker.failures == 0 {
        issues.add(
            format!("{path}.circuit_breaker.failures"),
            "must be at least 1",
        );
    }
    if up.circuit_breaker.cooldown.0.is_zero() {
        issues.add(
            format!("{path}.circuit_breaker.cooldown"),
            "must be greater than zero",
        );
    }
    for (field, d) in [
        ("connect", up.timeouts.connect),
        ("request", up.timeouts.request),
        ("idle", up.timeouts.idle),
    ] {
        if d.0.is_zero() {
            issues.add(
                format!("{path}.timeouts.{field}"),
                "must be greater than zero",
            );
        }
    }
    if up.retries > 10 {
        issues.add(format!("{path}.retries"), "must be 10 or less");
    }
    if !(0.0..=1.0).contains(&up.retry_budget.ratio) {
        issues.add(
            format!("{path}.retry_budget.ratio"),
            "must be between 0.0 and 1.0",
        );
    }
}

fn check_route(
    issues: &mut Issues,
    path: &str,
    route: &RouteConfig,
    upstreams: &HashMap<&str, usize>,
    plugins: &HashSet<&str>,
) {
    check_name(issues, format!("{path}.name"), &route.name);
    if !upstreams.contains_key(route.upstream.as_str()) {
        issues.add(
            format!("{path}.upstream"),
            format!("unknown upstream {:?}", route.upstream),
        );
    }
    let m = &route.matcher;
    match (&m.path, &m.path_prefix) {
        (Some(_), Some(_)) => issues.add(
            format!("{path}.match"),
            "give either `path` or `path_prefix`, not both",
        ),
        (None, None) => issues.add(
            format!("{path}.match"),
            "needs `path` or `path_prefix` (use `path_prefix: /` to match everything)",
        ),
        _ => {}
    }
    for (field, p) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
        if let Some(p) = p {
            if !p.starts_with('/') {
                issues.add(format!("{path}.match.{field}"), "must start with '/'");
            } else if crate::router::normalize_path(p).as_deref() != Ok(p.as_str())
                && !(field == "path_prefix" && p.ends_with('/') && p.len() > 1)
            {
                issues.add(
                    format!("{path}.match.{field}"),
                    format!("{p:?} is not a normalised path (no `//`, `.` or `..` segments)"),
                );
            }
        }
    }
    let hosts = m.hosts.iter().chain(m.host.iter());
    for (j, h) in hosts.enumerate() {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        let ok = !bare.is_empty()
            && !bare.contains('*')
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !ok {
            issues.add(
                format!("{path}.match.hosts[{j}]"),
                format!("{h:?} is not a host name (wildcards only as a leading `*.`)"),
            );
        }
    }
    for (j, meth) in m.methods.iter().enumerate() {
        match http::Method::from_bytes(meth.as_bytes()) {
            Ok(x) if x == http::Method::CONNECT => issues.add(
                format!("{path}.match.methods[{j}]"),
                "CONNECT is never proxied",
            ),
            Ok(_) if meth.bytes().all(|b| b.is_ascii_uppercase()) => {}
            _ => issues.add(
                format!("{path}.match.methods[{j}]"),
                format!("{meth:?} is not an upper-case HTTP method"),
            ),
        }
    }
    for (name, value) in &m.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            issues.add(
                format!("{path}.match.headers.{name}"),
                "not a valid header name",
            );
        }
        if http::HeaderValue::from_str(value).is_err() {
            issues.add(
                format!("{path}.match.headers.{name}"),
                "not a valid header value",
            );
        }
    }
    if route.strip_prefix && m.path_prefix.is_none() {
        issues.add(format!("{path}.strip_prefix"), "needs `match.path_prefix`");
    }
    if route.strip_prefix && route.rewrite.is_some() {
        issues.add(
            format!("{path}.rewrite"),
            "give either `strip_prefix` or `rewrite`, not both",
        );
    }
    if let Some(r) = &route.rewrite
        && !r.starts_with('/')
    {
        issues.add(format!("{path}.rewrite"), "must start with '/'");
    }
    if route.filters.len() > crate::pipeline::MAX_FILTERS {
        issues.add(
            format!("{path}.filters"),
            format!("at most {} filters per route", crate::pipeline::MAX_FILTERS),
        );
    }
    for (j, f) in route.filters.iter().enumerate() {
        let fpath = format!("{path}.filters[{j}]");
        if !plugins.contains(f.plugin.as_str()) {
            issues.add(
                format!("{fpath}.plugin"),
                format!(
                    "unknown plugin {:?}; declare it under `plugins` (built-in: {})",
                    f.plugin,
                    crate::builtin::names().join(", ")
                ),
            );
        }
        if AUTH_PLUGINS.contains(&f.plugin.as_str())
            && f.on_error == crate::config::OnErrorConfig::Open
        {
            issues.add(
                format!("{fpath}.on_error"),
                "authentication filters always fail closed; remove `on_error: open`",
            );
        }
        if f.timeout.0.is_zero() || f.timeout.0 > std::time::Duration::from_secs(10) {
            issues.add(format!("{fpath}.timeout"), "must be between 1ms and 10s");
        }
        if f.memory.0 < 1024 * 1024 || f.memory.0 > crate::plugin::engine::MAX_MEMORY as u64 {
            issues.add(format!("{fpath}.memory"), "must be between 1MiB and 256MiB");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn issues_of(yaml: &str) -> Vec<String> {
        let cfg = parse_yaml(yaml).expect("parses");
        validate(&cfg).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_every_issue_with_its_path() {
        let got = issues_of(
            r#"
listen: nowhere
upstreams:
  - name: users
    targets: [127.0.0.1:9001, "ftp://x:1"]
    balance: hash
routes:
  - name: a
    match: { path_prefix: /api }
    upstream: users
  - name: b
    match: { path_prefix: /api }
    upstream: users
  - name: c
    match: { path: /x, methods: [get] }
    upstream: userz
"#,
        );
        let expected = [
            "listen: \"nowhere\" is not an address",
            "upstreams[0].targets[1]: target \"ftp://x:1\" has an unsupported scheme",
            "upstreams[0].hash_header: required when balance is `hash`",
            "routes[1].match: same match as routes[0]",
            "routes[2].upstream: unknown upstream \"userz\"",
            "routes[2].match.methods[0]: \"get\" is not an upper-case HTTP method",
        ];
        for e in expected {
            assert!(
                got.iter().any(|g| g.starts_with(e)),
                "missing {e:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), expected.len(), "{got:#?}");
    }

    #[test]
    fn targets_parse() {
        let t = parse_target("127.0.0.1:9001").expect("plain");
        assert_eq!(t.scheme, Scheme::HTTP);
        assert_eq!(t.authority.as_str(), "127.0.0.1:9001");
        let t = parse_target("https://api.example.com").expect("https");
        assert_eq!(t.authority.as_str(), "api.example.com:443");
        let t = parse_target("http://[::1]:8080").expect("ipv6");
        assert_eq!(t.authority.port_u16(), Some(8080));
        assert!(parse_target("127.0.0.1:0").is_err());
        assert!(parse_target("http://a:1/path").is_err());
    }

    #[test]
    fn non_loopback_admin_needs_token() {
        let got = issues_of("admin: { listen: 0.0.0.0:9080 }\n");
        assert!(
            got[0].starts_with("admin.listen: 0.0.0.0:9080 is not a loopback"),
            "{got:?}"
        );
        assert!(issues_of("admin: { listen: 0.0.0.0:9080, token: t }\n").is_empty());
    }

    #[test]
    fn heartbeat_interval_is_bounded() {
        assert!(issues_of("admin: { heartbeat_interval: 100ms }\n").is_empty());
        assert!(issues_of("admin: { heartbeat_interval: 5m }\n").is_empty());
        for bad in ["50ms", "301s"] {
            let got = issues_of(&format!("admin: {{ heartbeat_interval: {bad} }}\n"));
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(
                got[0].starts_with("admin.heartbeat_interval: must be between 100ms and 5m"),
                "{got:?}"
            );
        }
    }

    #[test]
    fn state_is_local_or_a_redis_url() {
        for ok in [
            "state: local\n",
            "state: redis://127.0.0.1:6379\n",
            "state: redis://:secret@redis.internal:6380/2\n",
            "state: redis+unix:///run/redis.sock\n",
            "state: redis://127.0.0.1\nstate_options: { timeout: 20ms, key_prefix: \"gw1:\" }\n",
        ] {
            assert!(issues_of(ok).is_empty(), "{ok}: {:?}", issues_of(ok));
        }
        for (yaml, expected) in [
            (
                "state: memcached\n",
                "state: \"memcached\" is not a state store",
            ),
            (
                "state: rediss://h:6379\n",
                "state: TLS to Redis (rediss://) is not supported",
            ),
            ("state: http://h:6379\n", "state: not a Redis URL"),
            (
                "state: redis://:pw@h:6379/x\n",
                "state: invalid Redis URL: Invalid database number",
            ),
            (
                "state: redis://h\nstate_options: { timeout: 0ms }\n",
                "state_options.timeout: must be between 1ms and 10s",
            ),
            (
                "state: redis://h\nstate_options: { timeout: 1m }\n",
                "state_options.timeout: must be between 1ms and 10s",
            ),
        ] {
            let got = issues_of(yaml);
            assert!(
                got.len() == 1 && got[0].starts_with(expected),
                "{yaml}: {got:?}"
            );
            assert!(!got[0].contains("pw"), "the password is not repeated");
        }
        let long = format!("state_options: {{ key_prefix: {:?} }}\n", "k".repeat(129));
        assert_eq!(
            issues_of(&long),
            ["state_options.key_prefix: must be at most 128 bytes"]
        );
        assert!(
            parse_yaml("state_options: { ttl: 5s }\n").is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn tracing_section_is_checked_with_paths() {
        assert!(issues_of("tracing: { otlp_endpoint: \"http://127.0.0.1:4318\" }\n").is_empty());
        assert!(
            issues_of(
                "tracing: { otlp_endpoint: \"https://otel.example:4318/prefix\", sample_ratio: 0.25, headers: { x-api-key: k } }\n"
            )
            .is_empty()
        );
        let got = issues_of(
            "tracing: { otlp_endpoint: \"ftp://x\", service_name: \"\", sample_ratio: 1.5, \
             headers: { \"bad name\": v }, timeout: 0s, queue: 0, batch: 0, flush_interval: 2m }\n",
        );
        assert_eq!(
            got,
            [
                "tracing.otlp_endpoint: \"ftp://x\" is not an http:// or https:// URL without a query",
                "tracing.service_name: must not be empty",
                "tracing.sample_ratio: must be between 0.0 and 1.0",
                "tracing.headers.bad name: is not a valid header name",
                "tracing.timeout: must be between 1ms and 60s",
                "tracing.queue: must be between 1 and 1000000",
                "tracing.batch: must be between 1 and 10000",
                "tracing.flush_interval: must be between 1ms and 60s",
            ]
        );
        assert!(parse_yaml("tracing: { otlp_endpoint: x, sampler: always }\n").is_err());
        assert!(parse_yaml("tracing: { service_name: x }\n").is_err());
    }
}
