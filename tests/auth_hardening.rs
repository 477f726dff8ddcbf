//! The front door under a hostile client: malformed and made-up API keys, clients that keep
//! failing, login floods, and bodies that never finish arriving.

mod common;

use std::time::Duration;

use common::ws::{connect, next_json, request, send};
use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A counter's value in the metrics text (`name{labels}` exactly as exposed), 0 when absent.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// Key-cache lookups that went to the database so far.
async fn database_lookups(gateway: &TestGateway) -> u64 {
    let metrics = gateway.metrics_text().await;
    counter(
        &metrics,
        r#"gateway_key_cache_lookups_total{result="miss"}"#,
    )
}

/// A well-formed secret no key has.
fn made_up_key() -> String {
    actors::store::keys::generate_secret().0
}

/// `GET /v1/models` with `key`, from `client` (an `X-Forwarded-For` a trusted proxy vouches
/// for); status, error code and `retry-after`.
async fn models_as(
    gateway: &TestGateway,
    key: &str,
    client: &str,
) -> (u16, String, Option<String>) {
    let mut response = gateway
        .client
        .get(gateway.url("/v1/models"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .insert_header(("x-forwarded-for", client))
        .send()
        .await
        .expect("response");
    let body = response.body().await.expect("body");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let code = if response.status().is_success() {
        String::new()
    } else {
        error_code(&body)
    };
    (response.status().as_u16(), code, retry_after)
}

/// Authentication on, keys trusted for a minute, requests from 127.0.0.1 vouching for the
/// client in `X-Forwarded-For`.
async fn guarded_config(max_failures_per_minute: u64) -> gateway::config::RawConfig {
    let mut raw = config_on(Db::Sqlite).await;
    raw.auth.key_cache_ttl_secs = 60;
    raw.auth.max_failures_per_minute = max_failures_per_minute;
    raw.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    raw
}

#[actix_rt::test]
async fn malformed_keys_are_refused_without_a_lookup() {
    let upstream = mock("a");
    let gateway = start_gateway(
        guarded_config(0).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    let real = made_up_key();
    let malformed = [
        "sk-gw-not-a-real-key".to_string(),
        format!("{real}x"),
        real[..real.len() - 1].to_string(),
        real.replacen("sk-gw-", "sk-xx-", 1),
        format!("{}.", &real[..real.len() - 1]),
        "sk-gw-".to_string() + &"A".repeat(4000),
    ];
    let before = database_lookups(&gateway).await;
    for key in &malformed {
        let (status, code, _) = models_as(&gateway, key, "198.51.100.1").await;
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_api_key"),
            "{key:.60}"
        );
    }
    assert_eq!(
        database_lookups(&gateway).await,
        before,
        "no lookup for any"
    );
    let metrics = gateway.metrics_text().await;
    assert_eq!(
        counter(
            &metrics,
            r#"gateway_auth_failures_total{reason="malformed"}"#
        ),
        malformed.len() as u64
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn made_up_keys_reach_the_database_once_and_evict_no_real_key() {
    let upstream = mock("a");
    let gateway = start_gateway(
        guarded_config(0).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "real"})).await;
    assert_eq!(models_as(&gateway, &key, "198.51.100.1").await.0, 200);
    let made_up: Vec<String> = (0..40).map(|_| made_up_key()).collect();
    let before = database_lookups(&gateway).await;
    for round in 0..3 {
        for secret in &made_up {
            let (status, code, _) = models_as(&gateway, secret, "198.51.100.2").await;
            assert_eq!(
                (status, code.as_str()),
                (401, "invalid_api_key"),
                "round {round}"
            );
        }
    }
    // Each made-up key was read once; the next rounds were answered by the negative cache.
    assert_eq!(
        database_lookups(&gateway).await - before,
        made_up.len() as u64
    );
    // The real key is still cached: no lookup.
    let before = database_lookups(&gateway).await;
    assert_eq!(models_as(&gateway, &key, "198.51.100.1").await.0, 200);
    assert_eq!(database_lookups(&gateway).await, before);
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_client_that_keeps_failing_is_throttled_before_the_database() {
    let upstream = mock("a");
    let gateway = start_gateway(
        guarded_config(5).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "real"})).await;
    // Another client warms the cache with the real key.
    assert_eq!(models_as(&gateway, &key, "198.51.100.9").await.0, 200);
    let guesser = "203.0.113.7";
    for _ in 0..5 {
        let (status, code, _) = models_as(&gateway, &made_up_key(), guesser).await;
        assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    }
    let before = database_lookups(&gateway).await;
    for _ in 0..20 {
        let (status, code, retry_after) = models_as(&gateway, &made_up_key(), guesser).await;
        assert_eq!(
            (status, code.as_str()),
            (429, "too_many_failed_authentications")
        );
        let wait: u64 = retry_after.expect("retry-after").parse().expect("seconds");
        assert!((1..=60).contains(&wait), "{wait}");
    }
    assert_eq!(
        database_lookups(&gateway).await,
        before,
        "refused before a lookup"
    );
    // Malformed keys and the GraphQL front-end meet the same throttle.
    let (status, code, _) = models_as(&gateway, "sk-gw-short", guesser).await;
    assert_eq!(
        (status, code.as_str()),
        (429, "too_many_failed_authentications")
    );
    let mut response = gateway
        .client
        .post(gateway.url("/graphql"))
        .insert_header(("authorization", format!("Bearer {}", made_up_key())))
        .insert_header(("x-forwarded-for", guesser))
        .send_json(&json!({"query": "{ me { kind } }"}))
        .await
        .expect("graphql");
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "too_many_failed_authentications",
        "{body}"
    );
    // A live, cached key still works from the throttled client; other clients are untouched.
    assert_eq!(models_as(&gateway, &key, guesser).await.0, 200);
    let (status, code, _) = models_as(&gateway, &made_up_key(), "198.51.100.9").await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    gateway.stop().await;
}

