//! What an open session checks again: its credential, through the caches REST uses
//! (`KeyCache` for keys, `UserCache` for tokens' users), so no socket outlives the key or user
//! it was opened with. A session re-checks at every `chat.request` (the request then runs
//! under the key as it is now: limits, allow-list, budget) and every
//! `websocket.credential_check_interval_ms`, and exactly when its token or key expires.

use std::time::Duration;

use actors::keys::KeyLookup;
use actors::store::keys::hash_key;
use actors::store::now_millis;

use crate::auth::{current_claims, unauthorized, Claims};
use crate::error::GatewayError;
use crate::principal::Principal;
use crate::state::AppState;

/// The close code of a session whose credential no longer holds (revoked, expired, deleted).
pub const CREDENTIAL_ENDED: u16 = 4001;
/// The close code of a session that reached `websocket.max_session_lifetime_ms`.
pub const LIFETIME_REACHED: u16 = 4000;

/// How a session proves, again and again, who it is.
#[derive(Clone)]
pub enum SessionCredential {
    /// An API key, by the hash of its secret: the key cache's own key (the secret is not kept).
    Key { hash: String },
    /// A dashboard token, by its verified claims.
    Token(Claims),
    /// No credential while API keys are off.
    Open,
}

/// Why a re-check did not give a principal.
pub enum Refusal {
    /// The credential is gone: the session ends with [`CREDENTIAL_ENDED`] and `reason`.
    Ended {
        error: GatewayError,
        reason: &'static str,
    },
    /// The check itself failed (the database is down and nothing is cached): the request is
    /// refused, the session stays.
    Failed(GatewayError),
}

impl Refusal {
    pub fn into_error(self) -> GatewayError {
        match self {
            Refusal::Ended { error, .. } | Refusal::Failed(error) => error,
        }
    }
}

fn ended(code: &'static str, message: &str, reason: &'static str) -> Refusal {
    Refusal::Ended {
        error: unauthorized(code, message),
        reason,
    }
}

impl SessionCredential {
    /// The credential a principal was resolved from (`presented`: the secret or token as the
    /// client sent it).
    pub fn of(principal: &Principal, presented: Option<&str>) -> SessionCredential {
        match principal {
            Principal::Key(_) => SessionCredential::Key {
                hash: hash_key(presented.unwrap_or_default().trim()),
            },
            Principal::User(claims) => SessionCredential::Token(claims.clone()),
            Principal::Open | Principal::Anonymous => SessionCredential::Open,
        }
    }

    /// The principal as it stands now, or why there is none.
    pub async fn recheck(&self, state: &AppState) -> Result<Principal, Refusal> {
        match self {
            SessionCredential::Key { hash } => match state.keys.lookup_hash(hash).await {
                Ok(KeyLookup::Valid(key)) => Ok(Principal::Key(key)),
                Ok(KeyLookup::Revoked) => Err(ended(
                    "revoked_api_key",
                    "This API key has been revoked.",
                    "the API key was revoked",
                )),
                Ok(KeyLookup::Expired) => Err(ended(
                    "expired_api_key",
                    "This API key has expired.",
                    "the API key expired",
                )),
                Ok(KeyLookup::Unknown) => Err(ended(
                    "invalid_api_key",
                    "This API key no longer exists.",
                    "the API key no longer exists",
                )),
                Err(error) => Err(Refusal::Failed(GatewayError::StoreUnavailable(
                    error.to_string(),
                ))),
            },
            SessionCredential::Token(claims) => {
                if claims.exp <= jsonwebtoken::get_current_timestamp() {
                    return Err(ended(
                        "invalid_token",
                        "The token has expired.",
                        "the token expired",
                    ));
                }
                match current_claims(claims.clone(), &state.users).await {
                    Ok(claims) => Ok(Principal::User(claims)),
                    Err(error @ GatewayError::StoreUnavailable(_)) => Err(Refusal::Failed(error)),
                    Err(error) => Err(Refusal::Ended {
                        error,
                        reason: "the token's user no longer exists",
                    }),
                }
            }
            SessionCredential::Open => Ok(Principal::Open),
        }
    }
}

/// How long until the principal's credential expires (a token's `exp`, a key's `expires_at`);
/// `None` when it never does.
pub fn until_expiry(principal: &Principal) -> Option<Duration> {
    let expires_ms = match principal {
        Principal::Key(key) => key.expires_at?,
        Principal::User(claims) => i64::try_from(claims.exp).ok()?.saturating_mul(1000),
        Principal::Open | Principal::Anonymous => return None,
    };
    let left = expires_ms.saturating_sub(now_millis()).max(0);
    Some(Duration::from_millis(u64::try_from(left).unwrap_or(0)))
}
