//! What a filter decides about a request: go on, or answer the client now.

/// The outcome of [`Filter::on_request`](crate::Filter::on_request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next filter (and then the upstream).
    Continue,
    /// Answer the client now; later filters and the upstream are skipped. The response still
    /// passes back through `on_response` of this filter and the filters before it.
    Respond(Reply),
}

impl From<Reply> for Flow {
    fn from(reply: Reply) -> Self {
        Self::Respond(reply)
    }
}

/// A response a filter answers with instead of forwarding the request.
///
/// ```
/// use ferrox_sdk::{Flow, Reply, serde_json::json};
///
/// let flow: Flow = Reply::new(429)
///     .header("retry-after", "7")
///     .json(&json!({ "error": "too many requests" }))
///     .into();
/// # let Flow::Respond(reply) = flow else { panic!() };
/// # assert_eq!(reply.body, br#"{"error":"too many requests"}"#);
/// # assert_eq!(reply.header_value("content-type"), Some("application/json"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code (100–599; the gateway refuses others).
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The `500` an authentication filter answers when it cannot remove the credential it
    /// accepted from the request: forwarding the request would leak the credential upstream.
    pub fn credential_not_removed() -> Self {
        Self::new(500)
            .header("cache-control", "no-store")
            .json(&serde_json::json!({
                "error": "internal",
                "message": "the credential could not be removed from the request",
            }))
    }

    /// Add a header (kept in order; a name may repeat).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body to `value` as JSON, with `content-type: application/json`.
    #[must_use]
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.content("application/json", value.to_string().into_bytes())
    }

    /// Set the body to `text`, with `content-type: text/plain; charset=utf-8`.
    #[must_use]
    pub fn text(self, text: impl Into<String>) -> Self {
        self.content("text/plain; charset=utf-8", text.into().into_bytes())
    }

    /// Set the body to raw bytes (add a `content-type` with [`header`](Self::header)).
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of header `name` (compared case-insensitively), if present.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_owned(), content_type.to_owned()));
        self.body = body;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_helpers_replace_the_content_type() {
        let reply = Reply::new(200)
            .header("Content-Type", "x/old")
            .header("x-a", "1")
            .text("hi");
        assert_eq!(
            reply.headers,
            vec![
                ("x-a".to_owned(), "1".to_owned()),
                (
                    "content-type".to_owned(),
                    "text/plain; charset=utf-8".to_owned()
                ),
            ]
        );
        assert_eq!(reply.body, b"hi");
        let reply = reply.json(&serde_json::json!({"a": [1, "b"]}));
        assert_eq!(reply.header_value("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(reply.body, br#"{"a":[1,"b"]}"#);
        assert_eq!(Reply::new(204).body(vec![1, 2]).body, [1, 2]);
    }
}
