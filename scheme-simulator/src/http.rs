//! The simulator's HTTP routes (DESIGN §5): send inbound payments (explicit, random, a Standard 18 file, load at
//! a rate), receive and list returns, list outbound payments.

use std::collections::{BTreeMap, HashSet};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use events::ids::{deterministic_event_id, PaymentId};
use infrastructure::eventstore::ExpectedRevision;
use infrastructure::http::{ApiError, ApiJson, ApiPath, ApiQuery, CorrelationId, RouterBuilder};
use infrastructure::{NewEvent, StoreError};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::generator::{self, Case, Mix};
use crate::load::LoadStatus;
use crate::record::{self, FileReceived, ReturnReceived, SchemeEvent, SubmissionSource};
use crate::submit::submit;
use crate::{standard18, AppState, SchemePayment};

/// Most payments one random request may generate.
const MAX_RANDOM_COUNT: u32 = 100_000;
/// Largest Standard 18 file accepted.
const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "scheme-simulator",
        description = "The simulated Bacs scheme: sends the bank inbound payments, receives its returns."
    ),
    paths(
        inbound_payments,
        random_payments,
        file_payments,
        start_load,
        list_loads,
        get_load,
        post_return,
        list_returns,
        outbound_payments
    ),
    components(schemas(ReturnReceived, LoadStatus)),
    tags((name = "scheme", description = "The scheme's side of Bacs"))
)]
struct ApiDoc;

pub(crate) fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/inbound-payments", post(inbound_payments))
        .route("/inbound-payments/random", post(random_payments))
        .route(
            "/inbound-payments/files",
            post(file_payments).layer(DefaultBodyLimit::max(MAX_FILE_BYTES)),
        )
        .route("/load", post(start_load).get(list_loads))
        .route("/load/:load_id", get(get_load))
        .route("/returns", post(post_return).get(list_returns))
        .route("/outbound-payments", get(outbound_payments))
        .with_state(state);
    RouterBuilder::new("scheme-simulator")
        .routes(routes)
        .openapi(ApiDoc::openapi())
        .build()
}

/// One payment or many.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<SchemePayment>),
    One(Box<SchemePayment>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubmittedBody {
    count: usize,
    submission_ids: Vec<Uuid>,
    payment_ids: Vec<PaymentId>,
}

/// Sends the given scheme payments to the bank as they are (no validation: testing the bank's is the point).
#[utoipa::path(post, path = "/inbound-payments", tag = "scheme",
    request_body(content = Object, description = "a SchemePayment or an array of them"),
    responses((status = 202, description = "forwarded; the bank's payment ids"),
              (status = 503, description = "the bank cannot be reached, or is busy (`Retry-After`; the message says how many payments were taken)")))]
async fn inbound_payments(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiJson(body): ApiJson<OneOrMany>,
) -> Result<(StatusCode, ApiJson<SubmittedBody>), ApiError> {
    let payments = match body {
        OneOrMany::Many(payments) => payments,
        OneOrMany::One(payment) => vec![*payment],
    };
    if payments.is_empty() {
        return Err(ApiError::bad_request("no payments given"));
    }
    let count = payments.len();
    let submitted = submit(
        &state,
        SubmissionSource::Explicit,
        payments,
        &correlation.metadata(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(SubmittedBody {
            count,
            submission_ids: submitted.submission_ids,
            payment_ids: submitted.payment_ids,
        }),
    ))
}

/// The share of each case; the rest are ordinary payments to open accounts.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Ratios {
    sanctioned_ratio: f64,
    invalid_ratio: f64,
    unknown_account_ratio: f64,
    closed_account_ratio: f64,
}

