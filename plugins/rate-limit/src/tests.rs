//! Native unit tests against the SDK's in-memory gateway (clock, counters, logs, metrics).

use ferrox_sdk::log::Level;
use ferrox_sdk::serde_json::{self, Value};
use ferrox_sdk::testing::{
    self, TestRequest, TestResponse, advance_ms, logs, metric_counter, set_counters_error,
    set_now_ms,
};
use ferrox_sdk::{Filter, Flow, Reply};

use super::RateLimit;

/// A minute boundary (also a second boundary): 2023-11-14T22:14:00Z.
const MINUTE: u64 = 1_700_000_040_000;

fn filter(config: &str) -> RateLimit {
    RateLimit::init(config).expect("valid config")
}

fn from(ip: &str) -> TestRequest {
    TestRequest::get("/").client_ip(ip)
}

/// Run one exchange against an upstream answering 200; the response the client gets.
fn send(f: &RateLimit, req: &TestRequest) -> TestResponse {
    testing::run_exchange(f, req, TestResponse::new(200))
}

fn status(f: &RateLimit, req: &TestRequest) -> u16 {
    send(f, req).status()
}

fn header(resp: &TestResponse, name: &str) -> Option<String> {
    resp.response().header(name)
}

/// The reply of a refused request (panics if it was let through).
fn refusal(f: &RateLimit, req: &TestRequest) -> Reply {
    match testing::run_request(f, req) {
        Flow::Respond(reply) => reply,
        Flow::Continue => panic!("expected a refusal"),
    }
}

#[test]
fn fixed_window_resets_at_the_boundary() {
    set_now_ms(MINUTE + 500);
    let f = filter(r#"{"limits":[{"requests":2,"window":"1s"}]}"#);
    let req = from("203.0.113.1");
    assert_eq!(status(&f, &req), 200);
    assert_eq!(status(&f, &req), 200);
    assert_eq!(status(&f, &req), 429);
    advance_ms(499); // last millisecond of the window
    assert_eq!(status(&f, &req), 429);
    advance_ms(1); // the next window
    let resp = send(&f, &req);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "ratelimit").as_deref(),
        Some(r#""2-per-1s";r=1;t=1"#),
        "refused requests were not counted, the new window starts fresh"
    );
    assert_eq!(status(&f, &req), 200);
    assert_eq!(status(&f, &req), 429);
    assert_eq!(metric_counter("limited"), 3);
}

