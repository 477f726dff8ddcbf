//! Who a dashboard token's user is now. A token names its user and the role it had at login;
//! [`UserCache`] reads the user's current role (or its absence) through a short TTL, so a
//! deleted or demoted user loses access within seconds without a database round trip per
//! admin request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::users::{Role, UserRow};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct UserCacheSettings {
    /// How long a looked-up user (or its absence) is trusted: deletion and demotion reach
    /// every replica within this time.
    pub ttl: Duration,
    /// How long a cached user keeps answering while the database is unreachable.
    pub max_stale: Duration,
    pub capacity: u64,
}

impl Default for UserCacheSettings {
    fn default() -> Self {
        UserCacheSettings {
            ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(600),
            capacity: 10_000,
        }
    }
}

/// What the database says of a user now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentUser {
    pub role: Role,
    /// Unix milliseconds: a token issued before it was meant for a user of the same name who
    /// has since been deleted.
    pub created_at: i64,
}

impl From<&UserRow> for CurrentUser {
    fn from(row: &UserRow) -> Self {
        CurrentUser {
            // A role this build does not know grants the least.
            role: Role::parse(&row.role).unwrap_or(Role::Viewer),
            created_at: row.created_at,
        }
    }
}

#[derive(Debug)]
struct Entry {
    user: Option<CurrentUser>,
    fetched_at: Instant,
}

/// Users by name, cached for `ttl`; a stale entry answers while the database is down.
#[derive(Clone)]
pub struct UserCache {
    store: Store,
    entries: moka::future::Cache<String, Arc<Entry>>,
    settings: UserCacheSettings,
}

impl UserCache {
    pub fn new(store: Store, settings: UserCacheSettings) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .time_to_live(settings.max_stale.max(settings.ttl))
            .build();
        UserCache {
            store,
            entries,
            settings,
        }
    }

    /// The user named `username` as the database said at most `ttl` ago; `None` when there is
    /// no such user.
    pub async fn current(&self, username: &str) -> Result<Option<CurrentUser>, StoreError> {
        let cached = self.entries.get(username).await;
        if let Some(entry) = &cached {
            if entry.fetched_at.elapsed() < self.settings.ttl {
                return Ok(entry.user);
            }
        }
        match self.store.find_user(username).await {
            Ok(row) => {
                let user = row.as_ref().map(CurrentUser::from);
                let entry = Arc::new(Entry {
                    user,
                    fetched_at: Instant::now(),
                });
                self.entries.insert(username.to_string(), entry).await;
                Ok(user)
            }
            Err(error) => match cached {
                Some(stale) => {
                    tracing::warn!(%error, "database unavailable; using a cached user");
                    Ok(stale.user)
                }
                None => Err(error),
            },
        }
    }

    /// Forgets one user (after a local deletion or role change).
    pub async fn invalidate(&self, username: &str) {
        self.entries.invalidate(username).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(store: &Store, ttl: Duration) -> UserCache {
        let settings = UserCacheSettings {
            ttl,
            ..UserCacheSettings::default()
        };
        UserCache::new(store.clone(), settings)
    }

    #[actix_rt::test]
    async fn changes_are_seen_after_the_ttl_or_a_local_invalidation() {
        let (store, _dir) = crate::store::migrated_sqlite_for_tests();
        store
            .create_user("ada", "a long password", Role::Admin)
            .await
            .expect("user");
        let role = |user: Option<CurrentUser>| user.map(|u| u.role);

        // Within the TTL the cache answers: a change made elsewhere is not seen yet...
        let trusting = cache(&store, Duration::from_secs(3600));
        assert_eq!(
            role(trusting.current("ada").await.expect("read")),
            Some(Role::Admin)
        );
        store
            .set_user_role("ada", Role::Viewer)
            .await
            .expect("demote");
        assert_eq!(
            role(trusting.current("ada").await.expect("read")),
            Some(Role::Admin)
        );
        // ...until this process forgets it,
        trusting.invalidate("ada").await;
        assert_eq!(
            role(trusting.current("ada").await.expect("read")),
            Some(Role::Viewer)
        );

        // and with the TTL gone by, the database is read again.
        let expired = cache(&store, Duration::ZERO);
        assert_eq!(
            role(expired.current("ada").await.expect("read")),
            Some(Role::Viewer)
        );
        assert!(store.delete_user("ada").await.expect("delete"));
        assert_eq!(expired.current("ada").await.expect("read"), None);
        assert!(!store.delete_user("ada").await.expect("delete again"));
        assert_eq!(
            store.set_user_role("ada", Role::Admin).await.expect("set"),
            None
        );
    }
}
