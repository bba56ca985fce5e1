//! The read model: `GET /accounts` with filters and paging, `GET /accounts/{id}/transactions`, `GET /ledger`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn accounts_list_with_filters_and_pages_and_the_ledger_adds_up() {
    let app = spawn_app().await;
    let accounts = [
        ("11111100000001", 1_000),
        ("11111100000002", 5_000),
        ("11112200000003", 0),
        ("22222200000004", 20_000),
    ];
    for (id, deposit) in accounts {
        app.open(id, "CUSTOMER", deposit).await;
    }
    app.put(
        "/accounts/11112200000003/status",
        json!({"status": "blocked", "reason": "x"}),
    )
    .await;
    app.post(
        "/accounts/22222200000004/withdrawals",
        json!({"amount": 500, "reference": "atm"}),
    )
    .await;
    wait_until("the read model has every account", || async {
        app.get("/ledger").await.1["totalWithdrawals"] == 500
    })
    .await;

    let (status, all) = app.get("/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["total"], 4);
    let (_, page) = app.get("/accounts?pageSize=3&page=2").await;
    assert_eq!(ids(&page), ["22222200000004"]);
    assert_eq!(
        (page["total"].as_i64(), page["page"].as_i64()),
        (Some(4), Some(2))
    );
    let (_, page) = app.get("/accounts?sortCodePrefix=1111").await;
    assert_eq!(
        ids(&page),
        ["11111100000001", "11111100000002", "11112200000003"]
    );
    let (_, page) = app
        .get("/accounts?sortCodePrefix=111111&minBalance=2000")
        .await;
    assert_eq!(ids(&page), ["11111100000002"]);
    let (_, page) = app.get("/accounts?maxBalance=1000").await;
    assert_eq!(ids(&page), ["11111100000001", "11112200000003"]);
    let (_, page) = app.get("/accounts?status=blocked").await;
    assert_eq!(ids(&page), ["11112200000003"]);
    assert_eq!(page["items"][0]["status"], "blocked");
    assert_eq!(
        app.get("/accounts?pageSize=0").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/accounts?status=sleepy").await.0,
        StatusCode::BAD_REQUEST
    );

    let (status, ledger) = app.get("/ledger").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ledger["accounts"],
        json!({"open": 3, "blocked": 1, "closed": 0, "total": 4})
    );
    assert_eq!(ledger["totalDeposits"], 26_000);
    assert_eq!(ledger["totalBalance"], 25_500);
    app.stop().await;
}

#[tokio::test]
async fn transactions_are_paged_newest_first() {
    let app = spawn_app().await;
    let id = "50000012345678";
    app.open(id, "STATEMENT", 0).await;
    for amount in 1..=5 {
        let (status, _) = app
            .post(
                &format!("/accounts/{id}/deposits"),
                json!({"amount": amount, "reference": format!("d{amount}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    wait_until("every deposit is in the statement", || async {
        app.get(&format!("/accounts/{id}/transactions")).await.1["total"] == 5
    })
    .await;
    let (status, page) = app
        .get(&format!("/accounts/{id}/transactions?page=2&pageSize=2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let amounts: Vec<_> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["amount"].as_i64())
        .collect();
    assert_eq!(amounts, [Some(3), Some(2)]);
    assert_eq!(page["items"][0]["balanceAfter"], 6);
    assert_eq!(page["items"][0]["reference"], "d3");
    assert_eq!(
        app.get("/accounts/99999999999999/transactions").await.0,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_the_read_model_without_counting_twice() {
    let mut app = spawn_app().await;
    app.open("70000012345678", "RESTART", 300).await;
    wait_until("the deposit is projected", || async {
        app.get("/ledger").await.1["totalDeposits"] == 300
    })
    .await;
    app.restart().await;
    app.post(
        "/accounts/70000012345678/deposits",
        json!({"amount": 5, "reference": "after"}),
    )
    .await;
    wait_until("the new deposit is projected", || async {
        app.get("/ledger").await.1["totalDeposits"] == 305
    })
    .await;
    let (_, ledger) = app.get("/ledger").await;
    assert_eq!(
        (
            ledger["totalBalance"].as_i64(),
            ledger["accounts"]["total"].as_i64()
        ),
        (Some(305), Some(1))
    );
    app.stop().await;
}
