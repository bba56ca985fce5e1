//! The accounts read model, projected from every `account-…` event: one summary row per account (for the
//! filtered, paged list), one row per transaction (for the paged statement), and running totals (for the ledger).
//! Stored in redb with the projector's checkpoint, so a restart neither replays history nor counts twice.

use std::collections::{BTreeMap, HashMap};

use events::accounts::AccountEvent;
use events::{AccountId, Money};
use infrastructure::redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use infrastructure::{ApplyError, ReadModel, ReadModelStore, StoredEvent};
use serde::{Deserialize, Serialize};

use crate::account::AccountStatus;

/// Account id → JSON [`AccountSummary`].
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// (account id, revision) → JSON [`TransactionRow`].
const TRANSACTIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("transactions");
/// Name → running total (pence or a count).
const TOTALS: TableDefinition<&str, i64> = TableDefinition::new("totals");

const TOTAL_DEPOSITS: &str = "deposits";
const TOTAL_WITHDRAWALS: &str = "withdrawals";
const TOTAL_CREDITED: &str = "credited";
const PAYMENTS_CREDITED: &str = "paymentsCredited";
const TOTAL_TRANSFERRED_IN: &str = "transferredIn";
const TOTAL_DEBITED: &str = "debited";
const PAYMENTS_REFUSED: &str = "paymentsRefused";

/// One account as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSummary {
    pub id: AccountId,
    pub sort_code: String,
    pub account_number: String,
    pub name: String,
    pub status: AccountStatus,
    pub balance: Money,
    pub overdraft_limit: Money,
    pub reserved: Money,
    /// The revision of the last event applied.
    pub revision: u64,
}

/// One line of an account's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRow {
    pub revision: u64,
    pub kind: String,
    /// Positive for credits, negative for debits.
    pub amount: Money,
    pub balance_after: Money,
    pub reference: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: usize,
    pub page_size: usize,
    pub total: usize,
}

/// Filters of `GET /accounts`.
#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    pub status: Option<AccountStatus>,
    pub sort_code_prefix: Option<String>,
    pub min_balance: Option<i64>,
    pub max_balance: Option<i64>,
}

impl AccountFilter {
    fn admits(&self, account: &AccountSummary) -> bool {
        self.status.is_none_or(|status| account.status == status)
            && self
                .min_balance
                .is_none_or(|min| account.balance.pence() >= min)
            && self
                .max_balance
                .is_none_or(|max| account.balance.pence() <= max)
    }
}

/// Bank-wide totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub accounts: StatusCounts,
    pub total_balance: Money,
    pub total_deposits: Money,
    pub total_withdrawals: Money,
    /// Credited by inbound payments (not transfers).
    pub total_credited_by_payments: Money,
    pub payments_credited: i64,
    pub payments_refused: i64,
    pub total_transferred_in: Money,
    pub total_debited: Money,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    pub open: u64,
    pub blocked: u64,
    pub closed: u64,
    pub total: u64,
}

/// Applies `account-…` events to the tables above.
#[derive(Debug, Default)]
pub struct AccountsReadModel;

/// One batch's changes, kept in memory until the batch ends: each account's row is read and written once per
/// batch and each total changed once, rather than per event (a busy account gets hundreds of credits a second).
struct Changes<'t> {
    accounts: infrastructure::redb::Table<'t, &'static str, &'static [u8]>,
    transactions: infrastructure::redb::Table<'t, (&'static str, u64), &'static [u8]>,
    /// Account id → its summary after the events so far (`None`: no such account).
    summaries: HashMap<String, Option<AccountSummary>>,
    totals: BTreeMap<&'static str, i64>,
}

impl<'t> Changes<'t> {
    fn new(transaction: &'t WriteTransaction) -> Result<Self, ApplyError> {
        Ok(Self {
            accounts: transaction.open_table(ACCOUNTS)?,
            transactions: transaction.open_table(TRANSACTIONS)?,
            summaries: HashMap::new(),
            totals: BTreeMap::new(),
        })
    }

    fn add(&mut self, name: &'static str, amount: i64) {
        let total = self.totals.entry(name).or_default();
        *total = total.saturating_add(amount);
    }

