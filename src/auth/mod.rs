//! Credentials at the edge: API keys for clients (`Authorization: Bearer sk-…` or `x-api-key`)
//! and HS256 JWTs for dashboard and admin users. Who a request comes from is decided from these
//! in one place, `principal::Principal::resolve`; [`guard`] throttles the failures.

pub mod guard;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::HttpRequest;
use actors::keys::{ApiKey, Cached, KeyLookup};
use actors::store::keys::{hash_key, is_well_formed};
use actors::store::users::Role;
use actors::users::UserCache;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::error::GatewayError;
use crate::state::AppState;
use guard::Failure;

/// The bearer token or `x-api-key` value of a request, if any.
pub fn presented_credential(request: &HttpRequest) -> Option<&str> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub(crate) fn unauthorized(code: &'static str, message: &str) -> GatewayError {
    GatewayError::Unauthorized {
        code,
        message: message.to_string(),
    }
}

/// Looks up a presented API key secret: 401 unless it is a live key, 429 for a `client`
/// (computed only when needed) past its failed-authentication rate.
///
/// A secret not shaped like an issued key is refused without a lookup; a live key this thread
/// found within the TTL needs neither the secret's hash nor the shared cache
/// (`KeyCache::remembered`); a cached answer (a key, or a secret known not to be one) needs no
/// database; a key the cache held refreshes freely; only a secret the cache has never seen
/// meets the failure throttle on its way to the database.
pub async fn key_from_secret(
    secret: &str,
    state: &AppState,
    client: impl Fn() -> Option<IpAddr>,
) -> Result<Arc<ApiKey>, GatewayError> {
    if !is_well_formed(secret) {
        return Err(state
            .guard
            .failed(client(), Failure::Malformed, invalid_key()));
    }
    if let Some(key) = state.keys.remembered(secret) {
        return Ok(key);
    }
    let hash = hash_key(secret);
    let lookup = match state.keys.cached(&hash).await {
        Cached::Answer(answer) => answer,
        known => {
            if known == Cached::Absent {
                state.guard.admit_lookup(client())?;
            }
            state
                .keys
                .lookup_hash(&hash)
                .await
                .map_err(|error| GatewayError::StoreUnavailable(error.to_string()))?
        }
    };
    let (failure, error) = match lookup {
        KeyLookup::Valid(key) => {
            state.keys.remember(secret, &hash, &key).await;
            return Ok(key);
        }
        KeyLookup::Unknown => (Failure::Unknown, invalid_key()),
        KeyLookup::Revoked => (
            Failure::Revoked,
            unauthorized("revoked_api_key", "This API key has been revoked."),
        ),
        KeyLookup::Expired => (
            Failure::Expired,
            unauthorized("expired_api_key", "This API key has expired."),
        ),
    };
    Err(state.guard.failed(client(), failure, error))
}

fn invalid_key() -> GatewayError {
    unauthorized("invalid_api_key", "Incorrect API key provided.")
}

/// What a dashboard/admin token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// Signs and checks tokens. Only HS256 is accepted: `alg: none` and algorithm switches fail.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    pub expiry: Duration,
}

impl JwtKeys {
    pub fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[config.jwt_issuer.as_str()]);
        validation.set_audience(&[config.jwt_audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        JwtKeys {
            encoding: EncodingKey::from_secret(config.jwt_secret.as_bytes()),
            decoding: DecodingKey::from_secret(config.jwt_secret.as_bytes()),
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            expiry: config.jwt_expiry,
        }
    }

    pub fn issue(&self, username: &str, role: Role) -> Result<String, GatewayError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: username.to_string(),
            role: role.as_str().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.expiry.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| GatewayError::Internal(format!("cannot sign a token: {e}")))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, GatewayError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                let message = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "The token has expired.",
                    _ => "The token is invalid.",
                };
                unauthorized("invalid_token", message)
            })
    }
}

/// Clock skew allowed between the replica that created a user and the one that signed a
/// token (the same as the token validation's leeway).
const LEEWAY_SECS: u64 = 5;

