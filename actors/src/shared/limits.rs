//! Rate limits shared by every replica: one Lua script decides the request bucket and the
//! token bucket of a subject atomically, so N gateways enforce one limit exactly. The script
//! mirrors [`crate::limits::gcra::Gcra`] in integer microseconds on Redis's own clock (`TIME`),
//! so replica clocks do not matter. A bucket's key expires when the bucket would be full again.

use std::sync::LazyLock;
use std::time::Duration;

use super::writes::Write;
use super::SharedRedis;
use crate::limits::gcra::{Gcra, GcraOutcome};
use crate::limits::local::status_of;
use crate::limits::{Admission, Decision, LimitKind};

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

static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ADMIT_SCRIPT));
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SETTLE_SCRIPT));

/// Microseconds per tick of a [`Gcra`] built for Redis: its interval in µs.
fn micros(gcra: Gcra) -> i64 {
    (gcra.interval / 1_000).max(1)
}

impl SharedRedis {
    fn bucket_key(&self, subject: &str, bucket: &str) -> String {
        self.key("rl", format_args!("{subject}:{bucket}"))
    }

    /// One round trip: the admission script, within the timeout.
    pub(crate) async fn admit_limits(&self, admission: &Admission<'_>) -> Result<Decision, String> {
        if self.backing_off() {
            return Err(self.refuse_while_backing_off());
        }
        let requests = admission.requests;
        let tokens = admission.tokens;
        let mut invocation = ADMIT.prepare_invoke();
        invocation
            .key(self.bucket_key(admission.subject, "r"))
            .key(self.bucket_key(admission.subject, "t"))
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
    pub(crate) fn settle_tokens(&self, subject: &str, gcra: Gcra, delta: i64) {
        if delta == 0 {
            return;
        }
        self.enqueue(Write::Correction {
            script: &SETTLE,
            key: self.bucket_key(subject, "t"),
            args: [micros(gcra), delta],
        });
    }
}
