//! The limiter's upkeep: an actor that evicts idle buckets on a tick. Decisions never pass
//! through it; it only keeps the in-process maps small.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context};

use super::{ConcurrencyLimiter, LocalLimiter};

/// Sweeps idle buckets every `interval`.
pub struct LimiterUpkeep {
    limiter: Arc<LocalLimiter>,
    concurrency: Arc<ConcurrencyLimiter>,
    interval: Duration,
}

impl LimiterUpkeep {
    pub fn start_upkeep(
        limiter: Arc<LocalLimiter>,
        concurrency: Arc<ConcurrencyLimiter>,
        interval: Duration,
    ) -> actix::Addr<Self> {
        LimiterUpkeep {
            limiter,
            concurrency,
            interval,
        }
        .start()
    }
}

impl Actor for LimiterUpkeep {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Self::Context) {
        context.set_mailbox_capacity(1);
        context.run_interval(self.interval, |upkeep, _| {
            let limiter = &upkeep.limiter;
            upkeep.concurrency.sweep();
            let removed = limiter.sweep_at(limiter.now());
            if removed > 0 {
                tracing::debug!(
                    removed,
                    held = limiter.len(),
                    "idle rate-limit buckets evicted"
                );
            }
        });
    }
}
