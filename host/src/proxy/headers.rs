//! Header hygiene: hop-by-hop removal, forwarding headers, request ids, trace context, and the
//! request-header checks of DESIGN §9.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Uri, Version};

use crate::error::GatewayError;

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `proxy-connection`, a non-standard hop-by-hop header some clients still send.
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers the gateway manages; a client header whose name differs only by `_` for `-` is
/// refused so that upstreams normalising `_` cannot be fooled.
const MANAGED: [&str; 10] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "x-request-id",
    "x-consumer-name",
    "traceparent",
    "content-length",
    "transfer-encoding",
];

/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context), dropped with an invalid `traceparent`.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `x-real-ip`.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether a (lower- or mixed-case) header name is hop-by-hop: one of [`HOP_BY_HOP`] or
/// `proxy-connection`. Works on raw bytes, for response heads not parsed into a map yet.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    // By length first: most names are ruled out without a comparison.
    let candidates: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        19 => &[b"proxy-authorization"],
        _ => return false,
    };
    candidates.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Remove hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) names present is cheaper than nine hashed removals, and most
    // messages carry no hop-by-hop header or only `Connection`.
    if !headers.keys().any(|n| is_hop_by_hop(n.as_str().as_bytes())) {
        return;
    }
    let nominated: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(PROXY_CONNECTION);
}

/// Refuse request headers that break DESIGN §9: underscore aliases of managed headers, and more
/// or larger headers than allowed.
pub fn check_request_headers(
    headers: &HeaderMap,
    max_headers: usize,
    max_bytes: u64,
) -> Result<(), GatewayError> {
    if headers.len() > max_headers {
        return Err(GatewayError::HeadersTooLarge);
    }
    let mut total = 0u64;
    for (name, value) in headers {
        total += (name.as_str().len() + value.len() + 4) as u64;
        let n = name.as_str();
        if n.contains('_') {
            let dashed = n.replace('_', "-");
            if MANAGED.contains(&dashed.as_str()) {
                return Err(GatewayError::BadRequest(
                    "header name aliases a managed header with '_'",
                ));
            }
        }
    }
    if total > max_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    if headers.get_all(header::HOST).iter().count() > 1 {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    if !transfer_encoding_ok(headers) {
        return Err(GatewayError::BadRequest("unsupported Transfer-Encoding"));
    }
    Ok(())
}

/// Refuse Host oddities (RFC 9112 §3.2): an HTTP/1.1 request without `Host`, a `Host` that is
/// not `host[:port]` (userinfo, two ports, …), userinfo in an absolute-form target, and a
/// target authority (absolute form, or HTTP/2 `:authority`) naming another host than `Host`.
/// More than one `Host` is refused by [`check_request_headers`].
pub fn check_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), GatewayError> {
    let host = headers.get(header::HOST).filter(|h| !h.is_empty());
    if host.is_none() && version == Version::HTTP_11 && !headers.contains_key(header::HOST) {
        return Err(GatewayError::BadRequest("missing Host header"));
    }
    let target = uri.authority();
    if target.is_some_and(|a| a.as_str().contains('@')) {
        return Err(GatewayError::BadRequest("userinfo in the request target"));
    }
    let Some(host) = host else {
        return Ok(());
    };
    let Some(host) = Authority::try_from(host.as_bytes())
        .ok()
        .filter(|a| !a.as_str().contains('@'))
    else {
        return Err(GatewayError::BadRequest("invalid Host header"));
    };
    if let Some(t) = target
        && (!t.host().eq_ignore_ascii_case(host.host())
            || t.port_u16()
                .zip(host.port_u16())
                .is_some_and(|(a, b)| a != b))
    {
        return Err(GatewayError::BadRequest(
            "Host does not match the request target",
        ));
    }
    Ok(())
}

/// Whether `Transfer-Encoding` is absent or exactly one `chunked`. hyper decodes only the final
/// `chunked`; any other coding (or a repeated `chunked`) would be forwarded still applied and
/// no longer labelled, so such messages are refused instead.
pub fn transfer_encoding_ok(headers: &HeaderMap) -> bool {
    only_chunked(
        headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// Whether these `Transfer-Encoding` field values (all of them, in order) are absent or name
/// exactly one coding, `chunked`.
pub fn only_chunked<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut codings = values
        .into_iter()
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii);
    match codings.next() {
        None => true,
        Some(first) => first.eq_ignore_ascii_case(b"chunked") && codings.next().is_none(),
    }
}

/// Why an upstream response's framing is refused.
pub const LENGTH_AND_CODING: &str =
    "upstream response has both Content-Length and Transfer-Encoding";
/// Why an upstream response's framing is refused.
pub const UNSUPPORTED_CODING: &str = "upstream response has an unsupported Transfer-Encoding";

/// Hold an upstream response to the request framing rules (hyper has already refused
/// conflicting Content-Lengths): no Content-Length beside Transfer-Encoding, and no
/// Transfer-Encoding other than a single `chunked`.
pub fn check_response_framing(headers: &HeaderMap) -> Result<(), &'static str> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(LENGTH_AND_CODING);
    }
    if !transfer_encoding_ok(headers) {
        return Err(UNSUPPORTED_CODING);
    }
    Ok(())
}

