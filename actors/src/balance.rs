//! Endpoint selection: pure functions over the eligible endpoints, tested without a runtime.

use std::sync::Arc;

use rand::Rng;

use crate::endpoint::Endpoint;
use crate::settings::BalanceStrategy;

/// What a balancer needs to know about a candidate.
pub trait Candidate {
    fn weight(&self) -> u32;
    fn in_flight(&self) -> u32;
    fn latency_micros(&self) -> f64;
}

impl Candidate for Arc<Endpoint> {
    fn weight(&self) -> u32 {
        self.spec.weight
    }
    fn in_flight(&self) -> u32 {
        self.stats.in_flight()
    }
    fn latency_micros(&self) -> f64 {
        self.stats.latency_ewma_micros()
    }
}

/// Chooses the index of one candidate that `skip` does not exclude.
///
/// `counter` is a per-pool sequence number that makes round robin and weighted selection
/// deterministic; `rng` feeds the random choices of P2C.
pub fn pick<C: Candidate>(
    strategy: BalanceStrategy,
    candidates: &[C],
    skip: impl Fn(usize) -> bool,
    counter: u64,
    rng: &mut impl Rng,
) -> Option<usize> {
    match strategy {
        BalanceStrategy::RoundRobin => round_robin(candidates.len(), &skip, counter),
        BalanceStrategy::Weighted => weighted(candidates, &skip, counter),
        BalanceStrategy::LeastInFlight => least_in_flight(candidates, &skip, counter),
        BalanceStrategy::P2cEwma => p2c_ewma(candidates, &skip, rng),
    }
}

fn round_robin(len: usize, skip: &impl Fn(usize) -> bool, counter: u64) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let start = (counter % len as u64) as usize;
    (0..len).map(|i| (start + i) % len).find(|&i| !skip(i))
}

/// Every run of `total_weight` consecutive counters visits each candidate exactly `weight`
/// times, so the distribution is exact rather than merely expected.
fn weighted<C: Candidate>(
    candidates: &[C],
    skip: &impl Fn(usize) -> bool,
    counter: u64,
) -> Option<usize> {
    let total: u64 = candidates
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip(*i))
        .map(|(_, c)| u64::from(c.weight()))
        .sum();
    if total == 0 {
        // Every remaining candidate has weight zero: fall back to plain rotation.
        return round_robin(candidates.len(), skip, counter);
    }
    let mut target = counter % total;
    for (i, candidate) in candidates.iter().enumerate() {
        if skip(i) {
            continue;
        }
        let weight = u64::from(candidate.weight());
        if target < weight {
            return Some(i);
        }
        target -= weight;
    }
    None
}

/// Fewest in-flight requests wins; ties rotate with `counter` so equal endpoints share load.
fn least_in_flight<C: Candidate>(
    candidates: &[C],
    skip: &impl Fn(usize) -> bool,
    counter: u64,
) -> Option<usize> {
    let len = candidates.len();
    if len == 0 {
        return None;
    }
    let start = (counter % len as u64) as usize;
    (0..len)
        .map(|i| (start + i) % len)
        .filter(|&i| !skip(i))
        .min_by_key(|&i| candidates[i].in_flight())
}

/// The load an endpoint would carry with one more request, per unit of weight.
pub fn p2c_cost<C: Candidate>(candidate: &C) -> f64 {
    let latency = candidate.latency_micros().max(1.0);
    let weight = f64::from(candidate.weight().max(1));
    f64::from(candidate.in_flight() + 1) * latency / weight
}

