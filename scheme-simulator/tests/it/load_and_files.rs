//! Standard 18 files and load at a target rate.

use axum::http::StatusCode;
use scheme_simulator::record::{self, SchemeEvent};
use scheme_simulator::standard18::format_record;
use scheme_simulator::SchemePayment;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use crate::helpers::{payment, spawn_app, wait_until};

fn file_payment(n: i64) -> SchemePayment {
    serde_json::from_value(crate::helpers::payment(&format!("ignored-{n}"), 1000 * n))
        .expect("a payment")
}

#[tokio::test]
async fn a_standard_18_file_is_parsed_and_forwarded_once_per_transaction_id() {
    let app = spawn_app().await;
    let records: Vec<String> = (1..=3).map(|n| format_record(&file_payment(n))).collect();
    let file = format!("VOL1 BANK\nHDR1 A\n{}\nEOF1\nUTL1\n", records.join("\n"));
    let send = || async {
        let response = app
            .http
            .post(app.url("/inbound-payments/files"))
            .header("content-type", "text/plain")
            .body(file.clone())
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("JSON");
        (status, body)
    };
    let (status, body) = send().await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["records"], 3);
    let file_id = body["fileId"].as_str().expect("a file id").to_owned();
    let received = app.bank.received();
    assert_eq!(received.len(), 3);
    let ids: Vec<String> = received
        .iter()
        .map(|p| p.scheme_transaction_id.clone())
        .collect();
    assert_eq!(ids, [3, 4, 5].map(|line| format!("{file_id}-{line}")));
    assert_eq!(received[1].amount, 2000);
    assert_eq!(received[0].beneficiary.account_number, "11111111");
    assert_eq!(received[0].payer.name, "ACME PAYROLL LTD");

    // The same file again names the same transactions (the bank takes each once) and is recorded once.
    let (status, again) = send().await;
    assert_eq!(status, 202);
    assert_eq!(again["fileId"], file_id.as_str());
    assert_eq!(again["paymentIds"], body["paymentIds"]);
    let recorded = app
        .store
        .read_stream::<SchemeEvent>(&record::file_stream(&file_id))
        .await
        .expect("the file is recorded");
    assert_eq!(recorded.len(), 1);

    let response = app
        .http
        .post(app.url("/inbound-payments/files"))
        .body("123456 too short")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 422);
}

#[tokio::test]
async fn load_sends_rate_times_duration_payments_in_the_background() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json(
            "/load",
            json!({"ratePerSecond": 40, "durationSeconds": 2, "invalidRatio": 0.1}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["running"], true);
    let load_id = body["loadId"].as_str().expect("an id").to_owned();
    let path = format!("/load/{load_id}");
    wait_until("the load run finishes", || async {
        app.get_json(&path).await.1["running"] == false
    })
    .await;
    let (_, status_body) = app.get_json(&path).await;
    assert_eq!(status_body["sent"], 80, "{status_body}");
    assert_eq!(status_body["accepted"], 80);
    assert_eq!(status_body["completed"], true);
    assert_eq!(app.bank.count(), 80);
    let (_, list) = app.get_json("/load").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let recorded = app
        .store
        .read_stream::<SchemeEvent>(&format!("scheme-load-{}", load_id.replace('-', "")))
        .await
        .expect("the run is recorded");
    assert!(
        matches!(recorded.last().map(|e| &e.event), Some(SchemeEvent::LoadFinished(f)) if f.sent == 80)
    );

    for bad in [
        json!({"ratePerSecond": 0, "durationSeconds": 1}),
        json!({"ratePerSecond": 10, "durationSeconds": 100000}),
    ] {
        let (status, _) = app.post_json("/load", bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (status, _) = app
        .get_json(&format!("/load/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_busy_bank_slows_a_load_run_down_without_losing_or_repeating_a_payment() {
    let app = spawn_app().await;
    app.bank.busy_answers.store(2, Ordering::SeqCst);
    let (status, body) = app
        .post_json("/load", json!({"ratePerSecond": 40, "durationSeconds": 1}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let path = format!("/load/{}", body["loadId"].as_str().expect("an id"));
    wait_until("the load run finishes", || async {
        app.get_json(&path).await.1["running"] == false
    })
    .await;
    let (_, run) = app.get_json(&path).await;
    assert_eq!(run["throttled"], 2, "{run}");
    assert_eq!(run["sent"], 40, "{run}");
    assert_eq!(run["accepted"], 40, "{run}");
    assert_eq!(run["failed"], 0, "{run}");
    assert_eq!(run["completed"], true, "{run}");
    let received = app.bank.received();
    let distinct: std::collections::HashSet<_> =
        received.iter().map(|p| &p.scheme_transaction_id).collect();
    assert_eq!((received.len(), distinct.len()), (40, 40));

    // An explicit submission (one batch) to a busy bank is a 503 that says when to send again and that
    // nothing was taken.
    app.bank.busy_answers.store(1, Ordering::SeqCst);
    let response = app
        .http
        .post(app.url("/inbound-payments"))
        .json(&payment("T-BUSY", 100))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(b"1".as_slice())
    );
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["error"], "busy", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("0 payments of this submission were taken"),
        "{answer}"
    );
    assert_eq!(app.bank.count(), 40);
}
