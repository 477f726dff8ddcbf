//! The error mapping: gRPC statuses, unsupported requests and rate-limit answers.

use super::*;

fn check(code: Code, status: u16, error_type: &str, retryable: bool) {
    let error = GatewayError::UpstreamGrpc {
        service: "pm".into(),
        code,
        message: "why".into(),
    };
    assert_eq!(
        (
            error.status().as_u16(),
            error.error_type(),
            error.is_retryable()
        ),
        (status, error_type, retryable),
        "{code:?}"
    );
    assert!(error.to_string().contains("'pm'") && error.to_string().contains("why"));
}

#[test]
fn grpc_statuses_map_to_http() {
    check(Code::InvalidArgument, 400, "invalid_request_error", false);
    check(Code::NotFound, 404, "invalid_request_error", false);
    check(Code::ResourceExhausted, 429, "upstream_error", true);
    check(Code::Unavailable, 503, "upstream_error", true);
    check(Code::DeadlineExceeded, 504, "upstream_error", true);
    check(Code::Internal, 502, "upstream_error", true);
    check(Code::Unknown, 502, "upstream_error", true);
    check(Code::PermissionDenied, 502, "upstream_error", false);
    check(Code::FailedPrecondition, 502, "upstream_error", false);
}

#[test]
fn unsupported_requests_are_501_and_not_retried() {
    let error = GatewayError::UnsupportedByService {
        service: "pm".into(),
        detail: "no".into(),
    };
    assert_eq!(error.status().as_u16(), 501);
    assert_eq!(error.source_kind(), ErrorSource::Client);
    assert!(!error.is_retryable());
}

#[test]
fn rate_limits_answer_like_openai_with_retry_after() {
    let error = GatewayError::RateLimited {
        kind: LimitKind::Tokens,
        message: "Rate limit reached".into(),
        retry_after: Duration::from_millis(1_200),
        headers: vec![(
            header::HeaderName::from_static("x-ratelimit-remaining-tokens"),
            header::HeaderValue::from_static("0"),
        )],
    };
    assert_eq!(
        (error.status().as_u16(), error.error_type(), error.code()),
        (429, "tokens", "rate_limit_exceeded")
    );
    assert_eq!(error.source_kind(), ErrorSource::Client);
    assert!(!error.is_retryable());
    let response = error.error_response();
    assert_eq!(
        response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.as_bytes()),
        Some(&b"2"[..])
    );
    assert!(response
        .headers()
        .contains_key("x-ratelimit-remaining-tokens"));
    let unavailable = GatewayError::RateLimiterUnavailable("down".into());
    assert_eq!(unavailable.status().as_u16(), 503);
}

/// What `hides_detail` hides, `public_message` leaves out: no variant's detail reaches a client.
#[test]
fn hidden_details_stay_out_of_public_messages() {
    let secret = "10.9.8.7:5432 password=hunter2";
    let errors = [
        GatewayError::StoreUnavailable(secret.into()),
        GatewayError::Internal(secret.into()),
        GatewayError::RateLimiterUnavailable(secret.into()),
        GatewayError::BudgetUnavailable(secret.into()),
        GatewayError::UsageBacklog(secret.into()),
        GatewayError::UpstreamConnect {
            service: "s".into(),
            detail: secret.into(),
        },
        GatewayError::UpstreamProtocol {
            service: "s".into(),
            detail: secret.into(),
        },
        GatewayError::UpstreamStatus {
            service: "s".into(),
            status: 500,
            detail: secret.into(),
        },
        GatewayError::UpstreamGrpc {
            service: "s".into(),
            code: tonic::Code::Internal,
            message: secret.into(),
        },
    ];
    for error in errors {
        assert!(error.hides_detail(), "{error:?}");
        assert!(!error.public_message().contains("hunter2"), "{error:?}");
        assert!(
            error.to_string().contains("hunter2"),
            "the log keeps {error:?}"
        );
    }
    let client = GatewayError::UpstreamGrpc {
        service: "s".into(),
        code: tonic::Code::InvalidArgument,
        message: "prompt too long".into(),
    };
    assert!(!client.hides_detail());
    assert!(client.public_message().contains("prompt too long"));
}
