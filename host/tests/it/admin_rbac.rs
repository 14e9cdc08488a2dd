//! The role × resource matrix of the admin API: for every resource and method, each role is
//! allowed exactly when the policy table says so (403 otherwise), checked on a real gateway.

use http::{Method, StatusCode};
use serde_json::json;

use crate::admin_api::{call, call_as, user_token};
use crate::support::{echo_upstream, gateway, upstream_yaml};

/// (method, path, body, least role).
fn matrix() -> Vec<(
    Method,
    &'static str,
    Option<serde_json::Value>,
    &'static str,
)> {
    let route = json!({ "name": "new", "match": { "path_prefix": "/new" }, "upstream": "u" });
    vec![
        (Method::GET, "/metrics", None, "viewer"),
        (Method::GET, "/status", None, "viewer"),
        (Method::GET, "/instances", None, "viewer"),
        (Method::GET, "/audit", None, "viewer"),
        (Method::GET, "/upstreams", None, "viewer"),
        (Method::GET, "/upstreams/u", None, "viewer"),
        (
            Method::POST,
            "/upstreams",
            Some(json!({ "name": "v", "targets": ["127.0.0.1:9"] })),
            "operator",
        ),
        (
            Method::PUT,
            "/upstreams/v",
            Some(json!({ "name": "v", "targets": ["127.0.0.1:10"] })),
            "operator",
        ),
        (Method::DELETE, "/upstreams/v", None, "operator"),
        (Method::GET, "/routes", None, "viewer"),
        (Method::GET, "/routes/r", None, "viewer"),
        (Method::POST, "/routes", Some(route.clone()), "operator"),
        (Method::PUT, "/routes/new", Some(route), "operator"),
        (Method::GET, "/routes/r/filters", None, "viewer"),
        (
            Method::POST,
            "/routes/r/filters",
            Some(json!({ "plugin": "transform" })),
            "operator",
        ),
        (Method::GET, "/routes/r/filters/0", None, "viewer"),
        (
            Method::PATCH,
            "/routes/r/filters/0",
            Some(json!({ "position": 0 })),
            "operator",
        ),
        (
            Method::PUT,
            "/routes/r/filters/0",
            Some(json!({ "plugin": "transform" })),
            "operator",
        ),
        (Method::DELETE, "/routes/r/filters/0", None, "operator"),
        (Method::DELETE, "/routes/new", None, "operator"),
        (Method::GET, "/consumers", None, "viewer"),
        (
            Method::POST,
            "/consumers",
            Some(json!({ "name": "c" })),
            "operator",
        ),
        (Method::GET, "/consumers/c", None, "viewer"),
        (
            Method::PUT,
            "/consumers/c",
            Some(json!({ "jwt": [] })),
            "operator",
        ),
        (Method::GET, "/consumers/c/keys", None, "viewer"),
        (Method::POST, "/consumers/c/keys", None, "operator"),
        (
            Method::DELETE,
            "/consumers/c/keys/000000000000",
            None,
            "operator",
        ),
        (Method::GET, "/consumers/c/jwt", None, "viewer"),
        (
            Method::POST,
            "/consumers/c/jwt",
            Some(json!({ "issuer": "i", "algorithm": "HS256", "secret": "s" })),
            "operator",
        ),
        (Method::DELETE, "/consumers/c/jwt/0", None, "operator"),
        (Method::DELETE, "/consumers/c", None, "operator"),
        (Method::GET, "/plugins", None, "viewer"),
        (Method::GET, "/plugins/transform", None, "viewer"),
        (Method::POST, "/plugins?name=p", None, "admin"),
        (Method::GET, "/config", None, "viewer"),
        (
            Method::PUT,
            "/config?dry_run=true",
            Some(json!({})),
            "admin",
        ),
        (Method::GET, "/users", None, "admin"),
        (
            Method::POST,
            "/users",
            Some(json!({ "name": "zed", "role": "viewer" })),
            "admin",
        ),
        (Method::GET, "/users/zed/tokens", None, "admin"),
        (Method::POST, "/users/zed/tokens", None, "admin"),
        (Method::DELETE, "/users/zed/tokens/999", None, "admin"),
        (Method::DELETE, "/users/zed", None, "admin"),
    ]
}

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 0,
        "operator" => 1,
        _ => 2,
    }
}

#[tokio::test]
async fn every_role_against_every_resource() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "upstreams:\n{}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - plugin: transform\n",
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;
    let mut tokens = Vec::new();
    for role in ["viewer", "operator", "admin"] {
        tokens.push((role, user_token(&gw, &format!("{role}-user"), role).await));
    }
    // Each role runs the whole matrix in order, so an allowed write sets up the next call.
    for (role, token) in &tokens {
        for (method, path, body, least) in matrix() {
            let r = call_as(&gw, token, method.clone(), path, body).await;
            let allowed = rank(role) >= rank(least);
            if allowed {
                assert!(
                    r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                    "{role}: {method} {path} answered {} {:?}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role}: {method} {path} {:?}",
                    r.body
                );
                assert_eq!(r.json()["error"], "forbidden");
            }
        }
    }
    // Writes by a denied role changed nothing: the viewer's audit trail is empty.
    let audit = call(&gw, http::Method::GET, "/audit?user=viewer-user", None)
        .await
        .json();
    assert_eq!(audit, json!([]));
    let ops = call(&gw, http::Method::GET, "/audit?user=operator-user", None)
        .await
        .json();
    assert!(!ops.as_array().expect("list").is_empty());
}

#[test]
fn the_policy_table_matches_the_matrix() {
    use ferrox_host::admin::auth::required_role;
    for (method, path, _, least) in matrix() {
        let template = path.split('?').next().unwrap_or(path);
        assert_eq!(
            required_role(&method, template).as_str(),
            least,
            "{method} {path}"
        );
    }
}
