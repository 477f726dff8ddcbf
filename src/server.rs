//! Building and running the HTTP server: state, middleware, listeners, TLS and shutdown.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::middleware::Condition;
use actix_web::{http, web, App, HttpServer};
use actors::registry::UpstreamRegistry;
use actors::routing::ModelRouter;
use actors::UpstreamRegistryHandle;
use anyhow::Context as _;

use actors::budget::{BudgetLedger, BudgetReconciler};
use actors::keys::{KeyCache, KeyCacheSettings};
use actors::limits::{ConcurrencyLimiter, LimiterUpkeep, RateLimiter, SharedLimiter};
use actors::store::Store;
use actors::usage::{UsageHandle, UsageRecorder};
use actors::users::{UserCache, UserCacheSettings};

use crate::auth::guard::{AuthGuard, GuardSettings};
use crate::auth::JwtKeys;
use crate::config::{Config, DiscoveryBackend};
use crate::discovery::consul::ConsulRegistration;
use crate::error::GatewayError;
use crate::graphql::GraphqlState;
use crate::metrics::listener::{self as metrics_listener, MetricsListener};
use crate::metrics::Metrics;
use crate::pipeline::limits::RateLimits;
use crate::pipeline::Pipeline;
use crate::request_id;
use crate::state::AppState;
use crate::upstream::{UpstreamClients, UpstreamHealthProbe};
use crate::ws::{WsHubHandle, WsState};
use crate::{routes, tls};

/// A started gateway: where it listens and the handles tests and `main` need.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub scheme: &'static str,
    pub server: actix_web::dev::Server,
    pub registry: UpstreamRegistryHandle,
    pub store: Store,
    pub usage: UsageHandle,
    pub ws_hub: WsHubHandle,
    /// The gateway's Consul entry (`CONSUL_REGISTER=true`), to remove on graceful shutdown.
    pub consul_registration: Option<ConsulRegistration>,
    /// The Prometheus listener (`METRICS_BIND`), when metrics are on.
    pub metrics: Option<MetricsListener>,
}

impl RunningGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }
}

/// Starts the actors and binds the listener. Must run inside an actix system; the returned
/// server is already accepting and must be awaited (or stopped).
pub async fn start(config: Config) -> anyhow::Result<RunningGateway> {
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let store = open_store(&config).await?;
    warn_about_auth(&config);
    let usage = UsageRecorder::start_recorder(store.clone(), config.usage.settings.clone());
    let probe = Rc::new(UpstreamHealthProbe::new());
    let registry = UpstreamRegistry::start_registry(config.registry.clone(), probe);
    if let Some(discovery) = &config.discovery {
        crate::discovery::start(discovery, &registry).await?;
    } else {
        tracing::warn!("service discovery is disabled: configured services have no endpoints");
    }
    let ws_hub = WsHubHandle::start(&metrics.registry).context("websocket hub")?;
    actix_web::rt::spawn(crate::ws::close_on_shutdown_signal(ws_hub.clone()));
    let pipeline = build_pipeline(&config, &registry, &usage, &store, &metrics)?;
    let guard = auth_guard(&config, &pipeline, &metrics)?;
    let state = web::Data::new(AppState {
        pipeline,
        metrics: Arc::clone(&metrics),
        max_body_bytes: config.server.max_body_bytes,
        request_body_timeout: config.server.request_body_timeout,
        discovery_enabled: config.discovery.is_some(),
        store: store.clone(),
        keys: KeyCache::new(
            store.clone(),
            KeyCacheSettings {
                ttl: config.auth.key_cache_ttl,
                ..KeyCacheSettings::default()
            },
        ),
        auth_enabled: config.auth.enabled,
        jwt: JwtKeys::new(&config.auth),
        users: UserCache::new(
            store.clone(),
            UserCacheSettings {
                ttl: config.auth.user_cache_ttl,
                ..UserCacheSettings::default()
            },
        ),
        guard,
        trusted_proxies: config.trusted_proxies.clone(),
    });
    // Separate from `AppState`: the GraphQL schema's context holds `AppState`, and neither
    // front-end's state is needed by the rest.
    let front_ends = FrontEnds {
        ws: web::Data::new(WsState::new(ws_hub.clone(), config.websocket.clone())),
        graphql: web::Data::new(GraphqlState::new(config.graphql.clone())),
    };
    let metrics_state = state.clone();
    let listening = serve(&config, state, front_ends, &metrics).await?;
    // After the API port is bound: a gateway that cannot serve is not scraped as if it could.
    let metrics_listener = match config.metrics {
        true => Some(metrics_listener::start(
            &config.metrics_bind,
            metrics_state,
        )?),
        false => None,
    };
    Ok(RunningGateway {
        addr: listening.addr,
        scheme: listening.scheme,
        server: listening.server,
        registry,
        store,
        usage,
        ws_hub,
        consul_registration: listening.consul_registration,
        metrics: metrics_listener,
    })
}

