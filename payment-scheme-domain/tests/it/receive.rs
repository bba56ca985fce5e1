//! The gateway: receipt is idempotent on the scheme transaction id, validation rejects and returns what a Bacs
//! gateway would, and a payment can be looked up with its history.

use events::ids::payment_id_for_scheme_transaction;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn the_same_scheme_message_twice_is_one_payment() {
    let app = spawn_app().await;
    let transaction = unique_transaction();
    let payment = scheme_payment(&transaction, "123456", "12345678", 500);
    let first = app.receive(&payment).await;
    assert_eq!(first, payment_id_for_scheme_transaction(&transaction));
    let validated = app.wait_for_stage(first, "validated").await;
    // Again, alone and inside an array, after the payment has moved on.
    let second = app.receive(&payment).await;
    let (status, body) = app
        .post(
            "/scheme/inbound",
            &Value::Array(vec![payment.clone(), payment.clone()]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(second, first);
    assert_eq!(
        body["paymentIds"],
        json!([first.to_string(), first.to_string()])
    );
    let after = app.payment(first).await;
    assert_eq!(
        history_types(&after),
        ["InboundPaymentReceived", "InboundPaymentValidated"],
        "nothing new recorded"
    );
    assert_eq!(after["revision"], validated["revision"]);
    wait_until("the read model counts one payment", || async {
        let (_, stats) = app.get("/stats").await;
        stats["received"] == 1 && stats["byStage"]["validated"] == 1
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_batch_is_received_and_every_payment_validated_with_its_correlation_id() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..5)
        .map(|i| scheme_payment(&unique_transaction(), "123456", "12345678", 100 + i))
        .collect();
    let response = app
        .client
        .post(format!("{}/scheme/inbound", app.base_url))
        .header("x-correlation-id", "0f0f0f0f-0000-4000-8000-000000000001")
        .json(&batch)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.expect("json");
    let ids = body["paymentIds"].as_array().expect("ids").clone();
    assert_eq!(ids.len(), 5);
    for id in ids {
        let id = id.as_str().expect("text").parse().expect("uuid");
        let payment = app.wait_for_stage(id, "validated").await;
        for entry in payment["history"].as_array().expect("history") {
            assert_eq!(
                entry["correlationId"],
                "0f0f0f0f-0000-4000-8000-000000000001"
            );
        }
        assert_eq!(
            payment["history"][1]["causationId"], payment["history"][0]["eventId"],
            "validation is caused by the receipt"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn invalid_payments_are_rejected_and_returned_as_invalid_account_details() {
    let app = spawn_app().await;
    let cases = [
        scheme_payment(&unique_transaction(), "1234", "12345678", 500),
        scheme_payment(&unique_transaction(), "123456", "1234567X", 500),
        scheme_payment(&unique_transaction(), "123456", "12345678", 0),
        scheme_payment(&unique_transaction(), "123456", "12345678", 3_000_000_000),
    ];
    for case in cases {
        let id = app.receive(&case).await;
        let payment = app.wait_for_stage(id, "returned").await;
        assert_eq!(
            history_types(&payment),
            [
                "InboundPaymentReceived",
                "InboundPaymentRejected",
                "InboundPaymentReturned"
            ]
        );
        assert_eq!(payment["returnReason"]["code"], "6", "{payment}");
        assert_eq!(payment["final"], true);
        assert!(!payment["history"][1]["data"]["reasons"]
            .as_array()
            .expect("reasons")
            .is_empty());
    }
    wait_until("the read model lists the returned payments", || async {
        let (_, list) = app.get("/payments?status=returned").await;
        let (_, stats) = app.get("/stats").await;
        list["total"] == 4 && stats["returnedByReason"]["6"] == 4
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let app = spawn_app().await;
    let (status, body) = app.post("/scheme/inbound", &json!({"amount": 1})).await;
    assert_eq!(status, 422, "{body}");
    let mut empty = scheme_payment("", "123456", "12345678", 1);
    empty["schemeTransactionId"] = json!("  ");
    let (status, _) = app.post("/scheme/inbound", &empty).await;
    assert_eq!(status, 422);
    let (status, body) = app.get("/payments/not-a-uuid").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .get("/payments/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    let (status, _) = app.get("/payments?status=teleported").await;
    assert_eq!(status, 400);
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/scheme/inbound",
        "/payments",
        "/payments/{paymentId}",
        "/stats",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    app.stop().await;
}

#[tokio::test]
async fn competing_validation_workers_validate_each_payment_once() {
    let app = spawn_app_with(|config| config.replicas = 3).await;
    let batch: Vec<Value> = (0..30)
        .map(|i| scheme_payment(&unique_transaction(), "123456", "12345678", 100 + i))
        .collect();
    let (status, body) = app.post("/scheme/inbound", &Value::Array(batch)).await;
    assert_eq!(status, 202, "{body}");
    for id in body["paymentIds"].as_array().expect("ids") {
        let id = id.as_str().expect("text").parse().expect("uuid");
        let payment = app.wait_for_stage(id, "validated").await;
        assert_eq!(
            history_types(&payment),
            ["InboundPaymentReceived", "InboundPaymentValidated"]
        );
    }
    wait_until("the read model counts 30 validated", || async {
        let (_, stats) = app.get("/stats").await;
        stats["received"] == 30 && stats["byStage"]["validated"] == 30
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_gateway_is_busy_while_its_limit_of_payments_is_in_progress() {
    let app = spawn_app_with(|config| config.max_in_progress = 2).await;
    let (first, second, third) = (
        scheme_payment(&unique_transaction(), "123456", "12345678", 100),
        scheme_payment(&unique_transaction(), "123456", "12345678", 200),
        scheme_payment(&unique_transaction(), "123456", "12345678", 300),
    );
    let (status, body) = app
        .post(
            "/scheme/inbound",
            &Value::Array(vec![first.clone(), second]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Nobody screens them here: both wait at validated.
    wait_until("two payments are in progress", || async {
        app.get("/stats").await.1["inProgress"] == 2
    })
    .await;
    let response = app
        .client
        .post(format!("{}/scheme/inbound", app.base_url))
        .json(&third)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(b"1".as_slice())
    );
    let refused: Value = response.json().await.expect("json");
    assert_eq!(refused["error"], "busy", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2 payments in progress"),
        "{refused}"
    );
    let third_id = payment_id_for_scheme_transaction(
        third["schemeTransactionId"].as_str().unwrap_or_default(),
    );
    assert_eq!(
        app.get(&format!("/payments/{third_id}")).await.0,
        404,
        "nothing recorded"
    );

    // A payment held for an operator is not the pipeline's work: the third comes in.
    let first_id = payment_id_for_scheme_transaction(
        first["schemeTransactionId"].as_str().unwrap_or_default(),
    );
    app.screened_hit(first_id).await;
    app.wait_for_stage(first_id, "held").await;
    wait_until("one payment is in progress", || async {
        app.get("/stats").await.1["inProgress"] == 1
    })
    .await;
    assert_eq!(app.receive(&third).await, third_id);
    app.stop().await;
}
