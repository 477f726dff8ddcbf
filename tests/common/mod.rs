//! The integration-test harness: the real gateway on port 0, in-process mock upstreams, and
//! helpers that wait for conditions instead of sleeping.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use gateway::config::{self, RawConfig};
use gateway::server::{self, RunningGateway};

#[allow(unused_imports)]
pub use mock_upstream::{MockOptions, MockUpstream, Mode};
use serde_json::{json, Value};

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct TestGateway {
    pub addr: std::net::SocketAddr,
    pub scheme: &'static str,
    pub registry: actors::UpstreamRegistryHandle,
    pub handle: ServerHandle,
    pub client: awc::Client,
    pub services_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// POSTs JSON and returns status, headers and the whole body.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> (u16, awc::http::header::HeaderMap, Vec<u8>) {
        self.post_raw(
            path,
            "application/json",
            serde_json::to_vec(body).expect("json"),
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, awc::http::header::HeaderMap, Vec<u8>) {
        let mut response = self
            .client
            .post(self.url(path))
            .insert_header(("content-type", content_type))
            .send_body(body)
            .await
            .expect("request reaches the gateway");
        let bytes = response.body().limit(64 * 1024 * 1024).await.expect("body");
        (
            response.status().as_u16(),
            response.headers().clone(),
            bytes.to_vec(),
        )
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let mut response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let body = response.body().limit(4 * 1024 * 1024).await.expect("body");
        (
            response.status().as_u16(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// Rewrites the static discovery file; the watcher picks it up.
    pub fn write_services(&self, services: &Value) {
        write_json(&self.services_file, services);
    }

    pub async fn wait_ready(&self) {
        let gateway = self;
        wait_for("the gateway to be ready", || async move {
            gateway.get_json("/ready").await.0 == 200
        })
        .await;
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

fn write_json(path: &PathBuf, value: &Value) {
    // Write then rename, so the watcher never reads half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(value).expect("json")).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

/// A configuration for tests: one worker, fast health checks and reloads.
pub fn test_config() -> RawConfig {
    let mut raw = RawConfig::default();
    raw.server.bind = "127.0.0.1:0".into();
    raw.server.workers = 1;
    raw.server.shutdown_timeout_secs = 1;
    raw.discovery.poll_interval_ms = 50;
    raw.upstream_defaults.health_check_interval_ms = Some(100);
    raw.upstream_defaults.health_check_timeout_ms = Some(500);
    raw.upstream_defaults.healthy_threshold = Some(1);
    raw.upstream_defaults.unhealthy_threshold = Some(2);
    raw.upstream_defaults.first_byte_timeout_ms = Some(5000);
    raw.upstream_defaults.retry_budget_min = Some(1000);
    raw
}

/// `{"name": {"instances": [...], "health_check": "/health"}}` for mocks.
pub fn services_for(name: &str, mocks: &[&MockUpstream], weights: &[u32]) -> Value {
    let instances: Vec<Value> = mocks
        .iter()
        .enumerate()
        .map(|(i, mock)| {
            json!({"host": "127.0.0.1", "port": mock.addr.port(), "weight": weights.get(i).copied().unwrap_or(1)})
        })
        .collect();
    json!({name: {"protocol": "http", "health_check": "/health", "instances": instances}})
}

pub async fn start_gateway(raw: RawConfig, services: &Value) -> TestGateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let services_file = dir.path().join("services.json");
    write_json(&services_file, services);
    let mut raw = raw;
    raw.discovery.static_file = services_file.display().to_string();
    let config = config::validate(raw, "test").expect("valid test config");
    let RunningGateway {
        addr,
        scheme,
        server,
        registry,
    } = server::start(config).await.expect("gateway starts");
    let handle = server.handle();
    actix_web::rt::spawn(server);
    TestGateway {
        addr,
        scheme,
        registry,
        handle,
        client: client(),
        services_file,
        _dir: dir,
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

pub fn mock(name: &str) -> MockUpstream {
    MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: name.into(),
            ..MockOptions::default()
        },
    )
    .expect("mock starts")
}

pub fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

pub fn chat_stream(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hello there"}]})
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn error_code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    value["error"]["code"].as_str().unwrap_or("").to_string()
}
