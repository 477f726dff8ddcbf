//! The production front door end to end: Debian's nginx running docker/nginx/nginx.prod.conf
//! (rendered for loopback, with a generated self-signed certificate) in front of the real
//! gateway and a static dashboard build served like the frontend container serves it. Through
//! it: the HTTPS redirect, the dashboard (gzipped), a REST chat, an SSE stream whose first
//! event arrives before the upstream's last, a WebSocket chat over the upgrade, GraphQL, the
//! body limit, and the client IP the gateway logs with and without trusting nginx.
//!
//! nginx reaches the gateway from 127.0.0.2 (`proxy_bind`, added by the renderer) while the
//! test connects from 127.0.0.1, so the gateway can tell the proxy from the client.

mod common;

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use awc::ws::{Frame, Message};
use common::tools::{free_port, render, repository, require_tool, Process};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// The address nginx connects to the gateway from.
const NGINX_SOURCE: &str = "127.0.0.2";

/// Everything the gateways in this binary log, for the client-IP checks.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    let logs = LOGS.get_or_init(|| Mutex::new(Vec::new()));
    static SUBSCRIBER: OnceLock<()> = OnceLock::new();
    SUBSCRIBER.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
    });
    logs
}

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        logs()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log line of the failed login of `username`.
async fn login_log_line(username: &str) -> String {
    let needle = format!("username={username}");
    let mut found = String::new();
    wait_for("the login to be logged", || {
        let text =
            String::from_utf8_lossy(&logs().lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        found = text
            .lines()
            .find(|line| line.contains("login failed") && line.contains(&needle))
            .unwrap_or_default()
            .to_string();
        let done = !found.is_empty();
        async move { done }
    })
    .await;
    found
}

/// nginx with the production front-door config, and a second nginx serving the dashboard's
/// static files (the frontend container's job).
struct FrontDoor {
    http: u16,
    https: u16,
    client: awc::Client,
    _nginx: Process,
    _dashboard: Process,
    _dir: tempfile::TempDir,
}

impl FrontDoor {
    async fn start(gateway: &TestGateway) -> FrontDoor {
        let nginx = require_tool("nginx");
        require_tool("python3");
        let dir = tempfile::tempdir().expect("dir");
        // nginx's workers run as nobody: they must be able to read the static files.
        set_mode(dir.path(), 0o755);
        let root = dir.path();
        let dist = dashboard_build(root);
        let (cert_der, cert_pem, key_pem) = certificate();
        let ssl = root.join("ssl");
        std::fs::create_dir(&ssl).expect("ssl dir");
        std::fs::write(ssl.join("server.crt"), &cert_pem).expect("cert");
        std::fs::write(ssl.join("server.key"), key_pem).expect("key");

        let dashboard_port = free_port();
        let dashboard_conf = root.join("dashboard.conf");
        std::fs::write(
            &dashboard_conf,
            format!(
                "pid {root}/dashboard.pid;\nerror_log {root}/dashboard-error.log;\n\
                 events {{}}\nhttp {{\n  include /etc/nginx/mime.types;\n  access_log off;\n\
                 server {{\n    listen 127.0.0.1:{dashboard_port};\n    root {dist};\n\
                 location / {{ try_files $uri /index.html; }}\n  }}\n}}\n",
                root = root.display(),
                dist = dist.display(),
            ),
        )
        .expect("dashboard conf");
        let mut dashboard = spawn_nginx(&nginx, root, &dashboard_conf, "dashboard");
        dashboard.wait_listening(dashboard_port).await;

        let (http, https) = (free_port(), free_port());
        let conf = root.join("front-door.conf");
        let source = repository().join("docker/nginx/nginx.prod.conf");
        render(&[
            "nginx",
            &source.display().to_string(),
            &conf.display().to_string(),
            "--backend",
            &gateway.addr.to_string(),
            "--frontend",
            &format!("127.0.0.1:{dashboard_port}"),
            "--http",
            &http.to_string(),
            "--https",
            &https.to_string(),
            "--ssl-dir",
            &ssl.display().to_string(),
            "--prefix",
            &root.display().to_string(),
            "--proxy-bind",
            NGINX_SOURCE,
        ]);
        let mut front = spawn_nginx(&nginx, root, &conf, "front door");
        front.wait_listening(http).await;
        front.wait_listening(https).await;
        FrontDoor {
            http,
            https,
            client: tls_client(cert_der),
            _nginx: front,
            _dashboard: dashboard,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https)
    }
}

fn spawn_nginx(
    nginx: &std::path::Path,
    root: &std::path::Path,
    conf: &std::path::Path,
    name: &str,
) -> Process {
    let log = root.join(format!("{}.out", name.replace(' ', "-")));
    Process::spawn(
        name,
        std::process::Command::new(nginx)
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(root.join("startup-error.log"))
            .args(["-g", "daemon off;"]),
        log,
    )
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// frontend/dist when the dashboard has been built, otherwise a small generated page (big
/// enough for nginx's gzip threshold).
fn dashboard_build(root: &std::path::Path) -> std::path::PathBuf {
    let built = repository().join("frontend/dist");
    if built.join("index.html").is_file() {
        return built;
    }
    let dist = root.join("dist");
    std::fs::create_dir(&dist).expect("dist");
    set_mode(&dist, 0o755);
    let mut page = std::fs::File::create(dist.join("index.html")).expect("index");
    write!(
        page,
        "<!doctype html><title>AI Gateway</title><div id=\"root\">AI Gateway dashboard</div>\n{}",
        "<!-- padding so the page is worth compressing -->\n".repeat(64)
    )
    .expect("write index");
    set_mode(&dist.join("index.html"), 0o644);
    dist
}

/// A self-signed certificate for `localhost`: DER for the client's trust store, PEM for nginx.
fn certificate() -> (rustls_pki_types::CertificateDer<'static>, String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    (
        certified.cert.der().clone(),
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
    )
}

fn tls_client(certificate: rustls_pki_types::CertificateDer<'static>) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .timeout(std::time::Duration::from_secs(30))
        .finish()
}

/// A gateway with keys, rate limits (so login throttling keys on the client IP) and, when
/// `trust_nginx`, `TRUSTED_PROXIES` naming nginx's address.
async fn gateway_behind_nginx(upstream: &MockUpstream, trust_nginx: bool) -> TestGateway {
    let mut raw = config_on(Db::Sqlite).await;
    raw.rate_limit.enabled = true;
    if trust_nginx {
        raw.server.trusted_proxies = vec![format!("{NGINX_SOURCE}/32")];
    }
    let gateway = start_gateway(raw, &services_for("llm", &[upstream], &[])).await;
    gateway.wait_ready().await;
    gateway
}

/// A failed login through the front door, optionally with a forged `X-Forwarded-For`; the
/// client IP the gateway logged for it.
async fn logged_client_ip(door: &FrontDoor, forged: Option<&str>) -> String {
    let username = format!("intruder{}", uuid::Uuid::new_v4().simple());
    let mut request = door.client.post(door.url("/auth/login"));
    if let Some(forged) = forged {
        request = request.insert_header(("x-forwarded-for", forged));
    }
    let response = request
        .send_json(&json!({"username": username, "password": "wrong guess"}))
        .await
        .expect("login through nginx");
    assert_eq!(response.status().as_u16(), 401);
    let line = login_log_line(&username).await;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("client_ip="))
        .unwrap_or_else(|| panic!("no client_ip in {line}"))
        .to_string()
}

