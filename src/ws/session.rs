//! One WebSocket connection as an actor: it reads frames, starts and cancels chat requests,
//! keeps the heartbeat, and is registered with the [`super::hub::WsHub`].
//!
//! Its credential is checked again ([`super::credential`]) before every chat request, every
//! `websocket.credential_check_interval_ms` and when it expires; a credential that is gone
//! closes the socket with 4001, and `websocket.max_session_lifetime_ms` closes it with 4000.
//!
//! Everything the session writes goes through one bounded queue (`websocket.outbound_queue`)
//! drained by a writer future. Streams wait for room in it (pausing their upstream); replies to
//! control messages never wait: when the queue is full the client is not reading, and the
//! socket is closed with 1008 instead of buffering more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::{self, LocalBoxActorFuture};
use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, SpawnHandle,
    StreamHandler, WrapFuture,
};
use actix_web::web;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::caps::SessionSlot;
use super::chat::{self, ChatRequest};
use super::credential::{self, Refusal, SessionCredential, CREDENTIAL_ENDED, LIFETIME_REACHED};
use super::hub::{CloseSession, WsHubHandle};
use super::protocol::{self, ClientMessage, MessageId, Outbound};
use crate::config::WebSocketConfig;
use crate::error::GatewayError;
use crate::principal::Principal;
use crate::state::AppState;
use crate::upstream::UpstreamClients;

/// How long a close frame may wait for a client that does not read.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub struct WsSession {
    pub(super) id: u64,
    /// Who the socket acts for, as of the last credential check.
    pub(super) principal: Principal,
    pub(super) credential: SessionCredential,
    /// This session's place under the session caps, given back when the actor is dropped.
    pub(super) _slot: SessionSlot,
    pub(super) state: web::Data<AppState>,
    pub(super) clients: web::Data<UpstreamClients>,
    pub(super) settings: WebSocketConfig,
    pub(super) session: actix_ws::Session,
    pub(super) out: mpsc::Sender<Outbound>,
    pub(super) out_rx: Option<mpsc::Receiver<Outbound>>,
    pub(super) hub: WsHubHandle,
    pub(super) active: HashMap<MessageId, SpawnHandle>,
    pub(super) active_count: Arc<AtomicUsize>,
    pub(super) last_heard: Instant,
    pub(super) closing: bool,
    /// A periodic credential check is running (a slow database never stacks them).
    pub(super) rechecking: bool,
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(rx) = self.out_rx.take() {
            let session = self.session.clone();
            ctx.spawn(
                write_messages(rx, session)
                    .into_actor(self)
                    .map(|(), act, ctx| {
                        // The client is gone: nothing more can be delivered.
                        if !act.closing {
                            act.cancel_all(ctx);
                            ctx.stop();
                        }
                    }),
            );
        }
        ctx.run_interval(self.settings.ping_interval, |act, ctx| act.heartbeat(ctx));
        ctx.run_later(self.settings.max_session_lifetime, |act, ctx| {
            let code = CloseCode::Other(LIFETIME_REACHED);
            act.close(ctx, code, "session lifetime reached; reconnect");
        });
        self.watch_expiry(ctx);
        ctx.run_interval(self.settings.credential_check_interval, |act, ctx| {
            act.recheck(ctx, false);
            act.watch_expiry(ctx);
        });
        let registered = self.hub.register(
            self.id,
            ctx.address().recipient(),
            self.principal.label(),
            Arc::clone(&self.active_count),
        );
        if !registered {
            self.close(ctx, CloseCode::Again, "the gateway is busy; retry shortly");
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.hub.unregister(self.id);
    }
}