/// Migrates (when `database.auto_migrate`) and opens the store.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let database = &config.database;
    if database.auto_migrate {
        let target = database.target.clone();
        let applied = tokio::task::spawn_blocking(move || Store::migrate(&target))
            .await
            .context("database migrations")?
            .context("database migrations")?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "database migrated");
        }
    }
    let store = Store::open(&database.target, database.max_connections).context("database")?;
    tracing::info!(database = %database.target.display_masked(), "store ready");
    Ok(store)
}

fn warn_about_auth(config: &Config) {
    if !config.auth.enabled {
        tracing::warn!("AUTH_ENABLED=false: /v1 accepts requests WITHOUT an API key; use only for local experiments");
    }
    if config.auth.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret, so admin tokens end with this process"
        );
    }
}

/// The pipeline and its optional stages: limits, the budget ledger and the response cache,
/// shared through Redis when configured.
fn build_pipeline(
    config: &Config,
    registry: &UpstreamRegistryHandle,
    usage: &UsageHandle,
    store: &Store,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Pipeline> {
    // One Redis client serves the shared rate limits and the shared budget ledger.
    let redis = match &config.rate_limit.redis {
        Some(shared) => {
            tracing::info!(prefix = %shared.prefix, fallback = ?shared.failure, "limits and budgets shared through redis");
            Some(SharedLimiter::new(shared).map_err(|e| anyhow::anyhow!(e))?)
        }
        None => None,
    };
    let limits = rate_limits(config, redis.clone(), metrics);
    let mut budgets = BudgetLedger::new(store.clone());
    if let (Some(redis), Some(shared)) = (&redis, &config.rate_limit.redis) {
        budgets = budgets.with_shared(Arc::clone(redis));
        BudgetReconciler::start_reconciler(budgets.clone(), shared.budget_reconcile);
    }
    Ok(Pipeline {
        registry: registry.clone(),
        router: ModelRouter::new(config.models.clone()),
        metrics: Arc::clone(metrics),
        max_response_bytes: config.server.max_response_bytes,
        usage: usage.clone(),
        budgets,
        default_max_tokens: config.usage.default_max_tokens,
        max_tokens_cap: config.usage.max_tokens_cap,
        limits,
        cache: config.cache.as_ref().map(|cache| {
            let local = actors::cache::ResponseCache::new(cache.ttl, cache.max_bytes);
            match &redis {
                Some(redis) => local.with_shared(Arc::clone(redis)),
                None => local,
            }
        }),
    })
}

/// The WebSocket and GraphQL front-ends' own state, registered beside `AppState`.
#[derive(Clone)]
struct FrontEnds {
    ws: web::Data<WsState>,
    graphql: web::Data<GraphqlState>,
}

/// A bound, not yet running, server: where it listens and how (`http`/`https`).
struct Listening {
    server: actix_web::dev::Server,
    addr: SocketAddr,
    scheme: &'static str,
    consul_registration: Option<ConsulRegistration>,
}

/// Builds the `HttpServer` (state, middleware, routes), binds it (with TLS when configured),
/// registers with Consul when asked, and only then runs it.
async fn serve(
    config: &Config,
    state: web::Data<AppState>,
    front_ends: FrontEnds,
    metrics: &Metrics,
) -> anyhow::Result<Listening> {
    let http_metrics = crate::metrics::http::HttpMetrics::register(&metrics.registry)
        .map_err(|error| anyhow::anyhow!("http metrics: {error}"))?;
    let gzip = config.gzip;
    let cors_origins = config.cors_allowed_origins.clone();
    let metrics_enabled = config.metrics;
    let grpc_enabled = config.protocol_conversion;
    let dashboard = web::Data::new(config.dashboard.clone());
    let body_timeout = config.server.request_body_timeout;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(front_ends.ws.clone())
            .app_data(front_ends.graphql.clone())
            .app_data(web::Data::new(UpstreamClients::new(grpc_enabled)))
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                GatewayError::InvalidJson(format!("invalid query string: {error}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|error, _| {
                GatewayError::InvalidJson(format!("invalid path: {error}")).into()
            }))
            .app_data(dashboard.clone())
            .configure(|app| routes::configure(app, &dashboard, body_timeout))
            .wrap(Condition::new(gzip, crate::compress::Compress))
            .wrap(Condition::new(
                cors_origins.is_some(),
                cors(cors_origins.as_deref()),
            ))
            .wrap(Condition::new(metrics_enabled, http_metrics.clone()))
            .wrap(request_id::RequestIds)
    })
    .tcp_nodelay(true)
    .keep_alive(config.server.keep_alive)
    .shutdown_timeout(config.server.shutdown_timeout.as_secs());
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    let (server, scheme) = match &config.tls {
        Some(tls_config) => {
            let rustls = tls::server_config(tls_config)?;
            (
                server.bind_rustls_0_23(&config.server.bind, rustls),
                "https",
            )
        }
        None => (server.bind(&config.server.bind), "http"),
    };
    let server = server.with_context(|| format!("binding {}", config.server.bind))?;
    let addr = *server
        .addrs()
        .first()
        .context("the listener has no address")?;
    tracing::info!(%addr, scheme, "gateway listening");
    let consul_registration = register_with_consul(config, addr).await?;
    Ok(Listening {
        server: server.run(),
        addr,
        scheme,
        consul_registration,
    })
}

