//! Native unit tests against the SDK's in-memory gateway, which serves hits from what the
//! filter marks storable (status and headers) on its settable clock.

use ferrox_sdk::Filter;
use ferrox_sdk::testing::{self, TestRequest, TestResponse, advance_ms, metric_counter};

use super::policy::{CacheControl, Decision, Facts, decide};
use super::{Cache, Config};

fn filter(config: &str) -> Cache {
    Cache::init(config).expect("valid config")
}

/// One exchange with an upstream answering `upstream`; the response the client gets.
fn send(f: &Cache, req: TestRequest, upstream: TestResponse) -> TestResponse {
    testing::run_exchange(f, &req, upstream)
}

fn status_header(resp: &TestResponse) -> Option<String> {
    resp.response().header("x-cache-status")
}

fn ok(tag: &str) -> TestResponse {
    TestResponse::new(200).header("x-upstream", tag)
}

fn get(path: &str) -> TestRequest {
    TestRequest::get(path).header("host", "api.example.com")
}

#[test]
fn a_miss_is_stored_and_the_next_request_hits() {
    let f = filter("{}");
    let first = send(&f, get("/a?x=1"), ok("first"));
    assert_eq!(status_header(&first).as_deref(), Some("MISS"));
    let stored = first.stored().expect("stored");
    assert_eq!(stored.ttl_ms, 60_000);
    assert_eq!(stored.max_body_bytes, 1024 * 1024);
    advance_ms(3_000);
    let second = send(&f, get("/a?x=1"), ok("second"));
    assert_eq!(status_header(&second).as_deref(), Some("HIT"));
    assert_eq!(
        second.response().header("x-upstream").as_deref(),
        Some("first")
    );
    assert_eq!(second.response().header("age").as_deref(), Some("3"));
    assert!(second.stored().is_none(), "a hit is not stored again");
    assert_eq!(metric_counter("stored"), 1);
}

#[test]
fn the_key_holds_host_path_query_and_method() {
    let f = filter("{}");
    send(&f, get("/a?x=1"), ok("a"));
    for other in [
        get("/a?x=2"),
        get("/a"),
        get("/b?x=1"),
        TestRequest::get("/a?x=1").header("host", "other.example.com"),
        TestRequest::new("HEAD", "/a?x=1").header("host", "api.example.com"),
    ] {
        let resp = send(&f, other, ok("b"));
        assert_eq!(status_header(&resp).as_deref(), Some("MISS"));
    }
    let upper = TestRequest::get("/a?x=1").header("host", "API.example.com");
    assert_eq!(
        status_header(&send(&f, upper, ok("c"))).as_deref(),
        Some("HIT")
    );
    let head = TestRequest::new("HEAD", "/a?x=1").header("host", "api.example.com");
    assert_eq!(
        status_header(&send(&f, head, ok("d"))).as_deref(),
        Some("HIT")
    );
}

#[test]
fn other_methods_bypass() {
    let f = filter("{}");
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let req = TestRequest::new(method, "/a");
        let resp = testing::run_exchange(&f, &req, ok("x"));
        assert_eq!(status_header(&resp).as_deref(), Some("BYPASS"), "{method}");
        assert_eq!(req.cache_key(), None);
        assert!(resp.stored().is_none());
    }
}

#[test]
fn cache_control_is_honoured() {
    let f = filter("{}");
    for (i, cc) in [
        "no-store",
        "private",
        "no-cache",
        "max-age=0",
        "PRIVATE=\"x-a\", max-age=60",
    ]
    .iter()
    .enumerate()
    {
        let path = format!("/cc{i}");
        let resp = send(&f, get(&path), ok("x").header("cache-control", cc));
        assert!(resp.stored().is_none(), "{cc}");
        let again = send(&f, get(&path), ok("y"));
        assert_eq!(status_header(&again).as_deref(), Some("MISS"), "{cc}");
    }
    let resp = send(
        &f,
        get("/m"),
        ok("x").header("cache-control", "public, max-age=120"),
    );
    assert_eq!(resp.stored().map(|s| s.ttl_ms), Some(120_000));
    let resp = send(
        &f,
        get("/s"),
        ok("x")
            .header("cache-control", "max-age=120, s-maxage=30")
            .header("age", "10"),
    );
    assert_eq!(
        resp.stored().map(|s| s.ttl_ms),
        Some(20_000),
        "s-maxage less Age"
    );
    assert_eq!(metric_counter("not_stored"), 5);
}

