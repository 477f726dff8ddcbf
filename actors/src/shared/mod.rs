//! State every replica shares through Redis: rate-limit buckets ([`limits`]), budget ledgers
//! ([`budget`], settled by [`settlements`] and checked against the database by [`reconcile`])
//! and cached answers ([`cache`]). They share one thing, [`SharedRedis`]: one connection pool,
//! one failure back-off (an outage costs one timeout per back-off, not one per request,
//! whichever concern meets it), one bounded queue of writes that no request waits for
//! ([`writes`]) and, apart from it, one bounded queue of budget settlements that are retried
//! until Redis takes them. Keys are `<prefix>:rl:…`, `<prefix>:budget:…` and
//! `<prefix>:cache:…`; each carries a TTL, so nothing outlives its use.

mod budget;
mod cache;
mod limits;
mod reconcile;
mod settlements;
mod writes;

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use tokio::sync::mpsc;

use crate::store::now_millis;
pub use budget::{BudgetAnswer, BudgetSeed, LedgerState, BUCKET_MS as BUDGET_BUCKET_MS};
pub use reconcile::Reconciled;
use settlements::{LiveLeases, Settlement};
use writes::Write;

/// What to do when Redis does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisFailureMode {
    /// Decide in-process (limits then hold per replica; so do budgets).
    #[default]
    Local,
    /// Let requests through unlimited (budgets: decided in-process, as with `Local`).
    Allow,
    /// Refuse requests (503), budgeted ones included.
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
    /// How long a budget reservation holds without its process renewing it: the reservation
    /// of a process that died (crash, deploy) is released this long after its last renewal.
    pub budget_lease: Duration,
    /// How often one replica reconciles the budget ledgers with the database
    /// ([`crate::budget::BudgetReconciler`]).
    pub budget_reconcile: Duration,
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
    settlements: mpsc::Sender<Settlement>,
    /// This process's shared budget reservations still in flight, whose leases it renews.
    leases: LiveLeases,
    budget_lease: Duration,
    down_until_ms: AtomicI64,
    last_warning_ms: AtomicI64,
    down: AtomicBool,
    failures: AtomicU64,
    dropped_writes: AtomicU64,
    counters: BudgetCounters,
}

/// A script call that failed: `sent` when it failed after a connection was had, so Redis may
/// have run it.
struct CallFailure {
    error: String,
    sent: bool,
}

/// What happened to the shared budget ledger's settlements and reconciliations, for metrics.
#[derive(Debug, Default)]
pub struct BudgetCounters {
    /// Settlement attempts that failed and were tried again.
    pub settlement_retries: AtomicU64,
    /// Settlements given up (queue full, or older than their reservation's record): the lease
    /// and reconciliation correct the ledger instead.
    pub settlements_abandoned: AtomicU64,
    /// Tokens by which reconciliation moved ledgers' `used` (either way).
    pub reconciled_tokens: AtomicU64,
    last_warning_ms: AtomicI64,
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
        let (settlements, settling) = mpsc::channel(settlements::QUEUE);
        let budget_lease = settings.budget_lease.max(Duration::from_millis(10));
        let shared = Arc::new(SharedRedis {
            pool: pool.clone(),
            prefix: settings.prefix.clone(),
            timeout: settings.timeout,
            failure: settings.failure,
            writes,
            settlements,
            leases: LiveLeases::default(),
            budget_lease,
            down_until_ms: AtomicI64::new(0),
            last_warning_ms: AtomicI64::new(i64::MIN / 2),
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            dropped_writes: AtomicU64::new(0),
            counters: BudgetCounters::default(),
        });
        tokio::spawn(writes::run(pool, queue, settings.timeout));
        // Both hold the ledger weakly: they end when the last handle to it goes.
        tokio::spawn(settlements::run(Arc::downgrade(&shared), settling));
        tokio::spawn(settlements::renew_leases(
            Arc::downgrade(&shared),
            budget_lease,
        ));
        Ok(shared)
    }

    /// The shared budget ledger's settlement and reconciliation counts.
    pub fn budget_counters(&self) -> &BudgetCounters {
        &self.counters
    }

    pub fn failure_mode(&self) -> RedisFailureMode {
        self.failure
    }

    /// Decisions Redis failed to make (each answered by the fallback).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Writes (cached answers, token-limit corrections) dropped because their queue was full.
    pub fn dropped_writes(&self) -> u64 {
        self.dropped_writes.load(Ordering::Relaxed)
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

    /// How long the current back-off still lasts (zero when Redis may be asked).
    fn back_off_left(&self) -> Duration {
        let left = self.down_until_ms.load(Ordering::Relaxed) - now_millis();
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
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

    /// Queues a budget settlement. A full queue abandons it (counted and logged): the
    /// reservation's lease then gives its tokens back, and reconciliation counts its use.
    fn enqueue_settlement(&self, settlement: Settlement) {
        if self.settlements.try_send(settlement).is_err() {
            self.abandon_settlements(1, "the settlement queue is full");
        }
    }

    /// Counts settlements given up, with a warning at most every [`WARN_EVERY_MS`].
    fn abandon_settlements(&self, count: u64, why: &str) {
        let counters = &self.counters;
        let total = counters
            .settlements_abandoned
            .fetch_add(count, Ordering::Relaxed)
            + count;
        let now = now_millis();
        let last = counters.last_warning_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && counters
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                abandoned = total,
                why,
                "budget settlements abandoned; leases and reconciliation will correct the ledger"
            );
        }
    }

    /// One command within the timeout; a failure starts the back-off.
    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, String> {
        let call = async {
            let mut connection = self.pool.get().await.map_err(|e| e.to_string())?;
            command
                .query_async::<T>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failed(error)),
            Err(_) => Err(self.failed(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// Runs a decision script within the timeout, expecting `len` integers back; a failure
    /// starts the back-off and a success after failures ends it.
    async fn run_script(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        len: usize,
    ) -> Result<Vec<i64>, String> {
        self.run_script_within(invocation, len, self.timeout).await
    }

    /// [`Self::run_script`] with a time limit of its own, for work no request waits for.
    async fn run_script_within(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        len: usize,
        timeout: Duration,
    ) -> Result<Vec<i64>, String> {
        let answer: Vec<i64> = self.invoke(invocation, timeout).await?;
        if answer.len() != len {
            return Err(self.failed(format!("unexpected answer {answer:?}")));
        }
        Ok(answer)
    }

    /// Runs a script within `timeout`; a failure starts the back-off and a success after
    /// failures ends it.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Result<T, String> {
        self.call(invocation, timeout)
            .await
            .map_err(|failure| failure.error)
    }

    /// [`Self::invoke`], telling a failure before anything was sent (no connection) from one
    /// after, when Redis may have run the script.
    async fn call<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Result<T, CallFailure> {
        let sent = AtomicBool::new(false);
        let call = async {
            let mut connection = self.pool.get().await.map_err(|e| e.to_string())?;
            sent.store(true, Ordering::Relaxed);
            invocation
                .invoke_async::<T>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        };
        let error = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis answers again; shared limits resumed");
                }
                return Ok(answer);
            }
            Ok(Err(error)) => error,
            Err(_) => format!("no answer within {timeout:?}"),
        };
        Err(CallFailure {
            error: self.failed(error),
            sent: sent.load(Ordering::Relaxed),
        })
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
