//! A standing battery: arbitrary JSON, near-valid requests and arbitrary bytes at every public
//! route, against a gateway with keys, budgets, the response cache and PostgreSQL as its store.
//! Whatever arrives, the gateway answers: never a 5xx other than the documented upstream ones,
//! never a panic, an OpenAI-shaped error for every refusal, memory that stays bounded, and
//! every request that reached the upstream billed exactly once.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

/// Requests thrown at the gateway; a few seconds of work at debug speed.
const CASES: usize = 1500;

/// Field names the gateway and its upstreams read, mixed with arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "model", "messages", "prompt", "input", "stream", "stream_options",
            "include_usage", "max_tokens", "max_completion_tokens", "role", "content",
            "tool_calls", "query", "variables", "operationName", "username", "password",
            "name", "token_budget", "allowed_models", "max_concurrency", "rpm", "tpm", "expires_at", "n",
        ])
        .prop_map(str::to_string),
        1 => "\\PC{0,12}",
    ]
}

/// Strings that have broken parsers and databases before: NULs, control characters, long runs,
/// model-looking names and numbers as text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,40}",
        1 => Just("llm/\u{0}".to_string()),
        1 => Just("llm/m".to_string()),
        1 => Just("llm/\u{85}x".to_string()),
        1 => (1usize..20_000).prop_map(|n| "a".repeat(n)),
        1 => "[0-9]{1,30}",
        1 => Just("-1".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(-1i64), Just(0i64)].prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A route of the public API and who calls it.
#[derive(Debug, Clone, Copy)]
enum Caller {
    ApiKey,
    Admin,
    Nobody,
}

const ROUTES: &[(&str, &str, Caller)] = &[
    ("POST", "/v1/chat/completions", Caller::ApiKey),
    ("POST", "/v1/completions", Caller::ApiKey),
    ("POST", "/v1/embeddings", Caller::ApiKey),
    ("GET", "/v1/models", Caller::ApiKey),
    ("POST", "/v1/ws/ticket", Caller::ApiKey),
    ("GET", "/v1/ws", Caller::ApiKey),
    ("POST", "/graphql", Caller::ApiKey),
    ("POST", "/graphql", Caller::Admin),
    ("POST", "/auth/login", Caller::Nobody),
    ("POST", "/admin/keys", Caller::Admin),
    ("PATCH", "/admin/keys/VICTIM", Caller::Admin),
    ("GET", "/admin/usage", Caller::Admin),
    ("GET", "/admin/overview", Caller::Admin),
    ("GET", "/admin/upstreams", Caller::Admin),
    ("POST", "/v1/chat/completions", Caller::Nobody),
    ("DELETE", "/v1/embeddings", Caller::ApiKey),
];

