//! The payments read model, kept by a projector of `$ce-inboundPayment`: each payment's state (folded with the
//! aggregate's own `apply`), an index of payments by stage for `GET /payments?status=`, and counters for
//! `GET /stats` (payments per current stage, returns per reason code).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use events::payments::InboundPaymentEvent;
use events::streams;
use infrastructure::redb::{
    ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use infrastructure::{ApplyError, ReadModel, ReadModelStore, StoredEvent};
use serde::{Deserialize, Serialize};

use crate::inbound::{InboundPayment, Stage};

/// The projector's checkpoint name. `-v3`: the tables below changed shape (see [`PaymentsModel::setup`]), so
/// an existing database rebuilds them from the category stream.
pub const PROJECTOR_NAME: &str = "inbound-payments-v3";

/// Receipt number → the payment's [`PaymentRecord`] as JSON. Rows are numbered in the order the payments were
/// received, so the rows a batch changes — payments in progress, received a moment ago — sit together at the
/// end of the table (a few B-tree pages rewritten per commit, and pages the cache holds) instead of at random
/// places in a table that grows by a payment at a time.
const PAYMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("inbound_payments_v3");
/// Payment id → its receipt number, for the payments not yet final: the ones events still come for (no stage
/// writes anything once a payment is credited or returned). Kept that small, its pages stay few and in the
/// cache; keyed by every payment id ever received it would take a random page per payment, as the rows did.
const RECEIPTS: TableDefinition<&str, u64> = TableDefinition::new("inbound_payment_receipts_v3");
/// (stage, when the payment reached it in ms since the epoch, receipt number): the payments at each stage in
/// the order they reached it. Time leads so that a batch's moves land at the end of each stage's range.
const BY_STAGE: TableDefinition<(&str, i64, u64), ()> =
    TableDefinition::new("inbound_payments_by_stage_v3");
/// `stage/{stage}`, `returned/{code}`, `received` → count.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("inbound_payment_counts_v3");
/// Earlier versions' tables, dropped when the model starts: the first (stage index keyed
/// `{stage}/{paymentId}`) and the second (rows keyed by payment id, at random places).
const RETIRED_TABLES: [&str; 6] = [
    "inbound_payments",
    "inbound_payments_by_stage",
    "inbound_payment_counts",
    "inbound_payments_v2",
    "inbound_payments_by_stage_v2",
    "inbound_payment_counts_v2",
];

/// What the read model keeps of one payment. The state's `validated` is not kept: the list shows what the
/// received event holds, and the validated event repeats it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    pub state: InboundPayment,
    pub updated_at: DateTime<Utc>,
    /// When the payment reached its current stage.
    pub stage_since: DateTime<Utc>,
}

/// The projection itself; all its state is in the database.
pub struct PaymentsModel;

impl ReadModel for PaymentsModel {
    type Event = InboundPaymentEvent;

    fn setup(&mut self, transaction: &WriteTransaction) -> Result<(), ApplyError> {
        for retired in RETIRED_TABLES {
            // Deleting goes by name, whatever the table's key and value types.
            let retired: TableDefinition<&str, ()> = TableDefinition::new(retired);
            transaction.delete_table(retired)?;
        }
        transaction.open_table(PAYMENTS)?;
        transaction.open_table(RECEIPTS)?;
        transaction.open_table(BY_STAGE)?;
        transaction.open_table(COUNTS)?;
        Ok(())
    }

    fn apply(
        &mut self,
        transaction: &WriteTransaction,
        event: &StoredEvent<InboundPaymentEvent>,
    ) -> Result<(), ApplyError> {
        self.apply_batch(transaction, std::slice::from_ref(event))
            .map_err(|(_, error)| error)
    }

