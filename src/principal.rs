//! Who is calling, decided once for every front-end: an API key, a dashboard user (JWT), or
//! nobody. [`Principal::resolve`] is the one resolution; what an endpoint accepts ([`Accepts`])
//! decides how a presented credential is read, and what it requires is a method on the
//! principal (`require_caller`, `require_admin`, `chat_key`).
//!
//! REST routes take it as an actix extractor ([`Principal`] itself for "key or token",
//! [`Admin`] for `/admin`); the `/v1` model handlers call [`Principal::resolve`] inline, because
//! an extractor's future must be nameable and the key lookup's is not, so extracting there would
//! box one future per proxied request. WebSocket and GraphQL call it where their handshake or
//! body tells them the credential.

use std::sync::Arc;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use actors::keys::ApiKey;
use actors::store::keys::KEY_PREFIX;
use actors::store::users::Role;
use futures_util::future::LocalBoxFuture;

use crate::auth::{current_claims, key_from_secret, presented_credential, unauthorized, Claims};
use crate::error::GatewayError;
use crate::state::AppState;

#[derive(Clone)]
pub enum Principal {
    /// A live API key.
    Key(Arc<ApiKey>),
    /// A dashboard user with a valid token.
    User(Claims),
    /// No credential while API keys are switched off (`AUTH_ENABLED=false`).
    Open,
    /// No credential while API keys are required.
    Anonymous,
}

/// The credentials an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// `/v1` REST: an API key, required unless keys are switched off.
    ApiKey,
    /// `/admin` REST: a dashboard token, whatever `AUTH_ENABLED` says.
    Token,
    /// WebSocket, GraphQL and tickets: `sk-gw-…` is an API key, anything else a JWT.
    KeyOrToken,
}

impl Principal {
    /// Resolves a presented credential (already trimmed by [`presented_credential`], or taken
    /// from a WebSocket subprotocol) of `request` for an endpoint that accepts `accepts`. The
    /// request tells who failed, for the failed-authentication throttle.
    pub async fn resolve(
        request: &HttpRequest,
        credential: Option<&str>,
        accepts: Accepts,
        state: &AppState,
    ) -> Result<Principal, GatewayError> {
        match accepts {
            Accepts::ApiKey => {
                if !state.auth_enabled {
                    return Ok(Principal::Open);
                }
                let secret = credential.ok_or_else(|| {
                    unauthorized(
                        "missing_api_key",
                        "You didn't provide an API key. Send it as 'Authorization: Bearer sk-…' or 'x-api-key'.",
                    )
                })?;
                key_from_secret(secret, state, || state.trusted_proxies.of_request(request))
                    .await
                    .map(Principal::Key)
            }
            // Boxed like the next: the user lookup's future stays out of `/v1` requests'.
            Accepts::Token => Box::pin(Self::resolve_token(credential, state)).await,
            // Boxed: inline, its larger future would size every `/v1` request's future too;
            // WebSocket and GraphQL resolve once per connection or document.
            Accepts::KeyOrToken => {
                Box::pin(Self::resolve_key_or_token(request, credential, state)).await
            }
        }
    }

    /// A dashboard token.
    async fn resolve_token(
        credential: Option<&str>,
        state: &AppState,
    ) -> Result<Principal, GatewayError> {
        let token = credential.ok_or_else(|| {
            unauthorized(
                "missing_token",
                "Send an admin token as 'Authorization: Bearer <jwt>'.",
            )
        })?;
        Self::user_of_token(token, state).await
    }

    /// A token's user as the database says now: its signature and expiry are checked locally,
    /// its user (deleted? demoted?) through the user cache, so neither outlives the change by
    /// more than `auth.user_cache_ttl_secs`.
    pub async fn user_of_token(token: &str, state: &AppState) -> Result<Principal, GatewayError> {
        let claims = state.jwt.verify(token)?;
        current_claims(claims, &state.users)
            .await
            .map(Principal::User)
    }

