//! Rate limits: requests per minute with bursts and tokens per minute, per API key, per client
//! IP and per service. The math is [`gcra`]; decisions are made in-process ([`local`]) or in
//! Redis by one atomic script per decision ([`crate::shared`]), falling back as configured when
//! Redis fails. Token charges are reserved at admission and corrected when the request is billed.

pub mod concurrency;
pub mod gcra;
pub mod local;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

/// The shared Redis under the name the edge has always used for it (`src/server.rs`); it
/// carries limits, budgets and cached answers, see [`crate::shared`].
pub use crate::shared::SharedRedis as SharedLimiter;
pub use crate::shared::{RedisFailureMode, SharedSettings};
pub use concurrency::{ConcurrencyLimiter, ConcurrencyPermit};
pub use gcra::Gcra;
pub use local::LocalLimiter;
pub use upkeep::LimiterUpkeep;

/// One decision to make: a subject, its request bucket and its token bucket with this
/// request's cost. A `None` bucket is not limited.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    pub subject: &'a str,
    pub requests: Option<Gcra>,
    pub tokens: Option<(Gcra, i64)>,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
}

/// One bucket's state after a decision, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    /// Units per minute.
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// The answer to an [`Admission`]. Refusals charge nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub denied: Option<LimitKind>,
    pub retry_after: Duration,
    pub requests: Option<LimitStatus>,
    pub tokens: Option<LimitStatus>,
}

impl Decision {
    fn unlimited() -> Decision {
        Decision {
            denied: None,
            retry_after: Duration::ZERO,
            requests: None,
            tokens: None,
        }
    }
}

/// Why no decision could be made.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Redis failed and `RATE_LIMIT_REDIS_FAILURE=deny`.
    #[error("the shared rate limiter is unavailable: {0}")]
    Unavailable(String),
}

/// Where a decision was made, so its token charge is corrected in the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    Shared,
    /// Redis failed under `allow`: nothing was charged.
    None,
}

/// The limiter the request path holds: in-process, or Redis with an in-process fallback.
#[derive(Clone)]
pub struct RateLimiter {
    local: Arc<LocalLimiter>,
    shared: Option<Arc<SharedLimiter>>,
}

impl RateLimiter {
    pub fn local(max_buckets: usize) -> Self {
        RateLimiter {
            local: Arc::new(LocalLimiter::new(max_buckets)),
            shared: None,
        }
    }

    pub fn with_shared(max_buckets: usize, shared: Arc<SharedLimiter>) -> Self {
        RateLimiter {
            local: Arc::new(LocalLimiter::new(max_buckets)),
            shared: Some(shared),
        }
    }

    pub fn local_limiter(&self) -> &Arc<LocalLimiter> {
        &self.local
    }

    pub fn shared_limiter(&self) -> Option<&Arc<SharedLimiter>> {
        self.shared.as_ref()
    }

    /// Decides one admission. When allowed, the returned reservation holds the token charge
    /// until [`TokenReservation::settle`] (or its drop, which gives it all back).
    pub async fn admit(
        &self,
        admission: Admission<'_>,
    ) -> Result<(Decision, Option<TokenReservation>), LimitError> {
        if admission.requests.is_none() && admission.tokens.is_none() {
            return Ok((Decision::unlimited(), None));
        }
        let (decision, backend) = match &self.shared {
            None => (
                self.local.admit_at(&admission, self.local.now()),
                Backend::Local,
            ),
            // Boxed: the Redis round trip's future is large, and inline it would be moved with
            // every in-process decision too.
            Some(shared) => match Box::pin(shared.admit_limits(&admission)).await {
                Ok(decision) => (decision, Backend::Shared),
                Err(error) => match shared.failure_mode() {
                    RedisFailureMode::Local => (
                        self.local.admit_at(&admission, self.local.now()),
                        Backend::Local,
                    ),
                    RedisFailureMode::Allow => (Decision::unlimited(), Backend::None),
                    RedisFailureMode::Deny => return Err(LimitError::Unavailable(error)),
                },
            },
        };
        let reservation = match (decision.denied, admission.tokens) {
            (None, Some((gcra, cost))) if backend != Backend::None => Some(TokenReservation {
                limiter: self.clone(),
                subject: admission.subject.to_string(),
                gcra,
                reserved: cost,
                backend,
                settled: false,
            }),
            _ => None,
        };
        Ok((decision, reservation))
    }
}

/// Tokens charged to a token bucket at admission, corrected to real use when the request is
/// billed. Dropping it unsettled gives the whole charge back.
pub struct TokenReservation {
    limiter: RateLimiter,
    subject: String,
    gcra: Gcra,
    reserved: i64,
    backend: Backend,
    settled: bool,
}

impl TokenReservation {
    pub fn reserved(&self) -> i64 {
        self.reserved
    }

    /// Replaces the reservation with what the request really used.
    pub fn settle(mut self, used: i64) {
        self.correct(used.max(0) - self.reserved);
        self.settled = true;
    }

    fn correct(&self, delta: i64) {
        match self.backend {
            Backend::Local => {
                let local = &self.limiter.local;
                local.adjust_tokens_at(&self.subject, self.gcra, delta, local.now());
            }
            Backend::Shared => {
                if let Some(shared) = &self.limiter.shared {
                    shared.settle_tokens(&self.subject, self.gcra, delta);
                }
            }
            Backend::None => {}
        }
    }
}

impl Drop for TokenReservation {
    fn drop(&mut self) {
        if !self.settled {
            self.correct(-self.reserved);
        }
    }
}

impl std::fmt::Debug for TokenReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReservation")
            .field("subject", &self.subject)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}
