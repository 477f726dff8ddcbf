//! API keys, admin tokens and the admin API, on SQLite and PostgreSQL.

mod common;

use awc::http::Method;
use common::*;
use serde_json::json;

async fn chat_with(gateway: &TestGateway, key: &str, model: &str) -> (u16, serde_json::Value) {
    gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            key,
            Some(&chat(model)),
        )
        .await
}

async fn key_lifecycle(db: Db) {
    let upstream = mock("a");
    let gateway = start_gateway(config_on(db).await, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;

    let (id, key) = gateway
        .create_key(
            &admin,
            json!({"name": "team a", "allowed_models": ["llm/allowed", "other/*"]}),
        )
        .await;
    assert!(key.starts_with("sk-gw-") && key.len() > 40);
    let (status, body) = chat_with(&gateway, &key, "llm/allowed").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = chat_with(&gateway, &key, "llm/forbidden").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("model_not_allowed"))
    );

    // Listing never shows secrets.
    let (status, list) = gateway
        .send_as(Method::GET, "/admin/keys", &admin, None)
        .await;
    assert_eq!(status, 200);
    assert!(!list.to_string().contains(&key));
    assert_eq!(list["data"][0]["name"], "team a");

    // Widening the allow-list applies on this replica at once.
    let (status, updated) = gateway
        .send_as(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            &admin,
            Some(&json!({"allowed_models": null, "rpm": 100})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["rpm"], 100);
    let (status, _) = chat_with(&gateway, &key, "llm/forbidden").await;
    assert_eq!(status, 200);

    // Revocation: refused within the cache TTL (1 s here).
    let (status, _) = gateway
        .send_as(
            Method::POST,
            &format!("/admin/keys/{id}/revoke"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = chat_with(&gateway, &key, "llm/allowed").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("revoked_api_key"))
    );
    let (status, _) = gateway
        .send_as(Method::POST, "/admin/keys/999999/revoke", &admin, None)
        .await;
    assert_eq!(status, 404);
    gateway.stop().await;
}

#[actix_rt::test]
async fn key_lifecycle_sqlite() {
    key_lifecycle(Db::Sqlite).await;
}

#[actix_rt::test]
async fn key_lifecycle_postgres() {
    key_lifecycle(Db::Postgres).await;
}

#[actix_rt::test]
async fn revocation_reaches_another_replica_within_the_ttl() {
    let upstream = mock("a");
    let raw = config_on(Db::Postgres).await;
    let services = services_for("llm", &[&upstream], &[]);
    let first = start_gateway(raw.clone(), &services).await;
    let second = start_gateway(raw, &services).await;
    first.wait_ready().await;
    second.wait_ready().await;
    let admin = first.admin_token().await;
    let (id, key) = first.create_key(&admin, json!({"name": "shared"})).await;
    let (status, _) = chat_with(&second, &key, "llm/m").await;
    assert_eq!(status, 200, "the second replica knows the key");
    let (status, _) = first
        .send_as(Method::DELETE, &format!("/admin/keys/{id}"), &admin, None)
        .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let key_for_wait = key.clone();
    let replica = &second;
    wait_for("the other replica to refuse the revoked key", || {
        let key = key_for_wait.clone();
        async move { chat_with(replica, &key, "llm/m").await.0 == 401 }
    })
    .await;
    // The promise is "within a few seconds": the cache TTL (1 s here) plus one lookup.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    first.stop().await;
    second.stop().await;
}

