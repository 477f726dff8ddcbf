//! The front door's throttles, always on whatever `rate_limit.enabled` says: failed
//! authentications per client, and logins per client IP and per user name with a bound on the
//! password hashes running at once.
//!
//! A client that keeps presenting keys that do not exist costs a database query each (the key
//! cache only knows what it has seen): past `auth.max_failures_per_minute` failures its next
//! lookups are refused with 429 before they reach the database. Keys it holds that are live and
//! cached still work: the throttle stops guessing, not a client that also made mistakes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::limits::{Admission, Gcra, LocalLimiter, RateLimiter};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::GatewayError;
use crate::pipeline::limits::{admit_subject, TICKS_PER_SECOND};

/// Why an authentication failed, as `gateway_auth_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not the shape of any key this gateway issues: refused without a lookup.
    Malformed,
    Unknown,
    Revoked,
    Expired,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Failure::Malformed => "malformed",
            Failure::Unknown => "unknown",
            Failure::Revoked => "revoked",
            Failure::Expired => "expired",
        }
    }
}

/// A login's end, as `gateway_logins_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Succeeded,
    Failed,
    /// Over the per-IP or per-name rate.
    Throttled,
    /// No hashing slot within `auth.login_wait_ms`.
    Busy,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Succeeded => "succeeded",
            LoginOutcome::Failed => "failed",
            LoginOutcome::Throttled => "throttled",
            LoginOutcome::Busy => "busy",
        }
    }
}

/// What the guard is configured with (`auth.*`, `rate_limit.login_requests_per_minute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    /// Failed authentications a client may make per minute (and in a burst); 0 turns the
    /// throttle off.
    pub max_failures_per_minute: u64,
    /// Logins per minute per client IP, and per user name.
    pub logins_per_minute: u64,
    /// Password hashes (Argon2, ~19 MiB each) running at once.
    pub login_max_concurrent: usize,
    /// How long a login waits for a hashing slot before 503 `login_busy`.
    pub login_wait: Duration,
}

/// The throttles. Cheap to consult: a failure bucket is read only on the way to the database,
/// and written only when an authentication fails.
pub struct AuthGuard {
    /// Login buckets: the rate limiter's (shared through Redis when it is) or one of the
    /// guard's own while rate limits are off.
    logins: RateLimiter,
    /// Failure buckets: in-process, since what they protect (this replica's database pool)
    /// is too.
    failures: Arc<LocalLimiter>,
    failure_rate: Option<Gcra>,
    logins_per_minute: u64,
    hashing: Semaphore,
    login_wait: Duration,
    failures_total: IntCounterVec,
    logins_total: IntCounterVec,
    /// `gateway_rate_limit_refusals_total`: throttled logins count as `scope="login"`.
    refusals: IntCounterVec,
}

