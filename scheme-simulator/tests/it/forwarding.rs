//! Explicit and random payments reach the bank and are recorded; returns are received and listed.

use std::collections::HashSet;

use axum::http::StatusCode;
use scheme_simulator::record::{
    PaymentsSubmitted, SchemeEvent, SubmissionSource, SUBMISSIONS_STREAM,
};
use serde_json::json;

use crate::helpers::{
    payment, spawn_app, spawn_app_with, CLOSED_ACCOUNTS, OPEN_ACCOUNTS, SANCTIONED,
};

async fn submissions(app: &crate::helpers::TestApp) -> Vec<PaymentsSubmitted> {
    app.store
        .read_stream::<SchemeEvent>(SUBMISSIONS_STREAM)
        .await
        .expect("the submissions read")
        .into_iter()
        .filter_map(|stored| match stored.event {
            SchemeEvent::PaymentsSubmitted(submitted) => Some(submitted),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn explicit_payments_are_forwarded_and_recorded() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json(
            "/inbound-payments",
            json!([payment("T-1", 1234), payment("T-2", 99)]),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let expected_ids: Vec<String> = ["T-1", "T-2"]
        .iter()
        .map(|id| events::ids::payment_id_for_scheme_transaction(id).to_string())
        .collect();
    assert_eq!(body["paymentIds"], json!(expected_ids));
    let received = app.bank.received();
    assert_eq!(
        received
            .iter()
            .map(|p| p.scheme_transaction_id.as_str())
            .collect::<Vec<_>>(),
        ["T-1", "T-2"]
    );
    assert_eq!(received[0].amount, 1234);

    // One payment on its own is accepted too.
    let (status, _) = app.post_json("/inbound-payments", payment("T-3", 5)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.bank.count(), 3);

    let recorded = submissions(&app).await;
    assert_eq!(recorded.len(), 2);
    assert!(recorded
        .iter()
        .all(|s| s.accepted && s.source == SubmissionSource::Explicit));
    assert_eq!(recorded[0].payments.len(), 2);

    let (status, body) = app
        .post_json("/inbound-payments", json!({"nonsense": true}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn a_bank_that_cannot_be_reached_is_a_503_and_recorded_as_refused() {
    // A port bound but not listening: connections are refused, and no other test can take the port meanwhile
    // (a port freed for the test was once taken by another test's server, which answered 404).
    let closed = tokio::net::TcpSocket::new_v4().expect("a socket");
    closed
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("binds");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    let app = spawn_app_with(Some(url)).await;
    let (status, body) = app
        .post_json("/inbound-payments", payment("T-9", 100))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let recorded = submissions(&app).await;
    assert_eq!(recorded.len(), 1);
    assert!(!recorded[0].accepted);
    assert!(recorded[0].error.is_some());
}

#[tokio::test]
async fn the_random_mix_follows_the_ratios() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json(
            "/inbound-payments/random",
            json!({"count": 1000, "sanctionedRatio": 0.1, "invalidRatio": 0.1,
                   "unknownAccountRatio": 0.1, "closedAccountRatio": 0.1}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cases = &body["cases"];
    let count = |case: &str| cases[case].as_u64().expect("a count");
    for case in ["sanctioned", "invalid", "unknownAccount", "closedAccount"] {
        assert!((50..=150).contains(&count(case)), "{case}: {cases}");
    }
    assert_eq!(
        count("ordinary")
            + count("sanctioned")
            + count("invalid")
            + count("unknownAccount")
            + count("closedAccount"),
        1000
    );
    // The bank got every payment, in batches of the configured size, and what it got matches the cases.
    let received = app.bank.received();
    assert_eq!(received.len(), 1000);
    let sanctioned: HashSet<&str> = SANCTIONED.iter().copied().collect();
    let from_sanctioned = received
        .iter()
        .filter(|p| sanctioned.contains(p.payer.name.as_str()))
        .count();
    assert_eq!(from_sanctioned as u64, count("sanctioned"));
    let closed: HashSet<&str> = CLOSED_ACCOUNTS.iter().map(|a| a.1).collect();
    let to_closed = received
        .iter()
        .filter(|p| closed.contains(p.beneficiary.account_number.as_str()))
        .count();
    assert_eq!(to_closed as u64, count("closedAccount"));
    let open: HashSet<&str> = OPEN_ACCOUNTS.iter().map(|a| a.1).collect();
    let to_open = received
        .iter()
        .filter(|p| open.contains(p.beneficiary.account_number.as_str()))
        .count() as u64;
    // Ordinary, sanctioned and invalid payments go to open accounts (an invalid one may have its sort code spoilt).
    assert!(
        to_open >= count("ordinary") + count("sanctioned"),
        "{to_open} {cases}"
    );
    let recorded = submissions(&app).await;
    assert_eq!(recorded.len(), 10);
    assert!(recorded
        .iter()
        .all(|s| s.source == SubmissionSource::Random));

    let (status, _) = app
        .post_json(
            "/inbound-payments/random",
            json!({"count": 10, "invalidRatio": 0.8, "sanctionedRatio": 0.5}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .post_json("/inbound-payments/random", json!({"count": 0}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn returns_posted_are_listed_once_each() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/returns").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
    let first = events::ids::payment_id_for_scheme_transaction("T-1");
    let second = events::ids::payment_id_for_scheme_transaction("T-2");
    let returned = |id: &events::PaymentId, tx: &str, code: &str| {
        json!({"schemeTransactionId": tx, "paymentId": id.to_string(), "reasonCode": code,
               "reason": "Account closed", "amount": 1234})
    };
    for body in [
        returned(&first, "T-1", "B"),
        returned(&second, "T-2", "5"),
        returned(&first, "T-1", "B"),
    ] {
        let (status, answer) = app.post_json("/returns", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (status, body) = app.get_json("/returns").await;
    assert_eq!(status, StatusCode::OK);
    let list = body.as_array().expect("a list");
    assert_eq!(list.len(), 2, "{body}");
    assert_eq!(list[0]["schemeTransactionId"], "T-1");
    assert_eq!(list[0]["reasonCode"], "B");
    assert_eq!(list[1]["paymentId"], second.to_string());
    assert_eq!(list[1]["amount"], 1234);

    let (status, _) = app
        .post_json(
            "/returns",
            json!({"schemeTransactionId": "T-3", "paymentId": "x", "reasonCode": "B"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn outbound_payments_are_an_empty_list_and_every_route_is_documented() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/outbound-payments").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
    let (status, document) = app.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/inbound-payments",
        "/inbound-payments/random",
        "/inbound-payments/files",
        "/load",
        "/load/{loadId}",
        "/returns",
        "/outbound-payments",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} is documented"
        );
    }
    app.shutdown.cancel();
    let stopped = crate::helpers::within("the simulator to stop", app.task).await;
    assert!(stopped.expect("joins").is_ok());
}
