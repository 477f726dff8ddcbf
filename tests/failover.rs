//! Failure handling: failover before the first byte, ejection and re-admission, timeouts, and
//! the errors a client sees when nothing can answer.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::*;
use gateway::config::raw::RawStrategy;
use serde_json::{json, Value};

struct LoadCounters {
    ok: Cell<u64>,
    failed: Cell<u64>,
    stop: Cell<bool>,
}

async fn eligible(gateway: &TestGateway, address: &str) -> bool {
    let pool = gateway.registry.pool("llm").expect("pool");
    let state = pool.state().await.expect("state");
    state
        .endpoints
        .iter()
        .any(|e| e.address == address && e.eligible)
}

#[actix_rt::test]
async fn killing_an_upstream_under_load_fails_no_request() {
    let mocks = [mock("a"), mock("b"), mock("c")];
    let mut raw = test_config();
    raw.upstream_defaults.strategy = Some(RawStrategy::RoundRobin);
    raw.upstream_defaults.ejection_consecutive_failures = Some(2);
    raw.upstream_defaults.ejection_base_ms = Some(300);
    let gateway = start_gateway(
        raw,
        &services_for("llm", &[&mocks[0], &mocks[1], &mocks[2]], &[]),
    )
    .await;
    let victim = format!("127.0.0.1:{}", mocks[1].addr.port());
    gateway.wait_eligible("llm", 3).await;

    let counters = Rc::new(LoadCounters {
        ok: Cell::new(0),
        failed: Cell::new(0),
        stop: Cell::new(false),
    });
    let mut workers = Vec::new();
    for _ in 0..4 {
        let counters = Rc::clone(&counters);
        let client = client();
        let url = gateway.url("/v1/chat/completions");
        workers.push(actix_web::rt::spawn(async move {
            while !counters.stop.get() {
                let result = client.post(&url).send_json(&chat("llm/m")).await;
                match result {
                    Ok(mut response) if response.status().is_success() => {
                        let _ = response.body().await;
                        counters.ok.set(counters.ok.get() + 1);
                    }
                    _ => counters.failed.set(counters.failed.get() + 1),
                }
            }
        }));
    }
    let load = Rc::clone(&counters);
    wait_for("load to run", || {
        let c = Rc::clone(&load);
        async move { c.ok.get() >= 40 }
    })
    .await;

    mocks[1].stop().await;
    wait_for("the dead endpoint to be taken out", || {
        eligible_not(&gateway, &victim)
    })
    .await;
    let pool = gateway.registry.pool("llm").expect("pool");
    let state = pool.state().await.expect("state");
    let dead = state
        .endpoints
        .iter()
        .find(|e| e.address == victim)
        .expect("still known");
    assert!(dead.ejections >= 1, "passive ejection happened: {dead:?}");
    let during = counters.ok.get();
    wait_for("load to continue without it", || {
        let c = Rc::clone(&load);
        async move { c.ok.get() >= during + 60 }
    })
    .await;

    let revived = MockUpstream::start_with_state(&victim, mocks[1].state.clone(), 1)
        .expect("restart on the same port");
    wait_for("the endpoint to be re-admitted", || {
        eligible(&gateway, &victim)
    })
    .await;
    let before = revived.state.requests();
    wait_for("traffic to reach it again", || {
        let s = revived.state.clone();
        async move { s.requests() > before + 5 }
    })
    .await;

    counters.stop.set(true);
    for worker in workers {
        worker.await.expect("load worker");
    }
    assert_eq!(
        counters.failed.get(),
        0,
        "{} requests succeeded",
        counters.ok.get()
    );
    gateway.stop().await;
}

async fn eligible_not(gateway: &TestGateway, address: &str) -> bool {
    !eligible(gateway, address).await
}

#[actix_rt::test]
async fn failing_upstreams_give_502_after_bounded_attempts() {
    let mocks = [mock("a"), mock("b")];
    let gateway = start_gateway(
        test_config(),
        &services_for("llm", &[&mocks[0], &mocks[1]], &[]),
    )
    .await;
    gateway.wait_ready().await;
    for m in &mocks {
        m.state.set_mode(Mode::Fail);
    }
    let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "upstream_error");
    // Two endpoints, three attempts allowed: each endpoint is tried once, none twice.
    assert_eq!(mocks.iter().map(|m| m.state.requests()).sum::<u64>(), 2);
    gateway.stop().await;
}

