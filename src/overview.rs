//! The dashboard's live numbers (`GET /admin/overview`): a sliding window of per-second
//! buckets fed where requests are already measured, read only when an operator asks.
//!
//! Recording is a handful of relaxed atomic adds into the bucket of the current second: no
//! lock, no allocation, no clock read (callers pass the `Instant` they already hold). Each
//! bucket remembers which second it holds; the first request of a new second claims the
//! bucket with one compare-and-swap and clears it. A request that races that clear can be
//! lost, which a dashboard's rates tolerate. Reading sums the buckets of the last
//! [`WINDOW_SECS`] seconds (64 × ~0.5 KB, once per poll).
//!
//! This is independent of Prometheus: the dashboard must work with metrics switched off.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds the rates and percentiles cover.
pub const WINDOW_SECS: u64 = 60;
/// Buckets kept: more than the window, a power of two so the index is a mask.
const SLOTS: u64 = 64;
/// Latency histogram buckets: two per power of two of microseconds, from 1 µs to 2^27 µs
/// (~134 s); the last bucket takes anything longer. Percentiles are interpolated within a
/// bucket, so they are within ~20% of the truth.
const BUCKETS: usize = 56;

/// Which histogram bucket `micros` falls in: 0 for 0 µs, then two per octave.
fn bucket_of(micros: u64) -> usize {
    if micros == 0 {
        return 0;
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let half = match octave {
        0 => 0,
        _ => ((micros >> (octave - 1)) & 1) as usize,
    };
    (2 * octave + half + 1).min(BUCKETS - 1)
}

/// The microseconds bucket `index` starts at (inclusive).
fn bucket_floor(index: usize) -> f64 {
    if index == 0 {
        return 0.0;
    }
    let octave = (index - 1) / 2;
    let half = (index - 1) % 2;
    let base = (1u64 << octave) as f64;
    base + half as f64 * base / 2.0
}

struct Histogram([AtomicU32; BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(std::array::from_fn(|_| AtomicU32::new(0)))
    }
}

impl Histogram {
    fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.0[bucket_of(micros)].fetch_add(1, Relaxed);
    }

    fn clear(&self) {
        for count in &self.0 {
            count.store(0, Relaxed);
        }
    }

    fn add_to(&self, totals: &mut [u64; BUCKETS]) {
        for (total, count) in totals.iter_mut().zip(&self.0) {
            *total += u64::from(count.load(Relaxed));
        }
    }
}

/// The `q` quantile (0..1) of a histogram in milliseconds; 0 when it is empty.
fn quantile_ms(counts: &[u64; BUCKETS], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (index, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let floor = bucket_floor(index);
            if index == BUCKETS - 1 {
                return floor / 1000.0;
            }
            let ceiling = bucket_floor(index + 1).max(floor + 1.0);
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return (floor + within * (ceiling - floor)) / 1000.0;
        }
        below += count;
    }
    bucket_floor(BUCKETS - 1) / 1000.0
}

#[derive(Default)]
struct Slot {
    /// The second (since start, plus one) this bucket holds; 0 before first use.
    second: AtomicU64,
    requests: AtomicU32,
    errors: AtomicU32,
    tokens: AtomicU64,
    latency: Histogram,
    overhead: Histogram,
}

impl Slot {
    fn clear(&self) {
        self.requests.store(0, Relaxed);
        self.errors.store(0, Relaxed);
        self.tokens.store(0, Relaxed);
        self.latency.clear();
        self.overhead.clear();
    }
}

/// The gateway's own counters for the overview; one per process.
pub struct OverviewCounters {
    started: Instant,
    slots: Box<[Slot]>,
    active_streams: AtomicI64,
}

impl Default for OverviewCounters {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

/// One answered request as the overview counts it.
pub struct RequestOutcome {
    /// The whole request as the client sees it (a stream: until its first byte).
    pub latency: Duration,
    /// The gateway's own share (upstream time excluded), when the request reached one.
    pub overhead: Option<Duration>,
    /// Answered with a status of 500 or more (including upstream failures).
    pub failed: bool,
}

impl RequestOutcome {
    /// A request that went through `Pipeline::execute` (WebSocket and GraphQL chats), its head
    /// ready `latency` after it started.
    pub fn of_pipeline(
        latency: Duration,
        result: &Result<crate::pipeline::PipelineResponse, crate::error::GatewayError>,
    ) -> Self {
        match result {
            Ok(response) => RequestOutcome {
                latency,
                overhead: Some(latency.saturating_sub(response.upstream_time)),
                failed: response.status.is_server_error(),
            },
            Err(error) => RequestOutcome {
                latency,
                overhead: None,
                failed: error.status().is_server_error(),
            },
        }
    }
}

impl OverviewCounters {
    pub fn new(started: Instant) -> Self {
        OverviewCounters {
            started,
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            active_streams: AtomicI64::new(0),
        }
    }

