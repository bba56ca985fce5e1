//! The bank's JavaScript projections (`projections-js/`), each run on a known event sequence in the projection
//! engine, with the exact state (and emitted events) expected.

use chrono::{DateTime, Duration, Utc};
use events::accounts::*;
use events::bacs::ReturnReason;
use events::payments::*;
use events::sanctions::*;
use events::{AccountId, DomainEvent, EventMetadata, Money, PaymentId};
use eventstore_lite::projections::engine::{EventInput, Limits, Projection};
use serde_json::{json, Value};

fn load(file: &str) -> Projection {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../projections-js")
        .join(file);
    let query =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Projection::compile(&query, Limits::default())
        .unwrap_or_else(|e| panic!("{file} compiles: {e}"))
}

/// Feeds events of one stream (revisions from 0), with `occurredAt` times.
struct Feed<'a> {
    projection: &'a Projection,
    revisions: std::collections::HashMap<String, u64>,
    emitted: Vec<(String, String, Value)>,
}

impl<'a> Feed<'a> {
    fn new(projection: &'a Projection) -> Self {
        Self {
            projection,
            revisions: Default::default(),
            emitted: Vec::new(),
        }
    }

    fn push<E: DomainEvent>(&mut self, stream: &str, event: E, at: DateTime<Utc>) {
        let revision = self.revisions.entry(stream.to_owned()).or_insert(0);
        let mut metadata = EventMetadata::for_request(uuid::Uuid::new_v4());
        metadata.occurred_at = at;
        let input = EventInput {
            stream_id: stream.to_owned(),
            sequence_number: *revision,
            event_type: event.event_type().to_owned(),
            event_id: uuid::Uuid::new_v4().to_string(),
            category: stream.split('-').next().unwrap_or_default().to_owned(),
            is_json: true,
            body_raw: String::from_utf8(event.to_json()).expect("JSON is UTF-8"),
            metadata_raw: serde_json::to_string(&metadata).expect("metadata serialises"),
            link_metadata_raw: String::new(),
        };
        *revision += 1;
        let processed = self
            .projection
            .process(&input)
            .unwrap_or_else(|e| panic!("{stream}: {e}"));
        for emitted in processed.emitted {
            let body = serde_json::from_str(&emitted.body).unwrap_or(Value::Null);
            self.emitted
                .push((emitted.stream, emitted.event_type, body));
        }
    }

    fn state(&self, partition: &str) -> Value {
        let json = self
            .projection
            .state(partition)
            .expect("state")
            .expect("a state");
        serde_json::from_str(&json).expect("state is JSON")
    }
}

fn account(n: u8) -> (AccountId, String) {
    let id: AccountId = format!("4000010000000{n}").parse().expect("14 digits");
    (id, events::streams::account(&id))
}

fn t0() -> DateTime<Utc> {
    "2026-11-25T09:00:00Z".parse().expect("a time")
}

#[test]
fn open_accounts_counts_accounts_by_status() {
    let projection = load("open-accounts.js");
    let mut feed = Feed::new(&projection);
    for n in 1..=4 {
        let (id, stream) = account(n);
        feed.push(
            &stream,
            AccountEvent::from(AccountOpened {
                account_id: id,
                name: "A".into(),
                overdraft_limit: Money::ZERO,
            }),
            t0(),
        );
    }
    let (_, second) = account(2);
    let (_, third) = account(3);
    feed.push(
        &second,
        AccountEvent::from(AccountBlocked {
            reason: "fraud".into(),
        }),
        t0(),
    );
    feed.push(
        &third,
        AccountEvent::from(AccountClosed {
            reason: "moved".into(),
        }),
        t0(),
    );
    feed.push(
        &second,
        AccountEvent::from(AccountUnblocked {
            reason: "cleared".into(),
        }),
        t0(),
    );
    feed.push(
        &second,
        AccountEvent::from(AccountBlocked {
            reason: "again".into(),
        }),
        t0(),
    );
    feed.push(
        &second,
        AccountEvent::from(FundsDeposited {
            amount: Money::from_pence(5),
            reference: "x".into(),
        }),
        t0(),
    );
    let state = feed.state("");
    assert_eq!(
        state,
        json!({
            "open": 2, "blocked": 1, "closed": 1,
            "accounts": {
                "40000100000001": "open", "40000100000002": "blocked",
                "40000100000003": "closed", "40000100000004": "open"
            }
        })
    );
}

