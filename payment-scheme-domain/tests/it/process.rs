//! The process past validation, driven by appending the events sanctions-api and accounts-api would append:
//! every branch ends in the right stage, and returns carry their Bacs reason codes.

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::Router;
use events::bacs::ReturnReason;
use serde_json::Value;

use crate::helpers::*;

const ACCOUNT: &str = "12345612345678";

#[tokio::test]
async fn a_clear_payment_is_credited() {
    let app = spawn_app().await;
    let id = app
        .receive(&scheme_payment(
            &unique_transaction(),
            "123456",
            "12345678",
            750,
        ))
        .await;
    app.wait_for_stage(id, "validated").await;
    app.screened_clear(id).await;
    app.wait_for_stage(id, "sanctionsChecked").await;
    app.credited(ACCOUNT, id, 750).await;
    // Delivered twice (as a redelivery would): still one credit.
    app.credited(ACCOUNT, id, 750).await;
    let payment = app.wait_for_stage(id, "credited").await;
    assert_eq!(
        history_types(&payment),
        [
            "InboundPaymentReceived",
            "InboundPaymentValidated",
            "InboundPaymentSanctionsChecked",
            "InboundPaymentAccountChecked",
            "InboundPaymentBalanceUpdated"
        ]
    );
    assert_eq!(payment["final"], true);
    wait_until("the read model shows it credited", || async {
        let (_, list) = app.get("/payments?status=credited").await;
        let (_, stats) = app.get("/stats").await;
        list["payments"][0]["paymentId"] == id.to_string() && stats["byStage"]["credited"] == 1
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_held_payment_is_released_and_credited_or_rejected_and_returned() {
    let app = spawn_app().await;
    let released = app
        .receive(&scheme_payment(
            &unique_transaction(),
            "123456",
            "12345678",
            100,
        ))
        .await;
    let rejected = app
        .receive(&scheme_payment(
            &unique_transaction(),
            "123456",
            "12345678",
            200,
        ))
        .await;
    for id in [released, rejected] {
        app.wait_for_stage(id, "validated").await;
        app.screened_hit(id).await;
        app.wait_for_stage(id, "held").await;
    }
    wait_until("the read model lists both held", || async {
        let (_, list) = app.get("/payments?status=held").await;
        list["total"] == 2
    })
    .await;

    app.released(released).await;
    let payment = app.wait_for_stage(released, "sanctionsChecked").await;
    let released_event = &payment["history"][3];
    assert_eq!(released_event["eventType"], "InboundPaymentReleased");
    assert_eq!(released_event["data"]["by"], "ops.alice");
    assert_eq!(payment["history"][4]["data"]["released"], true);
    app.credited(ACCOUNT, released, 100).await;
    app.wait_for_stage(released, "credited").await;

    app.rejected(rejected).await;
    let payment = app.wait_for_stage(rejected, "returned").await;
    assert_eq!(
        history_types(&payment)[2..],
        [
            "InboundPaymentHeld",
            "InboundPaymentFailed",
            "InboundPaymentReturned"
        ][..]
    );
    assert_eq!(payment["returnReason"]["code"], "0");
    app.stop().await;
}

#[tokio::test]
async fn refused_postings_are_returned_with_the_accounts_reason_code() {
    let app = spawn_app().await;
    for (reason, code) in [
        (ReturnReason::NoAccount, "5"),
        (ReturnReason::AccountClosed, "B"),
        (ReturnReason::AccountTransferred, "3"),
    ] {
        let id = app
            .receive(&scheme_payment(
                &unique_transaction(),
                "123456",
                "12345678",
                300,
            ))
            .await;
        app.wait_for_stage(id, "validated").await;
        app.screened_clear(id).await;
        app.wait_for_stage(id, "sanctionsChecked").await;
        app.refused(ACCOUNT, id, 300, reason).await;
        let payment = app.wait_for_stage(id, "returned").await;
        assert_eq!(payment["returnReason"]["code"], code, "{payment}");
        let returned = payment["history"]
            .as_array()
            .expect("history")
            .last()
            .cloned();
        assert_eq!(
            returned.as_ref().map(|e| e["eventType"].clone()),
            Some(Value::from("InboundPaymentReturned"))
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn returns_reach_the_scheme_simulator() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let simulator = {
        let received = received.clone();
        Router::new().route(
            "/returns",
            post(move |axum::Json(body): axum::Json<Value>| {
                let received = received.clone();
                async move {
                    received.lock().expect("not poisoned").push(body);
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let simulator_url = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, simulator).await });
    let app = spawn_app_with(|config| config.simulator_url = Some(simulator_url)).await;
    let transaction = unique_transaction();
    let id = app
        .receive(&scheme_payment(&transaction, "12", "12345678", 900))
        .await;
    app.wait_for_stage(id, "returned").await;
    wait_until("the simulator receives the return", || async {
        !received.lock().expect("not poisoned").is_empty()
    })
    .await;
    let returns = received.lock().expect("not poisoned").clone();
    assert_eq!(returns.len(), 1);
    assert_eq!(returns[0]["schemeTransactionId"], transaction.as_str());
    assert_eq!(returns[0]["paymentId"], id.to_string());
    assert_eq!(returns[0]["reasonCode"], "6");
    assert_eq!(returns[0]["amount"], 900);
    app.stop().await;
}