/// A verified token's claims as they stand now: the user's current role (through the user
/// cache, so a change reaches every replica within its TTL), or 401 when the user was deleted
/// or the token predates the user of that name (deleted and created again).
pub async fn current_claims(mut claims: Claims, users: &UserCache) -> Result<Claims, GatewayError> {
    let user = users
        .current(&claims.sub)
        .await
        .map_err(|error| GatewayError::StoreUnavailable(error.to_string()))?
        .ok_or_else(|| unauthorized("invalid_token", "The token's user no longer exists."))?;
    let issued_ms = claims.iat.saturating_add(LEEWAY_SECS).saturating_mul(1000);
    if i64::try_from(issued_ms).unwrap_or(i64::MAX) < user.created_at {
        return Err(unauthorized(
            "invalid_token",
            "The token was issued before its user existed.",
        ));
    }
    claims.role = user.role.as_str().to_string();
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn config(secret: &str) -> AuthConfig {
        AuthConfig {
            enabled: true,
            jwt_secret: secret.into(),
            jwt_secret_generated: false,
            jwt_expiry: Duration::from_secs(3600),
            jwt_issuer: "ai-gateway".into(),
            jwt_audience: "ai-gateway-admin".into(),
            key_cache_ttl: Duration::from_secs(5),
            user_cache_ttl: Duration::from_secs(5),
            max_failures_per_minute: 20,
            login_max_concurrent: 4,
            login_wait: Duration::from_secs(1),
        }
    }

    fn b64(data: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    const SECRET: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

    #[test]
    fn good_tokens_verify() {
        let keys = JwtKeys::new(&config(SECRET));
        let token = keys.issue("alice", Role::Admin).expect("token");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub.as_str(), claims.role.as_str()),
            ("alice", "admin")
        );
    }

    #[test]
    fn forged_and_stale_tokens_fail() {
        let keys = JwtKeys::new(&config(SECRET));
        let now = jsonwebtoken::get_current_timestamp();
        let claims = |exp: u64, iss: &str, aud: &str| Claims {
            sub: "mallory".into(),
            role: "admin".into(),
            iss: iss.into(),
            aud: aud.into(),
            iat: now,
            exp,
        };
        let sign = |claims: &Claims, secret: &str, alg: Algorithm| {
            jsonwebtoken::encode(
                &Header::new(alg),
                claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .expect("sign")
        };
        let good = claims(now + 600, "ai-gateway", "ai-gateway-admin");
        // alg: none, unsigned.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&serde_json::to_string(&good).expect("json"))
        );
        // An algorithm switch to HS512 with the right secret is still refused.
        let cases = [
            ("alg none", none),
            (
                "other secret",
                sign(
                    &good,
                    "another-secret-another-secret-xyz!",
                    Algorithm::HS256,
                ),
            ),
            ("algorithm switch", sign(&good, SECRET, Algorithm::HS512)),
            (
                "expired",
                sign(
                    &claims(now - 600, "ai-gateway", "ai-gateway-admin"),
                    SECRET,
                    Algorithm::HS256,
                ),
            ),
            (
                "wrong issuer",
                sign(
                    &claims(now + 600, "someone-else", "ai-gateway-admin"),
                    SECRET,
                    Algorithm::HS256,
                ),
            ),
            (
                "wrong audience",
                sign(
                    &claims(now + 600, "ai-gateway", "other-app"),
                    SECRET,
                    Algorithm::HS256,
                ),
            ),
        ];
        for (name, token) in cases {
            assert!(keys.verify(&token).is_err(), "{name} was accepted");
        }
        // Tampering with the payload of a good token breaks its signature.
        let token = keys.issue("bob", Role::Viewer).expect("token");
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(now + 600, "ai-gateway", "ai-gateway-admin");
        forged.sub = "bob".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_string(&forged).expect("json")),
            parts[2]
        );
        assert!(keys.verify(&tampered).is_err());
        assert!(keys.verify(&token).is_ok());
    }
}
