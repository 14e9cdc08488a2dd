//! Native unit tests of `jwt-auth` against the SDK's in-memory gateway, with real HS256 tokens.

use ferrox_sdk::credentials::JwtAlgorithm;
use ferrox_sdk::serde_json::{self, Value, json};
use ferrox_sdk::testing::{self, TestJwtKey, TestRequest};
use ferrox_sdk::{Filter, Flow, Reply};

use super::*;

const SECRET: &[u8] = b"alice-jwt-secret";
const NOW: u64 = testing::DEFAULT_NOW_MS / 1000;

fn filter(config: &str) -> JwtAuth {
    JwtAuth::init(config).expect("valid config")
}

fn init_err(config: &str) -> String {
    JwtAuth::init(config).expect_err("config refused")
}

/// alice: HS256 credential for issuer `alice-app`.
fn alice() -> String {
    testing::add_jwt_credential(
        "alice",
        "alice-app",
        None,
        JwtAlgorithm::HS256,
        TestJwtKey::Secret(SECRET.to_vec()),
    )
}

fn claims() -> Value {
    json!({ "iss": "alice-app", "sub": "u-1", "exp": NOW + 600 })
}

fn hs256(claims: &Value) -> String {
    testing::sign_jwt(
        JwtAlgorithm::HS256,
        SECRET,
        &json!({ "alg": "HS256", "typ": "JWT" }),
        claims,
    )
}

fn bearer_req(token: &str) -> TestRequest {
    TestRequest::get("/x").header("authorization", &format!("Bearer {token}"))
}

fn reply(flow: Flow) -> Reply {
    match flow {
        Flow::Respond(r) => r,
        Flow::Continue => panic!("expected a reply, got Continue"),
    }
}

/// Assert a `401` with `message`, the bearer `error` code, and that no token leaked into the
/// reply or the logs.
fn assert_401(flow: Flow, message: &str, error: Option<&str>, secrets: &[&str]) {
    let reply = reply(flow);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header_value("content-type"), Some("application/json"));
    assert_eq!(reply.header_value("cache-control"), Some("no-store"));
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON body");
    assert_eq!(body, json!({ "error": "unauthorized", "message": message }));
    let challenge = reply.header_value("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"ferrox\""),
        "{challenge}"
    );
    match error {
        Some(e) => assert!(challenge.contains(&format!("error=\"{e}\"")), "{challenge}"),
        None => assert!(!challenge.contains("error="), "{challenge}"),
    }
    let text = format!(
        "{:?} {}",
        reply.headers,
        String::from_utf8_lossy(&reply.body)
    );
    for s in secrets {
        assert!(!text.contains(s), "token in reply: {text}");
        for line in testing::logs() {
            assert!(!line.message.contains(s), "token logged: {line:?}");
        }
    }
    assert!(testing::metric_counter("auth_failure") >= 1);
}

fn run(f: &JwtAuth, req: &TestRequest) -> Flow {
    testing::run_request(f, req)
}

// --- configuration ---

#[test]
fn defaults_read_the_bearer_header_with_60s_leeway_and_hide_it() {
    assert_eq!(
        filter("{}"),
        JwtAuth {
            header: "authorization".into(),
            cookie: None,
            query: None,
            leeway: 60,
            audiences: vec![],
            issuers: vec![],
            hide_credentials: true,
            claims_to_headers: vec![],
        }
    );
    let f = filter(
        r#"{"header": "X-JWT", "cookie": "session", "query": "jwt", "leeway": 300,
            "audiences": ["api"], "issuers": ["alice-app"], "hide_credentials": false,
            "claims_to_headers": {"sub": "X-JWT-Sub"}}"#,
    );
    assert_eq!(f.header, "x-jwt");
    assert_eq!(f.cookie.as_deref(), Some("session"));
    assert_eq!(f.query.as_deref(), Some("jwt"));
    assert_eq!(f.leeway, 300);
    assert_eq!(
        f.claims_to_headers,
        [("sub".to_owned(), "x-jwt-sub".to_owned())]
    );
}

