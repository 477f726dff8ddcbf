//! Rate-limit admission for the pipeline: which buckets a request meets, and the decision as
//! OpenAI's `x-ratelimit-*` headers or a 429.

use std::fmt::{self, Write as _};
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actors::keys::ApiKey;
use actors::limits::{Admission, Decision, Gcra, LimitError, LimitKind, RateLimiter};
use actors::limits::{ConcurrencyLimiter, ConcurrencyPermit, TokenReservation};

use crate::error::GatewayError;

/// In-process buckets count in nanoseconds.
pub(crate) const TICKS_PER_SECOND: i64 = 1_000_000_000;

/// The limits every key meets, with its own `rpm`/`tpm` taking precedence.
#[derive(Clone)]
pub struct RateLimits {
    pub limiter: RateLimiter,
    /// Requests in flight per key (keys with `max_concurrency`), per process.
    pub concurrency: std::sync::Arc<ConcurrencyLimiter>,
    pub requests_per_minute: u64,
    pub burst: u64,
    pub tokens_per_minute: Option<u64>,
    /// `gateway_rate_limit_refusals_total{scope, limit}`: every 429 decided here counts.
    pub refusals: prometheus::IntCounterVec,
}

/// What an allowed request carries on: its headers and its token charge.
pub struct Admitted {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub tokens: Option<TokenReservation>,
    /// Held until the request is billed (the end of a stream).
    pub in_flight: Option<ConcurrencyPermit>,
}

impl RateLimits {
    /// Whether `key`'s admission needs the request's token estimate.
    pub fn limits_tokens(&self, key: &ApiKey) -> bool {
        key.tpm.is_some() || self.tokens_per_minute.is_some()
    }

    /// Decides one request of `key` that may use up to `worst_case` tokens (`None`: the
    /// request costs no tokens, as a cache hit, and meets the request bucket only).
    pub async fn admit(
        &self,
        key: &ApiKey,
        worst_case: Option<i64>,
    ) -> Result<Admitted, GatewayError> {
        let decided = self.admit_key(key, worst_case).await;
        if let Err(GatewayError::RateLimited { kind, .. }) = &decided {
            self.count_refusal("key", *kind);
        }
        decided
    }

    /// Decides one request of `subject` against a plain requests-per-minute bucket; `scope`
    /// (`login`, `service`) labels the refusals.
    pub async fn admit_subject(
        &self,
        scope: &'static str,
        subject: &str,
        per_minute: u64,
        burst: u64,
    ) -> Result<(), GatewayError> {
        let decided = admit_subject(&self.limiter, subject, per_minute, burst).await;
        if let Err(GatewayError::RateLimited { kind, .. }) = &decided {
            self.count_refusal(scope, *kind);
        }
        decided
    }

    fn count_refusal(&self, scope: &str, kind: LimitKind) {
        let limit = match kind {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        };
        self.refusals.with_label_values(&[scope, limit]).inc();
    }

    async fn admit_key(
        &self,
        key: &ApiKey,
        worst_case: Option<i64>,
    ) -> Result<Admitted, GatewayError> {
        let rpm = key
            .rpm
            .and_then(|r| u64::try_from(r).ok())
            .unwrap_or(self.requests_per_minute);
        let requests = Gcra::per_minute(rpm, self.burst, TICKS_PER_SECOND);
        let tpm = key
            .tpm
            .and_then(|t| u64::try_from(t).ok())
            .or(self.tokens_per_minute)
            .filter(|_| worst_case.is_some());
        let tokens = tpm
            .and_then(|tpm| Gcra::per_minute(tpm, tpm, TICKS_PER_SECOND))
            .map(|gcra| (gcra, worst_case.unwrap_or(0).max(1)));
        if key.rpm == Some(0) || (worst_case.is_some() && key.tpm == Some(0)) {
            // A zero limit allows nothing; a bucket cannot express it.
            let kind = if key.rpm == Some(0) {
                LimitKind::Requests
            } else {
                LimitKind::Tokens
            };
            return Err(GatewayError::RateLimited {
                kind,
                message: "This API key's rate limit is 0: it may not make requests.".into(),
                retry_after: Duration::from_secs(60),
                headers: Vec::new(),
            });
        }
        let in_flight = match key.max_concurrency {
            Some(max) => Some(self.concurrency.try_acquire(key.id, max).ok_or_else(|| {
                GatewayError::RateLimited {
                    kind: LimitKind::Requests,
                    message: format!(
                        "Too many concurrent requests: this API key may have {max} in flight."
                    ),
                    retry_after: Duration::from_secs(1),
                    headers: Vec::new(),
                }
            })?),
            None => None,
        };
        // Every admission names its key's bucket: written on the stack, not allocated.
        let mut subject = StackText::default();
        let _ = write!(subject, "key:{}", key.id);
        let admission = Admission {
            subject: subject.as_str(),
            requests,
            tokens,
        };
        let (decision, reservation) =
            self.limiter
                .admit(admission)
                .await
                .map_err(|LimitError::Unavailable(error)| {
                    GatewayError::RateLimiterUnavailable(error)
                })?;
        let headers = headers(&decision);
        match decision.denied {
            None => Ok(Admitted {
                headers,
                tokens: reservation,
                in_flight,
            }),
            Some(kind) => Err(refusal(kind, &decision, tokens, headers)),
        }
    }
}

