//! The immutable runtime configuration the datapath reads: routes, upstreams and server
//! settings, built from a validated [`GatewayConfig`] and swapped atomically as a whole.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;

use crate::config::{
    ConfigIssue, FilterConfig, GatewayConfig, IsolationConfig, OnErrorConfig, RouteConfig,
    ServerConfig,
};
use crate::metrics::Metrics;
use crate::pipeline::{OnError, Pipeline, Stage};
use crate::plugin::host::{Credentials, Services};
use crate::plugin::{FilterFailure, FilterPool, Isolation, Plugin, PoolSettings};
use crate::proxy::health;
use crate::proxy::upstream::Upstream;
use crate::router::RouteTable;

/// A route at runtime.
#[derive(Debug)]
pub struct Route {
    /// Route name (metrics, logs).
    pub name: Arc<str>,
    /// Where requests go.
    pub upstream: Arc<Upstream>,
    /// Path handling before forwarding.
    pub path_rewrite: PathRewrite,
    /// Body limit in bytes.
    pub max_body: u64,
    /// WebSocket upgrades allowed.
    pub websocket: bool,
    /// `%2F` / `%5C` allowed in the path.
    pub allow_encoded_slashes: bool,
    /// `ferrox_request_duration_seconds{route}`, resolved once.
    pub duration: prometheus::Histogram,
    /// The route's filters.
    pub pipeline: Pipeline,
}

/// How the matched part of the path is changed before forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// Forward the normalised path as is.
    Keep,
    /// Remove the matched prefix.
    StripPrefix,
    /// Replace the matched prefix (or exact path) with this.
    Replace(String),
}

impl PathRewrite {
    /// Apply to a normalised path whose first `matched_len` bytes matched the route.
    pub fn apply(&self, path: &str, matched_len: usize) -> String {
        let rest = path.get(matched_len..).unwrap_or("");
        match self {
            PathRewrite::Keep => path.to_owned(),
            PathRewrite::StripPrefix => {
                if rest.is_empty() {
                    "/".to_owned()
                } else {
                    rest.to_owned()
                }
            }
            PathRewrite::Replace(to) => {
                if rest.is_empty() {
                    to.clone()
                } else {
                    format!("{}{rest}", to.trim_end_matches('/'))
                }
            }
        }
    }
}

/// Server settings resolved from [`ServerConfig`].
#[derive(Debug)]
pub struct ServerSettings {
    /// The parsed config.
    pub config: ServerConfig,
    /// Header carrying the request id.
    pub request_id_header: HeaderName,
}

/// Everything a request needs, immutable. A request keeps the snapshot it started with.
#[derive(Debug)]
pub struct Snapshot {
    /// The document this snapshot was built from.
    pub config: Arc<GatewayConfig>,
    /// Route table in precedence order.
    pub routes: RouteTable<Arc<Route>>,
    /// Upstreams by name.
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Downstream server settings.
    pub server: ServerSettings,
    /// Loaded plugins by name (carried over to the next snapshot when unchanged).
    pub plugins: HashMap<String, Arc<Plugin>>,
    /// API keys of the consumers.
    pub credentials: Arc<Credentials>,
}

