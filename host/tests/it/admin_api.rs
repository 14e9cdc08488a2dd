//! The admin API on a real gateway: every resource's happy path and errors, filters attached at
//! runtime taking effect, validation before commit, file-mode persistence, audit, tokens,
//! concurrency, the OpenAPI document and `ferrox apply` / `ferrox diff`.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::{
    Gw, Resp, TOKEN, echo_upstream, gateway, gateway_watching, get, send, upstream_yaml,
};

/// Call the admin API of `gw` with `token` and an optional JSON body.
pub async fn call_as(
    gw: &Gw,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("{}{path}", gw.admin))
        .header("authorization", format!("Bearer {token}"));
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    send(b.body(Full::new(bytes)).expect("request")).await
}

/// Call with the bootstrap token and check the answer's status.
async fn expect(
    gw: &Gw,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: StatusCode,
) -> Resp {
    let r = call(gw, method.clone(), path, body).await;
    assert_eq!(r.status, status, "{method} {path}: {:?}", r.body);
    r
}

/// Call with the bootstrap token.
pub async fn call(gw: &Gw, method: Method, path: &str, body: Option<Value>) -> Resp {
    call_as(gw, TOKEN, method, path, body).await
}

async fn call_raw(gw: &Gw, method: Method, path: &str, body: impl Into<Bytes>) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", gw.admin))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(body.into()))
        .expect("request");
    send(req).await
}

/// A gateway with upstream `u` (an echo server) and no routes.
async fn with_echo() -> (Gw, crate::support::Upstream) {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "upstreams:\n{}",
        upstream_yaml("u", &[up.addr], "")
    ))
    .await;
    (gw, up)
}

fn route(name: &str, prefix: &str) -> Value {
    json!({ "name": name, "match": { "path_prefix": prefix }, "upstream": "u" })
}

