//! The built-in demo upstream behind `ferrox serve --demo`: an echo service that answers with
//! what it received (method, path, headers), so a newcomer sees a real proxied request — and
//! the forwarding headers the gateway adds — with nothing else installed.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::body::{ProxyBody, full};

/// The address the quickstart config sends `/demo` requests to.
pub const DEMO_UPSTREAM: &str = "127.0.0.1:9001";

/// Serve the echo upstream on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc =
                service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(echo(&req)) });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn echo(req: &Request<Incoming>) -> Response<ProxyBody> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let body = serde_json::json!({
        "service": "ferrox demo upstream",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    });
    let mut resp = Response::new(full(format!("{body:#}\n")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Bind the demo upstream's address.
pub async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(DEMO_UPSTREAM).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}
