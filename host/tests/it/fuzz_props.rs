//! The fuzz targets' properties (fuzz/, `scripts/fuzz.sh`) for a few hundred generated cases
//! each, so `cargo test` checks them too: config parse + validate, path normalisation, and the
//! host side of the WIT boundary (what the gateway does with arbitrary filter outputs).

use ferrox_host::fuzzing::{self, FilterOutput, RequestCall, ResponseCall};
use proptest::prelude::*;

const QUICKSTART: &str = include_str!("../../../examples/quickstart.yaml");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Path pieces that exercise the normaliser: separators, dot segments plain and encoded,
/// escapes, control bytes, non-ASCII.
fn path_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/", "//", ".", "..", "%2e", "%2E", "%2e%2e", ".%2E", "...", "a", "b", "%", "%2f", "%zz",
        "\u{1}", "\u{7f}", "é", " ", "?", "#", "\\",
    ])
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "x-a",
            "X-A",
            "x-b",
            "content-length",
            "Content-Length",
            "transfer-encoding",
            "connection",
            "host",
            "te",
            "upgrade",
            "keep-alive",
            "proxy-connection",
            "trailer",
            "",
            "a b",
            "x:y",
            "x\ny",
            "é",
            "x-consumer-name",
            "content-type",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
        any::<String>(),
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "v",
            "",
            "a\r\nx-injected: 1",
            "nul\0",
            "tab\tok",
            "é",
            " "
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,16}",
        any::<String>(),
    ]
}