#[actix_rt::test]
async fn missing_invalid_and_expired_keys_get_401() {
    let upstream = mock("a");
    let gateway = start_gateway(
        config_on(Db::Sqlite).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    gateway.wait_ready().await;
    let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!((status, error_code(&body)), (401, "missing_api_key".into()));
    let (status, _) = gateway.get_json("/v1/models").await;
    assert_eq!(status, 401, "the model list needs a key too");
    let (status, body) = chat_with(&gateway, "sk-gw-not-a-real-key", "llm/m").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    assert_eq!(body["error"]["type"], "authentication_error");

    let admin = gateway.admin_token().await;
    let soon = actors::store::now_millis() + 1500;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "short lived", "expires_at": soon}))
        .await;
    let (status, _) = chat_with(&gateway, &key, "llm/m").await;
    assert_eq!(status, 200);
    let replica = &gateway;
    wait_for("the key to expire", || {
        let key = key.clone();
        async move { chat_with(replica, &key, "llm/m").await.1["error"]["code"] == "expired_api_key" }
    })
    .await;
    let served = upstream.state.requests();
    let (status, _) = chat_with(&gateway, &key, "llm/m").await;
    assert_eq!(status, 401);
    assert_eq!(
        upstream.state.requests(),
        served,
        "refused requests never reach the upstream"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn admin_api_needs_an_admin_token() {
    let upstream = mock("a");
    let gateway = start_gateway(
        config_on(Db::Sqlite).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    let (status, body) = gateway.get_json("/admin/keys").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("missing_token"))
    );
    let (status, _) = gateway
        .send_as(Method::GET, "/admin/keys", "not.a.jwt", None)
        .await;
    assert_eq!(status, 401);

    gateway
        .store
        .create_user(
            "viewer1",
            "viewer password",
            actors::store::users::Role::Viewer,
        )
        .await
        .expect("viewer");
    let mut login = gateway
        .client
        .post(gateway.url("/auth/login"))
        .send_json(&json!({"username": "viewer1", "password": "viewer password"}))
        .await
        .expect("login");
    let token: serde_json::Value = login.json().await.expect("json");
    let viewer = token["access_token"].as_str().expect("token");
    let (status, body) = gateway
        .send_as(Method::GET, "/admin/keys", viewer, None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_permissions"))
    );

    let wrong = gateway
        .client
        .post(gateway.url("/auth/login"))
        .send_json(&json!({"username": "viewer1", "password": "nope"}))
        .await
        .expect("login");
    assert_eq!(wrong.status().as_u16(), 401);
    // An API key is not an admin credential.
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "client"})).await;
    let (status, _) = gateway
        .send_as(Method::GET, "/admin/keys", &key, None)
        .await;
    assert_eq!(status, 401);
    gateway.stop().await;
}

