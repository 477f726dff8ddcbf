//! Persistence with Diesel: API keys, usage events and users, on SQLite (the embedded default)
//! or PostgreSQL. Queries are written once and run on either backend through [`with_conn!`].

mod blocking;
pub mod dead_letters;
pub mod keys;
mod migrate;
pub mod schema;
pub mod text;
pub mod usage;
pub mod users;

use std::path::PathBuf;
use std::time::Duration;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

/// SQLite's connection: a sync connection whose statements run on the blocking pool and,
/// when a caller stops waiting, finish before anything else uses the connection
/// ([`blocking::FinishOnDrop`]).
pub type SqliteConnection = SyncConnectionWrapper<diesel::SqliteConnection, blocking::FinishOnDrop>;

/// Where the data lives, from `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseTarget {
    /// Unset → `data/gateway.db`; `sqlite://<path>` (or `sqlite:<path>`) → that file;
    /// `postgres://` or `postgresql://` → PostgreSQL.
    pub fn parse(url: Option<&str>) -> Result<DatabaseTarget, StoreError> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(DatabaseTarget::Sqlite(PathBuf::from("data/gateway.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(url.to_string()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Config("sqlite:// needs a file path".into()));
            }
            return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
        }
        Err(StoreError::Config(format!(
            "DATABASE_URL must start with postgres://, postgresql:// or sqlite:// (got {:?})",
            url.split(':').next().unwrap_or("")
        )))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseTarget::Sqlite(_) => "sqlite",
            DatabaseTarget::Postgres(_) => "postgres",
        }
    }

    /// The target with credentials hidden, for logs.
    pub fn display_masked(&self) -> String {
        match self {
            DatabaseTarget::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseTarget::Postgres(url) => match url.split_once('@') {
                Some((_, host)) => format!("postgres://****@{host}"),
                None => url.clone(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    fn pool(error: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(error.to_string())
    }
}

/// A pooled connection to one backend.
#[derive(Clone)]
pub enum Store {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConnection>),
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend the store uses.
/// The body is compiled once per backend, so one query serves both.
#[macro_export]
macro_rules! with_conn {
    ($store:expr, $conn:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Postgres(pool) => {
                let mut $conn = pool
                    .get()
                    .await
                    .map_err($crate::store::StoreError::from_pool)?;
                let $conn = &mut *$conn;
                $body
            }
            $crate::store::Store::Sqlite(pool) => {
                let mut $conn = pool
                    .get()
                    .await
                    .map_err($crate::store::StoreError::from_pool)?;
                let $conn = &mut *$conn;
                $body
            }
        }
    };
}

impl StoreError {
    #[doc(hidden)]
    pub fn from_pool(error: impl std::fmt::Display) -> StoreError {
        StoreError::pool(error)
    }
}

/// How long a request waits for a pooled connection before the database counts as down.
const POOL_WAIT: Duration = Duration::from_secs(3);

impl Store {
    /// Opens a pool. Does not touch the database yet; the first query does.
    pub fn open(target: &DatabaseTarget, max_connections: usize) -> Result<Store, StoreError> {
        match target {
            DatabaseTarget::Postgres(url) => {
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url.clone());
                let pool = Pool::builder(manager)
                    .max_size(max_connections)
                    .wait_timeout(Some(POOL_WAIT))
                    .create_timeout(Some(POOL_WAIT))
                    .recycle_timeout(Some(POOL_WAIT))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StoreError::Config(e.to_string()))?;
                Ok(Store::Postgres(pool))
            }
            DatabaseTarget::Sqlite(path) => {
                create_parent_dir(path)?;
                let mut config = ManagerConfig::<SqliteConnection>::default();
                config.custom_setup = Box::new(|url| {
                    async move {
                        let mut connection = SqliteConnection::establish(url).await?;
                        // WAL lets readers run beside the usage writer; the busy timeout turns
                        // brief lock waits into waits rather than errors, and comes first: the
                        // journal-mode pragma takes a lock, and without it a connection opened
                        // while another writes failed with "database is locked".
                        // `synchronous = NORMAL` is SQLite's documented pairing with WAL:
                        // commits survive a crash of the gateway; only a power loss can take
                        // the last ones. `temp_store = MEMORY` keeps statement journals (each
                        // multi-row usage insert inside a batch's transaction opens one) and
                        // sort b-trees in memory instead of unlinked files under /var/tmp.
                        connection
                            .batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(connection)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::<SqliteConnection>::new_with_config(
                    path.display().to_string(),
                    config,
                );
                let pool = Pool::builder(manager)
                    .max_size(max_connections.min(8))
                    .wait_timeout(Some(POOL_WAIT))
                    .create_timeout(Some(POOL_WAIT))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StoreError::Config(e.to_string()))?;
                Ok(Store::Sqlite(pool))
            }
        }
    }
}

/// SQLite creates the file on first use, but not the folder it lives in.
fn create_parent_dir(path: &std::path::Path) -> Result<(), StoreError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", parent.display()))),
        None => Ok(()),
    }
}

