//! The web dashboard, served at `/dashboard` on the admin listener.
//!
//! - Assets (`dashboard/` at the repository root) are embedded at build time: no npm step.
//! - `POST /dashboard/login` takes the admin token (or an admin user's token), checks it against
//!   the admin API itself, and answers with a session cookie (`HttpOnly`, `SameSite=Strict`,
//!   `Path=/dashboard`). The session id is random; the token stays on the server, never in the
//!   page's script. Sessions expire after [`SESSION_TTL`].
//! - `GET /dashboard/ws`: the live feed (one update per second from [`stats::StatsHub`]); it
//!   requires the session cookie and an `Origin` equal to the admin listener's own host.
//! - `/dashboard/api/{path}`: the admin REST API for the management views. The session stands in
//!   for the bearer token: the request goes to the admin router with the session's token, so
//!   roles and the audit log apply exactly as for a direct call. Same-origin only.

pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tower::ServiceExt as _;

use crate::gateway::Gateway;
pub use stats::{Sample, StatsHub};

/// Name of the session cookie.
pub const COOKIE: &str = "ferrox_session";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most live sessions (oldest evicted beyond).
const MAX_SESSIONS: usize = 256;
/// A protected admin resource every authenticated caller reaches: 401 means a bad token.
const PROBE_PATH: &str = "/metrics";

const INDEX_HTML: &str = include_str!("../../../dashboard/index.html");
const APP_JS: &str = include_str!("../../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../../dashboard/app.css");

struct Session {
    token: Arc<str>,
    expires: Instant,
}

/// Dashboard sessions: random id → the token it stands for.
#[derive(Default)]
struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn create(&self, token: Arc<str>) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let id = hex::encode(bytes);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                token,
                expires: now + SESSION_TTL,
            },
        );
        Some(id)
    }

    fn token(&self, id: &str) -> Option<Arc<str>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.token.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

#[derive(Clone)]
struct Dash {
    gateway: Arc<Gateway>,
    sessions: Arc<Sessions>,
    /// The admin router (without the dashboard), for login checks and API calls.
    api: Router,
}

