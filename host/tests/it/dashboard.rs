//! The dashboard on the admin listener: login and session cookie, the WebSocket's session and
//! `Origin` checks, the live feed's numbers and explain data, the API bridge, and the whole UI
//! in headless Chromium (`dashboard/tests/e2e.mjs`, screenshots under
//! `$CARGO_TARGET_DIR/dashboard-screenshots/`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::*;

/// Routes: `api` (rate-limit, then transform on the response) and `plain` (no filters).
async fn dashboard_gateway() -> (Gw, Upstream) {
    let up = echo_upstream().await;
    let yaml = format!(
        "upstreams:\n{}routes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    upstream: u\n    filters:\n      - plugin: rate-limit\n        timeout: 500ms\n        config: {{ limits: [{{ requests: 1000000, window: 60s }}] }}\n      - plugin: transform\n        timeout: 500ms\n        config: {{ response: {{ set_headers: {{ x-via: ferrox }} }} }}\n  - name: plain\n    match: {{ path_prefix: /plain }}\n    upstream: u\n",
        upstream_yaml("u", &[up.addr], "")
    );
    (gateway(&yaml).await, up)
}

fn host_of(url: &str) -> &str {
    url.trim_start_matches("http://")
}

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut b = Request::post(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(
        b.body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await
}

/// Log in with the test token; returns `ferrox_session=<id>`.
async fn login(gw: &Gw) -> String {
    let origin = gw.admin.clone();
    let r = post(
        &format!("{}/dashboard/login", gw.admin),
        &[("origin", &origin), ("content-type", "application/json")],
        &format!("{{\"token\":\"{TOKEN}\"}}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let cookie = r.header("set-cookie").expect("session cookie").to_owned();
    cookie
        .split(';')
        .next()
        .expect("name=value")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn dashboard_login_with_a_wrong_token_fails() {
    let (gw, _up) = dashboard_gateway().await;
    let origin = gw.admin.clone();
    let r = post(
        &format!("{}/dashboard/login", gw.admin),
        &[("origin", &origin)],
        "{\"token\":\"wrong\"}",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthorized");
    assert!(r.header("set-cookie").is_none());
    // A login from another site is refused before the token is looked at.
    let r = post(
        &format!("{}/dashboard/login", gw.admin),
        &[("origin", "http://evil.example")],
        &format!("{{\"token\":\"{TOKEN}\"}}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("set-cookie").is_none());
    // Not JSON.
    let r = post(
        &format!("{}/dashboard/login", gw.admin),
        &[("origin", &origin)],
        "token=x",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dashboard_session_cookie_is_httponly_strict_and_scoped() {
    let (gw, _up) = dashboard_gateway().await;
    let origin = gw.admin.clone();
    let r = post(
        &format!("{}/dashboard/login", gw.admin),
        &[("origin", &origin)],
        &format!("{{\"token\":\"{TOKEN}\"}}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let cookie = r.header("set-cookie").expect("cookie").to_owned();
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    let (name, id) = attrs[0].split_once('=').expect("name=value");
    assert_eq!(name, "ferrox_session");
    assert_eq!(id.len(), 64, "256-bit random id: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!cookie.contains(TOKEN), "the token is not in the cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
        assert!(attrs.contains(&flag), "{flag} missing: {cookie}");
    }
    assert!(
        attrs.iter().any(|a| a.starts_with("Max-Age=")),
        "expiring: {cookie}"
    );
    let session = &attrs[0];
    let r = get_with(
        &format!("{}/dashboard/session", gw.admin),
        &[("cookie", session)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&format!("{}/dashboard/session", gw.admin)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Two logins get two different ids.
    assert_ne!(login(&gw).await, login(&gw).await);
    // Logout ends the session on the server.
    let r = post(
        &format!("{}/dashboard/logout", gw.admin),
        &[("origin", &origin), ("cookie", session)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = get_with(
        &format!("{}/dashboard/session", gw.admin),
        &[("cookie", session)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The page itself is served with a strict content security policy.
    let page = get(&format!("{}/dashboard", gw.admin)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("script-src 'self'"))
    );
    assert!(String::from_utf8_lossy(&page.body).contains("/dashboard/app.js"));
}

/// Open the live feed with `origin` and `cookie`; the handshake's HTTP status on refusal.
async fn open_ws(
    gw: &Gw,
    origin: Option<&str>,
    cookie: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let url = format!("ws://{}/dashboard/ws", host_of(&gw.admin));
    let mut req = url.into_client_request().expect("ws request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin"));
    }
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", c.parse().expect("cookie"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

#[tokio::test]
async fn dashboard_websocket_requires_the_session_and_the_listeners_origin() {
    let (gw, _up) = dashboard_gateway().await;
    let session = login(&gw).await;
    let own = gw.admin.clone();
    assert_eq!(open_ws(&gw, Some(&own), None).await.err(), Some(401));
    assert_eq!(
        open_ws(&gw, Some(&own), Some("ferrox_session=00ff"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        open_ws(&gw, Some("http://evil.example"), Some(&session))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(open_ws(&gw, None, Some(&session)).await.err(), Some(403));
    // Same host, another port: another origin.
    let other_port = format!("{}1", own);
    assert_eq!(
        open_ws(&gw, Some(&other_port), Some(&session)).await.err(),
        Some(403)
    );
    assert!(open_ws(&gw, Some(&own), Some(&session)).await.is_ok());
}

/// Read text messages until `want` accepts one (or 10 s pass).
async fn next_matching(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a matching update within 10 s")
            .expect("feed open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).expect("JSON update");
            if want(&v) {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn dashboard_feed_counts_requests_and_explains_them() {
    let (gw, _up) = dashboard_gateway().await;
    let session = login(&gw).await;
    let own = gw.admin.clone();
    let mut ws = open_ws(&gw, Some(&own), Some(&session))
        .await
        .expect("feed opens");
    let hello = next_matching(&mut ws, |_| true).await;
    assert_eq!(hello["type"], "hello");

    for _ in 0..3 {
        assert_eq!(get(&gw.url("/api/items?q=1")).await.status, StatusCode::OK);
    }
    assert_eq!(get(&gw.url("/plain/x")).await.status, StatusCode::OK);
    assert_eq!(get(&gw.url("/nowhere")).await.status, StatusCode::NOT_FOUND);

    // Updates come once a second; gather them until all five requests were seen.
    let mut recent: Vec<serde_json::Value> = Vec::new();
    let mut api_2xx = 0;
    let mut rps = 0;
    let mut classes_4xx = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while recent.len() < 5 && tokio::time::Instant::now() < deadline {
        let tick = next_matching(&mut ws, |v| v.get("rps").is_some()).await;
        rps += tick["rps"].as_u64().expect("rps");
        classes_4xx += tick["classes"]["4xx"].as_u64().expect("4xx");
        let routes = tick["routes"].as_array().expect("routes");
        let api = routes
            .iter()
            .find(|r| r["name"] == "api")
            .expect("every configured route is listed");
        assert_eq!(api["upstream"], "u");
        api_2xx += api["classes"]["2xx"].as_u64().expect("2xx");
        let ups = tick["upstreams"].as_array().expect("upstreams");
        assert_eq!(ups[0]["targets"][0]["breaker"], "closed");
        assert_eq!(ups[0]["targets"][0]["healthy"], true);
        if let Some(r) = tick["recent"].as_array() {
            recent.extend(r.iter().cloned());
        }
    }
    assert_eq!(recent.len(), 5, "{recent:?}");
    assert_eq!(rps, 5);
    assert_eq!(api_2xx, 3);
    assert_eq!(classes_4xx, 1);

    let api = recent
        .iter()
        .find(|r| r["route"] == "api")
        .expect("an api request");
    assert_eq!(api["path"], "/api/items", "no query string kept");
    assert_eq!(api["status"], 200);
    assert_eq!(api["upstream"], "u");
    assert!(
        api["target"]
            .as_str()
            .is_some_and(|t| t.contains("127.0.0.1"))
    );
    assert!(api["upstream_micros"].as_u64().is_some());
    assert!(api["micros"].as_u64().expect("µs") >= api["upstream_micros"].as_u64().expect("µs"));
    let filters = api["filters"].as_array().expect("filters");
    let steps: Vec<(String, String)> = filters
        .iter()
        .map(|f| {
            (
                f["plugin"].as_str().expect("plugin").to_owned(),
                f["phase"].as_str().expect("phase").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("rate-limit".to_owned(), "request".to_owned()),
            ("transform".to_owned(), "request".to_owned()),
            ("transform".to_owned(), "response".to_owned()),
            ("rate-limit".to_owned(), "response".to_owned()),
        ],
        "each filter in the order it ran"
    );
    assert_eq!(filters[0]["decision"], "continue");
    assert!(
        !filters[0]["calls"].as_array().expect("calls").is_empty(),
        "rate-limit's host calls are listed: {filters:?}"
    );
    let missed = recent
        .iter()
        .find(|r| r["status"] == 404)
        .expect("the unrouted request");
    assert!(missed["route"].is_null());
    assert_eq!(missed["error"], "no-route");

    // A reconnecting page gets the kept requests and the history at once.
    let mut again = open_ws(&gw, Some(&own), Some(&session))
        .await
        .expect("feed opens");
    let hello = next_matching(&mut again, |_| true).await;
    assert_eq!(hello["type"], "hello");
    assert!(hello["recent"].as_array().expect("recent").len() >= 5);
    assert!(!hello["history"].as_array().expect("history").is_empty());

    // Per-plugin filter time and calls.
    let tick = next_matching(&mut ws, |v| v.get("plugins").is_some()).await;
    assert!(tick["plugins"].is_array());
}

#[tokio::test]
async fn dashboard_api_calls_need_the_session_and_the_same_origin() {
    let (gw, _up) = dashboard_gateway().await;
    let session = login(&gw).await;
    let own = gw.admin.clone();
    let url = format!("{}/dashboard/api/routes", gw.admin);
    let r = get_with(&url, &[("cookie", &session)]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let names: Vec<String> = r
        .json()
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect();
    assert!(names.contains(&"api".to_owned()), "{names:?}");
    // No session: 401; a cross-site fetch: 403, whatever the cookie.
    assert_eq!(get(&url).await.status, StatusCode::UNAUTHORIZED);
    let r = get_with(
        &url,
        &[("cookie", &session), ("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let body =
        "{\"plugin\":\"transform\",\"config\":{\"response\":{\"set_headers\":{\"x-b\":\"1\"}}}}";
    let filters = format!("{}/dashboard/api/routes/plain/filters", gw.admin);
    let r = post(
        &filters,
        &[("cookie", &session), ("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a write needs Origin");
    let r = post(
        &filters,
        &[
            ("cookie", &session),
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The filter's own validation message comes back as the API's 422.
    let r = post(
        &filters,
        &[
            ("cookie", &session),
            ("origin", &own),
            ("content-type", "application/json"),
        ],
        "{\"plugin\":\"transform\",\"config\":{\"response\":{\"no_such_op\":1}}}",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("transform")),
        "{:?}",
        r.json()
    );
    assert_eq!(
        get(&gw.url("/plain/x")).await.header("x-b"),
        None,
        "nothing written"
    );
    let r = post(
        &filters,
        &[
            ("cookie", &session),
            ("origin", &own),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(get(&gw.url("/plain/x")).await.header("x-b"), Some("1"));
}

/// Install chromium and playwright-core if missing (`dashboard/tests/setup.sh`).
fn browser_setup(dir: &std::path::Path) {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(dir.join("setup.sh"))
            .status()
            .expect("run dashboard/tests/setup.sh");
        assert!(status.success(), "dashboard/tests/setup.sh failed");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("dashboard/tests");
    browser_setup(&dir);
    let (gw, _up) = dashboard_gateway().await;
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.join("../../target"))
        .join("dashboard-screenshots");

    // Traffic while the browser looks: 2xx on both routes and some 404s.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let base = gw.base.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = match n % 5 {
                    0..=2 => format!("/api/items/{n}"),
                    3 => "/plain/x".to_owned(),
                    _ => "/missing".to_owned(),
                };
                let _ = get(&format!("{base}{path}")).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            n
        })
    };

    let (admin, proxy) = (gw.admin.clone(), gw.base.clone());
    let script = dir.join("e2e.mjs");
    let shots_env = shots.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .env("FERROX_ADMIN", admin)
            .env("FERROX_PROXY", proxy)
            .env("FERROX_TOKEN", TOKEN)
            .env("SCREENSHOTS", shots_env)
            .output()
            .expect("run node")
    })
    .await
    .expect("node finished");
    stop.store(true, Ordering::Relaxed);
    let sent = traffic.await.expect("traffic task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    assert!(stdout.contains("e2e: ok"), "{stdout}");
    assert!(sent > 10, "traffic ran while the browser looked ({sent})");
    // What the browser changed is the running config: transform before rate-limit on `api`,
    // nothing left on `plain`.
    let snap = gw.running.gateway.snapshot();
    let pipelines: Vec<(String, Vec<String>)> = snap
        .config
        .routes
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.filters.iter().map(|f| f.plugin.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        pipelines,
        [
            (
                "api".to_owned(),
                vec!["transform".to_owned(), "rate-limit".to_owned()]
            ),
            ("plain".to_owned(), vec![]),
        ]
    );
    assert_eq!(get(&gw.url("/plain/y")).await.header("x-dashboard"), None);
    for name in [
        "01-login-refused",
        "02-overview",
        "04-explain",
        "05-attach-invalid",
        "06-attached",
        "07-reordered-detached",
        "08-new-key",
    ] {
        let p = shots.join(format!("{name}.png"));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} saved", p.display());
    }
}
