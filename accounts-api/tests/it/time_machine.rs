//! The account time machine: `GET /accounts/{id}?revision=N` and `?asOf=<RFC 3339>`.

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn rfc3339(instant: chrono::DateTime<Utc>) -> String {
    instant
        .to_rfc3339_opts(SecondsFormat::Micros, true)
        .replace('+', "%2B")
}

#[tokio::test]
async fn an_account_reads_as_it_was_at_a_revision_or_an_instant() {
    let app = spawn_app().await;
    let id = "30000012345678";
    let before_opening = Utc::now();
    app.open(id, "ALAN TURING", 0).await;
    app.post(
        &format!("/accounts/{id}/deposits"),
        json!({"amount": 100, "reference": "one"}),
    )
    .await;
    let after_first = Utc::now();
    app.post(
        &format!("/accounts/{id}/deposits"),
        json!({"amount": 200, "reference": "two"}),
    )
    .await;
    app.put(
        &format!("/accounts/{id}/status"),
        json!({"status": "blocked", "reason": "check"}),
    )
    .await;

    let (status, now) = app.get(&format!("/accounts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            now["balance"].as_i64(),
            now["status"].as_str(),
            now["revision"].as_i64()
        ),
        (Some(300), Some("blocked"), Some(3))
    );

    let (status, at_one) = app.get(&format!("/accounts/{id}?revision=1")).await;
    assert_eq!(status, StatusCode::OK, "{at_one}");
    assert_eq!(
        (
            at_one["balance"].as_i64(),
            at_one["status"].as_str(),
            at_one["revision"].as_i64()
        ),
        (Some(100), Some("open"), Some(1))
    );
    assert_eq!(
        at_one["recentTransactions"].as_array().map(Vec::len),
        Some(1)
    );
    let (_, at_zero) = app.get(&format!("/accounts/{id}?revision=0")).await;
    assert_eq!(at_zero["balance"], 0);

    let (status, then) = app
        .get(&format!("/accounts/{id}?asOf={}", rfc3339(after_first)))
        .await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(
        (then["balance"].as_i64(), then["status"].as_str()),
        (Some(100), Some("open"))
    );
    let (status, _) = app
        .get(&format!("/accounts/{id}?asOf={}", rfc3339(before_opening)))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the account did not exist yet"
    );
    let (status, _) = app.get(&format!("/accounts/{id}?asOf=yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .get(&format!(
            "/accounts/{id}?revision=1&asOf={}",
            rfc3339(after_first)
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}
