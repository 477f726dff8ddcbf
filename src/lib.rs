//! The gateway's protocol edge: HTTP and SSE, configuration, the CLI and the one
//! error→response mapping. The core lives in the `actors` crate.

pub mod admin;
pub mod auth;
pub mod body;
pub mod cli;
pub mod client_ip;
pub mod compress;
pub mod config;
pub mod dashboard;
pub mod discovery;
pub mod error;
pub mod graphql;
pub mod handlers;
pub mod metrics;
pub mod overview;
pub mod pipeline;
pub mod principal;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod ws;
