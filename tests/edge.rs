//! The HTTP edge around the pipeline: gzip, CORS, TLS, metrics, health and readiness.

mod common;

use std::io::Read;
use std::sync::Arc;

use common::*;

#[actix_rt::test]
async fn long_json_answers_are_gzipped_when_asked_and_short_ones_go_as_they_are() {
    let upstream = mock("a");
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    // The mock echoes the prompt: a long one makes an answer past the 1 KiB threshold.
    let long_prompt = "many words ".repeat(200);
    let long_chat = serde_json::json!({"model": "llm/m", "messages": [{"role": "user", "content": long_prompt}]});
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("accept-encoding", "gzip, deflate"))
        .send_json(&long_chat)
        .await
        .expect("response");
    assert_eq!(
        response.headers().get("content-encoding").expect("encoded"),
        "gzip"
    );
    let vary = response
        .headers()
        .get("vary")
        .expect("vary")
        .to_str()
        .expect("ascii");
    assert!(vary.starts_with("accept-encoding"), "{vary}");
    let compressed = response.body().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    assert!(text.contains(&format!("echo: {long_prompt}")), "{text}");
    assert!(
        compressed.len() < text.len() / 4,
        "{} of {}",
        compressed.len(),
        text.len()
    );

    // A short answer is not worth compressing: it comes as it is, whatever was asked.
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("accept-encoding", "gzip, deflate"))
        .send_json(&chat("llm/m"))
        .await
        .expect("response");
    assert!(response.headers().get("content-encoding").is_none());
    let body = response.body().await.expect("body");
    assert!(String::from_utf8_lossy(&body).contains("echo: hello there"));
    gateway.stop().await;

    let mut raw = test_config();
    raw.gzip.enabled = false;
    let plain = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    plain.wait_ready().await;
    let response = plain
        .client
        .post(plain.url("/v1/chat/completions"))
        .insert_header(("accept-encoding", "gzip"))
        .send_json(&long_chat)
        .await
        .expect("response");
    assert!(response.headers().get("content-encoding").is_none());
    plain.stop().await;
}

#[actix_rt::test]
async fn cors_allows_configured_origins_only() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.cors.allowed_origins = vec!["http://dash.example".into()];
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    let preflight = |origin: &'static str| {
        gateway
            .client
            .request(
                awc::http::Method::OPTIONS,
                gateway.url("/v1/chat/completions"),
            )
            .insert_header(("origin", origin))
            .insert_header(("access-control-request-method", "POST"))
            .insert_header((
                "access-control-request-headers",
                "authorization, content-type",
            ))
            .send()
    };
    let allowed = preflight("http://dash.example").await.expect("preflight");
    assert_eq!(allowed.status().as_u16(), 200);
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .expect("allowed"),
        "http://dash.example"
    );
    let refused = preflight("http://evil.example").await.expect("preflight");
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(refused.status().as_u16(), 400);
    gateway.stop().await;
}