#[actix_rt::test]
async fn the_production_front_door_carries_every_kind_of_traffic() {
    logs();
    let upstream = gated_mock("a", 3);
    let gate = upstream.state.gate.clone().expect("gated");
    let gateway = gateway_behind_nginx(&upstream, true).await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "e2e"})).await;
    let door = FrontDoor::start(&gateway).await;

    // Plain HTTP only redirects.
    let response = awc::Client::builder()
        .disable_redirects()
        .finish()
        .get(format!("http://127.0.0.1:{}/v1/models", door.http))
        .send()
        .await
        .expect("http");
    assert_eq!(response.status().as_u16(), 301);
    assert_eq!(
        response.headers().get("location").map(|v| v.as_bytes()),
        Some(&b"https://127.0.0.1/v1/models"[..])
    );

    // The dashboard, compressed because it is static.
    let mut response = door
        .client
        .get(door.url("/"))
        .insert_header(("accept-encoding", "gzip"))
        .send()
        .await
        .expect("dashboard");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    assert!(response.headers().contains_key("strict-transport-security"));
    let _ = response
        .body()
        .limit(1 << 22)
        .await
        .expect("dashboard body");

    // A REST chat (the gate holds streams only); the request id the client chose comes back.
    let mut response = door
        .client
        .post(door.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .insert_header(("x-request-id", "e2e-front-door-1"))
        .send_json(&chat("llm/m"))
        .await
        .expect("chat");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"e2e-front-door-1"[..])
    );
    let body: Value = response.json().await.expect("chat JSON");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello there"
    );

    sse_events_are_not_held_back(&door, &key, &upstream, &gate).await;
    websocket_chat_over_the_upgrade(&door, &key, &gate).await;

    // GraphQL.
    let mut response = door
        .client
        .post(door.url("/graphql"))
        .bearer_auth(&key)
        .send_json(&json!({"query": "{ services { name eligibleEndpoints } }"}))
        .await
        .expect("graphql");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("graphql JSON");
    assert_eq!(
        body["data"]["services"],
        json!([{"name": "llm", "eligibleEndpoints": 1}])
    );

    // Bodies beyond the gateway's limit stop at the door; metrics are not served there.
    let response = door
        .client
        .post(door.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .insert_header(("content-type", "application/json"))
        .send_body(vec![b' '; 5 * 1024 * 1024])
        .await
        .expect("big body");
    assert_eq!(response.status().as_u16(), 413);
    let response = door
        .client
        .get(door.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status().as_u16(), 404);

    // Trusted, nginx's X-Forwarded-For names the client, even past a forged entry.
    assert_eq!(logged_client_ip(&door, None).await, "127.0.0.1");
    assert_eq!(
        logged_client_ip(&door, Some("203.0.113.9")).await,
        "127.0.0.1"
    );
    gateway.stop().await;
}

