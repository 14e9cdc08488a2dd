//! The request and response the harness hands to a filter, and the handles the SDK's
//! [`Request`] / [`Response`] read and edit them through.

use std::cell::RefCell;

use super::headers::{Edit, Headers};
use super::response_cache::{CacheState, StoreCall};
use crate::{Reply, Request, Response};

/// A request as the gateway would pass it to a filter, built for a test.
///
/// ```
/// use ferrox_sdk::testing::TestRequest;
///
/// let req = TestRequest::get("/users?page=2")
///     .header("authorization", "Bearer t0k3n")
///     .client_ip("203.0.113.7")
///     .route("users");
/// let view = req.request();
/// assert_eq!(view.path(), "/users");
/// assert_eq!(view.query().as_deref(), Some("page=2"));
/// assert_eq!(view.header("Authorization").as_deref(), Some("Bearer t0k3n"));
/// ```
#[derive(Debug)]
pub struct TestRequest {
    parts: RefCell<RequestParts>,
}

#[derive(Debug)]
struct RequestParts {
    method: String,
    path: String,
    query: Option<String>,
    headers: Headers,
    client_ip: String,
    route: String,
    request_id: String,
    consumer: Option<String>,
    context: Vec<(String, String)>,
    cache: CacheState,
}

impl TestRequest {
    /// A request with `method` for `path_and_query` (`/path` or `/path?query`), from client
    /// `127.0.0.1` on route `test-route`, with request id `test-request-id`.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (path_and_query, None),
        };
        Self {
            parts: RefCell::new(RequestParts {
                method: method.to_owned(),
                path: path.to_owned(),
                query,
                headers: Headers::default(),
                client_ip: "127.0.0.1".to_owned(),
                route: "test-route".to_owned(),
                request_id: "test-request-id".to_owned(),
                consumer: None,
                context: Vec::new(),
                cache: CacheState::default(),
            }),
        }
    }

    /// A `GET` request (see [`new`](Self::new)).
    pub fn get(path_and_query: &str) -> Self {
        Self::new("GET", path_and_query)
    }

    /// A `POST` request (see [`new`](Self::new)).
    pub fn post(path_and_query: &str) -> Self {
        Self::new("POST", path_and_query)
    }

    /// Add a header as the client sent it (a name may repeat).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.parts.get_mut().headers.push_raw(name, value);
        self
    }

    /// Set the query string (without `?`).
    #[must_use]
    pub fn query(mut self, query: &str) -> Self {
        self.parts.get_mut().query = Some(query.to_owned());
        self
    }

    /// Set the client address.
    #[must_use]
    pub fn client_ip(mut self, ip: &str) -> Self {
        self.parts.get_mut().client_ip = ip.to_owned();
        self
    }

    /// Set the route name.
    #[must_use]
    pub fn route(mut self, route: &str) -> Self {
        self.parts.get_mut().route = route.to_owned();
        self
    }

    /// Set the request id.
    #[must_use]
    pub fn request_id(mut self, id: &str) -> Self {
        self.parts.get_mut().request_id = id.to_owned();
        self
    }

    /// Set the consumer an earlier filter authenticated.
    #[must_use]
    pub fn consumer(mut self, name: &str) -> Self {
        self.parts.get_mut().consumer = Some(name.to_owned());
        self
    }

    /// The filter's view of this request: read what a filter did to it (or edit it further).
    pub fn request(&self) -> Request<'_> {
        Request::new(RequestHandle(&self.parts))
    }

    /// Every header as `(lowercase name, value)`, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.parts.borrow().headers.pairs()
    }
}

/// A response as the gateway would pass it to a filter's `on_response`, built for a test.
///
/// ```
/// use ferrox_sdk::testing::TestResponse;
///
/// let resp = TestResponse::new(200).header("content-type", "text/plain");
/// assert_eq!(resp.response().header("Content-Type").as_deref(), Some("text/plain"));
/// ```
#[derive(Debug)]
pub struct TestResponse {
    parts: RefCell<ResponseParts>,
}

#[derive(Debug)]
struct ResponseParts {
    status: u16,
    headers: Headers,
    stored: Option<StoreCall>,
}

impl TestResponse {
    /// A response with `status` and no headers.
    pub fn new(status: u16) -> Self {
        Self {
            parts: RefCell::new(ResponseParts {
                status,
                headers: Headers::default(),
                stored: None,
            }),
        }
    }

    /// Add a header as the upstream sent it (a name may repeat).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.parts.get_mut().headers.push_raw(name, value);
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.parts.borrow().status
    }

    /// The filter's view of this response.
    pub fn response(&self) -> Response<'_> {
        Response::new(ResponseHandle(&self.parts))
    }

    /// Every header as `(lowercase name, value)`, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.parts.borrow().headers.pairs()
    }
}

