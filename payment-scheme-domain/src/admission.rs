//! Admission control at the gateway. The bank takes new scheme payments while fewer than a limit are in
//! progress (received, not yet credited or returned, not held for an operator) and otherwise answers 503 `busy`
//! with `Retry-After`, so that past the pipeline's capacity the backlog waits at the scheme, where it costs
//! nothing, instead of inside the bank, where it outgrows the caches and slows every stage down.
//!
//! The count comes from the payments read model (it lags by up to a projector batch window, a fraction of a
//! second, while the projector keeps up), read at most every [`REFRESH`]. Admission is a guard, not a gate
//! keeper: whenever the count cannot be trusted everything is admitted — until the model has caught up after a
//! start (its counts describe history, not load), once its projector has stopped (they would be frozen), and
//! when the read fails (logged).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use infrastructure::http::ApiError;
use infrastructure::ProjectorProgress;

use crate::read_model::PaymentsQuery;

/// How old a reading of the in-progress count may be before a request reads it again.
const REFRESH: Duration = Duration::from_millis(50);

/// What a refused sender is told to wait before trying again.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The default limit: well under the payments the service caches between stages, and more than the pipeline
/// finishes in a `Retry-After` on a small machine (~3,000 a second on 2 cores), so it does not run dry while
/// refused senders wait. Under overload a payment then spends up to about two seconds in the bank (20,000: up
/// to seven, at a higher cost per payment; ARCHITECTURE.md has the figures).
pub const DEFAULT_MAX_IN_PROGRESS: u64 = 5_000;

pub struct Admission {
    /// 0: no limit.
    limit: u64,
    query: PaymentsQuery,
    model: ProjectorProgress,
    last_reading: Mutex<Option<(Instant, u64)>>,
}

impl Admission {
    pub fn new(limit: u64, query: PaymentsQuery, model: ProjectorProgress) -> Self {
        Self {
            limit,
            query,
            model,
            last_reading: Mutex::new(None),
        }
    }

    /// Whether a new submission may come in now.
    pub async fn check(&self) -> Result<(), ApiError> {
        if self.limit == 0 || !self.model.is_caught_up() || self.model.has_stopped() {
            return Ok(());
        }
        match self.in_progress().await {
            Ok(in_progress) => decide(in_progress, self.limit),
            Err(error) => {
                tracing::warn!(%error, "payments in progress unreadable; admitting");
                Ok(())
            }
        }
    }

    async fn in_progress(&self) -> Result<u64, String> {
        let now = Instant::now();
        if let Some((read_at, count)) = *self.lock() {
            if now.duration_since(read_at) < REFRESH {
                return Ok(count);
            }
        }
        let query = self.query.clone();
        let stats = tokio::task::spawn_blocking(move || query.stats())
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())?;
        *self.lock() = Some((now, stats.in_progress));
        Ok(stats.in_progress)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, u64)>> {
        // A plain reading: a panic elsewhere leaves nothing half-written.
        self.last_reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Admits while fewer than `limit` payments are in progress.
fn decide(in_progress: u64, limit: u64) -> Result<(), ApiError> {
    if in_progress < limit {
        return Ok(());
    }
    Err(ApiError::Busy {
        message: format!(
            "the bank is busy: {in_progress} payments in progress (the limit is {limit}); \
             send again in {RETRY_AFTER_SECS} s"
        ),
        retry_after_secs: RETRY_AFTER_SECS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_are_admitted_below_the_limit_and_refused_at_it() {
        assert_eq!(decide(0, 3), Ok(()));
        assert_eq!(decide(2, 3), Ok(()));
        let refused = decide(3, 3).expect_err("at the limit");
        assert_eq!(
            refused.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(refused.code(), "busy");
        assert!(
            refused.to_string().contains("3 payments in progress"),
            "{refused}"
        );
        assert!(decide(10, 3).is_err());
    }
}
