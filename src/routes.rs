//! Every path the gateway serves and its handler; nothing else.

use actix_web::{web, FromRequest, Handler, Resource, Responder};

use crate::handlers::{openai, ops};

pub fn configure(config: &mut web::ServiceConfig, metrics_enabled: bool) {
    config
        .service(post("/v1/chat/completions", openai::chat_completions))
        .service(post("/v1/completions", openai::completions))
        .service(post("/v1/embeddings", openai::embeddings))
        .service(get("/v1/models", openai::list_models))
        .service(get("/health", ops::health))
        .service(get("/ready", ops::ready));
    if metrics_enabled {
        config.service(get("/metrics", ops::metrics));
    }
    config.default_service(web::to(ops::route_not_found));
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
