//! Limits shared by every replica through Redis: one Lua script decides the request bucket and
//! the token bucket of a subject atomically, so N gateways enforce one limit exactly. The
//! script mirrors [`super::gcra::Gcra`] in integer microseconds on Redis's own clock (`TIME`),
//! so replica clocks do not matter. Every key carries a prefix and a TTL that ends when the
//! bucket would be full again, so nothing outlives its use.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use tokio::sync::mpsc;

use super::gcra::{Gcra, GcraOutcome};
use super::local::status_of;
use super::{Admission, Decision, LimitKind};
use crate::store::now_millis;

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

/// Decides a request bucket (KEYS[1]) and a token bucket (KEYS[2]) together; a refusal
/// changes nothing. ARGV: request interval µs (0 = unlimited), request capacity, token
/// interval µs (0 = unlimited), token capacity, token cost. Returns {denied (0, 1 requests,
/// 2 tokens), retry µs, request remaining, request reset µs, token remaining, token reset µs}.
const ADMIT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function bucket(key, interval, capacity, cost)
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then tat = now end
  local new = tat + cost * interval
  local tolerance = capacity * interval
  if new - now <= tolerance then
    return true, new, math.floor((tolerance - (new - now)) / interval), new - now, 0
  end
  local left = tolerance - (tat - now)
  if left < 0 then left = 0 end
  return false, new, math.floor(left / interval), tat - now, new - now - tolerance
end
local ri, rc = tonumber(ARGV[1]), tonumber(ARGV[2])
local ti, tc, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local denied, retry = 0, 0
local rok, rnew, rrem, rreset, rretry = true, 0, 0, 0, 0
local tok, tnew, trem, treset, tretry = true, 0, 0, 0, 0
if ri > 0 then rok, rnew, rrem, rreset, rretry = bucket(KEYS[1], ri, rc, 1) end
if ti > 0 then tok, tnew, trem, treset, tretry = bucket(KEYS[2], ti, tc, cost) end
if not rok then denied = 1 elseif not tok then denied = 2 end
retry = math.max(rretry, tretry)
if denied == 0 then
  if ri > 0 then
    redis.call('SET', KEYS[1], string.format('%d', rnew), 'PX', math.floor((rnew - now) / 1000) + 1000)
  end
  if ti > 0 then
    redis.call('SET', KEYS[2], string.format('%d', tnew), 'PX', math.floor((tnew - now) / 1000) + 1000)
  end
end
return {denied, retry, rrem, rreset, trem, treset}
";

/// Corrects a token bucket (KEYS[1]) by ARGV[2] units of ARGV[1] µs, never beyond full.
const SETTLE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new = tat + tonumber(ARGV[2]) * tonumber(ARGV[1])
if new <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1000)
return 1
";

/// Reserves ARGV[2] tokens of a key's budget ARGV[1] in the ledger hash KEYS[1] (`used`,
/// `reserved`). A missing ledger answers {-1}: the caller reads the key's use from the database
/// and calls again with it as ARGV[4] (which only seeds a ledger still missing). Returns
/// {1 reserved | 0 refused, used, reserved}. Every call renews the TTL ARGV[3] (ms).
const BUDGET_RESERVE_SCRIPT: &str = r"
local k = KEYS[1]
local budget, amount, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', k) == 0 then
  if ARGV[4] == nil then return {-1, 0, 0} end
  redis.call('HSET', k, 'used', ARGV[4], 'reserved', 0)
end
redis.call('PEXPIRE', k, ttl)
local used = tonumber(redis.call('HGET', k, 'used'))
local reserved = tonumber(redis.call('HGET', k, 'reserved'))
if used + reserved + amount > budget then return {0, used, reserved} end
redis.call('HINCRBY', k, 'reserved', amount)
return {1, used, reserved + amount}
";

/// Ends a budget reservation in KEYS[1]: releases ARGV[1] reserved tokens and adds ARGV[2]
/// used ones. A ledger that expired meanwhile is left to be seeded again from the database.
const BUDGET_SETTLE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'used', tonumber(ARGV[2]))
return 1
";

/// A budget ledger idle this long leaves Redis; the next request seeds it from the database.
/// It also bounds how long the reservation of a replica that died mid-request stays held.
const BUDGET_TTL_MS: i64 = 15 * 60 * 1000;

/// What a shared budget reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetAnswer {
    /// Reserved; `used` and `reserved` include this request.
    Reserved {
        used: i64,
        reserved: i64,
    },
    Refused {
        used: i64,
        reserved: i64,
    },
    /// No ledger yet: seed it with the database's figure.
    Missing,
}

