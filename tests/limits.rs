//! Rate limits end to end: OpenAI's headers and 429s, exact limits across two gateways sharing
//! one Redis, token-per-minute limits on streams whose usage arrives only at the end, and a
//! Redis that dies and comes back. Redis tests need a real server (this machine's, or
//! `TEST_REDIS_URL`); they fail, never skip, without one.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::shared_redis::{redis_url, require_redis, unique_prefix};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A configuration with authentication and rate limits on; Redis when `redis` is given, with
/// a key prefix no other test uses.
async fn limited_config(db: Db, redis: Option<(&str, &str)>) -> gateway::config::RawConfig {
    let mut raw = config_on(db).await;
    raw.rate_limit.enabled = true;
    raw.rate_limit.burst = 10;
    if let Some((url, prefix)) = redis {
        raw.redis.enabled = true;
        raw.redis.url = Some(url.to_string());
        raw.redis.key_prefix = prefix.to_string();
        raw.redis.timeout_ms = 200;
    }
    raw
}

/// `gateway_rate_limit_redis_failures_total` from the metrics page.
async fn redis_failures(gateway: &TestGateway) -> u64 {
    gateway
        .metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("gateway_rate_limit_redis_failures_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("failure counter")
}

fn header(headers: &awc::http::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[actix_rt::test]
async fn requests_beyond_the_burst_get_openai_429s_with_headers() {
    let upstream = mock("a");
    let mut raw = limited_config(Db::Sqlite, None).await;
    raw.rate_limit.burst = 3;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "limited"})).await;
    for remaining in (0..3).rev() {
        let (status, headers, body) = chat_as(&gateway, &key, &chat("llm/m")).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "60");
        assert_eq!(
            header(&headers, "x-ratelimit-remaining-requests"),
            remaining.to_string()
        );
        assert!(header(&headers, "x-ratelimit-reset-requests").ends_with('s'));
    }
    let (status, headers, body) = chat_as(&gateway, &key, &chat("llm/m")).await;
    assert_eq!(status, 429);
    let error: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(error["error"]["type"], "requests");
    assert_eq!(header(&headers, "retry-after"), "1");
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(
        upstream.state.requests(),
        3,
        "refusals never reach the upstream"
    );
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains(r#"gateway_rate_limit_refusals_total{limit="requests",scope="key"} 1"#),
        "{metrics}"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn login_attempts_are_limited_per_client_ip() {
    let upstream = mock("a");
    let mut raw = limited_config(Db::Sqlite, None).await;
    raw.rate_limit.login_requests_per_minute = 3;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = gateway
            .client
            .post(gateway.url("/auth/login"))
            .send_json(&json!({"username": "nobody", "password": "wrong guess"}))
            .await
            .expect("response");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains(r#"gateway_rate_limit_refusals_total{limit="requests",scope="login"} 2"#),
        "{metrics}"
    );
    gateway.stop().await;
}

/// A failed login with `X-Forwarded-For: <client>` from each of `clients` in turn, each for a
/// user name of its own (names have their own throttle); the statuses in order.
async fn logins_forwarded_for(gateway: &TestGateway, clients: &[&str]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for client in clients {
        let username = format!("nobody-{}", uuid::Uuid::new_v4().simple());
        let response = gateway
            .client
            .post(gateway.url("/auth/login"))
            .insert_header(("x-forwarded-for", *client))
            .send_json(&json!({"username": username, "password": "wrong guess"}))
            .await
            .expect("response");
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[actix_rt::test]
async fn behind_a_trusted_proxy_logins_are_limited_per_forwarded_client() {
    let upstream = mock("a");
    let mut raw = limited_config(Db::Sqlite, None).await;
    raw.rate_limit.login_requests_per_minute = 2;
    raw.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    // Two clients behind the proxy: each has its own two attempts.
    let clients = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.1",
        "198.51.100.2",
    ];
    assert_eq!(logins_forwarded_for(&gateway, &clients).await, [401; 4]);
    // A client cannot escape its bucket by forging an earlier hop: the proxy's entry counts.
    let forged = ["203.0.113.7, 198.51.100.1"];
    assert_eq!(logins_forwarded_for(&gateway, &forged).await, [429]);
    gateway.stop().await;
}

#[actix_rt::test]
async fn without_trusted_proxies_forwarded_for_is_ignored() {
    let upstream = mock("a");
    let mut raw = limited_config(Db::Sqlite, None).await;
    raw.rate_limit.login_requests_per_minute = 2;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    // Every claimed client is the one peer, 127.0.0.1, so they share its two attempts.
    let clients = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
    assert_eq!(
        logins_forwarded_for(&gateway, &clients).await,
        [401, 401, 429]
    );
    gateway.stop().await;
}

/// Two gateways, one Redis, 200 concurrent requests split across both against a key allowed
/// one request a minute with a burst of 10: exactly 10 succeed.
#[actix_rt::test]
async fn two_gateways_sharing_redis_enforce_one_limit_exactly() {
    let url = redis_url();
    require_redis(&url);
    let upstream = mock("a");
    let prefix = unique_prefix();
    let mut raw = limited_config(Db::Postgres, Some((&url, &prefix))).await;
    raw.server.workers = 2;
    // This test is about exactness, not the fallback: on a loaded machine a short timeout
    // would hand decisions to the per-replica fallback (the failure counter below says so).
    raw.redis.timeout_ms = 5_000;
    let services = services_for("llm", &[&upstream], &[]);
    let first = start_gateway(raw.clone(), &services).await;
    let second = start_gateway(raw, &services).await;
    first.wait_ready().await;
    second.wait_ready().await;
    let admin = first.admin_token().await;
    let (_, key) = first
        .create_key(&admin, json!({"name": "shared", "rpm": 1}))
        .await;
    let mut ok = 0;
    for answer in concurrent_chats(&[&first, &second], &key, &chat("llm/m"), 200).await {
        match answer {
            (200, _) => ok += 1,
            (429, code) => assert_eq!(code, "rate_limit_exceeded"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        ok, 10,
        "the burst, no more and no less, across both replicas"
    );
    assert_eq!(upstream.state.requests(), 10);
    first.stop().await;
    second.stop().await;
}

/// A token budget shared through Redis: 100 concurrent requests split across two replicas
/// against a budget of ten requests' worth. Each process alone would admit ten (twenty in
/// all); the shared ledger admits at most ten in total and bills no more than the budget.
/// Rate limits are off: budgets are shared whenever Redis is configured.
#[actix_rt::test]
async fn two_gateways_sharing_redis_cannot_overspend_one_budget() {
    let url = redis_url();
    require_redis(&url);
    let upstream = mock("a");
    let mut raw = config_on(Db::Postgres).await;
    raw.redis.enabled = true;
    raw.redis.url = Some(url.clone());
    raw.redis.key_prefix = unique_prefix();
    raw.redis.timeout_ms = 5_000;
    raw.server.workers = 2;
    let services = services_for("llm", &[&upstream], &[]);
    let first = start_gateway(raw.clone(), &services).await;
    let second = start_gateway(raw, &services).await;
    first.wait_ready().await;
    second.wait_ready().await;
    race_a_ten_request_budget(&[&first, &second], &upstream, 100).await;
    first.stop().await;
    second.stop().await;
}

/// How many keys match `pattern` in the Redis at `url` (one `KEYS` over a raw connection).
fn redis_key_count(url: &str, pattern: &str) -> usize {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("redis://").trim_end_matches('/');
    let mut socket = std::net::TcpStream::connect(address).expect("redis");
    let command = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
    socket.write_all(command.as_bytes()).expect("write");
    let mut reply = [0u8; 64];
    let read = socket.read(&mut reply).expect("read");
    let text = String::from_utf8_lossy(&reply[..read]);
    text.strip_prefix('*')
        .and_then(|rest| rest.split("\r\n").next())
        .and_then(|count| count.parse().ok())
        .expect("a KEYS reply")
}

/// With Redis, a cached answer stored by one replica is a hit on another, without a second
/// upstream call.
#[actix_rt::test]
async fn replicas_share_cached_answers_through_redis() {
    let url = redis_url();
    require_redis(&url);
    let upstream = mock("a");
    let prefix = unique_prefix();
    let mut raw = config_on(Db::Postgres).await;
    raw.cache.enabled = true;
    raw.redis.enabled = true;
    raw.redis.url = Some(url.clone());
    raw.redis.key_prefix = prefix.clone();
    raw.redis.timeout_ms = 5_000;
    let services = services_for("llm", &[&upstream], &[]);
    let first = start_gateway(raw.clone(), &services).await;
    let second = start_gateway(raw, &services).await;
    first.wait_ready().await;
    second.wait_ready().await;
    let admin = first.admin_token().await;
    let (_, key) = first.create_key(&admin, json!({"name": "cached"})).await;
    let body = json!({"model": "llm/m", "temperature": 0, "messages": [{"role": "user", "content": "hello there"}]});
    let (status, headers, answer) = chat_as(&first, &key, &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-cache").expect("x-cache"), "MISS");
    let pattern = format!("{prefix}:cache:*");
    wait_for("the answer to reach redis", || {
        let (url, pattern) = (url.clone(), pattern.clone());
        async move { redis_key_count(&url, &pattern) == 1 }
    })
    .await;
    let (status, headers, replayed) = chat_as(&second, &key, &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-cache").expect("x-cache"), "HIT");
    assert_eq!(replayed, answer);
    assert_eq!(
        upstream.state.requests(),
        1,
        "the second replica did not ask upstream"
    );
    first.stop().await;
    second.stop().await;
}

/// Streams report usage only at their end. Each reserves its worst case (prompt + max_tokens)
/// at admission, so a second stream cannot start while the first holds the budget, and each
/// settles to its real use (10 tokens) when it ends, so later streams fit again.
#[actix_rt::test]
async fn tokens_per_minute_hold_for_streams_that_report_usage_at_the_end() {
    let url = redis_url();
    require_redis(&url);
    let upstream = gated_mock("a", 5);
    let prefix = unique_prefix();
    let mut raw = limited_config(Db::Sqlite, Some((&url, &prefix))).await;
    raw.rate_limit.burst = 1_000;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let tpm = 100;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "tokens", "tpm": tpm}))
        .await;
    let gate = upstream.state.gate.clone().expect("gate");
    // Worst case: the prompt plus 60 completion tokens, more than half the limit.
    let body = json!({"model": "llm/m", "stream": true, "max_tokens": 60,
        "messages": [{"role": "user", "content": "hello there"}]});
    let mut open = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(&body)
        .await
        .expect("response");
    assert_eq!(open.status().as_u16(), 200);
    assert!(!header(open.headers(), "x-ratelimit-remaining-tokens").is_empty());
    open.next().await.expect("first chunk").expect("bytes");
    let (status, _, refused) = chat_as(&gateway, &key, &body).await;
    assert_eq!(status, 429, "the open stream's reservation must count");
    let error: Value = serde_json::from_slice(&refused).expect("json");
    assert_eq!(error["error"]["type"], "tokens");
    gate.add_permits(1_000);
    while let Some(chunk) = open.next().await {
        chunk.expect("bytes");
    }
    // Sequential streams for a while: settlement gives back what each did not use, so several
    // fit, yet what they used never exceeds the limit plus what it replenished meanwhile.
    let started = Instant::now();
    let mut ok = 1;
    for _ in 0..30 {
        let (status, _, text) = chat_as(&gateway, &key, &body).await;
        match status {
            200 => {
                assert!(text.ends_with(b"data: [DONE]\n\n"));
                ok += 1;
            }
            429 => assert_eq!(error_code(&text), "rate_limit_exceeded"),
            other => panic!("unexpected {other}"),
        }
    }
    let replenished = (started.elapsed().as_secs_f64() * tpm as f64 / 60.0).ceil() as i64;
    let used = ok * 10;
    assert!(
        ok >= 3,
        "settlement must return unused reservations ({ok} streams)"
    );
    assert!(
        used <= tpm + replenished,
        "{ok} streams used {used} tokens, limit {tpm} + {replenished}"
    );
    gateway.stop().await;
}

/// A private Redis the test can kill and restart on the same port.
struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server is required for this test (CI installs it): {e}")
            });
        PrivateRedis { port, child }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    }

    async fn wait_up(&self) {
        let port = self.port;
        wait_for("the private redis to accept connections", || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    }

    fn kill(&mut self) {
        self.child.kill().expect("kill redis");
        self.child.wait().expect("reap redis");
    }

    /// How many API-key request buckets under `prefix` the server holds, through `redis-cli`.
    fn keys(&self, prefix: &str) -> usize {
        let output = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "--scan",
                "--pattern",
                &format!("{prefix}:rl:key:*"),
            ])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).lines().count()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_rt::test]