impl Snapshot {
    /// Build from a validated config. Upstreams whose config did not change are carried over
    /// from `previous` with their pools, breakers and health state.
    pub async fn build(
        config: GatewayConfig,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
        services: &Arc<Services>,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let plugins = load_plugins(&config, previous, &mut issues);
        let credentials = build_credentials(&config, &services.jwks, &mut issues);
        let mut upstreams = HashMap::new();
        for (i, up) in config.upstreams.iter().enumerate() {
            let reused = previous
                .and_then(|p| p.upstreams.get(&up.name))
                .filter(|old| old.config == *up)
                .cloned();
            let built = match reused {
                Some(u) => u,
                None => match Upstream::build(up, metrics) {
                    Ok(u) => {
                        let u = Arc::new(u);
                        if let Some(hc) = &up.health_check {
                            health::spawn(Arc::downgrade(&u), hc.clone(), metrics.clone());
                        }
                        u
                    }
                    Err(message) => {
                        issues.push(ConfigIssue {
                            path: format!("upstreams[{i}]"),
                            message,
                        });
                        continue;
                    }
                },
            };
            upstreams.insert(up.name.clone(), built);
        }
        let mut routes: Vec<(&RouteConfig, Arc<Route>)> = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let Some(upstream) = upstreams.get(&r.upstream) else {
                issues.push(ConfigIssue {
                    path: format!("routes[{i}].upstream"),
                    message: format!("unknown upstream {:?}", r.upstream),
                });
                continue;
            };
            let path_rewrite = match (&r.rewrite, r.strip_prefix) {
                (Some(to), _) => PathRewrite::Replace(to.clone()),
                (None, true) => PathRewrite::StripPrefix,
                (None, false) => PathRewrite::Keep,
            };
            let pipeline = build_pipeline(i, r, &plugins, services, &mut issues).await;
            routes.push((
                r,
                Arc::new(Route {
                    name: r.name.as_str().into(),
                    upstream: upstream.clone(),
                    path_rewrite,
                    max_body: r.max_body.0,
                    websocket: r.websocket,
                    allow_encoded_slashes: r.allow_encoded_slashes,
                    duration: metrics
                        .request_duration
                        .with_label_values(&[r.name.as_str()]),
                    pipeline,
                }),
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let request_id_header = HeaderName::from_bytes(config.server.request_id_header.as_bytes())
            .map_err(|_| {
                vec![ConfigIssue {
                    path: "server.request_id_header".into(),
                    message: "not a valid header name".into(),
                }]
            })?;
        let table = RouteTable::new(routes);
        Ok(Self {
            routes: table,
            upstreams,
            server: ServerSettings {
                config: config.server.clone(),
                request_id_header,
            },
            config: Arc::new(config),
            plugins,
            credentials: Arc::new(credentials),
        })
    }
}

/// Load every plugin routes use: built-ins from the binary, custom ones from their files.
/// A plugin whose bytes and grants did not change is carried over from `previous`.
fn load_plugins(
    config: &GatewayConfig,
    previous: Option<&Snapshot>,
    issues: &mut Vec<ConfigIssue>,
) -> HashMap<String, Arc<Plugin>> {
    let used: std::collections::BTreeSet<&str> = config
        .routes
        .iter()
        .flat_map(|r| r.filters.iter().map(|f| f.plugin.as_str()))
        .collect();
    let mut loaded = HashMap::new();
    for name in used {
        let declared = config
            .plugins
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name);
        let (bytes, grants, path): (std::borrow::Cow<'_, [u8]>, Vec<String>, String) =
            match declared {
                Some((i, p)) => match std::fs::read(&p.path) {
                    Ok(b) => (b.into(), p.grants.clone(), format!("plugins[{i}]")),
                    Err(e) => {
                        issues.push(ConfigIssue {
                            path: format!("plugins[{i}].path"),
                            message: format!("cannot read {}: {e}", p.path),
                        });
                        continue;
                    }
                },
                None => match crate::builtin::get(name) {
                    Some((b, g)) => (
                        b.into(),
                        g.iter().map(|s| (*s).to_owned()).collect(),
                        format!("built-in plugin {name}"),
                    ),
                    None => continue, // reported by validation
                },
            };
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        if let Some(p) = previous
            .and_then(|s| s.plugins.get(name))
            .filter(|p| p.digest == digest && p.granted == grants)
        {
            loaded.insert(name.to_owned(), p.clone());
            continue;
        }
        match Plugin::load(name, &bytes, &grants) {
            Ok(p) => {
                loaded.insert(name.to_owned(), p);
            }
            Err(message) => issues.push(ConfigIssue { path, message }),
        }
    }
    loaded
}

fn build_credentials(
    config: &GatewayConfig,
    jwks: &crate::jwt::jwks::JwksCache,
    issues: &mut Vec<ConfigIssue>,
) -> Credentials {
    let mut pairs = Vec::new();
    for (i, c) in config.consumers.iter().enumerate() {
        for (k, key) in c.keys.iter().enumerate() {
            match crate::plugin::host::key_digest(key) {
                Ok(_) => pairs.push((key.as_str(), c.name.as_str())),
                Err(message) => issues.push(ConfigIssue {
                    path: format!("consumers[{i}].keys[{k}]"),
                    message,
                }),
            }
        }
    }
    let mut credentials = Credentials::build(pairs).unwrap_or_else(|message| {
        issues.push(ConfigIssue {
            path: "consumers".into(),
            message,
        });
        Credentials::default()
    });
    match crate::jwt::JwtCredentials::build(&config.consumers, jwks) {
        Ok(jwt) => credentials.jwt = jwt,
        Err((path, message)) => issues.push(ConfigIssue { path, message }),
    }
    credentials
}

/// Instantiate and `init` every filter of route `index`; a rejected config is an issue at
/// `routes[i].filters[j].config` with the filter's own message.
async fn build_pipeline(
    index: usize,
    route: &RouteConfig,
    plugins: &HashMap<String, Arc<Plugin>>,
    services: &Arc<Services>,
    issues: &mut Vec<ConfigIssue>,
) -> Pipeline {
    let mut stages = Vec::new();
    for (j, f) in route.filters.iter().enumerate() {
        let Some(plugin) = plugins.get(&f.plugin) else {
            continue; // load failure or unknown plugin, already reported
        };
        match filter_pool(plugin.clone(), route, f, services).await {
            Ok(pool) => stages.push(Stage::new(
                plugin.name.clone(),
                pool,
                match f.on_error {
                    OnErrorConfig::Closed => OnError::Closed,
                    OnErrorConfig::Open => OnError::Open,
                },
            )),
            Err(failure) => issues.push(ConfigIssue {
                path: format!("routes[{index}].filters[{j}].config"),
                message: match failure {
                    FilterFailure::Config(m) => format!("rejected by {}: {m}", f.plugin),
                    other => format!("filter {} failed to initialise: {other}", f.plugin),
                },
            }),
        }
    }
    Pipeline { stages }
}

async fn filter_pool(
    plugin: Arc<Plugin>,
    route: &RouteConfig,
    f: &FilterConfig,
    services: &Arc<Services>,
) -> Result<FilterPool, FilterFailure> {
    let config = if f.config.is_null() {
        "{}".to_owned()
    } else {
        f.config.to_string()
    };
    FilterPool::new(
        plugin,
        config,
        route.name.as_str().into(),
        services.clone(),
        PoolSettings {
            timeout: f.timeout.0,
            memory: usize::try_from(f.memory.0).unwrap_or(usize::MAX),
            isolation: match f.isolation {
                IsolationConfig::Pooled => Isolation::Pooled,
                IsolationConfig::Request => Isolation::Request,
            },
            max_idle: 64,
            max_uses: 10_000,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rewrites() {
        assert_eq!(PathRewrite::StripPrefix.apply("/api/users/7", 10), "/7");
        assert_eq!(PathRewrite::StripPrefix.apply("/api/users", 10), "/");
        assert_eq!(
            PathRewrite::Replace("/v2/".into()).apply("/api/x", 4),
            "/v2/x"
        );
        assert_eq!(PathRewrite::Replace("/v2".into()).apply("/api", 4), "/v2");
        assert_eq!(PathRewrite::Keep.apply("/api/x", 4), "/api/x");
    }

    #[tokio::test]
    async fn unchanged_upstreams_keep_their_state() {
        let services = Services::new(Metrics::new());
        let yaml = "upstreams: [{ name: u, targets: [a:1] }, { name: v, targets: [b:1] }]\nroutes: [{ name: r, match: { path_prefix: / }, upstream: u }]\n";
        let m = Metrics::new();
        let cfg = crate::config::load_str(yaml, &Default::default()).expect("valid");
        let first = Snapshot::build(cfg, None, &m, &services)
            .await
            .expect("builds");
        let cfg2 = crate::config::load_str(&yaml.replace("b:1", "c:1"), &Default::default())
            .expect("valid");
        let second = Snapshot::build(cfg2, Some(&first), &m, &services)
            .await
            .expect("builds");
        assert!(Arc::ptr_eq(&first.upstreams["u"], &second.upstreams["u"]));
        assert!(!Arc::ptr_eq(&first.upstreams["v"], &second.upstreams["v"]));
    }
}
