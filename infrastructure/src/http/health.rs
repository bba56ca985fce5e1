//! Operational endpoints every service serves: `/health/live` (the process answers), `/health/ready` (every
//! registered readiness check passes: connected, caught up…) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::metrics::Metrics;

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// Named readiness checks. Cheap to clone: clones share the checks.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, Check>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.status().checks).finish()
    }
}

/// A readiness check that the code owning it sets; starts not ready.
#[derive(Debug, Clone)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the check `name`, evaluated on every `/health/ready`.
    pub fn add_check(&self, name: &str, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Arc::new(check));
    }

    /// Adds the check `name` as a flag to set, not ready until set.
    pub fn flag(&self, name: &str) -> ReadyFlag {
        let flag = ReadyFlag(Arc::new(AtomicBool::new(false)));
        let reader = flag.0.clone();
        self.add_check(name, move || reader.load(Ordering::Acquire));
        flag
    }

    /// Evaluates every check.
    pub fn status(&self) -> ReadinessBody {
        let checks: Vec<(String, Check)> = self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, check)| (name.clone(), check.clone()))
            .collect();
        // Checks run outside the lock: one may be slow or take locks of its own.
        let checks: BTreeMap<String, bool> = checks
            .into_iter()
            .map(|(name, check)| (name, check()))
            .collect();
        let ready = checks.values().all(|passed| *passed);
        ReadinessBody {
            status: if ready { "ready" } else { "not_ready" }.to_owned(),
            checks,
        }
    }
}

/// `/health/live`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LivenessBody {
    #[schema(example = "live")]
    pub status: String,
}

/// `/health/ready`'s answer: `ready` when every check passes, `not_ready` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadinessBody {
    #[schema(example = "ready")]
    pub status: String,
    pub checks: BTreeMap<String, bool>,
}

#[derive(Clone)]
pub(crate) struct OperationsState {
    pub(crate) metrics: Metrics,
    pub(crate) readiness: Readiness,
}

/// The process is up and answering.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process answers", body = LivenessBody)))]
pub(crate) async fn live() -> Json<LivenessBody> {
    Json(LivenessBody {
        status: "live".to_owned(),
    })
}

/// Whether the service is ready for traffic: every readiness check passes.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Every check passes", body = ReadinessBody),
        (status = 503, description = "At least one check fails", body = ReadinessBody),
    ))]
pub(crate) async fn ready(State(state): State<OperationsState>) -> impl IntoResponse {
    let status = state.readiness.status();
    let code = if status.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(status))
}

/// Counters in the Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<OperationsState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
