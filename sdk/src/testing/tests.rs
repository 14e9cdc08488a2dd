use super::*;
use crate::__private::Instance;
use crate::log::Level;
use crate::{Reply, Request, Response, cache, clock, counters, credentials, log, metrics};

#[test]
fn request_builder_and_view() {
    let req = TestRequest::new("PUT", "/a/b?x=1&y=2")
        .header("X-Multi", "1")
        .header("x-multi", "2")
        .client_ip("2001:db8::1")
        .route("r1")
        .request_id("rid")
        .consumer("alice");
    let view = req.request();
    assert_eq!(view.method(), "PUT");
    assert_eq!(view.path(), "/a/b");
    assert_eq!(view.query().as_deref(), Some("x=1&y=2"));
    assert_eq!(view.header("x-MULTI").as_deref(), Some("1"));
    assert_eq!(view.header_all("X-Multi"), ["1", "2"]);
    assert_eq!(view.header("absent"), None);
    assert!(view.header_all("absent").is_empty());
    assert_eq!(view.client_ip(), "2001:db8::1");
    assert_eq!(view.route(), "r1");
    assert_eq!(view.request_id(), "rid");
    assert_eq!(view.consumer().as_deref(), Some("alice"));

    let plain = TestRequest::get("/");
    let plain = plain.request();
    assert_eq!((plain.method(), plain.query()), ("GET".to_owned(), None));
    assert_eq!(plain.client_ip(), "127.0.0.1");
    assert_eq!(plain.route(), "test-route");
    assert_eq!(plain.consumer(), None);
    assert_eq!(
        TestRequest::post("/p")
            .query("q=1")
            .request()
            .query()
            .as_deref(),
        Some("q=1")
    );
}

#[test]
fn header_edits_follow_the_gateway_rules() {
    let req = TestRequest::get("/")
        .header("a", "1")
        .header("b", "2")
        .header("A", "3");
    let mut view = req.request();
    view.set_header("A", "new").expect("settable");
    assert_eq!(
        req.headers(),
        [("a".into(), "new".into()), ("b".into(), "2".into())]
    );
    view.append_header("b", "4").expect("settable");
    assert_eq!(view.header_all("b"), ["2", "4"]);
    view.remove_header("B");
    assert_eq!(view.header("b"), None);

    for managed in [
        "Content-Length",
        "host",
        "transfer-encoding",
        "connection",
        "upgrade",
    ] {
        let err = view.set_header(managed, "1").expect_err(managed);
        assert!(err.contains("managed by the gateway"), "{err}");
        assert!(view.append_header(managed, "1").is_err());
    }
    assert!(
        view.set_header("bad name", "v")
            .expect_err("name")
            .contains("not a valid header name")
    );
    assert!(view.set_header("", "v").is_err());
    assert!(
        view.set_header("x", "line\nbreak")
            .expect_err("value")
            .contains("invalid value")
    );
    assert_eq!(req.headers(), [("a".into(), "new".into())]);
}

#[test]
fn managed_headers_cannot_be_removed() {
    let req = TestRequest::get("/").header("host", "example.com");
    req.request().remove_header("Host");
    assert_eq!(req.request().header("host").as_deref(), Some("example.com"));
}

#[test]
fn values_that_are_not_visible_ascii_do_not_read_back() {
    let req = TestRequest::get("/")
        .header("x", "caf\u{e9}")
        .header("x", "ok");
    let mut view = req.request();
    assert_eq!(view.header("x"), None);
    assert_eq!(view.header_all("x"), ["ok"]);
    view.set_header("y", "\u{fc}ber\ttab")
        .expect("obs-text may be set");
    assert_eq!(view.header("y"), None);
}

#[test]
fn at_most_100_header_values() {
    let req = TestRequest::get("/");
    let mut view = req.request();
    for i in 0..MAX {
        view.set_header(&format!("x-{i}"), "v")
            .expect("under the cap");
    }
    let err = view
        .set_header("x-one-more", "v")
        .expect_err("over the cap");
    assert!(err.contains("more than 100 headers"), "{err}");
    // Replacing a header that is there still works.
    view.set_header("x-0", "w").expect("present");
    view.append_header("x-0", "w2").expect("present");
    assert_eq!(req.headers().len(), MAX + 1);
    const MAX: usize = crate::MAX_HEADERS;
}

#[test]
fn path_query_and_consumer_edits() {
    let req = TestRequest::get("/old?a=1");
    let mut view = req.request();
    view.set_path("/new/path").expect("valid");
    assert_eq!(view.path(), "/new/path");
    for bad in ["relative", "/with space", "/q?x", "/frag#x", ""] {
        assert!(view.set_path(bad).is_err(), "{bad:?}");
    }
    view.set_query(Some("b=2")).expect("valid");
    assert_eq!(view.query().as_deref(), Some("b=2"));
    assert!(view.set_query(Some("a b")).is_err());
    assert!(view.set_query(Some("x#y")).is_err());
    view.set_query(None).expect("removal");
    assert_eq!(view.query(), None);
    view.set_consumer("bob");
    assert_eq!(req.request().consumer().as_deref(), Some("bob"));
}

