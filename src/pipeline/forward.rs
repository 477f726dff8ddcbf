//! Sending one request upstream with failover: a failed attempt moves to another endpoint while
//! nothing has reached the client, within the service's attempt limit and retry budget, by the
//! rule in [`Verdict::of`] (which failures are retried, which count against the endpoint, and
//! what upstream work a failed request still bills). gRPC endpoints are reached through
//! [`super::grpc`], whose answers take the same shapes as HTTP ones.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actors::endpoint::{Endpoint, InFlightGuard, Protocol};
use actors::settings::ServiceSettings;
use actors::UpstreamPoolHandle;
use bytes::Bytes;
use futures_util::stream::LocalBoxStream;
use futures_util::StreamExt;
use http_body_util::{BodyDataStream, BodyExt, Full, LengthLimitError, Limited};

use super::grpc::{GrpcAnswer, GrpcCall};
use super::sse::SseRelay;
use super::{ApiKind, PipelineBody, PipelineResponse};
use crate::error::{with_causes, GatewayError};
use crate::metrics::Metrics;
use crate::upstream::{Http1Pool, SendError, UpstreamClients};

/// Our request id, sent upstream (`http` 1's name; the edge's is actix-web's `http` 0.2).
const UPSTREAM_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// How much of an upstream error body is quoted in our error message.
const ERROR_SNIPPET: usize = 512;

pub(super) struct Forward<'a> {
    pub clients: &'a UpstreamClients,
    pub pool: &'a UpstreamPoolHandle,
    pub kind: ApiKind,
    pub stream: bool,
    pub body: Bytes,
    pub request_id: &'a str,
    pub metrics: &'a Metrics,
    pub max_response_bytes: usize,
}

/// An attempt's result once the gateway has committed to it.
enum Answer {
    Full {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
    },
    Stream {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        upstream: LocalBoxStream<'static, Result<Bytes, String>>,
    },
}

/// A request no endpoint served, and the upstream work it cost all the same.
pub(super) struct Failed {
    pub error: GatewayError,
    /// The endpoint that did the work (empty when none did).
    pub endpoint: String,
    pub work: Work,
}

/// Upstream work a failed request still bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Work {
    /// No endpoint worked on it (refused, unreachable, or it said it failed).
    Nothing,
    /// An endpoint took it and was still working when the gateway stopped waiting: its prompt.
    Prompt,
    /// An endpoint answered more than the gateway buffers: the prompt and the `read` bytes.
    Answer { read: usize },
}

/// Whose fault a failed attempt was, for the endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    Endpoint,
    /// Only if another endpoint then serves the request: failing everywhere is the request's.
    IfAnotherServes,
    Nobody,
}

/// What one failed attempt means for retrying, for the endpoint's health and for billing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    retry: bool,
    blame: Blame,
    work: Work,
}

impl Verdict {
    /// The failover rule (also in ARCHITECTURE.md):
    /// - the upstream's work never started (connect refused or timed out, an exchange broken
    ///   before the answer, 502/503/504, a retryable gRPC status): another endpoint is tried,
    ///   and the failure counts against this one;
    /// - the upstream took the request and failed on it (500 and the other 5xx): tried once
    ///   more elsewhere; it counts against the endpoint only when another endpoint then serves
    ///   the request (a request every endpoint fails on is the request's fault);
    /// - the upstream took the request and was still working when the first-byte (or, for a
    ///   buffered answer, the idle) timeout ran out: not retried, which would repeat the work,
    ///   and billed for its prompt; it counts against the endpoint for streams, whose response
    ///   head comes before generation, not for buffered answers, whose head waits for all of it;
    /// - the answer outgrew `server.max_response_bytes`: the client asked for it, so it is not
    ///   retried and not counted, and it bills the prompt and the answer read;
    /// - anything the upstream rejects as the request's own fault: not retried, not counted.
    fn of(error: &GatewayError, stream: bool) -> Verdict {
        let verdict = |retry, blame, work| Verdict { retry, blame, work };
        match error {
            GatewayError::UpstreamStatus {
                status: 502..=504, ..
            } => verdict(true, Blame::Endpoint, Work::Nothing),
            GatewayError::UpstreamStatus { .. } => {
                verdict(true, Blame::IfAnotherServes, Work::Nothing)
            }
            GatewayError::UpstreamTimeout { phase, .. } if *phase != "connect" => {
                let blame = if stream {
                    Blame::Endpoint
                } else {
                    Blame::Nobody
                };
                verdict(false, blame, Work::Prompt)
            }
            GatewayError::UpstreamResponseTooLarge { read, .. } => {
                verdict(false, Blame::Nobody, Work::Answer { read: *read })
            }
            other if other.is_retryable() => verdict(true, Blame::Endpoint, Work::Nothing),
            _ => verdict(false, Blame::Nobody, Work::Nothing),
        }
    }
}