/// Add the dashboard to the admin router and start the stats hub's ticker.
pub fn mount(admin: Router, gateway: Arc<Gateway>) -> Router {
    stats::spawn_ticker(Arc::downgrade(&gateway));
    let dash = Dash {
        gateway,
        sessions: Arc::default(),
        api: admin.clone(),
    };
    let routes = Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/app.js", get(app_js))
        .route("/dashboard/app.css", get(app_css))
        .route("/dashboard/login", post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/session", get(session))
        .route("/dashboard/ws", get(ws))
        .route("/dashboard/api/{*path}", any(api))
        .with_state(dash);
    admin.merge(routes)
}

fn json_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(
            serde_json::json!({ "error": kind, "message": message, "status": status.as_u16() }),
        ),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Whether `Origin` names this listener (`http://` or `https://` + the `Host` header).
fn origin_matches(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// The session id in the `Cookie` header(s), if any.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

fn session_token(d: &Dash, headers: &HeaderMap) -> Option<Arc<str>> {
    session_id(headers).and_then(|id| d.sessions.token(id))
}

fn cross_origin() -> Response {
    json_error(
        StatusCode::FORBIDDEN,
        "cross-origin",
        "the Origin header must name this admin listener",
    )
}

fn no_session() -> Response {
    json_error(
        StatusCode::UNAUTHORIZED,
        "no-session",
        "log in to the dashboard first",
    )
}

#[derive(serde::Deserialize)]
struct LoginBody {
    token: String,
}

/// Whether the admin API accepts `token` (anything but 401 from a protected resource).
async fn token_accepted(d: &Dash, token: &str) -> bool {
    let Ok(auth) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return false;
    };
    let Ok(req) = axum::http::Request::get(PROBE_PATH)
        .header(header::AUTHORIZATION, auth)
        .body(Body::empty())
    else {
        return false;
    };
    match d.api.clone().oneshot(req).await {
        Ok(resp) => resp.status() != StatusCode::UNAUTHORIZED,
        Err(never) => match never {},
    }
}

async fn login(State(d): State<Dash>, headers: HeaderMap, body: Bytes) -> Response {
    if !origin_matches(&headers) {
        return cross_origin();
    }
    let Ok(LoginBody { token }) = serde_json::from_slice::<LoginBody>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "expected a JSON body {\"token\": \"…\"}",
        );
    };
    if token.is_empty() || !token_accepted(&d, &token).await {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API does not accept this token",
        );
    }
    let Some(id) = d.sessions.create(token.into()) else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness for a session id",
        );
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn logout(State(d): State<Dash>, headers: HeaderMap) -> Response {
    if !origin_matches(&headers) {
        return cross_origin();
    }
    if let Some(id) = session_id(&headers) {
        d.sessions.remove(id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "ferrox_session=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

async fn session(State(d): State<Dash>, headers: HeaderMap) -> Response {
    match session_token(&d, &headers) {
        Some(_) => axum::Json(serde_json::json!({ "session": true })).into_response(),
        None => no_session(),
    }
}

async fn ws(State(d): State<Dash>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    if !origin_matches(&headers) {
        return cross_origin();
    }
    let Some(id) = session_id(&headers).map(str::to_owned) else {
        return no_session();
    };
    if d.sessions.token(&id).is_none() {
        return no_session();
    }
    upgrade.on_upgrade(move |socket| feed(socket, d, id))
}

/// Push the hello message, then one update per second, until the client leaves or the session
/// ends (logout or expiry).
async fn feed(mut socket: WebSocket, d: Dash, id: String) {
    let hub = &d.gateway.stats;
    let mut updates = hub.subscribe();
    if socket
        .send(Message::Text(hub.hello().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(json) => {
                    if d.sessions.token(&id).is_none() {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    if socket.send(Message::Text((&*json).into())).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Headers a dashboard API call carries over to the admin API.
const FORWARDED: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::ACCEPT, header::IF_MATCH];

async fn api(State(d): State<Dash>, Path(path): Path<String>, req: Request) -> Response {
    let headers = req.headers();
    // Same-origin only: unsafe methods must name this listener in `Origin`; a browser's
    // cross-site GET is refused through `Sec-Fetch-Site` (SameSite=Strict already withholds
    // the cookie).
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let origin_ok = if headers.contains_key(header::ORIGIN) {
        origin_matches(headers)
    } else {
        safe
    };
    let fetch_site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == "same-origin" || v == "none");
    if !origin_ok || !fetch_site_ok {
        return cross_origin();
    }
    let Some(token) = session_token(&d, headers) else {
        return no_session();
    };
    let Ok(auth) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return no_session();
    };
    let target = match req.uri().query() {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    let (parts, body) = req.into_parts();
    let mut builder = axum::http::Request::builder()
        .method(parts.method)
        .uri(target)
        .header(header::AUTHORIZATION, auth);
    for name in FORWARDED {
        for v in parts.headers.get_all(&name) {
            builder = builder.header(&name, v);
        }
    }
    let Ok(inner) = builder.body(body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "this path cannot be forwarded to the admin API",
        );
    };
    match d.api.clone().oneshot(inner).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn origin_must_name_the_listener() {
        assert!(origin_matches(&headers(&[
            ("host", "127.0.0.1:9080"),
            ("origin", "http://127.0.0.1:9080")
        ])));
        assert!(!origin_matches(&headers(&[
            ("host", "127.0.0.1:9080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!origin_matches(&headers(&[
            ("host", "127.0.0.1:9080"),
            ("origin", "http://127.0.0.1:9081")
        ])));
        assert!(!origin_matches(&headers(&[("host", "127.0.0.1:9080")])));
        assert!(!origin_matches(&headers(&[("origin", "http://x")])));
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; ferrox_session=abc ; b=2")]);
        assert_eq!(session_id(&h), Some("abc"));
        assert_eq!(session_id(&headers(&[("cookie", "a=1")])), None);
    }

    #[test]
    fn sessions_expire_and_evict() {
        let s = Sessions::default();
        let id = s.create("t".into()).expect("id");
        assert_eq!(id.len(), 64);
        assert_eq!(s.token(&id).as_deref(), Some("t"));
        s.map.lock().expect("lock").get_mut(&id).expect("s").expires = Instant::now();
        assert_eq!(s.token(&id), None);
        for _ in 0..MAX_SESSIONS + 5 {
            s.create("t".into()).expect("id");
        }
        assert!(s.map.lock().expect("lock").len() <= MAX_SESSIONS);
    }
}
