//! How the gateway treats each gRPC status an upstream answers with, in one exhaustive match.

use actix_web::http::StatusCode;
use tonic::Code;

/// How the gateway treats one gRPC status: the HTTP status it answers with, whether the
/// request itself is at fault, whether another endpoint may succeed, and OpenAI's `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GrpcClass {
    pub status: StatusCode,
    pub blames_client: bool,
    pub retryable: bool,
    pub code: &'static str,
}

impl GrpcClass {
    const fn new(
        status: StatusCode,
        blames_client: bool,
        retryable: bool,
        code: &'static str,
    ) -> Self {
        GrpcClass {
            status,
            blames_client,
            retryable,
            code,
        }
    }
}

/// INVALID_ARGUMENT 400 and NOT_FOUND 404 describe the request (the client must change it, no
/// other endpoint would answer differently); RESOURCE_EXHAUSTED 429, UNAVAILABLE 503 and
/// DEADLINE_EXCEEDED 504 are retried elsewhere; every other status is a 502, retried unless it
/// is a credential or precondition every endpoint shares. One match lists every code, so a new
/// one cannot fall through.
pub(super) fn grpc_class(code: Code) -> GrpcClass {
    use StatusCode as S;
    match code {
        Code::InvalidArgument => GrpcClass::new(S::BAD_REQUEST, true, false, "invalid_request"),
        Code::NotFound => GrpcClass::new(S::NOT_FOUND, true, false, "not_found"),
        Code::ResourceExhausted => {
            GrpcClass::new(S::TOO_MANY_REQUESTS, false, true, "upstream_overloaded")
        }
        Code::Unavailable => {
            GrpcClass::new(S::SERVICE_UNAVAILABLE, false, true, "upstream_unavailable")
        }
        Code::DeadlineExceeded => {
            GrpcClass::new(S::GATEWAY_TIMEOUT, false, true, "upstream_timeout")
        }
        Code::Cancelled
        | Code::Unknown
        | Code::Aborted
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => GrpcClass::new(S::BAD_GATEWAY, false, true, "upstream_error"),
        Code::Ok
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unauthenticated => GrpcClass::new(S::BAD_GATEWAY, false, false, "upstream_error"),
    }
}

pub(super) fn describe_grpc(service: &str, code: Code, message: &str) -> String {
    match code {
        Code::InvalidArgument | Code::NotFound => {
            format!("Service '{service}' rejected the request: {message}")
        }
        Code::Unavailable => format!("Service '{service}' is unavailable (gRPC): {message}"),
        Code::DeadlineExceeded => {
            format!("Service '{service}' did not answer before the deadline: {message}")
        }
        other => format!(
            "Service '{service}' failed with gRPC status {}: {message}",
            other.description()
        ),
    }
}
