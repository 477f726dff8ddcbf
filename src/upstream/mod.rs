//! Talking to upstream services: pooled keep-alive HTTP clients and gRPC channels, both with
//! TCP_NODELAY, the active health probe the pools use, and the services' own model lists.

mod client;
pub mod grpc;
mod models;
mod probe;

pub use client::{nodelay_connector, set_server_nodelay, HttpClient, UpstreamClients};
pub use grpc::GrpcChannels;
pub use models::service_models;
pub use probe::UpstreamHealthProbe;
