//! Usage events set aside: rows the database refused for what they hold (not because it was
//! away), kept as JSON with the database's error so an operator can inspect and replay them,
//! while every other row is written.

use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;

use super::schema::usage_dead_letters;
use super::text::{bounded, MAX_ERROR, MAX_LABEL};
use super::usage::UsageEvent;
use super::{now_millis, Store, StoreError};
use crate::with_conn;

/// One set-aside usage event.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = usage_dead_letters)]
pub struct DeadLetter {
    pub event_id: String,
    /// The event as JSON; control characters are escaped, so it is storable whatever it held.
    pub event: String,
    /// What the database answered when the event was written alone.
    pub error: String,
    pub created_at: i64,
}

impl Store {
    /// Keeps `event` with the error that refused it. Idempotent by event id, like usage rows.
    pub async fn insert_dead_letter(
        &self,
        event: &UsageEvent,
        error: &str,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(event).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let values = (
            usage_dead_letters::event_id.eq(bounded(&event.event_id, MAX_LABEL).into_owned()),
            usage_dead_letters::event.eq(json),
            usage_dead_letters::error.eq(bounded(error, MAX_ERROR).into_owned()),
            usage_dead_letters::created_at.eq(now_millis()),
        );
        with_conn!(self, conn => {
            diesel::insert_into(usage_dead_letters::table)
                .values(values.clone())
                .on_conflict_do_nothing()
                .execute(conn)
                .await?
        });
        Ok(())
    }

    /// The most recent set-aside events, newest first (for operators and tests).
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(with_conn!(self, conn => {
            usage_dead_letters::table
                .order(usage_dead_letters::id.desc())
                .limit(limit)
                .select(DeadLetter::as_select())
                .load(conn)
                .await?
        }))
    }
}
