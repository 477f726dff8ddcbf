//! Kubernetes discovery against a fake API server: list + watch of EndpointSlices with
//! resource versions, bookmarks and a `410 Gone` expiry that forces a re-list.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use gateway::config::DiscoveryType;
use serde_json::{json, Value};

const NAMESPACE: &str = "ai-gateway";

#[derive(Default)]
struct ApiData {
    resource_version: u64,
    /// Slice name → the slice as stored (with its resourceVersion).
    slices: BTreeMap<String, Value>,
    /// `(resourceVersion, type, object)`, what watches replay and follow.
    events: Vec<(u64, &'static str, Value)>,
    /// Watches from before this version get `410 Gone`; bumping it ends open watches.
    expired_before: u64,
    lists: u64,
    watches: Vec<u64>,
    /// Label selectors the client sent.
    selectors: Vec<String>,
    down: bool,
}

struct FakeApi {
    data: Mutex<ApiData>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl FakeApi {
    fn change(&self, change: impl FnOnce(&mut ApiData)) {
        let version = {
            let mut data = self.data.lock().expect("lock");
            change(&mut data);
            data.resource_version
        };
        self.changes.send_replace(version);
    }

    /// Stores a slice and records the watch event for it.
    fn put_slice(&self, name: &str, endpoints: Vec<Value>) {
        self.change(|data| {
            data.resource_version += 1;
            let version = data.resource_version;
            let kind = if data.slices.contains_key(name) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let slice = slice(name, version, endpoints);
            data.slices.insert(name.into(), slice.clone());
            data.events.push((version, kind, slice));
        });
    }

    fn delete_slice(&self, name: &str) {
        self.change(|data| {
            data.resource_version += 1;
            let version = data.resource_version;
            if let Some(mut slice) = data.slices.remove(name) {
                slice["metadata"]["resourceVersion"] = json!(version.to_string());
                data.events.push((version, "DELETED", slice));
            }
        });
    }

    /// Compaction: history is gone, open watches end with 410, and the change below is only
    /// visible to a fresh list.
    fn expire_and_change(&self, name: &str, endpoints: Vec<Value>) {
        self.change(|data| {
            data.resource_version += 1;
            let version = data.resource_version;
            data.slices
                .insert(name.into(), slice(name, version, endpoints));
            data.events.clear();
            data.expired_before = version + 1;
        });
    }

    fn lists(&self) -> u64 {
        self.data.lock().expect("lock").lists
    }
}

fn slice(name: &str, version: u64, endpoints: Vec<Value>) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "resourceVersion": version.to_string(),
            "labels": {"kubernetes.io/service-name": "llm", "aigateway.io/upstream": "true"}
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": endpoints.first().and_then(|e| e["_port"].as_u64()).unwrap_or(80), "protocol": "TCP"}],
        "endpoints": endpoints.iter().map(|e| {
            let mut e = e.clone();
            e.as_object_mut().map(|o| o.remove("_port"));
            e
        }).collect::<Vec<_>>()
    })
}

/// An endpoint of a mock (the port travels in `_port` to the slice's port list).
fn endpoint(mock: &MockUpstream, ready: bool, terminating: bool) -> Value {
    json!({"addresses": ["127.0.0.1"], "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
           "_port": mock.addr.port()})
}

fn query(request: &HttpRequest) -> BTreeMap<String, String> {
    web::Query::<BTreeMap<String, String>>::from_query(request.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    text.push(b'\n');
    Bytes::from(text)
}

fn gone(version: u64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("too old resource version: {version}"), "reason": "Expired", "code": 410})
}

async fn endpoint_slices(fake: web::Data<FakeApi>, request: HttpRequest) -> HttpResponse {
    let query = query(&request);
    let mut data = fake.data.lock().expect("lock");
    if data.down {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "message": "etcd unavailable", "code": 503}));
    }
    data.selectors
        .push(query.get("labelSelector").cloned().unwrap_or_default());
    if query.get("watch").map(String::as_str) != Some("true") {
        data.lists += 1;
        let items: Vec<Value> = data.slices.values().cloned().collect();
        return HttpResponse::Ok().json(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": data.resource_version.to_string()}, "items": items
        }));
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    data.watches.push(from);
    if from < data.expired_before {
        let body = line("ERROR", &gone(from));
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(body);
    }
    drop(data);
    let fake = fake.into_inner();
    let changes = fake.changes.subscribe();
    let state = (fake, changes, from, false);
    let events = futures_util::stream::unfold(
        state,
        |(fake, mut changes, mut seen, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = {
                    let data = fake.data.lock().expect("lock");
                    if data.expired_before > seen {
                        // Compacted under this watch: tell the client to start over.
                        Some((line("ERROR", &gone(seen)), true, seen))
                    } else {
                        data.events
                            .iter()
                            .find(|(version, _, _)| *version > seen)
                            .map(|(version, kind, object)| (line(kind, object), false, *version))
                    }
                };
                if let Some((bytes, end, version)) = next {
                    seen = version;
                    return Some((Ok::<_, actix_web::Error>(bytes), (fake, changes, seen, end)));
                }
                if tokio::time::timeout(Duration::from_millis(200), changes.changed())
                    .await
                    .is_err()
                {
                    // Quiet for a while: a bookmark with the latest version.
                    let latest = fake.data.lock().expect("lock").resource_version;
                    seen = seen.max(latest);
                    let bookmark = json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                                      "metadata": {"resourceVersion": seen.to_string()}});
                    return Some((
                        Ok(line("BOOKMARK", &bookmark)),
                        (fake, changes, seen, false),
                    ));
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(events)
}

