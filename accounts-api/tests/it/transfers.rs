//! `POST /transfers`: the saga debits, credits, and refunds the debit when the credit is refused.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn transfers_complete_or_are_compensated() {
    let app = spawn_app().await;
    let (from, to, closed) = ("60000000000001", "60000000000002", "60000000000003");
    app.open(from, "PAYER", 1_000).await;
    app.open(to, "PAYEE", 0).await;
    app.open(closed, "GONE", 0).await;
    app.put(
        &format!("/accounts/{closed}/status"),
        json!({"status": "closed", "reason": "x"}),
    )
    .await;

    let (status, body) = app
        .post(
            "/transfers",
            json!({"from": from, "to": to, "amount": 400, "reference": "rent"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::CREATED, Some("completed")),
        "{body}"
    );
    assert_eq!((app.balance(from).await, app.balance(to).await), (600, 400));

    let (status, body) = app
        .post(
            "/transfers",
            json!({"from": from, "to": closed, "amount": 100, "reference": "oops"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::CREATED, Some("compensated")),
        "{body}"
    );
    assert_eq!(
        (app.balance(from).await, app.balance(closed).await),
        (600, 0),
        "the debit was refunded"
    );
    let transfer = format!("transfer-{}", body["id"].as_str().expect("an id"));
    let recorded: Vec<_> = app
        .store
        .read_stream::<events::transfers::TransferEvent>(&transfer)
        .await
        .expect("the saga is recorded")
        .into_iter()
        .map(|e| events::DomainEvent::event_type(&e.event))
        .collect();
    assert_eq!(
        recorded,
        [
            "TransferRequested",
            "TransferDebited",
            "TransferFailed",
            "TransferCompensated"
        ]
    );

    let (status, _) = app
        .post(
            "/transfers",
            json!({"from": from, "to": to, "amount": 10_000, "reference": "too much"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient funds: nothing moves"
    );
    let (status, _) = app
        .post(
            "/transfers",
            json!({"from": from, "to": from, "amount": 1, "reference": "self"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((app.balance(from).await, app.balance(to).await), (600, 400));
    app.stop().await;
}
