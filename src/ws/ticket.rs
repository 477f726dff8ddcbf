//! Single-use, short-lived tickets for browsers, which cannot set headers on a WebSocket:
//! `POST /v1/ws/ticket` (with the key in a header) → `GET /v1/ws?ticket=…`. A ticket in a URL
//! may end up in logs, so it dies on first use or after `websocket.ticket_ttl_secs`.
//!
//! Tickets are capped per API key or user (`max_tickets_per_key` unredeemed, and
//! `tickets_per_minute` issued, GCRA with bursts of as many) and in total (`max_tickets`), each
//! a 429 with `retry-after`, so one key filling its share never stops another. A refusal
//! charges nothing. A ticket keeps the credential, not the principal: redeeming it checks the
//! credential again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actors::limits::gcra::Gcra;

use super::caps::Subject;
use super::credential::SessionCredential;
use crate::error::GatewayError;

/// The caps, from `[websocket]`.
#[derive(Debug, Clone, Copy)]
pub struct TicketLimits {
    pub ttl: Duration,
    pub max_total: usize,
    pub max_per_subject: usize,
    pub per_minute: u64,
}

struct Issued {
    credential: SessionCredential,
    subject: Option<Subject>,
    expires: Instant,
}

/// One key's or user's tickets: the unredeemed ones (at most `max_per_subject`) and its rate
/// bucket's theoretical arrival time, in nanoseconds since the store's epoch.
#[derive(Default)]
struct SubjectTickets {
    outstanding: Vec<(String, Instant)>,
    tat: i64,
}

impl SubjectTickets {
    /// Neither a ticket nor a rate to remember.
    fn idle(&self, now_ticks: i64) -> bool {
        self.outstanding.is_empty() && self.tat <= now_ticks
    }
}

#[derive(Default)]
struct Tickets {
    by_ticket: HashMap<String, Issued>,
    by_subject: HashMap<Subject, SubjectTickets>,
}

pub struct TicketStore {
    tickets: Mutex<Tickets>,
    limits: TicketLimits,
    rate: Option<Gcra>,
    epoch: Instant,
}

