//! The remote discovery back-ends: Consul and Kubernetes. They implement the core's
//! `ServiceDiscovery` trait here, in the crate that knows HTTP, and feed the same pools as the
//! static file through `DiscoveryWatcher`.

pub mod consul;
pub mod kubernetes;

use std::time::Duration;

use actors::discovery::static_file::StaticFileDiscovery;
use actors::discovery::{DiscoveryError, DiscoveryWatcher, ServiceDiscovery, ServiceSet};
use actors::{Origin, UpstreamRegistryHandle};
use anyhow::Context as _;

use crate::config::{DiscoveryBackend, DiscoveryConfig};

/// The health-check path used when a remote back-end names none: every model server in this
/// project answers it, and without a path new endpoints would take traffic before any check.
pub const DEFAULT_HEALTH_PATH: &str = "/health";

/// How long start-up waits for a remote back-end's first complete answer.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the first service set and starts the watcher that follows changes.
///
/// A static file must parse. A remote back-end that cannot be reached is a start-up error when
/// `required`; otherwise the gateway starts degraded (warning, `gateway_discovery_degraded`,
/// `/ready` says so) and the watcher keeps trying.
pub async fn start(
    discovery: &DiscoveryConfig,
    registry: &UpstreamRegistryHandle,
) -> anyhow::Result<()> {
    let preferred = discovery.preferred_protocol;
    match &discovery.backend {
        DiscoveryBackend::Static => {
            let backend = StaticFileDiscovery::new(&discovery.static_file, discovery.poll_interval)
                .preferring(preferred);
            // The first read is strict: a gateway never starts on a broken service file.
            let services = backend.read().await.context("service discovery")?;
            tracing::info!(services = services.len(), file = %discovery.static_file.display(), "static discovery loaded");
            registry
                .apply(Origin::Static, services.clone())
                .await
                .context("registry")?;
            DiscoveryWatcher::start_watcher(Box::new(backend), registry.clone(), Some(services));
            Ok(())
        }
        DiscoveryBackend::Consul(config) => {
            let mut backend = consul::ConsulDiscovery::new(config, preferred);
            tracing::info!(consul = %config.base_url, selection = ?config.selection, "consul discovery starting");
            let first = first_answer(backend.initial()).await;
            launch(Box::new(backend), first, discovery.required, registry).await
        }
        DiscoveryBackend::Kubernetes(config) => {
            tracing::info!(namespace = %config.namespace, selector = %config.label_selector, "kubernetes discovery starting");
            let mut backend = kubernetes::KubernetesDiscovery::new(config, preferred);
            let first = first_answer(backend.initial()).await;
            launch(Box::new(backend), first, discovery.required, registry).await
        }
    }
}

async fn first_answer(
    answer: impl std::future::Future<Output = Result<ServiceSet, DiscoveryError>>,
) -> Result<ServiceSet, DiscoveryError> {
    tokio::time::timeout(FIRST_ANSWER_TIMEOUT, answer)
        .await
        .unwrap_or_else(|_| {
            Err(DiscoveryError::Unreachable {
                backend: "discovery",
                message: format!(
                    "no complete answer within {}s",
                    FIRST_ANSWER_TIMEOUT.as_secs()
                ),
            })
        })
}

fn refusal(origin: Origin, error: &DiscoveryError) -> anyhow::Error {
    anyhow::anyhow!(
        "service discovery ({}): {error}. Fix the back-end, or set DISCOVERY_REQUIRED=false to start degraded and keep retrying",
        origin.as_str()
    )
}

async fn launch(
    backend: Box<dyn ServiceDiscovery>,
    first: Result<ServiceSet, DiscoveryError>,
    required: bool,
    registry: &UpstreamRegistryHandle,
) -> anyhow::Result<()> {
    let origin = backend.origin();
    let last = match first {
        Ok(services) => {
            tracing::info!(
                origin = origin.as_str(),
                services = services.len(),
                "discovery loaded"
            );
            registry
                .apply(origin, services.clone())
                .await
                .context("registry")?;
            Some(services)
        }
        Err(error) if required => return Err(refusal(origin, &error)),
        Err(error) => {
            tracing::error!(origin = origin.as_str(), %error, "discovery back-end unreachable at start-up; DISCOVERY_REQUIRED=false, so the gateway runs DEGRADED and keeps retrying");
            registry.note_discovery_error();
            registry.set_discovery_degraded(true);
            None
        }
    };
    DiscoveryWatcher::start_watcher(backend, registry.clone(), last);
    Ok(())
}