    async fn resolve_key_or_token(
        request: &HttpRequest,
        credential: Option<&str>,
        state: &AppState,
    ) -> Result<Principal, GatewayError> {
        let Some(credential) = credential.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(if state.auth_enabled {
                Principal::Anonymous
            } else {
                Principal::Open
            });
        };
        if credential.starts_with(KEY_PREFIX) {
            if !state.auth_enabled {
                return Ok(Principal::Open);
            }
            return key_from_secret(credential, state, || {
                state.trusted_proxies.of_request(request)
            })
            .await
            .map(Principal::Key);
        }
        if credential.matches('.').count() == 2 {
            return Self::user_of_token(credential, state).await;
        }
        Err(GatewayError::Unauthorized {
            code: "invalid_api_key",
            message: "Incorrect API key or token provided.".into(),
        })
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User(claims) if Role::parse(&claims.role) == Some(Role::Admin))
    }

    /// A short description for logs and the admin session list; never a secret.
    pub fn label(&self) -> String {
        match self {
            Principal::Key(key) => format!("key {} ({})", key.id, key.prefix),
            Principal::User(claims) => format!("user {} ({})", claims.sub, claims.role),
            Principal::Open => "open (auth disabled)".into(),
            Principal::Anonymous => "anonymous".into(),
        }
    }

    /// The API key itself, without a clone: what a `/v1` REST request is billed under.
    pub fn into_key(self) -> Option<Arc<ApiKey>> {
        match self {
            Principal::Key(key) => Some(key),
            Principal::User(_) | Principal::Open | Principal::Anonymous => None,
        }
    }

    /// The key a model request is billed and limited under. API keys use their own; an admin
    /// token (the playground, the dashboard) runs without a key and is billed with none;
    /// viewers may look but not spend.
    pub fn chat_key(&self) -> Result<Option<Arc<ApiKey>>, GatewayError> {
        match self {
            Principal::Key(key) => Ok(Some(Arc::clone(key))),
            Principal::Open => Ok(None),
            Principal::User(_) if self.is_admin() => Ok(None),
            Principal::User(_) => Err(GatewayError::AdminRequired),
            Principal::Anonymous => Err(missing_credential()),
        }
    }

    /// Any authenticated caller (or anyone while keys are off).
    pub fn require_caller(&self) -> Result<(), GatewayError> {
        match self {
            Principal::Anonymous => Err(missing_credential()),
            Principal::Key(_) | Principal::User(_) | Principal::Open => Ok(()),
        }
    }

    /// An administrator's token.
    pub fn require_admin(&self) -> Result<(), GatewayError> {
        match self {
            Principal::User(_) if self.is_admin() => Ok(()),
            Principal::Anonymous => Err(unauthorized(
                "missing_token",
                "Send an admin token as 'Authorization: Bearer <jwt>'.",
            )),
            Principal::Key(_) | Principal::User(_) | Principal::Open => {
                Err(GatewayError::AdminRequired)
            }
        }
    }
}

pub fn missing_credential() -> GatewayError {
    unauthorized(
        "missing_api_key",
        "You didn't provide an API key. Send it as 'Authorization: Bearer sk-…'.",
    )
}

fn app_state(request: &HttpRequest) -> Result<&web::Data<AppState>, GatewayError> {
    request
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| GatewayError::Internal("state missing".into()))
}

/// "Key or token" (tickets and other routes every front-end shares).
impl FromRequest for Principal {
    type Error = GatewayError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let state = app_state(&request)?;
            Principal::resolve(
                &request,
                presented_credential(&request),
                Accepts::KeyOrToken,
                state,
            )
            .await
        })
    }
}

/// An administrator's token (`/admin/*`): a [`Principal`] that passed `require_admin`, with
/// the role its user has now (not the one in the token).
pub struct Admin(pub Principal);

impl FromRequest for Admin {
    type Error = GatewayError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let state = app_state(&request)?;
            let credential = presented_credential(&request);
            let principal = Principal::resolve(&request, credential, Accepts::Token, state).await?;
            principal.require_admin()?;
            Ok(Admin(principal))
        })
    }
}
