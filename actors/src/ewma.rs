//! Exponentially weighted moving average of upstream latency, as a lock-free cell.

use std::sync::atomic::{AtomicU64, Ordering};

/// Weight of a new sample. 0.3 follows a latency change within a handful of requests while one
/// slow outlier moves the average by less than a third of its excess.
pub const DEFAULT_ALPHA: f64 = 0.3;

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

/// An EWMA of microseconds that many request threads update without a lock.
#[derive(Debug, Default)]
pub struct AtomicEwma {
    bits: AtomicU64,
}

impl AtomicEwma {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    pub fn observe(&self, sample_micros: f64) {
        // A lost race between two updates only drops one sample's influence, which an average
        // tolerates; the loop keeps the value itself from tearing.
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(next_average(f64::from_bits(bits), sample_micros, DEFAULT_ALPHA).to_bits())
            });
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
        assert!((cell.get() - 130.0).abs() < 1e-9);
    }

    proptest! {
        #[test]
        fn average_stays_between_previous_and_sample(prev in 1.0f64..1e7, sample in 1.0f64..1e7) {
            let next = next_average(prev, sample, DEFAULT_ALPHA);
            prop_assert!(next >= prev.min(sample) - 1e-6 && next <= prev.max(sample) + 1e-6);
        }
    }
}
