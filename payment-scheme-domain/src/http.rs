//! The HTTP API: the scheme gateway (`POST /scheme/inbound`), one payment with its full history
//! (`GET /payments/{paymentId}`), payments by stage (`GET /payments?status=`) and statistics (`GET /stats`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use events::ids::payment_id_for_scheme_transaction;
use events::payments::{InboundPaymentEvent, InboundPaymentReceived, Party};
use events::{streams, DomainEvent, PaymentId};
use futures::StreamExt;
use infrastructure::http::{ApiError, ApiJson, ApiPath, ApiQuery, CorrelationId, RouterBuilder};
use infrastructure::{
    CommandContext, EventStore, ExecuteError, Metrics, ReadModelStore, Repository, StoreError,
};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use utoipa::OpenApi;

use crate::admission::Admission;
use crate::inbound::InboundPayment;
use crate::read_model::{stage_named, PaymentRecord, PaymentsQuery, Stats};

/// How many payments of one request are received at once.
const RECEIVE_CONCURRENCY: usize = 32;
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1_000;

#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    pub payments: Repository<InboundPayment>,
    pub read_models: ReadModelStore,
    pub admission: std::sync::Arc<Admission>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payment-scheme-domain",
        description = "The bank's scheme gateway and inbound payment process"
    ),
    paths(receive_inbound, get_payment, list_payments, get_stats),
    components(schemas(SchemePayment, PartyBody, Received, ReceivedPayment, Stats))
)]
struct PaymentsApi;

pub fn router(state: AppState, metrics: Metrics) -> Router {
    let routes = Router::new()
        .route("/scheme/inbound", post(receive_inbound))
        .route("/payments", get(list_payments))
        .route("/payments/:payment_id", get(get_payment))
        .route("/stats", get(get_stats))
        .with_state(state);
    RouterBuilder::new("payment-scheme-domain")
        .routes(routes)
        .metrics(metrics)
        .openapi(PaymentsApi::openapi())
        .build()
}

/// One side of a scheme payment.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartyBody {
    pub name: String,
    pub sort_code: String,
    pub account_number: String,
}

/// A payment as the scheme sends it. Fields are taken as they come; validation is the next stage's job.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemePayment {
    pub scheme_transaction_id: String,
    pub payer: PartyBody,
    pub beneficiary: PartyBody,
    /// Pence.
    pub amount: i64,
    #[serde(default)]
    pub reference: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<SchemePayment>),
    One(SchemePayment),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedPayment {
    #[schema(value_type = String)]
    pub payment_id: PaymentId,
    pub scheme_transaction_id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    #[schema(value_type = Vec<String>)]
    pub payment_ids: Vec<PaymentId>,
    pub payments: Vec<ReceivedPayment>,
}

fn party(body: PartyBody) -> Party {
    Party {
        name: body.name,
        sort_code: body.sort_code,
        account_number: body.account_number,
    }
}

/// Records one scheme message as `InboundPaymentReceived`, once: the stream must not exist yet, and the event's id
/// is derived from the payment id, so a repeat (even a concurrent one) records nothing new.
async fn receive_one(
    payments: &Repository<InboundPayment>,
    correlation: CorrelationId,
    payment: SchemePayment,
) -> Result<ReceivedPayment, ApiError> {
    let payment_id = payment_id_for_scheme_transaction(&payment.scheme_transaction_id);
    let received = InboundPaymentReceived {
        payment_id,
        scheme_transaction_id: payment.scheme_transaction_id.clone(),
        payer: party(payment.payer),
        beneficiary: party(payment.beneficiary),
        amount: payment.amount,
        reference: payment.reference,
    };
    let context =
        CommandContext::idempotent(correlation.metadata(), format!("{payment_id}/received"));
    // A repeat of the very same message is acknowledged by the store as already written; a repeat after the
    // payment moved on finds the stream there and decides nothing: either way nothing new is recorded.
    payments
        .execute_expecting_new(&payment_id, &context, |state| {
            Ok::<_, Infallible>(state.receive(received.clone()))
        })
        .await
        .map_err(|error| match error {
            ExecuteError::Rejected(never) => match never {},
            ExecuteError::Store(store) => ApiError::from(store),
            ExecuteError::Conflict { stream, attempts } => {
                ApiError::from(ExecuteError::<ApiError>::Conflict { stream, attempts })
            }
        })?;
    Ok(ReceivedPayment {
        payment_id,
        scheme_transaction_id: payment.scheme_transaction_id,
    })
}

