//! The API-key cache: what every authenticated request consults, without a database round trip
//! once a key is warm. (The token-budget ledger is [`crate::budget`].)

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

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
    /// Which cache a thread's remembered secrets belong to (tests run several in one process).
    id: u64,
    /// Bumped by `invalidate_all`: what threads remembered before it is no longer used.
    generation: Arc<AtomicU64>,
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
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The live key this thread last found for `secret`, while the shared entry it came from
    /// is within its TTL: no hash of the secret, no shared cache. `None` sends the caller the
    /// long way (`store::keys::hash_key`, [`KeyCache::cached`]), which also answers revoked and
    /// expired keys.
    pub fn remembered(&self, secret: &str) -> Option<Arc<ApiKey>> {
        let generation = self.generation.load(Ordering::Acquire);
        let key = REMEMBERED.with_borrow(|map| {
            let entry = map.get(&Presented(secret.as_bytes()))?;
            let live = entry.cache == self.id
                && entry.generation == generation
                && Instant::now() < entry.fresh_until;
            live.then(|| Arc::clone(&entry.key))
        })?;
        match classify(Some(&key)) {
            KeyLookup::Valid(key) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(key)
            }
            _ => None,
        }
    }

    /// Lets this thread answer `secret` with `key` until the shared entry for `hash` ages out.
    /// Called after the long way found a live key; only live keys are remembered.
    pub async fn remember(&self, secret: &str, hash: &str, key: &Arc<ApiKey>) {
        // Read before the entry: an `invalidate_all` in between leaves this one unused.
        let generation = self.generation.load(Ordering::Acquire);
        let Some(entry) = self.entries.get(hash).await else {
            return;
        };
        if !Arc::ptr_eq(&entry.key, key) {
            return;
        }
        let remembered = Remembered {
            cache: self.id,
            generation,
            key: Arc::clone(key),
            fresh_until: entry.fetched_at + self.settings.ttl,
        };
        REMEMBERED.with_borrow_mut(|map| {
            // Bounded: a thread that has seen more live keys than this starts over.
            if map.len() >= REMEMBERED_PER_THREAD {
                map.clear();
            }
            map.insert(Secret(secret.as_bytes().into()), remembered);
        });
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

    /// Forgets every cached entry (after a local revocation or update), on every thread.
    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
        self.unknown.invalidate_all();
        // After the shared entries: a `remember` that reads the new generation can only have
        // read an entry from after the invalidation.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(0);

/// Live keys a thread has remembered per cache (`KeyCache::remembered`).
const REMEMBERED_PER_THREAD: usize = 1024;

thread_local! {
    // Per thread, so a hit touches no shared memory but the key's own counters. Keyed by the
    // secret itself (the request carried it anyway) under hashbrown's per-process random seed.
    static REMEMBERED: RefCell<hashbrown::HashMap<Secret, Remembered>> =
        RefCell::new(hashbrown::HashMap::new());
}

struct Remembered {
    cache: u64,
    generation: u64,
    key: Arc<ApiKey>,
    /// When the shared entry this came from stops being fresh.
    fresh_until: Instant,
}

/// A remembered secret.
struct Secret(Box<[u8]>);

/// A presented secret, looked up without copying; equal to a remembered one in constant time.
struct Presented<'a>(&'a [u8]);

impl Hash for Secret {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Presented(&self.0).hash(state);
    }
}

impl Hash for Presented<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for Secret {}

impl hashbrown::Equivalent<Secret> for Presented<'_> {
    fn equivalent(&self, secret: &Secret) -> bool {
        bool::from(self.0.ct_eq(&secret.0))
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
    use crate::store::keys::{hash_key, KeyLimits, NewKey};

    async fn store_with_key() -> (Store, String, tempfile::TempDir) {
        let (store, dir) = crate::store::migrated_sqlite_for_tests();
        let new = NewKey {
            name: "front".into(),
            owner: None,
            limits: KeyLimits::default(),
        };
        let (_, secret) = store.create_key(&new).await.expect("key");
        (store, secret, dir)
    }

    fn cache(store: &Store, ttl: Duration) -> KeyCache {
        KeyCache::new(
            store.clone(),
            KeyCacheSettings {
                ttl,
                ..KeyCacheSettings::default()
            },
        )
    }

    /// The long way, as `gateway::auth` takes it: hash, shared cache or database, remember.
    async fn look_up(cache: &KeyCache, secret: &str) -> Arc<ApiKey> {
        let hash = hash_key(secret);
        let KeyLookup::Valid(key) = cache.lookup_hash(&hash).await.expect("lookup") else {
            panic!("the key is live");
        };
        cache.remember(secret, &hash, &key).await;
        key
    }

    #[actix_rt::test]
    async fn a_thread_remembers_live_keys_until_an_invalidation() {
        let (store, secret, _dir) = store_with_key().await;
        let keys = cache(&store, Duration::from_secs(60));
        assert_eq!(keys.remembered(&secret), None, "nothing before a lookup");
        let key = look_up(&keys, &secret).await;
        let remembered = keys.remembered(&secret).expect("remembered");
        assert!(Arc::ptr_eq(&remembered, &key));

        // Another secret of the same shape, one byte apart, is not the key.
        let mut other = secret.clone().into_bytes();
        let last = other.len() - 1;
        other[last] = if other[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.remembered(std::str::from_utf8(&other).expect("ascii")),
            None
        );

        // Another cache (another gateway in this process) does not see this cache's keys.
        let (other_store, _, _other_dir) = store_with_key().await;
        assert_eq!(
            cache(&other_store, Duration::from_secs(60)).remembered(&secret),
            None
        );

        // A local revocation invalidates every cache, and every thread's memory with it.
        assert!(store.revoke_key(key.id).await.expect("revoke"));
        keys.invalidate_all();
        assert_eq!(keys.remembered(&secret), None);
        let hash = hash_key(&secret);
        assert_eq!(
            keys.lookup_hash(&hash).await.expect("lookup"),
            KeyLookup::Revoked
        );
    }

    #[actix_rt::test]
    async fn nothing_is_remembered_past_the_shared_entrys_ttl() {
        let (store, secret, _dir) = store_with_key().await;
        // With no TTL the shared entry is stale as soon as it is read, and so is the memory.
        let keys = cache(&store, Duration::ZERO);
        look_up(&keys, &secret).await;
        assert_eq!(keys.remembered(&secret), None);
    }

    #[actix_rt::test]
    async fn other_threads_look_their_own_way() {
        let (store, secret, _dir) = store_with_key().await;
        let keys = cache(&store, Duration::from_secs(60));
        look_up(&keys, &secret).await;
        let elsewhere = {
            let (keys, secret) = (keys.clone(), secret.clone());
            std::thread::spawn(move || keys.remembered(&secret))
                .join()
                .expect("thread")
        };
        assert_eq!(elsewhere, None);
        assert!(keys.remembered(&secret).is_some());
    }

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