fn path_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(path_piece(), 0..8).prop_map(|v| v.concat()),
        prop::sample::select(vec![
            "/ok", "/é", "/a b", "/a?b", "/a#b", "no-slash", "", "/\"<>", "/{}|^`", "/%zz",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn request_call() -> impl Strategy<Value = RequestCall> {
    prop_oneof![
        path_value().prop_map(RequestCall::SetPath),
        prop::option::of(prop_oneof![
            "[ -~]{0,12}",
            prop::sample::select(vec!["a=1&b=2", "q=é", "a b", "x#y", "", "?", "a=%zz"])
                .prop_map(str::to_owned),
            any::<String>(),
        ])
        .prop_map(RequestCall::SetQuery),
        (header_name(), header_value()).prop_map(|(n, v)| RequestCall::SetHeader(n, v)),
        (header_name(), header_value()).prop_map(|(n, v)| RequestCall::AppendHeader(n, v)),
        header_name().prop_map(RequestCall::RemoveHeader),
        header_value().prop_map(RequestCall::SetConsumer),
        (
            "[a-c]{0,2}",
            prop_oneof![header_value(), Just("x".repeat(5000))]
        )
            .prop_map(|(k, v)| RequestCall::SetContext(k, v)),
    ]
}

fn response_call() -> impl Strategy<Value = ResponseCall> {
    prop_oneof![
        (header_name(), header_value()).prop_map(|(n, v)| ResponseCall::SetHeader(n, v)),
        (header_name(), header_value()).prop_map(|(n, v)| ResponseCall::AppendHeader(n, v)),
        header_name().prop_map(ResponseCall::RemoveHeader),
    ]
}

fn filter_output() -> impl Strategy<Value = FilterOutput> {
    let reply = (
        prop_oneof![any::<u16>(), 99u16..=600, Just(101u16), Just(204u16)],
        prop::collection::vec((header_name(), header_value()), 0..6),
        prop::collection::vec(any::<u8>(), 0..32),
    );
    (
        prop::collection::vec(request_call(), 0..12),
        prop::option::weighted(0.3, reply),
        prop::collection::vec(response_call(), 0..8),
    )
        .prop_map(|(request, reply, response)| FilterOutput {
            request,
            reply,
            response,
        })
}

/// Edits of the quickstart document: lines dropped, repeated or given another indentation,
/// characters replaced.
fn config_text() -> impl Strategy<Value = String> {
    let lines: Vec<String> = QUICKSTART.lines().map(str::to_owned).collect();
    let n = lines.len();
    let edit = prop_oneof![
        (0..n).prop_map(|i| (i, 0u8, ' ')),
        (0..n).prop_map(|i| (i, 1u8, ' ')),
        (0..n).prop_map(|i| (i, 2u8, ' ')),
        (
            0..n,
            prop::sample::select(vec![':', '-', '{', '[', '"', '0', 'x', '\t', '&', '*'])
        )
            .prop_map(|(i, c)| (i, 3u8, c)),
    ];
    prop_oneof![
        prop::collection::vec(edit, 1..6).prop_map(move |edits| {
            let mut lines = lines.clone();
            for (i, kind, c) in edits {
                let i = i % lines.len().max(1);
                if lines.is_empty() {
                    break;
                }
                match kind {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(i, l);
                    }
                    2 => lines[i] = format!("  {}", lines[i]),
                    _ => {
                        let l = &lines[i];
                        let at = l.len() / 2;
                        let at = (0..=at).rev().find(|&a| l.is_char_boundary(a)).unwrap_or(0);
                        lines[i] = format!("{}{c}{}", &l[..at], &l[at..]);
                    }
                }
            }
            lines.join("\n")
        }),
        "[a-z_: \\-\\[\\]{}0-9\n]{0,80}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn path_normalisation_properties(pieces in prop::collection::vec(path_piece(), 0..16)) {
        let path = pieces.concat();
        prop_assert_eq!(fuzzing::normalize_path(&path), Ok(()));
    }

    #[test]
    fn path_normalisation_any_text(path in any::<String>()) {
        prop_assert_eq!(fuzzing::normalize_path(&path), Ok(()));
        let slashed = format!("/{path}");
        prop_assert_eq!(fuzzing::normalize_path(&slashed), Ok(()));
    }

    #[test]
    fn config_issues_never_panics(text in config_text()) {
        prop_assert_eq!(fuzzing::config(&text), Ok(()));
    }

    #[test]
    fn filter_outputs_become_valid_messages(output in filter_output()) {
        prop_assert_eq!(fuzzing::filter_output(&output), Ok(()));
    }
}

#[test]
fn the_quickstart_document_round_trips() {
    assert_eq!(fuzzing::config(QUICKSTART), Ok(()));
}

/// A reply with more header names than a header map holds (32768) used to panic the request's
/// task; it is refused like any reply over the filters' cap of 100 headers.
#[test]
fn a_reply_with_huge_header_count_is_refused() {
    let headers = (0..40_000)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let output = FilterOutput {
        reply: Some((200, headers, Vec::new())),
        ..FilterOutput::default()
    };
    assert_eq!(fuzzing::filter_output(&output), Ok(()));
    let at_cap = FilterOutput {
        reply: Some((
            403,
            (0..100)
                .map(|i| (format!("x-h{i}"), "v".to_owned()))
                .collect(),
            b"no".to_vec(),
        )),
        ..FilterOutput::default()
    };
    assert_eq!(fuzzing::filter_output(&at_cap), Ok(()));
}

/// Found by the `filter_output` fuzz target: `set-query` accepted `<`, which `http` refuses in a
/// request target, so the request failed afterwards as the client's fault (400). What a filter
/// sets must be forwardable; otherwise the call is refused and the filter sees the error.
#[test]
fn a_query_or_path_that_cannot_be_forwarded_is_refused() {
    for call in [
        RequestCall::SetQuery(Some("<".into())),
        RequestCall::SetQuery(Some("a=é".into())),
        RequestCall::SetPath("/é".into()),
        RequestCall::SetPath("/a<b".into()),
    ] {
        let output = FilterOutput {
            request: vec![call.clone()],
            ..FilterOutput::default()
        };
        assert_eq!(fuzzing::filter_output(&output), Ok(()), "{call:?}");
    }
}