/// `CONSUL_REGISTER=true`: registers the gateway with an HTTP check on `/health`. A failure is
/// a start-up error when discovery is required, a warning otherwise.
async fn register_with_consul(
    config: &Config,
    addr: SocketAddr,
) -> anyhow::Result<Option<ConsulRegistration>> {
    let Some(discovery) = &config.discovery else {
        return Ok(None);
    };
    let DiscoveryBackend::Consul(consul) = &discovery.backend else {
        return Ok(None);
    };
    let Some((name, address)) = &consul.register else {
        return Ok(None);
    };
    let address = match address {
        Some(address) => address.clone(),
        None if !addr.ip().is_unspecified() => addr.ip().to_string(),
        None => std::env::var("HOSTNAME").context(
            "CONSUL_REGISTER=true with a wildcard bind address needs discovery.consul.register_address or $HOSTNAME",
        )?,
    };
    match ConsulRegistration::register(consul, name, &address, addr.port()).await {
        Ok(registration) => {
            tracing::info!(id = %registration.id, "registered with consul");
            Ok(Some(registration))
        }
        Err(error) if discovery.required => {
            Err(anyhow::anyhow!("consul registration failed: {error}"))
        }
        Err(error) => {
            tracing::warn!(%error, "consul registration failed; running unregistered");
            Ok(None)
        }
    }
}

/// The limiter (in-process, or Redis with its fallback) and the actor that evicts its idle
/// buckets; `None` when rate limits are off.
fn rate_limits(
    config: &Config,
    redis: Option<std::sync::Arc<SharedLimiter>>,
    metrics: &Metrics,
) -> Option<RateLimits> {
    let settings = &config.rate_limit;
    if !settings.enabled {
        return None;
    }
    let limiter = match redis {
        Some(redis) => RateLimiter::with_shared(settings.max_buckets, redis),
        None => RateLimiter::local(settings.max_buckets),
    };
    let concurrency = std::sync::Arc::new(ConcurrencyLimiter::default());
    LimiterUpkeep::start_upkeep(
        std::sync::Arc::clone(limiter.local_limiter()),
        std::sync::Arc::clone(&concurrency),
        LIMITER_SWEEP_INTERVAL,
    );
    Some(RateLimits {
        limiter,
        concurrency,
        requests_per_minute: settings.requests_per_minute,
        burst: settings.burst,
        tokens_per_minute: settings.tokens_per_minute,
        refusals: metrics.rate_limit_refusals(),
    })
}

/// The front door's throttles: on the rate limiter's buckets when limits are on (so logins are
/// counted across replicas when Redis shares them), on buckets of their own otherwise.
fn auth_guard(
    config: &Config,
    pipeline: &Pipeline,
    metrics: &Metrics,
) -> anyhow::Result<AuthGuard> {
    let limiter = match &pipeline.limits {
        Some(limits) => limits.limiter.clone(),
        None => {
            let limiter = RateLimiter::local(config.rate_limit.max_buckets);
            LimiterUpkeep::start_upkeep(
                Arc::clone(limiter.local_limiter()),
                Arc::new(ConcurrencyLimiter::default()),
                LIMITER_SWEEP_INTERVAL,
            );
            limiter
        }
    };
    let settings = GuardSettings {
        max_failures_per_minute: config.auth.max_failures_per_minute,
        logins_per_minute: config.rate_limit.login_requests_per_minute,
        login_max_concurrent: config.auth.login_max_concurrent,
        login_wait: config.auth.login_wait,
    };
    AuthGuard::new(
        settings,
        limiter,
        &metrics.registry,
        metrics.rate_limit_refusals(),
    )
    .context("registering auth metrics")
}

/// How often idle rate-limit buckets are evicted.
const LIMITER_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn cors(origins: Option<&[String]>) -> Cors {
    let origins = origins.unwrap_or_default();
    let mut cors = Cors::default()
        .allowed_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::PATCH,
            http::Method::DELETE,
            http::Method::OPTIONS,
        ])
        .allowed_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::header::ACCEPT,
            http::header::HeaderName::from_static("x-api-key"),
            request_id::REQUEST_ID,
        ])
        .expose_headers([request_id::REQUEST_ID])
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}
