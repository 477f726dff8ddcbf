//! Each balancing strategy's distribution over real requests.

mod common;

use common::*;
use gateway::config::raw::RawStrategy;

async fn distribution(strategy: RawStrategy, weights: &[u32], requests: usize) -> Vec<u64> {
    let mocks: Vec<MockUpstream> = (0..weights.len()).map(|i| mock(&format!("m{i}"))).collect();
    let refs: Vec<&MockUpstream> = mocks.iter().collect();
    let mut raw = test_config();
    raw.upstream_defaults.strategy = Some(strategy);
    let gateway = start_gateway(raw, &services_for("llm", &refs, weights)).await;
    gateway.wait_ready().await;
    gateway.wait_eligible("llm", weights.len()).await;
    for _ in 0..requests {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 200);
    }
    gateway.stop().await;
    mocks.iter().map(|m| m.state.requests()).collect()
}

#[actix_rt::test]
async fn round_robin_is_even() {
    assert_eq!(
        distribution(RawStrategy::RoundRobin, &[1, 1, 1], 90).await,
        vec![30, 30, 30]
    );
}

#[actix_rt::test]
async fn weighted_honours_weights() {
    assert_eq!(
        distribution(RawStrategy::Weighted, &[1, 2, 3], 120).await,
        vec![20, 40, 60]
    );
}

#[actix_rt::test]
async fn least_inflight_spreads_sequential_load() {
    // Sequential requests leave every endpoint idle, so ties rotate evenly.
    assert_eq!(
        distribution(RawStrategy::LeastInflight, &[1, 1, 1], 60).await,
        vec![20, 20, 20]
    );
}

#[actix_rt::test]
async fn p2c_ewma_avoids_a_slow_endpoint() {
    let slow = MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: "slow".into(),
            latency: std::time::Duration::from_millis(40),
            ..MockOptions::default()
        },
    )
    .expect("mock");
    let fast = [mock("fast-1"), mock("fast-2")];
    let mut raw = test_config();
    raw.upstream_defaults.strategy = Some(RawStrategy::P2cEwma);
    let gateway = start_gateway(raw, &services_for("llm", &[&slow, &fast[0], &fast[1]], &[])).await;
    gateway.wait_eligible("llm", 3).await;
    for _ in 0..100 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 200);
    }
    gateway.stop().await;
    let slow_share = slow.state.requests();
    let fast_share: Vec<u64> = fast.iter().map(|m| m.state.requests()).collect();
    assert!(
        slow_share <= 10,
        "the 40 ms endpoint got {slow_share} of 100"
    );
    assert!(fast_share.iter().all(|&c| c >= 20), "{fast_share:?}");
}
