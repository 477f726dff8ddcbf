//! `AppState`: the read-only state every worker shares, in a module of its own so that the
//! handlers, authentication, WebSocket and GraphQL read it without importing the server that
//! builds it.

use std::sync::Arc;

use actors::keys::KeyCache;
use actors::store::Store;
use actors::users::UserCache;

use crate::auth::guard::AuthGuard;
use crate::auth::JwtKeys;
use crate::client_ip::TrustedProxies;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// Read-only state every worker shares.
pub struct AppState {
    pub pipeline: Pipeline,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// `server.request_body_timeout_secs`, for the handlers that time their own body reads.
    pub request_body_timeout: std::time::Duration,
    pub discovery_enabled: bool,
    pub store: Store,
    pub keys: KeyCache,
    pub auth_enabled: bool,
    pub jwt: JwtKeys,
    /// Token users' current roles (deletion and demotion take effect within its TTL).
    pub users: UserCache,
    /// Failed-authentication and login throttles.
    pub guard: AuthGuard,
    /// Whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
}
