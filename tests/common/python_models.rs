//! A real python-models process on its own ports for the tests that need the model server
//! (gRPC conversion, the Prometheus end-to-end check). python-models must be installed
//! (`python-models/install.sh`, run here if the venv is missing); a server that cannot start
//! fails the test.

use std::io::BufRead;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use super::client;

/// Loading the models takes a few seconds, more on a busy machine.
const STARTUP: Duration = Duration::from_secs(120);

/// A python-models process on its own ports. Its stdin is a lifeline: a shell wrapper kills the
/// server when the pipe closes, so the server dies with this value or with the test process.
pub struct PythonModels {
    pub http_port: u16,
    pub grpc_port: u16,
    wrapper: Child,
    _lifeline: ChildStdin,
}

impl PythonModels {
    pub fn start_on(http_port: u16, grpc_port: u16) -> PythonModels {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python-models");
        install_once(&root);
        let mut wrapper = Command::new("bash")
            .arg("-c")
            .arg(
                ".venv/bin/python -m model_server & server=$!; \
                 trap 'kill -KILL $server 2>/dev/null' EXIT; read -r _; \
                 kill -KILL $server; { wait $server; } 2>/dev/null",
            )
            .current_dir(&root)
            .env("HOST", "127.0.0.1")
            .env("PORT", http_port.to_string())
            .env("GRPC_PORT", grpc_port.to_string())
            .env("LOG_LEVEL", "warning")
            .stdin(Stdio::piped())
            .spawn()
            .expect("python-models starts");
        let lifeline = wrapper.stdin.take().expect("stdin");
        let server = PythonModels {
            http_port,
            grpc_port,
            wrapper,
            _lifeline: lifeline,
        };
        server.wait_healthy();
        server
    }

    pub fn start() -> PythonModels {
        PythonModels::start_on(free_port(), free_port())
    }

    /// Blocks until `/health` answers 200: the models are loaded and gRPC health says SERVING.
    fn wait_healthy(&self) {
        let deadline = std::time::Instant::now() + STARTUP;
        let address = format!("127.0.0.1:{}", self.http_port);
        loop {
            if health_ok(&address) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "python-models did not become healthy on {address} within {STARTUP:?}"
            );
            // A poll with a deadline, from plain blocking code (`health_ok` is a blocking
            // probe) that runs before any gateway or test runtime work it could stall.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The gateway's view: one instance with its HTTP port and its gRPC port.
    pub fn services(&self) -> Value {
        json!({"python-models": {"host": "127.0.0.1", "port": self.http_port,
                                 "grpc_port": self.grpc_port, "protocol": "http",
                                 "health_check": "/health"}})
    }

    /// Kills the server (SIGKILL, no goodbye) and waits until it is gone.
    pub fn kill(self) -> (u16, u16) {
        let PythonModels {
            http_port,
            grpc_port,
            mut wrapper,
            _lifeline: lifeline,
        } = self;
        drop(lifeline);
        wrapper.wait().expect("wrapper exits");
        (http_port, grpc_port)
    }

    /// The sum of a Prometheus metric over the series whose labels include every `filter`.
    pub async fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        let mut response = client()
            .get(format!("http://127.0.0.1:{}/metrics", self.http_port))
            .send()
            .await
            .expect("python-models metrics");
        let body = response.body().limit(4 * 1024 * 1024).await.expect("body");
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
            .filter(|line| filters.iter().all(|filter| line.contains(filter)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn install_once(root: &std::path::Path) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if root.join(".venv/bin/python").exists()
            && root.join("model_server/generated/model_pb2.py").exists()
        {
            return;
        }
        let status = Command::new("bash")
            .arg(root.join("install.sh"))
            .status()
            .expect("python-models/install.sh runs");
        assert!(
            status.success(),
            "python-models/install.sh failed: {status}"
        );
    });
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A blocking `GET /health` (the start-up wait runs outside any runtime).
fn health_ok(address: &str) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut status);
    status.starts_with("HTTP/1.1 200")
}
