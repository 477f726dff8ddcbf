//! Micro-benchmarks of the core's per-request work: choosing an endpoint, counting tokens and
//! deciding rate limits (in-process and through Redis).
//! Run with `cargo bench -p gateway-actors` (or `make bench-micro`).

use std::hint::black_box;
use std::time::Duration;

use actors::balance::{pick, Candidate};
use actors::limits::{Admission, Gcra, LocalLimiter, RateLimiter};
use actors::shared::{RedisFailureMode, SharedRedis, SharedSettings};
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
    // The slowest 4 MiB prompts to reserve for (tests/budgets.rs sends them): before the bound
    // one run of a letter was one BPE piece (quadratic; past a million characters a panic);
    // since, " 1" repeated is the slowest (one regex match per byte).
    let mut group = c.benchmark_group("tokens_worst_case_4mib");
    group.sample_size(10);
    for (name, unit) in [
        ("one_letter", "a"),
        ("spaced_digits", " 1"),
        ("english", "The cat. "),
    ] {
        let text = unit.repeat((4 * 1024 * 1024 - 100) / unit.len());
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]});
        let body = serde_json::to_vec(&body).expect("json");
        group.bench_function(name, |b| {
            b.iter(|| actors::tokens::worst_case(black_box(&body), Some(100)))
        });
    }
    group.finish();
}

/// One in-process admission (requests and tokens) on a hot key, and spread over 100k keys.
fn limit_decision_local(c: &mut Criterion) {
    const SECOND: i64 = 1_000_000_000;
    let limiter = LocalLimiter::new(1_000_000);
    let requests = Gcra::per_minute(u64::MAX >> 20, 1_000_000, SECOND);
    let tokens = Gcra::per_minute(u64::MAX >> 20, 1_000_000, SECOND).map(|g| (g, 100));
    let subjects: Vec<String> = (0..100_000).map(|i| format!("key:{i}")).collect();
    let mut group = c.benchmark_group("limit_decision_local");
    group.bench_function("hot_key", |b| {
        b.iter(|| {
            let admission = Admission {
                subject: "key:1",
                requests,
                tokens,
            };
            black_box(limiter.admit_at(black_box(&admission), limiter.now()))
        })
    });
    let mut next = 0usize;
    group.bench_function("100k_keys", |b| {
        b.iter(|| {
            next = (next + 1) % subjects.len();
            let admission = Admission {
                subject: &subjects[next],
                requests,
                tokens,
            };
            black_box(limiter.admit_at(black_box(&admission), limiter.now()))
        })
    });
    group.finish();
}

/// One admission through Redis (`BENCH_REDIS_URL`, default this machine's): the script round
/// trip, sequentially on one connection. Skipped with a note when Redis does not answer.
fn limit_decision_redis(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("limit_decision_redis skipped: {error}");
            return;
        }
    };
    let url = std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let settings = SharedSettings {
        url,
        prefix: format!("gwbench-{}", std::process::id()),
        timeout: Duration::from_millis(100),
        pool_size: 1,
        failure: RedisFailureMode::Deny,
        budget_lease: Duration::from_secs(60),
        budget_reconcile: Duration::from_secs(60),
    };
    let Ok(limiter) = runtime.block_on(async { SharedRedis::new(&settings) }) else {
        eprintln!("limit_decision_redis skipped: no pool");
        return;
    };
    let limiter = RateLimiter::with_shared(1_000, limiter);
    let requests = Gcra::per_minute(u64::MAX >> 20, 1_000_000, 1_000_000_000);
    let admission = Admission {
        subject: "key:1",
        requests,
        tokens: None,
    };
    if runtime.block_on(limiter.admit(admission)).is_err() {
        eprintln!("limit_decision_redis skipped: redis does not answer");
        return;
    }
    c.bench_function("limit_decision_redis", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = std::time::Instant::now();
                for _ in 0..iterations {
                    let _ = black_box(limiter.admit(admission).await);
                }
                started.elapsed()
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = balancer_pick, token_count, limit_decision_local, limit_decision_redis
}
criterion_main!(benches);
