//! The response cache end to end: hits and misses, TTL expiry, isolation between keys, a
//! cached answer replayed as a stream, usage recorded as cached, and the cache switched off.

mod common;

use common::*;
use serde_json::{json, Value};

fn deterministic(content: &str) -> Value {
    json!({"model": "llm/m", "temperature": 0, "messages": [{"role": "user", "content": content}]})
}

async fn cached_gateway(
    ttl_secs: u64,
    enabled: bool,
) -> (
    MockUpstream,
    TestGateway,
    String,
    (i64, String),
    (i64, String),
) {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.cache.enabled = enabled;
    raw.cache.ttl_secs = ttl_secs;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let first = gateway.create_key(&admin, json!({"name": "one"})).await;
    let second = gateway.create_key(&admin, json!({"name": "two"})).await;
    (upstream, gateway, admin, first, second)
}

async fn ask(gateway: &TestGateway, key: &str, body: &Value) -> (u16, String, Vec<u8>) {
    ask_with(gateway, key, body, None).await
}

async fn ask_with(
    gateway: &TestGateway,
    key: &str,
    body: &Value,
    extra: Option<(&str, &str)>,
) -> (u16, String, Vec<u8>) {
    let mut request = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {key}")));
    if let Some(header) = extra {
        request = request.insert_header(header);
    }
    let mut response = request.send_json(body).await.expect("response");
    let bytes = response.body().limit(1 << 20).await.expect("body");
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (response.status().as_u16(), cache, bytes.to_vec())
}

#[actix_rt::test]
async fn deterministic_requests_hit_per_key_and_are_recorded_as_cached() {
    let (upstream, gateway, _, (first_id, first), (_, second)) = cached_gateway(300, true).await;
    let body = deterministic("hello there");
    let (status, cache, miss) = ask(&gateway, &first, &body).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    let (status, cache, hit) = ask(&gateway, &first, &body).await;
    assert_eq!((status, cache.as_str()), (200, "HIT"));
    assert_eq!(hit, miss, "a hit returns the cached answer unchanged");
    assert_eq!(upstream.state.requests(), 1);
    // Key order and `user` do not matter.
    let reordered = json!({"user": "someone", "messages": [{"content": "hello there", "role": "user"}],
        "temperature": 0, "model": "llm/m"});
    assert_eq!(ask(&gateway, &first, &reordered).await.1, "HIT");
    // Another key has its own cache.
    assert_eq!(ask(&gateway, &second, &body).await.1, "MISS");
    assert_eq!(upstream.state.requests(), 2);
    // Another prompt is another entry.
    assert_eq!(
        ask(&gateway, &first, &deterministic("other")).await.1,
        "MISS"
    );
    // A sampled request is not cached, unless the client opts in.
    let sampled = json!({"model": "llm/m", "temperature": 0.7, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(ask(&gateway, &first, &sampled).await.1, "");
    assert_eq!(ask(&gateway, &first, &sampled).await.1, "");
    let opt_in = Some(("x-gateway-cache", "true"));
    assert_eq!(ask_with(&gateway, &first, &sampled, opt_in).await.1, "MISS");
    assert_eq!(ask_with(&gateway, &first, &sampled, opt_in).await.1, "HIT");

    let rows = gateway.usage_rows(first_id, 8).await;
    let cached: Vec<_> = rows.iter().filter(|r| r.cached).collect();
    assert_eq!(cached.len(), 3, "{rows:?}");
    assert!(cached
        .iter()
        .all(|r| r.status == 200 && r.endpoint == "cache"));
    // The hit ratio's inputs: only cacheable requests look the cache up.
    let metrics = gateway.metrics_text().await;
    for expected in [
        r#"gateway_response_cache_lookups_total{result="hit"} 3"#,
        r#"gateway_response_cache_lookups_total{result="miss"} 4"#,
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_streaming_request_for_a_cached_answer_is_replayed_as_sse() {
    let (upstream, gateway, _, (_, key), _) = cached_gateway(300, true).await;
    let (_, cache, whole) = ask(&gateway, &key, &deterministic("hello there")).await;
    assert_eq!(cache, "MISS");
    let answer: Value = serde_json::from_slice(&whole).expect("json");
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    let mut streaming = deterministic("hello there");
    streaming["stream"] = json!(true);
    let (status, cache, stream) = ask(&gateway, &key, &streaming).await;
    assert_eq!((status, cache.as_str()), (200, "HIT"));
    let text = String::from_utf8(stream).expect("utf8");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("event json"))
        .collect();
    let replayed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(replayed, content);
    assert_eq!(
        events.last().expect("last")["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(
        !text.contains("\"usage\""),
        "the client did not ask for usage"
    );
    // Asking for usage gets the usage event before [DONE].
    streaming["stream_options"] = json!({"include_usage": true});
    let (_, cache, stream) = ask(&gateway, &key, &streaming).await;
    assert_eq!(cache, "HIT");
    assert!(String::from_utf8_lossy(&stream).contains("\"usage\""));
    assert_eq!(upstream.state.requests(), 1);
    gateway.stop().await;
}

#[actix_rt::test]
async fn entries_expire_after_their_ttl() {
    let (upstream, gateway, _, (_, key), _) = cached_gateway(1, true).await;
    let body = deterministic("hello there");
    assert_eq!(ask(&gateway, &key, &body).await.1, "MISS");
    assert_eq!(ask(&gateway, &key, &body).await.1, "HIT");
    let gateway_ref = &gateway;
    let (key_ref, body_ref) = (&key, &body);
    wait_for("the entry to expire", || async move {
        ask(gateway_ref, key_ref, body_ref).await.1 == "MISS"
    })
    .await;
    assert!(upstream.state.requests() >= 2);
    gateway.stop().await;
}

#[actix_rt::test]
async fn with_the_cache_off_every_request_reaches_the_upstream() {
    let (upstream, gateway, _, (_, key), _) = cached_gateway(300, false).await;
    let body = deterministic("hello there");
    for _ in 0..3 {
        let (status, cache, _) = ask(&gateway, &key, &body).await;
        assert_eq!((status, cache.as_str()), (200, ""));
    }
    assert_eq!(upstream.state.requests(), 3);
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_hit_counts_against_the_request_limit() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.cache.enabled = true;
    raw.rate_limit.enabled = true;
    raw.rate_limit.burst = 2;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "k"})).await;
    let body = deterministic("hello there");
    assert_eq!(ask(&gateway, &key, &body).await.1, "MISS");
    assert_eq!(ask(&gateway, &key, &body).await.1, "HIT");
    let (status, _, refused) = ask(&gateway, &key, &body).await;
    assert_eq!(status, 429);
    assert_eq!(error_code(&refused), "rate_limit_exceeded");
    gateway.stop().await;
}