/// The response the gateway sends for a filter's [`Reply`] (the body is not part of it: filters
/// never see bodies).
impl From<Reply> for TestResponse {
    fn from(reply: Reply) -> Self {
        reply
            .headers
            .iter()
            .fold(Self::new(reply.status), |resp, (n, v)| resp.header(n, v))
    }
}

/// What [`Request`] reads and edits on native targets.
pub(crate) struct RequestHandle<'a>(&'a RefCell<RequestParts>);

impl RequestHandle<'_> {
    pub(crate) fn method(&self) -> String {
        self.0.borrow().method.clone()
    }
    pub(crate) fn path(&self) -> String {
        self.0.borrow().path.clone()
    }
    pub(crate) fn set_path(&self, path: &str) -> Result<(), String> {
        let invalid = |b: u8| b <= 0x20 || b == 0x7f || b == b'?' || b == b'#';
        if !path.starts_with('/') || path.bytes().any(invalid) {
            return Err(format!("{path:?} is not an absolute path without query"));
        }
        self.0.borrow_mut().path = path.to_owned();
        Ok(())
    }
    pub(crate) fn query(&self) -> Option<String> {
        self.0.borrow().query.clone()
    }
    pub(crate) fn set_query(&self, query: Option<&str>) -> Result<(), String> {
        let invalid = |b: u8| b <= 0x20 || b == 0x7f || b == b'#';
        if query.is_some_and(|q| q.bytes().any(invalid)) {
            return Err("query contains invalid characters".to_owned());
        }
        self.0.borrow_mut().query = query.map(str::to_owned);
        Ok(())
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.0.borrow().headers.get(name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        self.0.borrow().headers.get_all(name)
    }
    pub(crate) fn set_header(&self, name: &str, value: &str) -> Result<(), String> {
        self.0.borrow_mut().headers.set(name, value, Edit::Replace)
    }
    pub(crate) fn append_header(&self, name: &str, value: &str) -> Result<(), String> {
        self.0.borrow_mut().headers.set(name, value, Edit::Append)
    }
    pub(crate) fn remove_header(&self, name: &str) {
        self.0.borrow_mut().headers.remove(name);
    }
    pub(crate) fn client_ip(&self) -> String {
        self.0.borrow().client_ip.clone()
    }
    pub(crate) fn route(&self) -> String {
        self.0.borrow().route.clone()
    }
    pub(crate) fn request_id(&self) -> String {
        self.0.borrow().request_id.clone()
    }
    pub(crate) fn consumer(&self) -> Option<String> {
        self.0.borrow().consumer.clone()
    }
    pub(crate) fn set_consumer(&self, name: &str) {
        self.0.borrow_mut().consumer = Some(name.to_owned());
    }
    pub(crate) fn context(&self, key: &str) -> Option<String> {
        let parts = self.0.borrow();
        parts
            .context
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    /// Run `f` on the request's method and response-cache state.
    pub(crate) fn with_cache<R>(&self, f: impl FnOnce(&str, &mut CacheState) -> R) -> R {
        let mut parts = self.0.borrow_mut();
        let parts = &mut *parts;
        f(&parts.method, &mut parts.cache)
    }
    pub(crate) fn set_context(&self, key: &str, value: &str) {
        // Same limits as the gateway.
        if value.len() > 4096 {
            return;
        }
        let mut parts = self.0.borrow_mut();
        if let Some(entry) = parts.context.iter_mut().find(|(k, _)| k == key) {
            entry.1 = value.to_owned();
        } else if parts.context.len() < 64 {
            parts.context.push((key.to_owned(), value.to_owned()));
        }
    }
}

/// What [`Response`] reads and edits on native targets.
pub(crate) struct ResponseHandle<'a>(&'a RefCell<ResponseParts>);

impl ResponseHandle<'_> {
    pub(crate) fn status(&self) -> u16 {
        self.0.borrow().status
    }
    pub(crate) fn header_pairs(&self) -> Vec<(String, String)> {
        self.0.borrow().headers.pairs()
    }
    pub(crate) fn set_stored(&self, call: StoreCall) {
        self.0.borrow_mut().stored = Some(call);
    }
    pub(crate) fn stored(&self) -> Option<StoreCall> {
        self.0.borrow().stored.clone()
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.0.borrow().headers.get(name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        self.0.borrow().headers.get_all(name)
    }
    pub(crate) fn set_header(&self, name: &str, value: &str) -> Result<(), String> {
        self.0.borrow_mut().headers.set(name, value, Edit::Replace)
    }
    pub(crate) fn append_header(&self, name: &str, value: &str) -> Result<(), String> {
        self.0.borrow_mut().headers.set(name, value, Edit::Append)
    }
    pub(crate) fn remove_header(&self, name: &str) {
        self.0.borrow_mut().headers.remove(name);
    }
}