fn start_fake_api() -> (Arc<FakeApi>, String) {
    let fake = Arc::new(FakeApi {
        data: Mutex::new(ApiData {
            resource_version: 100,
            ..ApiData::default()
        }),
        changes: tokio::sync::watch::channel(100).0,
    });
    let data = web::Data::from(Arc::clone(&fake));
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            web::get().to(endpoint_slices),
        )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = *server.addrs().first().expect("address");
    actix_web::rt::spawn(server.run());
    (fake, format!("http://{addr}"))
}

fn kubernetes_config(api_url: &str) -> gateway::config::RawConfig {
    let mut raw = test_config();
    raw.discovery.kind = DiscoveryType::Kubernetes;
    raw.discovery.kubernetes.namespace = NAMESPACE.into();
    raw.discovery.kubernetes.api_url = Some(api_url.into());
    raw.discovery.kubernetes.retry_base_ms = 20;
    raw.discovery.kubernetes.retry_max_ms = 200;
    raw
}

fn ports(gateway: &TestGateway) -> Vec<u16> {
    let mut ports: Vec<u16> = gateway
        .registry
        .pool("llm")
        .map(|p| p.snapshot().eligible.clone())
        .unwrap_or_default()
        .iter()
        .map(|e| e.spec.port)
        .collect();
    ports.sort();
    ports
}

async fn wait_ports(gateway: &TestGateway, mut expected: Vec<u16>) {
    expected.sort();
    wait_for(&format!("eligible ports {expected:?}"), || async {
        ports(gateway) == expected
    })
    .await;
}

