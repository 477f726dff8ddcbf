//! Budgets hold against a hostile client: the reservation covers whichever completion limit
//! the upstream obeys, the upstream is told the ceiling that was reserved, and no prompt takes
//! long to count.

mod common;

use std::time::{Duration, Instant};

use awc::http::Method;
use common::*;
use serde_json::{json, Value};

/// A gateway with authentication on, `default_max_tokens` of 50, and one mock upstream.
async fn budgeted_gateway() -> (TestGateway, MockUpstream, String) {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.usage.default_max_tokens = 50;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    (gateway, upstream, admin)
}

fn chat_with(limits: Value) -> Value {
    let mut body = json!({"model": "llm/m", "messages": [{"role": "user", "content": "hi"}]});
    for (field, value) in limits.as_object().expect("object") {
        body[field] = value.clone();
    }
    body
}

fn last_body(upstream: &MockUpstream) -> Value {
    upstream
        .state
        .last_body
        .lock()
        .expect("lock")
        .clone()
        .expect("a request reached the upstream")
}

/// `{"max_completion_tokens": 1, "max_tokens": 4000}` reserves 4,000 (python-models and the gRPC
/// converter obey `max_tokens`), so a 500-token budget refuses it before the upstream sees it.
#[actix_rt::test]
async fn the_reservation_covers_the_larger_completion_limit() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "small", "token_budget": 500}))
        .await;
    let body = chat_with(json!({"max_completion_tokens": 1, "max_tokens": 4000}));
    let (status, reply) = gateway
        .send_as(Method::POST, "/v1/chat/completions", &key, Some(&body))
        .await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["error"]["code"], "insufficient_quota");
    assert_eq!(upstream.state.requests(), 0, "nothing reached the upstream");
    // Within the budget either way: forwarded as sent.
    let body = chat_with(json!({"max_completion_tokens": 300, "max_tokens": 20}));
    let (status, reply) = gateway
        .send_as(Method::POST, "/v1/chat/completions", &key, Some(&body))
        .await;
    assert_eq!(status, 200, "{reply}");
    let seen = last_body(&upstream);
    assert_eq!(
        (
            seen["max_tokens"].as_i64(),
            seen["max_completion_tokens"].as_i64()
        ),
        (Some(20), Some(300))
    );
    gateway.stop().await;
}

/// A request with no completion limit reserves `default_max_tokens` and the upstream is told
/// it; a key with no budget (nothing reserved) has its body forwarded untouched.
#[actix_rt::test]
async fn the_reserved_ceiling_is_sent_upstream() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, budgeted) = gateway
        .create_key(&admin, json!({"name": "budgeted", "token_budget": 10000}))
        .await;
    let (status, reply) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &budgeted,
            Some(&chat_with(json!({}))),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(last_body(&upstream)["max_tokens"], 50);
    let mut stream = chat_with(json!({"stream": true}));
    stream["stream"] = json!(true);
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {budgeted}")))
        .send_json(&stream)
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    response.body().await.expect("body");
    let seen = last_body(&upstream);
    assert_eq!(
        (
            seen["max_tokens"].as_i64(),
            seen["stream_options"]["include_usage"].as_bool()
        ),
        (Some(50), Some(true))
    );

    let (_, free) = gateway.create_key(&admin, json!({"name": "free"})).await;
    let (status, reply) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &free,
            Some(&chat_with(json!({}))),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        last_body(&upstream).get("max_tokens").is_none(),
        "nothing reserved, nothing added"
    );
    gateway.stop().await;
}

/// `max_tokens` near `i64::MAX` overflowed the reservation and a negative one was forwarded,
/// both answered 200 on a budgeted key: now both are 400s that never reach the upstream.
#[actix_rt::test]
async fn hostile_completion_limits_are_refused_on_a_budgeted_key() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "hostile", "token_budget": 500}))
        .await;
    for limits in [
        json!({"max_tokens": i64::MAX}),
        json!({"max_tokens": -1}),
        json!({"max_completion_tokens": -4000, "max_tokens": 1}),
        json!({"max_completion_tokens": 1_000_001}),
    ] {
        let (status, reply) = gateway
            .send_as(
                Method::POST,
                "/v1/chat/completions",
                &key,
                Some(&chat_with(limits.clone())),
            )
            .await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{limits}: {reply}"
        );
    }
    assert_eq!(upstream.state.requests(), 0, "nothing reached the upstream");
    gateway.stop().await;
}

/// The body limit, and chat bodies of about that size whose prompts were the slowest to count.
/// Before the bound: one run of a letter, of spaces or of emoji was one BPE piece, merged in
/// quadratic time (999,999 emoji: about two hours), and past a million characters a fancy-regex
/// stack overflow that tiktoken panicked on. Since: the most regex matches per byte (" 1").
/// Bodies full of JSON escapes are slower to parse than any of these (unoptimised serde_json
/// takes ~0.3 s for each of the two parses), but the parse is not the count.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

fn worst_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let chat = |text: String| {
        let body = json!({"model": "llm/m", "messages": [{"role": "user", "content": text}]});
        let body = serde_json::to_vec(&body).expect("json");
        assert!(body.len() <= BODY_LIMIT && body.len() > BODY_LIMIT - 200);
        body
    };
    let filled = |unit: &str| chat(unit.repeat((BODY_LIMIT - 100) / unit.len()));
    vec![
        ("one letter", filled("a")),
        ("spaces", filled(" ")),
        (
            "emoji",
            chat("😀".repeat(999_999) + &"a".repeat(BODY_LIMIT - 100 - 4 * 999_999)),
        ),
        ("spaced digits", filled(" 1")),
    ]
}

/// Every one of the worst 4 MiB prompts is refused (a 1,000-token budget) well within a
/// second, and admitted (a budget larger than any of them) in a few: the count is bounded
/// (`actors::tokens`, whose `the_worst_texts_are_counted_with_bounded_work` pins the work)
/// and runs on a blocking thread. An admitted request also crosses to the mock upstream and
/// back, 4 MiB each way, which is not counting.
#[actix_rt::test]
async fn the_worst_prompts_are_admitted_or_refused_quickly() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, small) = gateway
        .create_key(&admin, json!({"name": "small", "token_budget": 1000}))
        .await;
    let (_, large) = gateway
        .create_key(
            &admin,
            json!({"name": "large", "token_budget": 100_000_000}),
        )
        .await;
    // Keys, their budgets and the BPE tables are loaded once per process, not per prompt.
    for key in [&small, &large] {
        let (status, reply) = gateway
            .send_as(
                Method::POST,
                "/v1/chat/completions",
                key,
                Some(&chat_with(json!({}))),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    for (name, body) in worst_bodies() {
        for (key, expected, within) in [(&small, 429, 1), (&large, 200, 5)] {
            let started = Instant::now();
            let response = gateway
                .client
                .post(gateway.url("/v1/chat/completions"))
                .insert_header(("authorization", format!("Bearer {key}")))
                .insert_header(("content-type", "application/json"))
                .send_body(body.clone())
                .await
                .expect("the gateway answers");
            let elapsed = started.elapsed();
            assert_eq!(response.status().as_u16(), expected, "{name}");
            assert!(elapsed < Duration::from_secs(within), "{name}: {elapsed:?}");
        }
    }
    assert_eq!(
        upstream.state.requests(),
        2 + 4,
        "the large budget's requests were sent"
    );
    gateway.stop().await;
}
