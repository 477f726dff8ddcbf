//! How many WebSocket sessions are open, in total and per API key or user. The upgrade takes a
//! [`SessionSlot`] (429 over either cap) that the session holds until its actor is dropped, so
//! no key can take every socket the gateway is willing to hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::GatewayError;
use crate::principal::Principal;

/// Whose sessions and tickets are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(i64),
    User(String),
}

impl Subject {
    /// The API key or user behind a principal; `None` while API keys are off (only the totals
    /// apply then, since there is nobody to tell apart).
    pub fn of(principal: &Principal) -> Option<Subject> {
        match principal {
            Principal::Key(key) => Some(Subject::Key(key.id)),
            Principal::User(claims) => Some(Subject::User(claims.sub.clone())),
            Principal::Open | Principal::Anonymous => None,
        }
    }
}

/// What a refused upgrade's `retry-after` says: sessions end when their clients close them,
/// which nothing predicts.
const SESSION_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counts {
    total: usize,
    per_subject: HashMap<Subject, usize>,
}

/// Open sessions; a lock is held for one count change, never across an await.
pub struct SessionSlots {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_subject: usize,
}

/// One open session's place in [`SessionSlots`], given back when dropped.
pub struct SessionSlot {
    slots: Arc<SessionSlots>,
    subject: Option<Subject>,
}

impl SessionSlots {
    pub fn new(max_total: usize, max_per_subject: usize) -> Arc<SessionSlots> {
        Arc::new(SessionSlots {
            counts: Mutex::new(Counts::default()),
            max_total,
            max_per_subject,
        })
    }

    fn refusal(&self, counts: &Counts, subject: Option<&Subject>) -> Option<GatewayError> {
        let own = subject.and_then(|s| counts.per_subject.get(s)).copied();
        if own.is_some_and(|open| open >= self.max_per_subject) {
            return Some(GatewayError::CapReached {
                code: "too_many_websocket_sessions",
                message: format!(
                    "This credential already has {} WebSocket sessions open, the most it may; close one first.",
                    self.max_per_subject
                ),
                retry_after: SESSION_RETRY_AFTER,
            });
        }
        (counts.total >= self.max_total).then(|| GatewayError::CapReached {
            code: "websocket_sessions_full",
            message: format!(
                "The gateway holds its maximum of {} WebSocket sessions; retry shortly.",
                self.max_total
            ),
            retry_after: SESSION_RETRY_AFTER,
        })
    }

    /// Whether [`acquire`](Self::acquire) would succeed now (a ticket for a session that
    /// would be refused is refused itself).
    pub fn check(&self, subject: Option<&Subject>) -> Result<(), GatewayError> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        self.refusal(&counts, subject).map_or(Ok(()), Err)
    }

    /// A place for one more session of `subject`, or 429.
    pub fn acquire(
        self: &Arc<Self>,
        subject: Option<Subject>,
    ) -> Result<SessionSlot, GatewayError> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(refused) = self.refusal(&counts, subject.as_ref()) {
            return Err(refused);
        }
        counts.total += 1;
        if let Some(subject) = &subject {
            *counts.per_subject.entry(subject.clone()).or_insert(0) += 1;
        }
        Ok(SessionSlot {
            slots: Arc::clone(self),
            subject,
        })
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(subject) = &self.subject {
            if let Some(open) = counts.per_subject.get_mut(subject) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    // Subjects with no session are forgotten: memory follows open sessions.
                    counts.per_subject.remove(subject);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subject_has_its_cap_and_all_share_the_total() {
        let slots = SessionSlots::new(3, 2);
        let (a, b) = (Subject::Key(1), Subject::User("ada".into()));
        let first = slots.acquire(Some(a.clone())).expect("a 1");
        let _second = slots.acquire(Some(a.clone())).expect("a 2");
        let refused = slots.acquire(Some(a.clone())).err().expect("a 3 refused");
        assert_eq!(refused.code(), "too_many_websocket_sessions");
        assert!(slots.check(Some(&a)).is_err());
        // Another subject is not affected by a's cap...
        assert!(slots.check(Some(&b)).is_ok());
        let _third = slots.acquire(Some(b.clone())).expect("b 1");
        // ...but the total is shared, keyless sessions included.
        let full = slots.acquire(Some(b.clone())).err().expect("total reached");
        assert_eq!(full.code(), "websocket_sessions_full");
        assert!(slots.acquire(None).is_err());
        // A closed session gives its place back.
        drop(first);
        assert_eq!(slots.open(), 2);
        let _again = slots.acquire(Some(a)).expect("a again");
        assert!(slots.acquire(None).is_err());
    }
}