/// After a failure, Redis is not asked again for this long: an outage then costs one timeout
/// per back-off, not one per request. The first success afterwards ends the fallback.
const DOWN_BACKOFF_MS: i64 = 500;
/// At most one warning per this many milliseconds while Redis fails.
const WARN_EVERY_MS: i64 = 10_000;
/// Token corrections waiting for Redis; beyond it a correction is dropped (counted).
const SETTLE_QUEUE: usize = 8_192;

enum Settle {
    Tokens {
        key: String,
        interval_us: i64,
        delta: i64,
    },
    Budget {
        key: String,
        reserved: i64,
        used: i64,
    },
    CachePut {
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    },
}

/// The Redis side of [`super::RateLimiter`].
pub struct SharedLimiter {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    failure: RedisFailureMode,
    admit: redis::Script,
    budget_reserve: redis::Script,
    settles: mpsc::Sender<Settle>,
    down_until_ms: AtomicI64,
    last_warning_ms: AtomicI64,
    down: AtomicBool,
    failures: AtomicU64,
    dropped_settles: AtomicU64,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("prefix", &self.prefix)
            .field("failure", &self.failure)
            .field("down", &self.is_down())
            .finish_non_exhaustive()
    }
}

/// Microseconds per tick of a [`Gcra`] built for Redis: its interval in µs.
fn micros(gcra: Gcra) -> i64 {
    (gcra.interval / 1_000).max(1)
}

impl SharedLimiter {
    /// Builds the pool and the settle worker; must run inside a Tokio runtime. Connecting is
    /// lazy: a Redis that is down at start-up is the same as one that fails later.
    pub fn new(settings: &SharedSettings) -> Result<std::sync::Arc<Self>, String> {
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
        let (settles, queue) = mpsc::channel(SETTLE_QUEUE);
        let limiter = std::sync::Arc::new(SharedLimiter {
            pool: pool.clone(),
            prefix: settings.prefix.clone(),
            timeout: settings.timeout,
            failure: settings.failure,
            admit: redis::Script::new(ADMIT_SCRIPT),
            budget_reserve: redis::Script::new(BUDGET_RESERVE_SCRIPT),
            settles,
            down_until_ms: AtomicI64::new(0),
            last_warning_ms: AtomicI64::new(i64::MIN / 2),
            down: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            dropped_settles: AtomicU64::new(0),
        });
        tokio::spawn(settle_worker(pool, queue, settings.timeout));
        Ok(limiter)
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

    fn key(&self, subject: &str, bucket: &str) -> String {
        format!("{}:rl:{subject}:{bucket}", self.prefix)
    }

    /// One round trip: the admission script, within the timeout.
    pub(super) async fn admit(&self, admission: &Admission<'_>) -> Result<Decision, String> {
        if now_millis() < self.down_until_ms.load(Ordering::Relaxed) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err("redis is backing off after a failure".into());
        }
        let requests = admission.requests;
        let tokens = admission.tokens;
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .key(self.key(admission.subject, "r"))
            .key(self.key(admission.subject, "t"))
            .arg(requests.map_or(0, micros))
            .arg(requests.map_or(0, |g| g.capacity))
            .arg(tokens.map_or(0, |(g, _)| micros(g)))
            .arg(tokens.map_or(0, |(g, _)| g.capacity))
            .arg(tokens.map_or(0, |(_, cost)| cost.max(0)));
        let answer = self.run_script(&invocation, 6).await?;
        let denied = match answer[0] {
            1 => Some(LimitKind::Requests),
            2 => Some(LimitKind::Tokens),
            _ => None,
        };
        let status = |gcra: Gcra, remaining: i64, reset: i64| {
            let outcome = GcraOutcome {
                allowed: denied.is_none(),
                new_tat: 0,
                remaining,
                reset,
                retry_after: 0,
            };
            // Statuses come back in µs; scale to the µs interval the script used.
            let in_micros = Gcra {
                interval: micros(gcra),
                capacity: gcra.capacity,
            };
            status_of(in_micros, outcome, 1_000)
        };
        Ok(Decision {
            denied,
            retry_after: Duration::from_micros(u64::try_from(answer[1]).unwrap_or(0)),
            requests: requests.map(|g| status(g, answer[2], answer[3])),
            tokens: tokens.map(|(g, _)| status(g, answer[4], answer[5])),
        })
    }