pub(super) async fn forward(request: Forward<'_>) -> Result<PipelineResponse, Failed> {
    let pool = request.pool;
    pool.note_request();
    let settings = Arc::clone(&pool.snapshot().settings);
    let client = request.clients.http(settings.connect_timeout);
    let mut failures = Failures::default();
    let mut upstream_time = std::time::Duration::ZERO;
    for attempt in 0..settings.max_attempts {
        if attempt > 0 && !pool.try_retry() {
            tracing::warn!(
                request_id = request.request_id,
                service = %pool.snapshot().service,
                "retry budget exhausted"
            );
            break;
        }
        // A fresh snapshot per attempt sees ejections caused by the previous attempt.
        let snapshot = pool.snapshot();
        let Some(endpoint) = pool.pick(&snapshot, &failures.tried) else {
            break;
        };
        let in_flight = endpoint.start_request();
        let started = Instant::now();
        let result = attempt_once(&client, &endpoint, &settings, &snapshot.service, &request).await;
        let elapsed = started.elapsed();
        upstream_time += elapsed;
        match result {
            Ok(answer) => {
                pool.report_success(&endpoint, elapsed);
                for suspect in &failures.suspects {
                    pool.report_failure(suspect);
                }
                request.metrics.observe_upstream(
                    &snapshot.service,
                    &endpoint.address,
                    "success",
                    elapsed,
                );
                let mut response = respond(
                    answer,
                    in_flight,
                    &settings,
                    &snapshot.service,
                    request.metrics,
                    upstream_time,
                );
                response.endpoint = endpoint.address.clone();
                return Ok(response);
            }
            Err(error) => {
                let verdict = Verdict::of(&error, request.stream);
                note_failure(
                    &request,
                    &snapshot.service,
                    &endpoint,
                    attempt,
                    &error,
                    elapsed,
                );
                match failures.record(pool, endpoint, error, verdict) {
                    ControlFlow::Continue(()) => {}
                    ControlFlow::Break(Some(failed)) => return Err(failed),
                    ControlFlow::Break(None) => break,
                }
            }
        }
    }
    Err(failures.into_failed(pool))
}

/// The failed attempts of one request so far.
#[derive(Default)]
struct Failures {
    tried: Vec<Arc<Endpoint>>,
    /// Endpoints that failed on the request: blamed if another one serves it.
    suspects: Vec<Arc<Endpoint>>,
    last: Option<GatewayError>,
}

impl Failures {
    /// Applies a failed attempt's verdict: whether to go on, stop, or stop with upstream work
    /// to bill.
    fn record(
        &mut self,
        pool: &UpstreamPoolHandle,
        endpoint: Arc<Endpoint>,
        error: GatewayError,
        verdict: Verdict,
    ) -> ControlFlow<Option<Failed>> {
        match verdict.blame {
            Blame::Endpoint => pool.report_failure(&endpoint),
            Blame::IfAnotherServes => self.suspects.push(Arc::clone(&endpoint)),
            Blame::Nobody => {}
        }
        if verdict.work != Work::Nothing {
            return ControlFlow::Break(Some(Failed {
                error,
                endpoint: endpoint.address.clone(),
                work: verdict.work,
            }));
        }
        self.tried.push(endpoint);
        self.last = Some(error);
        // A request that two endpoints failed on is not tried on a third.
        if !verdict.retry || self.suspects.len() >= 2 {
            return ControlFlow::Break(None);
        }
        ControlFlow::Continue(())
    }

    fn into_failed(self, pool: &UpstreamPoolHandle) -> Failed {
        Failed {
            error: self
                .last
                .unwrap_or_else(|| GatewayError::NoHealthyEndpoint {
                    service: pool.snapshot().service.to_string(),
                }),
            endpoint: String::new(),
            work: Work::Nothing,
        }
    }
}

/// Records a failed attempt: metrics and a log line.
fn note_failure(
    request: &Forward<'_>,
    service: &str,
    endpoint: &Arc<Endpoint>,
    attempt: u32,
    error: &GatewayError,
    elapsed: std::time::Duration,
) {
    request
        .metrics
        .observe_upstream(service, &endpoint.address, error.code(), elapsed);
    tracing::warn!(
        request_id = request.request_id,
        service = %service,
        endpoint = %endpoint,
        attempt = attempt + 1,
        %error,
        "upstream attempt failed"
    );
}

