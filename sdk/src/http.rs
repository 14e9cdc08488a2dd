//! The request and response as a filter sees them: handles to the gateway's copy. Reading a
//! value asks the gateway for it (a filter pays only for what it reads); editing changes the
//! gateway's copy at once.

use std::fmt;

use crate::backend::{RequestHandle, ResponseHandle};

/// Headers a filter may not set or remove: framing and hop-by-hop headers are the gateway's
/// business, and it refuses edits to them.
pub const MANAGED_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "host",
];

/// Most header values a message may carry after filters added theirs; the gateway refuses
/// adding a new header beyond it.
pub const MAX_HEADERS: usize = 100;

/// The request being handled. Valid only during the call it is passed to.
///
/// Header names are case-insensitive. Methods that edit return `Err` with the gateway's reason
/// when it refuses the edit: framing and hop-by-hop headers (`connection`, `content-length`,
/// `transfer-encoding`, `host`, …), invalid names or values, a path that does not start with `/`.
pub struct Request<'a> {
    handle: RequestHandle<'a>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(handle: RequestHandle<'a>) -> Self {
        Self { handle }
    }

    pub(crate) fn handle(&self) -> &RequestHandle<'a> {
        &self.handle
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> String {
        self.handle.method()
    }

    /// The normalised path that will be forwarded (after the route's prefix handling).
    pub fn path(&self) -> String {
        self.handle.path()
    }

    /// Replace the forwarded path. It must start with `/` and hold no query.
    pub fn set_path(&mut self, path: &str) -> Result<(), String> {
        self.handle.set_path(path)
    }

    /// The raw query string without `?`, if any.
    pub fn query(&self) -> Option<String> {
        self.handle.query()
    }

    /// Replace the query string, or remove it with `None`.
    pub fn set_query(&mut self, query: Option<&str>) -> Result<(), String> {
        self.handle.set_query(query)
    }

    /// The first value of header `name`, if present and valid text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.handle.header(name)
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.handle.header_all(name)
    }

    /// Set header `name`, replacing all its values.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.handle.set_header(name, value)
    }

    /// Add one more value to header `name`.
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.handle.append_header(name, value)
    }

    /// Remove header `name` (all values). Headers the gateway manages are left alone.
    pub fn remove_header(&mut self, name: &str) {
        self.handle.remove_header(name);
    }

    /// The client's address as the gateway determined it (trusted proxies honoured).
    pub fn client_ip(&self) -> String {
        self.handle.client_ip()
    }

    /// The route's name.
    pub fn route(&self) -> String {
        self.handle.route()
    }

    /// The request id (also sent upstream and returned to the client).
    pub fn request_id(&self) -> String {
        self.handle.request_id()
    }

    /// The consumer an earlier filter authenticated, if any.
    pub fn consumer(&self) -> Option<String> {
        self.handle.consumer()
    }

    /// Name the authenticated consumer (later filters and the upstream see it).
    pub fn set_consumer(&mut self, name: &str) {
        self.handle.set_consumer(name);
    }

    /// A value this filter stored on this request with [`set_context`](Self::set_context).
    /// Use it to carry data from `on_request` to `on_response`: the two may run on different
    /// instances, so a field of the filter cannot carry it.
    pub fn context(&self, key: &str) -> Option<String> {
        self.handle.context(key)
    }

    /// Store a value for a later hook of this filter on this request (private to the plugin;
    /// at most 64 entries of 4 KiB).
    pub fn set_context(&mut self, key: &str, value: &str) {
        self.handle.set_context(key, value);
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only what is cheap and safe to show: headers may hold credentials.
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// The response on its way back to the client, from the upstream or from a filter's
/// [`Reply`](crate::Reply). Valid only during the call it is passed to.
pub struct Response<'a> {
    handle: ResponseHandle<'a>,
}

impl<'a> Response<'a> {
    pub(crate) fn new(handle: ResponseHandle<'a>) -> Self {
        Self { handle }
    }

    pub(crate) fn handle(&self) -> &ResponseHandle<'a> {
        &self.handle
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.handle.status()
    }

    /// The first value of header `name`, if present and valid text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.handle.header(name)
    }

    /// Every value of header `name`, in order (e.g. each `set-cookie`).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.handle.header_all(name)
    }

    /// Set header `name`, replacing all its values.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.handle.set_header(name, value)
    }

    /// Add one more value to header `name`.
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.handle.append_header(name, value)
    }

    /// Remove header `name` (all values). Headers the gateway manages are left alone.
    pub fn remove_header(&mut self, name: &str) {
        self.handle.remove_header(name);
    }
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