/// Decides one request of `subject` against a plain requests-per-minute bucket (login by IP,
/// a whole service); [`RateLimits::admit_subject`] also counts the refusal.
pub(crate) async fn admit_subject(
    limiter: &RateLimiter,
    subject: &str,
    per_minute: u64,
    burst: u64,
) -> Result<(), GatewayError> {
    let admission = Admission {
        subject,
        requests: Gcra::per_minute(per_minute, burst, TICKS_PER_SECOND),
        tokens: None,
    };
    let (decision, _) = limiter
        .admit(admission)
        .await
        .map_err(|LimitError::Unavailable(error)| GatewayError::RateLimiterUnavailable(error))?;
    match decision.denied {
        None => Ok(()),
        Some(kind) => Err(refusal(kind, &decision, None, headers(&decision))),
    }
}

fn refusal(
    kind: LimitKind,
    decision: &Decision,
    tokens: Option<(Gcra, i64)>,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> GatewayError {
    let wait = format_duration(decision.retry_after);
    let message = match (kind, tokens) {
        (LimitKind::Tokens, Some((gcra, cost))) if cost > gcra.capacity => format!(
            "Request too large: it may use {cost} tokens, more than the limit of {} tokens per minute. Lower max_tokens or the prompt.",
            gcra.capacity
        ),
        (LimitKind::Tokens, _) => {
            format!("Rate limit reached for tokens per minute. Please try again in {wait}.")
        }
        (LimitKind::Requests, _) => {
            format!("Rate limit reached for requests per minute. Please try again in {wait}.")
        }
    };
    GatewayError::RateLimited {
        kind,
        message,
        retry_after: decision.retry_after,
        headers,
    }
}

/// OpenAI's header names: limit, remaining and reset, for requests and for tokens.
const REQUEST_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKEN_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// OpenAI's six headers, for the buckets the request met. Every request with limits on pays
/// for these, so names are constants and numbers are written without `format!`.
fn headers(decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::with_capacity(6);
    for (names, status) in [
        (REQUEST_HEADERS, decision.requests),
        (TOKEN_HEADERS, decision.tokens),
    ] {
        let Some(status) = status else {
            continue;
        };
        let [limit, remaining, reset] = names;
        headers.push((limit, HeaderValue::from(status.limit)));
        headers.push((remaining, HeaderValue::from(status.remaining)));
        let mut text = StackText::default();
        if write_duration(&mut text, status.reset).is_ok() {
            if let Ok(value) = HeaderValue::from_str(text.as_str()) {
                headers.push((reset, value));
            }
        }
    }
    headers
}

/// `20ms`, `1.5s`, `6m0s`: the shape OpenAI's reset headers use.
pub fn format_duration(duration: Duration) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write_duration(&mut text, duration);
    text
}

/// [`format_duration`] into any writer: the request path writes it on the stack.
fn write_duration(out: &mut impl fmt::Write, duration: Duration) -> fmt::Result {
    let millis = duration.as_millis();
    if millis < 1_000 {
        return write!(out, "{millis}ms");
    }
    let minutes = millis / 60_000;
    let rest = millis % 60_000;
    if minutes > 0 {
        write!(out, "{minutes}m")?;
    }
    let (seconds, mut fraction) = (rest / 1_000, rest % 1_000);
    if fraction == 0 {
        return write!(out, "{seconds}s");
    }
    // Milliseconds as a decimal fraction without trailing zeros: 250 → `.25`, 5 → `.005`.
    let mut width = 3;
    while fraction % 10 == 0 {
        fraction /= 10;
        width -= 1;
    }
    write!(out, "{seconds}.{fraction:0width$}s")
}

/// Short text (a bucket's subject, a header value) written on the stack; writing more than
/// it holds fails.
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_text_holds_a_key_subject_and_refuses_overflow() {
        let mut text = StackText::default();
        assert!(write!(text, "key:{}", i64::MIN).is_ok());
        assert_eq!(text.as_str(), "key:-9223372036854775808");
        assert!(write!(text, "{}", "x".repeat(16)).is_err());
    }

    #[test]
    fn durations_read_like_openai_headers() {
        assert_eq!(format_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(6)), "6s");
        assert_eq!(format_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_duration(Duration::from_millis(61_250)), "1m1.25s");
        assert_eq!(format_duration(Duration::from_millis(2_005)), "2.005s");
        assert_eq!(format_duration(Duration::from_millis(59_990)), "59.99s");
        assert_eq!(format_duration(Duration::from_millis(120_100)), "2m0.1s");
        assert_eq!(format_duration(Duration::from_millis(999)), "999ms");
    }
}