#[actix_rt::test]
async fn bad_key_requests_are_400_with_reasons() {
    let upstream = mock("a");
    let gateway = start_gateway(
        config_on(Db::Sqlite).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    let admin = gateway.admin_token().await;
    let long_name = "x".repeat(65);
    let cases = [
        (json!({"name": long_name}), "name"),
        (json!({"name": "x'; DROP TABLE api_keys; --"}), "name"),
        (
            json!({"name": "ok", "colour": "red"}),
            "unknown field `colour`",
        ),
        (json!({"name": "ok", "rpm": -1}), "rpm"),
        (json!({"name": "ok", "token_budget": -5}), "token_budget"),
        (
            json!({"name": "ok", "allowed_models": [""]}),
            "allowed_models",
        ),
        (json!({"name": "ok", "expires_at": 1000}), "expires_at"),
        (json!({"name": 7}), "invalid type"),
        (json!({}), "missing field `name`"),
    ];
    for (request, fragment) in cases {
        let (status, body) = gateway
            .send_as(Method::POST, "/admin/keys", &admin, Some(&request))
            .await;
        assert_eq!(status, 400, "{request} → {body}");
        let message = format!("{} {}", body["error"]["message"], body["error"]["param"]);
        assert!(message.contains(fragment), "{request}: {message}");
    }
    let (status, _) = gateway
        .send_as(
            Method::PATCH,
            "/admin/keys/abc",
            &admin,
            Some(&json!({"rpm": 1})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = gateway
        .send_as(
            Method::PATCH,
            "/admin/keys/1",
            &admin,
            Some(&json!({"tpm": -3})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = gateway
        .send_as(Method::GET, "/admin/usage?group_by=colour", &admin, None)
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = gateway
        .send_as(Method::GET, "/admin/usage?from=yesterday", &admin, None)
        .await;
    assert_eq!(status, 400, "{body}");
    // Nothing was created by any of it.
    let (_, list) = gateway
        .send_as(Method::GET, "/admin/keys", &admin, None)
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0));
    gateway.stop().await;
}

#[actix_rt::test]
async fn migrations_apply_and_are_idempotent() {
    for target in [
        actors::store::DatabaseTarget::Sqlite(
            tempfile::tempdir().expect("dir").keep().join("m.db"),
        ),
        actors::store::DatabaseTarget::Postgres(fresh_postgres_database().await),
    ] {
        let backend = match target {
            actors::store::DatabaseTarget::Sqlite(_) => "sqlite",
            actors::store::DatabaseTarget::Postgres(_) => "postgres",
        };
        // Every migration directory of the back-end, whichever branches added them.
        let expected = std::fs::read_dir(format!("migrations/{backend}"))
            .expect("migrations")
            .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_dir()))
            .count();
        let first = actors::store::Store::migrate(&target).expect("first run");
        assert_eq!(first.len(), expected, "{target:?}");
        let second = actors::store::Store::migrate(&target).expect("second run");
        assert!(second.is_empty(), "{target:?}: {second:?}");
        let store = actors::store::Store::open(&target, 2).expect("open");
        assert!(store.list_keys().await.expect("query").is_empty());
    }
}

#[actix_rt::test]
async fn a_live_sqlite_database_can_be_backed_up() {
    let dir = tempfile::tempdir().expect("dir");
    let target = actors::store::DatabaseTarget::Sqlite(dir.path().join("live.db"));
    actors::store::Store::migrate(&target).expect("migrate");
    let store = actors::store::Store::open(&target, 2).expect("open");
    let new = actors::store::keys::NewKey {
        name: "kept".into(),
        owner: None,
        limits: Default::default(),
    };
    store.create_key(&new).await.expect("key");
    let copy = dir.path().join("copy.db");
    store.backup_sqlite(&copy).await.expect("backup");
    assert!(
        store.backup_sqlite(&copy).await.is_err(),
        "never overwrites"
    );
    let restored = actors::store::Store::open(&actors::store::DatabaseTarget::Sqlite(copy), 1)
        .expect("open copy");
    let keys = restored.list_keys().await.expect("keys");
    assert_eq!(
        keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        vec!["kept"]
    );
}

/// A token for `sub`, signed with `secret`, issued `age_secs` ago and valid for ten minutes.
fn token_issued_ago(secret: &str, sub: &str, age_secs: u64) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = gateway::auth::Claims {
        sub: sub.into(),
        role: "admin".into(),
        iss: "ai-gateway".into(),
        aud: "ai-gateway-admin".into(),
        iat: now - age_secs,
        exp: now + 600,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

const TEST_JWT_SECRET: &str = "a-test-secret-of-more-than-32-random-bytes";

#[actix_rt::test]
async fn deleted_and_demoted_users_lose_access_at_once_here() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
    // Long enough that only this replica's own invalidation can explain what follows.
    raw.auth.user_cache_ttl_secs = 60;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    let admin = gateway.admin_token().await;
    let (name, ops) = gateway.user_token(actors::store::users::Role::Admin).await;
    let keys_as = |token: String| {
        let gateway = &gateway;
        async move {
            let (status, body) = gateway
                .send_as(Method::GET, "/admin/keys", &token, None)
                .await;
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    assert_eq!(keys_as(ops.clone()).await.0, 200);
    let (status, users) = gateway
        .send_as(Method::GET, "/admin/users", &admin, None)
        .await;
    assert_eq!(status, 200);
    assert!(users.to_string().contains(&name));
    assert!(!users.to_string().contains("argon2"), "no password hashes");

    // Demoted: the token's role claim no longer counts.
    let path = format!("/admin/users/{name}");
    let viewer = json!({"role": "viewer"});
    let (status, body) = gateway
        .send_as(Method::PATCH, &path, &admin, Some(&viewer))
        .await;
    assert_eq!((status, body["role"].as_str()), (200, Some("viewer")));
    assert_eq!(
        keys_as(ops.clone()).await,
        (403, "insufficient_permissions".into())
    );
    let promoted = json!({"role": "admin"});
    let (status, _) = gateway
        .send_as(Method::PATCH, &path, &admin, Some(&promoted))
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys_as(ops.clone()).await.0, 200);

    // Deleted: the token is refused.
    let (status, _) = gateway.send_as(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(keys_as(ops.clone()).await, (401, "invalid_token".into()));
    let (status, _) = gateway.send_as(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, 404);

    // A token older than its user (say, of a user deleted and created again under the same
    // name) is refused; one signed the same way since the user exists is not.
    let (reborn, _) = gateway.user_token(actors::store::users::Role::Admin).await;
    let older = token_issued_ago(TEST_JWT_SECRET, &reborn, 60);
    let (status, body) = gateway
        .send_as(Method::GET, "/admin/keys", &older, None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("issued before its user existed")));
    let current = token_issued_ago(TEST_JWT_SECRET, &reborn, 0);
    assert_eq!(keys_as(current).await.0, 200);

    // Nobody demotes or deletes themselves; bad roles and names are refused.
    let admin_name = gateway
        .send_as(Method::GET, "/admin/users", &admin, None)
        .await
        .1["data"][0]["username"]
        .as_str()
        .expect("the first user")
        .to_string();
    let own = format!("/admin/users/{admin_name}");
    let cases = [
        (Method::PATCH, own.clone(), Some(viewer.clone()), 400),
        (Method::DELETE, own, None, 400),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"role": "root"})),
            400,
        ),
        (
            Method::PATCH,
            path,
            Some(json!({"role": "admin", "x": 1})),
            400,
        ),
        (Method::DELETE, "/admin/users/nobody".into(), None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = gateway
            .send_as(method.clone(), &path, &admin, body.as_ref())
            .await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    assert_eq!(keys_as(admin).await.0, 200, "the admin is still one");
    gateway.stop().await;
}

