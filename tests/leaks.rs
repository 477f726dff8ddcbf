//! What must not leave the gateway: a service's credential to another service's endpoints, and
//! a database's or an upstream's error text to clients.

mod common;

use common::*;
use serde_json::{json, Value};

fn authorization(upstream: &MockUpstream) -> Option<String> {
    upstream
        .state
        .last_headers
        .lock()
        .expect("lock")
        .iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.clone())
}

/// A default `api_key` goes to the services the configuration names, never to a service only
/// discovery knows of (anyone who can register an instance could otherwise collect it).
#[actix_rt::test]
async fn an_api_key_goes_only_to_its_services() {
    let named = mock("named");
    let found = mock("found");
    let mut raw = test_config();
    raw.upstream_defaults.api_key = Some("sk-default".into());
    raw.services.insert("named".into(), Default::default());
    let instance = |m: &MockUpstream| json!({"host": "127.0.0.1", "port": m.addr.port()});
    let services = json!({
        "named": {"health_check": "/health", "instances": [instance(&named)]},
        "found": {"health_check": "/health", "instances": [instance(&found)]},
    });
    let gateway = start_gateway(raw, &services).await;
    gateway.wait_eligible("named", 1).await;
    gateway.wait_eligible("found", 1).await;
    for (model, upstream) in [("named/m", &named), ("found/m", &found)] {
        let (status, _, body) = gateway.post("/v1/chat/completions", &chat(model)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(upstream.state.requests(), 1, "{model} reached its upstream");
    }
    assert_eq!(authorization(&named).as_deref(), Some("Bearer sk-default"));
    assert_eq!(
        authorization(&found),
        None,
        "a discovered service gets no key"
    );
    gateway.stop().await;
}

/// An upstream's error body and transport details stay in the log: the client gets a stable
/// message that names the request id to ask about.
#[actix_rt::test]
async fn upstream_error_details_stay_in_the_log() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.upstream_defaults.max_attempts = Some(1);
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    upstream.state.set_mode(Mode::Fail);
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("x-request-id", "trace-me-42"))
        .send_json(&chat("llm/m"));
    let mut response = response.await.expect("response");
    assert_eq!(response.status().as_u16(), 502);
    let body: Value = response.json().await.expect("JSON error");
    let message = body["error"]["message"].as_str().expect("message");
    assert_eq!(
        message,
        "Service 'llm' answered with HTTP 500. (request id: trace-me-42)"
    );
    assert!(
        !message.contains("mock failure"),
        "the upstream's body leaked"
    );
    assert_eq!(body["error"]["code"], "upstream_error");

    // A service nobody listens on: no address or socket error reaches the client.
    let port = common::python_models::free_port();
    let closed = json!({"llm": {"instances": [{"host": "127.0.0.1", "port": port}]}});
    gateway.write_services(&closed);
    wait_for("the closed endpoint to replace the mock", || async {
        let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        status == 502 && error_code(&body) == "upstream_connect_error"
    })
    .await;
    let (_, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Could not connect to service 'llm'."),
        "{text}"
    );
    assert!(!text.contains(&port.to_string()), "{text}");
    assert!(!text.to_lowercase().contains("refused"), "{text}");
    gateway.stop().await;
}

/// A database failure is told to the client as unavailability, without the driver's text.
#[test]
fn database_error_text_stays_in_the_log() {
    let error = gateway::error::GatewayError::StoreUnavailable(
        "connection to server at \"10.1.2.3\", port 5432 failed: FATAL: password authentication failed for user \"gw\"".into(),
    );
    let body = serde_json::to_value(error.body()).expect("JSON");
    let message = body["error"]["message"].as_str().expect("message");
    assert_eq!(
        message,
        "The gateway's database is unavailable; retry shortly."
    );
    assert_eq!(body["error"]["code"], "database_unavailable");
    assert!(
        error.to_string().contains("password authentication"),
        "the log keeps it"
    );
}
