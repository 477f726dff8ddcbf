//! Retry budget: retries may add at most a fixed fraction of load to a struggling service.

use std::sync::atomic::{AtomicI64, Ordering};

/// Tokens are kept in thousandths so fractional ratios need no floating point on the hot path.
const SCALE: i64 = 1000;

/// Every request deposits `ratio` of a retry; every retry withdraws one whole retry. The balance
/// starts at, and is capped to, `reserve` retries plus what recent requests earned, so a quiet
/// service can still retry a few times while a failing busy one cannot double its load.
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

impl RetryBudget {
    pub fn new(ratio: f64, reserve: u32) -> Self {
        let deposit = (ratio.clamp(0.0, 1000.0) * SCALE as f64).round() as i64;
        let reserve = i64::from(reserve) * SCALE;
        RetryBudget {
            balance: AtomicI64::new(reserve),
            deposit,
            cap: reserve.max(SCALE) + deposit * 100,
        }
    }

    /// Called once per request before its first attempt.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                Some((balance + self.deposit).min(self.cap))
            });
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                (balance >= SCALE).then_some(balance - SCALE)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_allows_a_few_retries_then_ratio_applies() {
        let budget = RetryBudget::new(0.2, 2);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn zero_ratio_and_reserve_never_retries() {
        let budget = RetryBudget::new(0.0, 0);
        budget.deposit();
        assert!(!budget.try_withdraw());
    }
}
