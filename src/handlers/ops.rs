//! Liveness, readiness and the JSON answers for unknown routes and methods.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::error::GatewayError;
use crate::state::AppState;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize)]
struct ServiceReadiness {
    ready: bool,
    eligible_endpoints: usize,
    known_endpoints: usize,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    discovery_loaded: bool,
    /// `ok`, or `degraded` while the discovery back-end cannot be reached (the pools keep the
    /// last good set, or have none if there never was one).
    discovery: &'static str,
    services: BTreeMap<String, ServiceReadiness>,
}

/// Ready when discovery has loaded and every service that has endpoints has an eligible one.
/// A degraded back-end alone does not make the gateway unready when a last good set is serving;
/// the body says `"discovery": "degraded"` either way.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let registry = &state.pipeline.registry;
    let discovery_loaded = !state.discovery_enabled || registry.has_discovered();
    let services: BTreeMap<String, ServiceReadiness> = registry
        .pools()
        .into_iter()
        .map(|(name, pool)| {
            let snapshot = pool.snapshot();
            let readiness = ServiceReadiness {
                ready: snapshot.is_ready(),
                eligible_endpoints: snapshot.eligible.len(),
                known_endpoints: snapshot.known,
            };
            (name, readiness)
        })
        .collect();
    let ready = discovery_loaded && services.values().all(|s| s.ready);
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        discovery_loaded,
        discovery: if registry.discovery_degraded() {
            "degraded"
        } else {
            "ok"
        },
        services,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn route_not_found(request: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::RouteNotFound {
        method: request.method().to_string(),
        path: request.path().to_string(),
    })
}

pub async fn method_not_allowed(request: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.path().to_string(),
    })
}