/// Create an admin user with `role` and answer a token of theirs.
pub async fn user_token(gw: &Gw, name: &str, role: &str) -> String {
    let r = call(
        gw,
        Method::POST,
        "/users",
        Some(json!({ "name": name, "role": role })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = call(gw, Method::POST, &format!("/users/{name}/tokens"), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.json()["token"].as_str().expect("token").to_owned()
}

async fn config_version(gw: &Gw) -> i64 {
    call(gw, Method::GET, "/status", None).await.json()["config_version"]
        .as_i64()
        .expect("config_version")
}

#[tokio::test]
async fn upstreams_and_routes_happy_paths_and_errors() {
    let (gw, _up) = with_echo().await;
    // Upstreams.
    let r = call(&gw, Method::GET, "/upstreams", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()[0]["name"], "u");
    let r = call(
        &gw,
        Method::POST,
        "/upstreams",
        Some(json!({ "name": "v", "targets": ["127.0.0.1:9"] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = call(
        &gw,
        Method::POST,
        "/upstreams",
        Some(json!({ "name": "v", "targets": ["127.0.0.1:9"] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "conflict");
    let r = call(
        &gw,
        Method::PUT,
        "/upstreams/v",
        Some(json!({ "name": "v", "targets": ["127.0.0.1:10"], "retries": 0 })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["targets"][0], "127.0.0.1:10");
    let r = call(
        &gw,
        Method::PUT,
        "/upstreams/v",
        Some(json!({ "name": "w", "targets": ["127.0.0.1:10"] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["path"], "name");
    let r = call(&gw, Method::GET, "/upstreams/nope", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["status"], 404);
    let r = call(
        &gw,
        Method::POST,
        "/upstreams",
        Some(json!({ "name": "x", "targets": "oops" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["path"], "targets");

    // Routes: a new route serves on the next request.
    assert_eq!(get(&gw.url("/api/a")).await.status, StatusCode::NOT_FOUND);
    let r = call(&gw, Method::POST, "/routes", Some(route("api", "/api"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(get(&gw.url("/api/a")).await.status, StatusCode::OK);
    let r = call(&gw, Method::POST, "/routes", Some(route("api", "/other"))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &gw,
        Method::POST,
        "/routes",
        Some(json!({ "name": "bad", "match": { "path_prefix": "/b" }, "upstream": "missing" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["path"], "routes[1].upstream", "{}", r.json());
    let r = call(&gw, Method::GET, "/routes/api", None).await;
    assert_eq!(r.json()["match"]["path_prefix"], "/api");
    // An upstream in use cannot go.
    let r = call(&gw, Method::DELETE, "/upstreams/u", None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = call(&gw, Method::DELETE, "/routes/api", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&gw.url("/api/a")).await.status, StatusCode::NOT_FOUND);
    let r = call(&gw, Method::DELETE, "/routes/api", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&gw, Method::DELETE, "/upstreams/v", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn errors_are_json() {
    let (gw, _up) = with_echo().await;
    let r = call(&gw, Method::GET, "/nothing-here", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "not-found");
    let r = call_raw(&gw, Method::POST, "/routes", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["status"], 400);
    let r = send(
        Request::get(format!("{}/routes", gw.admin))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthorized");
    assert_eq!(
        get(&format!("{}/health", gw.admin)).await.status,
        StatusCode::OK
    );
    let r = call(&gw, Method::GET, "/routes/x/filters/notanumber", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "bad-request");
    let big = vec![b'a'; 2 * 1024 * 1024];
    let r = call_raw(&gw, Method::POST, "/routes", big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"], "too-large");
}

#[tokio::test]
async fn filters_attached_through_the_api_take_effect_on_the_next_request() {
    let (gw, _up) = with_echo().await;
    call(&gw, Method::POST, "/routes", Some(route("r", "/"))).await;
    assert_eq!(get(&gw.url("/x")).await.header("x-one"), None);
    let one = json!({ "plugin": "transform", "config": { "response": { "set_headers": { "x-one": "1", "x-order": "one" } } } });
    let two = json!({ "plugin": "transform", "config": { "response": { "set_headers": { "x-two": "2", "x-order": "two" } } } });
    let r = call(&gw, Method::POST, "/routes/r/filters", Some(one)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let resp = get(&gw.url("/x")).await;
    assert_eq!(resp.header("x-one"), Some("1"));
    // Attach at position 0; responses run in reverse order, so the last filter's write of
    // x-order is overwritten by the first's.
    let r = call(&gw, Method::POST, "/routes/r/filters?position=0", Some(two)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.json()[0]["config"]["response"]["set_headers"]["x-two"],
        "2"
    );
    assert_eq!(get(&gw.url("/x")).await.header("x-order"), Some("two"));
    // Reorder: move filter 0 to position 1.
    let r = call(
        &gw,
        Method::PATCH,
        "/routes/r/filters/0",
        Some(json!({ "position": 1 })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(get(&gw.url("/x")).await.header("x-order"), Some("one"));
    // Update a filter's config.
    let r = call(
        &gw,
        Method::PATCH,
        "/routes/r/filters/0",
        Some(json!({ "config": { "response": { "set_headers": { "x-one": "uno" } } } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(get(&gw.url("/x")).await.header("x-one"), Some("uno"));
    let r = call(&gw, Method::GET, "/routes/r/filters/1", None).await;
    assert_eq!(r.json()["config"]["response"]["set_headers"]["x-two"], "2");
    let r = call(
        &gw,
        Method::PATCH,
        "/routes/r/filters/0",
        Some(json!({ "position": 5 })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["path"], "position");
    // Detach both.
    expect(
        &gw,
        Method::DELETE,
        "/routes/r/filters/1",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect(
        &gw,
        Method::DELETE,
        "/routes/r/filters/0",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect(
        &gw,
        Method::DELETE,
        "/routes/r/filters/0",
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let resp = get(&gw.url("/x")).await;
    assert_eq!(resp.header("x-one"), None);
    assert_eq!(resp.header("x-two"), None);
    assert_eq!(
        call(&gw, Method::GET, "/routes/r/filters", None)
            .await
            .json(),
        json!([])
    );
    let r = call(
        &gw,
        Method::POST,
        "/routes/nope/filters",
        Some(json!({ "plugin": "transform" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_filter_config_its_init_rejects_is_422_with_the_path_and_nothing_changes() {
    let (gw, _up) = with_echo().await;
    call(&gw, Method::POST, "/routes", Some(route("first", "/first"))).await;
    call(
        &gw,
        Method::POST,
        "/routes",
        Some(route("second", "/second")),
    )
    .await;
    let before = config_version(&gw).await;
    let bad = json!({ "plugin": "rate-limit", "config": { "limits": [{ "requests": 0, "window": "60s" }] } });
    let r = call(&gw, Method::POST, "/routes/second/filters", Some(bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.json();
    assert_eq!(body["path"], "routes[1].filters[0].config", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.starts_with("routes[1].filters[0].config: "),
        "{message}"
    );
    assert!(message.contains("limits[0].requests"), "{message}");
    assert_eq!(
        call(&gw, Method::GET, "/routes/second/filters", None)
            .await
            .json(),
        json!([])
    );
    assert_eq!(config_version(&gw).await, before);
    assert_eq!(get(&gw.url("/second")).await.status, StatusCode::OK);
    let r = call(
        &gw,
        Method::POST,
        "/routes/second/filters",
        Some(json!({ "plugin": "no-such-plugin" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(config_version(&gw).await, before);
}

#[tokio::test]
async fn consumer_keys_are_shown_once_and_stored_hashed() {
    let (gw, _up) = with_echo().await;
    let r = call(
        &gw,
        Method::POST,
        "/routes",
        Some(
            json!({ "name": "r", "match": { "path_prefix": "/" }, "upstream": "u",
        "filters": [{ "plugin": "key-auth", "timeout": "200ms" }] }),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        call(
            &gw,
            Method::POST,
            "/consumers",
            Some(json!({ "name": "alice" }))
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &gw,
            Method::POST,
            "/consumers",
            Some(json!({ "name": "alice" }))
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let r = call(&gw, Method::POST, "/consumers/alice/keys", None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let key = r.json()["key"].as_str().expect("key").to_owned();
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let listed = call(&gw, Method::GET, "/consumers/alice/keys", None).await;
    assert_eq!(listed.json(), json!([{ "id": id }]));
    for path in ["/consumers", "/consumers/alice", "/config", "/audit"] {
        let text =
            String::from_utf8_lossy(&call(&gw, Method::GET, path, None).await.body).into_owned();
        assert!(!text.contains(&key), "{path} shows the key");
    }
    let export = call(&gw, Method::GET, "/config", None).await.json();
    assert!(
        export["consumers"][0]["keys"][0]
            .as_str()
            .expect("key")
            .starts_with("sha256:")
    );
    let ok = crate::support::get_with(&gw.url("/x"), &[("apikey", &key)]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = call(
        &gw,
        Method::DELETE,
        &format!("/consumers/alice/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let denied = crate::support::get_with(&gw.url("/x"), &[("apikey", &key)]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(
            &gw,
            Method::DELETE,
            &format!("/consumers/alice/keys/{id}"),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    expect(
        &gw,
        Method::POST,
        "/consumers/bob/keys",
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect(
        &gw,
        Method::DELETE,
        "/consumers/alice",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
}

#[tokio::test]
async fn jwt_credentials_are_listed_without_secrets() {
    let (gw, _up) = with_echo().await;
    call(
        &gw,
        Method::POST,
        "/consumers",
        Some(json!({ "name": "app" })),
    )
    .await;
    let cred =
        json!({ "issuer": "app-issuer", "algorithm": "HS256", "secret": "very-secret-value" });
    let r = call(&gw, Method::POST, "/consumers/app/jwt", Some(cred)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["secret"], "<redacted>");
    let r = call(&gw, Method::GET, "/consumers/app/jwt", None).await;
    assert_eq!(r.json()[0]["issuer"], "app-issuer");
    for path in ["/consumers/app/jwt", "/consumers", "/config", "/audit"] {
        let text =
            String::from_utf8_lossy(&call(&gw, Method::GET, path, None).await.body).into_owned();
        assert!(
            !text.contains("very-secret-value"),
            "{path} shows the secret"
        );
    }
    // An export with the redacted secret imports back unchanged.
    let export = call(&gw, Method::GET, "/config", None).await.json();
    let r = call(&gw, Method::PUT, "/config?dry_run=true", Some(export)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["changed"], false, "{}", r.json());
    let r = call(
        &gw,
        Method::POST,
        "/consumers/app/jwt",
        Some(json!({ "issuer": "x", "algorithm": "none" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    expect(
        &gw,
        Method::DELETE,
        "/consumers/app/jwt/0",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect(
        &gw,
        Method::DELETE,
        "/consumers/app/jwt/0",
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn config_export_import_and_dry_run_diff() {
    let (gw, _up) = with_echo().await;
    let yaml = call(&gw, Method::GET, "/config?format=yaml", None).await;
    assert_eq!(yaml.header("content-type"), Some("application/yaml"));
    let text = String::from_utf8(yaml.body.to_vec()).expect("utf-8");
    ferrox_host::config::parse_yaml(&text).expect("the export is a valid document");
    assert!(!text.contains(TOKEN), "the export holds the admin token");
    let mut doc = call(&gw, Method::GET, "/config", None).await.json();
    doc["routes"] = json!([route("imported", "/imported")]);
    let version = config_version(&gw).await;
    let r = call(&gw, Method::PUT, "/config?dry_run=true", Some(doc.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let diff = r.json();
    assert_eq!(diff["dry_run"], true);
    assert_eq!(
        diff["changes"].as_array().expect("changes").len(),
        1,
        "{diff}"
    );
    assert_eq!(diff["changes"][0]["op"], "add");
    assert_eq!(diff["changes"][0]["path"], "routes/imported");
    assert_eq!(
        diff["changes"][0]["after"]["match"]["path_prefix"],
        "/imported"
    );
    assert_eq!(config_version(&gw).await, version);
    assert_eq!(
        get(&gw.url("/imported")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = call(&gw, Method::PUT, "/config", Some(doc)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["version"], version + 1);
    assert_eq!(get(&gw.url("/imported")).await.status, StatusCode::OK);
    // Invalid documents: a parse error names its field, nothing is written.
    let r = call_raw(
        &gw,
        Method::PUT,
        "/config",
        "routes:\n  - name: a\n    colour: red\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.json()["path"]
            .as_str()
            .expect("path")
            .starts_with("routes[0]"),
        "{}",
        r.json()
    );
    let r = call(&gw, Method::GET, "/config?format=xml", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(config_version(&gw).await, version + 1);
}

#[tokio::test]
async fn file_mode_persists_across_a_restart() {
    let up = echo_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ferrox.yaml");
    std::fs::write(
        &path,
        format!("upstreams:\n{}", upstream_yaml("u", &[up.addr], "")),
    )
    .expect("write");
    let gw = gateway_watching(path.clone(), Duration::from_millis(50)).await;
    let r = call(&gw, Method::POST, "/routes", Some(route("saved", "/saved"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bob = user_token(&gw, "bob", "operator").await;
    let version = config_version(&gw).await;
    // The watcher sees the file the store wrote and does not take it for an external edit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(config_version(&gw).await, version);
    let text = std::fs::read_to_string(&path).expect("config file");
    let doc = ferrox_host::config::load_str(&text, &Default::default())
        .expect("the file is valid config");
    assert!(doc.routes.iter().any(|r| r.name == "saved"));
    assert!(
        !text.contains(TOKEN),
        "the admin token is not written to the file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let sidecar = dir.path().join("ferrox.yaml.admin.json");
        let mode = std::fs::metadata(&sidecar)
            .expect("sidecar")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !std::fs::read_to_string(&sidecar)
                .expect("sidecar")
                .contains(&bob),
            "token stored in plaintext"
        );
    }
    gw.running.shutdown().await;

    let gw = gateway_watching(path.clone(), Duration::from_millis(50)).await;
    assert_eq!(get(&gw.url("/saved")).await.status, StatusCode::OK);
    // Users and tokens survive too.
    let r = call_as(&gw, &bob, Method::GET, "/routes/saved", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // An external edit is applied and moves the version.
    let v0 = config_version(&gw).await;
    let edited = format!(
        "upstreams:\n{}routes:\n  - name: edited\n    match: {{ path_prefix: /edited }}\n    upstream: u\n",
        upstream_yaml("u", &[up.addr], "")
    );
    std::fs::write(&path, edited).expect("edit");
    let mut applied = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if get(&gw.url("/edited")).await.status == StatusCode::OK {
            applied = true;
            break;
        }
    }
    assert!(applied, "the external edit was not applied");
    assert!(config_version(&gw).await > v0);
    let r = call(&gw, Method::GET, "/routes/edited", None).await;
    assert_eq!(r.status, StatusCode::OK, "the store follows the edit");
    let audit = call(&gw, Method::GET, "/audit?user=file", None)
        .await
        .json();
    assert_eq!(audit[0]["action"], "reload");
    gw.running.shutdown().await;
}

#[tokio::test]
async fn audit_entries_name_the_user_and_filter() {
    let (gw, _up) = with_echo().await;
    let bob = user_token(&gw, "bob", "operator").await;
    let r = call_as(
        &gw,
        &bob,
        Method::POST,
        "/routes",
        Some(route("bobs", "/bobs")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    call(&gw, Method::POST, "/routes", Some(route("boots", "/boots"))).await;
    let entries = call(&gw, Method::GET, "/audit?user=bob", None).await.json();
    let entries = entries.as_array().expect("list");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["resource"], "routes/bobs");
    assert_eq!(entries[0]["action"], "create");
    assert_eq!(entries[0]["after"]["name"], "bobs");
    let mine = call(
        &gw,
        Method::GET,
        "/audit?resource=routes/&user=bootstrap",
        None,
    )
    .await
    .json();
    assert_eq!(mine[0]["resource"], "routes/boots");
    let all = call(&gw, Method::GET, "/audit?limit=2", None).await.json();
    assert_eq!(all.as_array().expect("list").len(), 2);
    let none = call(&gw, Method::GET, "/audit?since=2999-01-01T00:00:00Z", None)
        .await
        .json();
    assert_eq!(none, json!([]));
    let r = call(&gw, Method::GET, "/audit?since=yesterday", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused() {
    let (gw, _up) = with_echo().await;
    let token = user_token(&gw, "eve", "viewer").await;
    assert_eq!(
        call_as(&gw, &token, Method::GET, "/routes", None)
            .await
            .status,
        StatusCode::OK
    );
    let tokens = call(&gw, Method::GET, "/users/eve/tokens", None)
        .await
        .json();
    let id = tokens[0]["id"].as_i64().expect("id");
    assert!(!tokens.to_string().contains(&token));
    assert_eq!(
        call(
            &gw,
            Method::DELETE,
            &format!("/users/eve/tokens/{id}"),
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let r = call_as(&gw, &token, Method::GET, "/routes", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&gw, Method::GET, "/users/eve/tokens", None)
            .await
            .json()[0]["revoked"],
        true
    );
    // Expired.
    let r = call(
        &gw,
        Method::POST,
        "/users/eve/tokens",
        Some(json!({ "expires_at": "2001-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let old = r.json()["token"].as_str().expect("token").to_owned();
    assert_eq!(
        call_as(&gw, &old, Method::GET, "/routes", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = call(
        &gw,
        Method::POST,
        "/users/eve/tokens",
        Some(json!({ "expires_in": "1h" })),
    )
    .await;
    let fresh = r.json()["token"].as_str().expect("token").to_owned();
    assert_eq!(
        call_as(&gw, &fresh, Method::GET, "/routes", None)
            .await
            .status,
        StatusCode::OK
    );
    let r = call(
        &gw,
        Method::POST,
        "/users/eve/tokens",
        Some(json!({ "expires_in": "soon" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Deleting the user ends their tokens.
    expect(
        &gw,
        Method::DELETE,
        "/users/eve",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        call_as(&gw, &fresh, Method::GET, "/routes", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &gw,
            Method::POST,
            "/users",
            Some(json!({ "name": "bootstrap", "role": "admin" }))
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        call(
            &gw,
            Method::POST,
            "/users",
            Some(json!({ "name": "x", "role": "root" }))
        )
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn concurrent_admin_writes_lose_no_update() {
    let (gw, _up) = with_echo().await;
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            call(
                &gw,
                Method::POST,
                "/routes",
                Some(route(&format!("r{i}"), &format!("/r{i}"))),
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::CREATED);
    }
    let routes = call(&gw, Method::GET, "/routes", None).await.json();
    assert_eq!(routes.as_array().expect("list").len(), 16);
    for i in 0..16 {
        assert_eq!(get(&gw.url(&format!("/r{i}"))).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn plugins_upload_inspect_and_grants() {
    let (gw, _up) = with_echo().await;
    let wasm = std::fs::read(crate::support::guest("hello")).expect("guest");
    // The component imports `counters`: refused without the grant.
    let r = call_raw(&gw, Method::POST, "/plugins?name=hello", wasm.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.json()["path"], "grants");
    assert!(
        r.json()["message"]
            .as_str()
            .expect("message")
            .contains("counters")
    );
    let r = call_raw(
        &gw,
        Method::POST,
        "/plugins?name=hello&grants=counters,log",
        wasm,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let body = r.json();
    assert_eq!(body["services"], json!(["counters"]));
    let exports: Vec<&str> = body["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        exports.contains(&"on-request") && exports.contains(&"init"),
        "{body}"
    );
    assert!(
        body["imports"]
            .as_array()
            .expect("imports")
            .iter()
            .any(|i| i
                .as_str()
                .is_some_and(|i| i.starts_with("ferrox:filter/counters"))),
        "{body}"
    );
    let list = call(&gw, Method::GET, "/plugins", None).await.json();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|p| p["name"] == "hello" && p["kind"] == "custom")
    );
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|p| p["name"] == "key-auth" && p["kind"] == "builtin")
    );
    let one = call(&gw, Method::GET, "/plugins/hello", None).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["grants"], json!(["counters", "log"]));
    assert_eq!(
        call(&gw, Method::GET, "/plugins/transform", None)
            .await
            .json()["kind"],
        "builtin"
    );
    // Attach the uploaded plugin and see it work.
    call(&gw, Method::POST, "/routes", Some(route("r", "/"))).await;
    let r = call(&gw, Method::POST, "/routes/r/filters", Some(json!({ "plugin": "hello", "timeout": "200ms", "config": { "header": "x-name", "response_header": "x-hello" } }))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let resp = crate::support::get_with(&gw.url("/x"), &[("x-name", "ada")]).await;
    assert_eq!(resp.header("x-hello"), Some("hello ada"));
    // Grants: narrowing below what the component imports is refused, widening works.
    let r = call(
        &gw,
        Method::PATCH,
        "/plugins/hello",
        Some(json!({ "grants": ["log"] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .expect("message")
            .contains("counters"),
        "{}",
        r.json()
    );
    let r = call(
        &gw,
        Method::PATCH,
        "/plugins/hello",
        Some(json!({ "grants": ["counters"] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["grants"], json!(["counters"]));
    expect(
        &gw,
        Method::PATCH,
        "/plugins/nope",
        Some(json!({ "grants": [] })),
        StatusCode::NOT_FOUND,
    )
    .await;
    // Refusals.
    assert_eq!(
        call_raw(&gw, Method::POST, "/plugins?name=junk", &b"not wasm"[..])
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        call_raw(&gw, Method::POST, "/plugins?name=key-auth", &b"x"[..])
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        call_raw(&gw, Method::POST, "/plugins?name=x&grants=root", &b"x"[..])
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        call_raw(&gw, Method::POST, "/plugins", &b"x"[..])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    expect(
        &gw,
        Method::GET,
        "/plugins/nope",
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn status_reports_versions_stores_and_breakers() {
    let (gw, up) = with_echo().await;
    let s = call(&gw, Method::GET, "/status", None).await.json();
    assert_eq!(s["store"]["kind"], "memory");
    assert_eq!(s["store"]["healthy"], true);
    assert_eq!(s["state"]["kind"], "local");
    assert_eq!(s["state"]["healthy"], true);
    assert_eq!(s["config_version"], s["applied_version"]);
    assert_eq!(s["upstreams"][0]["name"], "u");
    assert_eq!(
        s["upstreams"][0]["targets"][0]["target"],
        up.addr.to_string()
    );
    assert_eq!(s["upstreams"][0]["targets"][0]["breaker"], "closed");
    assert!(s["version"].as_str().is_some());
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let (gw, _up) = with_echo().await;
    let r = get(&format!("{}/openapi.json", gw.admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().expect("openapi").starts_with("3."));
    let expected: &[(&str, &[&str])] = &[
        ("/health", &["get"]),
        ("/metrics", &["get"]),
        ("/status", &["get"]),
        ("/audit", &["get"]),
        ("/upstreams", &["get", "post"]),
        ("/upstreams/{name}", &["get", "put", "delete"]),
        ("/routes", &["get", "post"]),
        ("/routes/{name}", &["get", "put", "delete"]),
        ("/routes/{name}/filters", &["get", "post"]),
        (
            "/routes/{name}/filters/{index}",
            &["get", "put", "patch", "delete"],
        ),
        ("/plugins", &["get", "post"]),
        ("/plugins/{name}", &["get", "patch"]),
        ("/consumers", &["get", "post"]),
        ("/consumers/{name}", &["get", "put", "delete"]),
        ("/consumers/{name}/keys", &["get", "post"]),
        ("/consumers/{name}/keys/{id}", &["delete"]),
        ("/consumers/{name}/jwt", &["get", "post"]),
        ("/consumers/{name}/jwt/{index}", &["delete"]),
        ("/users", &["get", "post"]),
        ("/users/{name}", &["delete"]),
        ("/users/{name}/tokens", &["get", "post"]),
        ("/users/{name}/tokens/{id}", &["delete"]),
        ("/config", &["get", "put"]),
    ];
    for (path, methods) in expected {
        let item = &doc["paths"][*path];
        assert!(item.is_object(), "{path} missing from the OpenAPI document");
        for m in *methods {
            assert!(
                item[*m].is_object(),
                "{m} {path} missing from the OpenAPI document"
            );
        }
    }
    // Every documented operation answers (never the router's fallback 404 for a known path).
    for (path, methods) in expected {
        if methods.contains(&"get") && !path.contains('{') {
            let r = call(&gw, Method::GET, path, None).await;
            assert_ne!(r.status, StatusCode::NOT_FOUND, "{path}");
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every protected operation documents the error answers it can give.
    for (path, methods) in expected.iter().filter(|(p, _)| *p != "/health") {
        for m in *methods {
            let responses = &doc["paths"][*path][*m]["responses"];
            for code in ["400", "401", "403", "503"] {
                assert!(
                    responses[code].is_object(),
                    "{m} {path} does not document {code}"
                );
            }
        }
    }
}

#[tokio::test]
async fn ferrox_apply_and_diff_sync_a_file() {
    let (gw, up) = with_echo().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("desired.yaml");
    std::fs::write(
        &file,
        format!(
            "upstreams:\n{}routes:\n  - name: desired\n    match: {{ path_prefix: /desired }}\n    upstream: u\n",
            upstream_yaml("u", &[up.addr], "")
        ),
    )
    .expect("write");
    let args = ferrox_host::admin::client::SyncArgs {
        file: file.clone(),
        admin_url: gw.admin.clone(),
        token: Some(TOKEN.into()),
    };
    let version = config_version(&gw).await;
    let diff = ferrox_host::admin::client::sync(&args, true)
        .await
        .expect("diff");
    assert!(diff.changed);
    assert!(diff.text.contains("+ routes/desired"), "{}", diff.text);
    assert_eq!(config_version(&gw).await, version);
    let applied = ferrox_host::admin::client::sync(&args, false)
        .await
        .expect("apply");
    assert!(
        applied.text.contains("+ routes/desired"),
        "{}",
        applied.text
    );
    assert_eq!(get(&gw.url("/desired")).await.status, StatusCode::OK);
    let again = ferrox_host::admin::client::sync(&args, true)
        .await
        .expect("diff");
    assert!(!again.changed, "{}", again.text);
    // Errors are reported with the path.
    std::fs::write(
        &file,
        "routes:\n  - name: x\n    match: { path_prefix: / }\n    upstream: missing\n",
    )
    .expect("write");
    let err = ferrox_host::admin::client::sync(&args, true)
        .await
        .expect_err("invalid");
    assert!(err.contains("routes[0].upstream"), "{err}");
    let bad_token = ferrox_host::admin::client::SyncArgs {
        token: Some("wrong".into()),
        ..args
    };
    let err = ferrox_host::admin::client::sync(&bad_token, true)
        .await
        .expect_err("401");
    assert!(err.contains("401"), "{err}");
}

#[tokio::test]
async fn two_instances_on_one_store_follow_each_other_and_lose_no_update() {
    use ferrox_host::app::{Options, start};
    use ferrox_host::config::{Overrides, load_str};
    use ferrox_host::store::{MemoryStore, Store};
    let up = echo_upstream().await;
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        admin_token: Some(TOKEN.into()),
    };
    let yaml = format!("upstreams:\n{}", upstream_yaml("u", &[up.addr], ""));
    let config = load_str(&yaml, &overrides).expect("config");
    let store = std::sync::Arc::new(Store::Memory(MemoryStore::new(config.clone())));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let running = start(Options {
            config: config.clone(),
            config_path: None,
            overrides: overrides.clone(),
            watch_interval: None,
            store: Some(store.clone()),
        })
        .await
        .expect("starts");
        nodes.push(Gw {
            base: format!("http://{}", running.proxy_addr),
            admin: format!("http://{}", running.admin_addr),
            running,
        });
    }
    let nodes = std::sync::Arc::new(nodes);
    // A route added through one instance serves on the other.
    expect(
        &nodes[0],
        Method::POST,
        "/routes",
        Some(route("shared", "/shared")),
        StatusCode::CREATED,
    )
    .await;
    let mut served = false;
    for _ in 0..100 {
        if get(&nodes[1].url("/shared")).await.status == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served, "instance B never served the route added through A");
    // Concurrent writes through both: each is committed or answered 409, none is lost.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let r = call(
                &nodes[i % 2],
                Method::POST,
                "/routes",
                Some(route(&format!("c{i}"), &format!("/c{i}"))),
            )
            .await;
            (i, r.status)
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        let (i, status) = t.await.expect("task");
        assert!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "{status}"
        );
        if status == StatusCode::CREATED {
            created.push(format!("c{i}"));
        }
    }
    assert!(!created.is_empty());
    let names: Vec<String> = call(&nodes[1], Method::GET, "/routes", None)
        .await
        .json()
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .filter(|n| n.starts_with('c'))
        .collect();
    created.sort();
    let mut names = names;
    names.sort();
    assert_eq!(
        names, created,
        "a committed write was lost or a refused one landed"
    );
    // Both instances end up running the newest version.
    let mut caught_up = false;
    for _ in 0..100 {
        let s0 = call(&nodes[0], Method::GET, "/status", None).await.json();
        let s1 = call(&nodes[1], Method::GET, "/status", None).await.json();
        if s0["applied_version"] == s0["config_version"]
            && s1["applied_version"] == s0["config_version"]
        {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(caught_up, "an instance did not apply the newest version");
}