#[actix_rt::test]
async fn user_changes_reach_another_replica_within_the_ttl() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Postgres).await;
    raw.auth.jwt_secret = Some(TEST_JWT_SECRET.into());
    raw.auth.user_cache_ttl_secs = 1;
    let services = services_for("llm", &[&upstream], &[]);
    let first = start_gateway(raw.clone(), &services).await;
    let second = start_gateway(raw, &services).await;
    let admin = first.admin_token().await;
    let (name, ops) = first.user_token(actors::store::users::Role::Admin).await;
    let replica = &second;
    let status_there = |token: String| async move {
        replica
            .send_as(Method::GET, "/admin/keys", &token, None)
            .await
            .0
    };
    assert_eq!(status_there(ops.clone()).await, 200, "known there");

    // Each change is made on the first replica; the second sees it within its user-cache TTL
    // (1 s here) plus one lookup.
    let path = format!("/admin/users/{name}");
    let changes = [
        (Method::PATCH, Some(json!({"role": "viewer"})), 403),
        (Method::DELETE, None, 401),
    ];
    for (method, body, refused) in changes {
        let (status, answer) = first.send_as(method, &path, &admin, body.as_ref()).await;
        assert_eq!(status, 200, "{answer}");
        let started = std::time::Instant::now();
        let token = ops.clone();
        wait_for("the other replica to see the change", || {
            let token = token.clone();
            async move { status_there(token).await == refused }
        })
        .await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    first.stop().await;
    second.stop().await;
}
