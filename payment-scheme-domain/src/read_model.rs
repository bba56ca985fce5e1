//! The payments read model, kept by a projector of `$ce-inboundPayment`: each payment's state (folded with the
//! aggregate's own `apply`), an index of payments by stage for `GET /payments?status=`, and counters for
//! `GET /stats` (payments per current stage, returns per reason code).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::payments::InboundPaymentEvent;
use events::streams;
use infrastructure::redb::{ReadableTable, TableDefinition, WriteTransaction};
use infrastructure::{ApplyError, ReadModel, ReadModelStore, StoredEvent};
use serde::{Deserialize, Serialize};

use crate::inbound::{InboundPayment, Stage};

pub const PROJECTOR_NAME: &str = "inbound-payments";

/// Payment id → its [`PaymentRecord`] as JSON.
const PAYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("inbound_payments");
/// `{stage}/{paymentId}` → when the payment reached that stage (ms since the epoch).
const BY_STAGE: TableDefinition<&str, i64> = TableDefinition::new("inbound_payments_by_stage");
/// `stage/{stage}`, `returned/{code}`, `received` → count.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("inbound_payment_counts");

/// What the read model keeps of one payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    pub state: InboundPayment,
    pub updated_at: DateTime<Utc>,
}

/// The projection itself; all its state is in the database.
pub struct PaymentsModel;

fn bump(
    counts: &mut infrastructure::redb::Table<&str, u64>,
    key: &str,
    up: bool,
) -> Result<(), ApplyError> {
    let current = counts.get(key)?.map(|value| value.value()).unwrap_or(0);
    let next = if up {
        current + 1
    } else {
        current.saturating_sub(1)
    };
    counts.insert(key, next)?;
    Ok(())
}

impl ReadModel for PaymentsModel {
    type Event = InboundPaymentEvent;

    fn setup(&mut self, transaction: &WriteTransaction) -> Result<(), ApplyError> {
        transaction.open_table(PAYMENTS)?;
        transaction.open_table(BY_STAGE)?;
        transaction.open_table(COUNTS)?;
        Ok(())
    }

    fn apply(
        &mut self,
        transaction: &WriteTransaction,
        event: &StoredEvent<InboundPaymentEvent>,
    ) -> Result<(), ApplyError> {
        let Some(payment_id) = streams::id_of(&event.stream) else {
            return Ok(());
        };
        let mut payments = transaction.open_table(PAYMENTS)?;
        let mut by_stage = transaction.open_table(BY_STAGE)?;
        let mut counts = transaction.open_table(COUNTS)?;
        let mut record = match payments.get(payment_id)? {
            Some(stored) => serde_json::from_slice::<PaymentRecord>(stored.value())?,
            None => PaymentRecord {
                state: InboundPayment::default(),
                updated_at: event.metadata.occurred_at,
            },
        };
        let before = record.state.stage;
        record.state.apply(&event.event);
        record.updated_at = event.metadata.occurred_at;
        let after = record.state.stage;
        if before != after {
            if before != Stage::New {
                by_stage.remove(format!("{}/{payment_id}", before.name()).as_str())?;
                bump(&mut counts, &format!("stage/{}", before.name()), false)?;
            } else {
                bump(&mut counts, "received", true)?;
            }
            by_stage.insert(
                format!("{}/{payment_id}", after.name()).as_str(),
                record.updated_at.timestamp_millis(),
            )?;
            bump(&mut counts, &format!("stage/{}", after.name()), true)?;
        }
        if let InboundPaymentEvent::InboundPaymentReturned(returned) = &event.event {
            bump(
                &mut counts,
                &format!("returned/{}", returned.reason.code()),
                true,
            )?;
        }
        let encoded = serde_json::to_vec(&record)?;
        payments.insert(payment_id, encoded.as_slice())?;
        Ok(())
    }
}

/// Every stage name, in process order.
pub const STAGES: [Stage; 8] = [
    Stage::Received,
    Stage::Validated,
    Stage::Held,
    Stage::SanctionsChecked,
    Stage::AccountChecked,
    Stage::Credited,
    Stage::Failed,
    Stage::Returned,
];

pub fn stage_named(name: &str) -> Option<Stage> {
    STAGES
        .into_iter()
        .find(|stage| stage.name().eq_ignore_ascii_case(name))
}

/// Queries of the read model.
#[derive(Debug, Clone)]
pub struct PaymentsQuery {
    read_models: ReadModelStore,
}

/// The statistics: payments per current stage and returns per reason code.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub received: u64,
    pub by_stage: BTreeMap<String, u64>,
    /// Return reason code → payments returned with it.
    pub returned_by_reason: BTreeMap<String, u64>,
}

impl PaymentsQuery {
    pub fn new(read_models: ReadModelStore) -> Self {
        Self { read_models }
    }

    /// Payments (optionally only those at `stage`), oldest first by their last change, `page` of `page_size`.
    pub fn list(
        &self,
        stage: Option<Stage>,
        page: usize,
        page_size: usize,
    ) -> Result<(Vec<PaymentRecord>, u64), infrastructure::redb::Error> {
        let transaction = self.read_models.begin_read()?;
        let payments = match transaction.open_table(PAYMENTS) {
            Ok(table) => table,
            Err(infrastructure::redb::TableError::TableDoesNotExist(_)) => {
                return Ok((Vec::new(), 0))
            }
            Err(error) => return Err(error.into()),
        };
        let mut ids = Vec::new();
        let mut total = 0u64;
        let skip = page.saturating_mul(page_size);
        match stage {
            Some(stage) => {
                let by_stage = transaction.open_table(BY_STAGE)?;
                let from = format!("{}/", stage.name());
                let to = format!("{}0", stage.name());
                for entry in by_stage.range(from.as_str()..to.as_str())? {
                    let (key, _) = entry?;
                    total += 1;
                    if total as usize > skip && ids.len() < page_size {
                        if let Some((_, id)) = key.value().split_once('/') {
                            ids.push(id.to_owned());
                        }
                    }
                }
            }
            None => {
                for entry in payments.iter()? {
                    let (key, _) = entry?;
                    total += 1;
                    if total as usize > skip && ids.len() < page_size {
                        ids.push(key.value().to_owned());
                    }
                }
            }
        }
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(stored) = payments.get(id.as_str())? {
                if let Ok(record) = serde_json::from_slice::<PaymentRecord>(stored.value()) {
                    records.push(record);
                }
            }
        }
        Ok((records, total))
    }

    pub fn stats(&self) -> Result<Stats, infrastructure::redb::Error> {
        let transaction = self.read_models.begin_read()?;
        let counts = match transaction.open_table(COUNTS) {
            Ok(table) => table,
            Err(infrastructure::redb::TableError::TableDoesNotExist(_)) => {
                return Ok(Stats::default())
            }
            Err(error) => return Err(error.into()),
        };
        let mut stats = Stats::default();
        for stage in STAGES {
            stats.by_stage.insert(stage.name().to_owned(), 0);
        }
        for entry in counts.iter()? {
            let (key, value) = entry?;
            let key = key.value();
            let value = value.value();
            if key == "received" {
                stats.received = value;
            } else if let Some(stage) = key.strip_prefix("stage/") {
                stats.by_stage.insert(stage.to_owned(), value);
            } else if let Some(code) = key.strip_prefix("returned/") {
                stats.returned_by_reason.insert(code.to_owned(), value);
            }
        }
        Ok(stats)
    }
}