    /// Queues a correction of `subject`'s token bucket by `delta` units.
    pub(super) fn settle(&self, subject: &str, gcra: Gcra, delta: i64) {
        if delta == 0 {
            return;
        }
        let settle = Settle::Tokens {
            key: self.key(subject, "t"),
            interval_us: micros(gcra),
            delta,
        };
        if self.settles.try_send(settle).is_err() {
            self.dropped_settles.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One round trip: reserve `amount` tokens of key `key_id`'s `budget` in the shared ledger.
    /// `seed` is the key's use from the database, given when a first call answered `Missing`.
    pub async fn reserve_budget(
        &self,
        key_id: i64,
        budget: i64,
        amount: i64,
        seed: Option<i64>,
    ) -> Result<BudgetAnswer, String> {
        if now_millis() < self.down_until_ms.load(Ordering::Relaxed) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err("redis is backing off after a failure".into());
        }
        let mut invocation = self.budget_reserve.prepare_invoke();
        invocation
            .key(format!("{}:budget:{key_id}", self.prefix))
            .arg(budget)
            .arg(amount)
            .arg(BUDGET_TTL_MS);
        if let Some(seed) = seed {
            invocation.arg(seed);
        }
        let answer = self.run_script(&invocation, 3).await?;
        Ok(match answer[0] {
            1 => BudgetAnswer::Reserved {
                used: answer[1],
                reserved: answer[2],
            },
            0 => BudgetAnswer::Refused {
                used: answer[1],
                reserved: answer[2],
            },
            _ => BudgetAnswer::Missing,
        })
    }

    /// One round trip: a cached answer stored under `key` by any replica, if any.
    pub async fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if now_millis() < self.down_until_ms.load(Ordering::Relaxed) {
            return Err("redis is backing off after a failure".into());
        }
        let key = format!("{}:cache:{key}", self.prefix);
        let call = async {
            let mut connection = self.pool.get().await.map_err(|e| e.to_string())?;
            redis::cmd("GET")
                .arg(&key)
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

    /// Queues storing a cached answer for every replica, expiring after `ttl`.
    pub fn cache_put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let put = Settle::CachePut {
            key: format!("{}:cache:{key}", self.prefix),
            value,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        };
        if self.settles.try_send(put).is_err() {
            self.dropped_settles.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues the end of a shared budget reservation: `reserved` released, `used` spent.
    pub fn settle_budget(&self, key_id: i64, reserved: i64, used: i64) {
        let settle = Settle::Budget {
            key: format!("{}:budget:{key_id}", self.prefix),
            reserved,
            used,
        };
        if self.settles.try_send(settle).is_err() {
            self.dropped_settles.fetch_add(1, Ordering::Relaxed);
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

/// Applies token corrections in order, one script call each, until the limiter goes away.
async fn settle_worker(pool: Pool, mut queue: mpsc::Receiver<Settle>, timeout: Duration) {
    let tokens = redis::Script::new(SETTLE_SCRIPT);
    let budget = redis::Script::new(BUDGET_SETTLE_SCRIPT);
    while let Some(settle) = queue.recv().await {
        if let Settle::CachePut { key, value, ttl_ms } = &settle {
            let call = async {
                let mut connection = pool.get().await.map_err(|e| e.to_string())?;
                redis::cmd("SET")
                    .arg(key)
                    .arg(value.as_slice())
                    .arg("PX")
                    .arg(*ttl_ms)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(|e| e.to_string())
            };
            if let Ok(Err(error)) | Err(error) = tokio::time::timeout(timeout * 4, call)
                .await
                .map_err(|_| "timeout".to_string())
            {
                tracing::debug!(%error, "cached answer not shared (redis)");
            }
            continue;
        }
        let invocation = match &settle {
            Settle::Tokens {
                key,
                interval_us,
                delta,
            } => {
                let mut invocation = tokens.prepare_invoke();
                invocation.key(key).arg(interval_us).arg(delta);
                invocation
            }
            Settle::Budget {
                key,
                reserved,
                used,
            } => {
                let mut invocation = budget.prepare_invoke();
                invocation.key(key).arg(reserved).arg(used);
                invocation
            }
            // Stored above, without a script.
            Settle::CachePut { .. } => continue,
        };
        let call = async {
            let mut connection = pool.get().await.map_err(|e| e.to_string())?;
            invocation
                .invoke_async::<i64>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(timeout * 4, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "token settlement lost (redis)"),
            Err(_) => tracing::debug!("token settlement lost (redis timeout)"),
        }
    }
}
