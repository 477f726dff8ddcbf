//! Every path the gateway serves and its handler; nothing else.

use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{web, FromRequest, Handler, Resource, Responder};

use crate::config::DashboardConfig;
use crate::handlers::{admin, openai, ops, overview};
use crate::{dashboard, graphql, ws};

/// The model routes first, outside every other route's body deadline: their handlers time
/// their one body read themselves (see `body`), and the middleware layer would cost each of
/// them ~2,000 instructions. Everything else is in one scope behind `body::deadline`.
pub fn configure(
    config: &mut web::ServiceConfig,
    dashboard_config: &DashboardConfig,
    body_timeout: Duration,
) {
    config
        .service(post("/v1/chat/completions", openai::chat_completions))
        .service(post("/v1/completions", openai::completions))
        .service(post("/v1/embeddings", openai::embeddings))
        .service(
            web::scope("")
                .wrap(from_fn(move |request, next| {
                    crate::body::deadline(request, next, body_timeout)
                }))
                .configure(|scope| the_rest(scope, dashboard_config)),
        );
}

fn the_rest(config: &mut web::ServiceConfig, dashboard_config: &DashboardConfig) {
    config
        .service(get("/v1/models", openai::list_models))
        .service(get("/v1/ws", ws::connect))
        .service(post("/v1/ws/ticket", ws::issue_ticket))
        .service(
            web::resource("/graphql")
                .route(web::post().to(graphql::execute))
                .route(web::get().to(graphql::playground))
                .default_service(web::to(ops::method_not_allowed)),
        )
        .service(get("/graphiql", graphql::playground))
        .service(get("/health", ops::health))
        .service(get("/ready", ops::ready))
        .service(post("/auth/login", admin::login))
        .service(
            web::resource("/admin/keys")
                .route(web::get().to(admin::list_keys))
                .route(web::post().to(admin::create_key))
                .default_service(web::to(ops::method_not_allowed)),
        )
        .service(
            web::resource("/admin/keys/{id}")
                .route(web::patch().to(admin::update_key))
                .route(web::delete().to(admin::revoke_key))
                .default_service(web::to(ops::method_not_allowed)),
        )
        .service(post("/admin/keys/{id}/revoke", admin::revoke_key))
        .service(get("/admin/users", admin::list_users))
        .service(
            web::resource("/admin/users/{username}")
                .route(web::patch().to(admin::update_user))
                .route(web::delete().to(admin::delete_user))
                .default_service(web::to(ops::method_not_allowed)),
        )
        .service(get("/admin/usage", admin::usage))
        .service(get("/admin/upstreams", admin::upstreams))
        .service(get("/admin/overview", overview::overview))
        .service(get("/admin/ws", ws::sessions));
    // Last, so every API path above wins: the dashboard's files, then its SPA fallback (or the
    // JSON 404 for API paths and other methods).
    dashboard::configure(config, dashboard_config);
    config.default_service(web::to(dashboard::fallback));
}

fn post<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(ops::method_not_allowed))
}

fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(ops::method_not_allowed))
}
