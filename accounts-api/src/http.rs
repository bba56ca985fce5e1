//! The accounts HTTP API (DESIGN §5): open, read (now, or as of an instant or revision: the time machine), deposit,
//! withdraw, change status and overdraft, list with filters, statement, ledger, transfers. Money is integer pence.
//!
//! Error mapping of the domain's refusals: a missing account is 404; an account that exists already, is not open,
//! or cannot make that status change is 409; a rule broken by the request's values (amount, funds, overdraft) is
//! 422; a malformed id or body is 400.

use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use events::{AccountId, AccountNumber, Money, SortCode};
use infrastructure::http::{ApiError, ApiJson, ApiPath, ApiQuery, CorrelationId};
use infrastructure::{CommandContext, EventStore, Loaded, ReadModelStore, Repository};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::account::{Account, AccountError, AccountStatus, Transaction};
use crate::read_model::{self, AccountFilter, Page, QueryError};
use crate::transfers::{self, TransferRequest};

/// The largest page a list answers with.
const MAX_PAGE_SIZE: usize = 500;
const DEFAULT_PAGE_SIZE: usize = 50;

#[derive(Clone)]
pub struct AppState {
    pub accounts: Repository<Account>,
    pub store: EventStore,
    pub read_models: ReadModelStore,
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/accounts", post(open_account).get(list_accounts))
        .route("/accounts/:id", get(get_account))
        .route("/accounts/:id/transactions", get(list_transactions))
        .route("/accounts/:id/deposits", post(deposit))
        .route("/accounts/:id/withdrawals", post(withdraw))
        .route("/accounts/:id/status", put(change_status))
        .route("/accounts/:id/overdraft", put(change_overdraft))
        .route("/transfers", post(transfer))
        .route("/ledger", get(ledger))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "accounts-api",
        description = "The bank's Accounts domain service"
    ),
    paths(
        open_account,
        list_accounts,
        get_account,
        list_transactions,
        deposit,
        withdraw,
        change_status,
        change_overdraft,
        transfer,
        ledger
    )
)]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::NotFound => ApiError::not_found("account does not exist"),
            AccountError::AlreadyExists(_)
            | AccountError::NotOpen(_)
            | AccountError::InvalidStatusChange { .. }
            | AccountError::BalanceNotZero(_) => ApiError::conflict(error.to_string()),
            AccountError::NonPositiveAmount
            | AccountError::InsufficientFunds { .. }
            | AccountError::NegativeOverdraft
            | AccountError::Overflow => ApiError::unprocessable(error.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        ApiError::internal(&error)
    }
}

/// An account as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: AccountId,
    pub sort_code: String,
    pub account_number: String,
    pub name: String,
    pub status: AccountStatus,
    pub balance: Money,
    pub overdraft_limit: Money,
    pub reserved: Money,
    /// Balance plus overdraft, less reservations.
    pub available: Money,
    /// The revision of the last event applied.
    pub revision: u64,
    /// When the last event applied happened.
    pub last_changed_at: Option<DateTime<Utc>>,
    /// Newest first.
    pub recent_transactions: Vec<Transaction>,
    /// The instant asked for, when this is the account as it was then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
}

impl AccountView {
    fn of(
        state: &Account,
        last_changed_at: Option<DateTime<Utc>>,
        as_of: Option<DateTime<Utc>>,
    ) -> Option<Self> {
        let id = state.id?;
        let mut recent = state.recent_transactions.clone();
        recent.reverse();
        Some(Self {
            id,
            sort_code: id.sort_code.to_string(),
            account_number: id.account_number.to_string(),
            name: state.name.clone(),
            status: state.status,
            balance: state.balance,
            overdraft_limit: state.overdraft_limit,
            reserved: state.reserved,
            available: state.available(),
            revision: state.revision.unwrap_or_default(),
            last_changed_at,
            recent_transactions: recent,
            as_of,
        })
    }

    fn of_loaded(loaded: &Loaded<Account>, as_of: Option<DateTime<Utc>>) -> Option<Self> {
        Self::of(&loaded.state, loaded.last_occurred_at, as_of)
    }
}

