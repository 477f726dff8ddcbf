//! The one error type of the HTTP edge and its single mapping to OpenAI-shaped responses.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use actors::limits::LimitKind;
use serde::Serialize;
use tonic::Code;

mod grpc;
use grpc::{describe_grpc, grpc_class};

/// Everything that can go wrong while serving a request. `status`, `error_type`, `code`,
/// `source_kind` and `is_retryable` match every variant without a wildcard, so a new variant
/// must choose; gRPC statuses are classified once, in `grpc::grpc_class`.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidJson(String),
    #[error("You must provide the '{0}' parameter.")]
    MissingParameter(&'static str),
    #[error("Invalid value for '{param}': {message}")]
    InvalidParameter {
        param: &'static str,
        message: String,
    },
    #[error("Unsupported content type {0:?}; send application/json.")]
    UnsupportedMediaType(String),
    #[error("The request body exceeds the limit of {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("The model '{0}' does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("Unknown route {method} {path}.")]
    RouteNotFound { method: String, path: String },
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    #[error("No healthy endpoint is available for service '{service}'.")]
    NoHealthyEndpoint { service: String },
    #[error("Could not connect to service '{service}': {detail}")]
    UpstreamConnect { service: String, detail: String },
    #[error("Service '{service}' answered with HTTP {status}: {detail}")]
    UpstreamStatus {
        service: String,
        status: u16,
        detail: String,
    },
    #[error("Service '{service}' sent an invalid response: {detail}")]
    UpstreamProtocol { service: String, detail: String },
    /// The upstream answered more than `server.max_response_bytes`: the request asked for more
    /// than the gateway buffers. `read` bytes had arrived when the gateway stopped reading.
    #[error("Service '{service}' answered more than the gateway's limit of {limit} bytes.")]
    UpstreamResponseTooLarge {
        service: String,
        limit: usize,
        read: usize,
    },
    #[error("Service '{service}' did not answer within {}s ({phase}).", .after.as_secs_f64())]
    UpstreamTimeout {
        service: String,
        phase: &'static str,
        after: Duration,
    },
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("This API key may not use the model '{0}'.")]
    ModelNotAllowed(String),
    #[error("This operation needs an administrator.")]
    AdminRequired,
    #[error("{0}")]
    QuotaExceeded(String),
    /// A request or token rate limit refused the request; OpenAI's 429 with `retry-after`.
    #[error("{message}")]
    RateLimited {
        kind: LimitKind,
        message: String,
        retry_after: Duration,
        /// The `x-ratelimit-*` headers of the refusing decision.
        headers: Vec<(header::HeaderName, header::HeaderValue)>,
    },
    /// Redis failed and `RATE_LIMIT_REDIS_FAILURE=deny`.
    #[error("Rate limits cannot be checked right now; retry shortly. ({0})")]
    RateLimiterUnavailable(String),
    /// The shared budget ledger (Redis) could not decide a budgeted request and
    /// `RATE_LIMIT_REDIS_FAILURE=deny`: no replica spends a shared budget on its own.
    #[error("The key's token budget cannot be checked right now; retry shortly. ({0})")]
    BudgetUnavailable(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("Usage recording is backed up; retry shortly. ({0})")]
    UsageBacklog(String),
    #[error("The gateway's database is unavailable: {0}")]
    StoreUnavailable(String),
    /// A gRPC upstream answered with a non-OK status, or could not be reached (UNAVAILABLE).
    #[error("{}", describe_grpc(.service, *.code, .message))]
    UpstreamGrpc {
        service: String,
        code: Code,
        message: String,
    },
    /// The request cannot be converted for the service's protocol (an API the gRPC contract
    /// lacks, or protocol conversion switched off).
    #[error("Service '{service}' cannot serve this request: {detail}")]
    UnsupportedByService { service: String, detail: String },
    #[error("The gateway is overloaded; retry shortly.")]
    Overloaded,
    /// A WebSocket already runs its maximum of concurrent requests.
    #[error(
        "This connection already runs {limit} requests; wait for one to finish or cancel one."
    )]
    TooManyConcurrentRequests { limit: usize },
    /// A cap on WebSocket sessions or tickets (per key or in total), or the ticket rate, is
    /// reached: 429 with `retry-after`.
    #[error("{message}")]
    CapReached {
        code: &'static str,
        message: String,
        retry_after: Duration,
    },
    /// Every password-hashing slot stayed busy for `auth.login_wait_ms`: 503 with `retry-after`.
    #[error("Too many logins are being checked right now; retry shortly.")]
    LoginBusy { retry_after: Duration },
    /// The request body did not arrive within `server.request_body_timeout_secs`.
    #[error("The request body did not arrive within {}s.", .after.as_secs())]
    RequestBodyTimeout { after: Duration },
    #[error("Internal gateway error: {0}")]
    Internal(String),
}

