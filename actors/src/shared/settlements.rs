//! Budget settlements and leases: how a shared reservation ends, or runs out.
//!
//! A settlement (tokens released, real use added) goes into a bounded queue of its own, never
//! behind cached answers, and one task applies the queue in batches of up to [`BATCH`] per
//! round trip, retrying with back-off (50 ms doubling to 2 s, after any shared back-off) until
//! Redis takes them. Each names its reservation, and the script applies only a reservation it
//! still holds, so a retry of a batch Redis did apply changes nothing. A settlement is given up
//! (counted, logged) only when the queue is full or it has waited two leases, by when its
//! reservation's record is gone: the lease has released the tokens, and reconciliation counts
//! the use from the database.
//!
//! Leases: a reservation held by a process is renewed by it while the request runs, so a
//! long stream keeps its tokens and a dead process's reservations run out. One task renews, a
//! quarter-lease apart, only the reservations older than half a lease: most requests end
//! before that and cost no renewal at all.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::budget::{BUCKET_MS, BUDGET_TTL_MS};
use super::SharedRedis;

/// Settlements waiting for Redis; beyond it a settlement is abandoned (counted).
pub(super) const QUEUE: usize = 65_536;
/// Settlements (or lease renewals) per script call.
const BATCH: usize = 128;
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// The end of one shared reservation.
#[derive(Debug)]
pub(super) struct Settlement {
    pub(super) key_id: i64,
    pub(super) id: u64,
    pub(super) used: i64,
    pub(super) billed_at_ms: i64,
    pub(super) queued: Instant,
}

/// Applies settlements: ARGV[1] is the TTL (ms); settlement i has KEYS[3i-2..3i] (ledger,
/// leases, spent) and ARGV[3i-1..3i+1] (reservation id, used, billed at). A reservation the
/// ledger no longer holds (settled already, or forgotten after its lease) is skipped. Use
/// billed before the ledger's cutoff is the database's to count. Returns {applied}.
const SETTLE_SCRIPT: &str = r"
local function int(n) return string.format('%d', n) end
local applied = 0
for i = 1, #KEYS / 3 do
  local ledger, leases, spent = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local id, used, at = ARGV[3 * i - 1], tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local held = tonumber(redis.call('HGET', ledger, 'r:' .. id))
  if held then
    redis.call('HINCRBY', ledger, 'reserved', int(-held))
    redis.call('HDEL', ledger, 'r:' .. id)
    redis.call('ZREM', leases, id)
    if used > 0 and at >= tonumber(redis.call('HGET', ledger, 'cutoff')) then
      redis.call('HINCRBY', ledger, 'used', int(used))
      redis.call('HINCRBY', spent, int(math.floor(at / BUCKET_MS)), int(used))
    end
    for _, key in ipairs({ledger, leases, spent}) do redis.call('PEXPIRE', key, ARGV[1]) end
    applied = applied + 1
  end
end
return {applied}
";

/// Renews leases: ARGV[1] is the TTL (ms), ARGV[2] the lease (ms); reservation i has
/// KEYS[3i-2..3i] (ledger, leases, spent) and ARGV[2+i] (its id). Returns one flag per
/// reservation: 1 renewed, 0 no longer held (its lease ran out or it was settled).
const RENEW_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local renewed = {}
for i = 1, #KEYS / 3 do
  local ledger, leases, spent, id = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[2 + i]
  local held = tonumber(redis.call('HGET', ledger, 'r:' .. id))
  if held and held > 0 then
    redis.call('ZADD', leases, string.format('%d', now + tonumber(ARGV[2])), id)
    for _, key in ipairs({ledger, leases, spent}) do redis.call('PEXPIRE', key, ARGV[1]) end
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
";

static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&SETTLE_SCRIPT.replace("BUCKET_MS", &BUCKET_MS.to_string()))
});
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RENEW_SCRIPT));

/// Applies queued settlements until the ledger goes away. It holds the ledger weakly, and
/// never across a back-off wait.
pub(super) async fn run(shared: Weak<SharedRedis>, mut queue: mpsc::Receiver<Settlement>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let mut retry = FIRST_RETRY;
        loop {
            let Some(ledger) = shared.upgrade() else {
                return;
            };
            ledger.abandon_stale(&mut batch);
            if batch.is_empty() {
                break;
            }
            let wait = ledger.back_off_left();
            if wait.is_zero() {
                match ledger.apply_settlements(&batch).await {
                    Ok(()) => break,
                    Err(error) => {
                        ledger
                            .counters
                            .settlement_retries
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%error, pending = batch.len(), "budget settlements not applied yet; retrying");
                    }
                }
            }
            drop(ledger);
            tokio::time::sleep(wait.max(retry)).await;
            retry = (retry * 2).min(LAST_RETRY);
        }
        batch.clear();
    }
}