    /// Folds the batch in memory first: each payment's row is read and written once per batch, its stage index
    /// entry moved once (from its stage before the batch to its stage after), and each counter changed once by
    /// the sum of its changes. Per event, that was a read, a JSON round trip and four or five B-tree writes — the
    /// largest cost of the service at a few thousand payments a second.
    fn apply_batch(
        &mut self,
        transaction: &WriteTransaction,
        events: &[StoredEvent<InboundPaymentEvent>],
    ) -> Result<(), (usize, ApplyError)> {
        let last = events.len().saturating_sub(1);
        let mut payments = transaction
            .open_table(PAYMENTS)
            .map_err(|e| (0, e.into()))?;
        let mut receipts = transaction
            .open_table(RECEIPTS)
            .map_err(|e| (0, e.into()))?;
        let mut by_stage = transaction
            .open_table(BY_STAGE)
            .map_err(|e| (0, e.into()))?;
        let mut counts = transaction.open_table(COUNTS).map_err(|e| (0, e.into()))?;
        let mut next_receipt = match payments.last().map_err(|e| (0, e.into()))? {
            Some((key, _)) => key.value() + 1,
            None => 0,
        };
        // Payment id → (its receipt number, its stage before the batch and when it reached it, its record after
        // the events so far); ids in first-seen order. A payment new in this batch is at `Stage::New` before it.
        let mut touched: HashMap<&str, (u64, Stage, i64, PaymentRecord)> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            let Some(payment_id) = streams::id_of(&event.stream) else {
                continue;
            };
            let (_, _, _, record) = match touched.entry(payment_id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let receipt = receipts
                        .get(payment_id)
                        .map_err(|e| (index, e.into()))?
                        .map(|receipt| receipt.value());
                    let stored = match receipt {
                        Some(receipt) => payments
                            .get(receipt)
                            .map_err(|e| (index, e.into()))?
                            .map(|stored| serde_json::from_slice::<PaymentRecord>(stored.value()))
                            .transpose()
                            .map_err(|e| (index, e.into()))?,
                        None => None,
                    };
                    let (receipt, record) = match (receipt, stored) {
                        (Some(receipt), Some(record)) => (receipt, record),
                        _ => {
                            let receipt = next_receipt;
                            next_receipt += 1;
                            let record = PaymentRecord {
                                state: InboundPayment::default(),
                                updated_at: event.metadata.occurred_at,
                                stage_since: event.metadata.occurred_at,
                            };
                            (receipt, record)
                        }
                    };
                    order.push(payment_id);
                    let since = record.stage_since.timestamp_millis();
                    entry.insert((receipt, record.state.stage, since, record))
                }
            };
            let before = record.state.stage;
            record.state.apply(&event.event);
            record.updated_at = event.metadata.occurred_at;
            let after = record.state.stage;
            if before != after {
                record.stage_since = record.updated_at;
                if before == Stage::New {
                    *deltas.entry("received".to_owned()).or_default() += 1;
                } else {
                    *deltas
                        .entry(format!("stage/{}", before.name()))
                        .or_default() -= 1;
                }
                *deltas.entry(format!("stage/{}", after.name())).or_default() += 1;
            }
            if let InboundPaymentEvent::InboundPaymentReturned(returned) = &event.event {
                *deltas
                    .entry(format!("returned/{}", returned.reason.code()))
                    .or_default() += 1;
            }
        }
        let stored = |error: infrastructure::redb::StorageError| (last, ApplyError::from(error));
        for payment_id in order {
            let Some((receipt, initial, initial_since, record)) = touched.get_mut(payment_id)
            else {
                continue;
            };
            let receipt = *receipt;
            let now = record.state.stage;
            let since = record.stage_since.timestamp_millis();
            // Only payments not yet final have an entry, so a payment found through one was not final before
            // the batch; a new one (at `New` before it) gets one unless the batch finished it.
            match (*initial == Stage::New, now.is_final()) {
                (true, false) => {
                    receipts.insert(payment_id, receipt).map_err(stored)?;
                }
                (false, true) => {
                    receipts.remove(payment_id).map_err(stored)?;
                }
                _ => {}
            }
            if (*initial, *initial_since) != (now, since) {
                if *initial != Stage::New {
                    by_stage
                        .remove((initial.name(), *initial_since, receipt))
                        .map_err(stored)?;
                }
                by_stage
                    .insert((now.name(), since, receipt), ())
                    .map_err(stored)?;
            }
            record.state.validated = None;
            let encoded = serde_json::to_vec(record).map_err(|e| (last, e.into()))?;
            payments
                .insert(receipt, encoded.as_slice())
                .map_err(stored)?;
        }
        for (key, delta) in deltas {
            if delta == 0 {
                continue;
            }
            let current = counts
                .get(key.as_str())
                .map_err(stored)?
                .map(|value| value.value())
                .unwrap_or(0);
            let next = current.saturating_add_signed(delta);
            counts.insert(key.as_str(), next).map_err(stored)?;
        }
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
    /// Payments the bank is still working on: received and not yet credited or returned, leaving out those
    /// held for an operator and those stuck. The gateway admits new payments while this is under its limit.
    pub in_progress: u64,
    /// Payments that have waited at a stage of the pipeline (not held) for longer than [`STUCK_AFTER`]: a
    /// message parked by a consumer group, or a stage that has stopped. They are left out of `in_progress`, so
    /// they cannot close the gateway; they want a look (the parked messages of the stage's group).
    pub stuck: u64,
}