    /// The bucket for the second `at` falls in, claimed and cleared if it held an older one.
    fn slot(&self, at: Instant) -> &Slot {
        let second = at.saturating_duration_since(self.started).as_secs() + 1;
        let slot = &self.slots[(second % SLOTS) as usize];
        let held = slot.second.load(Relaxed);
        if held < second
            && slot
                .second
                .compare_exchange(held, second, Relaxed, Relaxed)
                .is_ok()
        {
            slot.clear();
        }
        slot
    }

    /// Counts a request that started at `started`; the outcome's latency places it in time,
    /// so no clock is read here.
    pub fn record_request(&self, started: Instant, outcome: RequestOutcome) {
        let slot = self.slot(started + outcome.latency);
        slot.requests.fetch_add(1, Relaxed);
        if outcome.failed {
            slot.errors.fetch_add(1, Relaxed);
        }
        slot.latency.record(outcome.latency);
        if let Some(overhead) = outcome.overhead {
            slot.overhead.record(overhead);
        }
    }

    /// A stream that failed after its head was sent (truncated, idle upstream): an error in
    /// the second it happened, its request having been counted when it started.
    pub fn record_stream_fault(&self, at: Instant) {
        self.slot(at).errors.fetch_add(1, Relaxed);
    }

    /// Tokens billed (prompt + completion) at `at`.
    pub fn record_tokens(&self, at: Instant, tokens: u64) {
        if tokens > 0 {
            self.slot(at).tokens.fetch_add(tokens, Relaxed);
        }
    }

    /// Counts an open stream until the guard is dropped.
    pub fn stream_opened(self: &Arc<Self>) -> OpenStream {
        self.active_streams.fetch_add(1, Relaxed);
        OpenStream(Arc::clone(self))
    }

    /// SSE streams open now.
    pub fn active_streams(&self) -> u64 {
        u64::try_from(self.active_streams.load(Relaxed)).unwrap_or(0)
    }

