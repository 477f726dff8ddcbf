//! Budgets hold against a hostile client: the reservation covers whichever completion limit
//! the upstream obeys, and the upstream is told the ceiling that was reserved. The ledger
//! shared through Redis stays exact: settlements survive a Redis hiccup apart from cache
//! traffic, a dead replica's reservations run out with their lease, reconciliation with
//! `usage_events` corrects a ledger that drifted, and `deny` refuses rather than letting a
//! replica decide alone. No prompt takes long to count.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::budget::reconcile::MARGIN_MS;
use actors::budget::{BudgetError, BudgetLedger};
use actors::shared::{LedgerState, Reconciled, SharedRedis, BUDGET_BUCKET_MS};
use actors::store::keys::{KeyLimits, NewKey};
use actors::store::usage::UsageEvent;
use actors::store::{now_millis, DatabaseTarget, Store};
use awc::http::Method;
use common::shared_redis::*;
use common::*;
use gateway::config::raw::RawRedisFailure;
use serde_json::{json, Value};

/// A gateway with authentication on, `default_max_tokens` of 50, and one mock upstream.
async fn budgeted_gateway() -> (TestGateway, MockUpstream, String) {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.usage.default_max_tokens = 50;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    (gateway, upstream, admin)
}

fn chat_with(limits: Value) -> Value {
    let mut body = json!({"model": "llm/m", "messages": [{"role": "user", "content": "hi"}]});
    for (field, value) in limits.as_object().expect("object") {
        body[field] = value.clone();
    }
    body
}

fn last_body(upstream: &MockUpstream) -> Value {
    upstream
        .state
        .last_body
        .lock()
        .expect("lock")
        .clone()
        .expect("a request reached the upstream")
}

/// `{"max_completion_tokens": 1, "max_tokens": 4000}` reserves 4,000 (python-models and the gRPC
/// converter obey `max_tokens`), so a 500-token budget refuses it before the upstream sees it.
#[actix_rt::test]
async fn the_reservation_covers_the_larger_completion_limit() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "small", "token_budget": 500}))
        .await;
    let body = chat_with(json!({"max_completion_tokens": 1, "max_tokens": 4000}));
    let (status, reply) = gateway
        .send_as(Method::POST, "/v1/chat/completions", &key, Some(&body))
        .await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["error"]["code"], "insufficient_quota");
    assert_eq!(upstream.state.requests(), 0, "nothing reached the upstream");
    // Within the budget either way: forwarded as sent.
    let body = chat_with(json!({"max_completion_tokens": 300, "max_tokens": 20}));
    let (status, reply) = gateway
        .send_as(Method::POST, "/v1/chat/completions", &key, Some(&body))
        .await;
    assert_eq!(status, 200, "{reply}");
    let seen = last_body(&upstream);
    assert_eq!(
        (
            seen["max_tokens"].as_i64(),
            seen["max_completion_tokens"].as_i64()
        ),
        (Some(20), Some(300))
    );
    gateway.stop().await;
}

/// A request with no completion limit reserves `default_max_tokens` and the upstream is told
/// it; a key with no budget (nothing reserved) has its body forwarded untouched.
#[actix_rt::test]
async fn the_reserved_ceiling_is_sent_upstream() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, budgeted) = gateway
        .create_key(&admin, json!({"name": "budgeted", "token_budget": 10000}))
        .await;
    let (status, reply) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &budgeted,
            Some(&chat_with(json!({}))),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(last_body(&upstream)["max_tokens"], 50);
    let mut stream = chat_with(json!({"stream": true}));
    stream["stream"] = json!(true);
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {budgeted}")))
        .send_json(&stream)
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    response.body().await.expect("body");
    let seen = last_body(&upstream);
    assert_eq!(
        (
            seen["max_tokens"].as_i64(),
            seen["stream_options"]["include_usage"].as_bool()
        ),
        (Some(50), Some(true))
    );

    let (_, free) = gateway.create_key(&admin, json!({"name": "free"})).await;
    let (status, reply) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &free,
            Some(&chat_with(json!({}))),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        last_body(&upstream).get("max_tokens").is_none(),
        "nothing reserved, nothing added"
    );
    gateway.stop().await;
}

