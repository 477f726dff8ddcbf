//! The generic cell rate algorithm (GCRA) with a cost per request: the limit math, as a plain
//! struct with `now` passed in.
//!
//! A bucket is one number, its theoretical arrival time (TAT): the moment it would be full
//! again. A request costing `n` moves the TAT `n × interval` into the future and is allowed
//! while the TAT stays within `capacity × interval` of now. A bucket whose TAT is in the past
//! is indistinguishable from a fresh one, which is what makes eviction of idle buckets exact.
//! The same arithmetic runs in Redis (see `shared.rs`), in microseconds.

/// A rate of `capacity` units per `capacity × interval`, with bursts of up to `capacity`.
/// Times are in ticks of whatever unit the caller uses (nanoseconds in-process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Ticks one unit takes to replenish.
    pub interval: i64,
    /// Units a full bucket holds: the largest burst.
    pub capacity: i64,
}

/// What a bucket says to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraOutcome {
    pub allowed: bool,
    /// The TAT to store when the request is allowed (unchanged state otherwise).
    pub new_tat: i64,
    /// Whole units still available after this decision.
    pub remaining: i64,
    /// Ticks until the bucket is full again.
    pub reset: i64,
    /// Ticks to wait before the same request would be allowed (0 when allowed).
    pub retry_after: i64,
}

impl Gcra {
    /// `rate` units per minute with bursts of `burst`, in ticks of `ticks_per_second`.
    /// `None` for a zero rate or burst, which cannot be represented as a bucket.
    pub fn per_minute(rate: u64, burst: u64, ticks_per_second: i64) -> Option<Gcra> {
        if rate == 0 || burst == 0 {
            return None;
        }
        let rate = i64::try_from(rate).ok()?;
        let interval = (60 * ticks_per_second / rate).max(1);
        Some(Gcra {
            interval,
            capacity: i64::try_from(burst).ok()?,
        })
    }

    fn tolerance(&self) -> i64 {
        self.capacity.saturating_mul(self.interval)
    }

    /// Decides a request of `cost` units at `now` against a bucket whose TAT is `tat`
    /// (`i64::MIN` or anything in the past for a fresh bucket).
    pub fn check(&self, tat: i64, now: i64, cost: i64) -> GcraOutcome {
        let base = tat.max(now);
        let new_tat = base.saturating_add(cost.max(0).saturating_mul(self.interval));
        let tolerance = self.tolerance();
        let ahead = new_tat - now;
        if ahead <= tolerance {
            GcraOutcome {
                allowed: true,
                new_tat,
                remaining: (tolerance - ahead) / self.interval,
                reset: ahead,
                retry_after: 0,
            }
        } else {
            GcraOutcome {
                allowed: false,
                new_tat: tat,
                remaining: (tolerance - (base - now)).max(0) / self.interval,
                reset: base - now,
                retry_after: ahead - tolerance,
            }
        }
    }

    /// The TAT after correcting an earlier charge by `delta` units: negative gives units back
    /// (never beyond a full bucket), positive charges more without refusing anything.
    pub fn adjust(&self, tat: i64, now: i64, delta: i64) -> i64 {
        let shift = delta.saturating_mul(self.interval);
        if delta >= 0 {
            tat.max(now).saturating_add(shift)
        } else {
            tat.saturating_add(shift).max(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn a_fresh_bucket_allows_exactly_its_burst() {
        let gcra = Gcra::per_minute(60, 10, SECOND).expect("valid");
        let mut tat = i64::MIN;
        let now = 5 * SECOND;
        for i in 0..10 {
            let outcome = gcra.check(tat, now, 1);
            assert!(outcome.allowed, "request {i}");
            assert_eq!(outcome.remaining, 9 - i);
            tat = outcome.new_tat;
        }
        let refused = gcra.check(tat, now, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, SECOND);
        assert_eq!(refused.reset, 10 * SECOND);
        assert!(gcra.check(tat, now + SECOND, 1).allowed);
    }

    #[test]
    fn zero_rates_are_not_buckets() {
        assert_eq!(Gcra::per_minute(0, 10, SECOND), None);
        assert_eq!(Gcra::per_minute(10, 0, SECOND), None);
    }

    #[test]
    fn a_cost_beyond_capacity_is_never_allowed() {
        let gcra = Gcra::per_minute(100, 100, SECOND).expect("valid");
        assert!(!gcra.check(i64::MIN, 0, 101).allowed);
        assert!(gcra.check(i64::MIN, 0, 100).allowed);
    }

    proptest! {
        /// From a fresh bucket, what is allowed in `elapsed` never exceeds the burst plus what
        /// the rate replenishes — the property that makes the limit a limit.
        #[test]
        fn allowed_units_never_exceed_burst_plus_rate(
            rate in 1u64..10_000,
            burst in 1u64..100,
            steps in proptest::collection::vec((0i64..2 * SECOND, 1i64..20), 1..200),
        ) {
            let gcra = Gcra::per_minute(rate, burst, SECOND).expect("valid");
            let start = 1_000 * SECOND;
            let (mut tat, mut now, mut allowed) = (i64::MIN, start, 0i64);
            for (gap, cost) in steps {
                now += gap;
                let outcome = gcra.check(tat, now, cost);
                if outcome.allowed {
                    tat = outcome.new_tat;
                    allowed += cost;
                }
                prop_assert!(allowed <= gcra.capacity + (now - start) / gcra.interval);
            }
        }

        /// Waiting `retry_after` is always enough, and never more than needed.
        #[test]
        fn retry_after_is_exact(
            rate in 1u64..10_000,
            burst in 1u64..100,
            used in 0i64..200,
            cost in 1i64..50,
        ) {
            let gcra = Gcra::per_minute(rate, burst, SECOND).expect("valid");
            prop_assume!(cost <= gcra.capacity);
            let now = 0;
            let tat = gcra.adjust(i64::MIN, now, used);
            let outcome = gcra.check(tat, now, cost);
            if !outcome.allowed {
                prop_assert!(gcra.check(tat, now + outcome.retry_after, cost).allowed);
                prop_assert!(!gcra.check(tat, now + outcome.retry_after - 1, cost).allowed);
                prop_assert_eq!(outcome.new_tat, tat);
            }
        }

        /// Reserving then giving everything back leaves the bucket as it was (or fuller).
        #[test]
        fn a_full_refund_restores_the_bucket(
            used in 0i64..100,
            cost in 1i64..100,
            later in 0i64..10 * SECOND,
        ) {
            let gcra = Gcra::per_minute(1_000, 200, SECOND).expect("valid");
            let tat = gcra.adjust(i64::MIN, 0, used);
            let outcome = gcra.check(tat, 0, cost);
            prop_assume!(outcome.allowed);
            let refunded = gcra.adjust(outcome.new_tat, later, -cost);
            prop_assert_eq!(refunded, tat.max(later));
        }

        /// Remaining never goes negative and never exceeds the capacity.
        #[test]
        fn remaining_stays_in_range(
            tat in -SECOND..100 * SECOND,
            now in 0i64..100 * SECOND,
            cost in 0i64..500,
        ) {
            let gcra = Gcra::per_minute(120, 20, SECOND).expect("valid");
            let outcome = gcra.check(tat, now, cost);
            prop_assert!((0..=gcra.capacity).contains(&outcome.remaining));
            prop_assert!(outcome.reset >= 0);
        }
    }
}
