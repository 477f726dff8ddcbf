//! State every replica shares through Redis: rate-limit buckets ([`limits`]), budget ledgers
//! ([`budget`]) and cached answers ([`cache`]). They share one thing, [`SharedRedis`]: one
//! connection pool, one failure back-off (an outage costs one timeout per back-off, not one
//! per request, whichever concern meets it), and one bounded queue of writes that no request
//! waits for ([`writes`]). Keys are `<prefix>:rl:…`, `<prefix>:budget:…` and
//! `<prefix>:cache:…`; each carries a TTL, so nothing outlives its use.

mod budget;
mod cache;
mod limits;
mod writes;

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use tokio::sync::mpsc;

use crate::store::now_millis;
pub use budget::BudgetAnswer;
use writes::Write;

/// What to do when Redis does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisFailureMode {
    /// Decide in-process (limits then hold per replica).
    #[default]
    Local,
    /// Let requests through unlimited.
    Allow,
    /// Refuse requests (503).
    Deny,
}

#[derive(Debug, Clone)]
pub struct SharedSettings {
    pub url: String,
    /// Prepended to every key (`<prefix>:rl:<subject>:r|t`).
    pub prefix: String,
    /// Longest a decision may wait for Redis before the fallback decides.
    pub timeout: Duration,
    pub pool_size: usize,
    pub failure: RedisFailureMode,
}

/// After a failure, Redis is not asked again for this long: an outage then costs one timeout
/// per back-off, not one per request. The first success afterwards ends the fallback.
const DOWN_BACKOFF_MS: i64 = 500;
/// At most one warning per this many milliseconds while Redis fails.
const WARN_EVERY_MS: i64 = 10_000;

/// The connection to the shared Redis, with its failure state. Request paths call it through
/// the methods of [`limits`], [`budget`] and [`cache`].
pub struct SharedRedis {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    failure: RedisFailureMode,
    writes: mpsc::Sender<Write>,
    down_until_ms: AtomicI64,
    last_warning_ms: AtomicI64,
    down: AtomicBool,
    failures: AtomicU64,
    dropped_writes: AtomicU64,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("prefix", &self.prefix)
            .field("failure", &self.failure)
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

impl SharedRedis {
    /// Builds the pool and the write worker; must run inside a Tokio runtime. Connecting is
    /// lazy: a Redis that is down at start-up is the same as one that fails later.
    pub fn new(settings: &SharedSettings) -> Result<Arc<Self>, String> {
        let mut config = deadpool_redis::Config::from_url(settings.url.clone());
        config.pool = Some(PoolConfig {
            max_size: settings.pool_size.max(1),
            timeouts: Timeouts {
                wait: Some(settings.timeout),
                create: Some(settings.timeout),
                recycle: Some(settings.timeout),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|error| format!("redis pool: {error}"))?;
        let (writes, queue) = mpsc::channel(writes::QUEUE);
        let shared = Arc::new(SharedRedis {
            pool: pool.clone(),
            prefix: settings.prefix.clone(),
            timeout: settings.timeout,
            failure: settings.failure,
            writes,
            down_until_ms: AtomicI64::new(0),
            last_warning_ms: AtomicI64::new(i64::MIN / 2),
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            dropped_writes: AtomicU64::new(0),
        });
        tokio::spawn(writes::run(pool, queue, settings.timeout));
        Ok(shared)
    }

    pub fn failure_mode(&self) -> RedisFailureMode {
        self.failure
    }

    /// Decisions Redis failed to make (each answered by the fallback).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether the last attempt failed (the fallback is deciding).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// `<prefix>:<space>:<rest>`: every key the gateway writes.
    fn key(&self, space: &str, rest: impl Display) -> String {
        format!("{}:{space}:{rest}", self.prefix)
    }

    /// True while a recent failure keeps Redis from being asked.
    fn backing_off(&self) -> bool {
        now_millis() < self.down_until_ms.load(Ordering::Relaxed)
    }

    /// The error a decision gets while backing off; it counts as a failure.
    fn refuse_while_backing_off(&self) -> String {
        self.failures.fetch_add(1, Ordering::Relaxed);
        "redis is backing off after a failure".into()
    }

    /// Queues a write no request waits for; a full queue drops it (counted).
    fn enqueue(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            self.dropped_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs a decision script within the timeout, expecting `len` integers back; a failure
    /// starts the back-off and a success after failures ends it.
    async fn run_script(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        len: usize,
    ) -> Result<Vec<i64>, String> {
        let call = async {
            let mut connection = self.pool.get().await.map_err(|e| e.to_string())?;
            invocation
                .invoke_async::<Vec<i64>>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        };
        let answer = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) if answer.len() == len => answer,
            Ok(Ok(answer)) => return Err(self.failed(format!("unexpected answer {answer:?}"))),
            Ok(Err(error)) => return Err(self.failed(error)),
            Err(_) => return Err(self.failed(format!("no answer within {:?}", self.timeout))),
        };
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("redis answers again; shared limits resumed");
        }
        Ok(answer)
    }

    /// One `GET` within the timeout; a failure starts the back-off.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let call = async {
            let mut connection = self.pool.get().await.map_err(|e| e.to_string())?;
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failed(error)),
            Err(_) => Err(self.failed(format!("no answer within {:?}", self.timeout))),
        }
    }

    fn failed(&self, error: String) -> String {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.down.store(true, Ordering::Relaxed);
        let now = now_millis();
        self.down_until_ms
            .store(now + DOWN_BACKOFF_MS, Ordering::Relaxed);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                %error,
                fallback = ?self.failure,
                "redis rate limiter failed; using the fallback until it answers again"
            );
        }
        error
    }
}
