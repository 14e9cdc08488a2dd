//! The one place where errors become responses. Every gateway-made response carries
//! `ferrox-error: <kind>` and a short JSON body; internals never leak to clients.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// Header marking responses made by the gateway itself.
pub const FERROX_ERROR: http::HeaderName = http::HeaderName::from_static("ferrox-error");

/// Everything that ends a request with a gateway-made response.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matches the request.
    #[error("no route matches the request")]
    NoRoute,
    /// The request is malformed or refused by a security default.
    #[error("{0}")]
    BadRequest(&'static str),
    /// The method is never proxied (CONNECT).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body exceeds the route's `max_body`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The route's limit.
        limit: u64,
    },
    /// Too many or too large request headers.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// The request target is longer than the header section may be.
    #[error("request target too long")]
    UriTooLong,
    /// The client was too slow sending its request.
    #[error("request timed out")]
    RequestTimeout,
    /// The upstream's circuit breaker is open for every target.
    #[error("circuit open for upstream {upstream}")]
    CircuitOpen {
        /// Upstream name.
        upstream: String,
    },
    /// Every target is down (active health checks).
    #[error("no healthy target in upstream {upstream}")]
    NoHealthyTarget {
        /// Upstream name.
        upstream: String,
    },
    /// The target could not be reached.
    #[error("cannot connect to upstream")]
    UpstreamConnect(#[source] BoxError),
    /// The target did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The target answered something that is not valid HTTP (or broke mid-way).
    #[error("invalid response from upstream")]
    UpstreamProtocol(#[source] BoxError),
    /// A filter failed and its policy is `closed`.
    #[error("filter failed")]
    Filter,
    /// A bug or resource problem inside the gateway.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// A boxed, thread-safe error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl GatewayError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::UriTooLong => StatusCode::URI_TOO_LONG,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::CircuitOpen { .. }
            | GatewayError::NoHealthyTarget { .. }
            | GatewayError::Filter => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamConnect(_) | GatewayError::UpstreamProtocol(_) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The value of the `ferrox-error` header: a stable, documented kind.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no-route",
            GatewayError::BadRequest(_) => "bad-request",
            GatewayError::MethodNotAllowed => "method-not-allowed",
            GatewayError::PayloadTooLarge { .. } => "body-too-large",
            GatewayError::HeadersTooLarge => "headers-too-large",
            GatewayError::UriTooLong => "uri-too-long",
            GatewayError::RequestTimeout => "request-timeout",
            GatewayError::CircuitOpen { .. } => "circuit-open",
            GatewayError::NoHealthyTarget { .. } => "no-healthy-target",
            GatewayError::UpstreamConnect(_) => "upstream-connect",
            GatewayError::UpstreamTimeout => "upstream-timeout",
            GatewayError::UpstreamProtocol(_) => "upstream-protocol",
            GatewayError::Filter => "filter",
            GatewayError::Internal(_) => "internal",
        }
    }

    /// The response sent to the client.
    pub fn into_response(self, request_id: Option<&HeaderValue>) -> Response<ProxyBody> {
        let status = self.status();
        let mut body = serde_json::json!({
            "error": self.kind(),
            // Display never includes the `#[source]` (addresses, OS errors): safe for clients.
            "message": self.to_string(),
            "status": status.as_u16(),
        });
        if let Some(id) = request_id.and_then(|v| v.to_str().ok()) {
            body["request_id"] = id.into();
        }
        let bytes = Bytes::from(body.to_string());
        let mut resp = Response::new(full(bytes));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(FERROX_ERROR, HeaderValue::from_static(self.kind()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, GatewayError::MethodNotAllowed) {
            h.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        if matches!(
            self,
            GatewayError::RequestTimeout
                | GatewayError::BadRequest(_)
                | GatewayError::HeadersTooLarge
                | GatewayError::UriTooLong
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_status_kind_and_json_body() {
        let errs = [
            (GatewayError::NoRoute, 404, "no-route"),
            (GatewayError::BadRequest("x"), 400, "bad-request"),
            (
                GatewayError::PayloadTooLarge { limit: 1 },
                413,
                "body-too-large",
            ),
            (GatewayError::HeadersTooLarge, 431, "headers-too-large"),
            (GatewayError::UriTooLong, 414, "uri-too-long"),
            (GatewayError::RequestTimeout, 408, "request-timeout"),
            (
                GatewayError::CircuitOpen {
                    upstream: "u".into(),
                },
                503,
                "circuit-open",
            ),
            (
                GatewayError::UpstreamConnect("refused 10.0.0.1".into()),
                502,
                "upstream-connect",
            ),
            (GatewayError::UpstreamTimeout, 504, "upstream-timeout"),
            (GatewayError::Filter, 503, "filter"),
        ];
        for (e, status, kind) in errs {
            let r = e.into_response(Some(&HeaderValue::from_static("rid")));
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers()[FERROX_ERROR], kind);
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        }
    }
}