/// How long a payment may wait at one stage of the pipeline before it counts as stuck rather than in progress:
/// far beyond any queue the gateway's limit lets form (seconds), short enough that parked payments cannot
/// hold the gateway shut for long.
pub const STUCK_AFTER: chrono::Duration = chrono::Duration::minutes(10);

impl PaymentsQuery {
    pub fn new(read_models: ReadModelStore) -> Self {
        Self { read_models }
    }

    /// Payments, `page` of `page_size`: all of them in the order they were received, or those at `stage` in the
    /// order they reached it.
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
        let skip = page.saturating_mul(page_size);
        let mut receipts = Vec::new();
        let total = match stage {
            Some(stage) => {
                let by_stage = transaction.open_table(BY_STAGE)?;
                let name = stage.name();
                let mut total = 0u64;
                for entry in by_stage.range((name, i64::MIN, 0)..=(name, i64::MAX, u64::MAX))? {
                    let (key, _) = entry?;
                    total += 1;
                    if total as usize > skip && receipts.len() < page_size {
                        receipts.push(key.value().2);
                    }
                }
                total
            }
            None => {
                for entry in payments.iter()?.skip(skip).take(page_size) {
                    let (key, _) = entry?;
                    receipts.push(key.value());
                }
                payments.len()?
            }
        };
        let mut records = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            if let Some(stored) = payments.get(receipt)? {
                if let Ok(record) = serde_json::from_slice::<PaymentRecord>(stored.value()) {
                    records.push(record);
                }
            }
        }
        Ok((records, total))
    }

    pub fn stats(&self) -> Result<Stats, infrastructure::redb::Error> {
        self.stats_at(Utc::now())
    }

    /// The statistics as of `now` (which decides which payments are stuck).
    pub fn stats_at(&self, now: DateTime<Utc>) -> Result<Stats, infrastructure::redb::Error> {
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
        // Stuck payments are the oldest entries of each stage's range in the stage index: normally none, so
        // this reads a page or two per stage.
        let by_stage = transaction.open_table(BY_STAGE)?;
        let cutoff = (now - STUCK_AFTER).timestamp_millis();
        for stage in STAGES.into_iter().filter(|stage| stage.is_in_progress()) {
            let name = stage.name();
            let waiting = stats.by_stage.get(name).copied().unwrap_or(0);
            let mut stuck = 0;
            for entry in by_stage.range((name, i64::MIN, 0)..(name, cutoff, 0))? {
                entry?;
                stuck += 1;
            }
            stats.stuck += stuck;
            stats.in_progress += waiting.saturating_sub(stuck);
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use events::bacs::DEFAULT_MAX_AMOUNT;
    use events::payments::InboundPaymentReceived;
    use events::sanctions::{PaymentScreened, ScreeningOutcome};
    use events::{EventMetadata, Money, PaymentId};

    use crate::inbound::tests::received;
    use infrastructure::eventstore::Position;
    use infrastructure::redb::{ReadableDatabase, TableHandle};
    use uuid::Uuid;

    use super::*;

    /// One stage's decision: the events it writes given the payment so far.
    type Decision<'a> = dyn Fn(&InboundPayment) -> Vec<InboundPaymentEvent> + 'a;

    /// The events of one payment taken as far as `steps` stages, as the process writes them.
    fn history(received: InboundPaymentReceived, steps: usize) -> Vec<InboundPaymentEvent> {
        let id = received.payment_id;
        let clear = PaymentScreened {
            payment_id: id,
            screened_name: "ADA".into(),
            result: ScreeningOutcome::Clear,
        };
        let stages: [&Decision<'_>; 4] = [
            &|s| s.receive(received.clone()),
            &|s| s.validate(DEFAULT_MAX_AMOUNT),
            &|s| s.on_screened(&clear),
            &|s| s.on_credited(Money::from_pence(500)),
        ];
        let mut state = InboundPayment::default();
        let mut events = Vec::new();
        for stage in stages.iter().take(steps) {
            for event in stage(&state) {
                state.apply(&event);
                events.push(event);
            }
        }
        events
    }

    /// Each payment's events taken as far as its number of stages, one payment after another.
    fn one_after_another(
        payments: &[(&InboundPaymentReceived, usize)],
    ) -> Vec<(PaymentId, InboundPaymentEvent)> {
        payments
            .iter()
            .flat_map(|(payment, steps)| {
                history((*payment).clone(), *steps)
                    .into_iter()
                    .map(|event| (payment.payment_id, event))
            })
            .collect()
    }

    fn stored(
        events: Vec<(PaymentId, InboundPaymentEvent)>,
    ) -> Vec<StoredEvent<InboundPaymentEvent>> {
        let mut revisions: HashMap<PaymentId, u64> = HashMap::new();
        events
            .into_iter()
            .enumerate()
            .map(|(n, (id, event))| {
                let revision = revisions.entry(id).or_default();
                let stored = StoredEvent {
                    stream: streams::inbound_payment(&id),
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

    /// Everything the queries show: the statistics and every page of every list.
    fn shown(store: &ReadModelStore) -> String {
        let query = PaymentsQuery::new(store.clone());
        let mut shown = format!("{:?}", query.stats().expect("stats"));
        for stage in std::iter::once(None).chain(STAGES.into_iter().map(Some)) {
            let (records, total) = query.list(stage, 0, 100).expect("list");
            shown.push_str(&format!("\n{stage:?} {total} {records:?}"));
        }
        shown
    }

    fn apply_in_batches(
        events: &[StoredEvent<InboundPaymentEvent>],
        size: usize,
    ) -> ReadModelStore {
        let store = ReadModelStore::in_memory().expect("a database");
        for batch in events.chunks(size) {
            let transaction = store.database().begin_write().expect("a transaction");
            PaymentsModel
                .apply_batch(&transaction, batch)
                .map_err(|(_, error)| error)
                .expect("applies");
            transaction.commit().expect("commits");
        }
        store
    }

    #[test]
    fn a_batch_shows_what_its_events_applied_one_by_one_show() {
        // Interleaved, as the category stream has them: one payment credited, one rejected and returned (a
        // sort code that is not six digits), one still at validation.
        let credited = received("123456");
        let rejected = received("12");
        let waiting = received("654321");
        let mut interleaved = Vec::new();
        let histories = [
            (credited.payment_id, history(credited, 4)),
            (rejected.payment_id, history(rejected, 2)),
            (waiting.payment_id, history(waiting, 2)),
        ];
        let longest = histories.iter().map(|(_, h)| h.len()).max().unwrap_or(0);
        for index in 0..longest {
            for (id, events) in &histories {
                if let Some(event) = events.get(index) {
                    interleaved.push((*id, event.clone()));
                }
            }
        }
        let events = stored(interleaved);
        let one_by_one = apply_in_batches(&events, 1);
        let stats = PaymentsQuery::new(one_by_one.clone())
            .stats()
            .expect("stats");
        assert_eq!(stats.received, 3);
        assert_eq!(stats.by_stage.get("credited"), Some(&1), "{stats:?}");
        assert_eq!(stats.by_stage.get("returned"), Some(&1), "{stats:?}");
        assert_eq!(stats.by_stage.get("validated"), Some(&1), "{stats:?}");
        assert_eq!(stats.in_progress, 1, "only the validated one: {stats:?}");
        let one_by_one = shown(&one_by_one);
        for size in [2, 3, events.len()] {
            assert_eq!(
                shown(&apply_in_batches(&events, size)),
                one_by_one,
                "batches of {size}"
            );
        }
    }

    #[test]
    fn only_payments_not_yet_final_keep_a_receipt_entry() {
        let credited = received("123456");
        let rejected = received("12");
        let waiting = received("654321");
        let events = stored(one_after_another(&[
            (&credited, 4),
            (&rejected, 2),
            (&waiting, 2),
        ]));
        for size in [1, 2, events.len()] {
            let store = apply_in_batches(&events, size);
            let read = store.database().begin_read().expect("a read");
            let receipts = read.open_table(RECEIPTS).expect("the table");
            let ids: Vec<String> = receipts
                .iter()
                .expect("entries")
                .map(|entry| entry.expect("an entry").0.value().to_owned())
                .collect();
            assert_eq!(
                ids,
                vec![waiting.payment_id.to_string()],
                "batches of {size}"
            );
        }
    }

    #[test]
    fn a_payment_waiting_at_a_stage_for_too_long_counts_as_stuck_not_in_progress() {
        let at = |second: i64| DateTime::from_timestamp(1_700_000_000 + second, 0).expect("a time");
        let waiting = received("654321");
        let credited = received("123456");
        let mut events = stored(one_after_another(&[(&waiting, 2), (&credited, 4)]));
        for event in &mut events {
            event.metadata.occurred_at = at(0);
        }
        let query = PaymentsQuery::new(apply_in_batches(&events, events.len()));
        let second = chrono::Duration::seconds(1);
        let soon = query.stats_at(at(0) + STUCK_AFTER - second).expect("stats");
        assert_eq!((soon.in_progress, soon.stuck), (1, 0), "{soon:?}");
        let later = query.stats_at(at(0) + STUCK_AFTER + second).expect("stats");
        assert_eq!((later.in_progress, later.stuck), (0, 1), "{later:?}");
        assert_eq!(later.by_stage.get("validated"), Some(&1), "{later:?}");
        assert_eq!(later.by_stage.get("credited"), Some(&1), "{later:?}");
    }

    #[test]
    fn a_stage_lists_its_payments_in_the_order_they_reached_it() {
        let at = |second: i64| DateTime::from_timestamp(1_700_000_000 + second, 0).expect("a time");
        let [first, second, third] = [received("123456"), received("123456"), received("123456")];
        // Received in the order second, first, third; then `second` is validated.
        let mut events = stored(vec![
            (second.payment_id, second.clone().into()),
            (first.payment_id, first.clone().into()),
            (third.payment_id, third.clone().into()),
        ]);
        for (n, event) in events.iter_mut().enumerate() {
            event.metadata.occurred_at = at(n as i64);
        }
        let mut validated = stored(
            history(second.clone(), 2)
                .into_iter()
                .skip(1)
                .map(|e| (second.payment_id, e))
                .collect(),
        );
        validated[0].revision = 1;
        validated[0].metadata.occurred_at = at(10);
        events.extend(validated);
        let ids = |store: &ReadModelStore, stage: Option<Stage>| {
            let (records, total) = PaymentsQuery::new(store.clone())
                .list(stage, 0, 10)
                .expect("list");
            let ids: Vec<_> = records
                .iter()
                .filter_map(|r| r.state.received.as_ref().map(|r| r.payment_id))
                .collect();
            assert_eq!(ids.len() as u64, total);
            ids
        };
        for size in [1, events.len()] {
            let store = apply_in_batches(&events, size);
            assert_eq!(
                ids(&store, Some(Stage::Received)),
                vec![first.payment_id, third.payment_id],
                "batches of {size}"
            );
            assert_eq!(ids(&store, Some(Stage::Validated)), vec![second.payment_id]);
            assert_eq!(
                ids(&store, None),
                vec![second.payment_id, first.payment_id, third.payment_id],
                "all payments, in the order received (batches of {size})"
            );
            let (records, _) = PaymentsQuery::new(store.clone())
                .list(Some(Stage::Validated), 0, 10)
                .expect("list");
            assert_eq!(records[0].stage_since, at(10));
            assert_eq!(records[0].updated_at, at(10));
        }
    }

    #[test]
    fn setup_drops_the_earlier_versions_tables() {
        let store = ReadModelStore::in_memory().expect("a database");
        let transaction = store.database().begin_write().expect("a transaction");
        {
            // The first version's shapes.
            let v1_payments: TableDefinition<&str, &[u8]> =
                TableDefinition::new("inbound_payments");
            let v1_by_stage: TableDefinition<&str, i64> =
                TableDefinition::new("inbound_payments_by_stage");
            let v1_counts: TableDefinition<&str, u64> =
                TableDefinition::new("inbound_payment_counts");
            transaction
                .open_table(v1_payments)
                .expect("v1")
                .insert("p", b"{}".as_slice())
                .expect("row");
            transaction
                .open_table(v1_by_stage)
                .expect("v1")
                .insert("credited/p", 1)
                .expect("row");
            transaction
                .open_table(v1_counts)
                .expect("v1")
                .insert("received", 1)
                .expect("row");
            // The second version's rows, keyed by payment id.
            let v2_payments: TableDefinition<&str, &[u8]> =
                TableDefinition::new("inbound_payments_v2");
            transaction
                .open_table(v2_payments)
                .expect("v2")
                .insert("p", b"{}".as_slice())
                .expect("row");
        }
        PaymentsModel.setup(&transaction).expect("sets up");
        transaction.commit().expect("commits");
        let read = store.database().begin_read().expect("a read");
        let names: Vec<String> = read
            .list_tables()
            .expect("tables")
            .map(|table| table.name().to_owned())
            .collect();
        for retired in RETIRED_TABLES {
            assert!(!names.iter().any(|name| name == retired), "{names:?}");
        }
        assert_eq!(
            PaymentsQuery::new(store.clone())
                .stats()
                .expect("stats")
                .received,
            0
        );
    }
}