/// Whether a client's `Upgrade` request asks for WebSocket (the only upgrade ever tunnelled).
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "websocket")
        && has_token(headers, &header::CONNECTION, "upgrade")
}

/// Whether a comma-separated header lists `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
}

/// Whether the peer is trusted to send forwarding headers.
pub fn is_trusted(peer: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    let peer = canonical(peer);
    trusted.iter().any(|net| net.contains(&peer))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client address: the socket peer, or — when the peer is a trusted proxy — the rightmost
/// address in `X-Forwarded-For` that is not itself trusted.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    while let Some(ip) = hops.pop() {
        if !is_trusted(ip, trusted) {
            return ip;
        }
    }
    peer
}

/// Forwarding context for one request.
#[derive(Debug)]
pub struct Forwarding<'a> {
    /// Socket peer.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// `http` or `https` as seen by the gateway.
    pub proto: &'static str,
    /// The Host the client asked for.
    pub host: Option<&'a HeaderValue>,
}

/// Set `X-Forwarded-For/-Proto/-Host`, `X-Real-IP` and `Forwarded` on a request about to be
/// forwarded. Client-sent copies are kept (and appended to) only from trusted peers.
pub fn set_forwarding(headers: &mut HeaderMap, fwd: &Forwarding<'_>, client: IpAddr) {
    use std::fmt::Write as _;
    let peer = canonical(fwd.peer);
    // Each value is written once into its own buffer and handed to the map without a copy.
    let mut xff = String::with_capacity(48);
    if fwd.trusted {
        for prior in headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            xff.push_str(prior);
            xff.push_str(", ");
        }
    }
    push_ip(&mut xff, peer);
    let proto: &'static str = if fwd.trusted {
        match headers.get(&X_FORWARDED_PROTO).map(HeaderValue::as_bytes) {
            Some(b"http") => "http",
            Some(b"https") => "https",
            _ => fwd.proto,
        }
    } else {
        fwd.proto
    };
    let host = if fwd.trusted {
        headers
            .get(&X_FORWARDED_HOST)
            .cloned()
            .or_else(|| fwd.host.cloned())
    } else {
        fwd.host.cloned()
    };
    let xff = set_string(headers, X_FORWARDED_FOR, xff);
    match xff {
        // The usual case (no trusted hop): the client is the peer, one value serves both.
        Some(v) if client == peer && !fwd.trusted => {
            headers.insert(X_REAL_IP, v);
        }
        _ => {
            let mut ip = String::with_capacity(16);
            push_ip(&mut ip, client);
            set_string(headers, X_REAL_IP, ip);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    let mut forwarded = String::with_capacity(64);
    match client {
        IpAddr::V4(_) => {
            forwarded.push_str("for=");
            push_ip(&mut forwarded, client);
        }
        IpAddr::V6(v6) => {
            let _ = write!(forwarded, "for=\"[{v6}]\"");
        }
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(proto);
    match host {
        Some(h) => {
            if let Ok(hs) = h.to_str()
                && hs
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            {
                forwarded.push_str(";host=");
                forwarded.push_str(hs);
            }
            headers.insert(X_FORWARDED_HOST, h);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    set_string(headers, header::FORWARDED, forwarded);
}

/// Append an address in its usual text form (IPv4 without `fmt`, which costs more than the
/// rest of the header work).
fn push_ip(out: &mut String, ip: IpAddr) {
    use std::fmt::Write as _;
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Insert a value built in a `String` (moved into the map, not copied); the value inserted.
fn set_string(headers: &mut HeaderMap, name: HeaderName, value: String) -> Option<HeaderValue> {
    let v = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()?;
    headers.insert(name, v.clone());
    Some(v)
}

/// The request id: the client's when it is a sane token, a new one otherwise.
pub fn request_id(headers: &HeaderMap, name: &HeaderName) -> HeaderValue {
    if let Some(v) = headers.get(name) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let mut buf = [0u8; 32];
    hex_random(&mut buf);
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn hex_random(out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut r = fastrand::u128(..);
    for b in out.iter_mut() {
        *b = HEX[(r & 0xf) as usize];
        r >>= 4;
        if r == 0 {
            r = fastrand::u128(..);
        }
    }
}

/// Keep a valid `traceparent`; replace a missing or invalid one with a new sampled trace.
pub fn ensure_traceparent(headers: &mut HeaderMap) {
    if headers
        .get(&TRACEPARENT)
        .is_some_and(|v| valid_traceparent(v.as_bytes()))
    {
        return;
    }
    headers.remove(TRACESTATE);
    let mut trace = [0u8; 32];
    let mut span = [0u8; 16];
    hex_random(&mut trace);
    hex_random(&mut span);
    let mut v = [0u8; 55];
    v[..3].copy_from_slice(b"00-");
    v[3..35].copy_from_slice(&trace);
    v[35] = b'-';
    v[36..52].copy_from_slice(&span);
    v[52..].copy_from_slice(b"-01");
    if let Ok(v) = HeaderValue::from_bytes(&v) {
        headers.insert(TRACEPARENT, v);
    }
}

fn valid_traceparent(v: &[u8]) -> bool {
    // version "00": 00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>
    let lower_hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let not_zero = |s: &[u8]| s.iter().any(|c| *c != b'0');
    v.len() == 55
        && &v[0..3] == b"00-"
        && v[35] == b'-'
        && v[52] == b'-'
        && lower_hex(&v[3..35])
        && not_zero(&v[3..35])
        && lower_hex(&v[36..52])
        && not_zero(&v[36..52])
        && lower_hex(&v[53..55])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn the_byte_check_knows_every_hop_by_hop_name() {
        for name in HOP_BY_HOP.iter().chain([&PROXY_CONNECTION]) {
            assert!(is_hop_by_hop(name.as_str().as_bytes()), "{name}");
            assert!(
                is_hop_by_hop(name.as_str().to_uppercase().as_bytes()),
                "{name}"
            );
        }
        for other in [
            "host",
            "x-kept",
            "content-length",
            "tee",
            "trailers",
            "connections",
        ] {
            assert!(!is_hop_by_hop(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn a_lone_proxy_connection_or_te_header_goes() {
        for name in ["proxy-connection", "te", "trailer"] {
            let mut h = map(&[("x-kept", "1"), (name, "x")]);
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}");
        }
        let mut h = map(&[("x-kept", "1"), ("x-other", "2")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let v4 = [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 100, 9],
            [1, 20, 3, 199],
            [127, 0, 0, 1],
        ];
        for o in v4 {
            let ip = IpAddr::from(o);
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
        let v6: IpAddr = "2001:db8::1".parse().expect("v6");
        let mut s = String::new();
        push_ip(&mut s, v6);
        assert_eq!(s, "2001:db8::1");
    }

    #[test]
    fn underscore_aliases_are_refused() {
        let h = map(&[("x_forwarded_for", "1.2.3.4")]);
        assert!(matches!(
            check_request_headers(&h, 100, 65536),
            Err(GatewayError::BadRequest(_))
        ));
        let h = map(&[("x_custom", "ok")]);
        assert!(check_request_headers(&h, 100, 65536).is_ok());
        let h = map(&[("a", "1"), ("b", "2")]);
        assert!(matches!(
            check_request_headers(&h, 1, 65536),
            Err(GatewayError::HeadersTooLarge)
        ));
    }

    #[test]
    fn only_a_single_chunked_transfer_coding_is_accepted() {
        assert!(transfer_encoding_ok(&map(&[])));
        assert!(transfer_encoding_ok(&map(&[(
            "transfer-encoding",
            "Chunked "
        )])));
        for bad in [
            &[("transfer-encoding", "gzip, chunked")][..],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "gzip")],
        ] {
            assert!(!transfer_encoding_ok(&map(bad)), "{bad:?}");
        }
        assert!(check_response_framing(&map(&[("content-length", "3")])).is_ok());
        assert!(
            check_response_framing(&map(&[
                ("content-length", "3"),
                ("transfer-encoding", "chunked")
            ]))
            .is_err()
        );
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let h = map(&[("x-forwarded-for", "203.0.113.9, 10.1.1.1")]);
        let peer: IpAddr = "10.2.2.2".parse().expect("ip");
        assert_eq!(client_ip(&h, peer, &trusted).to_string(), "203.0.113.9");
        let outsider: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(client_ip(&h, outsider, &trusted), outsider);
    }

    #[test]
    fn forwarding_headers_replace_untrusted_copies() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer: IpAddr = "198.51.100.7".parse().expect("ip");
        let host = HeaderValue::from_static("api.example.com");
        let fwd = Forwarding {
            peer,
            trusted: false,
            proto: "http",
            host: Some(&host),
        };
        set_forwarding(&mut h, &fwd, peer);
        assert_eq!(h["x-forwarded-for"], "198.51.100.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.7;proto=http;host=api.example.com"
        );

        let mut h = map(&[("x-forwarded-for", "203.0.113.9")]);
        let fwd = Forwarding {
            peer,
            trusted: true,
            proto: "https",
            host: None,
        };
        set_forwarding(&mut h, &fwd, "203.0.113.9".parse().expect("ip"));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.7");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let name = HeaderName::from_static("x-request-id");
        let h = map(&[("x-request-id", "abc-123")]);
        assert_eq!(request_id(&h, &name), "abc-123");
        let generated = request_id(&HeaderMap::new(), &name);
        assert_eq!(generated.len(), 32);
        assert_ne!(generated, request_id(&HeaderMap::new(), &name));
    }

    #[test]
    fn traceparent_is_kept_when_valid_and_started_otherwise() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = map(&[("traceparent", valid)]);
        ensure_traceparent(&mut h);
        assert_eq!(h["traceparent"], valid);
        let mut h = map(&[(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )]);
        ensure_traceparent(&mut h);
        let v = h["traceparent"].to_str().expect("ascii").to_owned();
        assert!(valid_traceparent(v.as_bytes()), "{v}");
        assert_ne!(&v[3..35], "00000000000000000000000000000000");
    }
}