fn respond(
    answer: Answer,
    in_flight: InFlightGuard,
    settings: &ServiceSettings,
    service: &Arc<str>,
    metrics: &Metrics,
    upstream_time: std::time::Duration,
) -> PipelineResponse {
    match answer {
        Answer::Full {
            status,
            headers,
            body,
        } => PipelineResponse {
            status,
            headers,
            body: PipelineBody::Full(body),
            upstream_time,
            endpoint: String::new(),
        },
        Answer::Stream {
            status,
            mut headers,
            upstream,
        } => {
            // Compressing would hold events back in the encoder; SSE goes out as it comes.
            headers.push((
                header::CONTENT_ENCODING,
                HeaderValue::from_static("identity"),
            ));
            let metrics = metrics.clone();
            let label = Arc::clone(service);
            // Held by the end callback, so released when the stream ends or its client leaves
            // (the relay, and the callback with it, is dropped either way).
            let open_stream = metrics.stream_opened();
            let relay = SseRelay::new(
                upstream,
                settings.idle_timeout,
                Arc::clone(service),
                in_flight,
            )
            .on_end(move |fault| {
                if let Some(fault) = fault {
                    metrics.count_stream_fault(&label, fault.label());
                    metrics.overview.record_stream_fault(Instant::now());
                }
                drop(open_stream);
            });
            PipelineResponse {
                status,
                headers,
                body: PipelineBody::Sse(relay),
                upstream_time,
                endpoint: String::new(),
            }
        }
    }
}

async fn attempt_once(
    client: &Http1Pool,
    endpoint: &Endpoint,
    settings: &ServiceSettings,
    service: &str,
    request: &Forward<'_>,
) -> Result<Answer, GatewayError> {
    if endpoint.spec.protocol == Protocol::Grpc {
        // Boxed: inline, the gRPC call's state (~4 KB) would size every HTTP request's future,
        // which is moved whole on its way into actix-web's boxed handler.
        return Box::pin(attempt_grpc(endpoint, settings, service, request)).await;
    }
    let protocol_error = |detail: String| GatewayError::upstream_protocol(service, detail);
    let upstream = upstream_request(settings, request).map_err(protocol_error)?;
    // The first-byte timeout covers connecting, sending and the response head, as one.
    let response = tokio::time::timeout(
        settings.first_byte_timeout,
        client.send(&endpoint.address, upstream),
    )
    .await
    .map_err(|_| {
        GatewayError::upstream_timeout(service, "first byte", settings.first_byte_timeout)
    })?
    .map_err(|error| send_error(service, settings, &error))?;
    let (head, body) = response.into_parts();
    let status =
        StatusCode::from_u16(head.status.as_u16()).map_err(|e| protocol_error(e.to_string()))?;
    if status.is_server_error() {
        let snippet = tokio::time::timeout(
            settings.idle_timeout,
            Limited::new(body, ERROR_SNIPPET * 8).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|collected| {
            let body = collected.to_bytes();
            String::from_utf8_lossy(&body[..body.len().min(ERROR_SNIPPET)]).into_owned()
        })
        .unwrap_or_default();
        return Err(GatewayError::UpstreamStatus {
            service: service.to_string(),
            status: status.as_u16(),
            detail: snippet,
        });
    }
    let headers = forwardable_headers(&head.headers);
    if request.stream && status.is_success() {
        let upstream = BodyDataStream::new(body)
            .map(|chunk| chunk.map_err(|error| error_chain(&error)))
            .boxed_local();
        return Ok(Answer::Stream {
            status,
            headers,
            upstream,
        });
    }
    let body = tokio::time::timeout(
        settings.idle_timeout,
        Limited::new(body, request.max_response_bytes).collect(),
    )
    .await
    .map_err(|_| GatewayError::upstream_timeout(service, "response body", settings.idle_timeout))?
    .map_err(|error| {
        if error.downcast_ref::<LengthLimitError>().is_some() {
            GatewayError::UpstreamResponseTooLarge {
                service: service.to_string(),
                limit: request.max_response_bytes,
                read: request.max_response_bytes,
            }
        } else {
            protocol_error(error_chain(&*error))
        }
    })?
    .to_bytes();
    Ok(Answer::Full {
        status,
        headers,
        body,
    })
}