/// `max_tokens` near `i64::MAX` overflowed the reservation and a negative one was forwarded,
/// both answered 200 on a budgeted key: now both are 400s that never reach the upstream.
#[actix_rt::test]
async fn hostile_completion_limits_are_refused_on_a_budgeted_key() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "hostile", "token_budget": 500}))
        .await;
    for limits in [
        json!({"max_tokens": i64::MAX}),
        json!({"max_tokens": -1}),
        json!({"max_completion_tokens": -4000, "max_tokens": 1}),
        json!({"max_completion_tokens": 1_000_001}),
    ] {
        let (status, reply) = gateway
            .send_as(
                Method::POST,
                "/v1/chat/completions",
                &key,
                Some(&chat_with(limits.clone())),
            )
            .await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{limits}: {reply}"
        );
    }
    assert_eq!(upstream.state.requests(), 0, "nothing reached the upstream");
    gateway.stop().await;
}

/// A migrated store on `db` holding one key with a token budget of `budget`; the temporary
/// directory holds the SQLite file.
async fn store_with_key(db: Db, budget: i64) -> (Store, DatabaseTarget, i64, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = match db {
        Db::Sqlite => DatabaseTarget::Sqlite(dir.path().join("ledger.db")),
        Db::Postgres => DatabaseTarget::Postgres(fresh_postgres_database().await),
    };
    Store::migrate(&target).expect("migrations");
    let store = Store::open(&target, 4).expect("store");
    let (key, _) = store
        .create_key(&NewKey {
            name: "budgeted".into(),
            owner: None,
            limits: KeyLimits {
                token_budget: Some(budget),
                ..KeyLimits::default()
            },
        })
        .await
        .expect("key");
    (store, target, key.id, dir)
}

/// A usage row of `tokens` for key `key_id`, billed at `created_at`, as the usage writer
/// stores it.
fn usage_row(key_id: i64, tokens: i64, created_at: i64) -> UsageEvent {
    UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        key_id: Some(key_id),
        model: "m".into(),
        service: "llm".into(),
        endpoint: "127.0.0.1:1".into(),
        api: "chat".into(),
        prompt_tokens: tokens,
        completion_tokens: 0,
        estimated: false,
        cached: false,
        status: 200,
        latency_ms: 1,
        created_at,
    }
}

/// A `SharedRedis` on the test Redis under `prefix`.
fn shared_ledger(url: &str, prefix: &str, lease: Duration) -> Arc<SharedRedis> {
    SharedRedis::new(&shared_settings(url, prefix, Duration::from_secs(2), lease)).expect("redis")
}

/// Key `key_id`'s ledger as Redis holds it.
async fn ledger_state(observer: &SharedRedis, key_id: i64) -> LedgerState {
    observer
        .budget_ledger(key_id)
        .await
        .expect("redis answers")
        .expect("the ledger exists")
}

/// Waits until key `key_id`'s ledger holds `used` tokens and nothing reserved.
async fn wait_for_ledger(observer: &SharedRedis, key_id: i64, used: i64) {
    wait_for(&format!("the ledger to settle at {used} used"), || async {
        observer
            .budget_ledger(key_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|l| (l.used, l.reserved) == (used, 0))
    })
    .await;
}

/// A settlement that meets a Redis hiccup is retried until Redis takes it, and cached answers
/// cannot crowd it out: while Redis hangs, a flood of cache writes overflows their queue (and
/// is dropped), yet the settlement is applied once Redis answers again. Before, settlements
/// shared that queue and were dropped after one failed attempt, leaving the reservation held.
#[actix_rt::test]
async fn a_settlement_survives_a_redis_hiccup_and_is_not_crowded_out_by_cache_writes() {
    let url = redis_url();
    require_redis(&url);
    let prefix = unique_prefix();
    let (store, _target, key_id, _dir) = store_with_key(Db::Sqlite, 1_000).await;
    let proxy = RedisProxy::start(&url);
    // Long enough for the first reservation on a loaded machine (at 100 ms it sometimes fell
    // back to the local ledger), short enough that the hung settlement fails quickly.
    let settings = shared_settings(
        &proxy.url,
        &prefix,
        Duration::from_millis(500),
        Duration::from_secs(60),
    );
    let shared = SharedRedis::new(&settings).expect("redis");
    let ledger = BudgetLedger::new(store).with_shared(Arc::clone(&shared));
    let observer = shared_ledger(&url, &prefix, Duration::from_secs(60));
    let reservation = ledger.reserve(key_id, 1_000, 100).await.expect("reserved");
    assert_eq!(ledger_state(&observer, key_id).await.reserved, 100);

    proxy.hang();
    for i in 0..12_000 {
        shared.cache_put(&format!("answer-{i}"), vec![0; 64], Duration::from_secs(60));
    }
    assert!(
        shared.dropped_writes() > 0,
        "the cache write queue overflowed"
    );
    reservation.settle(60, now_millis());
    let counters = shared.budget_counters();
    wait_for("a failed settlement attempt", || async {
        counters.settlement_retries.load(Ordering::Relaxed) > 0
    })
    .await;
    let state = ledger_state(&observer, key_id).await;
    assert_eq!((state.used, state.reserved), (0, 100), "not applied yet");

    proxy.recover();
    wait_for_ledger(&observer, key_id, 60).await;
    assert_eq!(counters.settlements_abandoned.load(Ordering::Relaxed), 0);
}