impl Store {
    /// A consistent copy of a live SQLite database (`VACUUM INTO`), taken without stopping
    /// writers. PostgreSQL is backed up with `pg_dump`.
    pub async fn backup_sqlite(&self, destination: &std::path::Path) -> Result<(), StoreError> {
        let Store::Sqlite(_) = self else {
            return Err(StoreError::Invalid(
                "PostgreSQL is backed up with pg_dump".into(),
            ));
        };
        if destination.exists() {
            return Err(StoreError::Invalid(format!(
                "{} already exists",
                destination.display()
            )));
        }
        let target = destination.display().to_string().replace('\'', "''");
        with_conn!(self, conn => {
            conn.batch_execute(&format!("VACUUM INTO '{target}'"))
                .await
                .map_err(StoreError::Query)?
        });
        Ok(())
    }
}

/// The file name of [`migrated_sqlite_for_tests`]'s database, in its directory.
#[cfg(test)]
pub(crate) const TEST_DATABASE: &str = "test.db";

/// A migrated SQLite store in a fresh temporary directory, which lives as long as the
/// `TempDir` returned with it.
#[cfg(test)]
pub(crate) fn migrated_sqlite_for_tests() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = DatabaseTarget::Sqlite(dir.path().join(TEST_DATABASE));
    Store::migrate(&target).expect("migrate");
    (Store::open(&target, 2).expect("open"), dir)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_pick_the_backend() {
        assert_eq!(
            DatabaseTarget::parse(None).expect("default"),
            DatabaseTarget::Sqlite("data/gateway.db".into())
        );
        assert_eq!(
            DatabaseTarget::parse(Some("sqlite:///tmp/x.db")).expect("abs"),
            DatabaseTarget::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            DatabaseTarget::parse(Some("sqlite://data/y.db")).expect("rel"),
            DatabaseTarget::Sqlite("data/y.db".into())
        );
        assert!(matches!(
            DatabaseTarget::parse(Some("postgres://u:p@h/db")).expect("pg"),
            DatabaseTarget::Postgres(_)
        ));
        assert!(DatabaseTarget::parse(Some("mysql://x")).is_err());
        assert_eq!(
            DatabaseTarget::parse(Some("postgres://user:secret@db:5432/gw"))
                .expect("pg")
                .display_masked(),
            "postgres://****@db:5432/gw"
        );
    }

    /// `.cargo/config.toml` builds the bundled SQLite in multi-thread mode without memory
    /// statistics (no mutex per call, none around every allocation); a build that lost the
    /// flags would still pass every other test, only slower.
    #[test]
    fn bundled_sqlite_is_built_without_per_call_mutexes() {
        use diesel::Connection as _;
        use diesel::RunQueryDsl as _;
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let mut conn = diesel::SqliteConnection::establish(":memory:").expect("open");
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(&mut conn)
            .expect("compile options")
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        for wanted in ["THREADSAFE=2", "DEFAULT_MEMSTATUS=0"] {
            assert!(
                options.iter().any(|o| o == wanted),
                "SQLite lacks {wanted}: {options:?}"
            );
        }
    }
}
