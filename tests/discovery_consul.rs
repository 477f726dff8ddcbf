//! Consul discovery against a protocol-faithful fake: blocking queries on
//! `/v1/health/service/<name>` and `/v1/catalog/services` with `X-Consul-Index`, `index` and
//! `wait`, index resets, an outage, and agent (de)registration.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::*;
use futures_util::StreamExt;
use gateway::config::DiscoveryType;
use serde_json::{json, Value};

/// One registered instance as the fake stores it.
#[derive(Clone)]
struct Instance {
    port: u16,
    weight: u32,
    tags: Vec<String>,
}

#[derive(Default)]
struct ConsulData {
    /// The Raft index: bumped by every write.
    index: u64,
    /// Service → (index of its last change, instances).
    services: BTreeMap<String, (u64, Vec<Instance>)>,
    catalog_index: u64,
    /// Answer every query with 500 "No cluster leader".
    down: bool,
    /// `(path, index)` of every query, in order.
    queries: Vec<(String, u64)>,
    registered: Vec<Value>,
    deregistered: Vec<String>,
}

struct FakeConsul {
    data: Mutex<ConsulData>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl FakeConsul {
    fn write(&self, change: impl FnOnce(&mut ConsulData)) {
        let index = {
            let mut data = self.data.lock().expect("lock");
            data.index += 1;
            change(&mut data);
            data.index
        };
        self.changes.send_replace(index);
    }

    fn set_instances(&self, service: &str, instances: Vec<Instance>) {
        self.write(|data| {
            let index = data.index;
            if !data.services.contains_key(service) {
                data.catalog_index = index;
            }
            data.services.insert(service.into(), (index, instances));
        });
    }

    fn set_down(&self, down: bool) {
        self.write(|data| data.down = down);
    }

    /// A snapshot restore: every index drops below what clients have seen.
    fn restore_to_lower_indexes(&self, service: &str, instances: Vec<Instance>) {
        self.write(|data| {
            data.index = 3;
            data.catalog_index = 2;
            for (index, _) in data.services.values_mut() {
                *index = 2;
            }
            data.services.insert(service.into(), (3, instances));
        });
    }

    fn queries(&self) -> Vec<(String, u64)> {
        self.data.lock().expect("lock").queries.clone()
    }
}

fn instance(mock: &MockUpstream, weight: u32) -> Instance {
    Instance {
        port: mock.addr.port(),
        weight,
        tags: vec!["ai-model".into()],
    }
}

fn query_number(request: &HttpRequest, name: &str) -> u64 {
    web::Query::<BTreeMap<String, String>>::from_query(request.query_string())
        .ok()
        .and_then(|q| q.get(name).cloned())
        .map(|v| v.trim_end_matches('s').parse().unwrap_or(0))
        .unwrap_or(0)
}

/// Blocks like Consul: while the watched index is not above `index`, until `wait` runs out.
async fn block(
    fake: &FakeConsul,
    request: &HttpRequest,
    path: String,
    current: impl Fn(&ConsulData) -> u64,
) -> Result<u64, HttpResponse> {
    let index = query_number(request, "index");
    let wait = Duration::from_secs(query_number(request, "wait").clamp(1, 600));
    let mut changes = fake.changes.subscribe();
    {
        let mut data = fake.data.lock().expect("lock");
        data.queries.push((path, index));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        {
            let data = fake.data.lock().expect("lock");
            if data.down {
                return Err(HttpResponse::InternalServerError().body("No cluster leader"));
            }
            let now = current(&data);
            if index == 0 || now != index {
                return Ok(now);
            }
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Ok(current(&fake.data.lock().expect("lock")));
        }
    }
}

async fn health(
    fake: web::Data<FakeConsul>,
    name: web::Path<String>,
    request: HttpRequest,
) -> HttpResponse {
    let name = name.into_inner();
    let watched = name.clone();
    let index = match block(&fake, &request, format!("health/{name}"), move |d| {
        d.services.get(&watched).map_or(d.index, |(i, _)| *i)
    })
    .await
    {
        Ok(index) => index,
        Err(response) => return response,
    };
    let data = fake.data.lock().expect("lock");
    let entries: Vec<Value> = data
        .services
        .get(&name)
        .map(|(_, list)| list.clone())
        .unwrap_or_default()
        .iter()
        .map(|i| {
            json!({
                "Node": {"Node": "node1", "Address": "127.0.0.1", "Datacenter": "dc1"},
                "Service": {"ID": format!("{name}-{}", i.port), "Service": name, "Tags": i.tags,
                            "Address": "", "Port": i.port, "Meta": {"health_check": "/health"},
                            "Weights": {"Passing": i.weight, "Warning": 1}},
                "Checks": [{"Status": "passing"}]
            })
        })
        .collect();
    HttpResponse::Ok()
        .insert_header(("X-Consul-Index", index.to_string()))
        .json(entries)
}

async fn catalog(fake: web::Data<FakeConsul>, request: HttpRequest) -> HttpResponse {
    let index = match block(&fake, &request, "catalog".into(), |d| d.catalog_index).await {
        Ok(index) => index,
        Err(response) => return response,
    };
    let data = fake.data.lock().expect("lock");
    let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
    services.insert("consul".into(), Vec::new());
    for (name, (_, instances)) in &data.services {
        let tags = services.entry(name.clone()).or_default();
        for i in instances {
            for tag in &i.tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
        }
    }
    HttpResponse::Ok()
        .insert_header(("X-Consul-Index", index.to_string()))
        .json(services)
}

async fn register(fake: web::Data<FakeConsul>, body: web::Json<Value>) -> HttpResponse {
    fake.data
        .lock()
        .expect("lock")
        .registered
        .push(body.into_inner());
    HttpResponse::Ok().finish()
}

async fn deregister(fake: web::Data<FakeConsul>, id: web::Path<String>) -> HttpResponse {
    fake.data
        .lock()
        .expect("lock")
        .deregistered
        .push(id.into_inner());
    HttpResponse::Ok().finish()
}

fn start_fake_consul() -> (Arc<FakeConsul>, std::net::SocketAddr) {
    let fake = Arc::new(FakeConsul {
        data: Mutex::new(ConsulData {
            index: 10,
            catalog_index: 10,
            ..ConsulData::default()
        }),
        changes: tokio::sync::watch::channel(10).0,
    });
    let data = web::Data::from(Arc::clone(&fake));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/health/service/{name}", web::get().to(health))
            .route("/v1/catalog/services", web::get().to(catalog))
            .route("/v1/agent/service/register", web::put().to(register))
            .route(
                "/v1/agent/service/deregister/{id}",
                web::put().to(deregister),
            )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = *server.addrs().first().expect("address");
    actix_web::rt::spawn(server.run());
    (fake, addr)
}

fn consul_config(addr: std::net::SocketAddr) -> gateway::config::RawConfig {
    let mut raw = test_config();
    raw.discovery.kind = DiscoveryType::Consul;
    raw.discovery.consul.addr = addr.to_string();
    raw.discovery.consul.wait_secs = 5;
    raw.discovery.consul.min_query_interval_ms = 50;
    raw.discovery.consul.retry_base_ms = 20;
    raw.discovery.consul.retry_max_ms = 200;
    raw
}

async fn weights(gateway: &TestGateway, service: &str) -> Vec<(u16, u32)> {
    let mut weights: Vec<(u16, u32)> = gateway
        .registry
        .pool(service)
        .map(|p| p.snapshot().eligible.clone())
        .unwrap_or_default()
        .iter()
        .map(|e| (e.spec.port, e.spec.weight))
        .collect();
    weights.sort();
    weights
}

#[actix_rt::test]
async fn instances_added_removed_and_reweighted_under_load_without_a_failed_request() {
    let (fake, addr) = start_fake_consul();
    let first = mock("first");
    let second = mock("second");
    fake.set_instances("llm", vec![instance(&first, 1)]);
    // Services are found by their `ai-model` tag through the catalog.
    let gateway = start_gateway(consul_config(addr), &json!({})).await;
    gateway.wait_eligible("llm", 1).await;
    let admin = gateway.admin_token().await;
    let load = Load::start(&gateway, "llm/m", 4);
    load.progress(20).await;

    // A new instance whose health check fails is known but gets no traffic.
    second.state.set_mode(Mode::Fail);
    fake.set_instances("llm", vec![instance(&first, 1), instance(&second, 1)]);
    let second_address = format!("127.0.0.1:{}", second.addr.port());
    wait_for("the new instance to be pending", || async {
        endpoint_states(&gateway, &admin, "llm")
            .await
            .get(&second_address)
            .is_some_and(|e| e["origin"] == "consul" && e["state"] != "eligible")
    })
    .await;
    load.progress(20).await;
    assert_eq!(second.state.requests(), 0, "picked before a passing check");
    // Its first passing check makes it eligible.
    second.state.set_mode(Mode::Normal);
    gateway.wait_eligible("llm", 2).await;
    let before = second.state.requests();
    load.progress(40).await;
    assert!(second.state.requests() > before);

    // Weight comes from Weights.Passing.
    fake.set_instances("llm", vec![instance(&first, 1), instance(&second, 5)]);
    let expected = vec![(first.addr.port(), 1), (second.addr.port(), 5)];
    wait_for("the new weight", || async {
        let mut expected = expected.clone();
        expected.sort();
        weights(&gateway, "llm").await == expected
    })
    .await;
    load.progress(20).await;

    // Removing the first instance drains it.
    fake.set_instances("llm", vec![instance(&second, 5)]);
    wait_for("the removal", || async {
        weights(&gateway, "llm").await == vec![(second.addr.port(), 5)]
    })
    .await;
    let first_count = first.state.requests();
    load.progress(30).await;
    assert_eq!(
        first.state.requests(),
        first_count,
        "a removed instance got new requests"
    );

    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {ok} failed: {failures:?}",
        failures.len()
    );
    let metrics = gateway.metrics_text().await;
    let state_line = format!(
        r#"gateway_upstream_endpoint_state{{endpoint="{second_address}",origin="consul",service="llm",state="eligible"}} 1"#
    );
    assert!(metrics.contains(&state_line), "{metrics}");
    // Every query after the first one blocked on an index (no spinning on 0).
    let queries = fake.queries();
    let catalog_queries: Vec<_> = queries.iter().filter(|(p, _)| p == "catalog").collect();
    assert!(
        catalog_queries.iter().skip(1).all(|(_, index)| *index > 0),
        "{catalog_queries:?}"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn an_outage_keeps_the_last_set_and_is_counted_then_recovers() {
    let (fake, addr) = start_fake_consul();
    let first = mock("first");
    let second = mock("second");
    fake.set_instances("llm", vec![instance(&first, 1)]);
    let mut raw = consul_config(addr);
    raw.discovery.consul.services = vec!["llm".into()];
    let gateway = start_gateway(raw, &json!({})).await;
    gateway.wait_ready().await;

    let errors_before = gateway.registry.discovery_errors();
    fake.set_down(true);
    let registry = gateway.registry.clone();
    wait_for("the outage to be noticed", || {
        let registry = registry.clone();
        async move { registry.discovery_errors() > errors_before && registry.discovery_degraded() }
    })
    .await;
    // The last set still serves, and the gateway says it is degraded.
    for _ in 0..5 {
        let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let (status, ready) = gateway.get_json("/ready").await;
    assert_eq!(
        (status, ready["discovery"].as_str()),
        (200, Some("degraded")),
        "{ready}"
    );
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains("gateway_discovery_degraded 1"),
        "{metrics}"
    );
    // Back-off: five more failures take at least the jittered minimum of 20+40+80+160+200
    // ms halves (250 ms), so an outage does not turn into a query storm.
    let started = std::time::Instant::now();
    let errors_now = gateway.registry.discovery_errors();
    let registry = gateway.registry.clone();
    wait_for("five more failed queries", || {
        let registry = registry.clone();
        async move { registry.discovery_errors() >= errors_now + 5 }
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "five retries within {:?}",
        started.elapsed()
    );

    // Consul comes back with a changed set.
    fake.write(|data| {
        data.down = false;
        let index = data.index;
        data.services
            .insert("llm".into(), (index, vec![instance(&second, 1)]));
    });
    let second_port = second.addr.port();
    wait_for("recovery with the new set", || async {
        weights(&gateway, "llm").await == vec![(second_port, 1)]
    })
    .await;
    let registry = gateway.registry.clone();
    wait_for("the degraded flag to clear", || {
        let registry = registry.clone();
        async move { !registry.discovery_degraded() }
    })
    .await;
    let (_, ready) = gateway.get_json("/ready").await;
    assert_eq!(ready["discovery"], "ok");
    gateway.stop().await;
}

#[actix_rt::test]
async fn an_index_that_goes_backwards_is_reset_and_the_new_set_applies() {
    let (fake, addr) = start_fake_consul();
    let first = mock("first");
    let second = mock("second");
    fake.set_instances("llm", vec![instance(&first, 1)]);
    // Move the indexes well above what the restore will go back to.
    for _ in 0..20 {
        fake.write(|_| {});
    }
    fake.set_instances("llm", vec![instance(&first, 2)]);
    let mut raw = consul_config(addr);
    raw.discovery.consul.services = vec!["llm".into()];
    let gateway = start_gateway(raw, &json!({})).await;
    gateway.wait_eligible("llm", 1).await;
    let high = fake
        .queries()
        .iter()
        .map(|(_, index)| *index)
        .max()
        .unwrap_or(0);
    let fake_for_wait = Arc::clone(&fake);
    wait_for("a blocking query on the high index", || {
        let fake = Arc::clone(&fake_for_wait);
        async move { fake.queries().iter().any(|(_, index)| *index > 20) }
    })
    .await;

    fake.restore_to_lower_indexes("llm", vec![instance(&second, 1)]);
    let second_port = second.addr.port();
    wait_for("the restored set", || async {
        weights(&gateway, "llm").await == vec![(second_port, 1)]
    })
    .await;
    // After the backwards index, the next query was a full read (no index), then blocking
    // resumed on the new, lower index.
    let fake_for_wait = Arc::clone(&fake);
    wait_for("blocking on the restored index", || {
        let fake = Arc::clone(&fake_for_wait);
        async move { fake.queries().last().is_some_and(|(_, index)| *index == 3) }
    })
    .await;
    let queries = fake.queries();
    let after_high = queries
        .iter()
        .position(|(_, index)| *index > 20)
        .expect("a high query");
    let later: Vec<u64> = queries[after_high..].iter().map(|(_, i)| *i).collect();
    let reset_at = later
        .iter()
        .position(|i| *i == 0)
        .expect("an index reset to 0");
    assert!(
        later[reset_at + 1..].iter().all(|i| *i <= 3),
        "queries after the reset: {later:?} (high was {high})"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_removed_instance_drains_its_open_stream() {
    let (fake, addr) = start_fake_consul();
    let gated = gated_mock("gated", 4);
    let other = mock("other");
    fake.set_instances("llm", vec![instance(&gated, 1)]);
    let mut raw = consul_config(addr);
    raw.discovery.consul.services = vec!["llm".into()];
    let gateway = start_gateway(raw, &json!({})).await;
    gateway.wait_eligible("llm", 1).await;
    let admin = gateway.admin_token().await;
    let mut stream = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("stream");
    assert_eq!(stream.status().as_u16(), 200);
    let first_chunk = stream.next().await.expect("a chunk").expect("bytes");
    assert!(first_chunk.starts_with(b"data: "));

    fake.set_instances("llm", vec![instance(&other, 1)]);
    let gated_address = format!("127.0.0.1:{}", gated.addr.port());
    wait_for("the removed instance to be draining", || async {
        endpoint_states(&gateway, &admin, "llm")
            .await
            .get(&gated_address)
            .is_some_and(|e| e["state"] == "draining" && e["in_flight"] == 1)
    })
    .await;
    // New requests go to the remaining instance only.
    gateway.wait_eligible("llm", 1).await;
    let other_port = other.addr.port();
    wait_for("the other instance to be eligible", || async {
        weights(&gateway, "llm").await == vec![(other_port, 1)]
    })
    .await;
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 200);
    assert_eq!(other.state.requests(), 1);
    assert_eq!(gated.state.requests(), 1);

    // The open stream finishes normally.
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
    // Once drained it disappears.
    wait_for("the drained instance to go", || async {
        !endpoint_states(&gateway, &admin, "llm")
            .await
            .contains_key(&gated_address)
    })
    .await;
    gateway.stop().await;
}

#[actix_rt::test]
async fn unreachable_consul_at_start_up_is_an_error_or_a_degraded_start() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("address");
    drop(closed);
    let mut raw = consul_config(addr);
    raw.discovery.consul.services = vec!["llm".into()];
    let dir = tempfile::tempdir().expect("dir");
    raw.database.url = Some(format!("sqlite://{}", dir.path().join("g.db").display()));
    let config = gateway::config::validate(raw.clone(), "test").expect("config");
    let error = gateway::server::start(config)
        .await
        .err()
        .expect("refused when DISCOVERY_REQUIRED=true");
    let message = format!("{error:#}");
    assert!(
        message.contains("consul is unreachable") && message.contains("DISCOVERY_REQUIRED"),
        "{message}"
    );

    raw.discovery.required = false;
    raw.database.url = None;
    let gateway = start_gateway(raw, &json!({})).await;
    assert!(gateway.registry.discovery_degraded());
    let (status, ready) = gateway.get_json("/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["discovery"], "degraded");
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains("gateway_discovery_degraded 1"),
        "{metrics}"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_degraded_start_recovers_when_consul_answers() {
    let (fake, addr) = start_fake_consul();
    let upstream = mock("a");
    fake.set_instances("llm", vec![instance(&upstream, 1)]);
    fake.set_down(true);
    let mut raw = consul_config(addr);
    raw.discovery.required = false;
    let gateway = start_gateway(raw, &json!({})).await;
    assert!(gateway.registry.discovery_degraded());
    assert_eq!(gateway.get_json("/ready").await.0, 503);
    fake.set_down(false);
    gateway.wait_ready().await;
    gateway.wait_eligible("llm", 1).await;
    assert!(!gateway.registry.discovery_degraded());
    let (status, _, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 200);
    gateway.stop().await;
}

#[actix_rt::test]
async fn self_registration_registers_with_a_health_check() {
    let (fake, addr) = start_fake_consul();
    let mut raw = consul_config(addr);
    raw.discovery.consul.services = vec!["llm".into()];
    raw.discovery.consul.register = true;
    let dir = tempfile::tempdir().expect("dir");
    raw.database.url = Some(format!("sqlite://{}", dir.path().join("g.db").display()));
    let config = gateway::config::validate(raw, "test").expect("config");
    let running = gateway::server::start(config).await.expect("starts");
    let registration = running.consul_registration.as_ref().expect("registered");
    {
        let data = fake.data.lock().expect("lock");
        let body = data.registered.first().expect("a registration");
        assert_eq!(body["Name"], "ai-gateway");
        assert_eq!(body["Port"], running.addr.port());
        assert_eq!(
            body["Check"]["HTTP"],
            format!("http://127.0.0.1:{}/health", running.addr.port())
        );
    }
    registration.deregister().await.expect("deregistered");
    assert_eq!(
        fake.data.lock().expect("lock").deregistered,
        vec![registration.id.clone()]
    );
    let handle = running.server.handle();
    actix_web::rt::spawn(running.server);
    handle.stop(true).await;
}
