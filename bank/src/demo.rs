//! `bank demo`: a scripted scenario through every branch of the inbound pipeline, on a temporary in-memory
//! store (in secure mode unless asked otherwise: each domain's streams private to it), driven only through the
//! services' HTTP APIs. Prints an outcome table and checks that money is conserved; the exit code says whether
//! every expectation held.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::launcher::{Bank, BankOptions, Ports, StoreChoice};

const DEADLINE: Duration = Duration::from_secs(30);
const SANCTIONED: &str = "VLADIMIR PETROV";

struct Case {
    name: &'static str,
    payer: &'static str,
    /// Beneficiary account (14 digits) or an unknown one.
    beneficiary: String,
    amount: i64,
    sort_code_override: Option<&'static str>,
    /// What the operator does if the payment is held.
    operator: Option<&'static str>,
    expected_stage: &'static str,
    expected_return: Option<char>,
}

/// Runs the scenario on a bank of its own (secure or not); `Ok(true)` when every outcome matched and money was
/// conserved.
pub async fn run(secure: bool) -> anyhow::Result<bool> {
    let data_dir =
        std::env::temp_dir().join(format!("bank-demo-{}", uuid::Uuid::new_v4().simple()));
    let options = BankOptions {
        store: StoreChoice::EmbeddedMemory,
        data_dir: data_dir.clone(),
        replicas: 2,
        ports: Ports::ANY,
        seed: None,
        secure,
    };
    let bank = Bank::start(options).await?;
    let result = scenario(&bank).await;
    bank.shutdown().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    let response = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "POST {url} → {status}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: String) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn open_account(
    http: &reqwest::Client,
    bank: &Bank,
    id: &str,
    name: &str,
    deposit: i64,
) -> anyhow::Result<()> {
    post(
        http,
        format!("{}/accounts", bank.urls.accounts),
        json!({ "sortCode": &id[..6], "accountNumber": &id[6..], "name": name, "initialDeposit": deposit }),
    )
    .await?;
    Ok(())
}

async fn balance(http: &reqwest::Client, bank: &Bank, id: &str) -> anyhow::Result<i64> {
    let (_, account) = get(http, format!("{}/accounts/{id}", bank.urls.accounts)).await?;
    account["balance"]
        .as_i64()
        .with_context(|| format!("no balance in {account}"))
}

/// The payment's stage and, if returned, its reason code, from GET /payments/{id}.
fn outcome(payment: &Value) -> (String, Option<char>) {
    let stage = payment["stage"]
        .as_str()
        .or(payment["status"].as_str())
        .unwrap_or("unknown")
        .to_owned();
    let code = payment["returnReason"]["code"]
        .as_str()
        .or(payment["returnReasonCode"].as_str())
        .and_then(|c| c.chars().next())
        .or_else(|| {
            payment["history"].as_array()?.iter().find_map(|entry| {
                let kind = entry["type"].as_str().or(entry["eventType"].as_str())?;
                (kind == "InboundPaymentReturned").then_some(())?;
                let reason = entry["data"]["reason"].as_str()?;
                Some(reason_code(reason))
            })
        });
    (stage, code)
}

fn reason_code(reason: &str) -> char {
    match reason {
        "referToPayer" | "ReferToPayer" => '0',
        "accountTransferred" | "AccountTransferred" => '3',
        "noAccount" | "NoAccount" => '5',
        "invalidAccountDetails" | "InvalidAccountDetails" => '6',
        "accountClosed" | "AccountClosed" => 'B',
        _ => '?',
    }
}

