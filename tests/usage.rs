//! Usage accounting and budgets, on SQLite and PostgreSQL: one row per request with the right
//! tokens, interrupted streams billed for what was delivered, budgets that concurrency cannot
//! overspend, and no row lost while the database is away.

mod common;

use std::time::Duration;

use awc::http::Method;
use common::*;
use futures_util::StreamExt;
use serde_json::json;

/// A client that sends the same `x-request-id` on every request is billed for every request:
/// usage rows are deduplicated by the gateway's own event id, never by the client's id.
async fn repeated_request_ids_are_all_billed(db: Db) {
    let upstream = mock("a");
    let gateway = start_gateway(config_on(db).await, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway.create_key(&admin, json!({"name": "same-id"})).await;
    let bearer = format!("Bearer {key}");
    for _ in 0..3 {
        let mut response = gateway
            .client
            .post(gateway.url("/v1/chat/completions"))
            .insert_header(("authorization", bearer.as_str()))
            .insert_header(("x-request-id", "client-chosen-id"))
            .send_json(&chat("llm/m"))
            .await
            .expect("response");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers().get("x-request-id").map(|v| v.as_bytes()),
            Some(&b"client-chosen-id"[..])
        );
        response.body().await.expect("body");
    }
    assert!(gateway.usage.flush().await, "usage written");
    let rows = gateway.store.usage_of_key(id).await.expect("rows");
    assert_eq!(rows.len(), 3, "every request billed: {rows:?}");
    assert!(rows.iter().all(|row| row.request_id == "client-chosen-id"));
    let mut events: Vec<&str> = rows.iter().map(|row| row.event_id.as_str()).collect();
    events.sort_unstable();
    events.dedup();
    assert_eq!(events.len(), 3);
    gateway.stop().await;
}

#[actix_rt::test]
async fn repeated_request_ids_are_all_billed_sqlite() {
    repeated_request_ids_are_all_billed(Db::Sqlite).await;
}

#[actix_rt::test]
async fn repeated_request_ids_are_all_billed_postgres() {
    repeated_request_ids_are_all_billed(Db::Postgres).await;
}