    /// The window ending at `now`.
    pub fn read(&self, now: Instant) -> OverviewWindow {
        let uptime = now.saturating_duration_since(self.started);
        let current = uptime.as_secs() + 1;
        let oldest = current.saturating_sub(WINDOW_SECS - 1);
        let mut requests = 0u64;
        let mut errors = 0u64;
        let mut tokens = 0u64;
        let mut latency = [0u64; BUCKETS];
        let mut overhead = [0u64; BUCKETS];
        for slot in self.slots.iter() {
            let second = slot.second.load(Relaxed);
            if second < oldest || second > current {
                continue;
            }
            requests += u64::from(slot.requests.load(Relaxed));
            errors += u64::from(slot.errors.load(Relaxed));
            tokens += slot.tokens.load(Relaxed);
            slot.latency.add_to(&mut latency);
            slot.overhead.add_to(&mut overhead);
        }
        // A young process has not lived a whole window: divide by what it has lived.
        let span = uptime.as_secs_f64().clamp(1.0, WINDOW_SECS as f64);
        OverviewWindow {
            uptime_secs: uptime.as_secs(),
            requests_per_second: requests as f64 / span,
            error_rate: match requests {
                0 => 0.0,
                _ => (errors as f64 / requests as f64).min(1.0),
            },
            latency_ms: Percentiles::of(&latency),
            overhead_ms: Percentiles::of(&overhead),
            tokens_per_minute: tokens as f64 * 60.0 / span,
            active_streams: self.active_streams(),
        }
    }
}

/// An open stream; dropping it (the stream ended or its client left) stops counting it.
pub struct OpenStream(Arc<OverviewCounters>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.active_streams.fetch_sub(1, Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(counts: &[u64; BUCKETS]) -> Self {
        Percentiles {
            p50: quantile_ms(counts, 0.50),
            p99: quantile_ms(counts, 0.99),
        }
    }
}

/// What the counters say about the last window.
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewWindow {
    pub uptime_secs: u64,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub latency_ms: Percentiles,
    pub overhead_ms: Percentiles,
    pub tokens_per_minute: f64,
    pub active_streams: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok(latency: Duration) -> RequestOutcome {
        RequestOutcome {
            latency,
            overhead: Some(Duration::from_micros(200)),
            failed: false,
        }
    }

    proptest! {
        #[test]
        fn a_value_lies_within_its_bucket(micros in 0u64..(1 << 27)) {
            let index = bucket_of(micros);
            prop_assert!(bucket_floor(index) <= micros as f64);
            prop_assert!((micros as f64) < bucket_floor(index + 1));
        }

        #[test]
        fn buckets_grow_with_the_value(a: u64, b: u64) {
            prop_assert!(bucket_of(a.min(b)) <= bucket_of(a.max(b)));
        }
    }

    #[test]
    fn rates_and_percentiles_over_the_window() {
        let t0 = Instant::now();
        let counters = OverviewCounters::new(t0);
        // 100 requests at 10 ms and one at 900 ms, in the first two seconds; one fails.
        for i in 0..100u64 {
            counters.record_request(t0 + ms(i * 15), ok(ms(10)));
        }
        counters.record_request(
            t0 + ms(500),
            RequestOutcome {
                latency: ms(900),
                overhead: None,
                failed: true,
            },
        );
        counters.record_tokens(t0 + ms(1_200), 500);
        let window = counters.read(t0 + Duration::from_secs(10));
        assert_eq!(window.uptime_secs, 10);
        assert!(
            (window.requests_per_second - 10.1).abs() < 1e-9,
            "{window:?}"
        );
        assert!((window.error_rate - 1.0 / 101.0).abs() < 1e-9);
        assert!((window.tokens_per_minute - 3_000.0).abs() < 1e-9);
        // Within the bucket that holds 10 ms (8.192..12.288 ms).
        assert!((8.1..12.3).contains(&window.latency_ms.p50), "{window:?}");
        // The 99th percentile of 101 requests is still among the fast ones; the max is not.
        assert!(window.latency_ms.p99 < 12.3, "{window:?}");
        // Overhead was recorded for the 100 successful requests only.
        assert!((0.12..0.26).contains(&window.overhead_ms.p50), "{window:?}");
    }

    #[test]
    fn the_slowest_percent_shows_in_p99() {
        let t0 = Instant::now();
        let counters = OverviewCounters::new(t0);
        for i in 0..90u64 {
            counters.record_request(t0 + ms(i), ok(ms(5)));
        }
        for i in 0..10u64 {
            counters.record_request(t0 + ms(i), ok(ms(2_000)));
        }
        // Requests are placed at the second they end: read once the slow ones have.
        let window = counters.read(t0 + Duration::from_secs(3));
        assert!(
            (1_000.0..3_000.0).contains(&window.latency_ms.p99),
            "{window:?}"
        );
        assert!(window.latency_ms.p50 < 10.0, "{window:?}");
    }

    #[test]
    fn old_seconds_leave_the_window_and_buckets_are_reused() {
        let t0 = Instant::now();
        let counters = OverviewCounters::new(t0);
        counters.record_request(t0, ok(ms(1)));
        counters.record_tokens(t0, 10);
        let later = counters.read(t0 + Duration::from_secs(WINDOW_SECS + 5));
        assert_eq!(later.requests_per_second, 0.0);
        assert_eq!(later.tokens_per_minute, 0.0);
        assert_eq!(later.latency_ms, Percentiles { p50: 0.0, p99: 0.0 });
        // Second 64 lands in second 0's bucket, which is cleared first.
        let reuse = t0 + Duration::from_secs(SLOTS);
        counters.record_request(reuse, ok(ms(1)));
        let window = counters.read(reuse);
        assert!((window.requests_per_second - 1.0 / WINDOW_SECS as f64).abs() < 1e-9);
        assert_eq!(window.tokens_per_minute, 0.0);
    }

    #[test]
    fn empty_counters_read_as_finite_zeros() {
        let t0 = Instant::now();
        let window = OverviewCounters::new(t0).read(t0);
        for value in [
            window.requests_per_second,
            window.error_rate,
            window.tokens_per_minute,
            window.latency_ms.p50,
            window.latency_ms.p99,
            window.overhead_ms.p50,
            window.overhead_ms.p99,
        ] {
            assert_eq!(value, 0.0);
        }
    }

    #[test]
    fn open_streams_are_counted_until_dropped() {
        let counters = Arc::new(OverviewCounters::default());
        let first = counters.stream_opened();
        let second = counters.stream_opened();
        assert_eq!(counters.read(Instant::now()).active_streams, 2);
        drop(first);
        assert_eq!(counters.read(Instant::now()).active_streams, 1);
        drop(second);
        assert_eq!(counters.read(Instant::now()).active_streams, 0);
    }

    #[test]
    fn stream_faults_raise_the_error_rate() {
        let t0 = Instant::now();
        let counters = OverviewCounters::new(t0);
        counters.record_request(t0, ok(ms(3)));
        counters.record_request(t0, ok(ms(3)));
        counters.record_stream_fault(t0 + ms(50));
        assert_eq!(counters.read(t0 + ms(100)).error_rate, 0.5);
    }
}