/// Reserves the whole budget (100) in a replica that then dies holding it: its own runtime (and
/// with it the settlement and lease-renewal tasks) ends, and nothing settles or releases it.
fn reserve_and_die(target: DatabaseTarget, url: &str, prefix: &str, lease: Duration, key_id: i64) {
    let settings = shared_settings(url, prefix, Duration::from_secs(2), lease);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let shared = SharedRedis::new(&settings).expect("redis");
            let store = Store::open(&target, 2).expect("store");
            let ledger = BudgetLedger::new(store).with_shared(shared);
            let reservation = ledger.reserve(key_id, 100, 100).await.expect("reserved");
            std::mem::forget(reservation);
        });
    })
    .join()
    .expect("the dead replica");
}

/// A replica that dies mid-request (crash, deploy) leaves its reservation in the shared
/// ledger; its lease runs out and the budget is available again, while a live replica's
/// long request keeps its reservation past the lease by renewing it. Before, the dead
/// replica's reservation held the budget until the ledger idled out (15 minutes).
#[actix_rt::test]
async fn a_dead_replicas_reservation_runs_out_with_its_lease_and_a_live_one_is_renewed() {
    let url = redis_url();
    require_redis(&url);
    let prefix = unique_prefix();
    let lease = Duration::from_secs(1);
    let (store, target, key_id, _dir) = store_with_key(Db::Sqlite, 100).await;
    reserve_and_die(target, &url, &prefix, lease, key_id);
    let live = BudgetLedger::new(store).with_shared(shared_ledger(&url, &prefix, lease));
    assert!(
        matches!(
            live.reserve(key_id, 100, 1).await,
            Err(BudgetError::Exhausted { reserved: 100, .. })
        ),
        "the dead replica's reservation holds the budget"
    );
    let held = std::cell::RefCell::new(None);
    wait_for("the dead replica's lease to run out", || async {
        let reservation = live.reserve(key_id, 100, 100).await.ok();
        let reserved = reservation.is_some();
        *held.borrow_mut() = reservation;
        reserved
    })
    .await;

    // The live reservation is the ledger's `r:<id>` holding 100 (the dead one's record is
    // kept at 0 for one more lease); its lease deadline is its score in `…:leases`.
    let fields = redis_cli(&url, &["HGETALL", &format!("{prefix}:budget:{key_id}")]);
    let fields: Vec<&str> = fields.lines().collect();
    let live_id = fields
        .chunks(2)
        .find_map(|pair| match pair {
            [field, "100"] => field.strip_prefix("r:"),
            _ => None,
        })
        .expect("the live reservation");
    let leases = format!("{prefix}:budget:{key_id}:leases");
    let deadline = || -> f64 {
        let score = redis_cli(&url, &["ZSCORE", &leases, live_id]);
        score.parse().expect("a lease deadline")
    };
    let renewed_past = deadline() + 2.0 * lease.as_millis() as f64;
    wait_for(
        "the live reservation's lease to be renewed twice",
        || async { deadline() >= renewed_past },
    )
    .await;
    assert!(
        matches!(
            live.reserve(key_id, 100, 1).await,
            Err(BudgetError::Exhausted { .. })
        ),
        "a renewed reservation still holds its tokens past its first deadline"
    );
    drop(held);
}

