//! The API-key cache and the token-budget ledger: what every authenticated request consults,
//! without a database round trip once a key is warm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::keys::{hash_key, KeyRow};
use crate::store::{now_millis, Store, StoreError};

/// A key as the request path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub token_budget: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub max_concurrency: Option<i64>,
}

impl From<&KeyRow> for ApiKey {
    fn from(row: &KeyRow) -> Self {
        ApiKey {
            id: row.id,
            name: row.name.clone(),
            prefix: row.prefix.clone(),
            expires_at: row.expires_at,
            revoked: row.revoked_at.is_some(),
            rpm: row.rpm,
            tpm: row.tpm,
            token_budget: row.token_budget,
            allowed_models: row.allowed_models(),
            max_concurrency: row.max_concurrency,
        }
    }
}

impl ApiKey {
    /// Whether the key may use `model` (the name the client sent). An allow-list entry
    /// `service/*` allows every model of that service.
    pub fn allows(&self, model: &str, service: &str) -> bool {
        let Some(allowed) = &self.allowed_models else {
            return true;
        };
        allowed.iter().any(|entry| {
            entry == model
                || entry
                    .strip_suffix("/*")
                    .is_some_and(|prefix| prefix == service)
        })
    }
}

/// The outcome of looking a secret up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    Valid(Arc<ApiKey>),
    Unknown,
    Revoked,
    Expired,
}

#[derive(Debug, Clone)]
pub struct KeyCacheSettings {
    /// How long a looked-up key (or a miss) is trusted; revocation reaches every replica
    /// within this time.
    pub ttl: Duration,
    /// How long a cached key keeps working while the database is unreachable.
    pub max_stale: Duration,
    pub capacity: u64,
}

impl Default for KeyCacheSettings {
    fn default() -> Self {
        KeyCacheSettings {
            ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(600),
            capacity: 100_000,
        }
    }
}

#[derive(Debug)]
struct CacheEntry {
    key: Option<Arc<ApiKey>>,
    fetched_at: Instant,
}

/// Key lookups by hash, cached with a short TTL; the database is asked only on a miss or when
/// an entry has aged out, and a stale entry keeps serving while the database is down.
#[derive(Clone)]
pub struct KeyCache {
    store: Store,
    entries: moka::future::Cache<String, Arc<CacheEntry>>,
    settings: KeyCacheSettings,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    /// Until when (Instant-free Unix ms) the database counts as down: stale entries are then
    /// served without another attempt, so an outage does not slow every request.
    down_until_ms: Arc<AtomicI64>,
}

/// After a failed lookup, stale entries are served without asking the database for this long.
const DOWN_BACKOFF_MS: i64 = 2_000;

impl KeyCache {
    pub fn new(store: Store, settings: KeyCacheSettings) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .time_to_live(settings.max_stale)
            .build();
        KeyCache {
            store,
            entries,
            settings,
            hits: Arc::new(AtomicU64::new(0)),
            misses: Arc::new(AtomicU64::new(0)),
            down_until_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    pub async fn lookup(&self, secret: &str) -> Result<KeyLookup, StoreError> {
        self.lookup_hash(&hash_key(secret)).await
    }

    /// [`lookup`](Self::lookup) by the secret's hash: what a WebSocket session keeps to check
    /// its key again, instead of the secret.
    pub async fn lookup_hash(&self, hash: &str) -> Result<KeyLookup, StoreError> {
        let cached = self.entries.get(hash).await;
        if let Some(entry) = &cached {
            if entry.fetched_at.elapsed() < self.settings.ttl {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(classify(entry.key.as_ref()));
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(stale) = &cached {
            if now_millis() < self.down_until_ms.load(Ordering::Relaxed) {
                return Ok(classify(stale.key.as_ref()));
            }
        }
        match self.store.find_key_by_hash(hash).await {
            Ok(row) => {
                let entry = Arc::new(CacheEntry {
                    key: row.as_ref().map(|r| Arc::new(ApiKey::from(r))),
                    fetched_at: Instant::now(),
                });
                let outcome = classify(entry.key.as_ref());
                self.entries.insert(hash.to_string(), entry).await;
                Ok(outcome)
            }
            Err(error) => match cached {
                Some(stale) => {
                    self.down_until_ms
                        .store(now_millis() + DOWN_BACKOFF_MS, Ordering::Relaxed);
                    tracing::warn!(%error, "database unavailable; using a cached API key");
                    Ok(classify(stale.key.as_ref()))
                }
                None => Err(error),
            },
        }
    }

    /// Forgets every cached entry (after a local revocation or update).
    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }
}

fn classify(key: Option<&Arc<ApiKey>>) -> KeyLookup {
    match key {
        None => KeyLookup::Unknown,
        Some(key) if key.revoked => KeyLookup::Revoked,
        Some(key) if key.expires_at.is_some_and(|at| at <= now_millis()) => KeyLookup::Expired,
        Some(key) => KeyLookup::Valid(Arc::clone(key)),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(allowed: Option<Vec<&str>>) -> ApiKey {
        ApiKey {
            id: 1,
            name: "k".into(),
            prefix: "sk-gw-abc…".into(),
            expires_at: None,
            revoked: false,
            rpm: None,
            tpm: None,
            token_budget: None,
            allowed_models: allowed.map(|l| l.into_iter().map(String::from).collect()),
            max_concurrency: None,
        }
    }

    #[test]
    fn allow_lists_match_names_and_service_wildcards() {
        assert!(key(None).allows("anything", "svc"));
        let limited = key(Some(vec!["smollm2", "openai/*"]));
        assert!(limited.allows("smollm2", "python-models"));
        assert!(limited.allows("openai/gpt-4o", "openai"));
        assert!(!limited.allows("python-models/x", "python-models"));
        assert!(!key(Some(vec![])).allows("smollm2", "python-models"));
    }

    #[test]
    fn classification_respects_revocation_and_expiry() {
        let valid = Arc::new(key(None));
        assert_eq!(classify(Some(&valid)), KeyLookup::Valid(Arc::clone(&valid)));
        assert_eq!(classify(None), KeyLookup::Unknown);
        let revoked = Arc::new(ApiKey {
            revoked: true,
            ..key(None)
        });
        assert_eq!(classify(Some(&revoked)), KeyLookup::Revoked);
        let expired = Arc::new(ApiKey {
            expires_at: Some(now_millis() - 1),
            ..key(None)
        });
        assert_eq!(classify(Some(&expired)), KeyLookup::Expired);
    }
}
