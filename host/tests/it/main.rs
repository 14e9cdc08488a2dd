//! Integration tests: real gateways and upstreams in-process on port 0 (one test binary).

mod support;

mod admin_api;
mod admin_rbac;
mod balance;
mod builtin_cache;
mod builtin_jwt_auth;
mod builtin_key_auth;
mod builtin_rate_limit;
mod builtin_transform;
mod cli;
mod cluster;
mod dashboard;
mod faults;
mod filters;
mod fuzz_props;
mod hostile;
mod instances;
mod lang_filters;
mod lifecycle;
mod observability;
mod pg_store;
mod plugin_cli;
mod proxy;
mod redis_state;
mod security;
mod soak;
mod streaming;
mod tracing_export;
mod upgrade;
