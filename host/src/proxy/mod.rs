//! The native datapath: downstream server, request handling, upstream client, load balancing,
//! health checks and WebSocket tunnelling.

pub mod cache;
pub mod client;
pub mod conn_io;
pub mod h1;
pub mod handler;
pub mod headers;
pub mod health;
pub mod server;
pub mod tls;
pub mod upgrade;
pub mod upstream;
