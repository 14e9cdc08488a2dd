//! The route table: path normalisation and deterministic, most-specific-first matching.
//!
//! # Precedence
//! Candidates are ordered once, when the table is built, by:
//! 1. host: an exact host beats a wildcard host (`*.example.com`, longer suffix first), which
//!    beats a route without host condition;
//! 2. path: an exact `path` beats any `path_prefix`; a longer prefix beats a shorter one;
//! 3. more header conditions first, then routes restricted to methods before those accepting any;
//! 4. finally the order in the configuration.
//!
//! The first candidate whose conditions all hold wins, so the choice is deterministic and does not
//! depend on the order routes were added to the file (except for exact ties).

use std::cmp::Reverse;

use http::{HeaderMap, Method};

use crate::config::RouteConfig;

/// Why a path was refused before routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// `..` above the root.
    #[error("path climbs above the root")]
    AboveRoot,
    /// A control byte, raw or percent-encoded.
    #[error("path contains an invalid escape or byte")]
    Invalid,
}

/// Normalise a request path for routing: collapse `//`, resolve `.` and `..` segments
/// (also written `%2e`), keep a trailing slash. Other escapes are left as they are.
pub fn normalize_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) || has_encoded_control(path) {
        return Err(PathError::Invalid);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match classify(seg)? {
            Segment::Empty | Segment::Dot => trailing_slash = i == last,
            Segment::DotDot => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = i == last;
            }
            Segment::Name => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing_slash {
        s.push('/');
    }
    Ok(s)
}

enum Segment {
    Empty,
    Dot,
    DotDot,
    Name,
}

fn classify(seg: &str) -> Result<Segment, PathError> {
    if seg.is_empty() {
        return Ok(Segment::Empty);
    }
    if seg.len() > 6 {
        return Ok(Segment::Name);
    }
    // Decode only to recognise dot segments (`.`, `%2e`, `..`, `.%2E`, …).
    let mut dots = 0;
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            dots += 1;
            i += 1;
        } else if b[i] == b'%' && b.len() >= i + 3 && b[i + 1..i + 3].eq_ignore_ascii_case(b"2e") {
            dots += 1;
            i += 3;
        } else {
            return Ok(Segment::Name);
        }
    }
    Ok(match dots {
        1 => Segment::Dot,
        2 => Segment::DotDot,
        _ => Segment::Name,
    })
}

/// Whether a path carries an encoded control byte (`%00`–`%1F`, `%7F`): NUL, CR, LF and the
/// like, which an upstream that decodes paths could act on.
fn has_encoded_control(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_uppercase()),
                (b'0' | b'1', b'0'..=b'9' | b'A'..=b'F') | (b'7', b'F')
            )
    })
}

/// Whether a path carries an encoded `/` or `\` (`%2F`, `%5C`).
pub fn has_encoded_slash(path: &str) -> bool {
    let b = path.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%' && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"))
    })
}

#[derive(Clone, Debug)]
enum HostMatch {
    Exact(String),
    Suffix(String), // ".example.com"
}

#[derive(Clone, Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// Sort key of a matcher: (host, path, header count, has methods), most specific first.
type Rank = (
    Reverse<usize>,
    Reverse<(u8, usize)>,
    Reverse<usize>,
    Reverse<bool>,
);

/// A compiled matcher for one route.
#[derive(Clone, Debug)]
struct Matcher {
    hosts: Vec<HostMatch>,
    path: PathMatch,
    methods: Vec<Method>,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Matcher {
    fn compile(cfg: &crate::config::MatchConfig) -> Self {
        let hosts = cfg
            .hosts
            .iter()
            .chain(cfg.host.iter())
            .map(|h| match h.strip_prefix('*') {
                Some(suffix) => HostMatch::Suffix(suffix.to_ascii_lowercase()),
                None => HostMatch::Exact(h.to_ascii_lowercase()),
            })
            .collect();
        let path = match (&cfg.path, &cfg.path_prefix) {
            (Some(p), _) => PathMatch::Exact(p.clone()),
            (None, Some(p)) => PathMatch::Prefix(p.clone()),
            (None, None) => PathMatch::Prefix("/".into()),
        };
        Self {
            hosts,
            path,
            methods: cfg
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            headers: cfg
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?)))
                .collect(),
        }
    }

    /// Sort key: smaller sorts first (more specific).
    fn rank(&self) -> Rank {
        let host_rank = self
            .hosts
            .iter()
            .map(|h| match h {
                HostMatch::Exact(_) => usize::MAX,
                HostMatch::Suffix(s) => s.len(),
            })
            .max()
            .map_or(0, |r| r.saturating_add(1));
        let path_rank = match &self.path {
            PathMatch::Exact(p) => (1, p.len()),
            PathMatch::Prefix(p) => (0, p.trim_end_matches('/').len()),
        };
        (
            Reverse(host_rank),
            Reverse(path_rank),
            Reverse(self.headers.len()),
            Reverse(!self.methods.is_empty()),
        )
    }

    /// The length of the matched prefix (for strip/rewrite) when the route matches.
    fn matches(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<usize> {
        if !self.hosts.is_empty()
            && !self.hosts.iter().any(|h| match h {
                HostMatch::Exact(e) => e.eq_ignore_ascii_case(host),
                HostMatch::Suffix(s) => {
                    host.len() > s.len()
                        && host.as_bytes()[host.len() - s.len()..]
                            .eq_ignore_ascii_case(s.as_bytes())
                }
            })
        {
            return None;
        }
        let matched = match &self.path {
            PathMatch::Exact(p) => (path == p).then_some(p.len())?,
            PathMatch::Prefix(p) => prefix_len(p, path)?,
        };
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return None;
        }
        if !self
            .headers
            .iter()
            .all(|(k, v)| headers.get_all(k).iter().any(|x| x == v))
        {
            return None;
        }
        Some(matched)
    }
}

