//! What each service says it serves (`/v1/models`): one question per reachable service, asked
//! concurrently of one picked endpoint — `GET /v1/models` over HTTP, or `ListModels` over gRPC.

use std::time::Duration;

use actors::{Protocol, UpstreamRegistryHandle};

use super::grpc::list_model_ids;
use super::UpstreamClients;

/// How long `/v1/models` waits for each service's own list.
const MODEL_LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest model list read from a service.
const MODEL_LIST_LIMIT: usize = 4 * 1024 * 1024;

/// `(service, model ids)` for every service with a pickable endpoint; a service that does not
/// answer in time, or answers badly, lists no models.
pub async fn service_models(
    registry: &UpstreamRegistryHandle,
    clients: &UpstreamClients,
) -> Vec<(String, Vec<String>)> {
    let lookups = registry.pools().into_iter().filter_map(|(service, pool)| {
        let snapshot = pool.snapshot();
        let endpoint = pool.pick(&snapshot, &[])?;
        // gRPC endpoints answer ListModels (no channel when protocol conversion is off).
        let grpc = (endpoint.spec.protocol == Protocol::Grpc).then(|| {
            let channels = clients.grpc()?;
            channels
                .get(&endpoint, snapshot.settings.connect_timeout)
                .ok()
        });
        let client = clients.get(snapshot.settings.connect_timeout);
        let mut request = client
            .get(format!("{}/v1/models", endpoint.base_url))
            .timeout(MODEL_LIST_TIMEOUT);
        if let Some(key) = &snapshot.settings.api_key {
            request = request.bearer_auth(key);
        }
        Some(async move {
            if let Some(channel) = grpc {
                let ids = match channel {
                    Some(channel) => list_model_ids(channel, MODEL_LIST_TIMEOUT).await,
                    None => Vec::new(),
                };
                return (service, ids);
            }
            let ids = match request.send().await {
                Ok(mut response) if response.status().is_success() => response
                    .json::<serde_json::Value>()
                    .limit(MODEL_LIST_LIMIT)
                    .await
                    .ok()
                    .map(|list| ids_of(&list))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            (service, ids)
        })
    });
    futures_util::future::join_all(lookups).await
}

/// The `data[].id`s of an OpenAI model list.
fn ids_of(list: &serde_json::Value) -> Vec<String> {
    list.get("data")
        .and_then(|data| data.as_array())
        .map(|models| {
            models
                .iter()
                .filter_map(|m| m.get("id")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
