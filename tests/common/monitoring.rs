//! Shared by the monitoring tests: a gateway configured so that every metric the dashboards
//! read can appear, the traffic that makes each appear, and the dashboards' panel queries.

use serde_json::{json, Value};

use super::tools::repository;
use super::*;

/// Keys on, rate limits on (two logins a minute per client), the response cache on.
pub async fn monitored_config() -> gateway::config::RawConfig {
    let mut raw = config_on(Db::Sqlite).await;
    raw.rate_limit.enabled = true;
    raw.rate_limit.login_requests_per_minute = 2;
    raw.cache.enabled = true;
    raw
}

/// Traffic that moves every business metric: a cache miss then hit, a stream, a truncated
/// stream (a stream fault), failed logins beyond the limit (refusals and 4xx), a WebSocket
/// session. Needs a gateway from [`monitored_config`] with `upstream` as service `llm`.
pub async fn exercise_every_metric(gateway: &TestGateway, upstream: &MockUpstream) {
    let admin = gateway.admin_token().await;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "monitored"}))
        .await;
    let deterministic = json!({"model": "llm/m", "temperature": 0,
        "messages": [{"role": "user", "content": "the same question"}]});
    for _ in 0..2 {
        let (status, _) = gateway
            .send_as(
                awc::http::Method::POST,
                "/v1/chat/completions",
                &key,
                Some(&deterministic),
            )
            .await;
        assert_eq!(status, 200);
    }
    stream_as(gateway, &key).await;
    upstream.state.set_mode(Mode::TruncateAfter(1));
    stream_as(gateway, &key).await;
    upstream.state.set_mode(Mode::Normal);
    for _ in 0..3 {
        let response = gateway
            .client
            .post(gateway.url("/auth/login"))
            .send_json(&json!({"username": "nobody", "password": "wrong guess"}))
            .await
            .expect("login");
        assert!(matches!(response.status().as_u16(), 401 | 429));
    }
    let (_, socket) = gateway
        .client
        .ws(format!("ws://{}/v1/ws", gateway.addr))
        .bearer_auth(&key)
        .connect()
        .await
        .expect("websocket");
    drop(socket);
}

async fn stream_as(gateway: &TestGateway, key: &str) {
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    let _ = response.body().limit(1 << 20).await.expect("stream body");
}

/// Every panel query of every dashboard in docker/grafana/dashboards: (dashboard, panel, expr).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = repository().join("docker/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut queries = Vec::new();
    for file in files {
        let dashboard: Value =
            serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("dashboard JSON");
        let title = dashboard["title"].as_str().unwrap_or_default().to_string();
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                queries.push((
                    title.clone(),
                    panel["title"].as_str().unwrap_or_default().to_string(),
                    target["expr"].as_str().expect("expr").to_string(),
                ));
            }
        }
    }
    assert!(!queries.is_empty(), "no dashboard queries in {dir:?}");
    queries
}

/// The metric names an expression reads that start with one of `prefixes`.
pub fn metric_names(expr: &str, prefixes: &[&str]) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| prefixes.iter().any(|prefix| word.starts_with(prefix)))
        .map(String::from)
        .collect()
}

/// Metric families on a Prometheus page (`# TYPE name kind`), with their kinds.
pub fn families(page: &str) -> std::collections::BTreeMap<String, String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let (name, kind) = rest.split_once(' ')?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect()
}

/// Whether `name` (possibly a histogram's `_bucket`/`_count`/`_sum`) is on the page.
pub fn exported(families: &std::collections::BTreeMap<String, String>, name: &str) -> bool {
    if families.contains_key(name) {
        return true;
    }
    ["_bucket", "_count", "_sum"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .is_some_and(|kind| kind == "histogram" || kind == "summary")
    })
}