#[test]
fn refused_requests_do_not_lock_a_client_out() {
    set_now_ms(MINUTE);
    let f = filter(r#"{"limits":[{"requests":2,"window":"1s"}]}"#);
    let req = from("203.0.113.1");
    for _ in 0..3 {
        let admitted = (0..10).filter(|_| status(&f, &req) == 200).count();
        assert_eq!(admitted, 2);
        advance_ms(1_000);
    }
}

#[test]
fn sliding_window_weights_the_previous_window() {
    set_now_ms(MINUTE);
    let f = filter(r#"{"limits":[{"requests":10,"window":"1s"}],"algorithm":"sliding"}"#);
    let req = from("203.0.113.1");
    let admitted = |n: usize| (0..n).filter(|_| status(&f, &req) == 200).count();
    assert_eq!(admitted(11), 10);

    // A quarter into the next second the previous one still weighs 10 × 0.75 = 7.5:
    // 7.5 + 1 and 7.5 + 2 fit, 7.5 + 3 does not.
    advance_ms(1_250);
    assert_eq!(status(&f, &req), 200);
    let resp = send(&f, &req);
    assert_eq!(resp.status(), 200);
    // 10 − 9.5 = 0.5 left; one more needs the weight to drop by 0.5 → 50 ms → t=1.
    assert_eq!(
        header(&resp, "ratelimit").as_deref(),
        Some(r#""10-per-1s";r=0;t=1"#)
    );
    let refused = refusal(&f, &req);
    assert_eq!(refused.header_value("retry-after"), Some("1"));

    // Three quarters in: 10 × 0.25 = 2.5, so the current window may reach 7 (9.5).
    advance_ms(500);
    assert_eq!(admitted(10), 5);

    // Two seconds later nothing of either window is left.
    advance_ms(2_000);
    assert_eq!(admitted(11), 10);
}

#[test]
fn sliding_window_throttles_a_steady_overload_to_the_limit() {
    set_now_ms(MINUTE);
    let f = filter(r#"{"limits":[{"requests":10,"window":"1s"}],"algorithm":"sliding"}"#);
    let req = from("203.0.113.1");
    // 20 requests per second, one every 50 ms, for 10 s: 9 to 10 per second get through (the
    // estimate is over the limit between the evenly spaced arrivals). Were refused requests
    // counted, the client would be locked out after the first second.
    let mut per_second = Vec::new();
    for _ in 0..10 {
        let mut admitted = 0;
        for _ in 0..20 {
            if status(&f, &req) == 200 {
                admitted += 1;
            }
            advance_ms(50);
        }
        per_second.push(admitted);
    }
    let total: usize = per_second.iter().sum();
    assert!((90..=100).contains(&total), "{per_second:?}");
    assert!(
        per_second.iter().all(|&n| (9..=10).contains(&n)),
        "{per_second:?}"
    );
}

#[test]
fn several_limits_each_count_and_the_tightest_is_shown() {
    set_now_ms(MINUTE);
    let f = filter(
        r#"{"limits":[{"requests":2,"window":"1s","name":"per-second"},
                      {"requests":3,"window":"1m","name":"per-minute"}]}"#,
    );
    let req = from("203.0.113.1");
    let policy = r#""per-second";q=2;w=1, "per-minute";q=3;w=60"#;

    let resp = send(&f, &req);
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "ratelimit-policy").as_deref(), Some(policy));
    assert_eq!(
        header(&resp, "ratelimit").as_deref(),
        Some(r#""per-second";r=1;t=1"#)
    );
    assert_eq!(status(&f, &req), 200);
    // Refused by the per-second limit; it does not use up the per-minute one.
    let refused = refusal(&f, &req);
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header_value("retry-after"), Some("1"));
    assert_eq!(
        refused.header_value("ratelimit"),
        Some(r#""per-second";r=0;t=1"#)
    );

    advance_ms(1_000);
    let resp = send(&f, &req);
    assert_eq!(resp.status(), 200, "the third of the minute");
    assert_eq!(
        header(&resp, "ratelimit").as_deref(),
        Some(r#""per-minute";r=0;t=59"#),
        "the lowest remaining is shown"
    );
    let refused = refusal(&f, &req);
    assert_eq!(refused.header_value("retry-after"), Some("59"));
    let body: Value = serde_json::from_slice(&refused.body).expect("JSON");
    assert_eq!(body["limit"], "per-minute");

    advance_ms(58_999);
    assert_eq!(status(&f, &req), 429);
    advance_ms(1);
    assert_eq!(status(&f, &req), 200);
}

#[test]
fn limits_with_the_same_numbers_are_counted_apart() {
    set_now_ms(MINUTE);
    let f = filter(
        r#"{"limits":[{"requests":2,"window":"1m","name":"a"},
                      {"requests":2,"window":"1m","name":"b"}]}"#,
    );
    let req = from("203.0.113.1");
    assert_eq!(status(&f, &req), 200);
    assert_eq!(status(&f, &req), 200, "not counted twice in one counter");
    assert_eq!(status(&f, &req), 429);
}

