//! gRPC to upstream model servers: the clients generated from `proto/`, one lazily connected
//! tonic `Channel` per endpoint, and the two calls that are not requests: the standard health
//! check and the model list.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use actors::endpoint::Endpoint;
use tonic::transport::Channel;

/// `aigateway.model.v1`: the contract with python-models (`proto/model.proto`).
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("aigateway.model.v1");
}

/// `grpc.health.v1`, reduced to `Check` (`proto/grpc/health/v1/health.proto`).
#[allow(clippy::all, clippy::pedantic)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// HTTP/2 PINGs on busy connections find a peer that vanished without closing its socket.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The channels of one worker thread, by endpoint address and connect timeout. A channel is one
/// HTTP/2 connection that multiplexes every request to its endpoint; it connects on first use
/// and reconnects by itself after a failure, so entries are never replaced. Its background task
/// runs on the worker that created it, which is why every worker has its own set.
#[derive(Default)]
pub struct GrpcChannels {
    channels: RefCell<HashMap<(String, Duration), Channel>>,
}

impl GrpcChannels {
    pub fn get(&self, endpoint: &Endpoint, connect_timeout: Duration) -> Result<Channel, String> {
        let key = (endpoint.address.clone(), connect_timeout);
        if let Some(channel) = self.channels.borrow().get(&key) {
            return Ok(channel.clone());
        }
        let channel = tonic::transport::Endpoint::from_shared(endpoint.base_url.clone())
            .map_err(|error| format!("{}: {error}", endpoint.base_url))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .connect_lazy();
        self.channels.borrow_mut().insert(key, channel.clone());
        Ok(channel)
    }
}

/// `grpc.health.v1.Health/Check` for the whole server (service `""`): healthy only when it
/// answers SERVING within `timeout`.
pub async fn check_health(channel: Channel, timeout: Duration) -> bool {
    let mut client = health::health_client::HealthClient::new(channel);
    let mut request = tonic::Request::new(health::HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Ok(Ok(response)) => {
            response.into_inner().status() == health::health_check_response::ServingStatus::Serving
        }
        Ok(Err(_)) | Err(_) => false,
    }
}

/// The ids `ListModels` reports, or none when the server does not answer within `timeout`.
pub async fn list_model_ids(channel: Channel, timeout: Duration) -> Vec<String> {
    let mut client = proto::model_service_client::ModelServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::ListModelsRequest {});
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.list_models(request)).await {
        Ok(Ok(response)) => response
            .into_inner()
            .models
            .into_iter()
            .map(|model| model.id)
            .collect(),
        Ok(Err(_)) | Err(_) => Vec::new(),
    }
}
