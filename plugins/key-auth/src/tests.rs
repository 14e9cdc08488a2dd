//! Native unit tests of `key-auth` against the SDK's in-memory gateway.

use ferrox_sdk::serde_json::{self, Value};
use ferrox_sdk::testing::{self, TestRequest, TestResponse};
use ferrox_sdk::{Filter, Flow, Reply};

use super::*;

const ALICE_KEY: &str = "alice-secret-key";
const BOB_KEY: &str = "bob-secret-key";

fn filter(config: &str) -> KeyAuth {
    KeyAuth::init(config).expect("valid config")
}

fn init_err(config: &str) -> String {
    KeyAuth::init(config).expect_err("config refused")
}

fn keys() {
    testing::add_key(ALICE_KEY, "alice");
    testing::add_key(BOB_KEY, "bob");
}

/// The reply of a refused request.
fn reply(flow: Flow) -> Reply {
    match flow {
        Flow::Respond(r) => r,
        Flow::Continue => panic!("expected a reply, got Continue"),
    }
}

fn body(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).expect("JSON body")
}

fn challenges(reply: &Reply) -> Vec<&str> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Assert a `401` with the JSON body and `message`, and that no secret leaked into it, the logs
/// or the filter's metrics.
fn assert_unauthorized(flow: Flow, message: &str) -> Reply {
    let reply = reply(flow);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header_value("content-type"), Some("application/json"));
    assert_eq!(reply.header_value("cache-control"), Some("no-store"));
    let b = body(&reply);
    assert_eq!(b["error"], "unauthorized");
    assert_eq!(b["message"], message);
    assert_eq!(b.as_object().map(|o| o.len()), Some(2), "{b}");
    assert_no_secret_in_reply(&reply);
    assert_no_secret_logged();
    reply
}

const SECRETS: [&str; 4] = [ALICE_KEY, BOB_KEY, "wrong-key", "s3cr3t"];

fn assert_no_secret_in_reply(reply: &Reply) {
    let text = format!(
        "{:?} {}",
        reply.headers,
        String::from_utf8_lossy(&reply.body)
    );
    for s in SECRETS {
        assert!(!text.contains(s), "{s} in reply: {text}");
    }
}

fn assert_no_secret_logged() {
    for line in testing::logs() {
        for s in SECRETS {
            assert!(!line.message.contains(s), "{s} logged: {line:?}");
        }
    }
}

fn log_messages() -> Vec<String> {
    testing::logs().into_iter().map(|l| l.message).collect()
}

// --- configuration ---

#[test]
fn defaults_read_the_apikey_header_only_and_hide_it() {
    let f = filter("{}");
    assert_eq!(
        f,
        KeyAuth {
            headers: vec!["apikey".into()],
            bearer: false,
            query: None,
            hide_credentials: true,
        }
    );
}

