//! Test guest `hello`: reads a request header and greets on the response.
//!
//! Configuration: `{"header": "x-name", "response_header": "x-hello", "count": false}`.
//! - `on_request`: `/deny` is answered 403 `{"error":"denied"}`; anything else continues.
//! - `on_response`: sets `response_header` to `hello <header value or "anonymous">`; with
//!   `"count": true` also counts hits in a one-minute window and sets `x-hello-count` (left
//!   out when the counter is unavailable).
//!
//! Imports only `ferrox:filter/counters` besides the request/response types.

use ferrox_sdk::serde_json::{self, Value, json};
use ferrox_sdk::{Filter, Flow, Reply, Request, Response, counters};

/// The greeting filter.
pub struct Hello {
    header: String,
    response_header: String,
    count: bool,
}

fn required_string(config: &Value, field: &str) -> Result<String, String> {
    match config.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("`{field}` must be a string")),
        None => Err(format!("`{field}` is required")),
    }
}

impl Filter for Hello {
    fn init(config: &str) -> Result<Self, String> {
        let config: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        if !config.is_object() {
            return Err("config must be a JSON object".to_owned());
        }
        let count = match config.get("count") {
            None => false,
            Some(v) => v.as_bool().ok_or("`count` must be a boolean")?,
        };
        Ok(Hello {
            header: required_string(&config, "header")?,
            response_header: required_string(&config, "response_header")?,
            count,
        })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        if req.path() == "/deny" {
            return Reply::new(403).json(&json!({ "error": "denied" })).into();
        }
        Flow::Continue
    }

    fn on_response(&self, req: &Request<'_>, resp: &mut Response<'_>) {
        let name = req.header(&self.header);
        let greeting = format!("hello {}", name.as_deref().unwrap_or("anonymous"));
        // Errors are ignored on purpose: the guest imports no more services than its test
        // grants (`counters` only), so it has no log to report them to.
        let _ = resp.set_header(&self.response_header, &greeting);
        if self.count
            && let Ok(c) = counters::incr("hits", 1, 60_000)
        {
            let _ = resp.set_header("x-hello-count", &c.count.to_string());
        }
    }
}

ferrox_sdk::export_filter!(Hello);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrox_sdk::testing::{self, TestRequest, TestResponse};

    const CONFIG: &str = r#"{"header": "x-name", "response_header": "x-hello"}"#;

    #[test]
    fn greets_by_header_or_anonymously() {
        let filter = Hello::init(CONFIG).expect("valid config");
        let req = TestRequest::get("/hi").header("X-Name", "ada");
        let resp = testing::run_exchange(&filter, &req, TestResponse::new(200));
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.response().header("x-hello").as_deref(),
            Some("hello ada")
        );
        assert_eq!(resp.response().header("x-hello-count"), None);

        let resp = testing::run_exchange(&filter, &TestRequest::get("/"), TestResponse::new(204));
        assert_eq!(
            resp.response().header("x-hello").as_deref(),
            Some("hello anonymous")
        );
    }

    #[test]
    fn denies_the_deny_path_with_json() {
        let filter = Hello::init(CONFIG).expect("valid config");
        let Flow::Respond(reply) = testing::run_request(&filter, &TestRequest::get("/deny")) else {
            panic!("expected a reply");
        };
        assert_eq!(reply.status, 403);
        assert_eq!(reply.header_value("content-type"), Some("application/json"));
        assert_eq!(reply.body, br#"{"error":"denied"}"#);
        // The reply still passes through on_response.
        let resp =
            testing::run_exchange(&filter, &TestRequest::get("/deny"), TestResponse::new(200));
        assert_eq!(resp.status(), 403);
        assert_eq!(
            resp.response().header("x-hello").as_deref(),
            Some("hello anonymous")
        );
    }

    #[test]
    fn counts_hits_per_minute_when_asked() {
        let config = r#"{"header": "x-name", "response_header": "x-hello", "count": true}"#;
        let filter = Hello::init(config).expect("valid config");
        testing::set_now_ms(60_000 * 1_000);
        let count = || {
            let resp =
                testing::run_exchange(&filter, &TestRequest::get("/"), TestResponse::new(200));
            resp.response().header("x-hello-count")
        };
        assert_eq!(count().as_deref(), Some("1"));
        assert_eq!(count().as_deref(), Some("2"));
        testing::advance_ms(60_000);
        assert_eq!(count().as_deref(), Some("1"));

        testing::set_counters_error(Some("down"));
        assert_eq!(count(), None);
    }

    #[test]
    fn config_is_validated() {
        let err = |c: &str| Hello::init(c).err().expect("refused");
        assert!(err("not json").starts_with("config is not valid JSON"));
        assert_eq!(err("[]"), "config must be a JSON object");
        assert_eq!(err(r#"{"response_header": "x"}"#), "`header` is required");
        assert_eq!(err(r#"{"header": "x"}"#), "`response_header` is required");
        assert_eq!(
            err(r#"{"header": 1, "response_header": "x"}"#),
            "`header` must be a string"
        );
        assert_eq!(
            err(r#"{"header": "x", "response_header": "y", "count": "yes"}"#),
            "`count` must be a boolean"
        );
    }
}
