//! Opening, reading, deposits and withdrawals, status changes and overdrafts, through HTTP.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn accounts_open_and_money_moves_within_the_available_balance() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/accounts",
            json!({"sortCode": "12-34-56", "accountNumber": "12345678", "name": "ADA LOVELACE",
                   "overdraftLimit": 500, "initialDeposit": 1_000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], "12345612345678");
    assert_eq!(body["balance"], 1_000);
    assert_eq!(body["available"], 1_500);
    assert_eq!(body["status"], "open");

    let (status, body) = app
        .post(
            "/accounts",
            json!({"sortCode": "123456", "accountNumber": "12345678", "name": "AGAIN"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for bad in [
        json!({"sortCode": "12345", "accountNumber": "12345678", "name": "X"}),
        json!({"sortCode": "123456", "accountNumber": "1234567a", "name": "X"}),
        json!({"sortCode": "123456", "accountNumber": "22345678", "name": "  "}),
        json!({"sortCode": "123456", "accountNumber": "22345678", "name": "X", "overdraftLimit": -1}),
    ] {
        let (status, body) = app.post("/accounts", bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad} → {body}");
        assert!(body["message"].is_string());
    }

    let id = "12345612345678";
    let (status, body) = app
        .post(
            &format!("/accounts/{id}/deposits"),
            json!({"amount": 250, "reference": "cash"}),
        )
        .await;
    assert_eq!(
        (status, body["balance"].as_i64()),
        (StatusCode::OK, Some(1_250)),
        "{body}"
    );
    let (status, body) = app
        .post(
            &format!("/accounts/{id}/withdrawals"),
            json!({"amount": 1_751, "reference": "rent"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .post(
            &format!("/accounts/{id}/withdrawals"),
            json!({"amount": 1_750, "reference": "rent"}),
        )
        .await;
    assert_eq!(
        (status, body["balance"].as_i64()),
        (StatusCode::OK, Some(-500)),
        "{body}"
    );
    let (status, _) = app
        .post(
            &format!("/accounts/{id}/deposits"),
            json!({"amount": 0, "reference": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, body) = app.get(&format!("/accounts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["balance"], -500);
    assert_eq!(body["revision"], 3);
    let kinds: Vec<_> = body["recentTransactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|t| t["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["withdrawal", "deposit", "deposit"], "newest first");

    assert_eq!(
        app.get("/accounts/99999999999999").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/accounts/123").await.0, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .post(
            "/accounts/99999999999999/deposits",
            json!({"amount": 5, "reference": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn status_and_overdraft_changes_follow_the_rules() {
    let app = spawn_app().await;
    let id = "20000011111111";
    app.open(id, "GRACE HOPPER", 100).await;

    let (status, body) = app
        .put(
            &format!("/accounts/{id}/status"),
            json!({"status": "blocked", "reason": "fraud check"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("blocked")),
        "{body}"
    );
    let (status, _) = app
        .post(
            &format!("/accounts/{id}/deposits"),
            json!({"amount": 5, "reference": "x"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a blocked account takes no deposits"
    );
    let (status, _) = app
        .put(
            &format!("/accounts/{id}/overdraft"),
            json!({"overdraftLimit": 50}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = app
        .put(
            &format!("/accounts/{id}/status"),
            json!({"status": "open", "reason": "cleared"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("open"))
    );

    let (status, _) = app
        .put(
            &format!("/accounts/{id}/overdraft"),
            json!({"overdraftLimit": -5}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app
        .put(
            &format!("/accounts/{id}/overdraft"),
            json!({"overdraftLimit": 300}),
        )
        .await;
    assert_eq!(
        (status, body["available"].as_i64()),
        (StatusCode::OK, Some(400)),
        "{body}"
    );

    let (status, _) = app
        .put(
            &format!("/accounts/{id}/status"),
            json!({"status": "closed", "reason": "moving"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a balance is left");
    let (status, _) = app
        .post(
            &format!("/accounts/{id}/withdrawals"),
            json!({"amount": 100, "reference": "all"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .put(
            &format!("/accounts/{id}/status"),
            json!({"status": "closed", "reason": "moving"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("closed")),
        "{body}"
    );
    let (status, _) = app
        .put(
            &format!("/accounts/{id}/status"),
            json!({"status": "open", "reason": "back"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "closed is final");
    let (status, _) = app
        .put(
            &format!("/accounts/{id}/status"),
            json!({"status": "frozen", "reason": "?"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let (status, document) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/accounts",
        "/accounts/{id}",
        "/accounts/{id}/transactions",
        "/accounts/{id}/deposits",
        "/accounts/{id}/withdrawals",
        "/accounts/{id}/status",
        "/accounts/{id}/overdraft",
        "/transfers",
        "/ledger",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    app.stop().await;
}