/// Receives one scheme payment or an array of them. Idempotent on the scheme transaction id. Refused whole
/// (503 `busy`, `Retry-After`) while the bank has as many payments in progress as it admits.
#[utoipa::path(
    post,
    path = "/scheme/inbound",
    request_body = SchemePayment,
    responses(
        (status = 202, description = "Received; the payment ids", body = Received),
        (status = 422, description = "Not a scheme payment (or array of them)"),
        (status = 503, description = "Busy: too many payments in progress; send again after `Retry-After` seconds")
    )
)]
async fn receive_inbound(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiJson(body): ApiJson<OneOrMany>,
) -> Result<impl IntoResponse, ApiError> {
    let payments = match body {
        OneOrMany::Many(payments) => payments,
        OneOrMany::One(payment) => vec![payment],
    };
    if let Some(index) = payments
        .iter()
        .position(|p| p.scheme_transaction_id.trim().is_empty())
    {
        return Err(ApiError::unprocessable(format!(
            "payment {index} has an empty schemeTransactionId"
        )));
    }
    state.admission.check().await?;
    let repository = &state.payments;
    let results: Vec<Result<ReceivedPayment, ApiError>> = futures::stream::iter(payments)
        .map(|payment| receive_one(repository, correlation, payment))
        .buffered(RECEIVE_CONCURRENCY)
        .collect()
        .await;
    let payments = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let payment_ids = payments.iter().map(|p| p.payment_id).collect();
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(Received {
            payment_ids,
            payments,
        }),
    ))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryEntry {
    revision: u64,
    event_type: &'static str,
    event_id: uuid::Uuid,
    occurred_at: chrono::DateTime<chrono::Utc>,
    correlation_id: uuid::Uuid,
    causation_id: uuid::Uuid,
    data: serde_json::Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReturnReasonBody {
    code: char,
    description: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentSummary {
    payment_id: String,
    stage: &'static str,
    #[serde(rename = "final")]
    is_final: bool,
    scheme_transaction_id: Option<String>,
    amount: Option<i64>,
    payer_name: Option<String>,
    beneficiary_sort_code: Option<String>,
    beneficiary_account_number: Option<String>,
    beneficiary_name: Option<String>,
    reference: Option<String>,
    return_reason: Option<ReturnReasonBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn summary(payment_id: String, state: &InboundPayment) -> PaymentSummary {
    let received = state.received.as_ref();
    PaymentSummary {
        payment_id,
        stage: state.stage.name(),
        is_final: state.stage.is_final(),
        scheme_transaction_id: received.map(|r| r.scheme_transaction_id.clone()),
        amount: received.map(|r| r.amount),
        payer_name: received.map(|r| r.payer.name.clone()),
        beneficiary_sort_code: received.map(|r| r.beneficiary.sort_code.clone()),
        beneficiary_account_number: received.map(|r| r.beneficiary.account_number.clone()),
        beneficiary_name: received.map(|r| r.beneficiary.name.clone()),
        reference: received.map(|r| r.reference.clone()),
        return_reason: state.return_reason.map(|reason| ReturnReasonBody {
            code: reason.code(),
            description: reason.description(),
        }),
        updated_at: None,
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentDetail {
    #[serde(flatten)]
    summary: PaymentSummary,
    revision: u64,
    history: Vec<HistoryEntry>,
}

/// A payment's stage and the full history of its stream, read from the stream itself.
#[utoipa::path(
    get,
    path = "/payments/{paymentId}",
    params(("paymentId" = String, Path, description = "The payment id (a UUID)")),
    responses(
        (status = 200, description = "The payment's stage and history"),
        (status = 400, description = "Not a payment id"),
        (status = 404, description = "No such payment")
    )
)]
async fn get_payment(
    State(state): State<AppState>,
    ApiPath(payment_id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let payment_id: PaymentId = payment_id
        .parse()
        .map_err(|error: events::IdError| ApiError::bad_request(error.to_string()))?;
    let stream = streams::inbound_payment(&payment_id);
    let history = match state
        .store
        .read_stream::<InboundPaymentEvent>(&stream)
        .await
    {
        Ok(history) => history,
        Err(StoreError::NotFound(_) | StoreError::Deleted(_)) => {
            return Err(ApiError::not_found(format!(
                "payment {payment_id} does not exist"
            )))
        }
        Err(error) => return Err(error.into()),
    };
    let mut payment = InboundPayment::default();
    let mut entries = Vec::with_capacity(history.len());
    let mut revision = 0;
    for stored in &history {
        payment.apply(&stored.event);
        revision = stored.revision;
        entries.push(HistoryEntry {
            revision: stored.revision,
            event_type: stored.event.event_type(),
            event_id: stored.id,
            occurred_at: stored.metadata.occurred_at,
            correlation_id: stored.metadata.correlation_id,
            causation_id: stored.metadata.causation_id,
            data: serde_json::to_value(&stored.event).unwrap_or(serde_json::Value::Null),
        });
    }
    let mut summary = summary(payment_id.to_string(), &payment);
    summary.updated_at = history.last().map(|stored| stored.metadata.occurred_at);
    Ok(ApiJson(PaymentDetail {
        summary,
        revision,
        history: entries,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    status: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentList {
    payments: Vec<PaymentSummary>,
    total: u64,
    page: usize,
    page_size: usize,
}

fn record_summary(record: &PaymentRecord) -> PaymentSummary {
    let id = record
        .state
        .received
        .as_ref()
        .map(|r| r.payment_id.to_string())
        .unwrap_or_default();
    let mut summary = summary(id, &record.state);
    summary.updated_at = Some(record.updated_at);
    summary
}

/// Payments from the read model, optionally only those at one stage.
#[utoipa::path(
    get,
    path = "/payments",
    params(
        ("status" = Option<String>, Query, description = "received, validated, held, sanctionsChecked, accountChecked, credited, failed or returned"),
        ("page" = Option<usize>, Query, description = "From 0"),
        ("pageSize" = Option<usize>, Query, description = "Default 50, at most 1000")
    ),
    responses(
        (status = 200, description = "The page of payments and how many match"),
        (status = 400, description = "Unknown status")
    )
)]
async fn list_payments(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    let stage = match params.status.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => Some(
            stage_named(name)
                .ok_or_else(|| ApiError::bad_request(format!("unknown status '{name}'")))?,
        ),
        None => None,
    };
    let page = params.page.unwrap_or(0);
    let page_size = params
        .page_size
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let query = PaymentsQuery::new(state.read_models.clone());
    let (records, total) = tokio::task::spawn_blocking(move || query.list(stage, page, page_size))
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(|error| ApiError::internal(&error))?;
    Ok(ApiJson(PaymentList {
        payments: records.iter().map(record_summary).collect(),
        total,
        page,
        page_size,
    }))
}

/// Payments per current stage and returns per reason code, from the read model.
#[utoipa::path(
    get,
    path = "/stats",
    responses((status = 200, description = "Counts per stage and per return reason", body = Stats))
)]
async fn get_stats(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let query = PaymentsQuery::new(state.read_models.clone());
    let stats = tokio::task::spawn_blocking(move || query.stats())
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map_err(|error| ApiError::internal(&error))?;
    Ok(ApiJson(stats))
}
