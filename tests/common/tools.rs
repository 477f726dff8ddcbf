//! Real operator tools (Debian's nginx and prometheus) as child processes for the end-to-end
//! tests: required, never skipped, killed with the value that owns them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::DEADLINE;

/// Fails the test (never skips) when `tool` is not installed: CI installs it with
/// deployment/scripts/install-monitoring-tools.sh, and so should a developer.
pub fn require_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{tool}` is required by this test and is not installed: run \
                 deployment/scripts/install-monitoring-tools.sh (CI=true never skips)"
            )
        })
}

/// The repository root (for docker/ and deployment/).
pub fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs deployment/scripts/render-monitoring-config.py with `args`, failing on any error.
pub fn render(args: &[&str]) {
    let script = repository().join("deployment/scripts/render-monitoring-config.py");
    let output = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs the renderer");
    assert!(
        output.status.success(),
        "render {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A child process killed (and reaped) on drop, with its output in `log`.
pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, command: &mut Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Process {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `port` on 127.0.0.1 accepts connections; fails with the process's log if
    /// it exits or the deadline passes.
    pub async fn wait_listening(&mut self, port: u16) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log_text());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not listen on {port}:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    /// SIGTERM first (nginx's master then stops its workers, Prometheus closes its database),
    /// SIGKILL if it has not exited within five seconds.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            // Drop cannot await: a short blocking poll for the child's exit, with a deadline.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
