//! Single-use, short-lived tickets for browsers, which cannot set headers on a WebSocket:
//! `POST /v1/ws/ticket` (with the key in a header) → `GET /v1/ws?ticket=…`. A ticket in a URL
//! may end up in logs, so it dies on first use or after `websocket.ticket_ttl_secs`. A ticket
//! keeps the credential, not the principal: redeeming it checks the credential again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::credential::SessionCredential;
use crate::error::GatewayError;

/// Outstanding tickets at most; beyond it (after dropping expired ones) issuing answers 503.
const CAPACITY: usize = 10_000;

pub struct TicketStore {
    tickets: Mutex<HashMap<String, (SessionCredential, Instant)>>,
    ttl: Duration,
}

impl TicketStore {
    pub fn new(ttl: Duration) -> Self {
        TicketStore {
            tickets: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(
        &self,
        credential: SessionCredential,
        now: Instant,
    ) -> Result<String, GatewayError> {
        let ticket = format!(
            "wst_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        if tickets.len() >= CAPACITY {
            tickets.retain(|_, (_, expires)| *expires > now);
            if tickets.len() >= CAPACITY {
                return Err(GatewayError::Overloaded);
            }
        }
        tickets.insert(ticket.clone(), (credential, now + self.ttl));
        Ok(ticket)
    }

    /// The ticket's credential, once; `None` when unknown, used or expired.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Option<SessionCredential> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let (credential, expires) = tickets.remove(ticket)?;
        (expires > now).then_some(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_work_once_and_expire() {
        let store = TicketStore::new(Duration::from_secs(30));
        let now = Instant::now();
        let ticket = store.issue(SessionCredential::Open, now).expect("issued");
        assert!(ticket.len() > 60);
        assert!(store.redeem(&ticket, now).is_some());
        assert!(store.redeem(&ticket, now).is_none(), "single use");
        let late = store.issue(SessionCredential::Open, now).expect("issued");
        assert!(store.redeem(&late, now + Duration::from_secs(31)).is_none());
        assert!(store.redeem("wst_guess", now).is_none());
    }
}