impl TicketStore {
    pub fn new(limits: TicketLimits) -> Self {
        TicketStore {
            tickets: Mutex::new(Tickets::default()),
            limits,
            rate: Gcra::per_minute(limits.per_minute, limits.per_minute, 1_000_000_000),
            epoch: Instant::now(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.limits.ttl
    }

    fn ticks(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(i64::MAX)
    }

    /// A new ticket for `credential`, counted against `subject` (`None`: only the total).
    pub fn issue(
        &self,
        credential: SessionCredential,
        subject: Option<Subject>,
        now: Instant,
    ) -> Result<String, GatewayError> {
        let ticks = self.ticks(now);
        let mut guard = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let tickets = &mut *guard;
        let new_tat = match &subject {
            Some(subject) => Some(self.admit_subject(tickets, subject, now, ticks)?),
            None => None,
        };
        if tickets.by_ticket.len() >= self.limits.max_total
            || tickets.by_subject.len() >= self.limits.max_total
        {
            sweep(tickets, now, ticks);
            if tickets.by_ticket.len() >= self.limits.max_total
                || tickets.by_subject.len() >= self.limits.max_total
            {
                return Err(GatewayError::CapReached {
                    code: "websocket_tickets_full",
                    message: format!(
                        "The gateway holds its maximum of {} unused WebSocket tickets; retry shortly.",
                        self.limits.max_total
                    ),
                    retry_after: self.limits.ttl,
                });
            }
        }
        let ticket = format!(
            "wst_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expires = now + self.limits.ttl;
        if let (Some(subject), Some(tat)) = (&subject, new_tat) {
            let own = tickets.by_subject.entry(subject.clone()).or_default();
            own.tat = tat;
            own.outstanding.push((ticket.clone(), expires));
        }
        let issued = Issued {
            credential,
            subject,
            expires,
        };
        tickets.by_ticket.insert(ticket.clone(), issued);
        Ok(ticket)
    }

    /// The subject's own caps: drops its expired tickets, then refuses when it holds its
    /// maximum or issues too fast. Returns the rate bucket's state to store once issued.
    fn admit_subject(
        &self,
        tickets: &mut Tickets,
        subject: &Subject,
        now: Instant,
        ticks: i64,
    ) -> Result<i64, GatewayError> {
        let Tickets {
            by_ticket,
            by_subject,
        } = tickets;
        let own = by_subject.entry(subject.clone()).or_default();
        own.outstanding.retain(|(ticket, expires)| {
            let live = *expires > now;
            if !live {
                by_ticket.remove(ticket);
            }
            live
        });
        if own.outstanding.len() >= self.limits.max_per_subject {
            let oldest = own.outstanding.iter().map(|(_, at)| *at).min();
            return Err(GatewayError::CapReached {
                code: "too_many_tickets",
                message: format!(
                    "This credential already holds {} unused WebSocket tickets, the most it may; use or let one expire first.",
                    self.limits.max_per_subject
                ),
                retry_after: oldest.map_or(self.limits.ttl, |at| at - now),
            });
        }
        let Some(rate) = self.rate else {
            return Ok(own.tat);
        };
        let decision = rate.check(own.tat, ticks, 1);
        if !decision.allowed {
            return Err(GatewayError::CapReached {
                code: "rate_limit_exceeded",
                message: format!(
                    "Too many WebSocket tickets: at most {} per minute for this credential.",
                    self.limits.per_minute
                ),
                retry_after: Duration::from_nanos(u64::try_from(decision.retry_after).unwrap_or(0)),
            });
        }
        Ok(decision.new_tat)
    }

    /// The ticket's credential, once; `None` when unknown, used or expired.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Option<SessionCredential> {
        let ticks = self.ticks(now);
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let issued = tickets.by_ticket.remove(ticket)?;
        if let Some(subject) = &issued.subject {
            if let Some(own) = tickets.by_subject.get_mut(subject) {
                own.outstanding.retain(|(held, _)| held != ticket);
                if own.idle(ticks) {
                    tickets.by_subject.remove(subject);
                }
            }
        }
        (issued.expires > now).then_some(issued.credential)
    }
}

/// Forgets every expired ticket and every subject with nothing left to remember.
fn sweep(tickets: &mut Tickets, now: Instant, ticks: i64) {
    tickets.by_ticket.retain(|_, issued| issued.expires > now);
    tickets.by_subject.retain(|_, own| {
        own.outstanding.retain(|(_, expires)| *expires > now);
        !own.idle(ticks)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_total: usize, max_per_subject: usize, per_minute: u64) -> TicketStore {
        TicketStore::new(TicketLimits {
            ttl: Duration::from_secs(30),
            max_total,
            max_per_subject,
            per_minute,
        })
    }

    fn code(result: Result<String, GatewayError>) -> &'static str {
        result.err().map_or("issued", |error| error.code())
    }

    #[test]
    fn tickets_work_once_and_expire() {
        let store = store(100, 10, 60);
        let now = Instant::now();
        let ticket = store
            .issue(SessionCredential::Open, None, now)
            .expect("issued");
        assert!(ticket.len() > 60);
        assert!(store.redeem(&ticket, now).is_some());
        assert!(store.redeem(&ticket, now).is_none(), "single use");
        let late = store
            .issue(SessionCredential::Open, None, now)
            .expect("issued");
        assert!(store.redeem(&late, now + Duration::from_secs(31)).is_none());
        assert!(store.redeem("wst_guess", now).is_none());
    }

    #[test]
    fn one_subject_filling_its_share_never_stops_another() {
        let store = store(100, 2, 1000);
        let now = Instant::now();
        let (a, b) = (Some(Subject::Key(1)), Some(Subject::Key(2)));
        let issue = |subject: &Option<Subject>, at| {
            store.issue(SessionCredential::Open, subject.clone(), at)
        };
        let first = issue(&a, now).expect("a 1");
        issue(&a, now).expect("a 2");
        let refused = issue(&a, now).expect_err("a 3 refused");
        assert_eq!(refused.code(), "too_many_tickets");
        assert_eq!(refused.status().as_u16(), 429);
        assert!(
            matches!(refused, GatewayError::CapReached { retry_after, .. }
            if retry_after == Duration::from_secs(30))
        );
        assert_eq!(
            code(issue(&b, now)),
            "issued",
            "another key is not affected"
        );
        // Redeeming or expiry gives a place back.
        assert!(store.redeem(&first, now).is_some());
        assert_eq!(code(issue(&a, now)), "issued");
        assert_eq!(code(issue(&a, now)), "too_many_tickets");
        let later = now + Duration::from_secs(31);
        assert_eq!(code(issue(&a, later)), "issued");
    }

    #[test]
    fn issuing_is_rate_limited_per_subject_and_refusals_charge_nothing() {
        let store = store(100, 100, 3);
        let now = Instant::now();
        let a = Some(Subject::User("ada".into()));
        for _ in 0..3 {
            let ticket = store
                .issue(SessionCredential::Open, a.clone(), now)
                .expect("within the burst");
            assert!(store.redeem(&ticket, now).is_some());
        }
        let refused = store
            .issue(SessionCredential::Open, a.clone(), now)
            .expect_err("over the rate");
        assert_eq!(refused.code(), "rate_limit_exceeded");
        assert!(
            matches!(refused, GatewayError::CapReached { retry_after, .. }
            if retry_after == Duration::from_secs(20))
        );
        assert_eq!(
            code(store.issue(SessionCredential::Open, Some(Subject::Key(9)), now)),
            "issued"
        );
        // One ticket's worth comes back after 20 s (3 a minute); the refusals cost nothing.
        let later = now + Duration::from_secs(20);
        assert_eq!(
            code(store.issue(SessionCredential::Open, a.clone(), later)),
            "issued"
        );
        assert_eq!(
            code(store.issue(SessionCredential::Open, a, later)),
            "rate_limit_exceeded"
        );
    }

    #[test]
    fn the_total_is_bounded_and_expired_tickets_make_room() {
        let store = store(3, 2, 1000);
        let now = Instant::now();
        for id in 0..3 {
            store
                .issue(SessionCredential::Open, Some(Subject::Key(id)), now)
                .expect("room");
        }
        assert_eq!(
            code(store.issue(SessionCredential::Open, Some(Subject::Key(7)), now)),
            "websocket_tickets_full"
        );
        assert_eq!(
            code(store.issue(SessionCredential::Open, None, now)),
            "websocket_tickets_full"
        );
        let later = now + Duration::from_secs(31);
        assert_eq!(
            code(store.issue(SessionCredential::Open, Some(Subject::Key(7)), later)),
            "issued"
        );
        let held = store.tickets.lock().expect("lock");
        assert_eq!(held.by_ticket.len(), 1, "expired tickets were dropped");
        assert_eq!(
            held.by_subject.len(),
            1,
            "and the subjects with nothing left"
        );
    }
}