#[actix_rt::test]
async fn tls_serves_https() {
    let upstream = mock("a");
    let dir = tempfile::tempdir().expect("dir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_file, certified.signing_key.serialize_pem()).expect("write key");
    let mut raw = test_config();
    raw.tls.enabled = true;
    raw.tls.cert_file = Some(cert_file.display().to_string());
    raw.tls.key_file = Some(key_file.display().to_string());
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    assert_eq!(gateway.scheme, "https");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .finish();
    let url = format!(
        "https://localhost:{}/v1/chat/completions",
        gateway.addr.port()
    );
    let ready_url = format!("https://localhost:{}/ready", gateway.addr.port());
    let ready_client = client.clone();
    wait_for("https readiness", || {
        let client = ready_client.clone();
        let url = ready_url.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let mut response = client
        .post(url)
        .send_json(&chat("llm/m"))
        .await
        .expect("https response");
    assert_eq!(response.status().as_u16(), 200);
    let body = response.body().await.expect("body");
    assert!(String::from_utf8_lossy(&body).contains("echo: hello there"));
    gateway.stop().await;
}

#[actix_rt::test]
async fn metrics_cover_routes_upstreams_overhead_and_health() {
    let upstream = mock("a");
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    for _ in 0..3 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 200);
    }
    let text = gateway.metrics_text().await;
    let endpoint = format!("127.0.0.1:{}", upstream.addr.port());
    for expected in [
        r#"gateway_http_requests_total{endpoint="/v1/chat/completions",method="POST",status="200"} 3"#.to_string(),
        r#"gateway_overhead_seconds_count{route="chat_completions"} 3"#.to_string(),
        format!(r#"gateway_upstream_request_duration_seconds_count{{endpoint="{endpoint}",outcome="success",service="llm"}} 3"#),
        format!(r#"gateway_upstream_endpoint_healthy{{endpoint="{endpoint}",origin="static",service="llm"}} 1"#),
        r#"gateway_requests_total{key="none",model="llm/*",status="2xx"} 3"#.to_string(),
        "# TYPE gateway_discovery_errors_total counter".to_string(),
        "# TYPE process_cpu_seconds_total counter".to_string(),
        "process_resident_memory_bytes ".to_string(),
        "process_open_fds ".to_string(),
        "process_threads ".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
    // Metrics live on their own listener only: the API port has no /metrics.
    let response = gateway
        .client
        .get(gateway.url("/metrics"))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 404);
    // Paths no route has (made up by clients) share one label, and routes in the body-deadline
    // scope keep their own pattern.
    for path in ["/no/such/path", "/another-made-up-path", "/admin/overview"] {
        gateway
            .client
            .get(gateway.url(path))
            .send()
            .await
            .expect("response");
    }
    // Made-up methods are refused before the metrics see them: no client names a series.
    for method in ["FOO1", "FOO2", "PROPFIND"] {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("token");
        let mut response = gateway
            .client
            .request(method.clone(), gateway.url("/v1/models"))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status().as_u16(), 405, "{method}");
        assert!(response.headers().contains_key("x-request-id"), "{method}");
        let body: serde_json::Value = response.json().await.expect("json error");
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
    let text = gateway.metrics_text().await;
    assert!(
        !text.contains("FOO") && !text.contains("PROPFIND"),
        "a made-up method became a label:\n{text}"
    );
    let unknown: u64 = text
        .lines()
        .filter(|line| line.starts_with(r#"gateway_http_requests_total{endpoint="UNKNOWN","#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(unknown, 3, "/metrics and the two made-up paths:\n{text}");
    let admin =
        r#"gateway_http_requests_total{endpoint="/admin/overview",method="GET",status="401"} 1"#;
    assert!(text.contains(admin), "missing {admin} in\n{text}");
    assert!(
        !text.contains("made-up") && !text.contains("no/such") && !text.contains(r#"endpoint="""#),
        "{text}"
    );
    gateway.stop().await;

    let mut raw = test_config();
    raw.monitoring.prometheus_enabled = false;
    let quiet = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    assert!(
        quiet.metrics.is_none(),
        "no metrics listener when Prometheus is off"
    );
    quiet.stop().await;
}

/// Metric `model` labels come from the route, a set the configuration bounds: an alias's name,
/// or `<service>/*` for whatever model a client names within a service, even names an upstream
/// accepts, so no client can grow the series count.
#[actix_rt::test]
async fn model_labels_follow_routes_not_client_names() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.models = vec![gateway::config::raw::RawModel {
        name: "smol".into(),
        service: "llm".into(),
        upstream_model: "m".into(),
    }];
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    for i in 0..4 {
        let (status, _, _) = gateway
            .post("/v1/chat/completions", &chat(&format!("llm/made-up-{i}")))
            .await;
        assert_eq!(status, 200, "the mock accepts any model name");
    }
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("smol")).await;
    assert_eq!(status, 200);
    upstream.state.set_mode(Mode::Fail);
    let (status, _, _) = gateway
        .post("/v1/chat/completions", &chat("llm/made-up-9"))
        .await;
    assert!(status >= 500, "{status}");
    let text = gateway.metrics_text().await;
    assert!(!text.contains("made-up"), "{text}");
    for expected in [
        r#"gateway_requests_total{key="none",model="llm/*",status="2xx"} 4"#,
        r#"gateway_requests_total{key="none",model="llm/*",status="5xx"} 1"#,
        r#"gateway_requests_total{key="none",model="smol",status="2xx"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    gateway.stop().await;
}

#[actix_rt::test]
async fn health_is_live_while_ready_waits_for_endpoints() {
    let upstream = mock("a");
    upstream.state.set_mode(Mode::Fail);
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    let (status, body) = gateway.get_json("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = gateway.get_json("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    upstream.state.set_mode(Mode::Normal);
    gateway.wait_ready().await;
    gateway.stop().await;
}
