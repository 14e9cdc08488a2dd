//! WebSocket tunnelling: only on routes that allow it, only after the upstream's `101` with a
//! valid `Sec-WebSocket-Accept`; anything else is answered without a tunnel.

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};

use crate::body::{ProxyBody, empty};
use crate::error::GatewayError;
use crate::gateway::Gateway;

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Put back the two hop-by-hop headers that ask the upstream to upgrade.
pub fn set_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// The `Sec-WebSocket-Accept` value for a client key (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Answer the client's upgrade with the upstream's 101 and splice the two connections.
pub fn tunnel(
    gw: &Gateway,
    upstream_resp: Response<Incoming>,
    downstream: hyper::upgrade::OnUpgrade,
    request_headers: &HeaderMap,
) -> Result<Response<ProxyBody>, GatewayError> {
    let expected = request_headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| accept_key(k.as_bytes()));
    let got = upstream_resp.headers().get(header::SEC_WEBSOCKET_ACCEPT);
    let valid = matches!((&expected, got), (Some(e), Some(g)) if g.as_bytes() == e.as_bytes());
    let upgrade_is_ws = upstream_resp
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !valid || !upgrade_is_ws {
        return Err(GatewayError::UpstreamProtocol(
            "upstream answered 101 without a valid WebSocket handshake".into(),
        ));
    }
    let mut resp = Response::new(empty());
    *resp.status_mut() = upstream_resp.status();
    for (name, value) in upstream_resp.headers() {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            resp.headers_mut().append(name.clone(), value.clone());
        }
    }
    let upstream = hyper::upgrade::on(upstream_resp);
    let tunnels = gw.metrics.websocket_tunnels.clone();
    tokio::spawn(async move {
        let (up, down) = match tokio::try_join!(upstream, downstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade did not complete");
                return;
            }
        };
        tunnels.inc();
        let mut up = TokioIo::new(up);
        let mut down = TokioIo::new(down);
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "websocket tunnel closed with an error");
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