#[test]
fn bad_configs_are_refused_with_the_field_named() {
    let cases = [
        ("[]", "config must be a JSON object"),
        ("nope", "config is not valid JSON"),
        (r#"{"leway": 5}"#, "unknown field `leway`"),
        (
            r#"{"leeway": 301}"#,
            "`leeway` must be a number of seconds from 0 to 300",
        ),
        (r#"{"leeway": -1}"#, "`leeway` must be"),
        (r#"{"leeway": "60s"}"#, "`leeway` must be"),
        (
            r#"{"header": "a b"}"#,
            "`header`: \"a b\" is not a valid header name",
        ),
        (r#"{"cookie": "a;b"}"#, "`cookie` must be a name"),
        (r#"{"query": ""}"#, "`query` must be a name"),
        (
            r#"{"audiences": "api"}"#,
            "`audiences` must be a list of strings",
        ),
        (
            r#"{"audiences": [""]}"#,
            "`audiences[0]` must be a non-empty string",
        ),
        (
            r#"{"issuers": [1]}"#,
            "`issuers[0]` must be a non-empty string",
        ),
        (
            r#"{"hide_credentials": "no"}"#,
            "`hide_credentials` must be true or false",
        ),
        (
            r#"{"claims_to_headers": ["sub"]}"#,
            "`claims_to_headers` must map",
        ),
        (
            r#"{"claims_to_headers": {"sub": "authorization"}}"#,
            "`claims_to_headers.sub`: \"authorization\" cannot carry a claim",
        ),
    ];
    for (config, expected) in cases {
        let err = init_err(config);
        assert!(
            err.contains(expected),
            "{config}: {err:?} lacks {expected:?}"
        );
    }
}

// --- success ---

#[test]
fn a_valid_token_sets_the_consumer_and_is_removed() {
    let id = alice();
    let f = filter("{}");
    let token = hs256(&claims());
    let req = bearer_req(&token).header("authorization", "Basic b3RoZXI=");
    assert_eq!(run(&f, &req), Flow::Continue);
    let r = req.request();
    assert_eq!(r.consumer().as_deref(), Some("alice"));
    assert_eq!(r.header_all("authorization"), ["Basic b3RoZXI="]);
    assert_eq!(testing::jwt_verifications(), [id]);
    assert_eq!(testing::metric_counter("auth_success"), 1);
    for line in testing::logs() {
        assert!(!line.message.contains(&token));
    }
}

#[test]
fn hide_credentials_false_keeps_the_token() {
    alice();
    let token = hs256(&claims());
    let req = bearer_req(&token);
    assert_eq!(
        run(&filter(r#"{"hide_credentials": false}"#), &req),
        Flow::Continue
    );
    assert_eq!(
        req.request().header("authorization"),
        Some(format!("Bearer {token}"))
    );
}

#[test]
fn cookie_and_query_sources_work_only_when_configured_and_are_removed() {
    alice();
    let token = hs256(&claims());
    let by_cookie = TestRequest::get("/x").header("cookie", &format!("a=1; session={token}; b=2"));
    let by_query = TestRequest::get(&format!("/x?x=1&jwt={token}&y=2"));
    // Not configured: not read.
    let f = filter("{}");
    assert_401(
        run(&f, &by_cookie),
        "no bearer token in the request",
        None,
        &[&token],
    );
    assert_401(
        run(&f, &by_query),
        "no bearer token in the request",
        None,
        &[&token],
    );
    let f = filter(r#"{"cookie": "session", "query": "jwt"}"#);
    assert_eq!(run(&f, &by_cookie), Flow::Continue);
    assert_eq!(
        by_cookie.request().header("cookie").as_deref(),
        Some("a=1; b=2")
    );
    assert_eq!(run(&f, &by_query), Flow::Continue);
    assert_eq!(by_query.request().query().as_deref(), Some("x=1&y=2"));
}

#[test]
fn a_custom_header_takes_the_raw_token_or_bearer() {
    alice();
    let token = hs256(&claims());
    let f = filter(r#"{"header": "x-jwt"}"#);
    for value in [token.clone(), format!("Bearer {token}")] {
        let req = TestRequest::get("/").header("x-jwt", &value);
        assert_eq!(run(&f, &req), Flow::Continue);
        assert_eq!(req.request().header("x-jwt"), None);
    }
}

#[test]
fn claims_go_to_headers_and_client_copies_are_dropped() {
    alice();
    let f = filter(r#"{"claims_to_headers": {"sub": "x-jwt-sub", "scope": "x-jwt-scope"}}"#);
    let req = bearer_req(&hs256(&claims())).header("x-jwt-scope", "admin");
    assert_eq!(run(&f, &req), Flow::Continue);
    assert_eq!(req.request().header("x-jwt-sub").as_deref(), Some("u-1"));
    assert_eq!(req.request().header("x-jwt-scope"), None);
}

// --- refusals ---

#[test]
fn no_token_is_refused_without_an_error_code() {
    alice();
    assert_401(
        run(&filter("{}"), &TestRequest::get("/")),
        "no bearer token in the request",
        None,
        &[],
    );
    // Another scheme is not a token.
    let req = TestRequest::get("/").header("authorization", "Basic YTpi");
    assert_401(
        run(&filter("{}"), &req),
        "no bearer token in the request",
        None,
        &[],
    );
}

#[test]
fn two_tokens_are_refused_even_when_equal() {
    alice();
    let token = hs256(&claims());
    let f = filter(r#"{"query": "jwt"}"#);
    let twice = bearer_req(&token).header("authorization", &format!("Bearer {token}"));
    let header_and_query = TestRequest::get(&format!("/x?jwt={token}"))
        .header("authorization", &format!("Bearer {token}"));
    for req in [twice, header_and_query] {
        assert_401(
            run(&f, &req),
            "more than one token in the request",
            Some("invalid_request"),
            &[&token],
        );
    }
    assert!(testing::jwt_verifications().is_empty());
}

#[test]
fn alg_none_is_refused_before_any_lookup() {
    alice();
    for alg in ["none", "None", "NONE"] {
        let token = format!("{}.{}.", b64(&json!({ "alg": alg })), b64(&claims()));
        assert_401(
            run(&filter("{}"), &bearer_req(&token)),
            "unsigned tokens are not accepted",
            Some("invalid_token"),
            &[&token],
        );
        // Even with a bogus signature.
        let token = format!("{token}c2ln");
        assert_401(
            run(&filter("{}"), &bearer_req(&token)),
            "unsigned tokens are not accepted",
            Some("invalid_token"),
            &[],
        );
    }
    assert!(testing::jwt_verifications().is_empty());
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn malformed_tokens_are_refused() {
    alice();
    let good = hs256(&claims());
    let (input, _) = good.rsplit_once('.').expect("three parts");
    for token in [
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{good}.x"),
        format!("{}.{}.c2ln", b64(&json!("not an object")), b64(&claims())),
        format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "HS256", "crit": ["exp"]})),
            b64(&claims())
        ),
        format!("{}.%%%.c2ln", b64(&json!({"alg": "HS256"}))),
        format!("{input}.{}", "A".repeat(9000)),
    ] {
        assert_401(
            run(&filter("{}"), &bearer_req(&token)),
            "the token is malformed",
            Some("invalid_token"),
            &[],
        );
    }
}

#[test]
fn the_pinned_algorithm_is_enforced() {
    // An RS256 credential: an HS256 token (e.g. signed with the public key as secret) is
    // refused by the filter, before the gateway is asked.
    testing::add_jwt_credential(
        "bob",
        "bob-app",
        None,
        JwtAlgorithm::RS256,
        TestJwtKey::Signatures(vec!["c2ln".into()]),
    );
    let hs = testing::sign_jwt(
        JwtAlgorithm::HS256,
        b"-----BEGIN PUBLIC KEY-----",
        &json!({"alg": "HS256"}),
        &json!({"iss": "bob-app", "exp": NOW + 60}),
    );
    assert_401(
        run(&filter("{}"), &bearer_req(&hs)),
        "the token's algorithm is not accepted",
        Some("invalid_token"),
        &[],
    );
    assert!(testing::jwt_verifications().is_empty());
    // The right algorithm with a signature the key accepts passes.
    let rs = format!(
        "{}.{}.c2ln",
        b64(&json!({"alg": "RS256"})),
        b64(&json!({"iss": "bob-app", "exp": NOW + 60}))
    );
    assert_eq!(run(&filter("{}"), &bearer_req(&rs)), Flow::Continue);
    // HS384 against an HS256 credential.
    alice();
    let hs384 = testing::sign_jwt(
        JwtAlgorithm::HS384,
        SECRET,
        &json!({"alg": "HS384"}),
        &claims(),
    );
    assert_401(
        run(&filter("{}"), &bearer_req(&hs384)),
        "the token's algorithm is not accepted",
        Some("invalid_token"),
        &[],
    );
}

#[test]
fn a_bad_signature_or_tampered_payload_is_refused() {
    alice();
    let token = hs256(&claims());
    let (input, _) = token.rsplit_once('.').expect("three parts");
    let forged = format!("{input}.{}", b64(&json!("x")));
    assert_401(
        run(&filter("{}"), &bearer_req(&forged)),
        "the token's signature is not valid",
        Some("invalid_token"),
        &[],
    );
    let (_, sig) = token.rsplit_once('.').expect("three parts");
    let (header, _) = input.split_once('.').expect("header");
    let mut admin = claims();
    admin["sub"] = json!("admin");
    let tampered = format!("{header}.{}.{sig}", b64(&admin));
    assert_401(
        run(&filter("{}"), &bearer_req(&tampered)),
        "the token's signature is not valid",
        Some("invalid_token"),
        &[],
    );
    let wrong_secret = testing::sign_jwt(
        JwtAlgorithm::HS256,
        b"other",
        &json!({"alg": "HS256"}),
        &claims(),
    );
    assert_401(
        run(&filter("{}"), &bearer_req(&wrong_secret)),
        "the token's signature is not valid",
        Some("invalid_token"),
        &[],
    );
}

#[test]
fn unknown_issuer_or_kid_and_wrong_iss_are_refused() {
    alice();
    testing::add_jwt_credential(
        "carol",
        "carol-app",
        Some("k1"),
        JwtAlgorithm::HS256,
        TestJwtKey::Secret(b"carol".to_vec()),
    );
    // A token signed with carol's secret.
    let carol = |kid: &str, iss: &str| {
        testing::sign_jwt(
            JwtAlgorithm::HS256,
            b"carol",
            &json!({"alg": "HS256", "kid": kid}),
            &json!({"iss": iss, "exp": NOW + 60}),
        )
    };
    let mut mallory = claims();
    mallory["iss"] = json!("mallory-app");
    let f = filter("{}");
    let cases = [
        // Nobody's issuer.
        (hs256(&mallory), "the token's issuer or key id is not known"),
        // Unknown kid, and carol's issuer has no credential without key id.
        (
            carol("k9", "carol-app"),
            "the token's issuer or key id is not known",
        ),
        // kid k1 is carol's, but the token claims another issuer.
        (
            carol("k1", "alice-app"),
            "the token's issuer is not accepted",
        ),
    ];
    for (token, message) in &cases {
        assert_401(
            run(&f, &bearer_req(token)),
            message,
            Some("invalid_token"),
            &[],
        );
    }
    // Right kid and issuer.
    let t = carol("k1", "carol-app");
    let req = bearer_req(&t);
    assert_eq!(run(&f, &req), Flow::Continue);
    assert_eq!(req.request().consumer().as_deref(), Some("carol"));
    // A route restricted to other issuers.
    let f = filter(r#"{"issuers": ["alice-app"]}"#);
    assert_401(
        run(&f, &bearer_req(&t)),
        "the token's issuer is not accepted",
        Some("invalid_token"),
        &[],
    );
}

#[test]
fn exp_is_required_and_checked_with_leeway() {
    alice();
    let f = filter("{}");
    let mut c = claims();
    c.as_object_mut().expect("object").remove("exp");
    assert_401(
        run(&f, &bearer_req(&hs256(&c))),
        "the token has no expiry (exp)",
        Some("invalid_token"),
        &[],
    );
    c["exp"] = json!("tomorrow");
    assert_401(
        run(&f, &bearer_req(&hs256(&c))),
        "the token is malformed",
        Some("invalid_token"),
        &[],
    );
    // Expired 30 s ago: inside the default 60 s leeway.
    c["exp"] = json!(NOW - 30);
    assert_eq!(run(&f, &bearer_req(&hs256(&c))), Flow::Continue);
    // Not with leeway 0.
    assert_401(
        run(&filter(r#"{"leeway": 0}"#), &bearer_req(&hs256(&c))),
        "the token has expired",
        Some("invalid_token"),
        &[],
    );
    // Expired 61 s ago.
    c["exp"] = json!(NOW - 61);
    assert_401(
        run(&f, &bearer_req(&hs256(&c))),
        "the token has expired",
        Some("invalid_token"),
        &[],
    );
    // The clock moves: a valid token expires.
    c["exp"] = json!(NOW + 10);
    let t = hs256(&c);
    assert_eq!(run(&f, &bearer_req(&t)), Flow::Continue);
    testing::advance_ms(71_000);
    assert_401(
        run(&f, &bearer_req(&t)),
        "the token has expired",
        Some("invalid_token"),
        &[],
    );
}

#[test]
fn nbf_and_iat_in_the_future_are_refused_beyond_leeway() {
    alice();
    let f = filter("{}");
    for claim in ["nbf", "iat"] {
        let mut c = claims();
        c[claim] = json!(NOW + 30);
        assert_eq!(run(&f, &bearer_req(&hs256(&c))), Flow::Continue, "{claim}");
        c[claim] = json!(NOW + 120);
        assert_401(
            run(&f, &bearer_req(&hs256(&c))),
            "the token is not valid yet",
            Some("invalid_token"),
            &[],
        );
    }
}

#[test]
fn audiences_are_checked_when_configured() {
    alice();
    let f = filter(r#"{"audiences": ["api", "web"]}"#);
    let mut c = claims();
    assert_401(
        run(&f, &bearer_req(&hs256(&c))),
        "the token's audience is not accepted",
        Some("invalid_token"),
        &[],
    );
    c["aud"] = json!("other");
    assert_401(
        run(&f, &bearer_req(&hs256(&c))),
        "the token's audience is not accepted",
        Some("invalid_token"),
        &[],
    );
    c["aud"] = json!("web");
    assert_eq!(run(&f, &bearer_req(&hs256(&c))), Flow::Continue);
    c["aud"] = json!(["x", "api"]);
    assert_eq!(run(&f, &bearer_req(&hs256(&c))), Flow::Continue);
}

#[test]
fn jku_and_x5u_headers_change_nothing() {
    alice();
    // A token signed by an attacker's key, pointing at the attacker's key set: refused.
    let t = testing::sign_jwt(
        JwtAlgorithm::HS256,
        b"attacker",
        &json!({"alg": "HS256", "jku": "http://evil.example/jwks", "x5u": "http://evil.example/cert"}),
        &claims(),
    );
    assert_401(
        run(&filter("{}"), &bearer_req(&t)),
        "the token's signature is not valid",
        Some("invalid_token"),
        &[],
    );
}
