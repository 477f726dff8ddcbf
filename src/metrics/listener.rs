//! The metrics listener (`METRICS_BIND`, default `0.0.0.0:9091`): Prometheus's page on a port
//! of its own, so per-key counters and upstream addresses never reach the public API port.

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;

use crate::handlers::ops;
use crate::state::AppState;

/// A started metrics listener.
pub struct MetricsListener {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
}

/// Binds `bind` and serves `GET /metrics` (and `/health`, for the container's own checks)
/// on one worker: scrapes are rare, and one thread keeps the scrape-time counter copies in
/// order. The server runs until the process ends or `handle.stop` is called; it ignores
/// signals, so the API port's graceful shutdown stays observable until the end.
pub fn start(bind: &str, state: web::Data<AppState>) -> anyhow::Result<MetricsListener> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/health", web::get().to(ops::health))
            .default_service(web::to(ops::route_not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(bind)
    .with_context(|| format!("binding the metrics listener {bind} (METRICS_BIND)"))?;
    let addr = *server
        .addrs()
        .first()
        .context("the metrics listener has no address")?;
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(%addr, "metrics listening");
    Ok(MetricsListener { addr, handle })
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = state.metrics.scrape(&state).await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}
