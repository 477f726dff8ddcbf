//! One WebSocket connection as an actor: it reads frames, starts and cancels chat requests,
//! keeps the heartbeat, and is registered with the [`super::hub::WsHub`].
//!
//! Everything the session writes goes through one bounded queue (`websocket.outbound_queue`)
//! drained by a writer future. Streams wait for room in it (pausing their upstream); replies to
//! control messages never wait: when the queue is full the client is not reading, and the
//! socket is closed with 1008 instead of buffering more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, SpawnHandle,
    StreamHandler, WrapFuture,
};
use actix_web::web;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::chat::{self, ChatRequest};
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
    pub(super) principal: Principal,
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
        if self.closing {
            return;
        }
        self.closing = true;
        self.cancel_all(ctx);
        let session = self.session.clone();
        let reason = CloseReason {
            code,
            description: Some(reason.to_string()),
        };
        ctx.wait(
            async move {
                let _ = tokio::time::timeout(CLOSE_GRACE, session.close(Some(reason))).await;
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        );
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
        let key = match self.principal.chat_key() {
            Ok(key) => key,
            Err(error) => {
                self.reply(ctx, protocol::error(Some(&id), &error));
                return;
            }
        };
        let request = ChatRequest {
            id: id.clone(),
            body,
            key,
        };
        let finished = id.clone();
        let handle = ctx.spawn(
            chat::run(
                request,
                self.state.clone(),
                self.clients.clone(),
                self.out.clone(),
            )
            .into_actor(self)
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
