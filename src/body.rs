//! A deadline for request bodies (`server.request_body_timeout_secs`). actix-web bounds the
//! time to a request's head, not its body: without this a client could hold a worker's
//! connection and a handler's buffer for as long as it cared to trickle bytes.
//!
//! The body stream is wrapped so that, once the deadline passes while a read is waiting, it
//! ends in an error; whatever the handler then answered is replaced by 408
//! `request_body_timeout` on a connection that is closed (the rest of the body may still be on
//! its way). A body that arrives with its head never starts a timer. Upgraded connections
//! (WebSocket) are left alone: their "body" is the session.
//!
//! The model routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`) time their
//! one body read themselves (`handlers::openai`) and are registered outside this middleware
//! (`routes::configure`): the layer cost them ~2,000 instructions per request under callgrind
//! (2% of the whole request path), on the path the hot-path budget is about.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::error::GatewayError;

/// `from_fn` middleware: `wrap(from_fn(move |r, n| body::deadline(r, n, timeout)))`.
pub async fn deadline<B: MessageBody + 'static>(
    mut request: ServiceRequest,
    next: Next<B>,
    after: Duration,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    if !has_body(&request) {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let expired = Rc::new(Cell::new(false));
    let payload = request.take_payload();
    request.set_payload(Payload::Stream {
        payload: Box::pin(Deadline {
            inner: payload,
            at: Instant::now() + after,
            timer: None,
            expired: Rc::clone(&expired),
        }),
    });
    let response = next.call(request).await?;
    if expired.get() {
        // The request is taken back from the response: cloning it before routing would
        // keep routing from filling in its path parameters.
        let (http_request, _) = response.into_parts();
        let error = GatewayError::RequestBodyTimeout { after };
        return Ok(ServiceResponse::from_err(error, http_request).map_into_right_body());
    }
    Ok(response.map_into_left_body())
}

/// Whether the request has a body to wait for: a length above zero or a chunked body, and no
/// protocol upgrade.
fn has_body(request: &ServiceRequest) -> bool {
    let headers = request.headers();
    if headers.contains_key(header::UPGRADE) {
        return false;
    }
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim() != "0")
}

/// A body stream that fails once `at` has passed while it waits for bytes.
struct Deadline {
    inner: Payload,
    at: Instant,
    /// Started at the first read that has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    expired: Rc<Cell<bool>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        let at = this.at;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.expired.set(true);
                Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))))
            }
        }
    }
}