#[test]
fn entries_expire_after_their_ttl() {
    let f = filter(r#"{"ttl":"10s"}"#);
    send(&f, get("/t"), ok("first"));
    advance_ms(9_999);
    assert_eq!(
        status_header(&send(&f, get("/t"), ok("x"))).as_deref(),
        Some("HIT")
    );
    advance_ms(1);
    let resp = send(&f, get("/t"), ok("second"));
    assert_eq!(status_header(&resp).as_deref(), Some("MISS"));
    assert_eq!(
        resp.response().header("x-upstream").as_deref(),
        Some("second")
    );
}

#[test]
fn vary_headers_make_distinct_entries() {
    let f = filter(r#"{"vary":["accept"]}"#);
    let json = || get("/v").header("accept", "application/json");
    let xml = || get("/v").header("accept", "application/xml");
    send(&f, json(), ok("json").header("vary", "Accept"));
    assert_eq!(
        status_header(&send(&f, xml(), ok("xml"))).as_deref(),
        Some("MISS")
    );
    let hit = send(&f, json(), ok("other"));
    assert_eq!(hit.response().header("x-upstream").as_deref(), Some("json"));
    assert_eq!(
        status_header(&send(&f, get("/v"), ok("none"))).as_deref(),
        Some("MISS")
    );
    // The upstream varies on a header the key does not hold: not stored.
    let resp = send(&f, get("/w"), ok("x").header("vary", "accept-encoding"));
    assert!(resp.stored().is_none());
    let resp = send(&f, get("/star"), ok("x").header("vary", "*"));
    assert!(resp.stored().is_none());
}

#[test]
fn only_configured_statuses_are_stored() {
    let f = filter("{}");
    for status in [201, 203, 301, 404, 500, 503] {
        let path = format!("/s{status}");
        let resp = send(&f, get(&path), TestResponse::new(status));
        assert!(resp.stored().is_none(), "{status}");
    }
    let f = filter(r#"{"statuses":[200,404]}"#);
    let resp = send(&f, get("/gone"), TestResponse::new(404));
    assert!(resp.stored().is_some());
    let hit = send(&f, get("/gone"), TestResponse::new(200));
    assert_eq!(hit.status(), 404);
}

#[test]
fn cookies_and_authorization_are_kept_out() {
    let f = filter("{}");
    let resp = send(&f, get("/c"), ok("x").header("set-cookie", "sid=1"));
    assert!(resp.stored().is_none());
    let f = filter(r#"{"store_set_cookie":true}"#);
    let resp = send(&f, get("/c"), ok("x").header("set-cookie", "sid=1"));
    assert!(resp.stored().is_some());

    let f = filter("{}");
    let authed = || get("/p").header("authorization", "Bearer t");
    assert!(send(&f, authed(), ok("x")).stored().is_none());
    let resp = send(&f, authed(), ok("x").header("cache-control", "public"));
    assert!(resp.stored().is_some());
}

#[test]
fn a_failing_store_bypasses() {
    let f = filter("{}");
    testing::set_cache_error(Some("redis down"));
    let req = get("/a");
    let resp = testing::run_exchange(&f, &req, ok("x"));
    assert_eq!(resp.status(), 200);
    assert_eq!(status_header(&resp).as_deref(), Some("BYPASS"));
    assert!(resp.stored().is_none());
    testing::set_cache_error(None);
    assert_eq!(
        status_header(&send(&f, get("/a"), ok("y"))).as_deref(),
        Some("MISS")
    );
}

#[test]
fn the_lookup_key_is_what_the_filter_computed() {
    let f = filter(r#"{"vary":["accept"]}"#);
    let req = get("/k?q=1").header("accept", "text/html");
    testing::run_request(&f, &req);
    assert_eq!(
        req.cache_key().as_deref(),
        Some("15:api.example.com2:/k4:?q=19:text/html")
    );
}

#[test]
fn cache_control_parsing() {
    let cc = CacheControl::parse(&[
        "Public, MAX-AGE=\"30\"".to_owned(),
        "no-cache=\"set-cookie, x-a\", s-maxage=5, max-age=99".to_owned(),
    ]);
    assert!(cc.public && cc.no_cache && !cc.private && !cc.no_store);
    assert_eq!((cc.max_age, cc.s_maxage), (Some(30), Some(5)));
    assert_eq!(
        CacheControl::parse(&["max-age=abc".to_owned()]).max_age,
        Some(0)
    );
    let facts = Facts {
        status: 200,
        ..Facts::default()
    };
    assert_eq!(
        decide(&Config::default(), &facts),
        Decision::Store { ttl_ms: 60_000 }
    );
}
