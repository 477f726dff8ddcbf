//! Redis for the budget tests: the shared server (`TEST_REDIS_URL`, this machine's by default),
//! `redis-cli` to look inside it or to make a ledger wrong on purpose, and a TCP proxy in front
//! of it that a test can make hang and recover: a Redis hiccup that keeps Redis's data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::shared::{RedisFailureMode, SharedSettings};
use tokio::net::{TcpListener, TcpStream};

/// The shared Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `host:port` of a `redis://[auth@]host:port[/db]` URL.
fn address(url: &str) -> String {
    url.trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string()
}

/// Fails the test (never skips) when the shared Redis does not answer.
pub fn require_redis(url: &str) {
    std::net::TcpStream::connect_timeout(
        &address(url).parse().expect("TEST_REDIS_URL host:port"),
        Duration::from_secs(2),
    )
    .unwrap_or_else(|e| panic!("Redis at {url} is required for these tests (CI starts it): {e}"));
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("gwtest-{}", uuid::Uuid::new_v4().simple())
}

/// `redis-cli -u url args…`, its output trimmed.
pub fn redis_cli(url: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli is required for this test (CI installs it): {e}"));
    assert!(output.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Settings for a `SharedRedis` of a test: `timeout` per decision, `lease` per reservation.
pub fn shared_settings(
    url: &str,
    prefix: &str,
    timeout: Duration,
    lease: Duration,
) -> SharedSettings {
    SharedSettings {
        url: url.to_string(),
        prefix: prefix.to_string(),
        timeout,
        pool_size: 4,
        failure: RedisFailureMode::Local,
        budget_lease: lease,
        budget_reconcile: Duration::from_secs(60),
    }
}

/// A TCP proxy to Redis on a thread of its own (so nothing the test blocks can stall it).
pub struct RedisProxy {
    pub url: String,
    hanging: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Connections accepted while hanging: held open, never answered.
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl RedisProxy {
    pub fn start(redis_url: &str) -> RedisProxy {
        let target = address(redis_url);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let proxy = RedisProxy {
            url: format!("redis://127.0.0.1:{port}"),
            hanging: Arc::default(),
            links: Arc::default(),
            held: Arc::default(),
        };
        let (hanging, links, held) = (
            Arc::clone(&proxy.hanging),
            Arc::clone(&proxy.links),
            Arc::clone(&proxy.held),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if hanging.load(Ordering::SeqCst) {
                        let stream = inbound.into_std().expect("std stream");
                        held.lock().expect("lock").push(stream);
                        continue;
                    }
                    let target = target.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().expect("lock").push(link.abort_handle());
                }
            })
        });
        proxy
    }

    /// Redis stops answering: open connections are cut, new ones are accepted and left
    /// without an answer, as with a Redis that hangs or a network that drops packets.
    pub fn hang(&self) {
        self.hanging.store(true, Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    /// Redis answers again (with everything it held before).
    pub fn recover(&self) {
        self.hanging.store(false, Ordering::SeqCst);
        self.held.lock().expect("lock").clear();
    }
}
