//! The held-payments read model, kept by a projector of `$ce-screening`: payments screened as a hit and not yet
//! released or rejected, for `GET /held-payments`.

use chrono::{DateTime, Utc};
use events::sanctions::{NameMatch, ScreeningEvent, ScreeningOutcome};
use infrastructure::redb::{ReadableTable, TableDefinition, WriteTransaction};
use infrastructure::{ApplyError, ReadModel, ReadModelStore, StoredEvent};
use serde::{Deserialize, Serialize};

pub const PROJECTOR_NAME: &str = "held-payments";

/// Payment id → [`HeldPayment`] as JSON.
const HELD: TableDefinition<&str, &[u8]> = TableDefinition::new("held_payments");

/// A payment held for review.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldPayment {
    pub payment_id: String,
    pub screened_name: String,
    #[schema(value_type = Vec<Object>)]
    pub matches: Vec<NameMatch>,
    pub held_at: DateTime<Utc>,
}

pub struct HeldPaymentsModel;

impl ReadModel for HeldPaymentsModel {
    type Event = ScreeningEvent;

    fn setup(&mut self, transaction: &WriteTransaction) -> Result<(), ApplyError> {
        transaction.open_table(HELD)?;
        Ok(())
    }

    fn apply(
        &mut self,
        transaction: &WriteTransaction,
        event: &StoredEvent<ScreeningEvent>,
    ) -> Result<(), ApplyError> {
        let mut held = transaction.open_table(HELD)?;
        match &event.event {
            ScreeningEvent::PaymentScreened(screened) => {
                if let ScreeningOutcome::Hit { matches } = &screened.result {
                    let id = screened.payment_id.to_string();
                    let record = HeldPayment {
                        payment_id: id.clone(),
                        screened_name: screened.screened_name.clone(),
                        matches: matches.clone(),
                        held_at: event.metadata.occurred_at,
                    };
                    held.insert(id.as_str(), serde_json::to_vec(&record)?.as_slice())?;
                }
            }
            ScreeningEvent::HeldPaymentReleased(e) => {
                held.remove(e.payment_id.to_string().as_str())?;
            }
            ScreeningEvent::HeldPaymentRejected(e) => {
                held.remove(e.payment_id.to_string().as_str())?;
            }
        }
        Ok(())
    }
}

/// Every payment held and not yet decided, oldest first.
pub fn held_payments(
    read_models: &ReadModelStore,
) -> Result<Vec<HeldPayment>, infrastructure::redb::Error> {
    let transaction = read_models.begin_read()?;
    let table = match transaction.open_table(HELD) {
        Ok(table) => table,
        Err(infrastructure::redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut held = Vec::new();
    for entry in table.iter()? {
        let (_, value) = entry?;
        if let Ok(record) = serde_json::from_slice::<HeldPayment>(value.value()) {
            held.push(record);
        }
    }
    held.sort_by_key(|record| record.held_at);
    Ok(held)
}
