//! Usage events: one row per request, written in batches, exactly once per event id.

use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::usage_events;
use super::{Store, StoreError};
use crate::with_conn;

/// One request's usage.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    diesel::Insertable,
    diesel::Queryable,
    diesel::Selectable,
)]
#[diesel(table_name = usage_events, treat_none_as_default_value = false)]
pub struct UsageEvent {
    /// The gateway's own id for this event (a time-ordered UUIDv7): what makes a retried batch
    /// idempotent. Never the client's request id, which a client may repeat.
    pub event_id: String,
    /// The request id the client sent or the gateway made, for correlation with logs.
    pub request_id: String,
    pub key_id: Option<i64>,
    pub model: String,
    pub service: String,
    pub endpoint: String,
    pub api: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// True when the upstream reported no usage and the gateway counted tokens itself.
    pub estimated: bool,
    pub cached: bool,
    pub status: i32,
    pub latency_ms: i64,
    pub created_at: i64,
}

impl UsageEvent {
    /// Bounds every text field and replaces control characters, so no value the client chose
    /// can make the database refuse the row. Allocates only for a field that needed it.
    pub fn make_storable(&mut self) {
        use super::text::{bound_in_place, MAX_LABEL, MAX_MODEL};
        bound_in_place(&mut self.event_id, MAX_LABEL);
        bound_in_place(&mut self.request_id, MAX_LABEL);
        bound_in_place(&mut self.model, MAX_MODEL);
        bound_in_place(&mut self.service, MAX_LABEL);
        bound_in_place(&mut self.endpoint, MAX_LABEL);
        bound_in_place(&mut self.api, MAX_LABEL);
    }
}

/// How usage is grouped in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    Key,
    Model,
    Day,
}

/// One line of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct UsageSummary {
    /// Key id, model name, or day (days since the Unix epoch), as text.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub group: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub requests: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub estimated_requests: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub cached_requests: i64,
}

const DAY_MILLIS: i64 = 86_400_000;

/// Rows per INSERT statement on PostgreSQL.
const INSERT_CHUNK: usize = 100;
/// Rows per multi-row INSERT on SQLite: a fixed count, so the statement is prepared once
/// (14 parameters per row stay far below SQLite's limit of 999 in old builds).
const SQLITE_CHUNK: usize = 32;
/// What is left after the full chunks goes in chunks of this many, then one row at a time: at
/// most 7 single-row statements per batch instead of 31. Each shape is prepared once too.
const SQLITE_SMALL_CHUNK: usize = 8;