    fn summary(&mut self, id: &str) -> Result<&mut Option<AccountSummary>, ApplyError> {
        if !self.summaries.contains_key(id) {
            let stored = self
                .accounts
                .get(id)?
                .map(|value| serde_json::from_slice::<AccountSummary>(value.value()))
                .transpose()?;
            self.summaries.insert(id.to_owned(), stored);
        }
        Ok(self.summaries.entry(id.to_owned()).or_default())
    }

    fn apply(&mut self, event: &StoredEvent<AccountEvent>) -> Result<(), ApplyError> {
        let Some(id) = events::streams::id_of(&event.stream) else {
            return Ok(());
        };
        if let AccountEvent::AccountOpened(opened) = &event.event {
            *self.summary(id)? = Some(AccountSummary {
                id: opened.account_id,
                sort_code: opened.account_id.sort_code.to_string(),
                account_number: opened.account_id.account_number.to_string(),
                name: opened.name.clone(),
                status: AccountStatus::Open,
                balance: Money::ZERO,
                overdraft_limit: opened.overdraft_limit,
                reserved: Money::ZERO,
                revision: event.revision,
            });
            return Ok(());
        }
        let Some(summary) = self.summary(id)?.as_mut() else {
            // Refusals are written to the streams of accounts that do not exist.
            if let AccountEvent::PaymentPostingRefused(_) = &event.event {
                self.add(PAYMENTS_REFUSED, 1);
            }
            return Ok(());
        };
        summary.revision = event.revision;
        // (kind, signed amount, reference) of a transaction line, when the event moves money.
        let line: Option<(&str, i64, String)> = match &event.event {
            AccountEvent::AccountOpened(_) => None,
            AccountEvent::AccountBlocked(_) => {
                summary.status = AccountStatus::Blocked;
                None
            }
            AccountEvent::AccountUnblocked(_) => {
                summary.status = AccountStatus::Open;
                None
            }
            AccountEvent::AccountClosed(_) => {
                summary.status = AccountStatus::Closed;
                None
            }
            AccountEvent::OverdraftLimitChanged(changed) => {
                summary.overdraft_limit = changed.overdraft_limit;
                None
            }
            AccountEvent::FundsDeposited(e) => {
                Some(("deposit", e.amount.pence(), e.reference.clone()))
            }
            AccountEvent::FundsWithdrawn(e) => {
                Some(("withdrawal", -e.amount.pence(), e.reference.clone()))
            }
            AccountEvent::FundsCredited(e) => {
                let kind = if e.transfer_id.is_some() {
                    "transferIn"
                } else {
                    "credit"
                };
                Some((kind, e.amount.pence(), e.reference.clone()))
            }
            AccountEvent::FundsDebited(e) => {
                let kind = if e.transfer_id.is_some() {
                    "transferOut"
                } else {
                    "debit"
                };
                Some((kind, -e.amount.pence(), e.reference.clone()))
            }
            AccountEvent::FundsReserved(e) => {
                summary.reserved = Money::from_pence(summary.reserved.pence() + e.amount.pence());
                None
            }
            AccountEvent::FundsReservationReleased(e) => {
                summary.reserved = Money::from_pence(summary.reserved.pence() - e.amount.pence());
                e.settled
                    .then(|| ("payment", -e.amount.pence(), e.payment_id.to_string()))
            }
            AccountEvent::PaymentPostingRefused(_) => None,
        };
        if let Some((_, amount, _)) = &line {
            summary.balance = Money::from_pence(summary.balance.pence().saturating_add(*amount));
        }
        let balance_after = summary.balance;

        match &event.event {
            AccountEvent::FundsDeposited(e) => self.add(TOTAL_DEPOSITS, e.amount.pence()),
            AccountEvent::FundsWithdrawn(e) => self.add(TOTAL_WITHDRAWALS, e.amount.pence()),
            AccountEvent::FundsCredited(e) if e.transfer_id.is_some() => {
                self.add(TOTAL_TRANSFERRED_IN, e.amount.pence())
            }
            AccountEvent::FundsCredited(e) => {
                self.add(TOTAL_CREDITED, e.amount.pence());
                self.add(PAYMENTS_CREDITED, 1);
            }
            AccountEvent::FundsDebited(e) => self.add(TOTAL_DEBITED, e.amount.pence()),
            AccountEvent::PaymentPostingRefused(_) => self.add(PAYMENTS_REFUSED, 1),
            _ => {}
        }
        if let Some((kind, amount, reference)) = line {
            let row = TransactionRow {
                revision: event.revision,
                kind: kind.to_owned(),
                amount: Money::from_pence(amount),
                balance_after,
                reference,
                occurred_at: event.metadata.occurred_at,
            };
            self.transactions
                .insert((id, event.revision), serde_json::to_vec(&row)?.as_slice())?;
        }
        Ok(())
    }

