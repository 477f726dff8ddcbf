//! Talking to upstream services over HTTP: pooled keep-alive clients with TCP_NODELAY, and the
//! active health probe the pools use.

mod client;
mod probe;

pub use client::{set_server_nodelay, UpstreamClients};
pub use probe::HttpHealthProbe;
