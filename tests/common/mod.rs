//! The integration-test harness: the real gateway on port 0, in-process mock upstreams, and
//! helpers that wait for conditions instead of sleeping.

#![allow(dead_code)]

pub mod monitoring;
pub mod python_models;
pub mod shared_redis;
pub mod tools;
pub mod ws;

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
    pub store: actors::store::Store,
    pub usage: actors::usage::UsageHandle,
    pub ws_hub: gateway::ws::WsHubHandle,
    pub handle: ServerHandle,
    /// The Prometheus listener (`METRICS_BIND`), when metrics are on.
    pub metrics: Option<gateway::metrics::listener::MetricsListener>,
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

    /// Waits until `count` endpoints of `service` have passed their first health check.
    pub async fn wait_eligible(&self, service: &str, count: usize) {
        let registry = self.registry.clone();
        wait_for(&format!("{count} eligible endpoints of {service}"), || {
            let registry = registry.clone();
            async move {
                registry
                    .pool(service)
                    .is_some_and(|p| p.snapshot().eligible.len() == count)
            }
        })
        .await;
    }

    /// The Prometheus page on the metrics listener, which must answer 200.
    pub async fn metrics_text(&self) -> String {
        let listener = self.metrics.as_ref().expect("metrics are on");
        let mut response = self
            .client
            .get(format!("http://{}/metrics", listener.addr))
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status().as_u16(), 200);
        let body = response.body().limit(16 * 1024 * 1024).await.expect("body");
        String::from_utf8_lossy(&body).into_owned()
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
        if let Some(metrics) = &self.metrics {
            metrics.handle.stop(true).await;
        }
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
    raw.monitoring.metrics_bind = "127.0.0.1:0".into();
    raw.server.shutdown_timeout_secs = 1;
    raw.discovery.poll_interval_ms = 50;
    raw.upstream_defaults.health_check_interval_ms = Some(100);
    raw.upstream_defaults.health_check_timeout_ms = Some(500);
    raw.upstream_defaults.healthy_threshold = Some(1);
    raw.upstream_defaults.unhealthy_threshold = Some(2);
    raw.upstream_defaults.first_byte_timeout_ms = Some(5000);
    raw.upstream_defaults.retry_budget_min = Some(1000);
    // Gateway-core tests run without keys; the auth tests turn this back on.
    raw.auth.enabled = false;
    raw.usage.flush_interval_ms = 20;
    // Never the repository's own frontend/dist: tests that serve a dashboard build their own.
    raw.dashboard.dir = "/nonexistent/ai-gateway-dashboard".into();
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
    if raw.database.url.is_none() {
        raw.database.url = Some(format!(
            "sqlite://{}",
            dir.path().join("gateway.db").display()
        ));
    }
    let config = config::validate(raw, "test").expect("valid test config");
    let RunningGateway {
        addr,
        scheme,
        server,
        registry,
        store,
        usage,
        ws_hub,
        metrics,
        ..
    } = server::start(config).await.expect("gateway starts");
    let handle = server.handle();
    actix_web::rt::spawn(server);
    TestGateway {
        addr,
        scheme,
        registry,
        store,
        usage,
        ws_hub,
        handle,
        metrics,
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

/// A mock whose streams wait until the test opens the gate (`state.open_gate()`).
pub fn gated_mock(name: &str, chunks: usize) -> MockUpstream {
    MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: name.into(),
            gated: true,
            chunks,
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

/// Sends `count` copies of `body` to `/v1/chat/completions` at once, round-robin over the
/// gateways, with API key `key`; returns each answer's status and OpenAI error code.
pub async fn concurrent_chats(
    gateways: &[&TestGateway],
    key: &str,
    body: &Value,
    count: usize,
) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let url = gateways[i % gateways.len()].url("/v1/chat/completions");
        let bearer = format!("Bearer {key}");
        let body = body.clone();
        tasks.push(actix_web::rt::spawn(async move {
            let mut response = client()
                .post(url)
                .insert_header(("authorization", bearer))
                .send_json(&body)
                .await
                .expect("response");
            let status = response.status().as_u16();
            let body = response.body().await.expect("body");
            (status, error_code(&body))
        }));
    }
    let mut answers = Vec::with_capacity(count);
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

/// A budget race: a key whose token budget allows ten requests (5 prompt + 5 completion
/// tokens each, as the mock bills) sends `count` concurrent chats spread over `gateways`. The
/// budget must hold: between one and ten succeed, the rest are refused with
/// `insufficient_quota` before reaching `upstream`, and usage bills no more than the budget.
pub async fn race_a_ten_request_budget(
    gateways: &[&TestGateway],
    upstream: &MockUpstream,
    count: usize,
) {
    let first = gateways[0];
    let admin = first.admin_token().await;
    let budget = 100;
    let (id, key) = first
        .create_key(&admin, json!({"name": "capped", "token_budget": budget}))
        .await;
    let body = json!({"model": "llm/m", "max_tokens": 5, "messages": [{"role": "user", "content": "hello there"}]});
    let mut ok = 0;
    for answer in concurrent_chats(gateways, &key, &body, count).await {
        match answer {
            (200, _) => ok += 1,
            (429, code) => assert_eq!(code, "insufficient_quota"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        (1..=10).contains(&ok),
        "{ok} requests succeeded across {} gateway(s)",
        gateways.len()
    );
    assert_eq!(
        upstream.state.requests(),
        ok as u64,
        "refused requests never reached the upstream"
    );
    let rows = first.usage_rows(id, ok).await;
    assert_eq!(rows.len(), ok);
    let billed: i64 = rows
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert!(billed <= budget, "billed {billed} of {budget}");
}

/// `POST /v1/chat/completions` with `key`: status, headers and the whole answer.
pub async fn chat_as(
    gateway: &TestGateway,
    key: &str,
    body: &Value,
) -> (u16, awc::http::header::HeaderMap, Vec<u8>) {
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(body)
        .await
        .expect("response");
    let body = response.body().limit(1 << 20).await.expect("body");
    (
        response.status().as_u16(),
        response.headers().clone(),
        body.to_vec(),
    )
}

pub fn error_code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    value["error"]["code"].as_str().unwrap_or("").to_string()
}

/// The two storage back-ends every persistence test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// PostgreSQL server used by the tests (`TEST_POSTGRES_URL`, default this machine's).
pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A new, empty database on the test PostgreSQL server. Fails the test (never skips) when the
/// server cannot be reached.
pub async fn fresh_postgres_database() -> String {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let server = postgres_server_url();
    let mut admin = AsyncPgConnection::establish(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {server} is required for these tests (CI starts it): {e}")
        });
    let name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    format!("{server}/{name}")
}

/// A test configuration on the given back-end, with authentication on.
pub async fn config_on(db: Db) -> RawConfig {
    let mut raw = test_config();
    raw.auth.enabled = true;
    raw.auth.key_cache_ttl_secs = 1;
    if db == Db::Postgres {
        raw.database.url = Some(fresh_postgres_database().await);
    }
    raw
}

impl TestGateway {
    /// Creates an admin user and returns an admin token.
    pub async fn admin_token(&self) -> String {
        self.user_token(actors::store::users::Role::Admin).await.1
    }

    /// Creates a user with `role` and returns its name and a token from `/auth/login`.
    pub async fn user_token(&self, role: actors::store::users::Role) -> (String, String) {
        let name = format!("{}{}", role.as_str(), uuid::Uuid::new_v4().simple());
        self.store
            .create_user(&name, "correct horse battery", role)
            .await
            .expect("create user");
        let token = self.login(&name, "correct horse battery").await;
        (name, token)
    }

    /// Logs in (which must succeed) and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let mut response = self
            .client
            .post(self.url("/auth/login"))
            .send_json(&json!({"username": username, "password": password}))
            .await
            .expect("login");
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await.expect("token");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Sends JSON with a bearer credential.
    pub async fn send_as(
        &self,
        method: awc::http::Method,
        path: &str,
        credential: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let request = self
            .client
            .request(method, self.url(path))
            .insert_header(("authorization", format!("Bearer {credential}")));
        let mut response = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        }
        .expect("response");
        let bytes = response.body().limit(16 * 1024 * 1024).await.expect("body");
        (
            response.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates a key through the admin API.
    pub async fn create_key(&self, admin: &str, request: Value) -> (i64, String) {
        let (status, body) = self
            .send_as(
                awc::http::Method::POST,
                "/admin/keys",
                admin,
                Some(&request),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_i64().expect("id"),
            body["key"].as_str().expect("key").to_string(),
        )
    }

    /// Waits until the usage rows of `key_id` number `count`, and returns them.
    pub async fn usage_rows(
        &self,
        key_id: i64,
        count: usize,
    ) -> Vec<actors::store::usage::UsageEvent> {
        let store = self.store.clone();
        wait_for(&format!("{count} usage rows"), || {
            let store = store.clone();
            async move {
                store
                    .usage_of_key(key_id)
                    .await
                    .is_ok_and(|rows| rows.len() >= count)
            }
        })
        .await;
        self.store.usage_of_key(key_id).await.expect("rows")
    }
}

/// Requests sent in a loop while a test changes discovery: counts answers and failures.
pub struct Load {
    stop: std::rc::Rc<std::cell::Cell<bool>>,
    pub ok: std::rc::Rc<std::cell::Cell<u64>>,
    pub failures: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    tasks: Vec<actix_web::rt::task::JoinHandle<()>>,
}

impl Load {
    /// `workers` concurrent loops of chat requests for `model`.
    pub fn start(gateway: &TestGateway, model: &str, workers: usize) -> Load {
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let ok = std::rc::Rc::new(std::cell::Cell::new(0));
        let failures = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let url = gateway.url("/v1/chat/completions");
                let body = chat(model);
                let client = client();
                actix_web::rt::spawn(async move {
                    while !stop.get() {
                        match client.post(&url).send_json(&body).await {
                            Ok(mut response) => {
                                let status = response.status().as_u16();
                                let bytes = response.body().await.unwrap_or_default();
                                if status == 200 {
                                    ok.set(ok.get() + 1);
                                } else {
                                    failures.borrow_mut().push(format!(
                                        "{status}: {}",
                                        String::from_utf8_lossy(&bytes)
                                    ));
                                }
                            }
                            Err(error) => failures.borrow_mut().push(error.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Waits until `more` further requests have succeeded.
    pub async fn progress(&self, more: u64) {
        let target = self.ok.get() + more;
        let ok = self.ok.clone();
        wait_for(&format!("{more} more successful requests"), || {
            let ok = ok.clone();
            async move { ok.get() >= target }
        })
        .await;
    }

    /// Stops the loops and returns (successes, failures).
    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.set(true);
        for task in self.tasks {
            task.await.expect("load task");
        }
        (self.ok.get(), self.failures.take())
    }
}

/// Every endpoint of `service` in `/admin/upstreams`, by address (`admin`: an admin token).
pub async fn endpoint_states(
    gateway: &TestGateway,
    admin: &str,
    service: &str,
) -> std::collections::BTreeMap<String, Value> {
    let (status, body) = gateway
        .send_as(awc::http::Method::GET, "/admin/upstreams", admin, None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["service"] == service)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| (e["address"].as_str().unwrap_or("").to_string(), e))
        .collect()
}
