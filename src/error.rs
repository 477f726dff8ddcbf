//! The one error type of the HTTP edge and its single mapping to OpenAI-shaped responses.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Everything that can go wrong while serving a request. `status_code`, `error_type`, `code`
/// and `metric_label` match every variant without a wildcard, so a new variant must choose.
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
    #[error("Service '{service}' did not answer within {}s ({phase}).", .after.as_secs_f64())]
    UpstreamTimeout {
        service: String,
        phase: &'static str,
        after: Duration,
    },
    #[error("The gateway is overloaded; retry shortly.")]
    Overloaded,
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
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidJson(_)
            | GatewayError::MissingParameter(_)
            | GatewayError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::ModelNotFound(_) | GatewayError::RouteNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::NoHealthyEndpoint { .. } | GatewayError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
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
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. } => "invalid_request_error",
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamTimeout { .. } => "upstream_error",
            GatewayError::Overloaded | GatewayError::Internal(_) => "server_error",
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
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::RouteNotFound { .. } => "not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::NoHealthyEndpoint { .. } => "no_healthy_upstream",
            GatewayError::UpstreamConnect { .. } => "upstream_connect_error",
            GatewayError::UpstreamStatus { .. } => "upstream_error",
            GatewayError::UpstreamProtocol { .. } => "upstream_protocol_error",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::Overloaded => "overloaded",
            GatewayError::Internal(_) => "internal_error",
        }
    }

    pub fn source_kind(&self) -> ErrorSource {
        match self {
            GatewayError::InvalidJson(_)
            | GatewayError::MissingParameter(_)
            | GatewayError::InvalidParameter { .. }
            | GatewayError::UnsupportedMediaType(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. } => ErrorSource::Client,
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamTimeout { .. } => ErrorSource::Upstream,
            GatewayError::Overloaded | GatewayError::Internal(_) => ErrorSource::Gateway,
        }
    }

    /// Whether another endpoint may succeed where this attempt failed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamConnect { .. }
                | GatewayError::UpstreamStatus { .. }
                | GatewayError::UpstreamTimeout { .. }
                | GatewayError::UpstreamProtocol { .. }
        )
    }

    /// The OpenAI-shaped body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
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
        match self.source_kind() {
            ErrorSource::Client => tracing::debug!(code = self.code(), "{self}"),
            ErrorSource::Upstream => tracing::warn!(code = self.code(), "{self}"),
            ErrorSource::Gateway => tracing::error!(code = self.code(), "{self}"),
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        HttpResponse::build(self.status())
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .body(body)
    }
}
