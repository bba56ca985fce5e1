//! Plain HTTP endpoints served on the gRPC port, as EventStoreDB does: `/health/live`, `/info`, `/stats` (JSON),
//! `/metrics` (Prometheus text) and a small status page at `/`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::grpc::features::SERVER_VERSION;
use crate::storage::Store;

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub started: Instant,
    pub live_subscriptions: Arc<AtomicU64>,
    pub secure: bool,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health/live", get(live))
        .route("/info", get(info))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn live() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn info(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(json!({
        "esVersion": SERVER_VERSION,
        "server": "eventstore-lite",
        "state": "leader",
        "authentication": { "type": if state.secure { "basic" } else { "insecure" } },
        "features": { "projections": false, "userManagement": false, "atomPub": false },
    }))
}

struct Snapshot {
    events_written: u64,
    writes: u64,
    batches: u64,
    fsyncs: u64,
    fsync_micros_total: u64,
    recovered_records: u64,
    log_position: u64,
    live_subscriptions: u64,
    uptime_seconds: f64,
}

fn snapshot(state: &HttpState) -> Snapshot {
    let stats = state.store.stats();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Snapshot {
        events_written: load(&stats.events_written),
        writes: load(&stats.writes),
        batches: load(&stats.batches),
        fsyncs: load(&stats.fsyncs),
        fsync_micros_total: load(&stats.fsync_micros_total),
        recovered_records: load(&stats.recovered_records),
        log_position: state.store.committed_end(),
        live_subscriptions: load(&state.live_subscriptions),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
    }
}

async fn stats(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let s = snapshot(&state);
    Json(json!({
        "proc": { "uptimeSeconds": s.uptime_seconds },
        "es": {
            "writer": {
                "eventsWritten": s.events_written,
                "writes": s.writes,
                "batches": s.batches,
                "eventsPerBatch": if s.batches == 0 { 0.0 } else { s.events_written as f64 / s.batches as f64 },
                "fsyncs": s.fsyncs,
                "meanFsyncMicros": if s.fsyncs == 0 { 0.0 } else { s.fsync_micros_total as f64 / s.fsyncs as f64 },
            },
            "log": { "position": s.log_position, "recoveredRecords": s.recovered_records },
            "subscriptions": { "live": s.live_subscriptions },
        }
    }))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let s = snapshot(&state);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "eventstore_lite_events_written_total",
        "counter",
        "Events appended.",
        s.events_written as f64,
    );
    metric(
        "eventstore_lite_writes_total",
        "counter",
        "Write requests (appends, deletes) committed.",
        s.writes as f64,
    );
    metric(
        "eventstore_lite_write_batches_total",
        "counter",
        "Group commits.",
        s.batches as f64,
    );
    metric(
        "eventstore_lite_fsyncs_total",
        "counter",
        "Log fsyncs.",
        s.fsyncs as f64,
    );
    metric(
        "eventstore_lite_fsync_seconds_total",
        "counter",
        "Time spent in log writes and fsyncs.",
        s.fsync_micros_total as f64 / 1e6,
    );
    metric(
        "eventstore_lite_log_position",
        "gauge",
        "The $all end: bytes in the log.",
        s.log_position as f64,
    );
    metric(
        "eventstore_lite_live_subscriptions",
        "gauge",
        "Open catch-up subscriptions.",
        s.live_subscriptions as f64,
    );
    metric(
        "eventstore_lite_uptime_seconds",
        "gauge",
        "Seconds since start.",
        s.uptime_seconds,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn index(State(state): State<HttpState>) -> Html<String> {
    let s = snapshot(&state);
    Html(format!(
        "<!doctype html><html><head><title>eventstore-lite</title></head><body>\
         <h1>eventstore-lite {SERVER_VERSION}</h1>\
         <p>EventStoreDB-compatible gRPC on this port. Events written: {}. $all position: {}. Live subscriptions: {}.</p>\
         <ul><li><a href=\"/stats\">/stats</a></li><li><a href=\"/metrics\">/metrics</a></li>\
         <li><a href=\"/info\">/info</a></li><li><a href=\"/health/live\">/health/live</a></li></ul></body></html>",
        s.events_written, s.log_position, s.live_subscriptions
    ))
}
