//! A database outage: requests keep flowing, usage waits in the buffer, and every row arrives
//! once the database is back. The outage is a TCP proxy between the gateway and PostgreSQL
//! that the test severs and restores.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

struct Proxy {
    port: u16,
    severed: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    /// Runs on a thread of its own, so nothing the gateway blocks can stall it.
    fn start(target: &'static str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let severed = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (cut, registry) = (Arc::clone(&severed), Arc::clone(&links));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    registry.lock().expect("lock").push(link.abort_handle());
                }
            })
        });
        Proxy {
            port,
            severed,
            links,
        }
    }

    /// Drops every open connection and refuses new ones.
    fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.severed.store(false, Ordering::SeqCst);
    }
}

#[actix_rt::test]
async fn no_usage_row_is_lost_while_the_database_is_down() {
    let direct = fresh_postgres_database().await;
    let database = direct.rsplit('/').next().expect("name").to_string();
    let proxy = Proxy::start("127.0.0.1:5432");
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.database.url = Some(format!(
        "postgres://postgres@127.0.0.1:{}/{database}",
        proxy.port
    ));
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway
        .create_key(&admin, json!({"name": "through the outage"}))
        .await;
    let send = |n: usize| {
        let gateway = &gateway;
        let key = key.clone();
        async move {
            for _ in 0..n {
                let (status, body) = gateway
                    .send_as(
                        awc::http::Method::POST,
                        "/v1/chat/completions",
                        &key,
                        Some(&chat("llm/m")),
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
            }
        }
    };
    send(5).await;
    gateway.usage_rows(id, 5).await;

    proxy.sever();
    send(20).await;
    let usage = gateway.usage.clone();
    wait_for("a failed usage write", || {
        let usage = usage.clone();
        async move { usage.counters().failed_writes.load(Ordering::Relaxed) > 0 }
    })
    .await;
    assert!(gateway.usage.pending() > 0, "events wait in the buffer");
    let metrics = gateway.metrics_text().await;
    assert!(!metrics.contains("gateway_usage_pending_events 0\n"));

    proxy.restore();
    let rows = gateway.usage_rows(id, 25).await;
    assert_eq!(rows.len(), 25);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 25, "each request exactly once");
    assert!(gateway.usage.flush().await);
    assert_eq!(gateway.usage.pending(), 0);
    gateway.stop().await;
}