/// Who caused an error, which decides retries and log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Gateway,
}

impl GatewayError {
    /// An upstream that did not answer in time, at `phase` ("connect", "first byte", …).
    pub fn upstream_timeout(service: &str, phase: &'static str, after: Duration) -> Self {
        GatewayError::UpstreamTimeout {
            service: service.to_string(),
            phase,
            after,
        }
    }

    /// An upstream whose answer broke the protocol or a limit.
    pub fn upstream_protocol(service: &str, detail: impl Into<String>) -> Self {
        GatewayError::UpstreamProtocol {
            service: service.to_string(),
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidJson(_)
            | GatewayError::MissingParameter(_)
            | GatewayError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestBodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::ModelNotFound(_) | GatewayError::RouteNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::ModelNotAllowed(_) | GatewayError::AdminRequired => StatusCode::FORBIDDEN,
            GatewayError::QuotaExceeded(_)
            | GatewayError::TooManyConcurrentRequests { .. }
            | GatewayError::CapReached { .. }
            | GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::ResourceNotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::Overloaded
            | GatewayError::LoginBusy { .. }
            | GatewayError::UsageBacklog(_)
            | GatewayError::RateLimiterUnavailable(_)
            | GatewayError::BudgetUnavailable(_)
            | GatewayError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamGrpc { code, .. } => grpc_class(*code).status,
            GatewayError::UnsupportedByService { .. } => StatusCode::NOT_IMPLEMENTED,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::InvalidJson(_)
            | GatewayError::MissingParameter(_)
            | GatewayError::InvalidParameter { .. }
            | GatewayError::UnsupportedMediaType(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::RequestBodyTimeout { .. }
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::ResourceNotFound(_)
            | GatewayError::UnsupportedByService { .. } => "invalid_request_error",
            GatewayError::UpstreamGrpc { code, .. } => {
                if grpc_class(*code).blames_client {
                    "invalid_request_error"
                } else {
                    "upstream_error"
                }
            }
            GatewayError::Unauthorized { .. } => "authentication_error",
            GatewayError::ModelNotAllowed(_) | GatewayError::AdminRequired => "permission_error",
            GatewayError::QuotaExceeded(_) => "insufficient_quota",
            GatewayError::TooManyConcurrentRequests { .. } | GatewayError::CapReached { .. } => {
                "rate_limit_error"
            }
            GatewayError::RateLimited { kind, .. } => match kind {
                LimitKind::Requests => "requests",
                LimitKind::Tokens => "tokens",
            },
            GatewayError::UsageBacklog(_)
            | GatewayError::StoreUnavailable(_)
            | GatewayError::RateLimiterUnavailable(_)
            | GatewayError::BudgetUnavailable(_) => "server_error",
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamResponseTooLarge { .. }
            | GatewayError::UpstreamTimeout { .. } => "upstream_error",
            GatewayError::Overloaded
            | GatewayError::LoginBusy { .. }
            | GatewayError::Internal(_) => "server_error",
        }
    }

    /// OpenAI's `error.code`, also the low-cardinality metric label.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidJson(_) => "invalid_json",
            GatewayError::MissingParameter(_) => "missing_required_parameter",
            GatewayError::InvalidParameter { .. } => "invalid_parameter",
            GatewayError::UnsupportedMediaType(_) => "unsupported_media_type",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::RequestBodyTimeout { .. } => "request_body_timeout",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::RouteNotFound { .. } => "not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::Unauthorized { code, .. } => code,
            GatewayError::ModelNotAllowed(_) => "model_not_allowed",
            GatewayError::AdminRequired => "insufficient_permissions",
            GatewayError::QuotaExceeded(_) => "insufficient_quota",
            GatewayError::TooManyConcurrentRequests { .. } => "too_many_concurrent_requests",
            GatewayError::CapReached { code, .. } => code,
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::RateLimiterUnavailable(_) => "rate_limiter_unavailable",
            GatewayError::BudgetUnavailable(_) => "budget_unavailable",
            GatewayError::ResourceNotFound(_) => "not_found",
            GatewayError::UsageBacklog(_) => "usage_backlog",
            GatewayError::StoreUnavailable(_) => "database_unavailable",
            GatewayError::NoHealthyEndpoint { .. } => "no_healthy_upstream",
            GatewayError::UpstreamConnect { .. } => "upstream_connect_error",
            GatewayError::UpstreamStatus { .. } => "upstream_error",
            GatewayError::UpstreamProtocol { .. } => "upstream_protocol_error",
            GatewayError::UpstreamResponseTooLarge { .. } => "upstream_response_too_large",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamGrpc { code, .. } => grpc_class(*code).code,
            GatewayError::UnsupportedByService { .. } => "unsupported_by_service",
            GatewayError::Overloaded => "overloaded",
            GatewayError::LoginBusy { .. } => "login_busy",
            GatewayError::Internal(_) => "internal_error",
        }
    }

    /// Logs an error answered to a request: client mistakes at debug, upstream failures as
    /// warnings, the gateway's own as errors. The request-id middleware calls this for every
    /// REST answer that carries a `GatewayError`.
    pub fn log(&self, request_id: &str) {
        let code = self.code();
        match self.source_kind() {
            ErrorSource::Client => tracing::debug!(request_id, code, "{self}"),
            ErrorSource::Upstream => tracing::warn!(request_id, code, "{self}"),
            ErrorSource::Gateway => tracing::error!(request_id, code, "{self}"),
        }
    }

    pub fn source_kind(&self) -> ErrorSource {
        match self {
            GatewayError::InvalidJson(_)
            | GatewayError::MissingParameter(_)
            | GatewayError::InvalidParameter { .. }
            | GatewayError::UnsupportedMediaType(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::RequestBodyTimeout { .. }
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::Unauthorized { .. }
            | GatewayError::ModelNotAllowed(_)
            | GatewayError::AdminRequired
            | GatewayError::QuotaExceeded(_)
            | GatewayError::TooManyConcurrentRequests { .. }
            | GatewayError::CapReached { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::ResourceNotFound(_)
            | GatewayError::UnsupportedByService { .. } => ErrorSource::Client,
            GatewayError::UpstreamGrpc { code, .. } => {
                if grpc_class(*code).blames_client {
                    ErrorSource::Client
                } else {
                    ErrorSource::Upstream
                }
            }
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamResponseTooLarge { .. }
            | GatewayError::UpstreamTimeout { .. } => ErrorSource::Upstream,
            GatewayError::Overloaded
            | GatewayError::LoginBusy { .. }
            | GatewayError::UsageBacklog(_)
            | GatewayError::StoreUnavailable(_)
            | GatewayError::RateLimiterUnavailable(_)
            | GatewayError::BudgetUnavailable(_)
            | GatewayError::Internal(_) => ErrorSource::Gateway,
        }
    }

    /// Whether another endpoint may succeed where this attempt failed. Such a failure also
    /// counts against the endpoint's health; an error the request itself caused does not.
    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayError::UpstreamGrpc { code, .. } => grpc_class(*code).retryable,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. } => true,
            GatewayError::InvalidJson(_)
            | GatewayError::MissingParameter(_)
            | GatewayError::InvalidParameter { .. }
            | GatewayError::UnsupportedMediaType(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::UpstreamResponseTooLarge { .. }
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::Unauthorized { .. }
            | GatewayError::ModelNotAllowed(_)
            | GatewayError::AdminRequired
            | GatewayError::QuotaExceeded(_)
            | GatewayError::RateLimited { .. }
            | GatewayError::RateLimiterUnavailable(_)
            | GatewayError::BudgetUnavailable(_)
            | GatewayError::ResourceNotFound(_)
            | GatewayError::UsageBacklog(_)
            | GatewayError::StoreUnavailable(_)
            | GatewayError::UnsupportedByService { .. }
            | GatewayError::Overloaded
            | GatewayError::TooManyConcurrentRequests { .. }
            | GatewayError::CapReached { .. }
            | GatewayError::LoginBusy { .. }
            | GatewayError::RequestBodyTimeout { .. }
            | GatewayError::Internal(_) => false,
        }
    }

    /// What a client is told. Details a client must not see (a database's error text, an
    /// upstream's error body, addresses and transport errors) are left out: the message is
    /// stable, and the full one goes to the log with the request id (`log`), which REST answers
    /// also name in the message (`request_id::RequestIds`).
    pub fn public_message(&self) -> String {
        match self {
            GatewayError::UpstreamConnect { service, .. } => {
                format!("Could not connect to service '{service}'.")
            }
            GatewayError::UpstreamStatus {
                service, status, ..
            } => format!("Service '{service}' answered with HTTP {status}."),
            GatewayError::UpstreamProtocol { service, .. } => {
                format!("Service '{service}' sent an invalid response.")
            }
            GatewayError::UpstreamGrpc { service, code, .. }
                if !grpc_class(*code).blames_client =>
            {
                format!(
                    "Service '{service}' failed with gRPC status {}.",
                    code.description()
                )
            }
            GatewayError::RateLimiterUnavailable(_) => {
                "Rate limits cannot be checked right now; retry shortly.".into()
            }
            GatewayError::UsageBacklog(_) => "Usage recording is backed up; retry shortly.".into(),
            GatewayError::StoreUnavailable(_) => {
                "The gateway's database is unavailable; retry shortly.".into()
            }
            GatewayError::BudgetUnavailable(_) => {
                "The key's token budget cannot be checked right now; retry shortly.".into()
            }
            GatewayError::Internal(_) => "Internal gateway error.".into(),
            // `hides_detail` decides, exhaustively; every other text is made for the client.
            _ => self.to_string(),
        }
    }

    /// Whether `public_message` leaves details out, so the client needs the request id to ask.
    /// Exhaustive, like the matches above: a new variant must choose whether its text is shown.
    pub fn hides_detail(&self) -> bool {
        match self {
            GatewayError::UpstreamGrpc { code, .. } => !grpc_class(*code).blames_client,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::RateLimiterUnavailable(_)
            | GatewayError::BudgetUnavailable(_)
            | GatewayError::UsageBacklog(_)
            | GatewayError::StoreUnavailable(_)
            | GatewayError::Internal(_) => true,
            GatewayError::InvalidJson(_)
            | GatewayError::MissingParameter(_)
            | GatewayError::InvalidParameter { .. }
            | GatewayError::UnsupportedMediaType(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::UpstreamResponseTooLarge { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::Unauthorized { .. }
            | GatewayError::ModelNotAllowed(_)
            | GatewayError::AdminRequired
            | GatewayError::QuotaExceeded(_)
            | GatewayError::RateLimited { .. }
            | GatewayError::ResourceNotFound(_)
            | GatewayError::UnsupportedByService { .. }
            | GatewayError::Overloaded
            | GatewayError::TooManyConcurrentRequests { .. }
            | GatewayError::CapReached { .. }
            | GatewayError::LoginBusy { .. }
            | GatewayError::RequestBodyTimeout { .. } => false,
        }
    }

    /// `retry-after` for a refused client (throttles and caps): whole seconds, rounded up,
    /// at least 1.
    pub fn retry_after_header(&self) -> Option<String> {
        match self {
            GatewayError::RateLimited { retry_after, .. }
            | GatewayError::CapReached { retry_after, .. }
            | GatewayError::LoginBusy { retry_after } => Some(retry_after_secs(*retry_after)),
            _ => None,
        }
    }

    /// The OpenAI-shaped body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.public_message(),
                r#type: self.error_type(),
                param: match self {
                    GatewayError::MissingParameter(param) => Some(param),
                    GatewayError::InvalidParameter { param, .. } => Some(param),
                    _ => None,
                },
                code: self.code(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    pub r#type: &'static str,
    pub param: Option<&'static str>,
    pub code: &'static str,
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = HttpResponse::build(self.status());
        response.insert_header((header::CONTENT_TYPE, "application/json"));
        if let Some(seconds) = self.retry_after_header() {
            response.insert_header((header::RETRY_AFTER, seconds));
        }
        if let GatewayError::RateLimited { headers, .. } = self {
            for (name, value) in headers {
                response.insert_header((name.clone(), value.clone()));
            }
        }
        if let GatewayError::RequestBodyTimeout { .. } = self {
            // The rest of the body may still be on its way: the connection cannot be reused.
            response.force_close();
        }
        response.body(body)
    }
}

/// Whole seconds, rounded up: a client that waits this long is let through.
fn retry_after_secs(retry_after: Duration) -> String {
    retry_after.as_millis().div_ceil(1000).max(1).to_string()
}

/// `text` followed by each cause in `source`'s chain that it does not already say, as
/// `text: cause: root cause` (transport errors keep the useful part in their causes).
pub fn with_causes(
    mut text: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(error) = source {
        let cause = error.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = error.source();
    }
    text
}

#[cfg(test)]
mod tests;
