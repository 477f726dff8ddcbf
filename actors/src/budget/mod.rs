//! The token-budget ledger: a request reserves its worst case before forwarding and settles to
//! what it really used, so concurrent requests can never overspend a key's budget together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::{Store, StoreError};

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
    /// while Redis fails.
    shared: Option<Arc<crate::shared::SharedRedis>>,
}

/// Tokens held for one request until it settles. Dropping it unsettled releases them.
#[derive(Debug)]
pub struct Reservation {
    account: Arc<BudgetAccount>,
    amount: i64,
    settled: bool,
    /// Set when the shared ledger holds the reservation: (ledger, key id).
    shared: Option<(Arc<crate::shared::SharedRedis>, i64)>,
}

impl Reservation {
    /// Replaces the reservation with the tokens actually used.
    pub fn settle(mut self, used: i64) {
        // The local account learns the spending either way, so a fallback after a Redis
        // failure starts from this process's best view.
        self.account.used.fetch_add(used.max(0), Ordering::SeqCst);
        match &self.shared {
            Some((ledger, key_id)) => ledger.settle_budget(*key_id, self.amount, used.max(0)),
            None => {
                self.account
                    .reserved
                    .fetch_sub(self.amount, Ordering::SeqCst);
            }
        }
        self.settled = true;
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            match &self.shared {
                Some((ledger, key_id)) => ledger.settle_budget(*key_id, self.amount, 0),
                None => {
                    self.account
                        .reserved
                        .fetch_sub(self.amount, Ordering::SeqCst);
                }
            }
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
    /// Redis fails, this process's ledger decides, as for the other limits' `local` fallback.
    pub fn with_shared(mut self, shared: Arc<crate::shared::SharedRedis>) -> Self {
        self.shared = Some(shared);
        self
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
    /// key reads what it has already used from the database; after that no query is made.
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
            // On a Redis failure (warned and counted by the limiter) this process decides.
            if let Ok(outcome) = self
                .reserve_shared(ledger, &account, key_id, budget, amount)
                .await
            {
                return outcome;
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
        ledger: &Arc<crate::shared::SharedRedis>,
        account: &Arc<BudgetAccount>,
        key_id: i64,
        budget: i64,
        amount: i64,
    ) -> Result<Result<Reservation, BudgetError>, String> {
        use crate::shared::BudgetAnswer;
        let mut answer = ledger.reserve_budget(key_id, budget, amount, None).await?;
        if answer == BudgetAnswer::Missing {
            // First use anywhere (or after the ledger idled out): seed it from the database.
            let used = self
                .store
                .tokens_used(key_id)
                .await
                .map_err(|e| e.to_string())?;
            answer = ledger
                .reserve_budget(key_id, budget, amount, Some(used))
                .await?;
        }
        Ok(match answer {
            BudgetAnswer::Reserved { .. } => Ok(Reservation {
                account: Arc::clone(account),
                amount,
                settled: false,
                shared: Some((Arc::clone(ledger), key_id)),
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
