//! The limiter's upkeep: an actor that evicts idle buckets on a tick. Decisions never pass
//! through it; it only keeps the in-process maps small.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context};

use super::LocalLimiter;

/// Sweeps idle buckets every `interval`.
pub struct LimiterUpkeep {
    limiter: Arc<LocalLimiter>,
    interval: Duration,
}

impl LimiterUpkeep {
    pub fn start_upkeep(limiter: Arc<LocalLimiter>, interval: Duration) -> actix::Addr<Self> {
        LimiterUpkeep { limiter, interval }.start()
    }
}

impl Actor for LimiterUpkeep {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Self::Context) {
        context.set_mailbox_capacity(1);
        context.run_interval(self.interval, |upkeep, _| {
            let limiter = &upkeep.limiter;
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
