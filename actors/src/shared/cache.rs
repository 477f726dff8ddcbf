//! The shared half of the two-level response cache: `<prefix>:cache:<hash>`, read on a miss
//! in the process's own cache and written through the bounded write queue, so a miss's answer
//! never waits for Redis.

use std::time::Duration;

use super::writes::Write;
use super::SharedRedis;

impl SharedRedis {
    /// One round trip: a cached answer stored under `key` by any replica, if any.
    pub async fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        // Not counted in `failures`, which counts decisions: a cache lookup decides nothing.
        if self.backing_off() {
            return Err("redis is backing off after a failure".into());
        }
        self.get(&self.key("cache", key)).await
    }

    /// Queues storing a cached answer for every replica, expiring after `ttl`.
    pub fn cache_put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        self.enqueue(Write::Store {
            key: self.key("cache", key),
            value,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        });
    }
}