/// A valid body for `path`, for mutations to start from.
fn base(path: &str) -> Value {
    match path {
        "/v1/chat/completions" => {
            json!({"model": "llm/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
        }
        "/v1/completions" => json!({"model": "llm/m", "prompt": "hi", "max_tokens": 8}),
        "/v1/embeddings" => json!({"model": "llm/m", "input": "hi"}),
        "/graphql" => json!({"query": "{ models { id } }"}),
        "/auth/login" => json!({"username": "battery-admin", "password": "wrong"}),
        "/admin/keys" | "/admin/keys/VICTIM" => json!({"name": "k", "token_budget": 100}),
        _ => json!({}),
    }
}

/// What one case sends: the route, and a body that is a valid one with fields overwritten, any
/// JSON at all, or any bytes; plus a query string.
#[derive(Debug, Clone)]
struct Case {
    route: usize,
    body: Body,
    query: String,
}

#[derive(Debug, Clone)]
enum Body {
    Mutated(BTreeMap<String, Value>),
    Json(Value),
    Bytes(Vec<u8>),
}

fn case() -> impl Strategy<Value = Case> {
    let body = prop_oneof![
        6 => btree_map(key(), json_value(), 0..4).prop_map(Body::Mutated),
        2 => json_value().prop_map(Body::Json),
        2 => vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
    ];
    let query = prop_oneof![
        4 => Just(String::new()),
        1 => ("[a-z_]{1,10}", "\\PC{0,20}").prop_map(|(name, value)| format!("?{name}={}", escaped(&value))),
    ];
    (0..ROUTES.len(), body, query).prop_map(|(route, body, query)| Case { route, body, query })
}

/// Any text as a query value: every byte but letters and digits percent-encoded.
fn escaped(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn bytes_of(case: &Case) -> Vec<u8> {
    let path = ROUTES[case.route].1;
    match &case.body {
        Body::Mutated(fields) => {
            let mut body = match base(path) {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            body.extend(fields.clone());
            serde_json::to_vec(&Value::Object(body)).expect("JSON")
        }
        Body::Json(value) => serde_json::to_vec(value).expect("JSON"),
        Body::Bytes(bytes) => bytes.clone(),
    }
}

/// The gateway answers 5xx only for its upstream's sake (none here fails) — never for anything
/// a client sent.
fn check_answer(case: &Case, status: u16, body: &[u8]) {
    let (method, path, _) = ROUTES[case.route];
    let text = String::from_utf8_lossy(body);
    let shown = || {
        format!(
            "{method} {path}{} {case:?} -> {status}: {text:.400}",
            case.query
        )
    };
    assert!(status < 500, "a client's request got a 5xx: {}", shown());
    if status < 400 || path == "/v1/ws" {
        return;
    }
    let parsed: Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("JSON: {}", shown()));
    if path == "/graphql" {
        assert!(parsed["errors"].is_array(), "GraphQL errors: {}", shown());
        return;
    }
    let error = &parsed["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty())
            && error["type"].is_string()
            && error["code"].is_string(),
        "OpenAI-shaped error: {}",
        shown()
    );
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[actix_rt::test]
async fn arbitrary_requests_never_break_the_gateway_or_its_billing() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Postgres).await;
    raw.cache.enabled = true;
    raw.server.max_body_bytes = 64 * 1024;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    // A key of its own for PATCH to change at random; the battery's key stays as made.
    let (victim, _) = gateway.create_key(&admin, json!({"name": "victim"})).await;
    let (id, key) = gateway
        .create_key(
            &admin,
            json!({"name": "battery", "token_budget": 1_000_000_000}),
        )
        .await;
    let mut runner = TestRunner::new(Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    let strategy = case();
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    let rss_before = resident_kib();
    for _ in 0..CASES {
        let case = strategy.new_tree(&mut runner).expect("case").current();
        let (method, path, caller) = ROUTES[case.route];
        let path = path.replace("VICTIM", &victim.to_string());
        let mut request = gateway
            .client
            .request(
                method.parse().expect("method"),
                gateway.url(&format!("{path}{}", case.query)),
            )
            .insert_header(("content-type", "application/json"));
        request = match caller {
            Caller::ApiKey => request.insert_header(("authorization", format!("Bearer {key}"))),
            Caller::Admin => request.insert_header(("authorization", format!("Bearer {admin}"))),
            Caller::Nobody => request,
        };
        let mut response = request
            .send_body(bytes_of(&case))
            .await
            .unwrap_or_else(|error| panic!("{method} {path} {case:?}: no answer: {error}"));
        let status = response.status().as_u16();
        let body = response.body().limit(8 << 20).await.expect("body");
        check_answer(&case, status, &body);
        *statuses.entry(status).or_default() += 1;
    }
    eprintln!("answers by status: {statuses:?}");
    // Bounded: a few thousand requests may warm caches and pools, not grow without limit.
    let grown_mib = resident_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 256, "resident memory grew by {grown_mib} MiB");

    // Every request that reached the upstream was billed exactly once; cache hits did not
    // reach it and are rows of their own.
    assert!(gateway.usage.flush().await, "usage written");
    let rows = gateway.store.usage_of_key(id).await.expect("rows");
    let forwarded = rows.iter().filter(|row| !row.cached).count() as u64;
    assert_eq!(
        forwarded,
        upstream.state.requests(),
        "one usage row per upstream request"
    );
    assert!(
        forwarded >= 100,
        "only {forwarded} requests reached the upstream"
    );
    let mut events: Vec<&str> = rows.iter().map(|row| row.event_id.as_str()).collect();
    events.sort_unstable();
    events.dedup();
    assert_eq!(events.len(), rows.len(), "no row twice");
    gateway.stop().await;
}
