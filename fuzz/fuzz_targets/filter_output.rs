//! The host side of the WIT boundary: arbitrary filter outputs (calls on the lent request and
//! response, a `respond` reply) applied through the host functions guests reach, then turned
//! into the upstream request and the client response. Never panics; invalid names, values,
//! statuses, paths and queries are refused; the messages are valid HTTP.
#![no_main]

use arbitrary::Arbitrary;
use ferrox_host::fuzzing::{self, FilterOutput, RequestCall, ResponseCall};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Req {
    SetPath(String),
    SetQuery(Option<String>),
    SetHeader(String, String),
    AppendHeader(String, String),
    RemoveHeader(String),
    SetConsumer(String),
    SetContext(String, String),
}

#[derive(Arbitrary, Debug)]
enum Resp {
    SetHeader(String, String),
    AppendHeader(String, String),
    RemoveHeader(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    request: Vec<Req>,
    reply: Option<(u16, Vec<(String, String)>, Vec<u8>)>,
    response: Vec<Resp>,
}

fuzz_target!(|input: Input| {
    let output = FilterOutput {
        request: input
            .request
            .into_iter()
            .map(|r| match r {
                Req::SetPath(p) => RequestCall::SetPath(p),
                Req::SetQuery(q) => RequestCall::SetQuery(q),
                Req::SetHeader(n, v) => RequestCall::SetHeader(n, v),
                Req::AppendHeader(n, v) => RequestCall::AppendHeader(n, v),
                Req::RemoveHeader(n) => RequestCall::RemoveHeader(n),
                Req::SetConsumer(c) => RequestCall::SetConsumer(c),
                Req::SetContext(k, v) => RequestCall::SetContext(k, v),
            })
            .collect(),
        reply: input.reply,
        response: input
            .response
            .into_iter()
            .map(|r| match r {
                Resp::SetHeader(n, v) => ResponseCall::SetHeader(n, v),
                Resp::AppendHeader(n, v) => ResponseCall::AppendHeader(n, v),
                Resp::RemoveHeader(n) => ResponseCall::RemoveHeader(n),
            })
            .collect(),
    };
    if let Err(why) = fuzzing::filter_output(&output) {
        panic!("{why}");
    }
});
