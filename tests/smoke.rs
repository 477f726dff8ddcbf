//! The built binary, run the way the README runs it: `gateway check-config`, then
//! `gateway serve` with the development configuration, a chat request, and a graceful SIGTERM
//! that lets an open stream finish.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_gateway");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn check_config_validates_and_masks() {
    let output = Command::new(BINARY)
        .arg("check-config")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GATEWAY__SERVICES__OPENAI__API_KEY", "sk-very-secret")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("# environment: development") && stdout.contains("[server]"),
        "{stdout}"
    );
    assert!(!stdout.contains("sk-very-secret"), "{stdout}");

    let output = Command::new(BINARY)
        .arg("check-config")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SERVICE_DISCOVERY_TYPE", "consul")
        .env("CONSUL_TOKEN", "consul-very-secret")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains("consul-very-secret") && stdout.contains("[discovery.consul]"),
        "{stdout}"
    );

    let output = Command::new(BINARY)
        .arg("check-config")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SERVICE_DISCOVERY_TYPE", "consul")
        .env("CONSUL_ADDR", "https://consul:8501")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("CONSUL_ADDR"));
}

#[actix_rt::test]
async fn serve_answers_and_drains_streams_on_sigterm() {
    let upstream = MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: "echo".into(),
            chunks: 20,
            chunk_delay: Duration::from_millis(25),
            ..MockOptions::default()
        },
    )
    .expect("mock");
    // A second upstream that never answers: its timeout must be logged with the request id.
    let hanging = MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: "hang".into(),
            ..MockOptions::default()
        },
    )
    .expect("mock");
    hanging.state.set_mode(Mode::Hang);
    let dir = tempfile::tempdir().expect("dir");
    let services = dir.path().join("services.json");
    let spec = json!({
        "echo": {"host": "127.0.0.1", "port": upstream.addr.port(), "protocol": "http", "health_check": "/health"},
        "hang": {"host": "127.0.0.1", "port": hanging.addr.port(), "protocol": "http", "health_check": "/health"},
    });
    std::fs::write(&services, spec.to_string()).expect("write");
    let database = format!("sqlite://{}", dir.path().join("gateway.db").display());
    // The README's way to get a key: the CLI on the same database.
    let created = Command::new(BINARY)
        .args(["keys", "create", "--name", "smoke test"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &database)
        .output()
        .expect("keys create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(key.starts_with("sk-gw-"), "{key}");
    let port = free_port();
    let child = Command::new(BINARY)
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &database)
        .env("GATEWAY_BIND", format!("127.0.0.1:{port}"))
        .env("SERVICE_DISCOVERY_STATIC_FILE", &services)
        .env("GATEWAY__SERVER__SHUTDOWN_TIMEOUT_SECS", "10")
        .env("GATEWAY__SERVICES__HANG__FIRST_BYTE_TIMEOUT_MS", "300")
        .env("GATEWAY__SERVICES__HANG__MAX_ATTEMPTS", "1")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    let ready = format!("{base}/ready");
    let probe = client.clone();
    wait_for("the binary to be ready", || {
        let client = probe.clone();
        let url = ready.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    // Without the key: refused.
    let refused = client
        .post(format!("{base}/v1/chat/completions"))
        .send_json(&json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .expect("chat");
    assert_eq!(refused.status().as_u16(), 401);
    let bearer = format!("Bearer {key}");
    // The README's first request: the development config's "echo" alias.
    let mut response = client
        .post(format!("{base}/v1/chat/completions"))
        .insert_header(("authorization", bearer.as_str()))
        .send_json(&json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .expect("chat");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi");

    // An upstream failure, with the client's request id (checked in the logs at the end).
    let timed_out = client
        .post(format!("{base}/v1/chat/completions"))
        .insert_header(("authorization", bearer.as_str()))
        .insert_header(("x-request-id", "smoke-upstream-timeout"))
        .send_json(&json!({"model": "hang/m", "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .expect("chat");
    assert_eq!(timed_out.status().as_u16(), 504);

    // Open a stream, then ask the gateway to stop: the stream still completes.
    let mut stream = client
        .post(format!("{base}/v1/chat/completions"))
        .insert_header(("x-api-key", key.as_str()))
        .send_json(&json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .expect("stream");
    let first = stream.next().await.expect("first chunk").expect("bytes");
    assert!(first.starts_with(b"data: "));
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(
        rest.ends_with(b"data: [DONE]\n\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    let mut exit = tokio::task::spawn_blocking(move || child.0.wait().map(|s| (s, child)))
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.0.success(), "graceful exit: {:?}", exit.0);
    // At the default level no span is kept per request, yet the failure's warning names it.
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut exit.1 .0.stderr.take().expect("stderr"), &mut logs)
        .expect("logs");
    assert!(
        logs.lines().any(|line| line.contains(r#""level":"WARN""#)
            && line.contains(r#""request_id":"smoke-upstream-timeout""#)
            && line.contains("upstream_timeout")),
        "{logs}"
    );

    // Both requests were billed before the process ended, and the CLI shows them.
    let usage = Command::new(BINARY)
        .args(["usage", "--group-by", "model"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &database)
        .output()
        .expect("usage");
    let report = String::from_utf8_lossy(&usage.stdout);
    let echo_line = report
        .lines()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_else(|| panic!("{report}"));
    let columns: Vec<&str> = echo_line.split_whitespace().collect();
    assert_eq!(columns[1], "2", "two requests: {report}");

    let revoke = Command::new(BINARY)
        .args(["keys", "revoke", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &database)
        .output()
        .expect("revoke");
    assert!(revoke.status.success());
    let list = Command::new(BINARY)
        .args(["keys", "list"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &database)
        .output()
        .expect("list");
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing.contains("smoke test") && listing.contains("revoked"),
        "{listing}"
    );
    assert!(!listing.contains(&key), "secrets are never listed");
}