#[actix_rt::test]
async fn retry_budget_bounds_retries() {
    let mocks = [mock("a"), mock("b")];
    let mut raw = test_config();
    raw.upstream_defaults.retry_budget_min = Some(0);
    raw.upstream_defaults.retry_budget_ratio = Some(0.0);
    let gateway = start_gateway(raw, &services_for("llm", &[&mocks[0], &mocks[1]], &[])).await;
    gateway.wait_ready().await;
    for m in &mocks {
        m.state.set_mode(Mode::Fail);
    }
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 502);
    assert_eq!(
        mocks.iter().map(|m| m.state.requests()).sum::<u64>(),
        1,
        "no budget, no retry"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_hanging_upstream_times_out_with_504() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.upstream_defaults.first_byte_timeout_ms = Some(300);
    raw.upstream_defaults.max_attempts = Some(1);
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    upstream.state.set_mode(Mode::Hang);
    let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "upstream_timeout");
    gateway.stop().await;
}

#[actix_rt::test]
async fn no_endpoint_gives_503() {
    let upstream = mock("a");
    let services = json!({
        "empty": {"instances": []},
        "llm": {"host": "127.0.0.1", "port": upstream.addr.port(), "health_check": "/health"}
    });
    let gateway = start_gateway(test_config(), &services).await;
    let (status, _, body) = gateway.post("/v1/chat/completions", &chat("empty/m")).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "no_healthy_upstream");

    // An upstream that fails its health checks leaves the service without endpoints too.
    gateway.wait_ready().await;
    upstream.state.set_mode(Mode::Fail);
    let registry = gateway.registry.clone();
    wait_for("the endpoint to turn unhealthy", || {
        let registry = registry.clone();
        async move {
            registry
                .pool("llm")
                .is_some_and(|p| p.snapshot().eligible.is_empty())
        }
    })
    .await;
    let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 503);
    assert_eq!(error_code(&body), "no_healthy_upstream");
    let (status, ready) = gateway.get_json("/ready").await;
    assert_eq!(status, 503);
    assert_eq!(ready["services"]["llm"]["ready"], false);
    gateway.stop().await;
}

#[actix_rt::test]
async fn ejection_never_takes_the_last_endpoints() {
    let mocks = [mock("a"), mock("b")];
    // No active health checks: only passive ejection decides.
    let services = json!({"llm": {"instances": [
        {"host": "127.0.0.1", "port": mocks[0].addr.port()},
        {"host": "127.0.0.1", "port": mocks[1].addr.port()}
    ]}});
    let mut raw = test_config();
    raw.upstream_defaults.ejection_consecutive_failures = Some(2);
    raw.upstream_defaults.ejection_base_ms = Some(60_000);
    let gateway = start_gateway(raw, &services).await;
    gateway.wait_ready().await;
    // 503s: endpoints that cannot take work (a request both fail on with 500 ejects neither).
    for m in &mocks {
        m.state.set_mode(Mode::Unavailable);
    }
    for _ in 0..10 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 502);
    }
    let pool = gateway.registry.pool("llm").expect("pool");
    let registry_pool = pool.clone();
    wait_for("one endpoint ejected", || {
        let pool = registry_pool.clone();
        async move {
            pool.state()
                .await
                .is_ok_and(|s| s.endpoints.iter().filter(|e| e.ejections > 0).count() == 1)
        }
    })
    .await;
    let state = pool.state().await.expect("state");
    assert_eq!(
        state.endpoints.iter().filter(|e| e.eligible).count(),
        1,
        "{state:?}"
    );
    // Further failures cannot eject the last one (min_eligible_endpoints = 1).
    for _ in 0..10 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 502);
    }
    let state = pool.state().await.expect("state");
    assert_eq!(
        state.endpoints.iter().filter(|e| e.eligible).count(),
        1,
        "{state:?}"
    );
    gateway.stop().await;
}

/// An upstream answer larger than `server.max_response_bytes` is never buffered whole: the
/// client gets a 502 that says why, and answers within the limit still pass.
#[actix_rt::test]
async fn an_oversized_upstream_answer_is_a_502() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.server.max_response_bytes = 1024;
    raw.upstream_defaults.max_attempts = Some(1);
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    // The mock echoes the prompt, so a 4 KiB prompt makes a 4 KiB answer.
    let long = "x".repeat(4096);
    let body = json!({"model": "llm/m", "messages": [{"role": "user", "content": long}]});
    let (status, _, answer) = gateway.post("/v1/chat/completions", &body).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 502, "{answer}");
    assert!(answer.contains("limit of 1024 bytes"), "{answer}");
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 200);
    gateway.stop().await;
}

/// Ejections so far, by endpoint address.
async fn ejections(gateway: &TestGateway, service: &str) -> Vec<(String, u64)> {
    let pool = gateway.registry.pool(service).expect("pool");
    let state = pool.state().await.expect("state");
    state
        .endpoints
        .iter()
        .map(|e| (e.address.clone(), u64::from(e.ejections)))
        .collect()
}

