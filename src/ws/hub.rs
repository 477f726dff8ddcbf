//! The hub knows every live WebSocket session: the `gateway_websocket_sessions` gauge, the
//! admin list (`GET /admin/ws`) and closing them all at shutdown. Sessions register and
//! unregister with `try_send` into a large bounded mailbox; an unregistration lost to a full
//! mailbox is caught by the periodic sweep of disconnected sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, MessageResult, Recipient};
use actix_ws::CloseCode;
use actors::store::now_millis;
use prometheus::IntGauge;
use serde::Serialize;

/// Asks a session to close (graceful shutdown, admin action).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSession {
    pub code: CloseCode,
    pub reason: &'static str,
}

const MAILBOX: usize = 4096;
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Entry {
    closer: Recipient<CloseSession>,
    principal: String,
    opened_at: i64,
    active: Arc<AtomicUsize>,
}

/// A live session as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub id: u64,
    pub principal: String,
    /// Unix milliseconds.
    pub opened_at: i64,
    pub active_requests: usize,
}

pub struct WsHub {
    sessions: HashMap<u64, Entry>,
    gauge: IntGauge,
}

impl WsHub {
    fn publish(&self) {
        self.gauge
            .set(i64::try_from(self.sessions.len()).unwrap_or(i64::MAX));
    }
}

impl Actor for WsHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        ctx.run_interval(SWEEP_INTERVAL, |hub, _| {
            hub.sessions.retain(|_, entry| entry.closer.connected());
            hub.publish();
        });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Register {
    id: u64,
    entry: Entry,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Unregister(u64);

#[derive(Message)]
#[rtype(result = "Vec<SessionInfo>")]
struct List;

#[derive(Message)]
#[rtype(result = "usize")]
struct CloseAll;

impl Handler<Register> for WsHub {
    type Result = ();
    fn handle(&mut self, message: Register, _: &mut Context<Self>) {
        self.sessions.insert(message.id, message.entry);
        self.publish();
    }
}

impl Handler<Unregister> for WsHub {
    type Result = ();
    fn handle(&mut self, message: Unregister, _: &mut Context<Self>) {
        self.sessions.remove(&message.0);
        self.publish();
    }
}

impl Handler<List> for WsHub {
    type Result = MessageResult<List>;
    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        self.sessions.retain(|_, entry| entry.closer.connected());
        self.publish();
        let mut list: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(id, entry)| SessionInfo {
                id: *id,
                principal: entry.principal.clone(),
                opened_at: entry.opened_at,
                active_requests: entry.active.load(Ordering::Relaxed),
            })
            .collect();
        list.sort_by_key(|s| s.id);
        MessageResult(list)
    }
}

impl Handler<CloseAll> for WsHub {
    type Result = usize;
    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> usize {
        let mut asked = 0;
        for entry in self.sessions.values() {
            let close = CloseSession {
                code: CloseCode::Away,
                reason: "the gateway is shutting down",
            };
            if entry.closer.try_send(close).is_ok() {
                asked += 1;
            }
        }
        asked
    }
}

/// What sessions, handlers and shutdown hold.
#[derive(Clone)]
pub struct WsHubHandle {
    addr: Addr<WsHub>,
    next_id: Arc<AtomicU64>,
}

impl WsHubHandle {
    /// Starts the hub on the current arbiter and registers its gauge.
    pub fn start(registry: &prometheus::Registry) -> Result<WsHubHandle, prometheus::Error> {
        let gauge = IntGauge::new(
            "gateway_websocket_sessions",
            "Open WebSocket sessions on /v1/ws.",
        )?;
        registry.register(Box::new(gauge.clone()))?;
        let addr = WsHub {
            sessions: HashMap::new(),
            gauge,
        }
        .start();
        Ok(WsHubHandle {
            addr,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// False when the hub's mailbox is full (thousands of sockets opening at once).
    pub(super) fn register(
        &self,
        id: u64,
        closer: Recipient<CloseSession>,
        principal: String,
        active: Arc<AtomicUsize>,
    ) -> bool {
        let entry = Entry {
            closer,
            principal,
            opened_at: now_millis(),
            active,
        };
        self.addr.try_send(Register { id, entry }).is_ok()
    }

    pub(super) fn unregister(&self, id: u64) {
        // A full mailbox loses this message; the sweep removes the stopped session instead.
        let _ = self.addr.try_send(Unregister(id));
    }

    pub async fn sessions(&self) -> Vec<SessionInfo> {
        self.addr.send(List).await.unwrap_or_default()
    }

    /// Sends every session a 1001 close frame; returns how many were asked.
    pub async fn close_all(&self) -> usize {
        self.addr.send(CloseAll).await.unwrap_or(0)
    }
}
