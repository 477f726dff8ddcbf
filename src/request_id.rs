//! Request ids: an incoming `x-request-id` is honoured when it is sane, otherwise one is made;
//! either way it is logged with the request and returned in the response.
//!
//! [`RequestIds`] is the outermost middleware. It also opens the request's root span, at
//! `debug` only: at the default level (info) a span per request cost 7–10% of a worker's CPU
//! under load (registry entry, formatted fields, enter and exit on every poll) for context that
//! only a few events need. Those events name the request id themselves (`GatewayError::log`,
//! upstream failures); at debug every event inside a request gets the span.
//!
//! Being outermost, it also refuses methods outside HTTP's standard set (405) before any other
//! layer sees them: a made-up method would otherwise become a new `method` label on the HTTP
//! metrics, one series per name a client invents.
//!
//! It is written as a `Transform` with its own future rather than with `from_fn` plus a
//! tracing middleware: those two layers boxed the request's future, moved the response through
//! two more state machines and built a span that info level throws away, ~7k instructions per
//! request together (bench/instructions.sh), for what this layer does in one.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{Error, HttpMessage};
use bytes::Bytes;
use tracing::Span;

use crate::error::GatewayError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

fn acceptable(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
    sane.then_some(text)
}

/// The id for a request, and the header value that returns it: the client's own when sane
/// (its header value is reused as it came), a new UUID otherwise.
fn id_of(request: &ServiceRequest) -> (Arc<str>, Option<HeaderValue>) {
    if let Some(value) = request.headers().get(REQUEST_ID) {
        if let Some(text) = acceptable(value) {
            return (Arc::from(text), Some(value.clone()));
        }
    }
    let mut buffer = uuid::Uuid::encode_buffer();
    let text = &*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    (Arc::from(text), HeaderValue::from_str(text).ok())
}

/// The methods HTTP defines; anything else is refused before it can name a metric series.
fn is_standard(method: &Method) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::CONNECT,
        Method::TRACE,
    ]
    .contains(method)
}

/// The middleware: see the module's documentation.
pub struct RequestIds;

impl<S, B> Transform<S, ServiceRequest> for RequestIds
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequestIdService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestIdService { service }))
    }
}

pub struct RequestIdService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestIdService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = RequestIdFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let (id, header) = id_of(&request);
        let span = tracing::debug_span!(
            "http_request",
            method = %request.method(),
            path = %request.path(),
            request_id = %id,
            status = tracing::field::Empty,
        );
        request.extensions_mut().insert(RequestId(Arc::clone(&id)));
        let span = (!span.is_disabled()).then_some(span);
        let inner = if !is_standard(request.method()) {
            let error = GatewayError::MethodNotAllowed {
                method: request.method().as_str().chars().take(32).collect(),
                path: request.path().chars().take(256).collect(),
            };
            Inner::Refused {
                response: Some(request.error_response(error)),
            }
        } else {
            let future = match &span {
                Some(span) => span.in_scope(|| self.service.call(request)),
                None => self.service.call(request),
            };
            Inner::Called { future }
        };
        RequestIdFuture {
            inner,
            id,
            header,
            span,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: Inner<F>,
        id: Arc<str>,
        header: Option<HeaderValue>,
        span: Option<Span>,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProjection]
    enum Inner<F> {
        Called { #[pin] future: F },
        Refused { response: Option<ServiceResponse> },
    }
}

impl<F, B> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.project() {
            InnerProjection::Called { future } => {
                let polled = match this.span {
                    Some(span) => span.in_scope(|| future.poll(cx)),
                    None => future.poll(cx),
                };
                std::task::ready!(polled)?.map_into_left_body()
            }
            InnerProjection::Refused { response } => response
                .take()
                .expect("a refused request's future is polled once")
                .map_into_right_body(),
        };
        if let Some(span) = this.span {
            span.record("status", response.status().as_u16());
        }
        if let Some(body) = name_in_error(&response, this.id) {
            response = response.map_body(|_, _| EitherBody::right(BoxBody::new(body)));
        }
        if let Some(value) = this.header.take() {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        Poll::Ready(Ok(response))
    }
}

/// Logs a gateway error with the request id; when the client's message leaves details out, the
/// new body that names the request id to ask about.
fn name_in_error<B>(response: &ServiceResponse<B>, id: &str) -> Option<Bytes> {
    let error = response.response().error()?.as_error::<GatewayError>()?;
    error.log(id);
    if !error.hides_detail() {
        return None;
    }
    let mut body = error.body();
    body.error.message = format!("{} (request id: {id})", body.error.message);
    Some(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App, HttpResponse};

    use super::*;

    async fn handler(request: actix_web::HttpRequest) -> HttpResponse {
        let id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone());
        HttpResponse::Ok().body(id.map(|id| id.to_string()).unwrap_or_default())
    }

    async fn call(headers: &[(&str, &str)]) -> (Option<String>, String) {
        let app = test::init_service(
            App::new()
                .wrap(RequestIds)
                .route("/x", web::post().to(handler)),
        )
        .await;
        let mut request = test::TestRequest::post().uri("/x");
        for &(name, value) in headers {
            request = request.insert_header((name, value));
        }
        let response = test::call_service(&app, request.to_request()).await;
        let header = response
            .headers()
            .get(REQUEST_ID)
            .map(|v| v.to_str().expect("ascii").to_string());
        let body = test::read_body(response).await;
        (header, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[actix_rt::test]
    async fn sane_ids_are_honoured_and_others_replaced() {
        let (header, seen) = call(&[("x-request-id", "trace-1")]).await;
        assert_eq!(header.as_deref(), Some("trace-1"));
        assert_eq!(seen, "trace-1");

        for insane in ["has space", &"x".repeat(129)] {
            let (header, seen) = call(&[("x-request-id", insane)]).await;
            let header = header.expect("an id is always returned");
            assert_ne!(header, insane);
            assert!(uuid::Uuid::parse_str(&header).is_ok(), "{header}");
            assert_eq!(seen, header, "the handler sees the id the client gets");
        }
    }
}
