//! The shared budget ledger. Per key, three Redis keys with one TTL:
//!
//! - `<prefix>:budget:<key>` (hash): `used` (= `base` + what `spent` holds), `reserved`,
//!   `base` (the key's use before `cutoff`, from `usage_events`), `cutoff` (Unix ms), and
//!   `r:<id>` = tokens held by each reservation in flight;
//! - `<prefix>:budget:<key>:leases` (sorted set): reservation id → lease deadline (Redis's
//!   clock), so the reservation of a process that died is released when its lease runs out;
//! - `<prefix>:budget:<key>:spent` (hash): tokens settled, by the billing time's
//!   [`BUCKET_MS`] bucket, for use billed at or after `cutoff`.
//!
//! Use is split by the usage event's own time (`created_at`, which the settlement carries):
//! before `cutoff` it is counted from the database, from `cutoff` on from settlements. So
//! reconciliation ([`super::reconcile`]) can replace the older part with the database's figure
//! while settlements keep arriving, and nothing is counted twice.
//!
//! Reservation is its own script, not folded into the rate-limit one: a budget is checked
//! whenever a key has one, limits on or off, and only a missing ledger needs the seed from the
//! database. `<prefix>:budget:ledgers` (sorted set) names the ledgers in use, for
//! reconciliation.

use std::sync::LazyLock;
use std::time::Instant;

use super::settlements::Settlement;
use super::SharedRedis;
use crate::store::now_millis;

/// Reserves ARGV[2] tokens of a key's budget ARGV[1] as reservation ARGV[5] (lease ARGV[4] ms)
/// in KEYS[1] (ledger), KEYS[2] (leases), KEYS[3] (spent); KEYS[4] lists ledgers in use (key id
/// ARGV[6]). First, leases that ran out are released (at most 64 per call): the tokens go back,
/// and the record stays one more lease with 0 tokens, so a late settlement still adds its use.
/// A missing ledger answers {-1}: the caller reads the key's use before a cutoff from the
/// database and calls again with it (ARGV[7]) and the cutoff (ARGV[8]), which only seed a
/// ledger still missing. Returns {1 reserved | 0 refused, used, reserved}. Every call renews
/// the TTL ARGV[3] (ms).
const RESERVE_SCRIPT: &str = r"
local function int(n) return string.format('%d', n) end
local ledger, leases = KEYS[1], KEYS[2]
local budget, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl, lease, id = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', ledger) == 0 then
  if ARGV[7] == nil then return {-1, 0, 0} end
  redis.call('DEL', leases, KEYS[3])
  redis.call('HSET', ledger, 'used', ARGV[7], 'base', ARGV[7], 'cutoff', ARGV[8], 'reserved', 0)
end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', int(now), 'LIMIT', 0, 64)) do
  local held = tonumber(redis.call('HGET', ledger, 'r:' .. gone))
  if held and held > 0 then
    redis.call('HINCRBY', ledger, 'reserved', int(-held))
    redis.call('HSET', ledger, 'r:' .. gone, 0)
    redis.call('ZADD', leases, int(now + lease), gone)
  else
    redis.call('HDEL', ledger, 'r:' .. gone)
    redis.call('ZREM', leases, gone)
  end
end
local used = tonumber(redis.call('HGET', ledger, 'used'))
local reserved = tonumber(redis.call('HGET', ledger, 'reserved'))
local granted = used + reserved + amount <= budget
if granted then
  redis.call('HINCRBY', ledger, 'reserved', int(amount))
  redis.call('HSET', ledger, 'r:' .. id, int(amount))
  redis.call('ZADD', leases, int(now + lease), id)
  reserved = reserved + amount
end
redis.call('ZADD', KEYS[4], int(now), ARGV[6])
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
if granted then return {1, used, reserved} end
return {0, used, reserved}
";

/// A budget ledger idle this long leaves Redis; the next request seeds it from the database.
pub(super) const BUDGET_TTL_MS: i64 = 15 * 60 * 1000;

/// Width of the `spent` buckets: settled use is kept per 10 s of billing time until
/// reconciliation hands it over to the database's figure.
pub const BUCKET_MS: i64 = 10_000;

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

/// A ledger's starting point: the key's use billed before `cutoff` (Unix ms), read from
/// `usage_events`. Settlements billed from `cutoff` on are added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSeed {
    pub used: i64,
    pub cutoff: i64,
}

