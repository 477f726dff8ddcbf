//! Talking to upstream services: pooled keep-alive HTTP clients and gRPC channels, both with
//! TCP_NODELAY, the active health probe the pools use, and the services' own model lists.

mod client;
pub mod grpc;
mod http1;
mod models;
mod probe;

pub use client::{nodelay_connector, set_server_nodelay, UpstreamClients};
pub use grpc::GrpcChannels;
pub use http1::{Http1Pool, SendError};
pub use models::service_models;
pub use probe::UpstreamHealthProbe;
