//! The active health probe: `GET <path>` answered with 2xx within the timeout for HTTP
//! endpoints, `grpc.health.v1.Health/Check` answered SERVING for gRPC ones.

use std::sync::Arc;
use std::time::Duration;

use actors::endpoint::{Endpoint, Protocol};
use actors::pool::HealthProbe;
use futures_util::future::LocalBoxFuture;

use super::grpc::{self, GrpcChannels};

/// Lives on the arbiter that runs the pools, with its own HTTP client and gRPC channels.
pub struct UpstreamHealthProbe {
    client: awc::Client,
    channels: GrpcChannels,
}

impl UpstreamHealthProbe {
    /// Must be created on the arbiter that runs the pools: the client is single-threaded.
    pub fn new() -> Self {
        UpstreamHealthProbe {
            client: super::UpstreamClients::default().get(Duration::from_secs(2)),
            channels: GrpcChannels::default(),
        }
    }
}

impl Default for UpstreamHealthProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthProbe for UpstreamHealthProbe {
    /// For gRPC endpoints `path` is not used: the check asks about the whole server.
    fn probe(
        &self,
        endpoint: Arc<Endpoint>,
        path: String,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, bool> {
        match endpoint.spec.protocol {
            Protocol::Http => {
                let request = self
                    .client
                    .get(format!("{}{}", endpoint.base_url, path))
                    .timeout(timeout);
                Box::pin(async move {
                    match request.send().await {
                        Ok(mut response) => {
                            // Drain the small body so the connection is reused by the next probe.
                            let _ = response.body().limit(64 * 1024).await;
                            response.status().is_success()
                        }
                        Err(_) => false,
                    }
                })
            }
            Protocol::Grpc => match self.channels.get(&endpoint, timeout) {
                Ok(channel) => Box::pin(grpc::check_health(channel, timeout)),
                Err(error) => {
                    tracing::warn!(%endpoint, %error, "cannot build a gRPC channel");
                    Box::pin(async { false })
                }
            },
        }
    }
}