async fn wait_for<T>(
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo's accounts (14 digits): open with a balance, blocked, and closed.
pub const OPEN_ACCOUNT: &str = "40000111111111";
pub const BLOCKED_ACCOUNT: &str = "40000122222222";
pub const CLOSED_ACCOUNT: &str = "40000133333333";

/// The scheme transaction id of the demo's `case`-th payment (the first is the happy path).
pub fn scheme_transaction_id(case: usize) -> String {
    format!("DEMO-{case}")
}

/// Runs the scenario on a running `bank` (whose store holds no demo data yet); `Ok(true)` when every outcome
/// matched and money was conserved.
pub async fn scenario(bank: &Bank) -> anyhow::Result<bool> {
    let http = reqwest::Client::new();
    let (open, blocked, closed) = (OPEN_ACCOUNT, BLOCKED_ACCOUNT, CLOSED_ACCOUNT);
    let opening = 10_000;
    open_account(&http, bank, open, "ADA LOVELACE", opening).await?;
    open_account(&http, bank, blocked, "GRACE HOPPER", 0).await?;
    open_account(&http, bank, closed, "ALAN TURING", 0).await?;
    let status = |s: &str| json!({ "status": s, "reason": "demo" });
    let put = |url: String, body: Value| {
        let http = http.clone();
        async move {
            http.put(&url)
                .json(&body)
                .send()
                .await?
                .error_for_status()
                .map(|_| ())
        }
    };
    put(
        format!("{}/accounts/{blocked}/status", bank.urls.accounts),
        status("blocked"),
    )
    .await?;
    put(
        format!("{}/accounts/{closed}/status", bank.urls.accounts),
        status("closed"),
    )
    .await?;
    post(
        &http,
        format!("{}/sanctioned-names", bank.urls.sanctions),
        json!({ "name": SANCTIONED }),
    )
    .await?;

    let cases = [
        Case {
            name: "happy path",
            payer: "ACME PAYROLL LTD",
            beneficiary: open.into(),
            amount: 2_500,
            sort_code_override: None,
            operator: None,
            expected_stage: "credited",
            expected_return: None,
        },
        Case {
            name: "invalid sort code",
            payer: "J SMITH",
            beneficiary: open.into(),
            amount: 100,
            sort_code_override: Some("1234"),
            operator: None,
            expected_stage: "returned",
            expected_return: Some('6'),
        },
        Case {
            name: "sanctioned, released",
            payer: SANCTIONED,
            beneficiary: open.into(),
            amount: 700,
            sort_code_override: None,
            operator: Some("release"),
            expected_stage: "credited",
            expected_return: None,
        },
        Case {
            name: "sanctioned, rejected",
            payer: SANCTIONED,
            beneficiary: open.into(),
            amount: 900,
            sort_code_override: None,
            operator: Some("reject"),
            expected_stage: "returned",
            expected_return: Some('0'),
        },
        Case {
            name: "unknown account",
            payer: "J SMITH",
            beneficiary: "40000199999999".into(),
            amount: 300,
            sort_code_override: None,
            operator: None,
            expected_stage: "returned",
            expected_return: Some('5'),
        },
        Case {
            name: "closed account",
            payer: "J SMITH",
            beneficiary: closed.into(),
            amount: 400,
            sort_code_override: None,
            operator: None,
            expected_stage: "returned",
            expected_return: Some('B'),
        },
        Case {
            name: "blocked account",
            payer: "J SMITH",
            beneficiary: blocked.into(),
            amount: 500,
            sort_code_override: None,
            operator: None,
            expected_stage: "returned",
            expected_return: Some('3'),
        },
    ];

    let mut ids = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let payment = json!({
            "schemeTransactionId": scheme_transaction_id(i),
            "payer": { "name": case.payer, "sortCode": "200000", "accountNumber": "55779911" },
            "beneficiary": {
                "name": "BENEFICIARY",
                "sortCode": case.sort_code_override.unwrap_or(&case.beneficiary[..6]),
                "accountNumber": &case.beneficiary[6..],
            },
            "amount": case.amount,
            "reference": format!("DEMO {i}"),
        });
        let payment_id =
            events::ids::payment_id_for_scheme_transaction(&scheme_transaction_id(i)).to_string();
        post(
            &http,
            format!("{}/scheme/inbound", bank.urls.payments),
            payment.clone(),
        )
        .await?;
        if i == 0 {
            // The same scheme message twice is one payment.
            post(
                &http,
                format!("{}/scheme/inbound", bank.urls.payments),
                payment,
            )
            .await?;
        }
        ids.push(payment_id);
    }

    for (case, id) in cases.iter().zip(&ids) {
        let Some(action) = case.operator else {
            continue;
        };
        wait_for(&format!("{} to be held", case.name), async || {
            let (_, held) = get(&http, format!("{}/held-payments", bank.urls.sanctions)).await?;
            Ok(held.to_string().contains(id.as_str()).then_some(()))
        })
        .await?;
        post(
            &http,
            format!("{}/held-payments/{id}/{action}", bank.urls.sanctions),
            json!({ "by": "demo operator", "reason": format!("demo: {action}") }),
        )
        .await?;
    }

    let mut all_ok = true;
    let mut credited = 0;
    println!(
        "{:<22} {:<38} {:<10} {:<7} {:<10}",
        "case", "payment", "outcome", "return", "expected"
    );
    for (case, id) in cases.iter().zip(&ids) {
        let (stage, code) = wait_for(&format!("{} to finish", case.name), async || {
            let (status, payment) =
                get(&http, format!("{}/payments/{id}", bank.urls.payments)).await?;
            if !status.is_success() {
                return Ok(None);
            }
            let (stage, code) = outcome(&payment);
            Ok((stage == "credited" || stage == "returned").then_some((stage, code)))
        })
        .await
        .unwrap_or_else(|_| ("timed out".to_owned(), None));
        let ok = stage == case.expected_stage && code == case.expected_return;
        all_ok &= ok;
        if stage == "credited" {
            credited += case.amount;
        }
        println!(
            "{:<22} {:<38} {:<10} {:<7} {:<10} {}",
            case.name,
            id,
            stage,
            code.map(String::from).unwrap_or_default(),
            format!(
                "{}{}",
                case.expected_stage,
                case.expected_return
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default()
            ),
            if ok { "ok" } else { "MISMATCH" }
        );
    }

    let total = balance(&http, bank, open).await?
        + balance(&http, bank, blocked).await?
        + balance(&http, bank, closed).await?;
    let conserved = total == opening + credited;
    println!(
        "money: opening {opening} + credited {credited} = {} ; balances now {total} → {}",
        opening + credited,
        if conserved {
            "conserved"
        } else {
            "NOT CONSERVED"
        }
    );
    Ok(all_ok && conserved)
}
