//! Configuration: the declarative document ([`model`]), its units ([`units`]), validation with
//! paths ([`validate`]) and loading from a file with bootstrap overrides.
//!
//! Lifecycle: parse (`*Config`, unknown fields rejected) → validate (all issues, with paths) →
//! build (`crate::snapshot::Snapshot::build`) → swap.

pub mod model;
pub mod units;
pub mod validate;
pub mod watch;

use std::path::Path;

pub use model::*;
pub use validate::{ConfigIssue, TargetAddr, parse_target, validate};

/// The quickstart configuration embedded in the binary (`ferrox serve --demo`).
pub const QUICKSTART_YAML: &str = include_str!("../../../examples/quickstart.yaml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The document is not valid YAML of the expected shape.
    #[error("{0}")]
    Parse(ConfigIssue),
    /// The document parsed but has semantic issues.
    #[error("{} configuration error(s):\n{}", .0.len(), .0.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// Every issue, with its path.
    pub fn issues(&self) -> Vec<ConfigIssue> {
        match self {
            ConfigError::Read { path, source } => vec![ConfigIssue {
                path: String::new(),
                message: format!("cannot read {path}: {source}"),
            }],
            ConfigError::Parse(i) => vec![i.clone()],
            ConfigError::Invalid(v) => v.clone(),
        }
    }
}

/// Parse a YAML document into a [`GatewayConfig`]; the error names the field path.
pub fn parse_yaml(text: &str) -> Result<GatewayConfig, ConfigError> {
    // An empty document means "all defaults".
    // An empty document means "all defaults" (the serde defaults, not `Default`'s zero values).
    let text = if text.trim().is_empty() { "{}" } else { text };
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let location = inner
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        let message = inner.to_string();
        // serde_yaml starts its message with its own, coarser path; the issue has the full one.
        let message = match message.split_once(": ") {
            Some((own, rest)) if !own.is_empty() && path.starts_with(own) => rest,
            _ => message.as_str(),
        };
        ConfigError::Parse(ConfigIssue {
            message: strip_location(message, &location),
            path,
        })
    })
}

/// serde_yaml appends "at line L column C" to some messages; keep one location, in our form.
fn strip_location(message: &str, location: &str) -> String {
    let base = message.split(" at line ").next().unwrap_or(message);
    format!("{}{location}", base.trim())
}

/// Bootstrap settings given on the command line or in `FERROX_*` variables; they win over the
/// file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Proxy listen address.
    pub listen: Option<String>,
    /// Admin listen address.
    pub admin_listen: Option<String>,
    /// Admin token.
    pub admin_token: Option<String>,
}

impl Overrides {
    /// Apply to a parsed document.
    pub fn apply(&self, cfg: &mut GatewayConfig) {
        if let Some(l) = &self.listen {
            cfg.listen.clone_from(l);
        }
        if let Some(l) = &self.admin_listen {
            cfg.admin.listen.clone_from(l);
        }
        if let Some(t) = &self.admin_token {
            cfg.admin.token = Some(t.clone());
        }
    }
}

/// Parse, apply overrides and validate a document.
pub fn load_str(text: &str, overrides: &Overrides) -> Result<GatewayConfig, ConfigError> {
    let mut cfg = parse_yaml(text)?;
    overrides.apply(&mut cfg);
    let issues = validate(&cfg);
    if issues.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

/// Read, parse, apply overrides and validate a file.
pub fn load_file(path: &Path, overrides: &Overrides) -> Result<GatewayConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, overrides)
}

/// The JSON Schema of the configuration document.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(GatewayConfig)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_is_valid() {
        load_str(QUICKSTART_YAML, &Overrides::default()).expect("quickstart config is valid");
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err = parse_yaml("routes:\n  - name: a\n    match: { path_prefix: / }\n    upstream: u\n    colour: red\n")
            .expect_err("unknown field");
        let issue = &err.issues()[0];
        assert_eq!(issue.path, "routes[0].colour");
        assert!(issue.message.contains("unknown field `colour`"), "{issue}");
        let err = parse_yaml(
            "upstreams:\n  - name: u\n    targets: [a:1]\n    timeouts: { connect: soon }\n",
        )
        .expect_err("bad duration");
        assert_eq!(err.issues()[0].path, "upstreams[0].timeouts.connect");
    }

    #[test]
    fn an_empty_document_is_all_defaults() {
        let cfg = load_str("", &Overrides::default()).expect("valid");
        assert_eq!(cfg.listen, "127.0.0.1:8080");
        assert_eq!(cfg.state, "local");
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            listen: Some("127.0.0.1:1".into()),
            admin_listen: None,
            admin_token: Some("t".into()),
        };
        let cfg = load_str("listen: 127.0.0.1:2\n", &o).expect("valid");
        assert_eq!(cfg.listen, "127.0.0.1:1");
        assert_eq!(cfg.admin.token.as_deref(), Some("t"));
    }

    #[test]
    fn schema_describes_the_document() {
        let s = json_schema();
        let props = &s["properties"];
        for key in [
            "listen",
            "admin",
            "state",
            "upstreams",
            "routes",
            "consumers",
            "plugins",
        ] {
            assert!(props.get(key).is_some(), "schema lacks {key}");
        }
    }
}
