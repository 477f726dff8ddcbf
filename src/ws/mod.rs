//! `GET /v1/ws`: chat streaming for browsers over WebSocket, on the same pipeline as REST.
//!
//! Authentication happens at the upgrade, from (in this order) a `?ticket=` from
//! `POST /v1/ws/ticket`, the `Authorization`/`x-api-key` header, or the subprotocol
//! `openai-insecure-api-key.<credential>`, and again while the socket lives ([`credential`]).
//! Sessions and tickets are capped per key and in total ([`caps`], [`ticket`]). The message
//! protocol is in [`protocol`].

pub mod caps;
mod chat;
pub mod credential;
pub mod hub;
pub mod protocol;
mod session;
pub mod ticket;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, AsyncContext};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;

use crate::auth::presented_credential;
use crate::config::WebSocketConfig;
use crate::error::GatewayError;
use crate::principal::{Accepts, Admin, Principal};
use crate::state::AppState;
use crate::upstream::UpstreamClients;
use caps::{SessionSlots, Subject};
use credential::SessionCredential;
pub use hub::{SessionInfo, WsHubHandle};
use session::WsSession;
use ticket::{TicketLimits, TicketStore};

/// The subprotocol the gateway answers with when the client offers it.
pub const PROTOCOL: &str = "ai-gateway.v1";
/// A subprotocol carrying a credential, for browsers (OpenAI's realtime API uses the same).
pub const AUTH_PROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// WebSocket state shared by every worker.
pub struct WsState {
    pub hub: WsHubHandle,
    pub tickets: TicketStore,
    pub sessions: Arc<SessionSlots>,
    pub config: WebSocketConfig,
}

impl WsState {
    pub fn new(hub: WsHubHandle, config: WebSocketConfig) -> Self {
        WsState {
            hub,
            tickets: TicketStore::new(TicketLimits {
                ttl: config.ticket_ttl,
                max_total: config.max_tickets,
                max_per_subject: config.max_tickets_per_key,
                per_minute: config.tickets_per_minute,
            }),
            sessions: SessionSlots::new(config.max_sessions, config.max_sessions_per_key),
            config,
        }
    }
}

fn offered_protocols(request: &HttpRequest) -> Vec<String> {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|protocol| protocol.trim().to_string())
        .filter(|protocol| !protocol.is_empty())
        .collect()
}

fn ticket_of(request: &HttpRequest) -> Option<String> {
    web::Query::<HashMap<String, String>>::from_query(request.query_string())
        .ok()
        .and_then(|query| query.get("ticket").cloned())
}

/// Who opens the socket, and the credential the session keeps checking: a ticket's (checked
/// again now, since the key may have been revoked after the ticket was issued), or the one
/// presented in a header or the subprotocol.
async fn authenticate(
    request: &HttpRequest,
    auth_protocol: Option<&str>,
    state: &AppState,
    ws: &WsState,
) -> Result<(Principal, SessionCredential), GatewayError> {
    if let Some(ticket) = ticket_of(request) {
        let credential = ws.tickets.redeem(&ticket, Instant::now()).ok_or_else(|| {
            GatewayError::Unauthorized {
                code: "invalid_ticket",
                message: "The WebSocket ticket is unknown, used or expired; get a new one from POST /v1/ws/ticket.".into(),
            }
        })?;
        let principal = credential
            .recheck(state)
            .await
            .map_err(credential::Refusal::into_error)?;
        return Ok((principal, credential));
    }
    let presented = presented_credential(request)
        .or_else(|| auth_protocol.and_then(|p| p.strip_prefix(AUTH_PROTOCOL_PREFIX)));
    let principal = Principal::resolve(request, presented, Accepts::KeyOrToken, state).await?;
    let credential = SessionCredential::of(&principal, presented);
    Ok((principal, credential))
}

/// The upgrade: authenticate, take a session slot (429 over the caps), pick the subprotocol,
/// start the session actor.
pub async fn connect(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    ws: web::Data<WsState>,
    clients: web::Data<UpstreamClients>,
) -> Result<HttpResponse, GatewayError> {
    let offered = offered_protocols(&request);
    let auth_protocol = offered
        .iter()
        .find(|p| p.starts_with(AUTH_PROTOCOL_PREFIX))
        .cloned();
    let (principal, credential) =
        authenticate(&request, auth_protocol.as_deref(), &state, &ws).await?;
    principal.require_caller()?;
    let slot = ws.sessions.acquire(Subject::of(&principal))?;
    // Answer with our protocol name when offered; otherwise echo the credential protocol,
    // since browsers fail a handshake that ignores every protocol they offered.
    let answer: Vec<&str> = if offered.iter().any(|p| p == PROTOCOL) {
        vec![PROTOCOL]
    } else {
        auth_protocol.as_deref().into_iter().collect()
    };
    let (response, session, stream) = actix_ws::handle_with_protocols(&request, payload, &answer)
        .map_err(|error| GatewayError::InvalidParameter {
        param: "upgrade",
        message: format!("not a WebSocket handshake: {error}"),
    })?;
    let config = ws.config.clone();
    let stream = stream
        .max_frame_size(config.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(config.max_message_bytes);
    let (out, out_rx) = mpsc::channel(config.outbound_queue);
    let hub = ws.hub.clone();
    let id = hub.next_id();
    tracing::debug!(session = id, principal = %principal.label(), "websocket opened");
    WsSession::create(move |ctx| {
        ctx.add_stream(stream);
        WsSession {
            id,
            principal,
            credential,
            _slot: slot,
            state,
            clients,
            settings: config,
            session,
            out,
            out_rx: Some(out_rx),
            hub,
            active: HashMap::new(),
            active_count: Arc::new(AtomicUsize::new(0)),
            last_heard: Instant::now(),
            closing: false,
            rechecking: false,
        }
    });
    Ok(response)
}

/// `POST /v1/ws/ticket`: a single-use ticket for `GET /v1/ws?ticket=…`; 429 when the key
/// holds its share of tickets, asks too often, or already has its maximum of sessions open.
pub async fn issue_ticket(
    request: HttpRequest,
    principal: Principal,
    ws: web::Data<WsState>,
) -> Result<HttpResponse, GatewayError> {
    principal.require_caller()?;
    let subject = Subject::of(&principal);
    ws.sessions.check(subject.as_ref())?;
    let credential = SessionCredential::of(&principal, presented_credential(&request));
    let ticket = ws.tickets.issue(credential, subject, Instant::now())?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "ticket": ticket,
        "expires_in": ws.tickets.ttl().as_secs(),
        "url": format!("/v1/ws?ticket={ticket}"),
    })))
}

/// `GET /admin/ws`: the live sessions.
pub async fn sessions(_: Admin, ws: web::Data<WsState>) -> Result<HttpResponse, GatewayError> {
    let sessions = ws.hub.sessions().await;
    Ok(HttpResponse::Ok().json(serde_json::json!({"object": "list", "data": sessions})))
}

/// Closes every session with 1001 when the process is asked to stop; the HTTP server drains
/// the rest. Runs for the life of the server.
pub async fn close_on_shutdown_signal(hub: WsHubHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
    }
    let closed = hub.close_all().await;
    tracing::info!(closed, "websocket sessions closed for shutdown");
}
