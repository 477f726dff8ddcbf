//! The shared budget ledger: `<prefix>:budget:<key>` (`used`, `reserved`), one script to
//! reserve a request's worst case and one to settle it to real use. It is its own script, not
//! folded into the rate-limit one: a budget is checked whenever a key has one, limits on or
//! off, and only a missing ledger needs the seed from the database.

use std::sync::LazyLock;

use super::writes::Write;
use super::SharedRedis;

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

static RESERVE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(BUDGET_RESERVE_SCRIPT));
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(BUDGET_SETTLE_SCRIPT));

impl SharedRedis {
    /// One round trip: reserve `amount` tokens of key `key_id`'s `budget` in the shared ledger.
    /// `seed` is the key's use from the database, given when a first call answered `Missing`.
    pub async fn reserve_budget(
        &self,
        key_id: i64,
        budget: i64,
        amount: i64,
        seed: Option<i64>,
    ) -> Result<BudgetAnswer, String> {
        if self.backing_off() {
            return Err(self.refuse_while_backing_off());
        }
        let mut invocation = RESERVE.prepare_invoke();
        invocation
            .key(self.key("budget", key_id))
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

    /// Queues the end of a shared budget reservation: `reserved` released, `used` spent.
    pub fn settle_budget(&self, key_id: i64, reserved: i64, used: i64) {
        self.enqueue(Write::Correction {
            script: &SETTLE,
            key: self.key("budget", key_id),
            args: [reserved, used],
        });
    }
}