fn p2c_ewma<C: Candidate>(
    candidates: &[C],
    skip: &impl Fn(usize) -> bool,
    rng: &mut impl Rng,
) -> Option<usize> {
    let available = (0..candidates.len()).filter(|&i| !skip(i)).count();
    let nth_available = |n: usize| (0..candidates.len()).filter(|&i| !skip(i)).nth(n);
    match available {
        0 => None,
        1 => nth_available(0),
        _ => {
            let first = rng.random_range(0..available);
            let mut second = rng.random_range(0..available - 1);
            if second >= first {
                second += 1;
            }
            let a = nth_available(first)?;
            let b = nth_available(second)?;
            if p2c_cost(&candidates[b]) < p2c_cost(&candidates[a]) {
                Some(b)
            } else {
                Some(a)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[derive(Debug, Clone)]
    struct Fake {
        weight: u32,
        in_flight: u32,
        latency: f64,
    }

    impl Candidate for Fake {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn in_flight(&self) -> u32 {
            self.in_flight
        }
        fn latency_micros(&self) -> f64 {
            self.latency
        }
    }

    fn fake(weight: u32, in_flight: u32, latency: f64) -> Fake {
        Fake {
            weight,
            in_flight,
            latency,
        }
    }

    fn counts(strategy: BalanceStrategy, candidates: &[Fake], rounds: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = vec![0; candidates.len()];
        for counter in 0..rounds {
            let i = pick(strategy, candidates, |_| false, counter, &mut rng).expect("a pick");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_even() {
        let candidates = vec![fake(1, 0, 0.0); 3];
        assert_eq!(
            counts(BalanceStrategy::RoundRobin, &candidates, 300),
            vec![100; 3]
        );
    }

    #[test]
    fn weighted_is_exact_over_a_cycle() {
        let candidates = vec![fake(1, 0, 0.0), fake(3, 0, 0.0), fake(0, 0, 0.0)];
        assert_eq!(
            counts(BalanceStrategy::Weighted, &candidates, 400),
            vec![100, 300, 0]
        );
    }

    #[test]
    fn least_in_flight_prefers_idle() {
        let candidates = vec![fake(1, 5, 0.0), fake(1, 0, 0.0), fake(1, 2, 0.0)];
        assert_eq!(
            counts(BalanceStrategy::LeastInFlight, &candidates, 10),
            vec![0, 10, 0]
        );
    }

    #[test]
    fn p2c_avoids_the_slow_endpoint() {
        let candidates = vec![fake(1, 0, 100.0), fake(1, 0, 100.0), fake(1, 0, 50_000.0)];
        let result = counts(BalanceStrategy::P2cEwma, &candidates, 3000);
        // The slow endpoint only wins when it is drawn against itself, which P2C never does.
        assert_eq!(result[2], 0);
        assert!(result[0] > 1200 && result[1] > 1200, "{result:?}");
    }

    #[test]
    fn empty_and_fully_skipped_sets_pick_nothing() {
        let mut rng = SmallRng::seed_from_u64(1);
        let none: Vec<Fake> = Vec::new();
        let two = vec![fake(1, 0, 1.0), fake(1, 0, 1.0)];
        for strategy in [
            BalanceStrategy::RoundRobin,
            BalanceStrategy::Weighted,
            BalanceStrategy::LeastInFlight,
            BalanceStrategy::P2cEwma,
        ] {
            assert_eq!(pick(strategy, &none, |_| false, 0, &mut rng), None);
            assert_eq!(pick(strategy, &two, |_| true, 0, &mut rng), None);
        }
    }

    fn strategy() -> impl Strategy<Value = BalanceStrategy> {
        prop_oneof![
            Just(BalanceStrategy::RoundRobin),
            Just(BalanceStrategy::Weighted),
            Just(BalanceStrategy::LeastInFlight),
            Just(BalanceStrategy::P2cEwma),
        ]
    }

    proptest! {
        #[test]
        fn pick_never_returns_a_skipped_or_missing_index(
            strategy in strategy(),
            loads in prop::collection::vec((0u32..5, 0u32..20, 0.0f64..1e6), 0..12),
            skipped in prop::collection::vec(any::<bool>(), 12),
            counter in any::<u64>(),
            seed in any::<u64>(),
        ) {
            let candidates: Vec<Fake> = loads.iter().map(|&(w, f, l)| fake(w, f, l)).collect();
            let mut rng = SmallRng::seed_from_u64(seed);
            let picked = pick(strategy, &candidates, |i| skipped[i], counter, &mut rng);
            let any_available = (0..candidates.len()).any(|i| !skipped[i]);
            match picked {
                Some(i) => prop_assert!(i < candidates.len() && !skipped[i]),
                None => prop_assert!(!any_available),
            }
        }

        #[test]
        fn weighted_distribution_matches_weights(weights in prop::collection::vec(1u32..6, 1..6)) {
            let candidates: Vec<Fake> = weights.iter().map(|&w| fake(w, 0, 0.0)).collect();
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let result = counts(BalanceStrategy::Weighted, &candidates, total * 10);
            for (count, weight) in result.iter().zip(&weights) {
                prop_assert_eq!(*count, u64::from(*weight) * 10);
            }
        }

        #[test]
        fn least_in_flight_picks_a_minimum(loads in prop::collection::vec(0u32..50, 1..10), counter in any::<u64>()) {
            let candidates: Vec<Fake> = loads.iter().map(|&f| fake(1, f, 0.0)).collect();
            let mut rng = SmallRng::seed_from_u64(0);
            let i = pick(BalanceStrategy::LeastInFlight, &candidates, |_| false, counter, &mut rng).expect("a pick");
            prop_assert_eq!(loads[i], *loads.iter().min().expect("non-empty"));
        }

        #[test]
        fn p2c_never_picks_the_unique_worst(loads in prop::collection::vec((0u32..20, 1.0f64..1e5), 2..10), seed in any::<u64>()) {
            let candidates: Vec<Fake> = loads.iter().map(|&(f, l)| fake(1, f, l)).collect();
            let costs: Vec<f64> = candidates.iter().map(p2c_cost).collect();
            let worst = costs.iter().cloned().fold(f64::MIN, f64::max);
            let worst_count = costs.iter().filter(|&&c| c == worst).count();
            let mut rng = SmallRng::seed_from_u64(seed);
            let i = pick(BalanceStrategy::P2cEwma, &candidates, |_| false, 0, &mut rng).expect("a pick");
            if worst_count == 1 {
                prop_assert!(costs[i] < worst);
            }
        }
    }
}
