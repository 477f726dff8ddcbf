//! Micro-benchmarks of the core's per-request work: choosing an endpoint and counting tokens.
//! Run with `cargo bench -p gateway-actors` (or `make bench-micro`).

use std::hint::black_box;
use std::time::Duration;

use actors::balance::{pick, Candidate};
use actors::BalanceStrategy;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// A balancer candidate with fixed statistics, so the benchmark measures the choice alone.
struct FixedCandidate {
    weight: u32,
    in_flight: u32,
    latency_micros: f64,
}

impl Candidate for FixedCandidate {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> u32 {
        self.in_flight
    }
    fn latency_micros(&self) -> f64 {
        self.latency_micros
    }
}

/// Eight endpoints with uneven weights, loads and latencies, as a busy pool would have.
fn eight_candidates() -> Vec<FixedCandidate> {
    (0..8u32)
        .map(|i| FixedCandidate {
            weight: 1 + i % 3,
            in_flight: (i * 7) % 5,
            latency_micros: 800.0 + f64::from(i) * 150.0,
        })
        .collect()
}

fn balancer_pick(c: &mut Criterion) {
    let candidates = eight_candidates();
    let mut group = c.benchmark_group("balance_pick_8");
    for (name, strategy) in [
        ("round_robin", BalanceStrategy::RoundRobin),
        ("weighted", BalanceStrategy::Weighted),
        ("least_inflight", BalanceStrategy::LeastInFlight),
        ("p2c_ewma", BalanceStrategy::P2cEwma),
    ] {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counter = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                counter = counter.wrapping_add(1);
                // One excluded endpoint, as after a failed first attempt.
                pick(
                    strategy,
                    black_box(&candidates),
                    |i| i == 3,
                    counter,
                    &mut rng,
                )
            })
        });
    }
    group.finish();
}

fn token_count(c: &mut Criterion) {
    let prompt = "You are a helpful assistant. Summarise the following paragraph in two \
                  sentences: The gateway routes OpenAI-compatible requests to model servers \
                  over pooled keep-alive connections and balances load across their instances.";
    // Build the BPE tables once, outside the measurement.
    black_box(actors::tokens::count("warm up"));
    c.bench_function("tokens_count_short_prompt", |b| {
        b.iter(|| actors::tokens::count(black_box(prompt)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = balancer_pick, token_count
}
criterion_main!(benches);
