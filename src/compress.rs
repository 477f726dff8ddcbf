//! Response compression for answers worth compressing: gzip or deflate as the client's
//! `Accept-Encoding` prefers (actix-web's negotiation and encoder), for answers of at least
//! [`MIN_LENGTH`] bytes or of unknown length, whose type is not compressed already.
//!
//! actix-web's own `Compress` negotiates `Accept-Encoding` into hash sets before every request
//! runs and then gzips every answer, however small. A model's JSON answer of a few hundred
//! bytes gains nothing from it (it fits one packet either way) and pays zlib's set-up, and
//! every OpenAI SDK asks for gzip. Here a request keeps only its header (a reference count);
//! negotiation waits until an answer turns out large enough to compress.
//!
//! Unlike actix-web's `Compress`, a client that accepts none of gzip, deflate or identity gets
//! the answer uncompressed rather than a 406 (RFC 9110 §12.5.3 allows either), so no upstream
//! work is done for an answer that is then thrown away.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::encoding::Encoder;
use actix_service::{Service, Transform};
use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    self, AcceptEncoding, ContentEncoding, Encoding, HeaderValue, ACCEPT_ENCODING,
    CONTENT_ENCODING, CONTENT_TYPE,
};
use actix_web::Error;
use pin_project_lite::pin_project;

/// Answers shorter than this go out as they are (nginx's `gzip_min_length` idea): below about
/// a kilobyte gzip saves less than a packet and costs a compressor's set-up.
pub const MIN_LENGTH: u64 = 1024;

/// The codings offered. Negotiation treats them as a set: the client's q-values decide, and
/// ties go by actix-web's own ranking of codings (gzip before deflate), not by this order.
static SUPPORTED: [Encoding; 3] = [Encoding::gzip(), Encoding::deflate(), Encoding::identity()];

/// The middleware factory (`App::wrap`).
pub struct Compress;

impl<S, B> Transform<S, ServiceRequest> for Compress
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<Encoder<B>, B>>;
    type Error = Error;
    type Transform = CompressMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CompressMiddleware { service }))
    }
}

pub struct CompressMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for CompressMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<Encoder<B>, B>>;
    type Error = Error;
    type Future = CompressFuture<S::Future>;

    actix_service::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let accept = request.headers().get(ACCEPT_ENCODING).cloned();
        CompressFuture {
            inner: self.service.call(request),
            accept,
        }
    }
}

pin_project! {
    pub struct CompressFuture<F> {
        #[pin]
        inner: F,
        accept: Option<HeaderValue>,
    }
}

impl<F, B> Future for CompressFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<Encoder<B>, B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let coding = this
            .accept
            .take()
            .filter(|_| worth_compressing(&response))
            .and_then(|accept| chosen(&accept));
        Poll::Ready(Ok(match coding {
            Some(coding) => response
                .map_body(|head, body| EitherBody::left(Encoder::response(coding, head, body))),
            None => response.map_into_right_body(),
        }))
    }
}

/// Long enough (or of unknown length), not encoded already, and of a type that compresses.
fn worth_compressing<B: MessageBody>(response: &ServiceResponse<B>) -> bool {
    let long = match response.response().body().size() {
        BodySize::Sized(length) => length >= MIN_LENGTH,
        BodySize::Stream => true,
        BodySize::None => false,
    };
    long && !response.headers().contains_key(CONTENT_ENCODING)
        && compressible(response.headers().get(CONTENT_TYPE))
}

/// Images (but SVG, which is text) and video are compressed already.
fn compressible(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let value = value.as_bytes();
    let starts = |prefix: &[u8]| {
        value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if starts(b"image/") {
        return starts(b"image/svg");
    }
    !starts(b"video/")
}

/// The coding the client prefers among those offered; `None` for identity (or when nothing
/// offered is acceptable, or the header does not parse).
fn chosen(accept: &HeaderValue) -> Option<ContentEncoding> {
    let items = header::from_comma_delimited(std::iter::once(accept)).ok()?;
    match AcceptEncoding(items).negotiate(SUPPORTED.iter())? {
        Encoding::Known(ContentEncoding::Identity) | Encoding::Unknown(_) => None,
        Encoding::Known(coding) => Some(coding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test as actix_test, web, App, HttpResponse};

    fn value(text: &'static str) -> HeaderValue {
        HeaderValue::from_static(text)
    }

    #[test]
    fn the_client_preference_decides_the_coding() {
        assert_eq!(chosen(&value("gzip, deflate")), Some(ContentEncoding::Gzip));
        assert_eq!(
            chosen(&value("gzip, deflate, br")),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(chosen(&value("deflate")), Some(ContentEncoding::Deflate));
        assert_eq!(
            chosen(&value("gzip;q=0.5, deflate;q=0.9")),
            Some(ContentEncoding::Deflate)
        );
        assert_eq!(chosen(&value("identity")), None);
        assert_eq!(chosen(&value("br")), None);
        assert_eq!(chosen(&value("gzip;q=0")), None);
        // A bare `*` accepts identity too, and actix-web's negotiation then keeps it.
        assert_eq!(chosen(&value("*")), None);
        assert_eq!(chosen(&value("gzip;q=nonsense")), None);
    }

    #[test]
    fn only_types_not_compressed_already_are_compressed() {
        assert!(compressible(None));
        assert!(compressible(Some(&value("application/json"))));
        assert!(compressible(Some(&value("text/html; charset=utf-8"))));
        assert!(compressible(Some(&value("image/svg+xml"))));
        assert!(compressible(Some(&value("IMAGE/SVG+XML"))));
        assert!(!compressible(Some(&value("image/png"))));
        assert!(!compressible(Some(&value("video/mp4"))));
    }

    async fn answer(length: usize, accept: Option<&'static str>) -> (Option<String>, usize) {
        let app = actix_test::init_service(App::new().wrap(Compress).route(
            "/",
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body("a".repeat(length))
            }),
        ))
        .await;
        let mut request = actix_test::TestRequest::get().uri("/");
        if let Some(accept) = accept {
            request = request.insert_header((ACCEPT_ENCODING, accept));
        }
        let response = actix_test::call_service(&app, request.to_request()).await;
        let coding = response
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body = actix_test::read_body(response).await;
        (coding, body.len())
    }

    #[actix_rt::test]
    async fn long_answers_are_compressed_when_asked_and_short_ones_never() {
        let long = usize::try_from(MIN_LENGTH).expect("small");
        let (coding, length) = answer(long, Some("gzip, deflate")).await;
        assert_eq!(coding.as_deref(), Some("gzip"));
        assert!(
            length < long / 4,
            "{long} bytes of 'a' compress to {length}"
        );

        assert_eq!(answer(long - 1, Some("gzip")).await, (None, long - 1));
        assert_eq!(answer(long, None).await, (None, long));
        assert_eq!(answer(long, Some("identity")).await, (None, long));
        // Nothing acceptable: the answer still comes, uncompressed (no 406).
        assert_eq!(answer(long, Some("br, identity;q=0")).await, (None, long));
    }
}
