//! Static discovery: the file is watched, good edits apply without restart, bad ones are
//! rejected and the last good set stays.

mod common;

use common::*;
use serde_json::json;

#[actix_rt::test]
async fn edits_apply_live_and_broken_edits_keep_the_last_good_set() {
    let first = mock("first");
    let second = mock("second");
    let gateway = start_gateway(test_config(), &services_for("llm", &[&first], &[])).await;
    gateway.wait_ready().await;
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 200);
    assert_eq!(first.state.requests(), 1);

    // Swap the endpoint and add a service.
    let mut services = services_for("llm", &[&second], &[]);
    services["extra"] =
        json!({"host": "127.0.0.1", "port": first.addr.port(), "health_check": "/health"});
    gateway.write_services(&services);
    let registry = gateway.registry.clone();
    let second_port = second.addr.port();
    wait_for("the new endpoint set", || {
        let registry = registry.clone();
        async move {
            let Some(pool) = registry.pool("llm") else {
                return false;
            };
            let snapshot = pool.snapshot();
            snapshot.known == 1
                && snapshot
                    .eligible
                    .first()
                    .is_some_and(|e| e.spec.port == second_port)
        }
    })
    .await;
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 200);
    assert_eq!((first.state.requests(), second.state.requests()), (1, 1));
    let registry = gateway.registry.clone();
    wait_for("the new service", || {
        let registry = registry.clone();
        async move {
            registry
                .pool("extra")
                .is_some_and(|p| !p.snapshot().eligible.is_empty())
        }
    })
    .await;
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("extra/m")).await;
    assert_eq!(status, 200);
    assert_eq!(first.state.requests(), 2);

    // A broken edit is seen, rejected, and changes nothing.
    let errors_before = gateway.registry.discovery_errors();
    std::fs::write(&gateway.services_file, b"{\"llm\": {\"host\": ").expect("write");
    let registry = gateway.registry.clone();
    wait_for("the broken edit to be rejected", || {
        let registry = registry.clone();
        async move { registry.discovery_errors() > errors_before }
    })
    .await;
    for _ in 0..5 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(second.state.requests(), 6);
    // A valid edit after it proves the watcher is still alive.
    gateway.write_services(&services_for("llm", &[&first], &[]));
    let registry = gateway.registry.clone();
    let first_port = first.addr.port();
    wait_for("recovery after the broken edit", || {
        let registry = registry.clone();
        async move {
            registry.pool("llm").is_some_and(|p| {
                p.snapshot()
                    .eligible
                    .first()
                    .is_some_and(|e| e.spec.port == first_port)
            })
        }
    })
    .await;
    // The service that vanished from the file keeps its pool but loses its endpoints.
    let (status, _, body) = gateway.post("/v1/chat/completions", &chat("extra/m")).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_broken_file_at_start_up_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("services.json");
    std::fs::write(&file, br#"{"llm": {"host": "a", "port": 0}}"#).expect("write");
    let mut raw = test_config();
    raw.discovery.static_file = file.display().to_string();
    let config = gateway::config::validate(raw, "test").expect("config");
    let error = gateway::server::start(config).await.err().expect("refused");
    let message = format!("{error:#}");
    assert!(message.contains("port 0"), "{message}");
}
