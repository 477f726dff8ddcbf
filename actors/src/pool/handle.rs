//! `UpstreamPoolHandle`: what request handlers hold. Reads (snapshot, pick, retry budget) are
//! lock-free; the only messages are `try_send`s to the actor, so a request never waits on it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::state::{GetPoolState, PoolState};
use super::{EndpointFailing, PoolShared, PoolSnapshot, SetEndpoints, UpstreamPool};
use crate::balance;
use crate::endpoint::Endpoint;

/// The handle request handlers hold: reads are lock-free, writes go to the actor. A clone is
/// one reference count: every request takes one from the registry, and cloning an actix `Addr`
/// itself allocates.
#[derive(Clone)]
pub struct UpstreamPoolHandle {
    inner: Arc<Handle>,
}

struct Handle {
    addr: Addr<UpstreamPool>,
    shared: Arc<PoolShared>,
}

/// Why a pool could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the upstream pool is overloaded")]
    Overloaded,
    #[error("the upstream pool has stopped")]
    Stopped,
}

impl From<SendError<SetEndpoints>> for PoolError {
    fn from(error: SendError<SetEndpoints>) -> Self {
        match error {
            SendError::Full(_) => PoolError::Overloaded,
            SendError::Closed(_) => PoolError::Stopped,
        }
    }
}

impl UpstreamPoolHandle {
    pub(super) fn new(addr: Addr<UpstreamPool>, shared: Arc<PoolShared>) -> Self {
        UpstreamPoolHandle {
            inner: Arc::new(Handle { addr, shared }),
        }
    }

    pub fn snapshot(&self) -> Arc<PoolSnapshot> {
        self.inner.shared.snapshot.load_full()
    }

    /// Chooses an eligible endpoint that is not in `tried`.
    pub fn pick(&self, snapshot: &PoolSnapshot, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        let counter = self
            .inner
            .shared
            .pick_counter
            .fetch_add(1, Ordering::Relaxed);
        let skip = |i: usize| tried.iter().any(|t| Arc::ptr_eq(t, &snapshot.eligible[i]));
        balance::pick(
            snapshot.settings.strategy,
            &snapshot.eligible,
            skip,
            counter,
            &mut rand::rng(),
        )
        .map(|i| Arc::clone(&snapshot.eligible[i]))
    }

    /// Counts a request towards the retry budget.
    pub fn note_request(&self) {
        self.inner.shared.retry_budget.deposit();
    }

    /// Takes one retry from the service's budget.
    pub fn try_retry(&self) -> bool {
        self.inner.shared.retry_budget.try_withdraw()
    }

    pub fn report_success(&self, endpoint: &Endpoint, latency: Duration) {
        endpoint
            .stats
            .record_success(latency.as_secs_f64() * 1_000_000.0);
    }

    /// Records a failed attempt; the streak that reaches the ejection threshold tells the actor.
    pub fn report_failure(&self, endpoint: &Endpoint) {
        let streak = endpoint.stats.record_failure();
        let threshold = self.snapshot().settings.outlier.consecutive_failures;
        if threshold > 0 && streak == threshold {
            // A full mailbox only delays the ejection: the next failure crosses no threshold,
            // but active health checks still catch a dead endpoint.
            let _ = self.inner.addr.try_send(EndpointFailing {
                address: endpoint.address.clone(),
            });
        }
    }

    /// Replaces the endpoint set (from discovery).
    pub fn set_endpoints(&self, update: SetEndpoints) -> Result<(), PoolError> {
        self.inner.addr.try_send(update).map_err(PoolError::from)
    }

    /// A detailed view for operators and tests.
    pub async fn state(&self) -> Result<PoolState, PoolError> {
        self.inner
            .addr
            .send(GetPoolState)
            .await
            .map_err(|error| match error {
                MailboxError::Closed => PoolError::Stopped,
                MailboxError::Timeout => PoolError::Overloaded,
            })
    }
}