async fn sse_events_are_not_held_back(
    door: &FrontDoor,
    key: &str,
    upstream: &MockUpstream,
    gate: &tokio::sync::Semaphore,
) {
    let completed = upstream.state.streams_completed.load(Ordering::SeqCst);
    let mut response = door
        .client
        .post(door.url("/v1/chat/completions"))
        .bearer_auth(key)
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    let first = tokio::time::timeout(DEADLINE, response.next())
        .await
        .expect("the first event through nginx before the upstream finishes")
        .expect("a chunk")
        .expect("chunk bytes");
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "{first:?}"
    );
    assert_eq!(
        upstream.state.streams_completed.load(Ordering::SeqCst),
        completed,
        "the upstream still holds the rest of its stream"
    );
    gate.add_permits(1);
    let rest = response.body().limit(1 << 20).await.expect("rest");
    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"));
}

async fn websocket_chat_over_the_upgrade(
    door: &FrontDoor,
    key: &str,
    gate: &tokio::sync::Semaphore,
) {
    let (response, mut socket) = door
        .client
        .ws(format!("wss://localhost:{}/v1/ws", door.https))
        .bearer_auth(key)
        .connect()
        .await
        .expect("websocket upgrade through nginx");
    assert_eq!(response.status().as_u16(), 101);
    let request = json!({"type": "chat.request", "id": "w1", "body": {
        "model": "llm/m", "messages": [{"role": "user", "content": "over the socket"}]}});
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .expect("send");
    gate.add_permits(1);
    let mut deltas = 0;
    loop {
        let frame = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("a message within the deadline")
            .expect("socket open")
            .expect("frame");
        let Frame::Text(text) = frame else {
            continue;
        };
        let message: Value = serde_json::from_slice(&text).expect("JSON message");
        match message["type"].as_str() {
            Some("chat.delta") => deltas += 1,
            Some("chat.done") => break,
            _ => panic!("unexpected {message}"),
        }
    }
    assert!(deltas > 0, "deltas arrive before chat.done");
}

#[actix_rt::test]
async fn an_untrusted_proxy_is_logged_as_the_client() {
    logs();
    let upstream = mock("a");
    let gateway = gateway_behind_nginx(&upstream, false).await;
    let door = FrontDoor::start(&gateway).await;
    // Without TRUSTED_PROXIES the gateway believes only the peer: nginx's address.
    assert_eq!(logged_client_ip(&door, None).await, NGINX_SOURCE);
    assert_eq!(
        logged_client_ip(&door, Some("203.0.113.9")).await,
        NGINX_SOURCE
    );
    gateway.stop().await;
}