#[test]
fn every_field_is_parsed_and_header_names_are_lower_cased() {
    let f = filter(
        r#"{"headers": ["X-API-Key", "apikey"], "bearer": true, "query": "api_key", "hide_credentials": false}"#,
    );
    assert_eq!(
        f,
        KeyAuth {
            headers: vec!["x-api-key".into(), "apikey".into()],
            bearer: true,
            query: Some("api_key".into()),
            hide_credentials: false,
        }
    );
    assert_eq!(filter(r#"{"header": "X-Key"}"#).headers, ["x-key"]);
    assert_eq!(filter(r#"{"query": null}"#).query, None);
    // Bearer-only and query-only are fine.
    assert!(
        filter(r#"{"headers": [], "bearer": true}"#)
            .headers
            .is_empty()
    );
    assert!(
        filter(r#"{"headers": [], "query": "k"}"#)
            .headers
            .is_empty()
    );
}

#[test]
fn bad_configs_are_refused_with_the_field_named() {
    let cases = [
        (r#"{"heder": "apikey"}"#, "unknown field `heder`"),
        ("[]", "config must be a JSON object"),
        ("not json", "config is not valid JSON"),
        (
            r#"{"header": "a", "headers": ["b"]}"#,
            "`header` and `headers` are exclusive",
        ),
        (r#"{"header": 5}"#, "`header` must be a header name"),
        (
            r#"{"header": ""}"#,
            "`header`: \"\" is not a valid header name",
        ),
        (
            r#"{"header": "api key"}"#,
            "`header`: \"api key\" is not a valid header name",
        ),
        (r#"{"headers": "apikey"}"#, "`headers` must be a list"),
        (
            r#"{"headers": ["a", "b:c"]}"#,
            "`headers[1]`: \"b:c\" is not a valid header name",
        ),
        (r#"{"headers": ["a", "A"]}"#, "`headers` lists \"a\" twice"),
        (
            r#"{"header": "Authorization"}"#,
            "use `bearer: true` to accept keys in Authorization",
        ),
        (r#"{"bearer": "yes"}"#, "`bearer` must be true or false"),
        (
            r#"{"hide_credentials": 1}"#,
            "`hide_credentials` must be true or false",
        ),
        (
            r#"{"query": 1}"#,
            "`query` must be a parameter name or null",
        ),
        (
            r#"{"query": ""}"#,
            "`query` must be a parameter name of visible ASCII",
        ),
        (r#"{"query": "a&b"}"#, "`query` must be a parameter name"),
        (r#"{"query": "a b"}"#, "`query` must be a parameter name"),
        (r#"{"query": "clé"}"#, "`query` must be a parameter name"),
        (r#"{"headers": []}"#, "no key could ever be presented"),
    ];
    for (config, expected) in cases {
        let err = init_err(config);
        assert!(
            err.contains(expected),
            "{config}: {err:?} lacks {expected:?}"
        );
    }
    assert!(
        init_err(r#"{"x": 1}"#)
            .contains("expected one of: header, headers, bearer, query, hide_credentials")
    );
}

// --- the default header ---

#[test]
fn a_known_key_sets_the_consumer_and_the_key_header_is_removed() {
    keys();
    let f = filter("{}");
    let req = TestRequest::get("/x")
        .header("APIKey", ALICE_KEY)
        .header("x-other", "kept");
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    let view = req.request();
    assert_eq!(view.consumer().as_deref(), Some("alice"));
    assert_eq!(view.header("apikey"), None, "key hidden from the upstream");
    assert_eq!(view.header("x-other").as_deref(), Some("kept"));
    assert_eq!(testing::metric_counter("auth_success"), 1);
    assert_eq!(testing::metric_counter("auth_failure"), 0);
    assert_eq!(log_messages(), ["authenticated consumer alice"]);
    assert_no_secret_logged();
}

#[test]
fn hide_credentials_false_forwards_the_key() {
    keys();
    let f = filter(r#"{"hide_credentials": false}"#);
    let req = TestRequest::get("/").header("apikey", BOB_KEY);
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().consumer().as_deref(), Some("bob"));
    assert_eq!(req.request().header("apikey").as_deref(), Some(BOB_KEY));
}

#[test]
fn a_missing_key_is_401_with_a_key_challenge() {
    keys();
    let f = filter("{}");
    let req = TestRequest::get("/").header("x-api-key", ALICE_KEY);
    let r = assert_unauthorized(testing::run_request(&f, &req), "no API key in the request");
    assert_eq!(challenges(&r), [r#"Key realm="ferrox", header="apikey""#]);
    assert_eq!(req.request().consumer(), None);
    assert_eq!(testing::metric_counter("auth_failure"), 1);
    assert_eq!(testing::metric_counter("auth_success"), 0);
    assert_eq!(log_messages(), ["rejected: missing key"]);
}

#[test]
fn an_unknown_key_is_401_and_only_unknown_key_is_logged() {
    keys();
    let f = filter("{}");
    let req = TestRequest::get("/").header("apikey", "wrong-key");
    let r = assert_unauthorized(testing::run_request(&f, &req), "the API key is not valid");
    assert_eq!(challenges(&r), [r#"Key realm="ferrox", header="apikey""#]);
    assert_eq!(req.request().consumer(), None);
    assert_eq!(testing::metric_counter("auth_failure"), 1);
    assert_eq!(log_messages(), ["rejected: unknown key"]);
}

#[test]
fn an_empty_key_is_unknown_not_missing() {
    keys();
    let f = filter("{}");
    let req = TestRequest::get("/").header("apikey", "");
    assert_unauthorized(testing::run_request(&f, &req), "the API key is not valid");
}

#[test]
fn the_same_key_twice_is_one_key_but_two_different_keys_are_ambiguous() {
    keys();
    let f = filter("{}");
    let same = TestRequest::get("/")
        .header("apikey", ALICE_KEY)
        .header("apikey", ALICE_KEY);
    assert_eq!(testing::run_request(&f, &same), Flow::Continue);
    assert!(same.request().header_all("apikey").is_empty());

    for other in [BOB_KEY, "wrong-key"] {
        let req = TestRequest::get("/")
            .header("apikey", ALICE_KEY)
            .header("apikey", other);
        assert_unauthorized(
            testing::run_request(&f, &req),
            "more than one API key in the request",
        );
        assert_eq!(req.request().consumer(), None, "no consumer on ambiguity");
    }
    assert_eq!(testing::metric_counter("auth_failure"), 2);
    assert!(log_messages().contains(&"rejected: ambiguous (different keys presented)".into()));
}

#[test]
fn the_client_gets_the_challenge_through_a_full_exchange() {
    keys();
    let f = filter("{}");
    let req = TestRequest::get("/");
    let resp = testing::run_exchange(&f, &req, TestResponse::new(200));
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.response().header("www-authenticate").as_deref(),
        Some(r#"Key realm="ferrox", header="apikey""#)
    );
}

// --- several headers ---

#[test]
fn any_configured_header_works_and_all_are_removed() {
    keys();
    let f = filter(r#"{"headers": ["apikey", "x-api-key"]}"#);
    let req = TestRequest::get("/").header("X-Api-Key", ALICE_KEY);
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().consumer().as_deref(), Some("alice"));
    assert_eq!(req.request().header("x-api-key"), None);

    let both = TestRequest::get("/")
        .header("apikey", BOB_KEY)
        .header("x-api-key", BOB_KEY);
    assert_eq!(testing::run_request(&f, &both), Flow::Continue);
    assert_eq!(both.request().header("apikey"), None);
    assert_eq!(both.request().header("x-api-key"), None);

    let different = TestRequest::get("/")
        .header("apikey", BOB_KEY)
        .header("x-api-key", ALICE_KEY);
    let r = assert_unauthorized(
        testing::run_request(&f, &different),
        "more than one API key in the request",
    );
    // The challenge names the first configured header.
    assert_eq!(challenges(&r), [r#"Key realm="ferrox", header="apikey""#]);
}

// --- bearer ---

#[test]
fn bearer_is_ignored_unless_enabled() {
    keys();
    let f = filter("{}");
    let req = TestRequest::get("/").header("authorization", &format!("Bearer {ALICE_KEY}"));
    assert_unauthorized(testing::run_request(&f, &req), "no API key in the request");
}

#[test]
fn bearer_keys_are_accepted_and_authorization_is_removed() {
    keys();
    let f = filter(r#"{"bearer": true}"#);
    for value in [
        format!("Bearer {ALICE_KEY}"),
        format!("bearer {ALICE_KEY}"),
        format!("BEARER   {ALICE_KEY}"),
    ] {
        let req = TestRequest::get("/").header("authorization", &value);
        assert_eq!(testing::run_request(&f, &req), Flow::Continue, "{value}");
        assert_eq!(req.request().consumer().as_deref(), Some("alice"));
        assert_eq!(req.request().header("authorization"), None);
    }
    // The apikey header still works alongside.
    let req = TestRequest::get("/").header("apikey", BOB_KEY);
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().consumer().as_deref(), Some("bob"));
}

#[test]
fn other_authorization_schemes_are_not_keys_and_are_kept() {
    keys();
    let f = filter(r#"{"bearer": true}"#);
    let req = TestRequest::get("/")
        .header("authorization", "Basic czNjcjN0")
        .header("apikey", ALICE_KEY);
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(
        req.request().header_all("authorization"),
        ["Basic czNjcjN0"],
        "not the key: left for the upstream"
    );
    assert_eq!(req.request().header("apikey"), None);

    // Bearer carrying the key is removed, the Basic field next to it is kept.
    let req = TestRequest::get("/")
        .header("authorization", "Basic czNjcjN0")
        .header("authorization", &format!("Bearer {ALICE_KEY}"));
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(
        req.request().header_all("authorization"),
        ["Basic czNjcjN0"]
    );

    // Basic alone is no key.
    let req = TestRequest::get("/").header("authorization", "Basic czNjcjN0");
    assert_unauthorized(testing::run_request(&f, &req), "no API key in the request");
}

#[test]
fn header_and_bearer_with_different_keys_are_ambiguous_same_key_is_fine() {
    keys();
    let f = filter(r#"{"bearer": true}"#);
    let req = TestRequest::get("/")
        .header("apikey", ALICE_KEY)
        .header("authorization", &format!("Bearer {BOB_KEY}"));
    let r = assert_unauthorized(
        testing::run_request(&f, &req),
        "more than one API key in the request",
    );
    assert_eq!(
        challenges(&r),
        [
            r#"Key realm="ferrox", header="apikey""#,
            r#"Bearer realm="ferrox", error="invalid_request""#
        ]
    );

    let req = TestRequest::get("/")
        .header("apikey", ALICE_KEY)
        .header("authorization", &format!("Bearer {ALICE_KEY}"));
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().header("apikey"), None);
    assert_eq!(req.request().header("authorization"), None);
}

#[test]
fn bearer_challenges_follow_rfc_6750() {
    keys();
    let f = filter(r#"{"headers": [], "bearer": true}"#);
    let r = assert_unauthorized(
        testing::run_request(&f, &TestRequest::get("/")),
        "no API key in the request",
    );
    assert_eq!(challenges(&r), [r#"Bearer realm="ferrox""#]);

    let req = TestRequest::get("/").header("authorization", "Bearer wrong-key");
    let r = assert_unauthorized(testing::run_request(&f, &req), "the API key is not valid");
    assert_eq!(
        challenges(&r),
        [r#"Bearer realm="ferrox", error="invalid_token""#]
    );

    // "Bearer" with no token is a presented, unusable credential.
    let req = TestRequest::get("/").header("authorization", "Bearer");
    assert_unauthorized(testing::run_request(&f, &req), "the API key is not valid");

    // With headers: [] the apikey header is not a source.
    let req = TestRequest::get("/").header("apikey", ALICE_KEY);
    assert_unauthorized(testing::run_request(&f, &req), "no API key in the request");
}

#[test]
fn bearer_with_hide_credentials_false_keeps_authorization() {
    keys();
    let f = filter(r#"{"bearer": true, "hide_credentials": false}"#);
    let value = format!("Bearer {ALICE_KEY}");
    let req = TestRequest::get("/").header("authorization", &value);
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().header("authorization"), Some(value));
}

// --- query ---

#[test]
fn the_query_is_never_read_unless_configured() {
    keys();
    let f = filter(r#"{"bearer": true}"#);
    let req = TestRequest::get(&format!("/?apikey={ALICE_KEY}&api_key={ALICE_KEY}"));
    assert_unauthorized(testing::run_request(&f, &req), "no API key in the request");
}

#[test]
fn a_query_key_is_accepted_and_removed_keeping_other_parameters() {
    keys();
    let f = filter(r#"{"query": "api_key"}"#);
    let req = TestRequest::get(&format!(
        "/items?page=2&api_key={ALICE_KEY}&sort=a%20b&flag"
    ));
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().consumer().as_deref(), Some("alice"));
    assert_eq!(
        req.request().query().as_deref(),
        Some("page=2&sort=a%20b&flag"),
        "other parameters kept as sent"
    );

    // The only parameter: the query goes away.
    let req = TestRequest::get(&format!("/?api_key={BOB_KEY}"));
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().consumer().as_deref(), Some("bob"));
    assert_eq!(req.request().query(), None);

    // Percent-encoded names and values are decoded.
    let req = TestRequest::get("/?api%5Fkey=alice%2Dsecret%2dkey&x=1");
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().consumer().as_deref(), Some("alice"));
    assert_eq!(req.request().query().as_deref(), Some("x=1"));

    // The header still works, and leaves the query untouched.
    let req = TestRequest::get("/?x=1").header("apikey", ALICE_KEY);
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().query().as_deref(), Some("x=1"));
}

#[test]
fn query_ambiguity_unknown_and_challenge() {
    keys();
    let f = filter(r#"{"query": "api_key"}"#);
    let req = TestRequest::get(&format!("/?api_key={ALICE_KEY}&api_key={BOB_KEY}"));
    let r = assert_unauthorized(
        testing::run_request(&f, &req),
        "more than one API key in the request",
    );
    assert_eq!(
        challenges(&r),
        [r#"Key realm="ferrox", header="apikey", query="api_key""#]
    );
    let req = TestRequest::get(&format!("/?api_key={ALICE_KEY}")).header("apikey", BOB_KEY);
    assert_unauthorized(
        testing::run_request(&f, &req),
        "more than one API key in the request",
    );
    let req = TestRequest::get("/?api_key=wrong-key");
    assert_unauthorized(testing::run_request(&f, &req), "the API key is not valid");
    // Invalid UTF-8 after decoding is never looked up.
    let req = TestRequest::get("/?api_key=%FF");
    assert_unauthorized(testing::run_request(&f, &req), "the API key is not valid");
    // A parameter without a value is an empty key.
    let req = TestRequest::get("/?api_key");
    assert_unauthorized(testing::run_request(&f, &req), "the API key is not valid");
    // A similar name is not the parameter.
    let req = TestRequest::get(&format!("/?api_keys={ALICE_KEY}"));
    assert_unauthorized(testing::run_request(&f, &req), "no API key in the request");

    let query_only = filter(r#"{"headers": [], "query": "k"}"#);
    let r = assert_unauthorized(
        testing::run_request(&query_only, &TestRequest::get("/")),
        "no API key in the request",
    );
    assert_eq!(challenges(&r), [r#"Key realm="ferrox", query="k""#]);
}

#[test]
fn query_key_kept_when_hide_credentials_is_false() {
    keys();
    let f = filter(r#"{"query": "k", "hide_credentials": false}"#);
    let req = TestRequest::get(&format!("/?k={ALICE_KEY}"));
    assert_eq!(testing::run_request(&f, &req), Flow::Continue);
    assert_eq!(req.request().query(), Some(format!("k={ALICE_KEY}")));
}

// --- helpers ---

#[test]
fn percent_decoding_handles_escapes_plus_and_invalid_sequences() {
    assert_eq!(percent_decode("a%20b+c"), b"a b c");
    assert_eq!(percent_decode("%41%6a"), b"Aj");
    assert_eq!(percent_decode("100%"), b"100%");
    assert_eq!(percent_decode("%zz%4"), b"%zz%4");
    assert_eq!(percent_decode("%FF"), [0xff]);
}

#[test]
fn bearer_parsing() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("  bearer \t abc "), Some("abc"));
    assert_eq!(bearer_token("Bearer"), Some(""));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearerabc"), None);
}
