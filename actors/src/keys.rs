//! The API-key cache: what every authenticated request consults, without a database round trip
//! once a key is warm. (The token-budget ledger is [`crate::budget`].)

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::keys::KeyRow;
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

/// What the cache alone knows of a hash ([`KeyCache::cached`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Answered within the TTL (a key, or a hash the database did not know).
    Answer(KeyLookup),
    /// A key this cache has held, aged out: a lookup is a refresh, not a guess.
    Stale,
    /// Never seen (or long forgotten).
    Absent,
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
    /// Secrets known not to be keys, remembered for `ttl` in a cache of their own: a flood of
    /// made-up keys can neither reach the database twice in a TTL nor evict real keys.
    pub unknown_capacity: u64,
}

impl Default for KeyCacheSettings {
    fn default() -> Self {
        KeyCacheSettings {
            ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(600),
            capacity: 100_000,
            unknown_capacity: 10_000,
        }
    }
}

#[derive(Debug)]
struct CacheEntry {
    key: Arc<ApiKey>,
    fetched_at: Instant,
}

/// Key lookups by hash, cached with a short TTL; the database is asked only on a miss or when
/// an entry has aged out, and a stale entry keeps serving while the database is down.
#[derive(Clone)]
pub struct KeyCache {
    store: Store,
    entries: moka::future::Cache<String, Arc<CacheEntry>>,
    /// Hashes the database did not know, for `settings.ttl`.
    unknown: moka::future::Cache<String, ()>,
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
        let unknown = moka::future::Cache::builder()
            .max_capacity(settings.unknown_capacity)
            .time_to_live(settings.ttl)
            .build();
        KeyCache {
            store,
            entries,
            unknown,
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

    /// Looks a key up by its secret's hash (`store::keys::hash_key`): through the cache, then
    /// the database. A WebSocket session keeps the hash, not the secret, to check its key again.
    pub async fn lookup_hash(&self, hash: &str) -> Result<KeyLookup, StoreError> {
        let cached = self.entries.get(hash).await;
        if let Some(answer) = self.fresh(cached.as_deref(), hash) {
            return Ok(answer);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(stale) = &cached {
            if now_millis() < self.down_until_ms.load(Ordering::Relaxed) {
                return Ok(classify(Some(&stale.key)));
            }
        }
        match self.store.find_key_by_hash(hash).await {
            Ok(Some(row)) => {
                let key = Arc::new(ApiKey::from(&row));
                let outcome = classify(Some(&key));
                let entry = Arc::new(CacheEntry {
                    key,
                    fetched_at: Instant::now(),
                });
                self.entries.insert(hash.to_string(), entry).await;
                Ok(outcome)
            }
            Ok(None) => {
                if cached.is_some() {
                    self.entries.invalidate(hash).await;
                }
                self.unknown.insert(hash.to_string(), ()).await;
                Ok(KeyLookup::Unknown)
            }
            Err(error) => match cached {
                Some(stale) => {
                    self.down_until_ms
                        .store(now_millis() + DOWN_BACKOFF_MS, Ordering::Relaxed);
                    tracing::warn!(%error, "database unavailable; using a cached API key");
                    Ok(classify(Some(&stale.key)))
                }
                None => Err(error),
            },
        }
    }

    /// What the cache can tell of `hash` without the database: an answer (a key read within
    /// the TTL, or a hash the database did not know within the TTL), a key it held that has
    /// aged out, or nothing.
    pub async fn cached(&self, hash: &str) -> Cached {
        let cached = self.entries.get(hash).await;
        match self.fresh(cached.as_deref(), hash) {
            Some(answer) => Cached::Answer(answer),
            None if cached.is_some() => Cached::Stale,
            None => Cached::Absent,
        }
    }

    fn fresh(&self, cached: Option<&CacheEntry>, hash: &str) -> Option<KeyLookup> {
        let answer = match cached {
            Some(entry) if entry.fetched_at.elapsed() < self.settings.ttl => {
                classify(Some(&entry.key))
            }
            _ if self.unknown.contains_key(hash) => KeyLookup::Unknown,
            _ => return None,
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(answer)
    }

    /// Forgets every cached entry (after a local revocation or update).
    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
        self.unknown.invalidate_all();
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
