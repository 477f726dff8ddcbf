//! Prometheus end to end: Debian's prometheus runs the repository's scrape config
//! (docker/prometheus/prometheus.yml, rendered for loopback with a 1 s scrape interval) and
//! alert rules against a running gateway's metrics listener and the REAL python-models. After
//! a little traffic, every Grafana panel query must return data through Prometheus's HTTP API
//! and every alert rule must load and evaluate. Each query and its sample count is printed
//! (`cargo test --test prometheus_e2e -- --nocapture` shows them).

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::monitoring::{dashboard_queries, exercise_every_metric, monitored_config};
use common::python_models::PythonModels;
use common::tools::{free_port, render, repository, require_tool, Process};
use common::*;
use serde_json::{json, Value};

/// Scrapes every second; a rate over a minute needs two scrapes after the traffic.
const QUERY_DEADLINE: Duration = Duration::from_secs(90);

struct Prometheus {
    port: u16,
    client: awc::Client,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(gateway_metrics: &str, python_models: &str) -> Prometheus {
        let binary = require_tool("prometheus");
        require_tool("python3");
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("prometheus.yml");
        let rules = repository().join("docker/prometheus/alerts.yml");
        render(&[
            "prometheus",
            &repository()
                .join("docker/prometheus/prometheus.yml")
                .display()
                .to_string(),
            &config.display().to_string(),
            "--rules",
            &rules.display().to_string(),
            "--target",
            &format!("gateway={gateway_metrics}"),
            "--target",
            &format!("python-models={python_models}"),
            "--interval",
            "1s",
        ]);
        let port = free_port();
        let mut process = Process::spawn(
            "prometheus",
            std::process::Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}")),
            dir.path().join("prometheus.log"),
        );
        process.wait_listening(port).await;
        Prometheus {
            port,
            client: client(),
            process,
            _dir: dir,
        }
    }

    /// The `data` of a successful API answer; `None` while Prometheus is still starting (it
    /// answers 503 in plain text until its storage is ready).
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let mut response = self
            .client
            .get(format!("http://127.0.0.1:{}/api/v1/{path}", self.port))
            .query(&query)
            .expect("query string")
            .send()
            .await
            .expect("prometheus answers");
        let bytes = response.body().limit(16 << 20).await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// Polls `check` on `path` until it holds, failing with the last answer and the log.
    async fn wait_api(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + QUERY_DEADLINE;
        loop {
            let data = self.api(path, query).await;
            if let Some(data) = data.as_ref().filter(|data| check(data)) {
                return data.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {data:?}\n{}",
                self.process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Samples of an instant query's answer that are numbers (NaN from 0/0 does not count).
fn finite_samples(data: &Value) -> usize {
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|sample| {
            sample["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        })
        .count()
}

#[actix_rt::test]
async fn every_dashboard_query_returns_data_and_the_alert_rules_load() {
    let python = PythonModels::start();
    let upstream = mock("a");
    let mut services = services_for("llm", &[&upstream], &[]);
    services["python-models"] = python.services()["python-models"].clone();
    let gateway = start_gateway(monitored_config().await, &services).await;
    gateway.wait_ready().await;
    let metrics = gateway.metrics.as_ref().expect("metrics listener").addr;
    let prometheus = Prometheus::start(
        &metrics.to_string(),
        &format!("127.0.0.1:{}", python.http_port),
    )
    .await;
    prometheus
        .wait_api("both targets up", "targets", &[], |data| {
            let active = data["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ["gateway", "python-models"].iter().all(|job| {
                active
                    .iter()
                    .any(|t| t["labels"]["job"] == *job && t["health"] == "up")
            })
        })
        .await;

    // Traffic after the first scrapes, so counters move between samples and rates are real.
    // (The key first: the exercise uses up the two logins a minute the config allows.)
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "real"})).await;
    exercise_every_metric(&gateway, &upstream).await;
    let (status, body) = gateway
        .send_as(
            awc::http::Method::POST,
            "/v1/chat/completions",
            &key,
            Some(
                &json!({"model": "python-models/smollm2-135m-instruct", "max_tokens": 4,
                "temperature": 0, "messages": [{"role": "user", "content": "Say hi."}]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Rates over a minute go flat a minute after the last request: keep a trickle of traffic
    // (a chat and a stream every 200 ms) while the queries are checked.
    let trickle = Trickle::start(&gateway, &key);
    let mut report = Vec::new();
    for (dashboard, panel, expr) in dashboard_queries() {
        let data = prometheus
            .wait_api(
                &format!("data for {dashboard} / {panel}: {expr}"),
                "query",
                &[("query", &expr)],
                |data| finite_samples(data) > 0,
            )
            .await;
        let samples = data["result"].as_array().map_or(0, Vec::len);
        report.push(format!(
            "{samples:>3} samples  {dashboard} / {panel}: {expr}"
        ));
    }

    let alerts = std::fs::read_to_string(repository().join("docker/prometheus/alerts.yml"))
        .expect("alerts.yml");
    let expected = alerts.matches("- alert: ").count();
    let rules = prometheus
        .wait_api(
            "every alert rule evaluated",
            "rules",
            &[("type", "alert")],
            |data| {
                let rules: Vec<&Value> = data["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|group| group["rules"].as_array().into_iter().flatten())
                    .collect();
                rules.len() == expected && rules.iter().all(|rule| rule["health"] == "ok")
            },
        )
        .await;
    let names: Vec<&str> = rules["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["name"].as_str())
        .collect();
    report.push(format!(
        "{expected} alert rules loaded, health ok: {}",
        names.join(", ")
    ));
    // Straight to stdout, past the test harness's capture: the run's log keeps the evidence.
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "Prometheus end to end ({} queries):\n{}",
        report.len() - 1,
        report.join("\n")
    )
    .expect("stdout");
    trickle.stop().await;
    gateway.stop().await;
    drop(python);
}

/// Paced background traffic: a chat and a stream to `llm/m` every 200 ms until stopped.
struct Trickle {
    stop: std::rc::Rc<std::cell::Cell<bool>>,
    task: actix_web::rt::task::JoinHandle<()>,
}

impl Trickle {
    fn start(gateway: &TestGateway, key: &str) -> Trickle {
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let (url, bearer, flag) = (
            gateway.url("/v1/chat/completions"),
            format!("Bearer {key}"),
            stop.clone(),
        );
        let task = actix_web::rt::spawn(async move {
            let client = client();
            let mut pace = tokio::time::interval(Duration::from_millis(200));
            while !flag.get() {
                pace.tick().await;
                for body in [chat("llm/m"), chat_stream("llm/m")] {
                    if let Ok(mut response) = client
                        .post(&url)
                        .insert_header(("authorization", bearer.as_str()))
                        .send_json(&body)
                        .await
                    {
                        let _ = response.body().limit(1 << 20).await;
                    }
                }
            }
        });
        Trickle { stop, task }
    }

    async fn stop(self) {
        self.stop.set(true);
        self.task.await.expect("trickle task");
    }
}