/// Reconciliation replaces a drifted ledger's use with `usage_events`' figure: a request whose
/// settlement never reached the ledger is counted, tokens the ledger counts that the database
/// does not are dropped, and settlements in flight across the round are counted exactly once
/// (one whose usage row was already stored is not added again; one billed after the cutoff is).
async fn check_reconciliation(db: Db) {
    let url = redis_url();
    require_redis(&url);
    let prefix = unique_prefix();
    let (store, _target, key_id, _dir) = store_with_key(db, 1_000).await;
    let insert = |tokens: i64, at: i64| {
        let store = store.clone();
        async move {
            store
                .insert_usage(&[usage_row(key_id, tokens, at)])
                .await
                .expect("usage row");
        }
    };
    insert(300, now_millis() - 3_600_000).await;
    let shared = shared_ledger(&url, &prefix, Duration::from_secs(60));
    let ledger = BudgetLedger::new(store.clone()).with_shared(Arc::clone(&shared));
    // Seeded from the database (300); billed as usual: settled and stored.
    let first = ledger.reserve(key_id, 1_000, 100).await.expect("reserved");
    let t0 = now_millis();
    first.settle(100, t0 + 1);
    insert(100, t0 + 1).await;
    wait_for_ledger(&shared, key_id, 400).await;
    // Drift both ways: a settlement lost (200 stored, never settled) and 250 counted that the
    // database does not hold (a refused row, say). The ledger says 650; the truth is 600.
    insert(200, t0 + 2).await;
    redis_cli(
        &url,
        &[
            "HINCRBY",
            &format!("{prefix}:budget:{key_id}"),
            "used",
            "250",
        ],
    );
    let stored_first = ledger.reserve(key_id, 1_000, 50).await.expect("reserved");
    let settled_first = ledger.reserve(key_id, 1_000, 30).await.expect("reserved");
    assert!(
        matches!(
            ledger.reserve(key_id, 1_000, 300).await,
            Err(BudgetError::Exhausted { used: 650, .. })
        ),
        "the drifted ledger refuses what the budget allows"
    );
    // This request's usage row is stored before its settlement reaches the ledger.
    insert(40, t0 + 3).await;
    let now = t0 + MARGIN_MS + 2 * BUDGET_BUCKET_MS;
    let cutoff = (now - MARGIN_MS) - (now - MARGIN_MS).rem_euclid(BUDGET_BUCKET_MS);
    let outcomes = ledger
        .reconcile_at(&[key_id], now)
        .await
        .expect("reconciled");
    assert_eq!(
        outcomes,
        vec![Reconciled::Corrected {
            key_id,
            before: 650,
            after: 640,
            from_database: true
        }]
    );
    stored_first.settle(40, t0 + 3);
    settled_first.settle(30, cutoff + 5);
    wait_for_ledger(&shared, key_id, 670).await;
    let rest = ledger.reserve(key_id, 1_000, 330).await;
    assert!(rest.is_ok(), "the budget left is exactly 330");
    assert!(matches!(
        ledger.reserve(key_id, 1_000, 1).await,
        Err(BudgetError::Exhausted { .. })
    ));
}

#[actix_rt::test]
async fn reconciliation_corrects_a_drifted_ledger_and_counts_settlements_once_sqlite() {
    check_reconciliation(Db::Sqlite).await;
}

#[actix_rt::test]
async fn reconciliation_corrects_a_drifted_ledger_and_counts_settlements_once_postgres() {
    check_reconciliation(Db::Postgres).await;
}

/// The gateway runs reconciliation on `redis.budget_reconcile_ms`: a ledger made to claim the
/// whole budget is corrected to what was billed, and the key may spend again.
#[actix_rt::test]
async fn the_gateway_reconciles_its_shared_ledgers_on_an_interval() {
    let url = redis_url();
    require_redis(&url);
    let upstream = mock("a");
    let prefix = unique_prefix();
    let mut raw = config_on(Db::Sqlite).await;
    raw.redis.enabled = true;
    raw.redis.url = Some(url.clone());
    raw.redis.key_prefix = prefix.clone();
    raw.redis.timeout_ms = 2_000;
    raw.redis.budget_reconcile_ms = 100;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway
        .create_key(&admin, json!({"name": "drifting", "token_budget": 100}))
        .await;
    let body = chat_with(json!({"max_tokens": 5}));
    let chat = || gateway.send_as(Method::POST, "/v1/chat/completions", &key, Some(&body));
    assert_eq!(chat().await.0, 200);
    let billed: i64 = gateway
        .usage_rows(id, 1)
        .await
        .iter()
        .map(|row| row.prompt_tokens + row.completion_tokens)
        .sum();
    let observer = shared_ledger(&url, &prefix, Duration::from_secs(60));
    wait_for_ledger(&observer, id, billed).await;
    redis_cli(
        &url,
        &["HSET", &format!("{prefix}:budget:{id}"), "used", "100"],
    );
    wait_for("the reconciler to correct the ledger", || async {
        chat().await.0 == 200
    })
    .await;
    gateway.stop().await;
}

