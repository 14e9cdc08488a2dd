//! Test guest `order`: records the order filters run in.
//!
//! Configuration: `{"name": "a", "respond": false}`. `on_request` appends `name` to request
//! header `x-order` (and answers 418 with `"respond": true`); `on_response` appends `name` to
//! response header `x-order-resp`. Imports no host service.

use ferrox_sdk::serde_json::{self, Value, json};
use ferrox_sdk::{Filter, Flow, Reply, Request, Response};

/// Appends its name on the way in and on the way out.
pub struct Order {
    name: String,
    respond: bool,
}

impl Filter for Order {
    fn init(config: &str) -> Result<Self, String> {
        let config: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let name = match config.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("`name` must be a string".to_owned()),
            None => return Err("`name` is required".to_owned()),
        };
        let respond = match config.get("respond") {
            None => false,
            Some(v) => v.as_bool().ok_or("`respond` must be a boolean")?,
        };
        Ok(Order { name, respond })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        if let Err(e) = req.append_header("x-order", &self.name) {
            return Reply::new(500).json(&json!({ "error": e })).into();
        }
        if self.respond {
            return Reply::new(418)
                .json(&json!({ "responded_by": self.name }))
                .into();
        }
        Flow::Continue
    }

    fn on_response(&self, _req: &Request<'_>, resp: &mut Response<'_>) {
        // Cannot fail for a valid name short of the header cap; nothing to report it to.
        let _ = resp.append_header("x-order-resp", &self.name);
    }
}

ferrox_sdk::export_filter!(Order);

#[cfg(test)]
mod tests {
    use super::*;
    use ferrox_sdk::testing::{self, TestRequest, TestResponse};

    #[test]
    fn appends_in_and_out_and_answers_when_asked() {
        let a = Order::init(r#"{"name": "a"}"#).expect("config");
        let b = Order::init(r#"{"name": "b", "respond": true}"#).expect("config");
        let req = TestRequest::get("/");
        assert_eq!(testing::run_request(&a, &req), Flow::Continue);
        let Flow::Respond(reply) = testing::run_request(&b, &req) else {
            panic!("b answers");
        };
        assert_eq!(reply.status, 418);
        assert_eq!(req.request().header_all("x-order"), ["a", "b"]);

        let resp = TestResponse::from(reply);
        testing::run_response(&b, &req, &resp);
        testing::run_response(&a, &req, &resp);
        assert_eq!(
            resp.headers()
                .iter()
                .filter(|(n, _)| n == "x-order-resp")
                .count(),
            2
        );
        assert!(Order::init("{}").is_err());
    }
}