/// Renews this process's due leases every quarter lease, until the ledger goes away.
pub(super) async fn renew_leases(shared: Weak<SharedRedis>, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(ledger) = shared.upgrade() else {
            return;
        };
        if !ledger.backing_off() {
            ledger.renew_due_leases().await;
        }
    }
}

impl SharedRedis {
    /// How long a settlement may wait for Redis: nobody waits for it, so longer than a
    /// decision, but bounded so one stuck call does not hold the queue.
    pub(super) fn settle_timeout(&self) -> Duration {
        (self.timeout * 4).max(Duration::from_secs(1))
    }

    /// Gives up settlements that waited two leases: their reservation's record is gone by then
    /// (its tokens released by the lease), and reconciliation counts their use.
    fn abandon_stale(&self, batch: &mut Vec<Settlement>) {
        let before = batch.len();
        let limit = self.budget_lease * 2;
        batch.retain(|settlement| settlement.queued.elapsed() < limit);
        let stale = before - batch.len();
        if stale > 0 {
            self.abandon_settlements(stale as u64, "redis did not take them for two leases");
        }
    }

    /// One round trip: applies a batch of settlements atomically.
    async fn apply_settlements(&self, batch: &[Settlement]) -> Result<(), String> {
        let mut invocation = SETTLE.prepare_invoke();
        invocation.arg(BUDGET_TTL_MS);
        for settlement in batch {
            for key in self.ledger_keys(settlement.key_id) {
                invocation.key(key);
            }
            invocation
                .arg(settlement.id)
                .arg(settlement.used)
                .arg(settlement.billed_at_ms);
        }
        self.run_script_within(&invocation, 1, self.settle_timeout())
            .await
            .map(|_| ())
    }

    /// Renews the leases of reservations held longer than half a lease; those Redis no longer
    /// holds are forgotten. A failure leaves them due, for the next tick.
    async fn renew_due_leases(&self) {
        let now = Instant::now();
        let due = self.leases.due(now);
        let lease_ms = i64::try_from(self.budget_lease.as_millis()).unwrap_or(i64::MAX);
        for chunk in due.chunks(BATCH) {
            let mut invocation = RENEW.prepare_invoke();
            invocation.arg(BUDGET_TTL_MS).arg(lease_ms);
            for &(id, key_id) in chunk {
                for key in self.ledger_keys(key_id) {
                    invocation.key(key);
                }
                invocation.arg(id);
            }
            let Ok(renewed) = self
                .run_script_within(&invocation, chunk.len(), self.settle_timeout())
                .await
            else {
                return;
            };
            let next = now + self.budget_lease / 2;
            for (&(id, _), flag) in chunk.iter().zip(renewed) {
                if flag == 1 {
                    self.leases.renewed(id, next);
                } else {
                    self.leases.release(id);
                }
            }
        }
    }
}

/// This process's shared reservations in flight: id → (key id, when to renew its lease).
/// Sharded so that reserving and settling, which lock one shard for an insert or a removal,
/// rarely meet.
#[derive(Debug, Default)]
pub(super) struct LiveLeases {
    shards: [Mutex<HashMap<u64, (i64, Instant)>>; 16],
}

impl LiveLeases {
    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, (i64, Instant)>> {
        self.shards[(id % 16) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn hold(&self, id: u64, key_id: i64, renew_at: Instant) {
        self.shard(id).insert(id, (key_id, renew_at));
    }

    pub(super) fn release(&self, id: u64) {
        self.shard(id).remove(&id);
    }

    fn renewed(&self, id: u64, next: Instant) {
        if let Some(entry) = self.shard(id).get_mut(&id) {
            entry.1 = next;
        }
    }

    /// Reservations whose renewal is due at `now`: (id, key id).
    fn due(&self, now: Instant) -> Vec<(u64, i64)> {
        let mut due = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            due.extend(
                shard
                    .iter()
                    .filter(|(_, (_, renew_at))| *renew_at <= now)
                    .map(|(&id, &(key_id, _))| (id, key_id)),
            );
        }
        due
    }
}