#[test]
fn sanctioned_payments_lists_what_is_held_and_counts_decisions() {
    let projection = load("sanctioned-payments.js");
    let mut feed = Feed::new(&projection);
    let ids: Vec<PaymentId> = (0..4).map(|_| PaymentId::new()).collect();
    let hit = ScreeningOutcome::Hit {
        matches: vec![NameMatch {
            sanctioned_name: "VLADIMIR PETROV".into(),
            score: 0.97,
        }],
    };
    for (i, id) in ids.iter().enumerate() {
        let result = if i == 0 {
            ScreeningOutcome::Clear
        } else {
            hit.clone()
        };
        feed.push(
            &events::streams::screening(id),
            ScreeningEvent::from(PaymentScreened {
                payment_id: *id,
                screened_name: format!("NAME {i}"),
                result,
            }),
            t0(),
        );
    }
    feed.push(
        &events::streams::screening(&ids[1]),
        ScreeningEvent::from(HeldPaymentReleased {
            payment_id: ids[1],
            by: "ops".into(),
            reason: "ok".into(),
        }),
        t0(),
    );
    feed.push(
        &events::streams::screening(&ids[2]),
        ScreeningEvent::from(HeldPaymentRejected {
            payment_id: ids[2],
            by: "ops".into(),
            reason: "match".into(),
        }),
        t0(),
    );
    let state = feed.state("");
    assert_eq!(
        state,
        json!({
            "held": { ids[3].to_string(): { "name": "NAME 3", "matches": 1 } },
            "heldCount": 1, "released": 1, "rejected": 1, "clear": 1
        })
    );
}

#[test]
fn payment_stats_count_stages_outcomes_and_days() {
    let projection = load("payment-stats.js");
    let mut feed = Feed::new(&projection);
    let day_one = t0();
    let day_two = t0() + Duration::days(1);
    let party = || Party {
        name: "A".into(),
        sort_code: "400001".into(),
        account_number: "00000001".into(),
    };
    let mut payment = |at: DateTime<Utc>, amount: i64, credited: bool| {
        let id = PaymentId::new();
        let stream = events::streams::inbound_payment(&id);
        feed.push(
            &stream,
            InboundPaymentEvent::from(InboundPaymentReceived {
                payment_id: id,
                scheme_transaction_id: "T".into(),
                payer: party(),
                beneficiary: party(),
                amount,
                reference: "R".into(),
            }),
            at,
        );
        if credited {
            feed.push(
                &stream,
                InboundPaymentEvent::from(InboundPaymentAccountChecked { payment_id: id }),
                at,
            );
            feed.push(
                &stream,
                InboundPaymentEvent::from(InboundPaymentBalanceUpdated {
                    payment_id: id,
                    amount: Money::from_pence(amount),
                }),
                at,
            );
        } else {
            feed.push(
                &stream,
                InboundPaymentEvent::from(InboundPaymentReturned {
                    payment_id: id,
                    scheme_transaction_id: "T".into(),
                    reason: ReturnReason::AccountClosed,
                    amount,
                }),
                at,
            );
        }
    };
    payment(day_one, 100, true);
    payment(day_one, 250, false);
    payment(day_two, 40, true);
    assert_eq!(
        feed.state(""),
        json!({
            "byStage": { "received": 3, "accountChecked": 2, "balanceUpdated": 2, "returned": 1 },
            "returnedByReason": { "B": 1 },
            "credited": 2, "creditedAmount": 140,
            "byDay": {
                "2026-11-25": { "received": 2, "receivedAmount": 350, "credited": 1, "creditedAmount": 100 },
                "2026-11-26": { "received": 1, "receivedAmount": 40, "credited": 1, "creditedAmount": 40 }
            }
        })
    );
}

#[test]
fn fraud_velocity_alerts_once_per_burst_from_the_beginning_of_time() {
    let projection = load("fraud-velocity.js");
    let mut feed = Feed::new(&projection);
    let (_, busy) = account(1);
    let (_, calm) = account(2);
    let credit = |n: i64| {
        AccountEvent::from(FundsCredited {
            payment_id: PaymentId::new(),
            amount: Money::from_pence(n),
            payer_name: "P".into(),
            reference: "R".into(),
            transfer_id: None,
        })
    };
    // Five credits two minutes apart: the fourth is the first above 3 in 10 minutes → one alert for the burst.
    for i in 0..5 {
        feed.push(&busy, credit(i), t0() + Duration::minutes(2 * i));
    }
    // One credit an hour apart on another account: never an alert.
    for i in 0..5 {
        feed.push(&calm, credit(i), t0() + Duration::hours(i));
    }
    // A second burst much later raises a second alert.
    for i in 0..4 {
        feed.push(
            &busy,
            credit(i),
            t0() + Duration::days(1) + Duration::minutes(i),
        );
    }
    let alerts: Vec<_> = feed
        .emitted
        .iter()
        .filter(|(s, t, _)| s == "fraudAlerts" && t == "FraudVelocityAlertRaised")
        .collect();
    assert_eq!(alerts.len(), 2, "{:?}", feed.emitted);
    assert_eq!(alerts[0].2["account"], "40000100000001");
    assert_eq!(alerts[0].2["payments"], 4);
    assert_eq!(alerts[0].2["at"], "2026-11-25T09:06:00.000Z");
    assert_eq!(feed.state(&busy)["alerts"], 2);
    assert_eq!(feed.state(&calm)["alerts"], 0);

    // A long burst is still one alert, and an account's state stays small however busy it is.
    for i in 0..50 {
        feed.push(
            &busy,
            credit(i),
            t0() + Duration::days(2) + Duration::seconds(i),
        );
    }
    assert_eq!(feed.state(&busy)["alerts"], 3);
    let recent = feed.state(&busy)["recent"].as_array().map_or(0, Vec::len);
    assert_eq!(recent, 4, "{}", feed.state(&busy));
}