#[test]
fn response_view_and_edits() {
    let resp = TestResponse::new(404).header("X-Up", "1");
    let mut view = resp.response();
    assert_eq!(view.status(), 404);
    assert_eq!(resp.status(), 404);
    assert_eq!(view.header("x-up").as_deref(), Some("1"));
    view.set_header("x-up", "2").expect("settable");
    view.append_header("x-up", "3").expect("settable");
    view.set_header("x-new", "n").expect("settable");
    assert!(view.set_header("content-length", "1").is_err());
    assert_eq!(
        resp.headers(),
        [
            ("x-up".into(), "2".into()),
            ("x-up".into(), "3".into()),
            ("x-new".into(), "n".into())
        ]
    );
    view.remove_header("X-UP");
    assert_eq!(view.header("x-up"), None);
}

#[test]
fn counters_honour_aligned_windows() {
    set_now_ms(10_250);
    let c = counters::incr("k", 1, 1_000).expect("counter");
    assert_eq!(
        c,
        counters::Counter {
            count: 1,
            reset_ms: 750
        }
    );
    advance_ms(749);
    assert_eq!(counters::incr("k", 2, 1_000).expect("counter").count, 3);
    assert_eq!(counters::incr("other", 5, 1_000).expect("counter").count, 5);
    advance_ms(1);
    let c = counters::incr("k", 1, 1_000).expect("counter");
    assert_eq!(
        c,
        counters::Counter {
            count: 1,
            reset_ms: 1_000
        }
    );
    // A zero window is treated as 1 ms, like the gateway does.
    assert_eq!(counters::incr("z", 1, 0).expect("counter").reset_ms, 1);

    set_counters_error(Some("state store down"));
    assert_eq!(
        counters::incr("k", 1, 1_000),
        Err("state store down".to_owned())
    );
    set_counters_error(None);
    assert_eq!(counters::incr("k", 1, 1_000).expect("counter").count, 2);
}

#[test]
fn cache_honours_ttl() {
    assert_eq!(cache::get("k"), Ok(None));
    cache::set("k", b"v", 100).expect("set");
    advance_ms(99);
    assert_eq!(cache::get("k"), Ok(Some(b"v".to_vec())));
    advance_ms(1);
    assert_eq!(cache::get("k"), Ok(None));
    assert!(cache::set("big", &vec![0; 8 * 1024 * 1024 + 1], 1).is_err());

    set_cache_error(Some("down"));
    assert_eq!(cache::get("k"), Err("down".to_owned()));
    assert_eq!(cache::set("k", b"v", 1), Err("down".to_owned()));
}

#[test]
fn clock_credentials_logs_and_metrics() {
    assert_eq!(clock::now_ms(), DEFAULT_NOW_MS);
    set_now_ms(5);
    advance_ms(10);
    assert_eq!(clock::now_ms(), 15);

    assert_eq!(credentials::consumer_for_key("k1"), None);
    add_key("k1", "alice");
    assert_eq!(
        credentials::consumer_for_key("k1").as_deref(),
        Some("alice")
    );

    log::info("one");
    log::error("two");
    log::log(Level::Trace, "three");
    let logged: Vec<_> = logs().into_iter().map(|r| (r.level, r.message)).collect();
    assert_eq!(
        logged,
        [
            (Level::Info, "one".into()),
            (Level::Error, "two".into()),
            (Level::Trace, "three".into())
        ]
    );

    metrics::counter_add("hits", 2);
    metrics::counter_add("hits", 3);
    metrics::histogram_observe("latency", 1.5);
    metrics::histogram_observe("latency", 0.5);
    assert_eq!(metric_counter("hits"), 5);
    assert_eq!(metric_counter("never"), 0);
    assert_eq!(metric_histogram("latency"), [1.5, 0.5]);
    assert!(metric_histogram("never").is_empty());
}

#[test]
fn reset_forgets_everything_and_threads_are_separate() {
    add_key("k", "c");
    log::warn("x");
    metrics::counter_add("m", 1);
    cache::set("c", b"v", 1_000).expect("set");
    counters::incr("n", 1, 1_000).expect("counter");
    set_counters_error(Some("e"));
    advance_ms(1);

    std::thread::spawn(|| {
        assert_eq!(credentials::consumer_for_key("k"), None);
        assert!(logs().is_empty());
        assert_eq!(clock::now_ms(), DEFAULT_NOW_MS);
    })
    .join()
    .expect("thread");

    reset();
    assert_eq!(credentials::consumer_for_key("k"), None);
    assert!(logs().is_empty());
    assert_eq!(metric_counter("m"), 0);
    assert_eq!(cache::get("c"), Ok(None));
    assert_eq!(counters::incr("n", 1, 1_000).expect("counter").count, 1);
    assert_eq!(clock::now_ms(), DEFAULT_NOW_MS);
}