    /// Writes the accounts' rows and the totals.
    fn finish(mut self, transaction: &WriteTransaction) -> Result<(), ApplyError> {
        for (id, summary) in &self.summaries {
            if let Some(summary) = summary {
                self.accounts
                    .insert(id.as_str(), serde_json::to_vec(summary)?.as_slice())?;
            }
        }
        let mut totals = transaction.open_table(TOTALS)?;
        for (name, delta) in std::mem::take(&mut self.totals) {
            let current = totals.get(name)?.map(|value| value.value()).unwrap_or(0);
            totals.insert(name, current.saturating_add(delta))?;
        }
        Ok(())
    }
}

impl ReadModel for AccountsReadModel {
    type Event = AccountEvent;

    fn setup(&mut self, transaction: &WriteTransaction) -> Result<(), ApplyError> {
        transaction.open_table(ACCOUNTS)?;
        transaction.open_table(TRANSACTIONS)?;
        transaction.open_table(TOTALS)?;
        Ok(())
    }

    fn apply(
        &mut self,
        transaction: &WriteTransaction,
        event: &StoredEvent<AccountEvent>,
    ) -> Result<(), ApplyError> {
        self.apply_batch(transaction, std::slice::from_ref(event))
            .map_err(|(_, error)| error)
    }

    fn apply_batch(
        &mut self,
        transaction: &WriteTransaction,
        events: &[StoredEvent<AccountEvent>],
    ) -> Result<(), (usize, ApplyError)> {
        let mut changes = Changes::new(transaction).map_err(|error| (0, error))?;
        for (index, event) in events.iter().enumerate() {
            changes.apply(event).map_err(|error| (index, error))?;
        }
        let last = events.len().saturating_sub(1);
        changes.finish(transaction).map_err(|error| (last, error))
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("read model storage failed")]
    Storage(#[from] infrastructure::redb::Error),
    #[error("a read model row is unreadable")]
    Corrupt(#[from] serde_json::Error),
}

macro_rules! storage_errors {
    ($($error:ty),*) => {
        $(impl From<$error> for QueryError {
            fn from(error: $error) -> Self {
                QueryError::Storage(error.into())
            }
        })*
    };
}

storage_errors!(
    infrastructure::redb::TableError,
    infrastructure::redb::StorageError,
    infrastructure::redb::TransactionError
);

fn begin(read_models: &ReadModelStore) -> Result<ReadTransaction, QueryError> {
    Ok(read_models.database().begin_read()?)
}

/// Accounts that pass `filter`, in id order, one page of them (`page` counts from 1).
pub fn list_accounts(
    read_models: &ReadModelStore,
    filter: &AccountFilter,
    page: usize,
    page_size: usize,
) -> Result<Page<AccountSummary>, QueryError> {
    let transaction = begin(read_models)?;
    let table = match transaction.open_table(ACCOUNTS) {
        Ok(table) => table,
        Err(infrastructure::redb::TableError::TableDoesNotExist(_)) => {
            return Ok(Page {
                items: Vec::new(),
                page,
                page_size,
                total: 0,
            })
        }
        Err(error) => return Err(error.into()),
    };
    // Ids start with the sort code, so a sort-code prefix is a key range.
    let prefix = filter.sort_code_prefix.clone().unwrap_or_default();
    let skip = page.saturating_sub(1).saturating_mul(page_size);
    let mut items = Vec::new();
    let mut total = 0;
    for entry in table.range(prefix.as_str()..)? {
        let (key, value) = entry?;
        if !key.value().starts_with(prefix.as_str()) {
            break;
        }
        let account: AccountSummary = serde_json::from_slice(value.value())?;
        if !filter.admits(&account) {
            continue;
        }
        if total >= skip && items.len() < page_size {
            items.push(account);
        }
        total += 1;
    }
    Ok(Page {
        items,
        page,
        page_size,
        total,
    })
}

/// One account's summary, if the read model has it.
pub fn account_summary(
    read_models: &ReadModelStore,
    id: &AccountId,
) -> Result<Option<AccountSummary>, QueryError> {
    let transaction = begin(read_models)?;
    let table = match transaction.open_table(ACCOUNTS) {
        Ok(table) => table,
        Err(infrastructure::redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let id = id.to_string();
    let found = table.get(id.as_str())?;
    Ok(found
        .map(|value| serde_json::from_slice(value.value()))
        .transpose()?)
}

/// An account's transactions, newest first, one page of them.
pub fn transactions(
    read_models: &ReadModelStore,
    id: &AccountId,
    page: usize,
    page_size: usize,
) -> Result<Page<TransactionRow>, QueryError> {
    let transaction = begin(read_models)?;
    let table = transaction.open_table(TRANSACTIONS)?;
    let id = id.to_string();
    let range = table.range((id.as_str(), 0)..=(id.as_str(), u64::MAX))?;
    let skip = page.saturating_sub(1).saturating_mul(page_size);
    let mut items = Vec::new();
    let mut total = 0;
    for entry in range.rev() {
        let (_, value) = entry?;
        if total >= skip && items.len() < page_size {
            items.push(serde_json::from_slice(value.value())?);
        }
        total += 1;
    }
    Ok(Page {
        items,
        page,
        page_size,
        total,
    })
}

/// Bank-wide totals.
pub fn ledger(read_models: &ReadModelStore) -> Result<Ledger, QueryError> {
    let transaction = begin(read_models)?;
    let mut ledger = Ledger::default();
    let accounts = match transaction.open_table(ACCOUNTS) {
        Ok(table) => table,
        Err(infrastructure::redb::TableError::TableDoesNotExist(_)) => return Ok(ledger),
        Err(error) => return Err(error.into()),
    };
    let mut balance: i64 = 0;
    for entry in accounts.iter()? {
        let (_, value) = entry?;
        let account: AccountSummary = serde_json::from_slice(value.value())?;
        balance = balance.saturating_add(account.balance.pence());
        match account.status {
            AccountStatus::Open => ledger.accounts.open += 1,
            AccountStatus::Blocked => ledger.accounts.blocked += 1,
            AccountStatus::Closed => ledger.accounts.closed += 1,
        }
        ledger.accounts.total += 1;
    }
    ledger.total_balance = Money::from_pence(balance);
    let totals = transaction.open_table(TOTALS)?;
    let total = |name: &str| -> Result<i64, QueryError> {
        Ok(totals.get(name)?.map(|value| value.value()).unwrap_or(0))
    };
    ledger.total_deposits = Money::from_pence(total(TOTAL_DEPOSITS)?);
    ledger.total_withdrawals = Money::from_pence(total(TOTAL_WITHDRAWALS)?);
    ledger.total_credited_by_payments = Money::from_pence(total(TOTAL_CREDITED)?);
    ledger.payments_credited = total(PAYMENTS_CREDITED)?;
    ledger.payments_refused = total(PAYMENTS_REFUSED)?;
    ledger.total_transferred_in = Money::from_pence(total(TOTAL_TRANSFERRED_IN)?);
    ledger.total_debited = Money::from_pence(total(TOTAL_DEBITED)?);
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use events::accounts::{
        AccountBlocked, AccountOpened, FundsCredited, FundsDeposited, FundsWithdrawn,
        PaymentPostingRefused,
    };
    use events::bacs::ReturnReason;
    use events::{EventMetadata, PaymentId};
    use infrastructure::eventstore::Position;
    use uuid::Uuid;

    use super::*;

    fn stored(events: Vec<(AccountId, AccountEvent)>) -> Vec<StoredEvent<AccountEvent>> {
        let mut revisions: HashMap<AccountId, u64> = HashMap::new();
        events
            .into_iter()
            .enumerate()
            .map(|(n, (id, event))| {
                let revision = revisions.entry(id).or_default();
                let stored = StoredEvent {
                    stream: events::streams::account(&id),
                    revision: *revision,
                    id: Uuid::new_v4(),
                    position: Position {
                        commit: n as u64,
                        prepare: n as u64,
                    },
                    event,
                    metadata: EventMetadata::for_request(Uuid::new_v4()),
                };
                *revision += 1;
                stored
            })
            .collect()
    }

    /// Everything the queries show: every account, each one's statement and the ledger.
    fn shown(store: &ReadModelStore, ids: &[AccountId]) -> String {
        let list = list_accounts(store, &AccountFilter::default(), 1, 100).expect("list");
        let mut shown = format!("{list:?}\n{:?}", ledger(store).expect("ledger"));
        for id in ids {
            let statement = transactions(store, id, 1, 100).expect("statement");
            shown.push_str(&format!("\n{statement:?}"));
        }
        shown
    }

    #[test]
    fn a_batch_shows_what_its_events_applied_one_by_one_show() {
        let ada: AccountId = "12345612345678".parse().expect("an id");
        let bob: AccountId = "12345687654321".parse().expect("an id");
        let nobody: AccountId = "99999900000000".parse().expect("an id");
        let pence = Money::from_pence;
        let opened = |id: AccountId, name: &str| {
            AccountEvent::from(AccountOpened {
                account_id: id,
                name: name.into(),
                overdraft_limit: pence(0),
            })
        };
        let credited = |amount| {
            AccountEvent::from(FundsCredited {
                payment_id: PaymentId::new(),
                amount: pence(amount),
                payer_name: "ACME".into(),
                reference: "PAY".into(),
                transfer_id: None,
            })
        };
        let events = stored(vec![
            (ada, opened(ada, "ADA")),
            (bob, opened(bob, "BOB")),
            (ada, credited(500)),
            (
                ada,
                FundsDeposited {
                    amount: pence(1_000),
                    reference: "CASH".into(),
                }
                .into(),
            ),
            (bob, credited(250)),
            (
                nobody,
                PaymentPostingRefused {
                    payment_id: PaymentId::new(),
                    amount: pence(99),
                    reason: ReturnReason::NoAccount,
                }
                .into(),
            ),
            (
                ada,
                FundsWithdrawn {
                    amount: pence(300),
                    reference: "ATM".into(),
                }
                .into(),
            ),
            (
                bob,
                AccountBlocked {
                    reason: "fraud".into(),
                }
                .into(),
            ),
            (ada, credited(7)),
        ]);
        let applied_in = |size: usize| {
            let store = ReadModelStore::in_memory().expect("a database");
            for batch in events.chunks(size) {
                let transaction = store.database().begin_write().expect("a transaction");
                AccountsReadModel
                    .apply_batch(&transaction, batch)
                    .map_err(|(_, error)| error)
                    .expect("applies");
                transaction.commit().expect("commits");
            }
            shown(&store, &[ada, bob])
        };
        let one_by_one = applied_in(1);
        let ledger = {
            let store = ReadModelStore::in_memory().expect("a database");
            let transaction = store.database().begin_write().expect("a transaction");
            AccountsReadModel
                .apply_batch(&transaction, &events)
                .map_err(|(_, error)| error)
                .expect("applies");
            transaction.commit().expect("commits");
            super::ledger(&store).expect("ledger")
        };
        assert_eq!(ledger.total_balance, pence(500 + 1_000 + 250 - 300 + 7));
        assert_eq!(ledger.payments_credited, 3);
        assert_eq!(ledger.payments_refused, 1);
        assert_eq!(ledger.accounts.blocked, 1);
        for size in [2, 3, events.len()] {
            assert_eq!(applied_in(size), one_by_one, "batches of {size}");
        }
    }
}