/// A budgeted request through a gateway whose Redis is down, with `failure` deciding; an
/// unbudgeted key's request (which asks Redis nothing) goes through either way. Returns the
/// budgeted request's status and error code, and how many requests reached the upstream.
async fn budgeted_chat_while_redis_is_down(failure: RawRedisFailure) -> (u16, String, u64) {
    let upstream = mock("a");
    let nobody_listens = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut raw = config_on(Db::Sqlite).await;
    raw.redis.enabled = true;
    raw.redis.url = Some(format!("redis://127.0.0.1:{nobody_listens}"));
    raw.redis.timeout_ms = 100;
    raw.rate_limit.redis_failure = failure;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, budgeted) = gateway
        .create_key(&admin, json!({"name": "budgeted", "token_budget": 100_000}))
        .await;
    let (_, free) = gateway.create_key(&admin, json!({"name": "free"})).await;
    let body = chat("llm/m");
    let (status, reply) = gateway
        .send_as(Method::POST, "/v1/chat/completions", &budgeted, Some(&body))
        .await;
    let (free_status, _) = gateway
        .send_as(Method::POST, "/v1/chat/completions", &free, Some(&body))
        .await;
    assert_eq!(
        free_status, 200,
        "a key without a budget asks Redis nothing"
    );
    gateway.stop().await;
    let code = reply["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code, upstream.state.requests())
}

/// `RATE_LIMIT_REDIS_FAILURE=deny` holds for budgets: when Redis cannot decide, a budgeted
/// request is refused with a clear 503 and never reaches the upstream, instead of one replica
/// spending a shared budget on its own. `local` (the default) keeps deciding in-process.
#[actix_rt::test]
async fn with_deny_a_budgeted_request_gets_503_when_redis_cannot_decide() {
    assert_eq!(
        budgeted_chat_while_redis_is_down(RawRedisFailure::Deny).await,
        (503, "budget_unavailable".to_string(), 1)
    );
    assert_eq!(
        budgeted_chat_while_redis_is_down(RawRedisFailure::Local).await,
        (200, String::new(), 2)
    );
}
/// The body limit, and chat bodies of about that size whose prompts were the slowest to count.
/// Before the bound: one run of a letter, of spaces or of emoji was one BPE piece, merged in
/// quadratic time (999,999 emoji: about two hours), and past a million characters a fancy-regex
/// stack overflow that tiktoken panicked on. Since: the most regex matches per byte (" 1").
/// Bodies full of JSON escapes are slower to parse than any of these (unoptimised serde_json
/// takes ~0.3 s for each of the two parses), but the parse is not the count.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

fn worst_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let chat = |text: String| {
        let body = json!({"model": "llm/m", "messages": [{"role": "user", "content": text}]});
        let body = serde_json::to_vec(&body).expect("json");
        assert!(body.len() <= BODY_LIMIT && body.len() > BODY_LIMIT - 200);
        body
    };
    let filled = |unit: &str| chat(unit.repeat((BODY_LIMIT - 100) / unit.len()));
    vec![
        ("one letter", filled("a")),
        ("spaces", filled(" ")),
        (
            "emoji",
            chat("😀".repeat(999_999) + &"a".repeat(BODY_LIMIT - 100 - 4 * 999_999)),
        ),
        ("spaced digits", filled(" 1")),
    ]
}

/// Every one of the worst 4 MiB prompts is refused (a 1,000-token budget) well within a
/// second, and admitted (a budget larger than any of them) in a few: the count is bounded
/// (`actors::tokens`, whose `the_worst_texts_are_counted_with_bounded_work` pins the work)
/// and runs on a blocking thread. An admitted request also crosses to the mock upstream and
/// back, 4 MiB each way, which is not counting.
#[actix_rt::test]
async fn the_worst_prompts_are_admitted_or_refused_quickly() {
    let (gateway, upstream, admin) = budgeted_gateway().await;
    let (_, small) = gateway
        .create_key(&admin, json!({"name": "small", "token_budget": 1000}))
        .await;
    let (_, large) = gateway
        .create_key(
            &admin,
            json!({"name": "large", "token_budget": 100_000_000}),
        )
        .await;
    // Keys, their budgets and the BPE tables are loaded once per process, not per prompt.
    for key in [&small, &large] {
        let (status, reply) = gateway
            .send_as(
                Method::POST,
                "/v1/chat/completions",
                key,
                Some(&chat_with(json!({}))),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    for (name, body) in worst_bodies() {
        for (key, expected, within) in [(&small, 429, 1), (&large, 200, 5)] {
            let started = Instant::now();
            let response = gateway
                .client
                .post(gateway.url("/v1/chat/completions"))
                .insert_header(("authorization", format!("Bearer {key}")))
                .insert_header(("content-type", "application/json"))
                .send_body(body.clone())
                .await
                .expect("the gateway answers");
            let elapsed = started.elapsed();
            assert_eq!(response.status().as_u16(), expected, "{name}");
            assert!(elapsed < Duration::from_secs(within), "{name}: {elapsed:?}");
        }
    }
    assert_eq!(
        upstream.state.requests(),
        2 + 4,
        "the large budget's requests were sent"
    );
    gateway.stop().await;
}