impl AuthGuard {
    /// `limiter` is the pipeline's when rate limits are on, else one of the guard's own whose
    /// idle buckets the caller sweeps (`server::auth_guard`).
    pub fn new(
        settings: GuardSettings,
        limiter: RateLimiter,
        registry: &Registry,
        refusals: IntCounterVec,
    ) -> Result<AuthGuard, prometheus::Error> {
        let failures_total = IntCounterVec::new(
            Opts::new(
                "gateway_auth_failures_total",
                "Failed API-key authentications by reason (malformed keys are refused without a lookup).",
            ),
            &["reason"],
        )?;
        let logins_total = IntCounterVec::new(
            Opts::new(
                "gateway_logins_total",
                "Dashboard logins by outcome: succeeded, failed, throttled (per IP or user name), busy (no hashing slot).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(failures_total.clone()))?;
        registry.register(Box::new(logins_total.clone()))?;
        Ok(AuthGuard {
            failures: Arc::clone(limiter.local_limiter()),
            logins: limiter,
            failure_rate: Gcra::per_minute(
                settings.max_failures_per_minute,
                settings.max_failures_per_minute,
                TICKS_PER_SECOND,
            ),
            logins_per_minute: settings.logins_per_minute,
            hashing: Semaphore::new(settings.login_max_concurrent.max(1)),
            login_wait: settings.login_wait,
            failures_total,
            logins_total,
            refusals,
        })
    }

    /// Refuses `client` while it is over its failed-authentication rate: called before a
    /// lookup that would reach the database.
    pub fn admit_lookup(&self, client: Option<IpAddr>) -> Result<(), GatewayError> {
        let (Some(gcra), Some(client)) = (self.failure_rate, client) else {
            return Ok(());
        };
        let subject = failure_subject(client);
        match self
            .failures
            .exhausted_at(&subject, gcra, self.failures.now())
        {
            None => Ok(()),
            Some(retry_after) => Err(too_many_failures(retry_after)),
        }
    }

    /// Counts one failed authentication of `client` and returns what to answer: `error`
    /// while the client is within its rate, 429 once it is over.
    pub fn failed(
        &self,
        client: Option<IpAddr>,
        failure: Failure,
        error: GatewayError,
    ) -> GatewayError {
        self.failures_total
            .with_label_values(&[failure.label()])
            .inc();
        let (Some(gcra), Some(client)) = (self.failure_rate, client) else {
            return error;
        };
        let subject = failure_subject(client);
        let admission = Admission {
            subject: &subject,
            requests: Some(gcra),
            tokens: None,
        };
        let decision = self.failures.admit_at(&admission, self.failures.now());
        match decision.denied {
            None => error,
            Some(_) => {
                tracing::warn!(client_ip = %client, "failed authentications throttled");
                too_many_failures(decision.retry_after)
            }
        }
    }

    /// Admits one login attempt of `username` from `client`: per IP before anything is
    /// parsed would be ideal, but the name is in the body, so both are decided here, before
    /// any password work. Each attempt counts against both.
    pub async fn admit_login(
        &self,
        client: Option<IpAddr>,
        username: &str,
    ) -> Result<(), GatewayError> {
        let per_minute = self.logins_per_minute;
        if let Some(client) = client {
            let subject = format!("login-ip:{client}");
            if let Err(error) = admit_subject(&self.logins, &subject, per_minute, per_minute).await
            {
                tracing::warn!(client_ip = %client, "login throttled (client)");
                return Err(self.throttled(error));
            }
        }
        let subject = format!("login-user:{username}");
        if let Err(error) = admit_subject(&self.logins, &subject, per_minute, per_minute).await {
            let client = client.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::warn!(client_ip = %client, username, "login throttled (user name)");
            return Err(self.throttled(error));
        }
        Ok(())
    }

    fn throttled(&self, error: GatewayError) -> GatewayError {
        if let GatewayError::RateLimited { .. } = error {
            self.count_login(LoginOutcome::Throttled);
            self.refusals
                .with_label_values(&["login", "requests"])
                .inc();
        }
        error
    }

    /// A slot to hash a password in, waiting at most `auth.login_wait_ms`: Argon2 takes
    /// ~19 MiB and tens of milliseconds of a blocking thread, so only so many run at once.
    pub async fn hashing_slot(&self) -> Result<SemaphorePermit<'_>, GatewayError> {
        match tokio::time::timeout(self.login_wait, self.hashing.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or closed (never: the semaphore is not closed).
            Ok(Err(_)) | Err(_) => {
                self.count_login(LoginOutcome::Busy);
                Err(GatewayError::LoginBusy {
                    retry_after: self.login_wait,
                })
            }
        }
    }

    pub fn count_login(&self, outcome: LoginOutcome) {
        self.logins_total
            .with_label_values(&[outcome.label()])
            .inc();
    }
}

fn failure_subject(client: IpAddr) -> String {
    format!("auth-fail:{client}")
}

fn too_many_failures(retry_after: Duration) -> GatewayError {
    GatewayError::CapReached {
        code: "too_many_failed_authentications",
        message: format!(
            "Too many failed authentications from this client; retry in {} s.",
            retry_after.as_secs().max(1)
        ),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_failures_per_minute: u64) -> AuthGuard {
        AuthGuard::new(
            GuardSettings {
                max_failures_per_minute,
                logins_per_minute: 2,
                login_max_concurrent: 1,
                login_wait: Duration::from_millis(20),
            },
            RateLimiter::local(1_000),
            &Registry::new(),
            IntCounterVec::new(Opts::new("refusals", "test"), &["scope", "limit"])
                .expect("counter"),
        )
        .expect("guard")
    }

    fn unauthorized() -> GatewayError {
        GatewayError::Unauthorized {
            code: "invalid_api_key",
            message: "Incorrect API key provided.".into(),
        }
    }

    fn code(error: &GatewayError) -> &'static str {
        error.code()
    }