impl Ratios {
    fn mix(self) -> Result<Mix, ApiError> {
        let all = [
            self.sanctioned_ratio,
            self.invalid_ratio,
            self.unknown_account_ratio,
            self.closed_account_ratio,
        ];
        if all.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err(ApiError::unprocessable(
                "every ratio must be between 0 and 1",
            ));
        }
        if all.iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err(ApiError::unprocessable(
                "the ratios must add up to at most 1",
            ));
        }
        Ok(Mix {
            sanctioned: self.sanctioned_ratio,
            invalid: self.invalid_ratio,
            unknown_account: self.unknown_account_ratio,
            closed_account: self.closed_account_ratio,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RandomRequest {
    count: u32,
    #[serde(flatten)]
    ratios: Ratios,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct CaseCounts {
    ordinary: u32,
    sanctioned: u32,
    invalid: u32,
    unknown_account: u32,
    closed_account: u32,
}

impl CaseCounts {
    fn add(&mut self, case: Case) {
        let counter = match case {
            Case::Ordinary => &mut self.ordinary,
            Case::Sanctioned => &mut self.sanctioned,
            Case::Invalid => &mut self.invalid,
            Case::UnknownAccount => &mut self.unknown_account,
            Case::ClosedAccount => &mut self.closed_account,
        };
        *counter += 1;
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RandomBody {
    count: usize,
    cases: CaseCounts,
    submission_ids: Vec<Uuid>,
    scheme_transaction_ids: Vec<String>,
    payment_ids: Vec<PaymentId>,
}

/// Generates `count` payments with the given case ratios, to accounts and from sanctioned names the bank's
/// services list, and sends them.
#[utoipa::path(post, path = "/inbound-payments/random", tag = "scheme",
    request_body(content = Object, description = "{count, sanctionedRatio, invalidRatio, unknownAccountRatio, closedAccountRatio}"),
    responses((status = 202, description = "generated and forwarded; counts per case"),
              (status = 422, description = "bad count or ratios"),
              (status = 503, description = "the bank cannot be reached, or is busy (`Retry-After`; the message says how many payments were taken)")))]
async fn random_payments(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiJson(request): ApiJson<RandomRequest>,
) -> Result<(StatusCode, ApiJson<RandomBody>), ApiError> {
    let mix = request.ratios.mix()?;
    if request.count == 0 || request.count > MAX_RANDOM_COUNT {
        return Err(ApiError::unprocessable(format!(
            "count must be between 1 and {MAX_RANDOM_COUNT}"
        )));
    }
    let population = state
        .bank
        .population()
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut cases = CaseCounts::default();
    let payments: Vec<SchemePayment> = (0..u64::from(request.count))
        .map(|sequence| {
            let (payment, case) = generator::payment(&mut rng, mix, &population, sequence);
            cases.add(case);
            payment
        })
        .collect();
    let scheme_transaction_ids = payments
        .iter()
        .map(|p| p.scheme_transaction_id.clone())
        .collect();
    let count = payments.len();
    let submitted = submit(
        &state,
        SubmissionSource::Random,
        payments,
        &correlation.metadata(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(RandomBody {
            count,
            cases,
            submission_ids: submitted.submission_ids,
            scheme_transaction_ids,
            payment_ids: submitted.payment_ids,
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileQuery {
    file_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FileBody {
    file_id: String,
    records: usize,
    submission_ids: Vec<Uuid>,
    payment_ids: Vec<PaymentId>,
}

/// Namespace of file ids derived from a file's content.
const FILE_NAMESPACE: Uuid = Uuid::from_u128(0x5c4e_3e18_f11e_4d00_8b18_0000_0000_0018);

/// Parses a Standard 18 file (the body, as text) and sends its payments. The scheme transaction ids are
/// `<fileId>-<line>`; without `?fileId=` the id is derived from the content, so the same file sent twice names
/// the same transactions (and the bank takes them once).
#[utoipa::path(post, path = "/inbound-payments/files", tag = "scheme",
    params(("fileId" = Option<String>, Query, description = "the file's id; default: derived from its content")),
    request_body(content = String, content_type = "text/plain", description = "a Bacs Standard 18 file"),
    responses((status = 202, description = "parsed and forwarded"),
              (status = 422, description = "the file does not parse"),
              (status = 503, description = "the bank cannot be reached, or is busy (`Retry-After`; the message says how many payments were taken)")))]
async fn file_payments(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiQuery(query): ApiQuery<FileQuery>,
    text: String,
) -> Result<(StatusCode, ApiJson<FileBody>), ApiError> {
    let file_id = match query.file_id {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            id
        }
        Some(id) => {
            return Err(ApiError::bad_request(format!(
                "fileId '{id}' must be letters, digits and '_'"
            )))
        }
        None => {
            let digest = Uuid::new_v5(&FILE_NAMESPACE, text.as_bytes())
                .simple()
                .to_string();
            format!("F{}", &digest[..12]).to_uppercase()
        }
    };
    let payments = standard18::parse(&file_id, &text)
        .map_err(|error| ApiError::unprocessable(error.to_string()))?;
    if payments.is_empty() {
        return Err(ApiError::unprocessable("the file holds no payment records"));
    }
    let metadata = correlation.metadata();
    let stream = record::file_stream(&file_id);
    let received = SchemeEvent::from(FileReceived {
        file_id: file_id.clone(),
        records: payments.len(),
        text,
    });
    let event_id = deterministic_event_id(&stream, "received");
    match state
        .store
        .append(
            &stream,
            ExpectedRevision::NoStream,
            &[NewEvent::with_id(event_id, received, metadata.clone())],
        )
        .await
    {
        // A file sent again: its payments go again too; the bank receives each scheme transaction once.
        Ok(_) => {}
        Err(error) if error.is_wrong_expected_version() => {}
        Err(error) => return Err(error.into()),
    }
    let records = payments.len();
    let submitted = submit(&state, SubmissionSource::File, payments, &metadata).await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(FileBody {
            file_id,
            records,
            submission_ids: submitted.submission_ids,
            payment_ids: submitted.payment_ids,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadRequest {
    rate_per_second: u32,
    duration_seconds: u32,
    #[serde(flatten)]
    ratios: Ratios,
}

/// Starts a load run in the background: random payments (optional ratios as for `/inbound-payments/random`)
/// at `ratePerSecond` for `durationSeconds`, both bounded by the simulator's options.
#[utoipa::path(post, path = "/load", tag = "scheme",
    request_body(content = Object, description = "{ratePerSecond, durationSeconds, …ratios}"),
    responses((status = 202, description = "started", body = LoadStatus),
              (status = 422, description = "rate or duration out of bounds"),
              (status = 503, description = "the bank's services cannot be reached")))]
async fn start_load(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiJson(request): ApiJson<LoadRequest>,
) -> Result<(StatusCode, ApiJson<LoadStatus>), ApiError> {
    let mix = request.ratios.mix()?;
    let max_rate = state.config.max_load_rate;
    if request.rate_per_second == 0 || request.rate_per_second > max_rate {
        return Err(ApiError::unprocessable(format!(
            "ratePerSecond must be between 1 and {max_rate}"
        )));
    }
    let max_seconds = state.config.max_load_duration.as_secs();
    if request.duration_seconds == 0 || u64::from(request.duration_seconds) > max_seconds {
        return Err(ApiError::unprocessable(format!(
            "durationSeconds must be between 1 and {max_seconds}"
        )));
    }
    let population = state
        .bank
        .population()
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    let status = crate::load::start(
        &state,
        request.rate_per_second,
        request.duration_seconds,
        mix,
        population,
        correlation.metadata(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(status)))
}

/// The load runs of this process, oldest id first.
#[utoipa::path(get, path = "/load", tag = "scheme",
    responses((status = 200, description = "every run", body = [LoadStatus])))]
async fn list_loads(State(state): State<AppState>) -> ApiJson<Vec<LoadStatus>> {
    ApiJson(state.loads.list())
}

/// One load run.
#[utoipa::path(get, path = "/load/{loadId}", tag = "scheme",
    params(("loadId" = String, Path, description = "the run's id")),
    responses((status = 200, description = "the run", body = LoadStatus),
              (status = 404, description = "no such run")))]
async fn get_load(
    State(state): State<AppState>,
    ApiPath(load_id): ApiPath<Uuid>,
) -> Result<ApiJson<LoadStatus>, ApiError> {
    state
        .loads
        .get(&load_id)
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found(format!("no load run {load_id}")))
}

/// Receives a returned payment from the bank. The same return sent twice is recorded once.
#[utoipa::path(post, path = "/returns", tag = "scheme",
    request_body = ReturnReceived,
    responses((status = 202, description = "recorded")))]