async fn exact_rows(db: Db) {
    let upstream = mock("a");
    let gateway = start_gateway(config_on(db).await, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway.create_key(&admin, json!({"name": "metered"})).await;
    let bearer = format!("Bearer {key}");
    for i in 0..6 {
        let body = if i % 2 == 0 {
            chat("llm/m")
        } else {
            chat_stream("llm/m")
        };
        let mut response = gateway
            .client
            .post(gateway.url("/v1/chat/completions"))
            .insert_header(("authorization", bearer.as_str()))
            .send_json(&body)
            .await
            .expect("response");
        assert_eq!(response.status().as_u16(), 200);
        let text = response.body().await.expect("body");
        if i % 2 == 1 {
            assert!(text.ends_with(b"data: [DONE]\n\n"));
        }
    }
    let rows = gateway.usage_rows(id, 6).await;
    assert_eq!(rows.len(), 6);
    for row in &rows {
        // The mock reports 5 prompt tokens and one completion token per chunk (5 chunks).
        assert_eq!(
            (row.prompt_tokens, row.completion_tokens, row.estimated),
            (5, 5, false),
            "{row:?}"
        );
        assert_eq!(
            (row.status, row.model.as_str(), row.service.as_str()),
            (200, "llm/m", "llm")
        );
    }
    let mut ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    // The streaming requests asked the upstream for usage on the client's behalf.
    let seen = upstream
        .state
        .last_body
        .lock()
        .expect("lock")
        .clone()
        .expect("body");
    assert_eq!(seen["stream_options"]["include_usage"], true);

    assert_reports_of_six_requests(&gateway, &admin, id).await;
    gateway.stop().await;
}

/// The admin usage reports and the metrics after `exact_rows`' six requests of 10 tokens each.
async fn assert_reports_of_six_requests(gateway: &TestGateway, admin: &str, id: i64) {
    let (status, report) = gateway
        .send_as(Method::GET, "/admin/usage?group_by=model", admin, None)
        .await;
    assert_eq!(status, 200, "{report}");
    let line = &report["data"][0];
    assert_eq!(
        (
            line["group"].as_str(),
            line["requests"].as_i64(),
            line["total_tokens"].as_i64()
        ),
        (Some("llm/m"), Some(6), Some(60))
    );
    let (_, by_key) = gateway
        .send_as(Method::GET, "/admin/usage?group_by=key", admin, None)
        .await;
    assert_eq!(by_key["data"][0]["group"], id.to_string());
    let metrics = gateway.metrics_text().await;
    for expected in [
        format!(r#"gateway_tokens_total{{direction="prompt",key="{id}",model="llm/*"}} 30"#),
        format!(r#"gateway_tokens_total{{direction="completion",key="{id}",model="llm/*"}} 30"#),
        "gateway_usage_pending_events 0".to_string(),
        r#"gateway_key_cache_lookups_total{result="hit"}"#.to_string(),
        format!(r#"gateway_requests_total{{key="{id}",model="llm/*",status="2xx"}} 6"#),
        "gateway_active_keys 1".to_string(),
    ] {
        assert!(
            metrics.contains(&expected),
            "missing {expected} in\n{metrics}"
        );
    }
    let (_, by_day) = gateway
        .send_as(Method::GET, "/admin/usage?group_by=day", admin, None)
        .await;
    assert_eq!(by_day["data"][0]["requests"], 6);
    assert_eq!(by_day["data"][0]["group"].as_str().map(str::len), Some(10));
}

#[actix_rt::test]
async fn every_request_is_one_usage_row_sqlite() {
    exact_rows(Db::Sqlite).await;
}

#[actix_rt::test]
async fn every_request_is_one_usage_row_postgres() {
    exact_rows(Db::Postgres).await;
}

#[actix_rt::test]
async fn a_client_that_leaves_mid_stream_pays_for_what_it_received() {
    let upstream = MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: "a".into(),
            gated: true,
            chunks: 60,
            chunk_delay: Duration::from_millis(20),
            ..MockOptions::default()
        },
    )
    .expect("mock");
    let gateway = start_gateway(
        config_on(Db::Sqlite).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway
        .create_key(&admin, json!({"name": "leaver", "token_budget": 100000}))
        .await;
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("response");
    let first = response.next().await.expect("first chunk").expect("bytes");
    let event: serde_json::Value =
        serde_json::from_slice(first.strip_prefix(b"data: ").expect("event").trim_ascii())
            .expect("json");
    let delivered = event["choices"][0]["delta"]["content"]
        .as_str()
        .expect("text")
        .to_string();
    drop(response);
    // The gateway learns that the client left when its next write fails, so it may bill the
    // chunk or two it wrote into the closed socket, but never the rest of the answer.
    upstream.state.gate.as_ref().expect("gate").add_permits(1);
    let rows = gateway.usage_rows(id, 1).await;
    let row = &rows[0];
    assert_eq!(row.status, 499, "{row:?}");
    assert!(row.estimated);
    let whole_answer: String = (0..60)
        .map(|i| ["echo: ", "hello ", "there "][i % 3])
        .collect();
    let whole = actors::tokens::count(&whole_answer);
    assert!(
        row.completion_tokens >= actors::tokens::count(&delivered)
            && row.completion_tokens * 4 < whole,
        "billed {} for {delivered:?} of a {whole}-token answer",
        row.completion_tokens
    );
    assert!(!row.endpoint.is_empty());
    // The prompt is counted from the request the upstream received.
    assert!(row.prompt_tokens > 0);
    // Billed exactly once: nothing more arrives.
    assert!(gateway.usage.flush().await);
    assert_eq!(gateway.store.usage_of_key(id).await.expect("rows").len(), 1);
    gateway.stop().await;
}

async fn budget_race(db: Db) {
    let upstream = mock("a");
    let mut raw = config_on(db).await;
    raw.server.workers = 2;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    race_a_ten_request_budget(&[&gateway], &upstream, 100).await;
    gateway.stop().await;
}

#[actix_rt::test]
async fn concurrent_requests_cannot_overspend_a_budget_sqlite() {
    budget_race(Db::Sqlite).await;
}

#[actix_rt::test]
async fn concurrent_requests_cannot_overspend_a_budget_postgres() {
    budget_race(Db::Postgres).await;
}

/// The store's batch insert, straight: rows across several statements arrive field for field,
/// and a batch retried after an unacknowledged commit adds only the rows that were missing.
async fn batches_are_written_once(db: Db) {
    use actors::store::usage::UsageEvent;
    use actors::store::{DatabaseTarget, Store};
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("usage.db").display()),
        Db::Postgres => fresh_postgres_database().await,
    };
    let target = DatabaseTarget::parse(Some(&url)).expect("target");
    let migrate_target = target.clone();
    tokio::task::spawn_blocking(move || Store::migrate(&migrate_target))
        .await
        .expect("join")
        .expect("migrate");
    let store = Store::open(&target, 2).expect("open");
    let (key, _) = store
        .create_key(&actors::store::keys::NewKey {
            name: "batch".into(),
            owner: None,
            limits: Default::default(),
        })
        .await
        .expect("key");
    // Request ids repeat (clients choose them); event ids are what make a retry idempotent.
    let event = |i: i64| UsageEvent {
        event_id: format!("event-{i}"),
        request_id: format!("req-{}", i % 10),
        key_id: (i % 3 != 0).then_some(key.id),
        model: format!("model-{}", i % 4),
        service: "llm".into(),
        endpoint: "127.0.0.1:1".into(),
        api: "chat".into(),
        prompt_tokens: i,
        completion_tokens: 2 * i,
        estimated: i % 2 == 0,
        cached: i % 5 == 0,
        status: 200,
        latency_ms: i + 7,
        created_at: 1_700_000_000_000 + i,
    };
    // 250 rows: on SQLite seven statements of 32 rows, three of 8 and two single rows; on
    // PostgreSQL more than two full statements.
    let first: Vec<UsageEvent> = (0..250).map(event).collect();
    assert_eq!(store.insert_usage(&first).await.expect("insert"), 250);
    // A retried batch overlapping the stored rows: on SQLite its first 32 rows go in one
    // multi-row statement (30 already stored), then 8 in one, then one on its own.
    let retried: Vec<UsageEvent> = (220..261).map(event).collect();
    assert_eq!(store.insert_usage(&retried).await.expect("retry"), 11);
    let stored = store.usage_of_key(key.id).await.expect("rows");
    let expected: Vec<UsageEvent> = (0..261).map(event).filter(|e| e.key_id.is_some()).collect();
    assert_eq!(stored, expected);
}

#[actix_rt::test]
async fn usage_batches_are_written_once_sqlite() {
    batches_are_written_once(Db::Sqlite).await;
}

#[actix_rt::test]
async fn usage_batches_are_written_once_postgres() {
    batches_are_written_once(Db::Postgres).await;
}

/// One row the database refuses never blocks the others: the writer splits the batch, sets the
/// refused row aside in `usage_dead_letters` (counted), and writes every other row. A model name
/// with a NUL (which PostgreSQL refuses in `text`) is made storable before it is written.
async fn a_bad_row_is_set_aside(db: Db) {
    use actors::store::usage::UsageEvent;
    use actors::usage::{UsageRecorder, UsageSettings};
    use std::sync::atomic::Ordering;
    let store = migrated_store(db).await;
    let (key, _) = store
        .create_key(&actors::store::keys::NewKey {
            name: "dead letters".into(),
            owner: None,
            limits: Default::default(),
        })
        .await
        .expect("key");
    let event = |i: i64, key_id: i64, model: &str| UsageEvent {
        event_id: format!("event-{i}"),
        request_id: format!("req-{i}"),
        key_id: Some(key_id),
        model: model.into(),
        service: "llm".into(),
        endpoint: "127.0.0.1:1".into(),
        api: "chat".into(),
        prompt_tokens: i,
        completion_tokens: 1,
        estimated: false,
        cached: false,
        status: 200,
        latency_ms: 1,
        created_at: 1_700_000_000_000 + i,
    };
    let usage = UsageRecorder::start_recorder(store.clone(), UsageSettings::default());
    for i in 0..20 {
        let row = match i {
            // A key that does not exist: refused by the foreign key on both backends.
            7 => event(i, key.id + 1000, "llm/m"),
            13 => event(i, key.id, "llm/\0"),
            _ => event(i, key.id, "llm/m"),
        };
        usage.reserve().expect("slot").record(row);
    }
    assert!(
        usage.flush().await,
        "the batch was written around the bad row"
    );
    let stored = store.usage_of_key(key.id).await.expect("rows");
    let ids: Vec<&str> = stored.iter().map(|r| r.event_id.as_str()).collect();
    let expected: Vec<String> = (0..20)
        .filter(|&i| i != 7)
        .map(|i| format!("event-{i}"))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(stored[12].model, "llm/\u{FFFD}", "made storable");
    assert_eq!(usage.counters().dead_lettered.load(Ordering::Relaxed), 1);
    let dead = store.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].event_id, "event-7");
    let kept: serde_json::Value = serde_json::from_str(&dead[0].event).expect("json");
    assert_eq!(kept["key_id"], key.id + 1000);
    assert!(!dead[0].error.is_empty());
    // Later events are written too: nothing waits behind the refused row.
    usage
        .reserve()
        .expect("slot")
        .record(event(20, key.id, "llm/m"));
    assert!(usage.flush().await);
    assert_eq!(store.usage_of_key(key.id).await.expect("rows").len(), 20);
    assert_eq!(usage.pending(), 0);
    // A login name no user can have finds nobody instead of failing the query.
    assert!(store
        .verify_user("admin\0", "x")
        .await
        .expect("no error")
        .is_none());
}

#[actix_rt::test]
async fn a_bad_usage_row_never_blocks_the_others_sqlite() {
    a_bad_row_is_set_aside(Db::Sqlite).await;
}

#[actix_rt::test]
async fn a_bad_usage_row_never_blocks_the_others_postgres() {
    a_bad_row_is_set_aside(Db::Postgres).await;
}

/// A fresh, migrated store of the given backend.
async fn migrated_store(db: Db) -> actors::store::Store {
    use actors::store::{DatabaseTarget, Store};
    let url = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir").keep();
            format!("sqlite://{}", dir.join("usage.db").display())
        }
        Db::Postgres => fresh_postgres_database().await,
    };
    let target = DatabaseTarget::parse(Some(&url)).expect("target");
    let migrate_target = target.clone();
    tokio::task::spawn_blocking(move || Store::migrate(&migrate_target))
        .await
        .expect("join")
        .expect("migrate");
    Store::open(&target, 2).expect("open")
}
