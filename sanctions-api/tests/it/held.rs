//! The `sanctions-screening` worker (clear vs hit on the payer name) and the held payments: listed until an
//! operator releases or rejects them, once.

use events::sanctions::{ScreeningEvent, ScreeningOutcome};
use events::PaymentId;
use serde_json::{json, Value};

use crate::helpers::*;

async fn held_ids(app: &App) -> Vec<String> {
    let (status, body) = app.get("/held-payments").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("an array")
        .iter()
        .map(|held| held["paymentId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn wait_held(app: &App, expected: &[PaymentId]) {
    let mut expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
    expected.sort();
    wait_until(&format!("held payments are {expected:?}"), || async {
        let mut held = held_ids(app).await;
        held.sort();
        held == expected
    })
    .await;
}

#[tokio::test]
async fn validated_payments_are_screened_on_the_payer_name_clear_or_hit() {
    let app = spawn_app().await;
    app.post("/sanctioned-names", &json!({"name": "Vladimir Petrov"}))
        .await;
    let clear = app.validated_payment("ADA LOVELACE").await;
    let hit = app.validated_payment("MR VLADIMIR PETROV").await;
    let near = app.validated_payment("WLADIMIR PETROW").await;

    let screened = app.wait_for_screening(clear).await;
    assert_eq!(screened.len(), 1);
    let ScreeningEvent::PaymentScreened(clear_event) = &screened[0].event else {
        panic!("not a screening: {:?}", screened[0].event);
    };
    assert_eq!(clear_event.result, ScreeningOutcome::Clear);
    assert_eq!(clear_event.screened_name, "ADA LOVELACE");

    let screened = app.wait_for_screening(near).await;
    let ScreeningEvent::PaymentScreened(near_event) = &screened[0].event else {
        panic!("not a screening");
    };
    let ScreeningOutcome::Hit { matches } = &near_event.result else {
        panic!("WLADIMIR PETROW should be a hit: {:?}", near_event.result);
    };
    assert_eq!(matches[0].sanctioned_name, "Vladimir Petrov");

    let screened = app.wait_for_screening(hit).await;
    assert!(matches!(
        &screened[0].event,
        ScreeningEvent::PaymentScreened(e) if matches!(e.result, ScreeningOutcome::Hit { .. })
    ));
    let held = [near, hit];
    wait_held(&app, &held).await;
    let (_, body) = app.get("/held-payments").await;
    let first: &Value = &body[0];
    assert!(first["matches"][0]["score"].as_f64().is_some());
    assert!(first["screenedName"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn a_held_payment_is_released_or_rejected_once_with_who_and_why() {
    let app = spawn_app().await;
    app.post("/sanctioned-names", &json!({"name": "Acme Shell Holdings"}))
        .await;
    let to_release = app.validated_payment("ACME SHELL HOLDINGS").await;
    let to_reject = app.validated_payment("ACME SHELL HOLDINGS LTD").await;
    let clear = app.validated_payment("J SMITH").await;
    for id in [to_release, to_reject, clear] {
        app.wait_for_screening(id).await;
    }
    wait_held(&app, &[to_release, to_reject]).await;

    let decision = json!({"by": "ops.alice", "reason": "false positive: a different company"});
    let (status, body) = app
        .post(&format!("/held-payments/{to_release}/release"), &decision)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "released");
    let (status, body) = app
        .post(&format!("/held-payments/{to_release}/reject"), &decision)
        .await;
    assert_eq!(status, 409, "a second decision conflicts: {body}");
    let (status, _) = app
        .post(&format!("/held-payments/{to_release}/release"), &decision)
        .await;
    assert_eq!(status, 409);

    let (status, _) = app
        .post(
            &format!("/held-payments/{to_reject}/reject"),
            &json!({"by": "ops.bob", "reason": ""}),
        )
        .await;
    assert_eq!(status, 422, "why is required");
    let (status, body) = app
        .post(
            &format!("/held-payments/{to_reject}/reject"),
            &json!({"by": "ops.bob", "reason": "confirmed match"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .post(&format!("/held-payments/{to_reject}/release"), &decision)
        .await;
    assert_eq!(status, 409);

    for id in [clear, PaymentId::new()] {
        let (status, body) = app
            .post(&format!("/held-payments/{id}/release"), &decision)
            .await;
        assert_eq!(status, 404, "{body}");
    }
    let (status, _) = app.post("/held-payments/nope/release", &decision).await;
    assert_eq!(status, 400);

    let released = app.screening(to_release).await;
    let ScreeningEvent::HeldPaymentReleased(event) = &released[1].event else {
        panic!("not a release: {:?}", released[1].event);
    };
    assert_eq!(event.by, "ops.alice");
    assert_eq!(event.reason, "false positive: a different company");
    assert_eq!(released[1].metadata.actor.as_deref(), Some("ops.alice"));
    assert_eq!(released.len(), 2, "one decision only");
    let rejected = app.screening(to_reject).await;
    assert!(
        matches!(&rejected[1].event, ScreeningEvent::HeldPaymentRejected(e) if e.by == "ops.bob")
    );

    wait_held(&app, &[]).await;
    app.stop().await;
}
