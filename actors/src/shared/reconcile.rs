//! Reconciliation's Redis half: which ledgers are in use, who reconciles this round, and the
//! script that replaces a ledger's use before a cutoff with the database's figure while
//! keeping what was settled since (see [`super::budget`] for the ledger's layout and
//! [`crate::budget::reconcile`] for the round).

use std::sync::LazyLock;
use std::time::Duration;

use super::budget::{BUCKET_MS, BUDGET_TTL_MS};
use super::SharedRedis;

/// Claims this round (KEYS[1], `SET NX` for ARGV[1] ms) and, if claimed, answers the key ids
/// of the ledgers in use (KEYS[2]) after dropping those idle longer than a ledger lives
/// (ARGV[2] ms). Another replica's round answers nothing.
const CLAIM_SCRIPT: &str = r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now - tonumber(ARGV[2])))
return redis.call('ZRANGE', KEYS[2], 0, -1)
";

/// Reconciles ledgers at cutoff ARGV[1] (a multiple of the bucket width): ledger i has
/// KEYS[2i-1..2i] (ledger, spent) and ARGV[1+i], its use billed before the cutoff according to
/// the database. Buckets wholly before the cutoff are dropped (the database counts them);
/// `used` becomes the database's figure plus the buckets kept. A ledger seeded after the
/// cutoff keeps its own, newer base, and `used` is counted again from it and its buckets.
/// Returns per ledger {1 reconciled | 2 counted again | -1 gone, used before, used after}.
const RECONCILE_SCRIPT: &str = r"
local function int(n) return string.format('%d', n) end
local out = {}
for i = 1, #KEYS / 2 do
  local ledger, spent = KEYS[2 * i - 1], KEYS[2 * i]
  local before = tonumber(redis.call('HGET', ledger, 'used'))
  local state, after = -1, 0
  if before == nil then
    before = 0
  else
    local cutoff, base = tonumber(ARGV[1]), tonumber(ARGV[1 + i])
    state = 1
    local own = tonumber(redis.call('HGET', ledger, 'cutoff'))
    if cutoff < own then
      state, cutoff, base = 2, own, tonumber(redis.call('HGET', ledger, 'base'))
    end
    after = base
    local buckets = redis.call('HGETALL', spent)
    for j = 1, #buckets, 2 do
      if (tonumber(buckets[j]) + 1) * BUCKET_MS <= cutoff then
        redis.call('HDEL', spent, buckets[j])
      else
        after = after + tonumber(buckets[j + 1])
      end
    end
    redis.call('HSET', ledger, 'used', int(after), 'base', int(base), 'cutoff', int(cutoff))
  end
  out[#out + 1] = state
  out[#out + 1] = before
  out[#out + 1] = after
end
return out
";

static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CLAIM_SCRIPT));
static RECONCILE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&RECONCILE_SCRIPT.replace("BUCKET_MS", &BUCKET_MS.to_string()))
});

/// Ledgers per reconciliation script call.
const BATCH: usize = 64;

/// What reconciling one key's ledger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// `used` went from `before` to `after` (equal when the ledger agreed). `from_database` is
    /// false for a ledger seeded after the cutoff: it kept its own base and was counted again.
    Corrected {
        key_id: i64,
        before: i64,
        after: i64,
        from_database: bool,
    },
    /// The ledger had gone (idle); nothing to do.
    Gone { key_id: i64 },
}

impl SharedRedis {
    /// One round trip: claims the reconciliation round for `hold` (other replicas skip theirs
    /// meanwhile) and answers the key ids of the ledgers in use; empty when another replica
    /// has the round.
    pub async fn claim_reconciliation(&self, hold: Duration) -> Result<Vec<i64>, String> {
        if self.backing_off() {
            return Err("redis is backing off after a failure".into());
        }
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(self.key("budget", "reconciling"))
            .key(self.ledgers_key())
            .arg(hold_ms)
            .arg(BUDGET_TTL_MS);
        self.invoke(&invocation, self.settle_timeout()).await
    }

    /// Replaces each ledger's use before `cutoff` (Unix ms, rounded down to the bucket width)
    /// with `(key id, tokens used before the cutoff)` as the database counts them. Ledgers that
    /// are gone leave the list of ledgers in use.
    pub async fn reconcile_budgets(
        &self,
        cutoff: i64,
        used_before: &[(i64, i64)],
    ) -> Result<Vec<Reconciled>, String> {
        let cutoff = cutoff - cutoff.rem_euclid(BUCKET_MS);
        let mut outcomes = Vec::with_capacity(used_before.len());
        for chunk in used_before.chunks(BATCH) {
            let mut invocation = RECONCILE.prepare_invoke();
            invocation.arg(cutoff);
            for &(key_id, used) in chunk {
                let [ledger, _, spent] = self.ledger_keys(key_id);
                invocation.key(ledger).key(spent).arg(used);
            }
            let answer = self
                .run_script_within(&invocation, chunk.len() * 3, self.settle_timeout())
                .await?;
            for (&(key_id, _), result) in chunk.iter().zip(answer.chunks(3)) {
                outcomes.push(match result[0] {
                    -1 => Reconciled::Gone { key_id },
                    state => Reconciled::Corrected {
                        key_id,
                        before: result[1],
                        after: result[2],
                        from_database: state == 1,
                    },
                });
            }
        }
        let gone: Vec<i64> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Reconciled::Gone { key_id } => Some(*key_id),
                _ => None,
            })
            .collect();
        if !gone.is_empty() {
            let mut command = redis::cmd("ZREM");
            command.arg(self.ledgers_key()).arg(gone);
            self.query::<i64>(&command).await?;
        }
        Ok(outcomes)
    }
}