fn parse_id(text: &str) -> Result<AccountId, ApiError> {
    text.parse()
        .map_err(|error: events::IdError| ApiError::bad_request(error.to_string()))
}

fn view(state: &Account) -> Result<AccountView, ApiError> {
    AccountView::of(state, Some(Utc::now()), None)
        .ok_or_else(|| ApiError::not_found("account does not exist"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenAccount {
    sort_code: String,
    account_number: String,
    name: String,
    #[serde(default)]
    overdraft_limit: Option<i64>,
    #[serde(default)]
    initial_deposit: Option<i64>,
}

/// Opens an account, optionally with an overdraft and a first deposit.
#[utoipa::path(post, path = "/accounts", responses(
    (status = 201, description = "The account, opened"),
    (status = 409, description = "The account exists already"),
    (status = 422, description = "Invalid sort code, account number, name or amounts")))]
async fn open_account(
    axum::extract::State(state): axum::extract::State<AppState>,
    correlation: CorrelationId,
    ApiJson(request): ApiJson<OpenAccount>,
) -> Result<(StatusCode, ApiJson<AccountView>), ApiError> {
    let sort_code: SortCode = request
        .sort_code
        .parse()
        .map_err(|error: events::IdError| ApiError::unprocessable(error.to_string()))?;
    let account_number: AccountNumber = request
        .account_number
        .parse()
        .map_err(|error: events::IdError| ApiError::unprocessable(error.to_string()))?;
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 70 {
        return Err(ApiError::unprocessable(
            "name must be between 1 and 70 characters",
        ));
    }
    let overdraft = Money::from_pence(request.overdraft_limit.unwrap_or(0));
    let initial_deposit = request.initial_deposit.unwrap_or(0);
    if initial_deposit < 0 {
        return Err(ApiError::unprocessable(
            "initial deposit must not be negative",
        ));
    }
    let id = AccountId::new(sort_code, account_number);
    let context = CommandContext::new(correlation.metadata());
    let executed = state
        .accounts
        .execute_viewing(
            &id,
            &context,
            |account| {
                let mut events = account.open(id, name.clone(), overdraft)?;
                if initial_deposit > 0 {
                    let mut opened = account.clone();
                    for event in &events {
                        infrastructure::Aggregate::apply(&mut opened, event);
                    }
                    events.extend(opened.deposit(
                        Money::from_pence(initial_deposit),
                        "initial deposit".to_owned(),
                    )?);
                }
                Ok::<_, AccountError>(events)
            },
            view,
        )
        .await?;
    Ok((StatusCode::CREATED, ApiJson(executed.view?)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    status: Option<AccountStatus>,
    sort_code_prefix: Option<String>,
    min_balance: Option<i64>,
    max_balance: Option<i64>,
    page: Option<usize>,
    page_size: Option<usize>,
}

fn paging(page: Option<usize>, page_size: Option<usize>) -> Result<(usize, usize), ApiError> {
    let page = page.unwrap_or(1);
    let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page == 0 || page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::bad_request(format!(
            "page counts from 1 and pageSize must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    Ok((page, page_size))
}

/// Lists accounts (read model), filtered by status, sort-code prefix and balance range, paged.
#[utoipa::path(get, path = "/accounts", responses(
    (status = 200, description = "A page of accounts: items, page, pageSize, total")))]
async fn list_accounts(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<Page<read_model::AccountSummary>>, ApiError> {
    let (page, page_size) = paging(query.page, query.page_size)?;
    if let Some(prefix) = &query.sort_code_prefix {
        if prefix.len() > 6 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request(
                "sortCodePrefix must be up to 6 digits",
            ));
        }
    }
    let filter = AccountFilter {
        status: query.status,
        sort_code_prefix: query.sort_code_prefix,
        min_balance: query.min_balance,
        max_balance: query.max_balance,
    };
    let read_models = state.read_models.clone();
    let found = tokio::task::spawn_blocking(move || {
        read_model::list_accounts(&read_models, &filter, page, page_size)
    })
    .await
    .map_err(|error| ApiError::internal(&error))??;
    Ok(ApiJson(found))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeMachine {
    as_of: Option<DateTime<Utc>>,
    revision: Option<u64>,
}

/// One account now, or as it was at `?asOf=<RFC 3339>` or after `?revision=N` (the time machine).
#[utoipa::path(get, path = "/accounts/{id}", params(("id" = String, Path, description = "14 digits")),
    responses((status = 200, description = "The account"), (status = 404, description = "No such account")))]