async fn post_return(
    State(state): State<AppState>,
    correlation: CorrelationId,
    ApiJson(returned): ApiJson<ReturnReceived>,
) -> Result<StatusCode, ApiError> {
    let event_id = deterministic_event_id(&format!("return/{}", returned.payment_id), "received");
    state
        .store
        .append(
            record::RETURNS_STREAM,
            ExpectedRevision::Any,
            &[NewEvent::with_id(
                event_id,
                SchemeEvent::from(returned),
                correlation.metadata(),
            )],
        )
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Every return received, in the order received (one per payment).
#[utoipa::path(get, path = "/returns", tag = "scheme",
    responses((status = 200, description = "the returns", body = [ReturnReceived])))]
async fn list_returns(
    State(state): State<AppState>,
) -> Result<ApiJson<Vec<ReturnReceived>>, ApiError> {
    let events = match state
        .store
        .read_stream::<SchemeEvent>(record::RETURNS_STREAM)
        .await
    {
        Ok(events) => events,
        Err(StoreError::NotFound(_)) => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    // A return retried long after the first (beyond the store's memory of recent ids) is shown once.
    let mut seen = HashSet::new();
    let returns = events
        .into_iter()
        .filter_map(|stored| match stored.event {
            SchemeEvent::ReturnReceived(returned) => Some(returned),
            _ => None,
        })
        .filter(|returned| seen.insert(returned.payment_id))
        .collect();
    Ok(ApiJson(returns))
}

/// Outbound payments the bank submitted to the scheme. The bank sends none yet (outbound payments are not
/// built), so this is always an empty list.
#[utoipa::path(get, path = "/outbound-payments", tag = "scheme",
    responses((status = 200, description = "outbound payments received (none yet)")))]
async fn outbound_payments() -> ApiJson<Vec<BTreeMap<String, String>>> {
    ApiJson(Vec::new())
}