impl Store {
    /// Writes a batch in one transaction. Rows whose event id is already stored are skipped,
    /// so a batch retried after an unacknowledged commit is never counted twice. Returns how
    /// many rows were new.
    pub async fn insert_usage(&self, batch: &[UsageEvent]) -> Result<usize, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        // PostgreSQL gets multi-row statements: one round trip per chunk instead of per event,
        // with the bound parameters (13 per row) far below the protocol's limit. Each backend
        // spells "skip rows already stored" its own way, so the statement is written per backend.
        let inserted = match self {
            Store::Postgres(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::from_pool)?;
                conn.transaction::<usize, diesel::result::Error, _>(async |conn| {
                    let mut inserted = 0;
                    for chunk in batch.chunks(INSERT_CHUNK) {
                        inserted += diesel::insert_into(usage_events::table)
                            .values(chunk)
                            .on_conflict_do_nothing()
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(inserted)
                })
                .await?
            }
            Store::Sqlite(pool) => {
                let mut conn = pool.get().await.map_err(StoreError::from_pool)?;
                let rows = batch.to_vec();
                // The whole batch runs in one blocking task on the sync connection (through the
                // async wrapper every statement would be a blocking-pool round trip). Rows go
                // in fixed-size multi-row statements of 32, then 8, then one at a time: all
                // shapes have SQL that never varies (NULLs are bound, not spelled DEFAULT), so
                // diesel prepares each once per connection and reuses it.
                conn.spawn_blocking(move |conn| {
                    diesel::Connection::transaction(conn, |conn| {
                        let mut inserted = 0;
                        let (chunks, rest) = rows.as_chunks::<SQLITE_CHUNK>();
                        for chunk in chunks {
                            inserted += diesel::RunQueryDsl::execute(
                                diesel::insert_or_ignore_into(usage_events::table).values(chunk),
                                conn,
                            )?;
                        }
                        let (small, rest) = rest.as_chunks::<SQLITE_SMALL_CHUNK>();
                        for chunk in small {
                            inserted += diesel::RunQueryDsl::execute(
                                diesel::insert_or_ignore_into(usage_events::table).values(chunk),
                                conn,
                            )?;
                        }
                        for event in rest {
                            inserted += diesel::RunQueryDsl::execute(
                                diesel::insert_or_ignore_into(usage_events::table).values(event),
                                conn,
                            )?;
                        }
                        Ok(inserted)
                    })
                })
                .await?
            }
        };
        Ok(inserted)
    }

    /// Usage between `from` and `to` (Unix milliseconds, `to` exclusive), grouped.
    pub async fn usage_summary(
        &self,
        from: i64,
        to: i64,
        grouping: UsageGrouping,
    ) -> Result<Vec<UsageSummary>, StoreError> {
        let group = match grouping {
            UsageGrouping::Key => "COALESCE(CAST(key_id AS TEXT), 'none')".to_string(),
            UsageGrouping::Model => "model".to_string(),
            UsageGrouping::Day => format!("CAST(created_at / {DAY_MILLIS} AS TEXT)"),
        };
        let query = |placeholder: fn(usize) -> String| {
            format!(
                "SELECT {group} AS \"group\", \
                 CAST(COUNT(*) AS BIGINT) AS requests, \
                 CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
                 CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
                 CAST(COALESCE(SUM(CASE WHEN estimated THEN 1 ELSE 0 END), 0) AS BIGINT) AS estimated_requests, \
                 CAST(COALESCE(SUM(CASE WHEN cached THEN 1 ELSE 0 END), 0) AS BIGINT) AS cached_requests \
                 FROM usage_events WHERE created_at >= {} AND created_at < {} \
                 GROUP BY 1 ORDER BY 1",
                placeholder(1),
                placeholder(2)
            )
        };
        let rows = match self {
            Store::Postgres(_) => {
                let sql = query(|n| format!("${n}"));
                with_conn!(self, conn => {
                    diesel::sql_query(sql)
                        .bind::<diesel::sql_types::BigInt, _>(from)
                        .bind::<diesel::sql_types::BigInt, _>(to)
                        .load::<UsageSummary>(conn)
                        .await?
                })
            }
            Store::Sqlite(_) => {
                let sql = query(|_| "?".to_string());
                with_conn!(self, conn => {
                    diesel::sql_query(sql)
                        .bind::<diesel::sql_types::BigInt, _>(from)
                        .bind::<diesel::sql_types::BigInt, _>(to)
                        .load::<UsageSummary>(conn)
                        .await?
                })
            }
        };
        Ok(rows)
    }

    /// Tokens key `key_id` was billed before `before` (Unix ms; cached answers are free): what
    /// a shared budget ledger starts from, with `before` as its cutoff.
    pub async fn tokens_used_before(&self, key_id: i64, before: i64) -> Result<i64, StoreError> {
        let used = self.tokens_used_by_keys_before(&[key_id], before).await?;
        Ok(used.into_iter().next().map_or(0, |(_, used)| used))
    }

    /// Tokens each of `key_ids` was billed before `before` (Unix ms), as (key id, tokens) in
    /// the order given; a key with no rows counts 0. One grouped query per 500 keys.
    pub async fn tokens_used_by_keys_before(
        &self,
        key_ids: &[i64],
        before: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(key_ids.len());
        for chunk in key_ids.chunks(500) {
            let rows: Vec<(Option<i64>, i64)> = with_conn!(self, conn => {
                usage_events::table
                    .filter(usage_events::key_id.eq_any(chunk))
                    .filter(usage_events::cached.eq(false))
                    .filter(usage_events::created_at.lt(before))
                    .group_by(usage_events::key_id)
                    .select((
                        usage_events::key_id,
                        diesel::dsl::sql::<diesel::sql_types::BigInt>(
                            "CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT)",
                        ),
                    ))
                    .load(conn)
                    .await?
            });
            found.extend(
                rows.into_iter()
                    .filter_map(|(key, used)| Some((key?, used))),
            );
        }
        Ok(key_ids
            .iter()
            .map(|id| (*id, found.get(id).copied().unwrap_or(0)))
            .collect())
    }

    /// Every usage row of a key, oldest first (for tests and audits).
    pub async fn usage_of_key(&self, key_id: i64) -> Result<Vec<UsageEvent>, StoreError> {
        Ok(with_conn!(self, conn => {
            usage_events::table
                .filter(usage_events::key_id.eq(key_id))
                .order(usage_events::id.asc())
                .select(UsageEvent::as_select())
                .load(conn)
                .await?
        }))
    }
}
