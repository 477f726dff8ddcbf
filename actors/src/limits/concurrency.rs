//! Requests in flight per key: a counter per key in sharded maps, taken at admission and given
//! back when the request's permit drops (with the usage ticket, so streams hold it to the end).
//! Per gateway process: a count shared through Redis would leak whenever a replica died with
//! requests open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

/// In-flight counters by key id.
pub struct ConcurrencyLimiter {
    shards: [Mutex<HashMap<i64, Arc<AtomicI64>>>; SHARDS],
}

impl Default for ConcurrencyLimiter {
    fn default() -> Self {
        ConcurrencyLimiter {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

/// One request in flight; dropping it frees its place.
#[derive(Debug)]
pub struct ConcurrencyPermit {
    count: Arc<AtomicI64>,
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConcurrencyLimiter {
    fn shard(&self, key: i64) -> &Mutex<HashMap<i64, Arc<AtomicI64>>> {
        &self.shards[usize::try_from(key.rem_euclid(SHARDS as i64)).unwrap_or(0)]
    }

    /// A permit when fewer than `max` requests of `key` are in flight.
    pub fn try_acquire(&self, key: i64, max: i64) -> Option<ConcurrencyPermit> {
        let count = {
            let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(shard.entry(key).or_default())
        };
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConcurrencyPermit { count })
    }

    /// Requests of `key` in flight now.
    pub fn in_flight(&self, key: i64) -> i64 {
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.get(&key).map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Forgets keys with nothing in flight and no permit alive. Returns how many went.
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, count| {
                Arc::strong_count(count) > 1 || count.load(Ordering::Acquire) != 0
            });
            removed += before - shard.len();
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_bound_requests_in_flight_and_come_back_on_drop() {
        let limiter = ConcurrencyLimiter::default();
        let first = limiter.try_acquire(7, 2).expect("first");
        let second = limiter.try_acquire(7, 2).expect("second");
        assert!(limiter.try_acquire(7, 2).is_none());
        assert!(
            limiter.try_acquire(8, 2).is_some(),
            "other keys are independent"
        );
        drop(first);
        assert_eq!(limiter.in_flight(7), 1);
        let third = limiter.try_acquire(7, 2).expect("a freed place");
        assert_eq!(limiter.sweep(), 1, "key 8 is idle");
        drop((second, third));
        assert_eq!(limiter.sweep(), 1);
        assert!(limiter.try_acquire(7, 0).is_none());
    }
}
