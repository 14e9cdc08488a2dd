use ferrox_sdk::testing::{self, TestRequest, TestResponse};
use ferrox_sdk::{Filter, Flow};

use super::*;

fn filter(config: &str) -> Transform {
    Transform::init(config).unwrap_or_else(|e| panic!("config {config} rejected: {e}"))
}

fn rejected(config: &str) -> String {
    match Transform::init(config) {
        Ok(_) => panic!("config {config} accepted"),
        Err(e) => e,
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// Run the request hook (which must continue) and return the request's headers.
fn run(f: &Transform, req: &TestRequest) -> Vec<(String, String)> {
    assert_eq!(testing::run_request(f, req), Flow::Continue);
    req.headers()
}

#[test]
fn the_designs_example_config_sets_a_response_header_and_leaves_the_request_alone() {
    let f = filter(r#"{"response":{"set_headers":{"x-gateway":"ferrox"}}}"#);
    let req = TestRequest::get("/a?b=1").header("x-gateway", "client");
    let resp = testing::run_exchange(
        &f,
        &req,
        TestResponse::new(200)
            .header("x-gateway", "upstream-1")
            .header("x-gateway", "upstream-2"),
    );
    assert_eq!(resp.headers(), pairs(&[("x-gateway", "ferrox")]));
    assert_eq!(req.headers(), pairs(&[("x-gateway", "client")]));
    let view = req.request();
    assert_eq!(
        (view.path(), view.query()),
        ("/a".into(), Some("b=1".into()))
    );
}

#[test]
fn empty_and_null_configs_edit_nothing() {
    for config in [
        "{}",
        r#"{"request":{},"response":{}}"#,
        r#"{"request":null}"#,
    ] {
        let f = filter(config);
        let req = TestRequest::get("/p?q").header("a", "1");
        let resp = testing::run_exchange(&f, &req, TestResponse::new(204).header("b", "2"));
        assert_eq!(req.headers(), pairs(&[("a", "1")]));
        assert_eq!(resp.headers(), pairs(&[("b", "2")]));
        assert_eq!(req.request().path(), "/p");
        assert_eq!(req.request().query().as_deref(), Some("q"));
    }
}

#[test]
fn set_headers_replaces_every_value() {
    let f = filter(r#"{"request":{"set_headers":{"X-A":"new","x-b":"b"}}}"#);
    let req = TestRequest::get("/")
        .header("x-a", "1")
        .header("other", "o")
        .header("X-A", "2");
    assert_eq!(
        run(&f, &req),
        pairs(&[("x-a", "new"), ("other", "o"), ("x-b", "b")])
    );
}

#[test]
fn add_headers_appends_after_the_values_present() {
    let f = filter(r#"{"request":{"add_headers":{"x-a":"3","x-new":"n"}}}"#);
    let req = TestRequest::get("/").header("x-a", "1").header("x-a", "2");
    run(&f, &req);
    assert_eq!(req.request().header_all("x-a"), ["1", "2", "3"]);
    assert_eq!(req.request().header_all("x-new"), ["n"]);
}

#[test]
fn remove_headers_removes_every_value_in_any_case() {
    let f = filter(r#"{"request":{"remove_headers":["X-Secret","absent"]}}"#);
    let req = TestRequest::get("/")
        .header("x-secret", "1")
        .header("keep", "k")
        .header("X-SECRET", "2");
    assert_eq!(run(&f, &req), pairs(&[("keep", "k")]));
}

#[test]
fn rename_moves_every_value_and_replaces_the_target() {
    let f = filter(r#"{"request":{"rename_headers":{"x-old":"x-new","x-gone":"x-other"}}}"#);
    let req = TestRequest::get("/")
        .header("x-old", "1")
        .header("x-new", "stale")
        .header("x-old", "2")
        .header("x-other", "untouched");
    run(&f, &req);
    let view = req.request();
    assert!(view.header_all("x-old").is_empty());
    assert_eq!(view.header_all("x-new"), ["1", "2"]);
    assert_eq!(
        view.header_all("x-other"),
        ["untouched"],
        "renaming a missing header does nothing"
    );
}

#[test]
fn renames_read_their_sources_first_so_two_headers_swap() {
    let f = filter(r#"{"request":{"rename_headers":{"a":"b","b":"a"}}}"#);
    let req = TestRequest::get("/")
        .header("a", "1")
        .header("a", "11")
        .header("b", "2");
    run(&f, &req);
    assert_eq!(req.request().header_all("a"), ["2"]);
    assert_eq!(req.request().header_all("b"), ["1", "11"]);
}

#[test]
fn header_operations_apply_remove_rename_set_add_in_that_order() {
    let f = filter(
        r#"{"request":{
            "remove_headers":["x-a"],
            "rename_headers":{"x-b":"x-a"},
            "set_headers":{"x-c":"set","x-d":"set"},
            "add_headers":{"x-a":"added","x-d":"added"}
        }}"#,
    );
    let req = TestRequest::get("/")
        .header("x-a", "from-client")
        .header("x-b", "b")
        .header("x-c", "c");
    run(&f, &req);
    let view = req.request();
    // remove first (the client's x-a), then rename x-b into x-a, then add to it.
    assert_eq!(view.header_all("x-a"), ["b", "added"]);
    assert!(view.header_all("x-b").is_empty());
    assert_eq!(view.header_all("x-c"), ["set"]);
    // set before add: both values survive.
    assert_eq!(view.header_all("x-d"), ["set", "added"]);

    // A removed header is gone before it could be renamed.
    let f = filter(r#"{"request":{"remove_headers":["x-a"],"rename_headers":{"x-a":"x-z"}}}"#);
    let req = TestRequest::get("/").header("x-a", "1");
    assert!(run(&f, &req).is_empty());
}

#[test]
fn response_headers_are_set_added_removed_and_renamed() {
    let f = filter(
        r#"{"response":{
            "remove_headers":["server"],
            "rename_headers":{"x-upstream-id":"x-origin-id","x-missing":"x-never"},
            "set_headers":{"cache-control":"no-store"},
            "add_headers":{"vary":"x-api-version"}
        }}"#,
    );
    let req = TestRequest::get("/");
    let resp = testing::run_exchange(
        &f,
        &req,
        TestResponse::new(200)
            .header("server", "nginx")
            .header("cache-control", "max-age=60")
            .header("vary", "accept")
            .header("x-upstream-id", "u1"),
    );
    assert_eq!(
        resp.headers(),
        pairs(&[
            ("cache-control", "no-store"),
            ("vary", "accept"),
            ("x-origin-id", "u1"),
            ("vary", "x-api-version"),
        ])
    );
    assert_eq!(resp.status(), 200);
}

#[test]
fn response_edits_need_nothing_from_the_request_hook() {
    // on_request and on_response may run on different instances.
    let config = r#"{"response":{"set_headers":{"x-route":"$route","x-consumer":"$consumer"}}}"#;
    let req = TestRequest::get("/").route("users").consumer("alice");
    assert_eq!(testing::run_request(&filter(config), &req), Flow::Continue);
    let resp = TestResponse::new(200);
    testing::run_response(&filter(config), &req, &resp);
    assert_eq!(
        resp.headers(),
        pairs(&[("x-consumer", "alice"), ("x-route", "users")])
    );
}

#[test]
fn strip_prefix_only_on_a_segment_boundary() {
    for config_prefix in ["/api", "/api/", "/api//"] {
        let f = filter(&format!(
            r#"{{"request":{{"strip_prefix":"{config_prefix}"}}}}"#
        ));
        for (path, want) in [
            ("/api", "/"),
            ("/api/", "/"),
            ("/api/users", "/users"),
            ("/api/users/7?x=1", "/users/7"),
            ("/apix", "/apix"),
            ("/apix/users", "/apix/users"),
            ("/v1/api/users", "/v1/api/users"),
            ("/API/users", "/API/users"),
            ("/", "/"),
        ] {
            let req = TestRequest::get(path);
            run(&f, &req);
            assert_eq!(req.request().path(), want, "{path} with {config_prefix}");
        }
    }
    let f = filter(r#"{"request":{"strip_prefix":"/api/v1"}}"#);
    let req = TestRequest::get("/api/v1/items?page=2");
    run(&f, &req);
    assert_eq!(req.request().path(), "/items");
    assert_eq!(req.request().query().as_deref(), Some("page=2"));
}

#[test]
fn rewrite_path_replaces_the_path_and_keeps_the_query() {
    let f = filter(r#"{"request":{"rewrite_path":"/v2/items"}}"#);
    let req = TestRequest::get("/anything/else?page=2");
    run(&f, &req);
    assert_eq!(req.request().path(), "/v2/items");
    assert_eq!(req.request().query().as_deref(), Some("page=2"));
}

#[test]
fn add_query_appends_percent_encoded_pairs() {
    let f = filter(r#"{"request":{"add_query":{"source":"gateway","q x":"a b&c=d/é+%?#$$"}}}"#);
    for (uri, want) in [
        (
            "/p",
            "q%20x=a%20b%26c%3Dd%2F%C3%A9%2B%25%3F%23%24&source=gateway",
        ),
        (
            "/p?",
            "q%20x=a%20b%26c%3Dd%2F%C3%A9%2B%25%3F%23%24&source=gateway",
        ),
        (
            "/p?source=client",
            "source=client&q%20x=a%20b%26c%3Dd%2F%C3%A9%2B%25%3F%23%24&source=gateway",
        ),
        (
            "/p?a=1&",
            "a=1&q%20x=a%20b%26c%3Dd%2F%C3%A9%2B%25%3F%23%24&source=gateway",
        ),
    ] {
        let req = TestRequest::get(uri);
        run(&f, &req);
        assert_eq!(req.request().query().as_deref(), Some(want), "{uri}");
    }
}

#[test]
fn unreserved_characters_stay_as_they_are() {
    let mut out = String::new();
    encode_component("AZaz09-._~ !*'()", &mut out);
    assert_eq!(out, "AZaz09-._~%20%21%2A%27%28%29");
}

#[test]
fn path_edits_come_before_the_query() {
    let f = filter(r#"{"request":{"strip_prefix":"/api","add_query":{"v":"1"}}}"#);
    let req = TestRequest::get("/api/items?x=y");
    run(&f, &req);
    let view = req.request();
    assert_eq!(view.path(), "/items");
    assert_eq!(view.query().as_deref(), Some("x=y&v=1"));
}

#[test]
fn templates_render_each_variable_in_headers_and_query() {
    let f = filter(
        r#"{"request":{
            "set_headers":{
                "x-all":"$consumer|$request_id|$client_ip|$route",
                "x-braced":"${route}v2-${consumer}",
                "x-dollar":"$$5 and $$route",
                "x-number":2,
                "x-bool":true
            },
            "add_query":{"rid":"$request_id","who":"$consumer@$client_ip"}
        },
        "response":{"add_headers":{"x-rid":"$request_id","x-ip":"$client_ip"}}}"#,
    );
    let req = TestRequest::get("/p")
        .consumer("alice")
        .request_id("rid-42")
        .client_ip("2001:db8::1")
        .route("users");
    let resp = testing::run_exchange(&f, &req, TestResponse::new(200));
    let view = req.request();
    assert_eq!(
        view.header("x-all").as_deref(),
        Some("alice|rid-42|2001:db8::1|users")
    );
    assert_eq!(view.header("x-braced").as_deref(), Some("usersv2-alice"));
    assert_eq!(view.header("x-dollar").as_deref(), Some("$5 and $route"));
    assert_eq!(view.header("x-number").as_deref(), Some("2"));
    assert_eq!(view.header("x-bool").as_deref(), Some("true"));
    assert_eq!(
        view.query().as_deref(),
        Some("rid=rid-42&who=alice%402001%3Adb8%3A%3A1")
    );
    assert_eq!(
        resp.headers(),
        pairs(&[("x-ip", "2001:db8::1"), ("x-rid", "rid-42")])
    );
}

#[test]
fn consumer_is_empty_without_one() {
    let f = filter(
        r#"{"request":{"set_headers":{"x-c":"[$consumer]"},"add_query":{"c":"$consumer"}}}"#,
    );
    let req = TestRequest::get("/");
    run(&f, &req);
    assert_eq!(req.request().header("x-c").as_deref(), Some("[]"));
    assert_eq!(req.request().query().as_deref(), Some("c="));
}

#[test]
fn an_edit_the_gateway_refuses_is_skipped_and_the_rest_still_applies() {
    // A consumer name another filter set may hold bytes a header value cannot.
    let f = filter(
        r#"{"request":{"set_headers":{"x-a":"$consumer","x-b":"ok"},"add_query":{"c":"$consumer"}}}"#,
    );
    let req = TestRequest::get("/").consumer("bad\nname");
    assert_eq!(run(&f, &req), pairs(&[("x-b", "ok")]));
    assert_eq!(req.request().query().as_deref(), Some("c=bad%0Aname"));
}

#[test]
fn templates_parse_into_literals_and_variables() {
    use template::Template;
    assert_eq!(
        Template::parse("plain").expect("ok").as_literal(),
        Some("plain")
    );
    assert_eq!(Template::parse("").expect("ok").as_literal(), Some(""));
    assert_eq!(
        Template::parse("$$$$ $$x").expect("ok").as_literal(),
        Some("$$ $x")
    );
    assert_eq!(Template::parse("$route").expect("ok").as_literal(), None);
    for bad in ["$", "a $", "$ a", "$-", "${", "${route", "$$$"] {
        let e = Template::parse(bad).expect_err(bad);
        assert!(e.contains("`$$`") || e.contains("unclosed"), "{bad}: {e}");
    }
    for unknown in ["$user", "${host}", "$route_name", "$Route", "${}"] {
        let e = Template::parse(unknown).expect_err(unknown);
        assert!(e.starts_with("unknown variable `$"), "{unknown}: {e}");
        assert!(
            e.contains("$consumer, $request_id, $client_ip, $route"),
            "{e}"
        );
    }
}

#[test]
fn bad_configs_are_rejected_with_the_field_named() {
    for (config, want) in [
        ("not json", "invalid JSON"),
        ("[]", "must be an object"),
        (
            r#"{"requests":{}}"#,
            "unknown field `requests` in the configuration",
        ),
        (
            r#"{"request":{"set_header":{}}}"#,
            "unknown field `set_header` in `request` (expected one of: set_headers,",
        ),
        (
            r#"{"response":{"strip_prefix":"/a"}}"#,
            "unknown field `strip_prefix` in `response`",
        ),
        (r#"{"request":[]}"#, "`request` must be an object"),
        (
            r#"{"request":{"set_headers":{"bad name":"v"}}}"#,
            r#"request.set_headers: "bad name" is not a valid header name"#,
        ),
        (
            r#"{"response":{"add_headers":{"":"v"}}}"#,
            r#"response.add_headers: "" is not a valid header name"#,
        ),
        (
            r#"{"request":{"remove_headers":["x:y"]}}"#,
            "request.remove_headers: \"x:y\" is not a valid header name",
        ),
        (
            r#"{"request":{"remove_headers":"x-a"}}"#,
            "request.remove_headers must be a list",
        ),
        (
            r#"{"request":{"remove_headers":[1]}}"#,
            "request.remove_headers: 1 is not a header name",
        ),
        (
            r#"{"request":{"rename_headers":{"x-a":"b c"}}}"#,
            "request.rename_headers: \"b c\" is not a valid header name",
        ),
        (
            r#"{"request":{"rename_headers":{"x-a":1}}}"#,
            "request.rename_headers.x-a: the new name must be a string",
        ),
        (
            r#"{"request":{"set_headers":{"Host":"evil"}}}"#,
            "request.set_headers: header `host` is managed by the gateway",
        ),
        (
            r#"{"response":{"remove_headers":["content-length"]}}"#,
            "response.remove_headers: header `content-length` is managed",
        ),
        (
            r#"{"request":{"rename_headers":{"x-a":"connection"}}}"#,
            "header `connection` is managed",
        ),
        (
            r#"{"request":{"set_headers":{"X-A":"1","x-a":"2"}}}"#,
            "request.set_headers: `x-a` is listed twice",
        ),
        (
            r#"{"request":{"rename_headers":{"X-A":"x-b","x-a":"x-c"}}}"#,
            "request.rename_headers: `x-a` is listed twice",
        ),
        (
            r#"{"request":{"rename_headers":{"x-a":"X-A"}}}"#,
            "`x-a` is renamed to itself",
        ),
        (
            r#"{"request":{"rename_headers":{"x-a":"x-c","x-b":"x-c"}}}"#,
            "two headers are renamed to `x-c`",
        ),
        (
            r#"{"request":{"set_headers":{"x-a":{"v":1}}}}"#,
            "request.set_headers.x-a: the value must be a string",
        ),
        (
            r#"{"request":{"set_headers":{"x-a":"a\nb"}}}"#,
            "request.set_headers.x-a: the value contains a control character",
        ),
        (
            r#"{"response":{"set_headers":{"x-a":"$host"}}}"#,
            "response.set_headers.x-a: unknown variable `$host`",
        ),
        (
            r#"{"request":{"add_query":{"p":"5$"}}}"#,
            "request.add_query.p: a `$` not followed by a variable name",
        ),
        (
            r#"{"request":{"add_query":{"":"v"}}}"#,
            "parameter name is empty",
        ),
        (
            r#"{"request":{"add_query":["a"]}}"#,
            "request.add_query must be a map",
        ),
        (
            r#"{"request":{"strip_prefix":"/a","rewrite_path":"/b"}}"#,
            "`strip_prefix` and `rewrite_path` cannot be combined",
        ),
        (
            r#"{"request":{"strip_prefix":"api"}}"#,
            "request.strip_prefix: \"api\" must start with `/`",
        ),
        (r#"{"request":{"strip_prefix":"/"}}"#, "`/` strips nothing"),
        (
            r#"{"request":{"rewrite_path":"/a?b=1"}}"#,
            "request.rewrite_path: \"/a?b=1\" may hold only visible ASCII",
        ),
        (
            r#"{"request":{"rewrite_path":"/a b"}}"#,
            "may hold only visible ASCII",
        ),
        (
            r#"{"request":{"rewrite_path":"/é"}}"#,
            "percent-encode other characters",
        ),
        (
            r#"{"request":{"rewrite_path":5}}"#,
            "request.rewrite_path must be a string",
        ),
    ] {
        let e = rejected(config);
        assert!(e.contains(want), "{config}: got {e:?}, want {want:?}");
    }
}

#[test]
fn literal_dollars_and_tabs_are_fine_in_values() {
    let f = filter(r#"{"request":{"set_headers":{"x-price":"$$10\tUSD"}}}"#);
    let req = TestRequest::get("/");
    run(&f, &req);
    assert_eq!(req.request().header("x-price").as_deref(), Some("$10\tUSD"));
}

#[test]
fn config_parses_into_ordered_operations() {
    let c = config::parse(
        r#"{"request":{"remove_headers":["B","a","b"],"set_headers":{"Z":"1","y":"$route"}}}"#,
    )
    .expect("valid");
    assert_eq!(c.request.headers.remove, ["b", "a"], "duplicates dropped");
    let set: Vec<&str> = c
        .request
        .headers
        .set
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(set, ["z", "y"], "the JSON key order, lowercased");
    assert!(c.response.headers.is_empty());
}

#[test]
fn a_response_rename_moves_every_value() {
    let f = filter(r#"{"response":{"rename_headers":{"x-a":"x-b"}}}"#);
    let req = TestRequest::get("/");
    let resp = testing::run_exchange(
        &f,
        &req,
        TestResponse::new(200).header("x-a", "1").header("x-a", "2"),
    );
    assert_eq!(resp.headers(), pairs(&[("x-b", "1"), ("x-b", "2")]));
}