/// A login attempt with `X-Forwarded-For: client`; its status and error code.
async fn login_from(gateway: &TestGateway, client: &str, username: &str) -> (u16, String) {
    let mut response = gateway
        .client
        .post(gateway.url("/auth/login"))
        .insert_header(("x-forwarded-for", client))
        .send_json(&json!({"username": username, "password": "wrong guess"}))
        .await
        .expect("login");
    let body = response.body().await.expect("body");
    (response.status().as_u16(), error_code(&body))
}

#[actix_rt::test]
async fn logins_are_throttled_per_client_and_per_name_with_rate_limits_off() {
    let upstream = mock("a");
    let mut raw = guarded_config(20).await;
    assert!(
        !raw.rate_limit.enabled,
        "the throttle holds without rate limits"
    );
    raw.rate_limit.login_requests_per_minute = 3;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    // One name from many clients: three attempts a minute.
    let mut statuses = Vec::new();
    for client in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    ] {
        statuses.push(login_from(&gateway, client, "admin").await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    // One client trying many names: three attempts a minute.
    let mut statuses = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        statuses.push(login_from(&gateway, "203.0.113.5", name).await.0);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let metrics = gateway.metrics_text().await;
    assert_eq!(
        counter(&metrics, r#"gateway_logins_total{outcome="throttled"}"#),
        2
    );
    assert_eq!(
        counter(&metrics, r#"gateway_logins_total{outcome="failed"}"#),
        6
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn password_hashes_are_bounded_and_the_rest_wait_then_get_503() {
    let upstream = mock("a");
    let mut raw = guarded_config(20).await;
    raw.rate_limit.login_requests_per_minute = 1_000;
    raw.auth.login_max_concurrent = 1;
    raw.auth.login_wait_ms = 1;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    // 32 logins at once, each costing an Argon2 hash (unknown names are hashed too), against
    // one hashing slot that a login waits 1 ms for.
    let attempts = (0..32).map(|i| {
        let gateway = &gateway;
        async move {
            let client = format!("198.51.100.{}", i + 1);
            login_from(gateway, &client, &format!("user{i}")).await
        }
    });
    let answers = join_all(attempts).await;
    let busy = answers.iter().filter(|(status, _)| *status == 503).count();
    for (status, code) in &answers {
        match status {
            401 => assert_eq!(code, "invalid_credentials"),
            503 => assert_eq!(code, "login_busy"),
            other => panic!("unexpected {other} {code}"),
        }
    }
    assert!(
        busy > 0,
        "32 hashes at once with one slot: some must be refused"
    );
    let metrics = gateway.metrics_text().await;
    assert_eq!(
        counter(&metrics, r#"gateway_logins_total{outcome="busy"}"#),
        busy as u64
    );
    gateway.stop().await;
}

/// Sends `head` and then `body` (a part of what it announces) on a raw connection and reads
/// until the gateway closes it: the whole answer.
async fn send_partial(gateway: &TestGateway, head: &str, body: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body).await.expect("body");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the gateway answers and closes within the deadline")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

fn head(path: &str, credential: Option<&str>, length: usize) -> String {
    let authorization = credential
        .map(|c| format!("authorization: Bearer {c}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n{authorization}content-length: {length}\r\n\r\n"
    )
}

#[actix_rt::test]
async fn a_body_that_stops_arriving_gets_408_on_every_route() {
    let upstream = mock("a");
    let mut raw = guarded_config(0).await;
    raw.server.request_body_timeout_secs = 1;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "slow"})).await;
    let routes = [
        ("/v1/chat/completions", Some(key.as_str())),
        ("/v1/embeddings", Some(key.as_str())),
        ("/graphql", Some(admin.as_str())),
        ("/admin/keys", Some(admin.as_str())),
        ("/auth/login", None),
    ];
    for (path, credential) in routes {
        let answer = send_partial(&gateway, &head(path, credential, 1000), b"{\"model\":").await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("request_body_timeout"), "{path}: {answer}");
        assert!(answer.contains("x-request-id"), "{path}: {answer}");
    }
    // A body sent in pieces within the deadline is read as usual.
    let body = serde_json::to_vec(&chat("llm/m")).expect("json");
    let mut stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    let request = head("/v1/chat/completions", Some(&key), body.len())
        .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nconnection: close\r\n");
    stream.write_all(request.as_bytes()).await.expect("head");
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).await.expect("first half");
    stream.flush().await.expect("flush");
    stream.write_all(rest).await.expect("second half");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    gateway.stop().await;
}

#[actix_rt::test]
async fn graphql_refuses_a_bad_credential_before_reading_the_body() {
    let upstream = mock("a");
    let mut raw = guarded_config(0).await;
    raw.server.request_body_timeout_secs = 600;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    // The head announces 4 MiB that never come: the answer cannot wait for them.
    let answer = send_partial(
        &gateway,
        &head("/graphql", Some(&made_up_key()), 4 * 1024 * 1024),
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_api_key"), "{answer}");
    gateway.stop().await;
}

#[actix_rt::test]
async fn websocket_sessions_outlive_the_body_timeout() {
    let upstream = mock("a");
    let mut raw = guarded_config(0).await;
    raw.server.request_body_timeout_secs = 1;
    let setup = common::ws::setup(raw, &upstream).await;
    let mut socket = connect(&setup.gateway, &setup.key).await;
    // Longer than the body timeout: a session's frames are not a request body.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    send(&mut socket, &request("late", "llm/m", "still here")).await;
    let answer = loop {
        let message = next_json(&mut socket).await;
        if message["type"] != "chat.delta" {
            break message;
        }
    };
    assert_eq!(answer["type"], "chat.done", "{answer}");
    setup.gateway.stop().await;
}
