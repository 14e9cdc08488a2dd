//! Test guest `fs-net`: `on_request` tries to read a file and open a TCP connection. Both must
//! fail inside the gateway's sandbox; then it sets `x-sandbox: ok` and continues, otherwise it
//! answers 500 `{"escaped": [...]}` naming what succeeded.

use ferrox_sdk::serde_json::json;
use ferrox_sdk::{Filter, Flow, Reply, Request};

/// Probes the sandbox.
pub struct FsNet;

/// What the probe managed to do that the sandbox should have stopped.
fn escapes() -> Vec<&'static str> {
    let mut escaped = Vec::new();
    if std::fs::read("/etc/passwd").is_ok() {
        escaped.push("fs");
    }
    if std::net::TcpStream::connect("127.0.0.1:80").is_ok() {
        escaped.push("net");
    }
    escaped
}

impl Filter for FsNet {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(FsNet)
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let escaped = escapes();
        if !escaped.is_empty() {
            return Reply::new(500).json(&json!({ "escaped": escaped })).into();
        }
        match req.set_header("x-sandbox", "ok") {
            Ok(()) => Flow::Continue,
            Err(e) => Reply::new(500).json(&json!({ "error": e })).into(),
        }
    }
}

ferrox_sdk::export_filter!(FsNet);