/// Prefix match on segment boundaries; returns the length to strip.
fn prefix_len(prefix: &str, path: &str) -> Option<usize> {
    if prefix == "/" {
        return Some(0);
    }
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    let rest = path.strip_prefix(p)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(p.len())
}

/// A route chosen for a request.
#[derive(Debug)]
pub struct RouteMatch<'a, T> {
    /// The route's runtime value.
    pub route: &'a T,
    /// Length of the path prefix the route matched (to strip or rewrite).
    pub matched_len: usize,
}

/// Routes in precedence order, each with its runtime value `T`.
#[derive(Debug)]
pub struct RouteTable<T> {
    entries: Vec<(Matcher, T)>,
}

impl<T> RouteTable<T> {
    /// Build the table; `routes` pairs each route's config with its runtime value.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a RouteConfig, T)>) -> Self {
        let mut entries: Vec<(usize, Matcher, T)> = routes
            .into_iter()
            .enumerate()
            .map(|(i, (cfg, value))| (i, Matcher::compile(&cfg.matcher), value))
            .collect();
        entries.sort_by_key(|(i, m, _)| (m.rank(), *i));
        Self {
            entries: entries.into_iter().map(|(_, m, v)| (m, v)).collect(),
        }
    }

    /// The most specific route for a request (`host` without port, `path` normalised).
    pub fn find(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<RouteMatch<'_, T>> {
        self.entries.iter().find_map(|(m, v)| {
            m.matches(host, path, method, headers)
                .map(|matched_len| RouteMatch {
                    route: v,
                    matched_len,
                })
        })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    #[test]
    fn normalises_dot_segments_and_slashes() {
        let cases = [
            ("/", "/"),
            ("//", "/"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/%2e%2E/c", "/c"),
            ("/a/.%2e/", "/"),
            ("/a/b/", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..b/c", "/a/..b/c"),
            ("/%2e", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
        }
        assert_eq!(normalize_path("/../etc"), Err(PathError::AboveRoot));
        assert_eq!(
            normalize_path("/a/%2e%2e/%2e%2e"),
            Err(PathError::AboveRoot)
        );
        assert_eq!(normalize_path("x"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn detects_encoded_slashes() {
        assert!(has_encoded_slash("/a%2Fb"));
        assert!(has_encoded_slash("/a%5cb"));
        assert!(!has_encoded_slash("/a%20b"));
    }

    fn table(yaml: &str) -> (RouteTable<String>, Vec<RouteConfig>) {
        let cfg = parse_yaml(yaml).expect("yaml");
        let t = RouteTable::new(cfg.routes.iter().map(|r| (r, r.name.clone())));
        (t, cfg.routes)
    }

    fn pick(t: &RouteTable<String>, host: &str, path: &str, method: Method) -> Option<String> {
        t.find(host, path, &method, &HeaderMap::new())
            .map(|m| m.route.clone())
    }

    #[test]
    fn most_specific_route_wins_deterministically() {
        let (t, _) = table(
            r#"
routes:
  - { name: catch-all, match: { path_prefix: / }, upstream: u }
  - { name: api, match: { path_prefix: /api }, upstream: u }
  - { name: users, match: { path_prefix: /api/users }, upstream: u }
  - { name: users-exact, match: { path: /api/users }, upstream: u }
  - { name: users-post, match: { path_prefix: /api/users, methods: [POST] }, upstream: u }
  - { name: host-any, match: { path_prefix: /, host: "*.example.com" }, upstream: u }
  - { name: host-exact, match: { path_prefix: /, host: api.example.com }, upstream: u }
"#,
        );
        let get = Method::GET;
        assert_eq!(
            pick(&t, "x", "/api/users", get.clone()).as_deref(),
            Some("users-exact")
        );
        assert_eq!(
            pick(&t, "x", "/api/users/7", get.clone()).as_deref(),
            Some("users")
        );
        assert_eq!(
            pick(&t, "x", "/api/users/7", Method::POST).as_deref(),
            Some("users-post")
        );
        assert_eq!(
            pick(&t, "x", "/api/usersx", get.clone()).as_deref(),
            Some("api")
        );
        assert_eq!(
            pick(&t, "x", "/other", get.clone()).as_deref(),
            Some("catch-all")
        );
        assert_eq!(
            pick(&t, "a.example.com", "/api", get.clone()).as_deref(),
            Some("host-any")
        );
        assert_eq!(
            pick(&t, "API.example.com", "/", get.clone()).as_deref(),
            Some("host-exact")
        );
        assert_eq!(
            pick(&t, "example.com", "/", get).as_deref(),
            Some("catch-all")
        );
    }

    #[test]
    fn header_conditions_and_prefix_length() {
        let (t, _) = table(
            r#"
routes:
  - { name: plain, match: { path_prefix: /v1/ }, upstream: u }
  - { name: canary, match: { path_prefix: /v1, headers: { x-canary: "1" } }, upstream: u }
"#,
        );
        let mut h = HeaderMap::new();
        let m = t.find("h", "/v1/x", &Method::GET, &h).expect("match");
        assert_eq!((m.route.as_str(), m.matched_len), ("plain", 3));
        h.insert("x-canary", "1".parse().expect("value"));
        assert_eq!(
            t.find("h", "/v1/x", &Method::GET, &h).expect("match").route,
            "canary"
        );
        assert!(t.find("h", "/v2", &Method::GET, &h).is_none());
    }
}