/// The HTTP request to an endpoint (its `Host` is the pool's to set): our request id, `Accept`
/// for streams, the service's key.
fn upstream_request(
    settings: &ServiceSettings,
    request: &Forward<'_>,
) -> Result<http::Request<Full<Bytes>>, String> {
    const JSON: http::HeaderValue = http::HeaderValue::from_static("application/json");
    const EVENT_STREAM: http::HeaderValue = http::HeaderValue::from_static("text/event-stream");
    // Built in place from constants (the path in origin form, nothing parsed), not through
    // `http::request::Builder`, which converts and moves its parts on every call: all of it
    // runs per request.
    let mut upstream = http::Request::new(Full::new(request.body.clone()));
    *upstream.method_mut() = http::Method::POST;
    *upstream.uri_mut() = http::Uri::from_static(request.kind.path());
    let headers = upstream.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, JSON);
    if let Ok(id) = http::HeaderValue::from_str(request.request_id) {
        headers.insert(UPSTREAM_REQUEST_ID, id);
    }
    if request.stream {
        headers.insert(http::header::ACCEPT, EVENT_STREAM);
    }
    if let Some(key) = &settings.api_key {
        let value = http::HeaderValue::try_from(format!("Bearer {key}"))
            .map_err(|error| format!("the service's api_key cannot be sent: {error}"))?;
        headers.insert(http::header::AUTHORIZATION, value);
    }
    Ok(upstream)
}

async fn attempt_grpc(
    endpoint: &Endpoint,
    settings: &ServiceSettings,
    service: &str,
    request: &Forward<'_>,
) -> Result<Answer, GatewayError> {
    let Some(channels) = request.clients.grpc() else {
        return Err(GatewayError::UnsupportedByService {
            service: service.to_string(),
            detail: format!(
                "{endpoint} speaks gRPC and protocol conversion is disabled \
                 (PROTOCOL_CONVERSION_ENABLED=false)"
            ),
        });
    };
    let channel = channels
        .get(endpoint, settings.connect_timeout)
        .map_err(|detail| GatewayError::UpstreamConnect {
            service: service.to_string(),
            detail,
        })?;
    let answer = super::grpc::call(GrpcCall {
        channel,
        kind: request.kind,
        body: &request.body,
        request_id: request.request_id,
        service,
        first_byte_timeout: settings.first_byte_timeout,
        max_response_bytes: request.max_response_bytes,
    })
    .await?;
    let content_type = |value| (header::CONTENT_TYPE, HeaderValue::from_static(value));
    Ok(match answer {
        GrpcAnswer::Full(body) => Answer::Full {
            status: StatusCode::OK,
            headers: vec![content_type("application/json")],
            body,
        },
        GrpcAnswer::Stream(upstream) => Answer::Stream {
            status: StatusCode::OK,
            headers: vec![
                content_type("text/event-stream"),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            upstream,
        },
    })
}

/// A failed exchange: connect timeouts and refusals are told apart from broken exchanges.
fn send_error(service: &str, settings: &ServiceSettings, error: &SendError) -> GatewayError {
    if !matches!(error, SendError::Connect(_)) {
        return GatewayError::upstream_protocol(service, error_chain(error));
    }
    let timed_out = std::iter::successors(std::error::Error::source(error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::TimedOut);
    if timed_out {
        GatewayError::upstream_timeout(service, "connect", settings.connect_timeout)
    } else {
        GatewayError::UpstreamConnect {
            service: service.to_string(),
            detail: error_chain(error),
        }
    }
}

/// An error with its causes, `outer: inner: root` (hyper's own messages are terse).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    with_causes(error.to_string(), error.source())
}

/// Upstream headers the client may see: hop-by-hop and framing headers are the gateway's own.
fn forwardable_headers(headers: &http::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "connection"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "te"
                    | "trailer"
                    | "upgrade"
                    | "proxy-authenticate"
                    | "proxy-connection"
                    | "content-length"
                    | "content-encoding"
                    | "date"
                    | "server"
                    | "x-request-id"
            )
        })
        // hyper speaks `http` 1 and actix-web `http` 0.2: the same bytes, checked again.
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_str().as_bytes()).ok()?,
                HeaderValue::from_bytes(value.as_bytes()).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn with four or five arguments returns.
    fn future_size4<F, A, B, C, D, Fut>(_: F) -> usize
    where
        F: Fn(A, B, C, D) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    fn future_size5<F, A, B, C, D, E, Fut>(_: F) -> usize
    where
        F: Fn(A, B, C, D, E) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every request's future holds an attempt's state; the gRPC call's (~4 KB of tonic state)
    /// must stay behind a box, or HTTP requests carry and move it too.
    #[test]
    fn an_http_attempt_does_not_carry_the_grpc_state() {
        let http_attempt = future_size5(super::attempt_once);
        let grpc_attempt = future_size4(super::attempt_grpc);
        assert!(
            http_attempt * 2 < grpc_attempt,
            "attempt_once's future is {http_attempt} bytes, attempt_grpc's {grpc_attempt}"
        );
    }
}