#[test]
fn by_ip() {
    let f = filter(r#"{"limits":[{"requests":1,"window":"1m"}]}"#);
    assert_eq!(status(&f, &from("203.0.113.1")), 200);
    assert_eq!(status(&f, &from("203.0.113.1")), 429);
    assert_eq!(status(&f, &from("203.0.113.2")), 200);
    assert_eq!(status(&f, &from("2001:db8::1")), 200);
}

#[test]
fn by_consumer_falls_back_to_ip_without_one() {
    let f = filter(r#"{"limits":[{"requests":1,"window":"1m"}],"by":"consumer"}"#);
    let ip = "203.0.113.1";
    assert_eq!(status(&f, &from(ip).consumer("alice")), 200);
    assert_eq!(status(&f, &from("203.0.113.9").consumer("alice")), 429);
    assert_eq!(status(&f, &from(ip).consumer("bob")), 200);
    assert!(logs().is_empty());

    assert_eq!(status(&f, &from(ip)), 200, "anonymous: counted by ip");
    assert!(
        logs()
            .iter()
            .any(|l| l.level == Level::Debug && l.message.contains("no consumer")),
        "{:?}",
        logs()
    );
    assert_eq!(status(&f, &from(ip)), 429, "the same ip again");
    assert_eq!(status(&f, &from("203.0.113.2")), 200);
    assert_eq!(status(&f, &from(ip).consumer("carol")), 200);
}

#[test]
fn by_header_falls_back_to_ip_without_it() {
    let f = filter(r#"{"limits":[{"requests":1,"window":"1m"}],"by":"header","header":"X-User"}"#);
    let ip = "203.0.113.1";
    assert_eq!(status(&f, &from(ip).header("x-user", "a")), 200);
    assert_eq!(status(&f, &from("203.0.113.7").header("X-USER", "a")), 429);
    assert_eq!(status(&f, &from(ip).header("x-user", "b")), 200);
    assert_eq!(status(&f, &from(ip)), 200, "no header: counted by ip");
    assert!(
        logs()
            .iter()
            .any(|l| l.level == Level::Debug && l.message.contains("no x-user header"))
    );
    assert_eq!(
        status(&f, &from(ip).header("x-user", "")),
        429,
        "an empty value is no value"
    );

    // Long values are counted by hash, still apart.
    let long_a = format!("{}a", "x".repeat(300));
    let long_b = format!("{}b", "x".repeat(300));
    assert_eq!(status(&f, &from(ip).header("x-user", &long_a)), 200);
    assert_eq!(status(&f, &from(ip).header("x-user", &long_a)), 429);
    assert_eq!(status(&f, &from(ip).header("x-user", &long_b)), 200);
}

#[test]
fn by_route_counts_everyone_together() {
    let f = filter(r#"{"limits":[{"requests":2,"window":"1m"}],"by":"route"}"#);
    assert_eq!(status(&f, &from("203.0.113.1")), 200);
    assert_eq!(status(&f, &from("203.0.113.2").consumer("x")), 200);
    assert_eq!(status(&f, &from("203.0.113.3")), 429);
}

#[test]
fn headers_on_upstream_responses_replace_the_upstream_ones() {
    set_now_ms(MINUTE + 15_000);
    let f = filter(r#"{"limits":[{"requests":100,"window":"60s"}],"by":"ip"}"#);
    let upstream = TestResponse::new(200)
        .header("ratelimit", r#""upstream";r=1;t=1"#)
        .header("x-other", "kept");
    let resp = testing::run_exchange(&f, &from("203.0.113.1"), upstream);
    assert_eq!(
        resp.headers(),
        [
            ("ratelimit".into(), r#""100-per-60s";r=99;t=45"#.into()),
            ("x-other".into(), "kept".into()),
            (
                "ratelimit-policy".into(),
                r#""100-per-60s";q=100;w=60"#.into()
            ),
        ]
    );
    // An upstream error gets them too.
    let resp = testing::run_exchange(&f, &from("203.0.113.1"), TestResponse::new(502));
    assert_eq!(
        header(&resp, "ratelimit").as_deref(),
        Some(r#""100-per-60s";r=98;t=45"#)
    );
}

#[test]
fn names_are_structured_field_strings() {
    let f = filter(r#"{"limits":[{"requests":5,"window":"1h","name":"say \"hi\" \\o/"}]}"#);
    let resp = send(&f, &from("203.0.113.1"));
    assert_eq!(
        header(&resp, "ratelimit-policy").as_deref(),
        Some(r#""say \"hi\" \\o/";q=5;w=3600"#)
    );
}

#[test]
fn the_numbers_travel_in_the_request_context() {
    // on_request and on_response may run on different instances of the filter.
    let config = r#"{"limits":[{"requests":3,"window":"1m"}]}"#;
    let (first, second) = (filter(config), filter(config));
    set_now_ms(MINUTE);
    let req = from("203.0.113.1");
    assert_eq!(testing::run_request(&first, &req), Flow::Continue);
    let resp = TestResponse::new(200);
    testing::run_response(&second, &req, &resp);
    assert_eq!(
        header(&resp, "ratelimit").as_deref(),
        Some(r#""3-per-60s";r=2;t=60"#)
    );
}

#[test]
fn a_refusal_has_retry_after_json_and_headers_once() {
    set_now_ms(MINUTE + 58_500);
    let f = filter(r#"{"limits":[{"requests":1,"window":"60s"}]}"#);
    let req = from("203.0.113.1").request_id("rid-7");
    assert_eq!(status(&f, &req), 200);

    let reply = refusal(&f, &req);
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.header_value("retry-after"),
        Some("2"),
        "1.5 s rounds up"
    );
    assert_eq!(reply.header_value("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({
            "error": "rate_limited",
            "message": "rate limit \"1-per-60s\" exceeded; retry in 2 s",
            "status": 429,
            "request_id": "rid-7",
            "limit": "1-per-60s",
            "retry_after": 2,
        })
    );

    // Through the response hook (which the gateway runs on the filter's own reply too), each
    // header appears once.
    let resp = send(&f, &req);
    assert_eq!(resp.status(), 429);
    let names: Vec<String> = resp.headers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "retry-after",
            "ratelimit-policy",
            "ratelimit",
            "content-type"
        ]
    );
    assert_eq!(
        header(&resp, "ratelimit").as_deref(),
        Some(r#""1-per-60s";r=0;t=2"#)
    );

    // The last millisecond: Retry-After is never 0.
    advance_ms(1_499);
    assert_eq!(refusal(&f, &req).header_value("retry-after"), Some("1"));
}

#[test]
fn sliding_retry_after_waits_for_the_estimate_to_drop() {
    set_now_ms(MINUTE);
    let f = filter(r#"{"limits":[{"requests":4,"window":"10s"}],"algorithm":"sliding"}"#);
    let req = from("203.0.113.1");
    for _ in 0..4 {
        assert_eq!(status(&f, &req), 200);
    }
    // Next window, 2 s in: 4 × 0.8 = 3.2, and 3.2 + 1 is over 4.
    advance_ms(12_000);
    let refused = refusal(&f, &req);
    // One more needs 4 × (8 s − d)/10 s + 1 ≤ 4 → d ≥ 0.5 s.
    assert_eq!(refused.header_value("retry-after"), Some("1"));
    assert_eq!(
        refused.header_value("ratelimit"),
        Some(r#""4-per-10s";r=0;t=1"#)
    );
    advance_ms(499);
    assert_eq!(status(&f, &req), 429);
    advance_ms(1);
    assert_eq!(status(&f, &req), 200);
}

#[test]
fn fail_open_lets_requests_through_without_headers() {
    let f = filter(
        r#"{"limits":[{"requests":1,"window":"1s"},{"requests":5,"window":"1m"}],
            "policy":"fail_open"}"#,
    );
    set_counters_error(Some("redis: connection refused"));
    let req = from("203.0.113.1");
    for _ in 0..3 {
        let resp = send(&f, &req);
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().is_empty(), "{:?}", resp.headers());
    }
    let warnings: Vec<_> = logs()
        .into_iter()
        .filter(|l| l.level == Level::Warn)
        .collect();
    assert_eq!(warnings.len(), 3, "one per request: {warnings:?}");
    assert!(warnings[0].message.contains("redis: connection refused"));
    assert!(warnings[0].message.contains("fail_open"));
    assert_eq!(metric_counter("store_errors"), 3);

    // The store is back: limiting resumes.
    set_counters_error(None);
    assert_eq!(status(&f, &req), 200);
    assert_eq!(status(&f, &req), 429);
}

#[test]
fn fail_open_is_the_default_and_fail_closed_answers_503() {
    set_counters_error(Some("down"));
    let open = filter(r#"{"limits":[{"requests":1,"window":"1s"}]}"#);
    assert_eq!(status(&open, &from("203.0.113.1")), 200);

    let closed = filter(r#"{"limits":[{"requests":1,"window":"1s"}],"policy":"fail_closed"}"#);
    let req = from("203.0.113.1").request_id("rid-9");
    let reply = refusal(&closed, &req);
    assert_eq!(reply.status, 503);
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(body["error"], "rate_limit_unavailable");
    assert_eq!(body["request_id"], "rid-9");
    let resp = send(&closed, &req);
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "ratelimit"), None);
    assert_eq!(header(&resp, "retry-after"), None);
    assert_eq!(metric_counter("store_errors"), 3);
    assert!(
        logs()
            .iter()
            .any(|l| l.level == Level::Warn && l.message.contains("fail_closed"))
    );
}

#[test]
fn invalid_configs_are_refused() {
    let e = RateLimit::init(r#"{"limits":[{"requests":1,"window":"1s"}],"burst":2}"#)
        .err()
        .expect("refused");
    assert!(e.contains("unknown field `burst`"), "{e}");
}