/// Answers 403 on `/deny`, tags requests and responses.
struct Probe;

impl Filter for Probe {
    fn init(config: &str) -> Result<Self, String> {
        match config {
            "ok" => Ok(Probe),
            other => Err(format!("bad config {other:?}")),
        }
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        if req.path() == "/deny" {
            return Reply::new(403).header("x-why", "denied").text("no").into();
        }
        req.set_header("x-seen", "1").expect("settable");
        Flow::Continue
    }

    fn on_response(&self, _req: &Request<'_>, resp: &mut Response<'_>) {
        let status = resp.status().to_string();
        resp.set_header("x-status", &status).expect("settable");
    }
}

#[test]
fn run_helpers_drive_the_hooks() {
    let filter = Probe::init("ok").expect("config");
    let req = TestRequest::get("/ok");
    assert_eq!(run_request(&filter, &req), Flow::Continue);
    assert_eq!(req.request().header("x-seen").as_deref(), Some("1"));

    let resp = TestResponse::new(201);
    run_response(&filter, &req, &resp);
    assert_eq!(resp.response().header("x-status").as_deref(), Some("201"));

    let upstream = TestResponse::new(200).header("x-up", "1");
    let resp = run_exchange(&filter, &req, upstream);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.response().header("x-up").as_deref(), Some("1"));
    assert_eq!(resp.response().header("x-status").as_deref(), Some("200"));

    let denied = run_exchange(&filter, &TestRequest::get("/deny"), TestResponse::new(200));
    assert_eq!(denied.status(), 403);
    assert_eq!(
        denied.headers(),
        [
            ("x-why".into(), "denied".into()),
            ("content-type".into(), "text/plain; charset=utf-8".into()),
            ("x-status".into(), "403".into()),
        ]
    );
}

#[test]
fn exported_instance_answers_500_until_initialised() {
    let instance = Instance::<Probe>::new();
    let req = TestRequest::get("/ok");
    let not_initialised = Reply::new(500)
        .header("content-type", "application/json")
        .body(&br#"{"error":"filter not initialised"}"#[..]);
    assert_eq!(
        instance.on_request(&mut req.request()),
        Flow::Respond(not_initialised.clone())
    );
    let resp = TestResponse::new(200);
    instance.on_response(&req.request(), &mut resp.response());
    assert!(resp.headers().is_empty());

    assert_eq!(
        instance.init("nope").expect_err("refused"),
        "bad config \"nope\""
    );
    assert_eq!(
        instance.on_request(&mut req.request()),
        Flow::Respond(not_initialised.clone())
    );

    instance.init("ok").expect("accepted");
    assert_eq!(instance.on_request(&mut req.request()), Flow::Continue);
    instance.on_response(&req.request(), &mut resp.response());
    assert_eq!(resp.response().header("x-status").as_deref(), Some("200"));

    // A refused re-configuration does not keep running the old one.
    assert!(instance.init("again").is_err());
    assert_eq!(
        instance.on_request(&mut req.request()),
        Flow::Respond(not_initialised)
    );
}

#[test]
fn sliding_counters_carry_the_previous_window() {
    crate::testing::reset();
    crate::testing::set_now_ms(1_000_000);
    crate::counters::incr_sliding("k", 4, 1_000).expect("counter");
    crate::testing::advance_ms(1_250);
    let s = crate::counters::incr_sliding("k", 1, 1_000).expect("counter");
    assert_eq!(
        (s.current, s.previous, s.elapsed_ms, s.reset_ms),
        (1, 4, 250, 750)
    );
    crate::testing::advance_ms(1_000);
    let s = crate::counters::incr_sliding("k", 2, 1_000).expect("counter");
    assert_eq!((s.current, s.previous), (2, 1));
    assert!((s.estimate(1_000) - (1.0 * 0.75 + 2.0)).abs() < 1e-9);
}

#[test]
fn context_carries_values_from_request_to_response() {
    struct Carry;
    impl crate::Filter for Carry {
        fn init(_: &str) -> Result<Self, String> {
            Ok(Carry)
        }
        fn on_request(&self, req: &mut crate::Request<'_>) -> crate::Flow {
            req.set_context("seen", "yes");
            crate::Flow::Continue
        }
        fn on_response(&self, req: &crate::Request<'_>, resp: &mut crate::Response<'_>) {
            let seen = req.context("seen").unwrap_or_default();
            let _ = resp.set_header("x-seen", &seen);
        }
    }
    let f = Carry;
    let done = crate::testing::run_exchange(
        &f,
        &crate::testing::TestRequest::get("/"),
        crate::testing::TestResponse::new(200),
    );
    assert_eq!(done.response().header("x-seen").as_deref(), Some("yes"));
}