    #[test]
    fn failures_past_the_rate_turn_into_429_for_that_client_only() {
        let guard = guard(3);
        let mallory: Option<IpAddr> = Some([10, 0, 0, 1].into());
        let alice: Option<IpAddr> = Some([10, 0, 0, 2].into());
        for _ in 0..3 {
            assert!(guard.admit_lookup(mallory).is_ok());
            let answer = guard.failed(mallory, Failure::Unknown, unauthorized());
            assert_eq!(code(&answer), "invalid_api_key");
        }
        let refused = guard.admit_lookup(mallory).expect_err("throttled");
        assert_eq!(code(&refused), "too_many_failed_authentications");
        assert_eq!(refused.status().as_u16(), 429);
        let answer = guard.failed(mallory, Failure::Malformed, unauthorized());
        assert_eq!(code(&answer), "too_many_failed_authentications");
        // Another client is untouched; no client address (unit tests) is never throttled.
        assert!(guard.admit_lookup(alice).is_ok());
        assert!(guard.admit_lookup(None).is_ok());
        assert_eq!(
            guard.failures_total.with_label_values(&["unknown"]).get(),
            3
        );
    }

    #[test]
    fn zero_turns_the_failure_throttle_off() {
        let guard = guard(0);
        let client: Option<IpAddr> = Some([10, 0, 0, 1].into());
        for _ in 0..100 {
            let answer = guard.failed(client, Failure::Unknown, unauthorized());
            assert_eq!(code(&answer), "invalid_api_key");
        }
        assert!(guard.admit_lookup(client).is_ok());
    }

    #[tokio::test]
    async fn logins_are_throttled_per_client_and_per_name() {
        let guard = guard(20);
        let a: Option<IpAddr> = Some([10, 0, 0, 1].into());
        let b: Option<IpAddr> = Some([10, 0, 0, 2].into());
        let c: Option<IpAddr> = Some([10, 0, 0, 3].into());
        // Two per minute from one client, whatever the names.
        assert!(guard.admit_login(a, "alice").await.is_ok());
        assert!(guard.admit_login(a, "bob").await.is_ok());
        let refused = guard.admit_login(a, "carol").await.expect_err("per client");
        assert_eq!(refused.status().as_u16(), 429);
        // Two per minute for one name, whatever the clients ("alice" has one already).
        assert!(guard.admit_login(b, "alice").await.is_ok());
        let refused = guard.admit_login(c, "alice").await.expect_err("per name");
        assert_eq!(refused.status().as_u16(), 429);
        assert!(guard.admit_login(c, "dave").await.is_ok());
    }

    #[tokio::test]
    async fn hashing_slots_are_bounded_and_a_waiter_gives_up() {
        let guard = guard(20);
        let held = guard.hashing_slot().await.expect("first slot");
        let busy = guard.hashing_slot().await.expect_err("no slot free");
        assert_eq!(code(&busy), "login_busy");
        assert_eq!(busy.status().as_u16(), 503);
        drop(held);
        assert!(guard.hashing_slot().await.is_ok());
    }
}
