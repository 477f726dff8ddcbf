//! Migrations: embedded at build time (one folder per backend where SQL differs) and applied
//! on a thread of their own, so start-up and the `migrate` command can call them anywhere.

use diesel::Connection as _;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{create_parent_dir, DatabaseTarget, Store, StoreError};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

impl Store {
    /// Applies pending migrations and returns their names. Blocking: runs on its own thread
    /// with its own runtime, so it can be called from anywhere.
    pub fn migrate(target: &DatabaseTarget) -> Result<Vec<String>, StoreError> {
        let target = target.clone();
        std::thread::spawn(move || migrate_blocking(&target))
            .join()
            .map_err(|_| StoreError::Migration("the migration thread panicked".into()))?
    }
}

fn migrate_blocking(target: &DatabaseTarget) -> Result<Vec<String>, StoreError> {
    let names = |applied: Vec<diesel::migration::MigrationVersion<'_>>| {
        applied.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    match target {
        DatabaseTarget::Sqlite(path) => {
            create_parent_dir(path)?;
            let mut connection = diesel::SqliteConnection::establish(&path.display().to_string())
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let applied = connection
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| StoreError::Migration(e.to_string()))?;
            Ok(names(applied))
        }
        DatabaseTarget::Postgres(url) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| StoreError::Migration(e.to_string()))?;
            runtime.block_on(async {
                let connection = AsyncPgConnection::establish(url)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let mut harness = diesel_async::AsyncMigrationHarness::new(connection);
                let applied = harness
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map_err(|e| StoreError::Migration(e.to_string()))?;
                Ok(names(applied))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel_async::SimpleAsyncConnection;

    use super::*;

    /// A usage row as the migration-3 tests see it.
    #[derive(Debug, PartialEq, diesel::QueryableByName)]
    struct EventIds {
        #[diesel(sql_type = diesel::sql_types::Text)]
        event_id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        request_id: String,
    }

    const COLUMNS: &str = "key_id, model, service, endpoint, api, prompt_tokens, \
        completion_tokens, estimated, cached, status, latency_ms, created_at";
    const VALUES: &str = "NULL, 'm', 's', 'e', 'chat', 1, 2, false, false, 200, 3, 4";

    fn row_before_migration_3() -> String {
        format!("INSERT INTO usage_events (request_id, {COLUMNS}) VALUES ('old', {VALUES})")
    }
    fn two_rows_of_one_request() -> String {
        format!(
            "INSERT INTO usage_events (event_id, request_id, {COLUMNS}) \
             VALUES ('e1', 'old', {VALUES}), ('e2', 'old', {VALUES})"
        )
    }
    fn repeated_event() -> String {
        format!("INSERT INTO usage_events (event_id, request_id, {COLUMNS}) VALUES ('e1', 'x', {VALUES})")
    }
    const SELECT_IDS: &str = "SELECT event_id, request_id FROM usage_events ORDER BY id";

    fn expected_ids() -> Vec<EventIds> {
        [("old", "old"), ("e1", "old"), ("e2", "old")]
            .into_iter()
            .map(|(event_id, request_id)| EventIds {
                event_id: event_id.into(),
                request_id: request_id.into(),
            })
            .collect()
    }

    /// Migration 3 moves usage idempotency from request ids (which clients choose) to event
    /// ids: stored rows keep their request id as their event id, and a request id may repeat.
    #[test]
    fn usage_event_id_migration_keeps_rows_sqlite() {
        use diesel::RunQueryDsl as _;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("migrate.db");
        let mut conn =
            diesel::SqliteConnection::establish(&path.display().to_string()).expect("open");
        for _ in 0..2 {
            conn.run_next_migration(SQLITE_MIGRATIONS)
                .expect("migration");
        }
        diesel::sql_query(row_before_migration_3())
            .execute(&mut conn)
            .expect("old row");
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .expect("migration 3");
        diesel::sql_query(two_rows_of_one_request())
            .execute(&mut conn)
            .expect("a request id may repeat");
        let rows: Vec<EventIds> = diesel::sql_query(SELECT_IDS).load(&mut conn).expect("rows");
        assert_eq!(rows, expected_ids());
        assert!(diesel::sql_query(repeated_event())
            .execute(&mut conn)
            .is_err());
    }

    #[test]
    fn usage_event_id_migration_keeps_rows_postgres() {
        use diesel_async::RunQueryDsl as _;
        let server = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut admin = AsyncPgConnection::establish(&format!("{server}/postgres"))
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {server} is required: {e}"));
            let name = format!("gw_migrate_{}", std::process::id());
            for statement in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
            ] {
                admin
                    .batch_execute(&statement)
                    .await
                    .expect("create database");
            }
            let conn = AsyncPgConnection::establish(&format!("{server}/{name}"))
                .await
                .expect("connect");
            let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
            for _ in 0..2 {
                harness
                    .run_next_migration(POSTGRES_MIGRATIONS)
                    .expect("migration");
            }
            let mut conn = harness.into_inner();
            diesel::sql_query(row_before_migration_3())
                .execute(&mut conn)
                .await
                .expect("old row");
            let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
            harness
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .expect("migration 3");
            let mut conn = harness.into_inner();
            diesel::sql_query(two_rows_of_one_request())
                .execute(&mut conn)
                .await
                .expect("a request id may repeat");
            let rows: Vec<EventIds> = diesel::sql_query(SELECT_IDS)
                .load(&mut conn)
                .await
                .expect("rows");
            assert_eq!(rows, expected_ids());
            assert!(diesel::sql_query(repeated_event())
                .execute(&mut conn)
                .await
                .is_err());
            drop(conn);
            admin
                .batch_execute(&format!("DROP DATABASE {name}"))
                .await
                .expect("drop database");
        });
    }
}
