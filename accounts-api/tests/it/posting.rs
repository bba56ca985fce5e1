//! The `account-posting` group: a sanctions-checked inbound payment (written here as payment-scheme-domain would)
//! is credited to the beneficiary's account exactly once, or refused with the Bacs return reason.

use events::accounts::AccountEvent;
use events::bacs::ReturnReason;
use events::payments::{InboundPaymentEvent, InboundPaymentSanctionsChecked};
use events::{EventMetadata, Money, PaymentId};
use infrastructure::eventstore::ExpectedRevision;
use infrastructure::NewEvent;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

/// Appends an `InboundPaymentSanctionsChecked` for `payment` to its inbound payment stream.
async fn sanctions_checked(app: &TestApp, payment: PaymentId, account: &str, pence: i64) -> Uuid {
    let event = InboundPaymentEvent::from(InboundPaymentSanctionsChecked {
        payment_id: payment,
        beneficiary_sort_code: account[..6].parse().expect("sort code"),
        beneficiary_account_number: account[6..].parse().expect("account number"),
        payer_name: "BOB PAYER".into(),
        amount: Money::from_pence(pence),
        reference: "INV 42".into(),
        released: false,
    });
    let correlation = Uuid::new_v4();
    let new = NewEvent::new(event, EventMetadata::for_request(correlation));
    within(
        "appending the trigger",
        app.store.append(
            &events::streams::inbound_payment(&payment),
            ExpectedRevision::Any,
            &[new],
        ),
    )
    .await
    .expect("appends");
    correlation
}

async fn account_events(
    app: &TestApp,
    account: &str,
) -> Vec<infrastructure::StoredEvent<AccountEvent>> {
    app.store
        .read_stream::<AccountEvent>(&format!("account-{account}"))
        .await
        .expect("the account stream reads")
}

#[tokio::test]
async fn a_checked_payment_is_credited_once_even_when_the_trigger_repeats() {
    let app = spawn_app().await;
    let account = "40000012345678";
    app.open(account, "ALICE", 100).await;
    let payment = PaymentId::new();
    let correlation = sanctions_checked(&app, payment, account, 2_500).await;
    wait_until("the payment is credited", || async {
        app.balance(account).await == 2_600
    })
    .await;

    // The same payment checked twice (a duplicate trigger), then everything handled.
    sanctions_checked(&app, payment, account, 2_500).await;
    wait_until("both triggers are handled", || async {
        app.posting_counter("subscription_events_handled_total")
            .await
            == 2
    })
    .await;
    assert_eq!(app.balance(account).await, 2_600, "credited exactly once");
    let credits: Vec<_> = account_events(&app, account)
        .await
        .into_iter()
        .filter(|e| matches!(&e.event, AccountEvent::FundsCredited(c) if c.payment_id == payment))
        .collect();
    assert_eq!(credits.len(), 1);
    assert_eq!(
        credits[0].metadata.correlation_id, correlation,
        "the payment's correlation id travels on"
    );
    let (status, body) = app.get(&format!("/accounts/{account}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recentTransactions"][0]["kind"], "credit");
    assert_eq!(body["recentTransactions"][0]["reference"], "INV 42");
    app.stop().await;
}

#[tokio::test]
async fn payments_to_unknown_closed_or_blocked_accounts_are_refused_with_their_reason() {
    let app = spawn_app().await;
    let closed = "40000100000001";
    let blocked = "40000100000002";
    let unknown = "40000100000003";
    for account in [closed, blocked] {
        app.open(account, "BOB", 0).await;
    }
    let (status, _) = app
        .put(
            &format!("/accounts/{closed}/status"),
            json!({"status": "closed", "reason": "gone"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .put(
            &format!("/accounts/{blocked}/status"),
            json!({"status": "blocked", "reason": "fraud"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    for (account, reason) in [
        (closed, ReturnReason::AccountClosed),
        (blocked, ReturnReason::AccountTransferred),
        (unknown, ReturnReason::NoAccount),
    ] {
        let payment = PaymentId::new();
        sanctions_checked(&app, payment, account, 700).await;
        wait_until("the payment is refused", || async {
            app.store
                .read_stream::<AccountEvent>(&format!("account-{account}"))
                .await
                .unwrap_or_default()
                .iter()
                .any(|e| matches!(&e.event, AccountEvent::PaymentPostingRefused(r)
                    if r.payment_id == payment && r.reason == reason && r.amount == Money::from_pence(700)))
        })
        .await;
    }
    assert_eq!(
        app.get(&format!("/accounts/{unknown}")).await.0,
        StatusCode::NOT_FOUND,
        "a refusal opens nothing"
    );
    assert_eq!(app.balance(blocked).await, 0);
    wait_until("the ledger counts the refusals", || async {
        app.get("/ledger").await.1["paymentsRefused"] == 3
    })
    .await;
    assert_eq!(app.get("/ledger").await.1["paymentsCredited"], 0);
    app.stop().await;
}
