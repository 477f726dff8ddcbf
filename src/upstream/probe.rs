//! The HTTP health probe: `GET <path>` answered with 2xx within the timeout.

use std::sync::Arc;
use std::time::Duration;

use actors::endpoint::Endpoint;
use actors::pool::HealthProbe;
use futures_util::future::LocalBoxFuture;

pub struct HttpHealthProbe {
    client: awc::Client,
}

impl HttpHealthProbe {
    /// Must be created on the arbiter that runs the pools: the client is single-threaded.
    pub fn new() -> Self {
        HttpHealthProbe {
            client: super::UpstreamClients::default().get(Duration::from_secs(2)),
        }
    }
}

impl Default for HttpHealthProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthProbe for HttpHealthProbe {
    fn probe(
        &self,
        endpoint: Arc<Endpoint>,
        path: String,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, bool> {
        let request = self
            .client
            .get(format!("{}{}", endpoint.base_url, path))
            .timeout(timeout);
        Box::pin(async move {
            match request.send().await {
                Ok(mut response) => {
                    // Drain the small body so the connection can be reused for the next probe.
                    let _ = response.body().limit(64 * 1024).await;
                    response.status().is_success()
                }
                Err(_) => false,
            }
        })
    }
}
