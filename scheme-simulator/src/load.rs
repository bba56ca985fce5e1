//! The load generator: random payments sent at a target rate for a bounded time, in the background. Each run
//! is recorded in `scheme-load-{loadId}` (started, finished) and its batches in `scheme-submissions`; its live
//! counters are kept in memory for `GET /load`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::EventMetadata;
use infrastructure::eventstore::ExpectedRevision;
use infrastructure::CancellationToken;
use infrastructure::NewEvent;
use rand::SeedableRng;
use serde::Serialize;
use uuid::Uuid;

use crate::generator::{self, Mix, Population};
use crate::record::{self, LoadFinished, LoadStarted, SchemeEvent, SubmissionSource};
use crate::submit::{submit, SubmitError};
use crate::AppState;

/// How often a run sends what has fallen due: often enough for a smooth rate, rarely enough for big batches.
const TICK: Duration = Duration::from_millis(100);

/// A load run's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadStatus {
    pub load_id: Uuid,
    pub rate_per_second: u32,
    pub duration_seconds: u32,
    /// Payments generated and sent to the bank so far.
    pub sent: u64,
    /// Of those, how many the bank accepted.
    pub accepted: u64,
    pub failed: u64,
    /// How many times the bank answered busy (503 with `Retry-After`); each of those batches was sent again
    /// after the wait, so a busy bank slows the run down rather than losing payments.
    pub throttled: u64,
    pub running: bool,
    /// True once the run sent everything it was asked to (false while running or when stopped early).
    pub completed: bool,
}

/// The runs of this process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loads(Arc<Mutex<BTreeMap<Uuid, LoadStatus>>>);

impl Loads {
    pub fn list(&self) -> Vec<LoadStatus> {
        self.lock().values().cloned().collect()
    }

    pub fn get(&self, id: &Uuid) -> Option<LoadStatus> {
        self.lock().get(id).cloned()
    }

    fn update(&self, id: &Uuid, change: impl FnOnce(&mut LoadStatus)) {
        if let Some(status) = self.lock().get_mut(id) {
            change(status);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, LoadStatus>> {
        // A panic while holding the lock leaves plain counters behind, still worth reading.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Records the run's start, registers it and runs it in the background (stopped by shutdown).
pub(crate) async fn start(
    state: &AppState,
    rate_per_second: u32,
    duration_seconds: u32,
    mix: Mix,
    population: Population,
    metadata: EventMetadata,
) -> Result<LoadStatus, infrastructure::StoreError> {
    let load_id = Uuid::new_v4();
    let started = SchemeEvent::from(LoadStarted {
        load_id,
        rate_per_second,
        duration_seconds,
    });
    state
        .store
        .append(
            &record::load_stream(&load_id),
            ExpectedRevision::NoStream,
            &[NewEvent::new(started, metadata.clone())],
        )
        .await?;
    let status = LoadStatus {
        load_id,
        rate_per_second,
        duration_seconds,
        sent: 0,
        accepted: 0,
        failed: 0,
        throttled: 0,
        running: true,
        completed: false,
    };
    state.loads.lock().insert(load_id, status.clone());
    let task_state = state.clone();
    state.shutdown.spawn(async move {
        run(
            task_state,
            load_id,
            rate_per_second,
            duration_seconds,
            mix,
            population,
            metadata,
        )
        .await;
    });
    Ok(status)
}

/// Submits one batch, waiting out each busy answer (`on_busy` counts them) and sending it again, until the bank
/// takes or refuses it; `None` when the run is stopped during a wait.
async fn send_until_answered(
    state: &AppState,
    batch: &[crate::SchemePayment],
    metadata: &EventMetadata,
    token: &CancellationToken,
    mut on_busy: impl FnMut(),
) -> Option<Result<(), SubmitError>> {
    loop {
        match submit(state, SubmissionSource::Load, batch.to_vec(), metadata).await {
            Err(SubmitError::Busy { retry_after, .. }) => {
                on_busy();
                tokio::select! {
                    () = token.cancelled() => return None,
                    () = tokio::time::sleep(retry_after) => {}
                }
            }
            other => return Some(other.map(|_| ())),
        }
    }
}

async fn run(
    state: AppState,
    load_id: Uuid,
    rate_per_second: u32,
    duration_seconds: u32,
    mix: Mix,
    population: Population,
    metadata: EventMetadata,
) {
    let total = u64::from(rate_per_second) * u64::from(duration_seconds);
    let duration = Duration::from_secs(u64::from(duration_seconds));
    let token = state.shutdown.token();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut sent, mut accepted, mut failed, mut throttled) = (0u64, 0u64, 0u64, 0u64);
    tracing::info!(%load_id, rate_per_second, duration_seconds, "load run started");
    'run: while sent < total {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let elapsed = started.elapsed();
        let due = if elapsed >= duration {
            total
        } else {
            ((f64::from(rate_per_second) * elapsed.as_secs_f64()) as u64).min(total)
        };
        // After the bank was busy a while much may be due: at most a second's worth is generated at a time.
        let due = due.min(sent + u64::from(rate_per_second.max(1)));
        let payments: Vec<_> = (sent..due)
            .map(|sequence| generator::payment(&mut rng, mix, &population, sequence).0)
            .collect();
        for batch in payments.chunks(state.config.batch_size) {
            let count = batch.len() as u64;
            let outcome = send_until_answered(&state, batch, &metadata, &token, || {
                throttled += 1;
                state
                    .loads
                    .update(&load_id, |status| status.throttled = throttled);
            })
            .await;
            let Some(outcome) = outcome else {
                break 'run;
            };
            match outcome {
                Ok(()) => accepted += count,
                // Stopped mid-batch: its fate is unknown, the run is not completed.
                Err(_) if token.is_cancelled() => break 'run,
                Err(error) => {
                    failed += count;
                    tracing::warn!(%load_id, %error, "a load batch was not accepted");
                }
            }
            sent += count;
            state.loads.update(&load_id, |status| {
                status.sent = sent;
                status.accepted = accepted;
                status.failed = failed;
            });
        }
    }
    let completed = sent >= total;
    state.loads.update(&load_id, |status| {
        status.running = false;
        status.completed = completed;
    });
    let finished = SchemeEvent::from(LoadFinished {
        load_id,
        sent,
        accepted,
        failed,
        throttled,
        completed,
    });
    if let Err(error) = state
        .store
        .append(
            &record::load_stream(&load_id),
            ExpectedRevision::Any,
            &[NewEvent::new(finished, metadata)],
        )
        .await
    {
        tracing::warn!(%load_id, %error, "the end of a load run could not be recorded");
    }
    tracing::info!(%load_id, sent, accepted, failed, throttled, completed, "load run finished");
}
