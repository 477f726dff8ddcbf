//! The OpenAI-compatible endpoints.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Serialize;

use crate::auth::presented_credential;
use crate::error::GatewayError;
use crate::overview::RequestOutcome;
use crate::pipeline::{ApiKind, ParsedRequest, PipelineBody, PipelineResponse, RequestContext};
use crate::principal::{Accepts, Principal};
use crate::request_id::RequestId;
use crate::state::AppState;
use crate::upstream::UpstreamClients;

pub async fn chat_completions(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, GatewayError> {
    serve(ApiKind::ChatCompletions, request, payload, &state, &clients).await
}

pub async fn completions(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, GatewayError> {
    serve(ApiKind::Completions, request, payload, &state, &clients).await
}

pub async fn embeddings(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, GatewayError> {
    serve(ApiKind::Embeddings, request, payload, &state, &clients).await
}

async fn serve(
    kind: ApiKind,
    request: HttpRequest,
    payload: web::Payload,
    state: &AppState,
    clients: &UpstreamClients,
) -> Result<HttpResponse, GatewayError> {
    let started = Instant::now();
    let result = answer(kind, request, payload, state, clients).await;
    // Measured once the head is ready: a whole answer, or a stream's first byte.
    let latency = started.elapsed();
    let (failed, overhead) = match &result {
        Ok((response, upstream_time)) => {
            let overhead = latency.saturating_sub(*upstream_time);
            state.metrics.observe_overhead(kind.label(), overhead);
            (response.status().is_server_error(), Some(overhead))
        }
        Err(error) => (error.status().is_server_error(), None),
    };
    state.metrics.overview.record_request(
        started,
        RequestOutcome {
            latency,
            overhead,
            failed,
        },
    );
    result.map(|(response, _)| response)
}

/// The request's answer and the time spent upstream.
async fn answer(
    kind: ApiKind,
    request: HttpRequest,
    payload: web::Payload,
    state: &AppState,
    clients: &UpstreamClients,
) -> Result<(HttpResponse, Duration), GatewayError> {
    let key = Principal::resolve(
        &request,
        presented_credential(&request),
        Accepts::ApiKey,
        state,
    )
    .await?
    .into_key();
    let body = read_json_body(&request, payload, state).await?;
    let parsed = ParsedRequest::parse(kind, body)?;
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let cache_opt_in = request
        .headers()
        .get(crate::pipeline::cache::OPT_IN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim(), "true" | "1" | "on"));
    let context = RequestContext {
        request_id: &request_id,
        key,
        cache_opt_in,
    };
    let response = state.pipeline.execute(clients, parsed, context).await?;
    let upstream_time = response.upstream_time;
    Ok((into_http(response), upstream_time))
}

/// Reads the body within the size limit and the body deadline (these routes keep their own:
/// see `body::deadline`), refusing non-JSON content types.
async fn read_json_body(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Bytes, GatewayError> {
    let limit = state.max_body_bytes;
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        let text = content_type.to_str().unwrap_or("");
        let essence = text.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(GatewayError::UnsupportedMediaType(text.to_string()));
        }
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    // `timeout` arms no timer unless the read has to wait: a body that came with its head
    // costs a clock read.
    let after = state.request_body_timeout;
    let Ok(read) = tokio::time::timeout(after, payload.to_bytes_limited(limit)).await else {
        return Err(GatewayError::RequestBodyTimeout { after });
    };
    match read {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) => Err(GatewayError::InvalidJson(format!(
            "could not read the request body: {error}"
        ))),
        Err(_) => Err(GatewayError::PayloadTooLarge { limit }),
    }
}

fn into_http(response: PipelineResponse) -> HttpResponse {
    let mut builder = HttpResponse::build(response.status);
    for (name, value) in response.headers {
        builder.append_header((name, value));
    }
    match response.body {
        PipelineBody::Full(body) => builder.body(body),
        PipelineBody::Sse(relay) => builder.streaming(relay),
    }
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Serialize)]
struct ModelEntry {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: String,
}

/// Configured aliases plus `<service>/<model>` for what each reachable service reports.
pub async fn list_models(
    request: HttpRequest,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, GatewayError> {
    // Like OpenAI, the model list needs a key.
    Principal::resolve(
        &request,
        presented_credential(&request),
        Accepts::ApiKey,
        &state,
    )
    .await?;
    let data = state
        .pipeline
        .list_models(&clients)
        .await
        .into_iter()
        .map(|model| ModelEntry {
            id: model.id,
            object: "model",
            created: 0,
            owned_by: model.owned_by,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    }))
}
