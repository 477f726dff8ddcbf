//! `BudgetReconciler`: keeps the shared budget ledgers true to `usage_events`, the same figure
//! a ledger is seeded from.
//!
//! Every interval, the replica that claims the round in Redis reads, for each ledger in use,
//! the key's use billed before a cutoff (now − [`MARGIN_MS`], on the ledger's bucket grid) from
//! the database, and Redis replaces each ledger's use before that cutoff with it, keeping what
//! was settled for later billing times. A usage event is counted on one side only, by its own
//! `created_at`, so settlements still in flight are neither lost nor counted twice. What this
//! corrects: settlements abandoned while Redis was away, requests decided in-process during an
//! outage, use whose usage row the database refused or a crash lost, and a seed read while the
//! usage writer lagged. The margin is how long the usage writer may take to store an event
//! before reconciliation relies on the database for it. A ledger seeded after the cutoff is
//! newer than the figure read: it keeps its own base and `used` is only counted again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};

use super::BudgetLedger;
use crate::shared::{Reconciled, BUDGET_BUCKET_MS};
use crate::store::now_millis;

/// Use billed in the last minute is taken from the ledger's settlements, older use from the
/// database: the usage writer stores events within its flush interval (0.5 s) unless the
/// database is failing, and then reconciliation waits for it.
pub const MARGIN_MS: i64 = 60_000;

/// Reconciles the shared budget ledgers every `interval`.
pub struct BudgetReconciler {
    ledger: BudgetLedger,
    interval: Duration,
    /// A round is under way; a tick meanwhile is skipped rather than overlapping it.
    running: bool,
}

impl BudgetReconciler {
    /// Starts reconciling, when `ledger` is shared through Redis (a process's own ledger has
    /// nothing to drift from).
    pub fn start_reconciler(ledger: BudgetLedger, interval: Duration) -> Option<actix::Addr<Self>> {
        ledger.shared()?;
        Some(
            BudgetReconciler {
                ledger,
                interval,
                running: false,
            }
            .start(),
        )
    }
}

impl Actor for BudgetReconciler {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Self::Context) {
        context.set_mailbox_capacity(1);
        context.run_interval(self.interval, |reconciler, context| {
            if reconciler.running {
                return;
            }
            reconciler.running = true;
            let ledger = reconciler.ledger.clone();
            // Held a little less than the interval, so the next round is free to claim.
            let hold = reconciler.interval.mul_f64(0.9);
            let round = async move { ledger.reconcile_round(hold).await };
            context.spawn(round.into_actor(reconciler).map(|outcome, reconciler, _| {
                reconciler.running = false;
                if let Err(error) = outcome {
                    tracing::debug!(%error, "budget reconciliation skipped this round");
                }
            }));
        });
    }
}

impl BudgetLedger {
    /// One reconciliation round, if this replica claims it (for `hold`) in Redis: every ledger
    /// in use, as of now.
    pub async fn reconcile_round(&self, hold: Duration) -> Result<Vec<Reconciled>, String> {
        let Some(shared) = &self.shared else {
            return Ok(Vec::new());
        };
        let key_ids = shared.claim_reconciliation(hold).await?;
        self.reconcile_at(&key_ids, now_millis()).await
    }

    /// Reconciles the shared ledgers of `key_ids` as of `now_ms` (Unix ms): each one's use
    /// billed before `now_ms − MARGIN_MS` (rounded down to the bucket width) becomes the
    /// database's figure. Corrections are logged and counted.
    pub async fn reconcile_at(
        &self,
        key_ids: &[i64],
        now_ms: i64,
    ) -> Result<Vec<Reconciled>, String> {
        let Some(shared) = &self.shared else {
            return Ok(Vec::new());
        };
        if key_ids.is_empty() {
            return Ok(Vec::new());
        }
        let cutoff = now_ms.saturating_sub(MARGIN_MS);
        let cutoff = cutoff - cutoff.rem_euclid(BUDGET_BUCKET_MS);
        let used = self
            .store
            .tokens_used_by_keys_before(key_ids, cutoff)
            .await
            .map_err(|error| error.to_string())?;
        let outcomes = shared.reconcile_budgets(cutoff, &used).await?;
        for outcome in &outcomes {
            if let Reconciled::Corrected {
                key_id,
                before,
                after,
                ..
            } = *outcome
            {
                if before != after {
                    shared
                        .budget_counters()
                        .reconciled_tokens
                        .fetch_add(before.abs_diff(after), Ordering::Relaxed);
                    tracing::warn!(
                        key_id,
                        before,
                        after,
                        "shared budget ledger disagreed with usage_events; corrected"
                    );
                }
            }
        }
        Ok(outcomes)
    }
}