async fn requests_keep_flowing_while_redis_is_down_and_shared_limits_resume() {
    let port = PrivateRedis::free_port();
    let mut redis = PrivateRedis::start(port);
    redis.wait_up().await;
    let upstream = mock("a");
    let prefix = unique_prefix();
    let url = format!("redis://127.0.0.1:{port}");
    let mut raw = limited_config(Db::Sqlite, Some((&url, &prefix))).await;
    raw.redis.timeout_ms = 50;
    raw.rate_limit.burst = 10_000;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "resilient", "rpm": 100000}))
        .await;
    let (status, _, _) = chat_as(&gateway, &key, &chat("llm/m")).await;
    assert_eq!(status, 200);
    assert_eq!(redis.keys(&prefix), 1, "the decision was made in redis");

    redis.kill();
    for _ in 0..20 {
        let started = Instant::now();
        let (status, headers, body) = chat_as(&gateway, &key, &chat("llm/m")).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // The in-process fallback decided, with its own headers.
        assert!(!header(&headers, "x-ratelimit-remaining-requests").is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request got stuck"
        );
    }
    assert!(redis_failures(&gateway).await > 0);

    let restarted = PrivateRedis::start(port);
    restarted.wait_up().await;
    let gateway_ref = &gateway;
    let key_ref = &key;
    let prefix_ref = &prefix;
    let restarted_ref = &restarted;
    wait_for(
        "shared limits to resume in the restarted redis",
        || async move {
            let (status, _, _) = chat_as(gateway_ref, key_ref, &chat("llm/m")).await;
            status == 200 && restarted_ref.keys(prefix_ref) == 1
        },
    )
    .await;
    drop(redis);
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_service_limit_holds_for_all_callers_together() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.rate_limit.enabled = true;
    raw.services.insert(
        "llm".into(),
        gateway::config::raw::RawServiceSettings {
            requests_per_minute: Some(60),
            burst: Some(2),
            ..Default::default()
        },
    );
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        if status == 429 {
            assert_eq!(error_code(&body), "rate_limit_exceeded");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(upstream.state.requests(), 2);
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics
            .contains(r#"gateway_rate_limit_refusals_total{limit="requests",scope="service"} 2"#),
        "{metrics}"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_key_cannot_exceed_its_requests_in_flight() {
    let upstream = gated_mock("a", 5);
    let mut raw = limited_config(Db::Sqlite, None).await;
    raw.rate_limit.burst = 100;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway
        .create_key(&admin, json!({"name": "narrow", "max_concurrency": 2}))
        .await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut response = gateway
            .client
            .post(gateway.url("/v1/chat/completions"))
            .insert_header(("authorization", format!("Bearer {key}")))
            .send_json(&chat_stream("llm/m"))
            .await
            .expect("response");
        assert_eq!(response.status().as_u16(), 200);
        response.next().await.expect("first chunk").expect("bytes");
        open.push(response);
    }
    let (status, _, body) = chat_as(&gateway, &key, &chat("llm/m")).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("concurrent"));
    // Streams hold their place until they end; then the key may send again.
    upstream.state.gate.as_ref().expect("gate").add_permits(2);
    for mut response in open {
        while let Some(chunk) = response.next().await {
            chunk.expect("bytes");
        }
    }
    gateway.usage_rows(id, 2).await;
    upstream.state.gate.as_ref().expect("gate").add_permits(1);
    let (status, _, _) = chat_as(&gateway, &key, &chat("llm/m")).await;
    assert_eq!(status, 200);
    let (status, body) = gateway
        .send_as(
            awc::http::Method::PATCH,
            &format!("/admin/keys/{id}"),
            &admin,
            Some(&json!({"max_concurrency": -1})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    gateway.stop().await;
}
