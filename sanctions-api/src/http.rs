//! The HTTP API: the sanctioned-names list (`GET/POST /sanctioned-names`, `DELETE /sanctioned-names/{name}`),
//! ad-hoc screening (`POST /screen`), and held payments with the operator's decision
//! (`GET /held-payments`, `POST /held-payments/{paymentId}/release` and `/reject`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use events::PaymentId;
use infrastructure::http::{ApiError, ApiJson, ApiPath, CorrelationId, RouterBuilder};
use infrastructure::{CommandContext, Metrics, ReadModelStore, Repository};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::list::{ListError, SanctionedNames};
use crate::matching;
use crate::names::CurrentList;
use crate::read_model::{held_payments, HeldPayment};
use crate::screening::{DecisionError, Screening};

#[derive(Clone)]
pub struct AppState {
    pub names: Repository<SanctionedNames>,
    pub list: CurrentList,
    pub screenings: Repository<Screening>,
    pub read_models: ReadModelStore,
    pub threshold: f64,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sanctions-api",
        description = "The bank's sanctions list, screening and held payments"
    ),
    paths(
        list_names,
        add_name,
        remove_name,
        screen_name,
        list_held,
        release_held,
        reject_held
    ),
    components(schemas(
        NameBody,
        ScreenResult,
        ScoredMatch,
        DecisionBody,
        DecisionResult,
        HeldPayment
    ))
)]
struct SanctionsApi;

pub fn router(state: AppState, metrics: Metrics) -> Router {
    let routes = Router::new()
        .route("/sanctioned-names", get(list_names).post(add_name))
        .route("/sanctioned-names/:name", delete(remove_name))
        .route("/screen", post(screen_name))
        .route("/held-payments", get(list_held))
        .route("/held-payments/:payment_id/release", post(release_held))
        .route("/held-payments/:payment_id/reject", post(reject_held))
        .with_state(state);
    RouterBuilder::new("sanctions-api")
        .routes(routes)
        .metrics(metrics)
        .openapi(SanctionsApi::openapi())
        .build()
}

impl From<ListError> for ApiError {
    fn from(error: ListError) -> Self {
        match error {
            ListError::Empty => ApiError::unprocessable(error.to_string()),
            ListError::NotListed(_) => ApiError::not_found(error.to_string()),
        }
    }
}

impl From<DecisionError> for ApiError {
    fn from(error: DecisionError) -> Self {
        match error {
            DecisionError::NotHeld(_) => ApiError::not_found(error.to_string()),
            DecisionError::AlreadyDecided { .. } => ApiError::conflict(error.to_string()),
            DecisionError::Missing(_) => ApiError::unprocessable(error.to_string()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NameBody {
    pub name: String,
}

/// Every sanctioned name, as it was added.
#[utoipa::path(get, path = "/sanctioned-names",
    responses((status = 200, description = "The list", body = Vec<NameBody>)))]
async fn list_names(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let list = state.list.current().await?;
    let names: Vec<NameBody> = list
        .names()
        .map(|name| NameBody {
            name: name.to_owned(),
        })
        .collect();
    Ok(ApiJson(names))
}

/// Adds a name; adding one already listed (in any spelling of its normal form) changes nothing.
#[utoipa::path(post, path = "/sanctioned-names", request_body = NameBody,
    responses(
        (status = 201, description = "Added", body = NameBody),
        (status = 200, description = "Already listed", body = NameBody),
        (status = 422, description = "No letters or digits")))]
async fn add_name(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<impl IntoResponse, ApiError> {
    let context = CommandContext::new(correlation.metadata());
    let executed = state
        .names
        .execute(&(), &context, |list| list.add(&body.name))
        .await?;
    let status = if executed.events.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        ApiJson(NameBody {
            name: body.name.trim().to_owned(),
        }),
    ))
}

/// Removes a name (matched by its normal form).
#[utoipa::path(delete, path = "/sanctioned-names/{name}",
    params(("name" = String, Path, description = "The name, URL-encoded")),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not on the list")))]
async fn remove_name(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiPath(name): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let context = CommandContext::new(correlation.metadata());
    state
        .names
        .execute(&(), &context, |list| list.remove(&name))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScoredMatch {
    pub sanctioned_name: String,
    pub score: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScreenResult {
    pub name: String,
    pub threshold: f64,
    /// Best first; empty when the name is clear.
    pub matches: Vec<ScoredMatch>,
}

/// Screens a name against the current list, as payments are screened.
#[utoipa::path(post, path = "/screen", request_body = NameBody,
    responses((status = 200, description = "The matches at or above the threshold, with scores", body = ScreenResult)))]
async fn screen_name(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<impl IntoResponse, ApiError> {
    let list = state.list.current().await?;
    let matches = matching::screen(&body.name, list.names(), state.threshold)
        .into_iter()
        .map(|m| ScoredMatch {
            sanctioned_name: m.sanctioned_name,
            score: m.score,
        })
        .collect();
    Ok(ApiJson(ScreenResult {
        name: body.name,
        threshold: state.threshold,
        matches,
    }))
}

/// Payments held for review and not yet decided (read model).
#[utoipa::path(get, path = "/held-payments",
    responses((status = 200, description = "Held payments, oldest first", body = Vec<HeldPayment>)))]
async fn list_held(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let read_models = state.read_models.clone();
    let held = tokio::task::spawn_blocking(move || held_payments(&read_models))
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(|error| ApiError::internal(&error))?;
    Ok(ApiJson(held))
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct DecisionBody {
    /// Who decides (an operator).
    pub by: String,
    /// Why.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionResult {
    pub payment_id: String,
    /// `released` or `rejected`.
    pub decision: &'static str,
    pub by: String,
    pub reason: String,
}

async fn decide(
    state: AppState,
    correlation: CorrelationId,
    payment_id: String,
    body: DecisionBody,
    release: bool,
) -> Result<ApiJson<DecisionResult>, ApiError> {
    let payment: PaymentId = payment_id
        .parse()
        .map_err(|error: events::IdError| ApiError::bad_request(error.to_string()))?;
    let context = CommandContext::new(correlation.metadata().with_actor(body.by.trim().to_owned()));
    state
        .screenings
        .execute(&payment, &context, |screening| {
            if release {
                screening.release(payment, &body.by, &body.reason)
            } else {
                screening.reject(payment, &body.by, &body.reason)
            }
        })
        .await?;
    Ok(ApiJson(DecisionResult {
        payment_id: payment.to_string(),
        decision: if release { "released" } else { "rejected" },
        by: body.by.trim().to_owned(),
        reason: body.reason.trim().to_owned(),
    }))
}

/// Releases a held payment: it goes on to be credited.
#[utoipa::path(post, path = "/held-payments/{paymentId}/release", request_body = DecisionBody,
    params(("paymentId" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "Released", body = DecisionResult),
        (status = 404, description = "Not held"),
        (status = 409, description = "Already released or rejected"),
        (status = 422, description = "Missing who or why")))]
async fn release_held(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiPath(payment_id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<impl IntoResponse, ApiError> {
    decide(state, correlation, payment_id, body, true).await
}

/// Rejects a held payment: it fails and is returned to the payer.
#[utoipa::path(post, path = "/held-payments/{paymentId}/reject", request_body = DecisionBody,
    params(("paymentId" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "Rejected", body = DecisionResult),
        (status = 404, description = "Not held"),
        (status = 409, description = "Already released or rejected"),
        (status = 422, description = "Missing who or why")))]
async fn reject_held(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiPath(payment_id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<impl IntoResponse, ApiError> {
    decide(state, correlation, payment_id, body, false).await
}
