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

use crate::auth::{Principal, Users};
use crate::grpc::features::SERVER_VERSION;
use crate::storage::Store;
use crate::users::{self, UserError};

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    /// `None` with `--insecure` (no authentication).
    pub users: Option<Arc<Users>>,
    pub started: Instant,
    pub live_subscriptions: Arc<AtomicU64>,
    pub secure: bool,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/", get(list_users).post(create_user))
        .route(
            "/users/:login",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route(
            "/users/:login/command/:command",
            axum::routing::post(user_command),
        )
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
        "features": { "projections": true, "userManagement": true, "atomPub": false },
    }))
}

struct Snapshot {
    events_written: u64,
    writes: u64,
    batches: u64,
    fsyncs: u64,
    fsync_micros_total: u64,
    index_commits: u64,
    index_commit_micros_total: u64,
    index_checkpoints: u64,
    index_checkpoint_micros_max: u64,
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
        index_commits: load(&stats.index_commits),
        index_commit_micros_total: load(&stats.index_commit_micros_total),
        index_checkpoints: load(&stats.index_checkpoints),
        index_checkpoint_micros_max: load(&stats.index_checkpoint_micros_max),
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
            "index": {
                "commits": s.index_commits,
                "meanWriteMicrosPerBatch": if s.batches == 0 { 0.0 } else { s.index_commit_micros_total as f64 / s.batches as f64 },
                "checkpoints": s.index_checkpoints,
                "longestCheckpointMicros": s.index_checkpoint_micros_max,
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
        "eventstore_lite_index_commits_total",
        "counter",
        "Index commits (the index's write transaction commits about once a second).",
        s.index_commits as f64,
    );
    metric(
        "eventstore_lite_index_commit_seconds_total",
        "counter",
        "Time the writer spent writing the index: applying each batch and committing (checkpoints run apart).",
        s.index_commit_micros_total as f64 / 1e6,
    );
    metric(
        "eventstore_lite_index_checkpoints_total",
        "counter",
        "Durable index commits (checkpoints, each on a thread of its own while the writer goes on).",
        s.index_checkpoints as f64,
    );
    metric(
        "eventstore_lite_index_checkpoint_seconds_max",
        "gauge",
        "The longest index checkpoint so far (the writer does not wait for it).",
        s.index_checkpoint_micros_max as f64 / 1e6,
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

/// A users-API failure as EventStoreDB's HTTP API answers it: a status and a JSON message.
fn user_error(error: UserError) -> (StatusCode, Json<serde_json::Value>) {
    let status = match &error {
        UserError::Conflict(_) => StatusCode::CONFLICT,
        UserError::NotFound(_) => StatusCode::NOT_FOUND,
        UserError::Invalid(_) | UserError::WrongPassword => StatusCode::BAD_REQUEST,
        UserError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        Json(json!({ "success": false, "error": error.to_string() })),
    )
}

type UserReply =
    Result<(StatusCode, Json<serde_json::Value>), (StatusCode, Json<serde_json::Value>)>;

fn require_admin(principal: &Principal) -> Result<(), (StatusCode, Json<serde_json::Value>)> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({ "success": false, "error": "Access denied" })),
        ))
    }
}

fn changed(state: &HttpState, login: &str, status: StatusCode) -> UserReply {
    if let Some(users) = &state.users {
        users.invalidate();
    }
    Ok((status, Json(json!({ "loginName": login, "success": true }))))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    login_name: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    groups: Vec<String>,
    password: String,
}

async fn create_user(
    State(state): State<HttpState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Json(user): Json<NewUser>,
) -> UserReply {
    require_admin(&principal)?;
    users::create(
        &state.store,
        &user.login_name,
        &user.full_name,
        user.groups,
        &user.password,
    )
    .await
    .map_err(user_error)?;
    changed(&state, &user.login_name, StatusCode::CREATED)
}

async fn list_users(
    State(state): State<HttpState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> UserReply {
    require_admin(&principal)?;
    let users = users::list(&state.store).await.map_err(user_error)?;
    Ok((
        StatusCode::OK,
        Json(json!({ "data": users, "success": true })),
    ))
}

async fn get_user(
    State(state): State<HttpState>,
    axum::Extension(principal): axum::Extension<Principal>,
    axum::extract::Path(login): axum::extract::Path<String>,
) -> UserReply {
    if !principal.is_admin() && principal.user() != Some(login.as_str()) {
        require_admin(&principal)?;
    }
    let store = state.store.clone();
    let lookup = login.clone();
    let record = tokio::task::spawn_blocking(move || users::load(&store, &lookup))
        .await
        .map_err(|e| user_error(UserError::Store(e.to_string())))?
        .map_err(user_error)?
        .ok_or_else(|| user_error(UserError::NotFound(login)))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "data": users::UserDetails::from(&record), "success": true })),
    ))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserUpdate {
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

async fn update_user(
    State(state): State<HttpState>,
    axum::Extension(principal): axum::Extension<Principal>,
    axum::extract::Path(login): axum::extract::Path<String>,
    Json(update): Json<UserUpdate>,
) -> UserReply {
    require_admin(&principal)?;
    users::change(&state.store, &login, |record| {
        if let Some(full_name) = update.full_name {
            record.full_name = full_name;
        }
        if let Some(groups) = update.groups {
            record.groups = groups;
        }
        Ok(())
    })
    .await
    .map_err(user_error)?;
    changed(&state, &login, StatusCode::OK)
}

async fn delete_user(
    State(state): State<HttpState>,
    axum::Extension(principal): axum::Extension<Principal>,
    axum::extract::Path(login): axum::extract::Path<String>,
) -> UserReply {
    require_admin(&principal)?;
    users::change(&state.store, &login, |record| {
        record.deleted = true;
        Ok(())
    })
    .await
    .map_err(user_error)?;
    changed(&state, &login, StatusCode::OK)
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PasswordBody {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

async fn user_command(
    State(state): State<HttpState>,
    axum::Extension(principal): axum::Extension<Principal>,
    axum::extract::Path((login, command)): axum::extract::Path<(String, String)>,
    body: Option<Json<PasswordBody>>,
) -> UserReply {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    match command.as_str() {
        "change-password" => {
            if principal.user() != Some(login.as_str()) {
                require_admin(&principal)?;
            }
            users::change(&state.store, &login, |record| {
                if !record.verify(&body.current_password) {
                    return Err(UserError::WrongPassword);
                }
                users::set_password(record, &body.new_password)
            })
            .await
        }
        "reset-password" => {
            require_admin(&principal)?;
            users::change(&state.store, &login, |record| {
                users::set_password(record, &body.new_password)
            })
            .await
        }
        "enable" | "disable" => {
            require_admin(&principal)?;
            let disabled = command == "disable";
            users::change(&state.store, &login, |record| {
                record.disabled = disabled;
                Ok(())
            })
            .await
        }
        other => Err(UserError::Invalid(format!("unknown command '{other}'"))),
    }
    .map_err(user_error)?;
    changed(&state, &login, StatusCode::OK)
}