async fn write_messages(mut rx: mpsc::Receiver<Outbound>, mut session: actix_ws::Session) {
    while let Some(message) = rx.recv().await {
        let sent = match message {
            Outbound::Text(text) => session.text(text).await,
            Outbound::Ping => session.ping(b"").await,
            Outbound::Pong(bytes) => session.pong(&bytes).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

impl WsSession {
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.last_heard.elapsed() >= self.settings.idle_timeout {
            tracing::debug!(session = self.id, "websocket idle timeout");
            self.close(ctx, CloseCode::Normal, "idle timeout");
            return;
        }
        // A full queue already means the client is not reading; the idle timeout decides.
        let _ = self.out.try_send(Outbound::Ping);
    }

    /// Queues a reply without waiting; a client that lets the queue fill is disconnected.
    fn reply(&mut self, ctx: &mut Context<Self>, text: String) {
        if self.out.try_send(Outbound::Text(text)).is_err() {
            self.close(
                ctx,
                CloseCode::Policy,
                "outbound queue full: the client is not reading",
            );
        }
    }

    fn cancel_all(&mut self, ctx: &mut Context<Self>) {
        for (_, handle) in self.active.drain() {
            ctx.cancel_future(handle);
        }
        self.active_count.store(0, Ordering::Relaxed);
    }

    /// Cancels every request (each is billed for what it delivered), sends a close frame and
    /// stops.
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &'static str) {
        self.close_with(ctx, code, reason, None);
    }

    /// [`close`](Self::close), with a last message sent just before the close frame.
    fn close_with(
        &mut self,
        ctx: &mut Context<Self>,
        code: CloseCode,
        reason: &'static str,
        last: Option<String>,
    ) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.cancel_all(ctx);
        let mut session = self.session.clone();
        let reason = CloseReason {
            code,
            description: Some(reason.to_string()),
        };
        let farewell = async move {
            if let Some(text) = last {
                let _ = session.text(text).await;
            }
            let _ = session.close(Some(reason)).await;
        };
        ctx.wait(
            async move {
                let _ = tokio::time::timeout(CLOSE_GRACE, farewell).await;
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        );
    }

    /// The credential is gone: an `error` message (for the request that found out, if one
    /// did), then close with 4001 and the reason.
    fn end_for_credential(
        &mut self,
        ctx: &mut Context<Self>,
        id: Option<&MessageId>,
        error: &GatewayError,
        reason: &'static str,
    ) {
        tracing::debug!(session = self.id, reason, "websocket credential ended");
        let last = protocol::error(id, error);
        let code = CloseCode::Other(CREDENTIAL_ENDED);
        self.close_with(ctx, code, reason, Some(last));
    }

    /// Checks the credential again (`forced`: even while a periodic check still runs, at the
    /// moment of expiry).
    fn recheck(&mut self, ctx: &mut Context<Self>, forced: bool) {
        if self.closing || (self.rechecking && !forced) {
            return;
        }
        self.rechecking = true;
        let credential = self.credential.clone();
        let state = self.state.clone();
        let check = async move { credential.recheck(&state).await };
        ctx.spawn(check.into_actor(self).map(|checked, act, ctx| {
            act.rechecking = false;
            match checked {
                Ok(principal) => act.principal = principal,
                Err(Refusal::Ended { error, reason }) => {
                    act.end_for_credential(ctx, None, &error, reason);
                }
                // The database is down with nothing cached: no sign the credential is gone.
                Err(Refusal::Failed(error)) => {
                    tracing::debug!(session = act.id, %error, "websocket credential check failed");
                }
            }
        }));
    }

    /// When the credential expires before the next periodic check, checks it at that moment.
    fn watch_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(left) = credential::until_expiry(&self.principal) {
            if left < self.settings.credential_check_interval {
                ctx.run_later(left, |act, ctx| act.recheck(ctx, true));
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        match protocol::parse(text) {
            Err(rejected) => {
                let message = protocol::error(rejected.id.as_ref(), &rejected.error);
                self.reply(ctx, message);
            }
            Ok(ClientMessage::Cancel { id }) => match self.active.remove(&id) {
                Some(handle) => {
                    // Dropping the request's future drops its stream: the upstream connection
                    // closes and the request is billed for what was delivered.
                    ctx.cancel_future(handle);
                    self.active_count
                        .store(self.active.len(), Ordering::Relaxed);
                    self.reply(ctx, protocol::cancelled(&id));
                }
                None => {
                    let error = GatewayError::ResourceNotFound(
                        "No request with this id is running on this connection.".into(),
                    );
                    self.reply(ctx, protocol::error(Some(&id), &error));
                }
            },
            Ok(ClientMessage::Chat { id, body }) => self.start_chat(id, body, ctx),
        }
    }

    fn start_chat(&mut self, id: MessageId, body: Bytes, ctx: &mut Context<Self>) {
        let refused = if self.active.contains_key(&id) {
            Some(GatewayError::InvalidParameter {
                param: "id",
                message: "a request with this id is already running".into(),
            })
        } else if self.active.len() >= self.settings.max_concurrent_requests {
            Some(GatewayError::TooManyConcurrentRequests {
                limit: self.settings.max_concurrent_requests,
            })
        } else {
            None
        };
        if let Some(error) = refused {
            self.reply(ctx, protocol::error(Some(&id), &error));
            return;
        }
        // First the credential, as it is now (a cache lookup, like a REST request's); then the
        // request, under the key's current limits and allow-list.
        let credential = self.credential.clone();
        let state = self.state.clone();
        let check = async move { credential.recheck(&state).await };
        let (running, finished) = (id.clone(), id.clone());
        let handle = ctx.spawn(
            check
                .into_actor(self)
                .then(move |checked, act, ctx| act.run_checked(running, body, checked, ctx))
                .map(move |(), act, _| {
                    act.active.remove(&finished);
                    act.active_count.store(act.active.len(), Ordering::Relaxed);
                }),
        );
        self.active.insert(id, handle);
        self.active_count
            .store(self.active.len(), Ordering::Relaxed);
    }
}

impl WsSession {
    /// A chat request once its credential was checked again: run it, or answer why not (and
    /// close the socket when the credential is gone).
    fn run_checked(
        &mut self,
        id: MessageId,
        body: Bytes,
        checked: Result<Principal, Refusal>,
        ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, ()> {
        match checked {
            Ok(principal) => self.principal = principal,
            Err(Refusal::Failed(error)) => {
                self.reply(ctx, protocol::error(Some(&id), &error));
                return fut::ready(()).boxed_local();
            }
            Err(Refusal::Ended { error, reason }) => {
                // This request is the one running: it ends here rather than being cancelled.
                self.active.remove(&id);
                self.end_for_credential(ctx, Some(&id), &error, reason);
                return fut::ready(()).boxed_local();
            }
        }
        let key = match self.principal.chat_key() {
            Ok(key) => key,
            Err(error) => {
                self.reply(ctx, protocol::error(Some(&id), &error));
                return fut::ready(()).boxed_local();
            }
        };
        let request = ChatRequest { id, body, key };
        let (state, clients, out) = (self.state.clone(), self.clients.clone(), self.out.clone());
        chat::run(request, state, clients, out)
            .into_actor(self)
            .boxed_local()
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                let error = GatewayError::InvalidParameter {
                    param: "frame",
                    message: "send JSON messages as text frames".into(),
                };
                self.reply(ctx, protocol::error(None, &error));
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = self.out.try_send(Outbound::Pong(bytes));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => self.close(ctx, CloseCode::Normal, "bye"),
            Err(ProtocolError::Overflow) => {
                self.close(ctx, CloseCode::Size, "message too large");
            }
            // The aggregator reports oversized continuations as an I/O error.
            Err(ProtocolError::Io(error)) if error.to_string().contains("maximum continuation") => {
                self.close(ctx, CloseCode::Size, "message too large");
            }
            Err(error) => {
                tracing::debug!(session = self.id, %error, "websocket protocol error");
                self.close(ctx, CloseCode::Protocol, "protocol error");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The client's side of the connection ended.
        self.cancel_all(ctx);
        ctx.stop();
    }
}

impl Handler<CloseSession> for WsSession {
    type Result = ();

    fn handle(&mut self, message: CloseSession, ctx: &mut Context<Self>) {
        self.close(ctx, message.code, message.reason);
    }
}
