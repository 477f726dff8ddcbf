//! The arithmetic remote discovery back-ends share, pure and without a clock: jittered
//! exponential back-off after errors, and Consul's blocking-query index rules.

use std::time::Duration;

use rand::Rng;

/// Exponential back-off with jitter: the n-th consecutive failure waits a random time in
/// `[d/2, d]` where `d = min(max, base × 2^n)`, so many gateways that lost the same back-end do
/// not come back in lock-step.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(16)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rng.random_range(0..=spread))
    }

    /// A success starts the next failure streak from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// What a blocking-query response means for the next query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStep {
    /// The `index` to send with the next query.
    pub next_index: u64,
    /// The data may have changed (the index moved, or it was reset): read the body.
    pub changed: bool,
    /// The index did not advance: wait the minimum interval before the next query, so a
    /// misbehaving server (or a `wait` that ends early) cannot make the loop spin.
    pub rate_limit: bool,
}

/// Consul's blocking-query index, handled as its documentation asks: reset to 0 when the index
/// goes backwards (a restarted or different server), never block on 0 (reset to 1), and
/// rate-limit when the index does not advance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockingIndex {
    current: u64,
}

impl BlockingIndex {
    /// The index to send with the next query (0: answer at once).
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Feeds the `X-Consul-Index` of a successful response.
    pub fn observe(&mut self, returned: u64) -> IndexStep {
        let previous = self.current;
        let step = if returned < previous {
            // Went backwards: start over with a non-blocking read.
            IndexStep {
                next_index: 0,
                changed: true,
                rate_limit: false,
            }
        } else if returned == 0 {
            IndexStep {
                next_index: 1,
                changed: previous == 0,
                rate_limit: true,
            }
        } else {
            IndexStep {
                next_index: returned,
                changed: returned != previous,
                rate_limit: returned == previous,
            }
        };
        self.current = step.next_index;
        step
    }

    /// After an error the next query starts from a full read.
    pub fn reset(&mut self) {
        self.current = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn the_index_follows_consul_rules() {
        let mut index = BlockingIndex::default();
        let step = |index: &mut BlockingIndex, returned| {
            let s = index.observe(returned);
            (s.next_index, s.changed, s.rate_limit)
        };
        assert_eq!(step(&mut index, 10), (10, true, false));
        // No change (the wait ran out): block again, but not at once.
        assert_eq!(step(&mut index, 10), (10, false, true));
        assert_eq!(step(&mut index, 12), (12, true, false));
        // Backwards: reset to a full, non-blocking read.
        assert_eq!(step(&mut index, 3), (0, true, false));
        assert_eq!(step(&mut index, 3), (3, true, false));
        // Zero is never blocked on.
        assert_eq!(step(&mut index, 0), (0, true, false));
        assert_eq!(index.current(), 0);
        let mut fresh = BlockingIndex::default();
        assert_eq!(step(&mut fresh, 0), (1, true, true));
        assert_eq!(step(&mut fresh, 0), (0, true, false));
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = backoff.next_delay(&mut rng);
        assert!((50..=100).contains(&first.as_millis()), "{first:?}");
        for _ in 0..10 {
            backoff.next_delay(&mut rng);
        }
        let late = backoff.next_delay(&mut rng);
        assert!((1000..=2000).contains(&late.as_millis()), "{late:?}");
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(100));
    }

    proptest! {
        #[test]
        fn backoff_stays_within_its_bounds(seed: u64, failures in 0u32..40, base_ms in 1u64..1000, max_ms in 1u64..60_000) {
            let mut rng = SmallRng::seed_from_u64(seed);
            let max = Duration::from_millis(max_ms);
            let base = Duration::from_millis(base_ms);
            let mut backoff = Backoff::new(base, max);
            for _ in 0..failures {
                let delay = backoff.next_delay(&mut rng);
                prop_assert!(delay <= max.max(base));
                prop_assert!(delay >= base.min(max.max(base)) / 2);
            }
        }

        #[test]
        fn the_next_index_never_blocks_on_zero_twice_or_goes_backwards_silently(returns in proptest::collection::vec(0u64..50, 1..30)) {
            let mut index = BlockingIndex::default();
            for returned in returns {
                let before = index.current();
                let step = index.observe(returned);
                if returned < before {
                    prop_assert_eq!(step.next_index, 0);
                    prop_assert!(step.changed);
                }
                if step.next_index == before && before != 0 {
                    prop_assert!(step.rate_limit);
                }
            }
        }
    }
}
