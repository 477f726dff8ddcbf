//! Health and ejection state machines: pure, with `now` passed in.

use std::time::{Duration, Instant};

use crate::settings::{HealthCheckSettings, OutlierSettings};

/// What active health checks say about an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Known but not yet probed; not eligible until its first probe passes.
    Pending,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Pending => "pending",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// Counts consecutive probe results and applies the thresholds.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    status: HealthStatus,
    passes: u32,
    failures: u32,
}

impl HealthTracker {
    /// Without active checks an endpoint is healthy from the start.
    pub fn new(active_checks: bool) -> Self {
        HealthTracker {
            status: if active_checks {
                HealthStatus::Pending
            } else {
                HealthStatus::Healthy
            },
            passes: 0,
            failures: 0,
        }
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Feeds one probe result; returns true when the status changed.
    pub fn record(&mut self, passed: bool, settings: &HealthCheckSettings) -> bool {
        let before = self.status;
        if passed {
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
            let enough = match self.status {
                // A new endpoint joins on its first passing probe.
                HealthStatus::Pending => true,
                HealthStatus::Unhealthy => self.passes >= settings.healthy_threshold.max(1),
                HealthStatus::Healthy => true,
            };
            if enough {
                self.status = HealthStatus::Healthy;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
            if self.failures >= settings.unhealthy_threshold.max(1) {
                self.status = HealthStatus::Unhealthy;
            }
        }
        before != self.status
    }
}

/// Passive ejection with exponential back-off.
#[derive(Debug, Clone, Default)]
pub struct OutlierState {
    ejected_until: Option<Instant>,
    readmitted_at: Option<Instant>,
    ejections: u32,
}

impl OutlierState {
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// Ejects the endpoint and returns how long for: `base × 2^(earlier ejections)`, capped.
    pub fn eject(&mut self, now: Instant, settings: &OutlierSettings) -> Duration {
        let factor = 1u32.checked_shl(self.ejections.min(16)).unwrap_or(u32::MAX);
        let length = settings
            .base_ejection
            .saturating_mul(factor)
            .min(settings.max_ejection);
        self.ejected_until = Some(now + length);
        self.readmitted_at = None;
        self.ejections = self.ejections.saturating_add(1);
        length
    }

    /// Ends an ejection whose time is up; returns true if it did.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self.ejected_until {
            Some(until) if now >= until => {
                self.ejected_until = None;
                self.readmitted_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Forgets earlier ejections once an endpoint has stayed in service for `max_ejection`, so
    /// one bad day does not lengthen every later ejection.
    pub fn forgive(&mut self, now: Instant, settings: &OutlierSettings) {
        if let Some(since) = self.readmitted_at {
            if now.duration_since(since) >= settings.max_ejection {
                self.ejections = 0;
                self.readmitted_at = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn health() -> HealthCheckSettings {
        HealthCheckSettings {
            path: Some("/health".into()),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ..HealthCheckSettings::default()
        }
    }

    #[test]
    fn pending_endpoint_joins_on_first_pass() {
        let mut tracker = HealthTracker::new(true);
        assert_eq!(tracker.status(), HealthStatus::Pending);
        assert!(tracker.record(true, &health()));
        assert_eq!(tracker.status(), HealthStatus::Healthy);
    }

    #[test]
    fn thresholds_apply_both_ways() {
        let settings = health();
        let mut tracker = HealthTracker::new(true);
        tracker.record(true, &settings);
        assert!(!tracker.record(false, &settings));
        assert!(!tracker.record(false, &settings));
        assert!(tracker.record(false, &settings));
        assert_eq!(tracker.status(), HealthStatus::Unhealthy);
        assert!(!tracker.record(true, &settings));
        assert!(tracker.record(true, &settings));
        assert_eq!(tracker.status(), HealthStatus::Healthy);
    }

    #[test]
    fn ejection_backs_off_exponentially_and_is_capped() {
        let settings = OutlierSettings {
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(5),
            ..OutlierSettings::default()
        };
        let mut state = OutlierState::default();
        let now = Instant::now();
        let lengths: Vec<u64> = (0..5)
            .map(|_| state.eject(now, &settings).as_secs())
            .collect();
        assert_eq!(lengths, vec![1, 2, 4, 5, 5]);
    }

    #[test]
    fn ejection_expires_and_is_forgiven() {
        let settings = OutlierSettings {
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(4),
            ..OutlierSettings::default()
        };
        let mut state = OutlierState::default();
        let start = Instant::now();
        state.eject(start, &settings);
        assert!(state.is_ejected(start));
        assert!(!state.expire(start + Duration::from_millis(500)));
        assert!(state.expire(start + Duration::from_secs(1)));
        assert!(!state.is_ejected(start + Duration::from_secs(1)));
        state.forgive(start + Duration::from_secs(2), &settings);
        assert_eq!(state.ejections(), 1);
        state.forgive(start + Duration::from_secs(5), &settings);
        assert_eq!(state.ejections(), 0);
    }

    proptest! {
        #[test]
        fn status_changes_only_at_thresholds(results in prop::collection::vec(any::<bool>(), 0..40)) {
            let settings = health();
            let mut tracker = HealthTracker::new(false);
            let (mut passes, mut failures) = (0u32, 0u32);
            for passed in results {
                let before = tracker.status();
                tracker.record(passed, &settings);
                if passed { passes += 1; failures = 0; } else { failures += 1; passes = 0; }
                match (before, tracker.status()) {
                    (HealthStatus::Healthy, HealthStatus::Unhealthy) => {
                        prop_assert_eq!(failures, settings.unhealthy_threshold);
                    }
                    (HealthStatus::Unhealthy, HealthStatus::Healthy) => {
                        prop_assert_eq!(passes, settings.healthy_threshold);
                    }
                    _ => {}
                }
                if failures >= settings.unhealthy_threshold {
                    prop_assert_eq!(tracker.status(), HealthStatus::Unhealthy);
                }
            }
        }
    }
}