async fn get_account(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TimeMachine>,
) -> Result<ApiJson<AccountView>, ApiError> {
    let id = parse_id(&id)?;
    let loaded = match (query.as_of, query.revision) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give asOf or revision, not both")),
        (Some(instant), None) => state.accounts.load_as_of(&id, instant).await?,
        (None, Some(revision)) => state.accounts.load_at_revision(&id, revision).await?,
        (None, None) => state.accounts.load(&id).await?,
    };
    AccountView::of_loaded(&loaded, query.as_of)
        .map(ApiJson)
        .ok_or_else(|| match (query.as_of, query.revision) {
            (Some(instant), _) => {
                ApiError::not_found(format!("account {id} did not exist at {instant}"))
            }
            (_, Some(revision)) => {
                ApiError::not_found(format!("account {id} did not exist at revision {revision}"))
            }
            _ => ApiError::not_found(format!("account {id} does not exist")),
        })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageQuery {
    page: Option<usize>,
    page_size: Option<usize>,
}

/// An account's transactions (read model), newest first, paged.
#[utoipa::path(get, path = "/accounts/{id}/transactions", params(("id" = String, Path, description = "14 digits")),
    responses((status = 200, description = "A page of transactions"), (status = 404, description = "No such account")))]
async fn list_transactions(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<ApiJson<Page<read_model::TransactionRow>>, ApiError> {
    let id = parse_id(&id)?;
    let (page, page_size) = paging(query.page, query.page_size)?;
    let read_models = state.read_models.clone();
    let (summary, found) = tokio::task::spawn_blocking(move || {
        let summary = read_model::account_summary(&read_models, &id)?;
        let found = read_model::transactions(&read_models, &id, page, page_size)?;
        Ok::<_, QueryError>((summary, found))
    })
    .await
    .map_err(|error| ApiError::internal(&error))??;
    if summary.is_none() {
        // The read model may lag a moment behind a brand-new account: ask the stream.
        if !state.accounts.load(&id).await?.state.exists() {
            return Err(ApiError::not_found(format!("account {id} does not exist")));
        }
    }
    Ok(ApiJson(found))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MoveMoney {
    amount: i64,
    #[serde(default)]
    reference: String,
}

async fn move_money(
    state: AppState,
    correlation: CorrelationId,
    id: String,
    request: MoveMoney,
    withdrawal: bool,
) -> Result<ApiJson<AccountView>, ApiError> {
    let id = parse_id(&id)?;
    if request.reference.chars().count() > 70 {
        return Err(ApiError::unprocessable(
            "reference must be at most 70 characters",
        ));
    }
    let amount = Money::from_pence(request.amount);
    let context = CommandContext::new(correlation.metadata());
    let executed = state
        .accounts
        .execute_viewing(
            &id,
            &context,
            |account| {
                if withdrawal {
                    account.withdraw(amount, request.reference.clone())
                } else {
                    account.deposit(amount, request.reference.clone())
                }
            },
            view,
        )
        .await?;
    Ok(ApiJson(executed.view?))
}

/// Deposits `amount` pence.
#[utoipa::path(post, path = "/accounts/{id}/deposits", params(("id" = String, Path, description = "14 digits")),
    responses((status = 200, description = "The account after the deposit"), (status = 404, description = "No such account"),
    (status = 409, description = "The account is not open"), (status = 422, description = "The amount is not positive")))]
async fn deposit(
    axum::extract::State(state): axum::extract::State<AppState>,
    correlation: CorrelationId,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<MoveMoney>,
) -> Result<ApiJson<AccountView>, ApiError> {
    move_money(state, correlation, id, request, false).await
}

