//! Talking to upstream services: pooled keep-alive HTTP clients and gRPC channels, both with
//! TCP_NODELAY, and the active health probe the pools use.

mod client;
pub mod grpc;
mod probe;

pub use client::{nodelay_connector, set_server_nodelay, HttpClient, UpstreamClients};
pub use grpc::GrpcChannels;
pub use probe::UpstreamHealthProbe;