/// A shared ledger as Redis holds it (for operators and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerState {
    pub used: i64,
    pub reserved: i64,
    /// The key's use before `cutoff`, from the database.
    pub base: i64,
    pub cutoff: i64,
}

static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RESERVE_SCRIPT));

impl SharedRedis {
    /// `<prefix>:budget:<key>`, `…:leases` and `…:spent`: one key's ledger.
    pub(super) fn ledger_keys(&self, key_id: i64) -> [String; 3] {
        let ledger = self.key("budget", key_id);
        let leases = format!("{ledger}:leases");
        let spent = format!("{ledger}:spent");
        [ledger, leases, spent]
    }

    /// `<prefix>:budget:ledgers`: the key ids of ledgers in use, by last reservation time.
    pub(super) fn ledgers_key(&self) -> String {
        self.key("budget", "ledgers")
    }

    /// One round trip: reserve `amount` tokens of key `key_id`'s `budget` in the shared ledger,
    /// as reservation `id` (unique per request). `seed` is the key's use from the database,
    /// given when a first call answered `Missing`. A reservation made is leased to this process,
    /// which renews the lease until the reservation is settled. When the call fails after it
    /// was sent, Redis may still have made the reservation: its release is queued like a
    /// settlement.
    pub async fn reserve_budget(
        &self,
        key_id: i64,
        budget: i64,
        amount: i64,
        id: u64,
        seed: Option<BudgetSeed>,
    ) -> Result<BudgetAnswer, String> {
        if self.backing_off() {
            return Err(self.refuse_while_backing_off());
        }
        let lease_ms = i64::try_from(self.budget_lease.as_millis()).unwrap_or(i64::MAX);
        let [ledger, leases, spent] = self.ledger_keys(key_id);
        let mut invocation = RESERVE.prepare_invoke();
        invocation
            .key(ledger)
            .key(leases)
            .key(spent)
            .key(self.ledgers_key())
            .arg(budget)
            .arg(amount)
            .arg(BUDGET_TTL_MS)
            .arg(lease_ms)
            .arg(id)
            .arg(key_id);
        if let Some(seed) = seed {
            invocation.arg(seed.used).arg(seed.cutoff);
        }
        let answer = match self.call::<Vec<i64>>(&invocation, self.timeout).await {
            Ok(answer) if answer.len() == 3 => answer,
            Ok(answer) => return Err(self.failed(format!("unexpected answer {answer:?}"))),
            Err(failure) => {
                // Redis may have reserved before the answer was lost: release it like a
                // settlement (a no-op if it did not).
                if failure.sent {
                    self.settle_budget(key_id, id, 0, now_millis());
                }
                return Err(failure.error);
            }
        };
        Ok(match answer[0] {
            1 => {
                self.leases
                    .hold(id, key_id, Instant::now() + self.budget_lease / 2);
                BudgetAnswer::Reserved {
                    used: answer[1],
                    reserved: answer[2],
                }
            }
            0 => BudgetAnswer::Refused {
                used: answer[1],
                reserved: answer[2],
            },
            _ => BudgetAnswer::Missing,
        })
    }

    /// Queues the end of shared reservation `id`: its tokens released and `used` tokens
    /// spent, billed at `billed_at_ms` (the usage event's `created_at`). The settlement is
    /// retried until Redis takes it; see [`super::settlements`].
    pub fn settle_budget(&self, key_id: i64, id: u64, used: i64, billed_at_ms: i64) {
        self.leases.release(id);
        self.enqueue_settlement(Settlement {
            key_id,
            id,
            used: used.max(0),
            billed_at_ms,
            queued: Instant::now(),
        });
    }

    /// One round trip: key `key_id`'s ledger as Redis holds it, if it exists.
    pub async fn budget_ledger(&self, key_id: i64) -> Result<Option<LedgerState>, String> {
        let [ledger, _, _] = self.ledger_keys(key_id);
        let mut command = redis::cmd("HMGET");
        command
            .arg(ledger)
            .arg("used")
            .arg("reserved")
            .arg("base")
            .arg("cutoff");
        let fields: Vec<Option<i64>> = self.query(&command).await?;
        Ok(match fields.as_slice() {
            [Some(used), Some(reserved), Some(base), Some(cutoff)] => Some(LedgerState {
                used: *used,
                reserved: *reserved,
                base: *base,
                cutoff: *cutoff,
            }),
            _ => None,
        })
    }
}
