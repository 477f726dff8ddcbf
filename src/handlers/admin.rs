//! `/auth/login` and the admin REST API (`/admin/*`, admin JWT required): keys, users, usage,
//! upstreams.

use actix_web::{web, HttpRequest, HttpResponse};
use actors::store::now_millis;
use actors::store::users::Role;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::admin::users::UpdateUserRequest;
use crate::admin::{self, CreateKeyRequest, UpdateKeyRequest};
use crate::auth::guard::LoginOutcome;
use crate::error::GatewayError;
use crate::principal::{Admin, Principal};
use crate::state::AppState;

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Token {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    role: &'static str,
}

pub async fn login(
    request: HttpRequest,
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    // The peer address, or the client a trusted proxy names (`TRUSTED_PROXIES`); never a
    // forwarded header a client could forge.
    let client_ip = state.trusted_proxies.of_request(&request);
    let login: Login = parse_json(&body)?;
    let failed = || {
        state.guard.count_login(LoginOutcome::Failed);
        GatewayError::Unauthorized {
            code: "invalid_credentials",
            message: "Incorrect username or password.".into(),
        }
    };
    if login.username.len() > 128 || login.password.len() > 1024 {
        return Err(failed());
    }
    // Per client IP and per user name, then a bounded number of hashes at once: guessing
    // passwords is slow and costly for us, so all of it comes before any password work.
    state.guard.admit_login(client_ip, &login.username).await?;
    let slot = state.guard.hashing_slot().await?;
    let verified = state
        .store
        .verify_user(&login.username, &login.password)
        .await
        .map_err(|e| GatewayError::StoreUnavailable(e.to_string()))?;
    drop(slot);
    let user = verified.ok_or_else(|| {
        // Who tried, for fail2ban-style tooling: the client, not the proxy in front.
        let client_ip = client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::info!(client_ip = %client_ip, username = %login.username, "login failed");
        failed()
    })?;
    state.guard.count_login(LoginOutcome::Succeeded);
    let role = Role::parse(&user.role).unwrap_or(Role::Viewer);
    let token = state.jwt.issue(&user.username, role)?;
    Ok(HttpResponse::Ok().json(Token {
        access_token: token,
        token_type: "bearer",
        expires_in: state.jwt.expiry.as_secs(),
        role: role.as_str(),
    }))
}

pub async fn create_key(
    _: Admin,
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let request: CreateKeyRequest = parse_json(&body)?;
    let created = admin::create_key(&state.store, request).await?;
    Ok(HttpResponse::Created().json(created))
}

pub async fn list_keys(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let keys = admin::list_keys(&state.store).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": keys})))
}

fn key_id(path: &str) -> Result<i64, GatewayError> {
    path.parse().map_err(|_| GatewayError::InvalidParameter {
        param: "id",
        message: "must be a key id (an integer)".into(),
    })
}

pub async fn update_key(
    _: Admin,
    path: web::Path<String>,
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let id = key_id(&path)?;
    let request: UpdateKeyRequest = parse_json(&body)?;
    let view = admin::update_key(&state.store, id, request).await?;
    // This replica sees the change at once; others within the key-cache TTL.
    state.keys.invalidate_all();
    Ok(HttpResponse::Ok().json(view))
}

pub async fn revoke_key(
    _: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let id = key_id(&path)?;
    admin::revoke_key(&state.store, id).await?;
    state.keys.invalidate_all();
    Ok(HttpResponse::Ok().json(serde_json::json!({"id": id, "revoked": true})))
}

/// The administrator's own user name (an `Admin` is always a token's user).
fn acting_user(admin: &Admin) -> &str {
    match &admin.0 {
        Principal::User(claims) => &claims.sub,
        Principal::Key(_) | Principal::Open | Principal::Anonymous => "",
    }
}

pub async fn list_users(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let users = admin::users::list_users(&state.store).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": users})))
}

/// `PATCH /admin/users/{username}` with `{"role": "admin" | "viewer"}`.
pub async fn update_user(
    acting: Admin,
    path: web::Path<String>,
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let request: UpdateUserRequest = parse_json(&body)?;
    let view = admin::users::set_role(&state.store, acting_user(&acting), &path, request).await?;
    // This replica sees the change at once; others within the user-cache TTL.
    state.users.invalidate(&path).await;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn delete_user(
    acting: Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    admin::users::delete_user(&state.store, acting_user(&acting), &path).await?;
    state.users.invalidate(&path).await;
    Ok(HttpResponse::Ok().json(serde_json::json!({"username": path.as_str(), "deleted": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Unix milliseconds; default 30 days ago.
    from: Option<i64>,
    /// Unix milliseconds, exclusive; default now.
    to: Option<i64>,
    group_by: Option<String>,
}

pub async fn usage(
    _: Admin,
    query: web::Query<UsageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let now = now_millis();
    let to = query.to.unwrap_or(now + 1);
    let from = query.from.unwrap_or(now - 30 * 86_400_000);
    let grouping = admin::parse_grouping(query.group_by.as_deref().unwrap_or("key"))?;
    let lines = admin::usage_report(&state.store, from, to, grouping).await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"object": "list", "from": from, "to": to, "data": lines})))
}

#[derive(Serialize)]
struct EndpointView {
    address: String,
    weight: u32,
    protocol: &'static str,
    origin: &'static str,
    health: &'static str,
    state: &'static str,
    eligible: bool,
    ejected_for_ms: Option<u128>,
    ejections: u32,
    in_flight: u32,
    latency_ewma_ms: f64,
    consecutive_failures: u32,
}

pub async fn upstreams(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let mut services = Vec::new();
    for (name, pool) in state.pipeline.registry.pools() {
        let Ok(pool_state) = pool.state().await else {
            continue;
        };
        let endpoints: Vec<EndpointView> = pool_state
            .endpoints
            .into_iter()
            .map(|e| EndpointView {
                address: e.address,
                weight: e.weight,
                protocol: e.protocol,
                origin: e.origin,
                health: e.health,
                state: e.state,
                eligible: e.eligible,
                ejected_for_ms: e.ejected_for.map(|d| d.as_millis()),
                ejections: e.ejections,
                in_flight: e.in_flight,
                latency_ewma_ms: e.latency_ewma_ms,
                consecutive_failures: e.consecutive_failures,
            })
            .collect();
        services.push(serde_json::json!({"service": name, "strategy": pool_state.strategy, "endpoints": endpoints}));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": services})))
}
