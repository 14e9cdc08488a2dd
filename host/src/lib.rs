//! # Ferrox host
//!
//! The `ferrox` gateway: a native datapath (routing, load balancing, circuit breaking,
//! proxying, metrics) configured by a declarative document that is applied live.
//!
//! # Layout
//! - [`cli`]: the `ferrox` command line; start reading here.
//! - [`app`]: start and stop an instance (listeners, admin API, config watcher).
//! - [`config`]: the document, its validation with paths, the JSON Schema, live reload.
//! - [`snapshot`]: the immutable runtime config the datapath reads; [`gateway`] swaps it.
//! - [`router`]: path normalisation and most-specific-first route matching.
//! - [`proxy`]: downstream server, request handler, upstream client, LB, health, WebSocket.
//! - [`breaker`]: the sans-io circuit breaker.
//! - [`error`]: the one place errors become responses.
//! - [`metrics`]: every metric name; [`admin`]: `/health`, `/metrics` and the admin API.
//! - [`store`]: the config store (memory, file, PostgreSQL); [`control`]: how admin writes and
//!   store changes reach the snapshot.
//! - [`dashboard`]: the live web dashboard on the admin listener and its stats hub.
//! - [`tracing_export`]: spans of each request exported over OTLP/HTTP (when configured).
//! - [`instances`]: the instances of a cluster that report in (heartbeats to PostgreSQL).
#![deny(unsafe_code)]

pub mod admin;
pub mod app;
pub mod body;
pub mod breaker;
pub mod builtin;
pub mod cli;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod demo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod instances;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod plugin_cli;
pub mod proxy;
pub mod reqlog;
pub mod router;
pub mod scaffold;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod tracing_export;
#[cfg(unix)]
pub mod upgrade;