#[actix_rt::test]
async fn slices_added_removed_and_unready_under_load_without_a_failed_request() {
    let (fake, url) = start_fake_api();
    let a = mock("a");
    let b = mock("b");
    fake.put_slice("llm-a", vec![endpoint(&a, true, false)]);
    let gateway = start_gateway(kubernetes_config(&url), &json!({})).await;
    wait_ports(&gateway, vec![a.addr.port()]).await;
    assert!(fake
        .data
        .lock()
        .expect("lock")
        .selectors
        .iter()
        .all(|s| s == "aigateway.io/upstream=true"));
    let admin = gateway.admin_token().await;
    let load = Load::start(&gateway, "llm/m", 4);
    load.progress(20).await;

    // A slice that is not ready yet adds nothing; once ready, it joins after its check.
    fake.put_slice("llm-b", vec![endpoint(&b, false, false)]);
    load.progress(20).await;
    assert_eq!(b.state.requests(), 0);
    fake.put_slice("llm-b", vec![endpoint(&b, true, false)]);
    wait_ports(&gateway, vec![a.addr.port(), b.addr.port()]).await;
    let states = endpoint_states(&gateway, &admin, "llm").await;
    let b_address = format!("127.0.0.1:{}", b.addr.port());
    assert_eq!(states[&b_address]["origin"], "kubernetes");
    let before = b.state.requests();
    load.progress(40).await;
    assert!(b.state.requests() > before);

    // Deleting a slice removes its endpoints without failing a request.
    fake.delete_slice("llm-a");
    wait_ports(&gateway, vec![b.addr.port()]).await;
    let a_count = a.state.requests();
    load.progress(30).await;
    assert_eq!(a.state.requests(), a_count);

    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {ok} failed: {failures:?}",
        failures.len()
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn an_expired_watch_re_lists_and_picks_up_what_it_missed() {
    let (fake, url) = start_fake_api();
    let a = mock("a");
    let b = mock("b");
    fake.put_slice("llm-a", vec![endpoint(&a, true, false)]);
    let gateway = start_gateway(kubernetes_config(&url), &json!({})).await;
    wait_ports(&gateway, vec![a.addr.port()]).await;
    let fake_for_wait = Arc::clone(&fake);
    wait_for("a watch and a bookmark", || {
        let fake = Arc::clone(&fake_for_wait);
        async move { !fake.data.lock().expect("lock").watches.is_empty() }
    })
    .await;
    let lists_before = fake.lists();
    let errors_before = gateway.registry.discovery_errors();

    // The change happens during compaction: no watch event carries it.
    fake.expire_and_change("llm-a", vec![endpoint(&b, true, false)]);
    wait_ports(&gateway, vec![b.addr.port()]).await;
    assert!(fake.lists() > lists_before, "no re-list after 410 Gone");
    // An expiry is routine, not an outage.
    assert_eq!(gateway.registry.discovery_errors(), errors_before);
    assert!(!gateway.registry.discovery_degraded());
    // Watching resumed after the re-list.
    fake.put_slice("llm-a2", vec![endpoint(&a, true, false)]);
    wait_ports(&gateway, vec![a.addr.port(), b.addr.port()]).await;
    gateway.stop().await;
}

#[actix_rt::test]
async fn an_api_outage_keeps_the_last_set_then_recovers() {
    let (fake, url) = start_fake_api();
    let a = mock("a");
    let b = mock("b");
    fake.put_slice("llm-a", vec![endpoint(&a, true, false)]);
    let gateway = start_gateway(kubernetes_config(&url), &json!({})).await;
    wait_ports(&gateway, vec![a.addr.port()]).await;

    // The API server goes away: open watches end (a compaction), every request fails.
    fake.change(|data| {
        data.down = true;
        data.expired_before = data.resource_version + 1;
    });
    let registry = gateway.registry.clone();
    wait_for("the outage to be noticed", || {
        let registry = registry.clone();
        async move { registry.discovery_degraded() && registry.discovery_errors() > 0 }
    })
    .await;
    for _ in 0..5 {
        let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 200);
    }
    let (_, ready) = gateway.get_json("/ready").await;
    assert_eq!(ready["discovery"], "degraded");

    fake.change(|data| data.down = false);
    fake.put_slice("llm-a", vec![endpoint(&b, true, false)]);
    wait_ports(&gateway, vec![b.addr.port()]).await;
    let registry = gateway.registry.clone();
    wait_for("the degraded flag to clear", || {
        let registry = registry.clone();
        async move { !registry.discovery_degraded() }
    })
    .await;
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_terminating_endpoint_drains_its_open_stream() {
    let (fake, url) = start_fake_api();
    let gated = gated_mock("gated", 4);
    let other = mock("other");
    fake.put_slice("llm-a", vec![endpoint(&gated, true, false)]);
    let gateway = start_gateway(kubernetes_config(&url), &json!({})).await;
    wait_ports(&gateway, vec![gated.addr.port()]).await;
    let admin = gateway.admin_token().await;
    let mut stream = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("stream");
    assert_eq!(stream.status().as_u16(), 200);
    let first = stream.next().await.expect("a chunk").expect("bytes");
    assert!(first.starts_with(b"data: "));

    // The pod is terminating; a replacement is ready in another slice.
    fake.put_slice("llm-a", vec![endpoint(&gated, true, true)]);
    fake.put_slice("llm-b", vec![endpoint(&other, true, false)]);
    wait_ports(&gateway, vec![other.addr.port()]).await;
    let gated_address = format!("127.0.0.1:{}", gated.addr.port());
    let states = endpoint_states(&gateway, &admin, "llm").await;
    assert_eq!(states[&gated_address]["state"], "draining", "{states:?}");
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 200);
    assert_eq!((gated.state.requests(), other.state.requests()), (1, 1));

    gated.state.gate.as_ref().expect("gate").add_permits(10);
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(
        rest.ends_with(b"data: [DONE]\n\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn no_cluster_at_start_up_is_an_error_when_required() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let mut raw = kubernetes_config(&url);
    let dir = tempfile::tempdir().expect("dir");
    raw.database.url = Some(format!("sqlite://{}", dir.path().join("g.db").display()));
    let config = gateway::config::validate(raw.clone(), "test").expect("config");
    let error = gateway::server::start(config).await.err().expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("kubernetes is unreachable") && message.contains("DISCOVERY_REQUIRED"),
        "{message}"
    );
    raw.discovery.required = false;
    raw.database.url = None;
    let gateway = start_gateway(raw, &json!({})).await;
    let (status, ready) = gateway.get_json("/ready").await;
    assert_eq!(
        (status, ready["discovery"].as_str()),
        (503, Some("degraded")),
        "{ready}"
    );
    gateway.stop().await;
}
