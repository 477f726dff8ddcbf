//! The in-process limiter: GCRA buckets in sharded maps, decided on the request's own thread
//! (no actor round trip), with idle buckets evicted so memory follows active subjects only.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::gcra::{Gcra, GcraOutcome};
use super::{Admission, Decision, LimitKind, LimitStatus};

/// Shards: enough that 2–64 worker threads rarely meet on one lock.
const SHARDS: usize = 64;

/// One subject's buckets (requests and tokens share a subject and a lock, so one admission
/// decides both at once). `i64::MIN` is a bucket never used.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    requests: i64,
    tokens: i64,
}

impl Buckets {
    fn idle(&self, now: i64) -> bool {
        self.requests <= now && self.tokens <= now
    }
}

/// Buckets by subject (`key:42`, `ip:10.0.0.1`, `svc:llm`), split over [`SHARDS`] mutexes.
/// A lock is held only for one decision — never across an await.
pub struct LocalLimiter {
    shards: Box<[Mutex<HashMap<String, Buckets>>]>,
    hasher: std::hash::RandomState,
    epoch: Instant,
    /// Most buckets a shard keeps; beyond it the shard is swept, then its nearest-to-idle
    /// bucket goes.
    shard_capacity: usize,
    len: AtomicUsize,
}

impl LocalLimiter {
    /// A limiter holding at most about `max_buckets` subjects.
    pub fn new(max_buckets: usize) -> Self {
        LocalLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::hash::RandomState::new(),
            epoch: Instant::now(),
            shard_capacity: (max_buckets / SHARDS).max(1),
            len: AtomicUsize::new(0),
        }
    }

    /// Nanoseconds since the limiter started: its clock.
    pub fn now(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    /// The clock value `after` from now, for tests that move time.
    pub fn ticks(duration: Duration) -> i64 {
        i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
    }

    fn shard(&self, subject: &str) -> &Mutex<HashMap<String, Buckets>> {
        let index = usize::try_from(self.hasher.hash_one(subject) % SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    /// Subjects currently held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides an admission at `now` (see [`LocalLimiter::now`]).
    pub fn admit_at(&self, admission: &Admission<'_>, now: i64) -> Decision {
        let mut shard = self
            .shard(admission.subject)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // One lookup serves the read and the update: a known subject's buckets are updated in
        // place, and only a new subject allocates its name.
        let existing = shard.get_mut(admission.subject);
        let current = existing.as_deref().copied().unwrap_or(Buckets {
            requests: i64::MIN,
            tokens: i64::MIN,
        });
        let requests = admission
            .requests
            .map(|gcra| (gcra, gcra.check(current.requests, now, 1)));
        let tokens = admission
            .tokens
            .map(|(gcra, cost)| (gcra, gcra.check(current.tokens, now, cost)));
        let denied = match (&requests, &tokens) {
            (Some((_, r)), _) if !r.allowed => Some(LimitKind::Requests),
            (_, Some((_, t))) if !t.allowed => Some(LimitKind::Tokens),
            _ => None,
        };
        if denied.is_none() && (requests.is_some() || tokens.is_some()) {
            let updated = Buckets {
                requests: requests.map_or(current.requests, |(_, r)| r.new_tat),
                tokens: tokens.map_or(current.tokens, |(_, t)| t.new_tat),
            };
            match existing {
                Some(buckets) => *buckets = updated,
                None => {
                    shard.insert(admission.subject.to_string(), updated);
                    self.len.fetch_add(1, Ordering::Relaxed);
                    if shard.len() > self.shard_capacity {
                        self.make_room(&mut shard, admission.subject, now);
                    }
                }
            }
        }
        drop(shard);
        let status = |(gcra, outcome): (Gcra, GcraOutcome)| status_of(gcra, outcome, 1);
        Decision {
            denied,
            retry_after: [requests, tokens]
                .into_iter()
                .flatten()
                .map(|(_, o)| ticks_to_duration(o.retry_after))
                .max()
                .unwrap_or_default(),
            requests: requests.map(status),
            tokens: tokens.map(status),
        }
    }

    /// How long until `subject`'s request bucket under `gcra` admits one more request, or
    /// `None` when it would admit one now. Decides nothing and charges nothing: for callers
    /// that charge only on an outcome known later (failed authentications).
    pub fn exhausted_at(&self, subject: &str, gcra: Gcra, now: i64) -> Option<Duration> {
        let shard = self
            .shard(subject)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let tat = shard
            .get(subject)
            .map_or(i64::MIN, |buckets| buckets.requests);
        drop(shard);
        let outcome = gcra.check(tat, now, 1);
        (!outcome.allowed).then(|| ticks_to_duration(outcome.retry_after))
    }

    /// Corrects a token charge made for `subject` by `delta` units (see [`Gcra::adjust`]).
    pub fn adjust_tokens_at(&self, subject: &str, gcra: Gcra, delta: i64, now: i64) {
        if delta == 0 {
            return;
        }
        let mut shard = self
            .shard(subject)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(buckets) = shard.get_mut(subject) {
            buckets.tokens = gcra.adjust(buckets.tokens, now, delta);
        } else if delta > 0 {
            // Evicted meanwhile (it was idle): start from a fresh bucket.
            shard.insert(
                subject.to_string(),
                Buckets {
                    requests: i64::MIN,
                    tokens: gcra.adjust(i64::MIN, now, delta),
                },
            );
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes every bucket that is full again: exact, since a full bucket and a missing one
    /// decide alike. Takes one shard lock at a time. Returns how many went.
    pub fn sweep_at(&self, now: i64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, buckets| !buckets.idle(now));
            removed += before - shard.len();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// A shard over its capacity drops its idle buckets; if none are idle, the bucket closest
    /// to idle goes (that subject then gets a little more than its limit — the price of a
    /// hard memory bound under a flood of distinct subjects).
    fn make_room(&self, shard: &mut HashMap<String, Buckets>, keep: &str, now: i64) {
        let before = shard.len();
        shard.retain(|_, buckets| !buckets.idle(now));
        if shard.len() > self.shard_capacity {
            let victim = shard
                .iter()
                .filter(|(subject, _)| subject.as_str() != keep)
                .min_by_key(|(_, b)| b.requests.max(b.tokens))
                .map(|(subject, _)| subject.clone());
            if let Some(victim) = victim {
                shard.remove(&victim);
            }
        }
        self.len.fetch_sub(before - shard.len(), Ordering::Relaxed);
    }
}

fn ticks_to_duration(ticks: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ticks).unwrap_or(0))
}

/// Header values from one bucket's outcome; `per_unit` scales ticks to nanoseconds.
pub(crate) fn status_of(gcra: Gcra, outcome: GcraOutcome, nanos_per_tick: i64) -> LimitStatus {
    let per_minute = 60_000_000_000 / (gcra.interval.saturating_mul(nanos_per_tick)).max(1);
    LimitStatus {
        limit: u64::try_from(per_minute).unwrap_or(0),
        remaining: u64::try_from(outcome.remaining).unwrap_or(0),
        reset: ticks_to_duration(outcome.reset.saturating_mul(nanos_per_tick)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn requests(burst: u64) -> Gcra {
        Gcra::per_minute(60, burst, SECOND).expect("valid")
    }

    #[test]
    fn requests_and_tokens_are_decided_together() {
        let limiter = LocalLimiter::new(1_000);
        let tokens = Gcra::per_minute(1_000, 1_000, SECOND).expect("valid");
        let admit = |cost| Admission {
            subject: "key:1",
            requests: Some(requests(5)),
            tokens: Some((tokens, cost)),
        };
        assert_eq!(limiter.admit_at(&admit(600), 0).denied, None);
        let refused = limiter.admit_at(&admit(600), 0);
        assert_eq!(refused.denied, Some(LimitKind::Tokens));
        // The refusal charged nothing: the request bucket still has 4 of 5.
        let next = limiter.admit_at(&admit(100), 0);
        assert_eq!(next.denied, None);
        assert_eq!(next.requests.expect("requests").remaining, 3);
        // Giving tokens back lets a large request through.
        limiter.adjust_tokens_at("key:1", tokens, -700, 0);
        assert_eq!(limiter.admit_at(&admit(900), 0).denied, None);
    }

    #[test]
    fn exhaustion_is_read_without_charging() {
        let limiter = LocalLimiter::new(1_000);
        let gcra = requests(2);
        let admission = Admission {
            subject: "fail:1",
            requests: Some(gcra),
            tokens: None,
        };
        // Reading a fresh bucket, however often, charges nothing.
        for _ in 0..10 {
            assert_eq!(limiter.exhausted_at("fail:1", gcra, 0), None);
        }
        assert_eq!(limiter.admit_at(&admission, 0).denied, None);
        assert_eq!(limiter.exhausted_at("fail:1", gcra, 0), None);
        assert_eq!(limiter.admit_at(&admission, 0).denied, None);
        // Two of two used: exhausted until one unit (1 s at 60/min) comes back.
        assert_eq!(
            limiter.exhausted_at("fail:1", gcra, 0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(limiter.exhausted_at("fail:1", gcra, SECOND), None);
        assert_eq!(limiter.exhausted_at("fail:2", gcra, 0), None);
    }

    #[test]
    fn sweeping_idle_buckets_frees_memory_and_changes_no_decision() {
        let limiter = LocalLimiter::new(10_000_000);
        let gcra = requests(10);
        for i in 0..200_000 {
            let subject = format!("key:{i}");
            let admission = Admission {
                subject: &subject,
                requests: Some(gcra),
                tokens: None,
            };
            assert_eq!(limiter.admit_at(&admission, 0).denied, None);
        }
        assert_eq!(limiter.len(), 200_000);
        // Not yet idle: nothing may go.
        assert_eq!(limiter.sweep_at(SECOND / 2), 0);
        assert_eq!(limiter.sweep_at(SECOND), 200_000);
        assert!(limiter.is_empty());
        // A swept subject starts from a full bucket, as it would have anyway.
        let admission = Admission {
            subject: "key:7",
            requests: Some(gcra),
            tokens: None,
        };
        let decision = limiter.admit_at(&admission, SECOND);
        assert_eq!(decision.requests.expect("requests").remaining, 9);
    }

    #[test]
    fn a_flood_of_distinct_subjects_stays_within_the_bound() {
        // Every subject stays busy (no idle bucket), the worst case for eviction.
        let limiter = LocalLimiter::new(64 * 100);
        let gcra = Gcra::per_minute(1, 10, SECOND).expect("valid");
        for i in 0..1_000_000 {
            let subject = format!("ip:{i}");
            let admission = Admission {
                subject: &subject,
                requests: Some(gcra),
                tokens: None,
            };
            limiter.admit_at(&admission, i);
        }
        assert!(limiter.len() <= 64 * 100, "{} buckets", limiter.len());
        let held: usize = limiter
            .shards
            .iter()
            .map(|s| s.lock().expect("lock").len())
            .sum();
        assert_eq!(held, limiter.len());
    }
}
