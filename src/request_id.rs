//! Request ids: an incoming `x-request-id` is honoured when it is sane, otherwise one is made;
//! either way it is logged with the request and returned in the response.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use bytes::Bytes;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

fn acceptable(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    sane.then_some(text)
}

pub async fn middleware<B: MessageBody + 'static>(
    request: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B, Bytes>>, Error> {
    let id: Arc<str> = match request.headers().get(REQUEST_ID).and_then(acceptable) {
        Some(text) => Arc::from(text),
        None => {
            let mut buffer = uuid::Uuid::encode_buffer();
            Arc::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer))
        }
    };
    request.extensions_mut().insert(RequestId(Arc::clone(&id)));
    let mut response = next.call(request).await?;
    let mut named = None;
    if let Some(error) = response
        .response()
        .error()
        .and_then(|error| error.as_error::<crate::error::GatewayError>())
    {
        error.log(&id);
        // The client's message leaves details out: it names the request id to ask about.
        if error.hides_detail() {
            let mut body = error.body();
            body.error.message = format!("{} (request id: {id})", body.error.message);
            named = Some(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()));
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(match named {
        Some(body) => response.map_body(|_, _| EitherBody::right(body)),
        None => response.map_body(|_, body| EitherBody::left(body)),
    })
}

/// Root spans carry our request id instead of tracing-actix-web's own, and are `debug`: at the
/// default level (info) a span per request cost 7–10% of a worker's CPU under load (registry
/// entry, formatted fields, enter and exit on every poll) for context that only a few events
/// need. Those events name the request id themselves (`GatewayError::log`, upstream failures);
/// at debug every event inside a request gets the span.
pub struct GatewayRootSpan;

impl RootSpanBuilder for GatewayRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let extensions = request.extensions();
        let id = extensions.get::<RequestId>().map_or("", |id| &*id.0);
        tracing::debug_span!(
            "http_request",
            method = %request.method(),
            path = %request.path(),
            request_id = %id,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            span.record("status", response.status().as_u16());
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
