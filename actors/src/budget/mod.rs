//! The token-budget ledger: a request reserves its worst case before forwarding and settles to
//! what it really used, so concurrent requests can never overspend a key's budget together.
//!
//! Without Redis the ledger is this process's ([`BudgetLedger::reserve`] decides on atomics).
//! With Redis every replica shares one ledger per key ([`crate::shared`]'s budget scripts):
//! reservations are leased to their process, settlements are retried until Redis takes them,
//! and [`reconcile`] periodically re-derives each ledger's use from `usage_events`. When Redis
//! cannot decide, `RedisFailureMode::Deny` refuses the request; otherwise this process's
//! ledger decides, as before.

pub mod reconcile;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::shared::{BudgetAnswer, BudgetSeed, RedisFailureMode, SharedRedis};
use crate::store::{now_millis, Store, StoreError};

pub use reconcile::BudgetReconciler;

/// One key's spending: settled tokens plus tokens reserved by requests in flight.
#[derive(Debug, Default)]
struct BudgetAccount {
    used: AtomicI64,
    reserved: AtomicI64,
    loaded: tokio::sync::OnceCell<()>,
}

/// Why a reservation was refused.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("the key's token budget is exhausted ({used} of {budget} used, {reserved} reserved, {requested} requested)")]
    Exhausted {
        budget: i64,
        used: i64,
        reserved: i64,
        requested: i64,
    },
    /// Redis could not decide and `RATE_LIMIT_REDIS_FAILURE=deny`: no process decides a
    /// shared budget alone.
    #[error("the shared budget ledger cannot decide right now ({0})")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Token budgets, enforced before forwarding: a request reserves its worst case and settles
/// to what it really used, so concurrent requests can never overspend together.
///
/// This ledger is exact within one gateway process; the shared (Redis) ledger keeps the same
/// `reserve`/`settle` shape for several replicas.
#[derive(Clone)]
pub struct BudgetLedger {
    store: Store,
    accounts: Arc<Mutex<HashMap<i64, Arc<BudgetAccount>>>>,
    /// With Redis, the ledger every replica shares; the in-process accounts then only decide
    /// while Redis fails (unless the failure mode is `Deny`).
    shared: Option<Arc<SharedRedis>>,
}

/// A reservation the shared ledger holds: which ledger, key and reservation id.
#[derive(Debug)]
struct SharedHold {
    ledger: Arc<SharedRedis>,
    key_id: i64,
    id: u64,
}

/// Tokens held for one request until it settles. Dropping it unsettled releases them.
#[derive(Debug)]
pub struct Reservation {
    account: Arc<BudgetAccount>,
    amount: i64,
    settled: bool,
    /// Set when the shared ledger holds the reservation.
    shared: Option<SharedHold>,
}

impl Reservation {
    /// Replaces the reservation with the tokens actually used, billed at `billed_at_ms` (Unix
    /// ms): the `created_at` of the request's usage event, by which the shared ledger and
    /// reconciliation tell the database's part of the use from the ledger's.
    pub fn settle(mut self, used: i64, billed_at_ms: i64) {
        // The local account learns the spending either way, so a fallback after a Redis
        // failure starts from this process's best view.
        self.account.used.fetch_add(used.max(0), Ordering::SeqCst);
        self.end(used.max(0), billed_at_ms);
        self.settled = true;
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }

    fn end(&self, used: i64, billed_at_ms: i64) {
        match &self.shared {
            Some(hold) => hold
                .ledger
                .settle_budget(hold.key_id, hold.id, used, billed_at_ms),
            None => {
                self.account
                    .reserved
                    .fetch_sub(self.amount, Ordering::SeqCst);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.end(0, now_millis());
        }
    }
}

impl BudgetLedger {
    pub fn new(store: Store) -> Self {
        BudgetLedger {
            store,
            accounts: Arc::new(Mutex::new(HashMap::new())),
            shared: None,
        }
    }