/// Withdraws `amount` pence, within the available balance (overdraft included).
#[utoipa::path(post, path = "/accounts/{id}/withdrawals", params(("id" = String, Path, description = "14 digits")),
    responses((status = 200, description = "The account after the withdrawal"), (status = 404, description = "No such account"),
    (status = 409, description = "The account is not open"), (status = 422, description = "Insufficient funds or a non-positive amount")))]
async fn withdraw(
    axum::extract::State(state): axum::extract::State<AppState>,
    correlation: CorrelationId,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<MoveMoney>,
) -> Result<ApiJson<AccountView>, ApiError> {
    move_money(state, correlation, id, request, true).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangeStatus {
    status: AccountStatus,
    #[serde(default)]
    reason: String,
}

/// Blocks, unblocks or closes the account.
#[utoipa::path(put, path = "/accounts/{id}/status", params(("id" = String, Path, description = "14 digits")),
    responses((status = 200, description = "The account after the change"), (status = 404, description = "No such account"),
    (status = 409, description = "The change is not allowed (closed, or a balance left)")))]
async fn change_status(
    axum::extract::State(state): axum::extract::State<AppState>,
    correlation: CorrelationId,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ChangeStatus>,
) -> Result<ApiJson<AccountView>, ApiError> {
    let id = parse_id(&id)?;
    let context = CommandContext::new(correlation.metadata());
    let executed = state
        .accounts
        .execute_viewing(
            &id,
            &context,
            |account| account.change_status(request.status, request.reason.clone()),
            view,
        )
        .await?;
    Ok(ApiJson(executed.view?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangeOverdraft {
    overdraft_limit: i64,
}

/// Sets the overdraft limit (pence, not negative).
#[utoipa::path(put, path = "/accounts/{id}/overdraft", params(("id" = String, Path, description = "14 digits")),
    responses((status = 200, description = "The account after the change"), (status = 404, description = "No such account"),
    (status = 409, description = "The account is not open"), (status = 422, description = "A negative limit")))]
async fn change_overdraft(
    axum::extract::State(state): axum::extract::State<AppState>,
    correlation: CorrelationId,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ChangeOverdraft>,
) -> Result<ApiJson<AccountView>, ApiError> {
    let id = parse_id(&id)?;
    let limit = Money::from_pence(request.overdraft_limit);
    let context = CommandContext::new(correlation.metadata());
    let executed = state
        .accounts
        .execute_viewing(
            &id,
            &context,
            |account| account.change_overdraft(limit),
            view,
        )
        .await?;
    Ok(ApiJson(executed.view?))
}

/// Moves money between two of the bank's accounts: debit, credit, and a refund if the credit fails.
#[utoipa::path(post, path = "/transfers", responses(
    (status = 201, description = "The transfer and its outcome: completed, or compensated (refunded)"),
    (status = 404, description = "The source account does not exist"),
    (status = 422, description = "The debit was refused; nothing moved")))]
async fn transfer(
    axum::extract::State(state): axum::extract::State<AppState>,
    correlation: CorrelationId,
    ApiJson(request): ApiJson<TransferRequest>,
) -> Result<(StatusCode, ApiJson<transfers::TransferOutcome>), ApiError> {
    let outcome = transfers::run_transfer(
        &state.accounts,
        &state.store,
        correlation.metadata(),
        request,
    )
    .await?;
    Ok((StatusCode::CREATED, ApiJson(outcome)))
}

/// Bank-wide totals (read model): accounts by status, total balance, deposits, withdrawals, payments credited.
#[utoipa::path(get, path = "/ledger", responses((status = 200, description = "The totals")))]
async fn ledger(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<ApiJson<read_model::Ledger>, ApiError> {
    let read_models = state.read_models.clone();
    let ledger = tokio::task::spawn_blocking(move || read_model::ledger(&read_models))
        .await
        .map_err(|error| ApiError::internal(&error))??;
    Ok(ApiJson(ledger))
}
