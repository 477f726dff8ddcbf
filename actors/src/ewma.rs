//! Exponentially weighted moving average of upstream latency, as a lock-free cell that decays
//! while unused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Weight of a new sample. 0.3 follows a latency change within a handful of requests while one
/// slow outlier moves the average by less than a third of its excess.
pub const DEFAULT_ALPHA: f64 = 0.3;

/// How fast an unused estimate fades. Without decay, P2C never picks an endpoint that once
/// looked slow, so it could never be measured again and would starve for good.
pub const DECAY: Duration = Duration::from_secs(5);

/// The pure update rule: `previous` moves towards `sample` by `alpha`.
///
/// A `previous` of zero means "no sample yet" and takes the sample as it is, so a new endpoint
/// does not look infinitely fast for its first requests.
pub fn next_average(previous: f64, sample: f64, alpha: f64) -> f64 {
    if previous <= 0.0 {
        sample
    } else {
        previous + alpha * (sample - previous)
    }
}

/// An estimate `elapsed` after its last update: it fades towards zero with time constant
/// `decay`, so an idle endpoint gets picked, and measured, again.
pub fn decayed(value: f64, elapsed: Duration, decay: Duration) -> f64 {
    value * (-elapsed.as_secs_f64() / decay.as_secs_f64()).exp()
}

fn micros_since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// An EWMA of microseconds that many request threads update without a lock.
#[derive(Debug, Default)]
pub struct AtomicEwma {
    bits: AtomicU64,
    updated_at_micros: AtomicU64,
}

impl AtomicEwma {
    /// The current estimate, decayed for the time since the last sample.
    pub fn get(&self) -> f64 {
        let value = f64::from_bits(self.bits.load(Ordering::Relaxed));
        let elapsed =
            micros_since_start().saturating_sub(self.updated_at_micros.load(Ordering::Relaxed));
        decayed(value, Duration::from_micros(elapsed), DECAY)
    }

    pub fn observe(&self, sample_micros: f64) {
        // A lost race between two updates only drops one sample's influence, which an average
        // tolerates; the loop keeps the value itself from tearing.
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(next_average(f64::from_bits(bits), sample_micros, DEFAULT_ALPHA).to_bits())
            });
        self.updated_at_micros
            .store(micros_since_start(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_sample_is_taken_as_is() {
        assert_eq!(next_average(0.0, 120.0, DEFAULT_ALPHA), 120.0);
    }

    #[test]
    fn atomic_cell_tracks_samples() {
        let cell = AtomicEwma::default();
        cell.observe(100.0);
        cell.observe(200.0);
        // Read straight away, the decay is negligible.
        assert!((cell.get() - 130.0).abs() < 0.1, "{}", cell.get());
    }

    #[test]
    fn idle_estimates_fade() {
        assert_eq!(decayed(1000.0, Duration::ZERO, DECAY), 1000.0);
        let after_one_constant = decayed(1000.0, DECAY, DECAY);
        assert!((after_one_constant - 367.879).abs() < 0.01);
        assert!(decayed(1000.0, DECAY * 10, DECAY) < 0.1);
    }

    proptest! {
        #[test]
        fn average_stays_between_previous_and_sample(prev in 1.0f64..1e7, sample in 1.0f64..1e7) {
            let next = next_average(prev, sample, DEFAULT_ALPHA);
            prop_assert!(next >= prev.min(sample) - 1e-6 && next <= prev.max(sample) + 1e-6);
        }

        #[test]
        fn decay_never_grows(value in 0.0f64..1e7, first in 0u64..100_000, more in 0u64..100_000) {
            let earlier = decayed(value, Duration::from_millis(first), DECAY);
            let later = decayed(value, Duration::from_millis(first + more), DECAY);
            prop_assert!(later <= earlier && earlier <= value);
        }
    }
}