    /// Budgets shared by every replica through Redis (one atomic script per reservation). When
    /// Redis fails, the failure mode decides: `Deny` refuses, `Local` and `Allow` let this
    /// process's ledger decide (a budget is never waved through unlimited).
    pub fn with_shared(mut self, shared: Arc<SharedRedis>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The shared ledger, when budgets go through Redis.
    pub fn shared(&self) -> Option<&Arc<SharedRedis>> {
        self.shared.as_ref()
    }

    /// Tokens this process's accounts hold for requests in flight (the shared ledger's own
    /// reservations live in Redis). Non-zero while nothing is in flight means a reservation
    /// leaked: the `gateway_budget_reserved_tokens` gauge and its drift alert watch this.
    pub fn reserved_tokens(&self) -> i64 {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts
            .values()
            .map(|account| account.reserved.load(Ordering::Relaxed))
            .sum()
    }

    fn account(&self, key_id: i64) -> Arc<BudgetAccount> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(accounts.entry(key_id).or_default())
    }

    /// Reserves `amount` tokens of `budget` for a request of key `key_id`. The first use of a
    /// key reads what it has already used from the database; after that no query is made
    /// (the shared ledger reads it once more when it is seeded).
    pub async fn reserve(
        &self,
        key_id: i64,
        budget: i64,
        amount: i64,
    ) -> Result<Reservation, BudgetError> {
        let account = self.account(key_id);
        account
            .loaded
            .get_or_try_init(|| async {
                let used = self.store.tokens_used(key_id).await?;
                account.used.store(used, Ordering::SeqCst);
                Ok::<(), StoreError>(())
            })
            .await?;
        let amount = amount.max(1);
        if let Some(ledger) = &self.shared {
            // On a Redis failure (warned and counted by the limiter) the failure mode decides.
            match self
                .reserve_shared(ledger, &account, key_id, budget, amount)
                .await
            {
                Ok(outcome) => return outcome,
                Err(error) if ledger.failure_mode() == RedisFailureMode::Deny => {
                    return Err(BudgetError::Unavailable(error));
                }
                Err(_) => {}
            }
        }
        let reserved =
            account
                .reserved
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |reserved| {
                    let used = account.used.load(Ordering::SeqCst);
                    // Saturating: `amount` comes from the client's numbers.
                    (used.saturating_add(reserved).saturating_add(amount) <= budget)
                        .then_some(reserved.saturating_add(amount))
                });
        match reserved {
            Ok(_) => Ok(Reservation {
                account,
                amount,
                settled: false,
                shared: None,
            }),
            Err(reserved) => Err(BudgetError::Exhausted {
                budget,
                used: account.used.load(Ordering::SeqCst),
                reserved,
                requested: amount,
            }),
        }
    }

    /// The shared ledger's decision; `Err` when Redis could not decide.
    async fn reserve_shared(
        &self,
        ledger: &Arc<SharedRedis>,
        account: &Arc<BudgetAccount>,
        key_id: i64,
        budget: i64,
        amount: i64,
    ) -> Result<Result<Reservation, BudgetError>, String> {
        // The reservation's name in the ledger, so its settlement can be retried safely.
        let id = rand::random::<u64>();
        let mut answer = ledger
            .reserve_budget(key_id, budget, amount, id, None)
            .await?;
        if answer == BudgetAnswer::Missing {
            // First use anywhere (or after the ledger idled out): seed it from the database
            // with the use billed before now; settlements billed from now on add the rest.
            let cutoff = now_millis();
            let used = match self.store.tokens_used_before(key_id, cutoff).await {
                Ok(used) => used,
                Err(error) => return Ok(Err(error.into())),
            };
            let seed = BudgetSeed { used, cutoff };
            answer = ledger
                .reserve_budget(key_id, budget, amount, id, Some(seed))
                .await?;
        }
        Ok(match answer {
            BudgetAnswer::Reserved { .. } => Ok(Reservation {
                account: Arc::clone(account),
                amount,
                settled: false,
                shared: Some(SharedHold {
                    ledger: Arc::clone(ledger),
                    key_id,
                    id,
                }),
            }),
            BudgetAnswer::Refused { used, reserved } => Err(BudgetError::Exhausted {
                budget,
                used,
                reserved,
                requested: amount,
            }),
            BudgetAnswer::Missing => return Err("the budget ledger was not seeded".into()),
        })
    }
}
