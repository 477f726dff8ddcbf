//! Who is calling the WebSocket and GraphQL front-ends: an API key, a dashboard user (JWT), or
//! nobody. Both front-ends accept either credential, unlike REST where `/v1` takes keys and
//! `/admin` takes tokens, so the distinction is made here once.

use std::sync::Arc;

use actors::keys::ApiKey;
use actors::store::keys::KEY_PREFIX;
use actors::store::users::Role;

use crate::auth::{key_from_secret, Claims};
use crate::error::GatewayError;
use crate::server::AppState;

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

impl Principal {
    /// Resolves a presented credential: `sk-gw-…` is an API key, anything else a JWT.
    pub async fn resolve(
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
            return key_from_secret(credential, &state.keys)
                .await
                .map(Principal::Key);
        }
        if credential.matches('.').count() == 2 {
            return state.jwt.verify(credential).map(Principal::User);
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
            Principal::Anonymous => Err(GatewayError::Unauthorized {
                code: "missing_token",
                message: "Send an admin token as 'Authorization: Bearer <jwt>'.".into(),
            }),
            Principal::Key(_) | Principal::User(_) | Principal::Open => {
                Err(GatewayError::AdminRequired)
            }
        }
    }
}

pub fn missing_credential() -> GatewayError {
    GatewayError::Unauthorized {
        code: "missing_api_key",
        message: "You didn't provide an API key. Send it as 'Authorization: Bearer sk-…'.".into(),
    }
}