/// Two endpoints with passive ejection at the first failure and no active checks.
fn touchy_pair(mocks: &[MockUpstream; 2]) -> (gateway::config::RawConfig, Value) {
    let services = json!({"llm": {"instances": [
        {"host": "127.0.0.1", "port": mocks[0].addr.port()},
        {"host": "127.0.0.1", "port": mocks[1].addr.port()}
    ]}});
    let mut raw = test_config();
    raw.upstream_defaults.ejection_consecutive_failures = Some(1);
    raw.upstream_defaults.ejection_base_ms = Some(60_000);
    (raw, services)
}

/// A buffered request still generating when the first-byte timeout runs out was accepted and
/// worked on: it is not sent to a second endpoint (which would repeat the work), it does not
/// count against the endpoint (its head waits for the whole generation), and its prompt is
/// billed.
#[actix_rt::test]
async fn a_generation_past_the_timeout_is_not_retried_and_bills_its_prompt() {
    let mocks = [mock("a"), mock("b")];
    let (mut raw, services) = touchy_pair(&mocks);
    raw.upstream_defaults.first_byte_timeout_ms = Some(200);
    raw.auth = config_on(Db::Sqlite).await.auth;
    let gateway = start_gateway(raw, &services).await;
    gateway.wait_eligible("llm", 2).await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway.create_key(&admin, json!({"name": "slow"})).await;
    for m in &mocks {
        m.state.set_mode(Mode::Hang);
    }
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(&chat("llm/m"))
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 504);
    assert_eq!(
        error_code(&response.body().await.expect("body")),
        "upstream_timeout"
    );
    let tried: u64 = mocks.iter().map(|m| m.state.requests()).sum();
    assert_eq!(tried, 1, "the work is not repeated on another endpoint");
    let rows = gateway.usage_rows(id, 1).await;
    assert_eq!((rows[0].status, rows[0].estimated), (504, true), "{rows:?}");
    assert!(rows[0].prompt_tokens > 0, "the prompt is billed: {rows:?}");
    assert!(
        ejections(&gateway, "llm")
            .await
            .iter()
            .all(|(_, n)| *n == 0),
        "a long generation ejects no endpoint"
    );
    gateway.stop().await;
}

/// A request every endpoint answers 500 to is the request's fault: it is tried on a second
/// endpoint, not a third, and ejects neither. An endpoint that fails what another then serves
/// is at fault, and is ejected.
#[actix_rt::test]
async fn only_endpoints_that_fail_what_others_serve_are_blamed() {
    let mocks = [mock("a"), mock("b")];
    let (raw, services) = touchy_pair(&mocks);
    let gateway = start_gateway(raw, &services).await;
    gateway.wait_eligible("llm", 2).await;
    for m in &mocks {
        m.state.set_mode(Mode::Fail);
    }
    for _ in 0..3 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 502);
    }
    assert_eq!(mocks.iter().map(|m| m.state.requests()).sum::<u64>(), 6);
    assert!(
        ejections(&gateway, "llm")
            .await
            .iter()
            .all(|(_, n)| *n == 0),
        "a request that fails everywhere ejects nobody"
    );

    mocks[1].state.set_mode(Mode::Normal);
    while mocks[0].state.requests() == 3 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 200, "served by b, after a retry when a was picked");
    }
    let failing = format!("127.0.0.1:{}", mocks[0].addr.port());
    wait_for("the failing endpoint to be ejected", || async {
        ejections(&gateway, "llm")
            .await
            .iter()
            .any(|(address, n)| *address == failing && *n > 0)
    })
    .await;
    gateway.stop().await;
}

/// An answer over `server.max_response_bytes` is what the client asked for: one endpoint
/// answers it, the endpoint is not blamed, and the work read is billed.
#[actix_rt::test]
async fn an_oversized_answer_is_billed_and_not_retried() {
    let mocks = [mock("a"), mock("b")];
    let (mut raw, services) = touchy_pair(&mocks);
    raw.server.max_response_bytes = 1024;
    raw.auth = config_on(Db::Sqlite).await.auth;
    let gateway = start_gateway(raw, &services).await;
    gateway.wait_eligible("llm", 2).await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway.create_key(&admin, json!({"name": "big"})).await;
    let long = "x".repeat(4096);
    let body = json!({"model": "llm/m", "messages": [{"role": "user", "content": long}]});
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(&body)
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 502);
    assert_eq!(mocks.iter().map(|m| m.state.requests()).sum::<u64>(), 1);
    let rows = gateway.usage_rows(id, 1).await;
    assert_eq!(
        (rows[0].status, rows[0].completion_tokens, rows[0].estimated),
        (502, 256, true),
        "1,024 bytes read at 4 bytes a token: {rows:?}"
    );
    assert!(rows[0].prompt_tokens > 0);
    assert!(ejections(&gateway, "llm")
        .await
        .iter()
        .all(|(_, n)| *n == 0));
    gateway.stop().await;
}
