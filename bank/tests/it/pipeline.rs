//! The inbound pipeline end to end: every branch, money conservation, and competing consumers surviving the loss
//! of an instance mid-run.

use std::time::Duration;

use bank::launcher::{Bank, BankOptions, Ports, StoreChoice};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);

fn options(store: StoreChoice, replicas: usize) -> BankOptions {
    BankOptions {
        store,
        data_dir: std::env::temp_dir().join(format!("bank-it-{}", uuid::Uuid::new_v4().simple())),
        replicas,
        ports: Ports::ANY,
        seed: None,
        secure: false,
    }
}

/// The scripted demo covers every branch (happy, invalid → returned, sanctioned → held → released → credited,
/// held → rejected → returned, unknown / closed / blocked accounts → returned with their codes, a duplicate
/// scheme message) and checks that money is conserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_branch_ends_as_a_bank_would_and_money_is_conserved() -> anyhow::Result<()> {
    assert!(
        bank::demo::run(false).await?,
        "the demo's outcomes and money conservation hold"
    );
    Ok(())
}

async fn json_of(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{status}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Two instances of every consumer group; one whole set of services stops mid-run; every payment still completes
/// exactly once and the balances are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_finish_every_payment_exactly_once_when_an_instance_stops(
) -> anyhow::Result<()> {
    let first_options = options(StoreChoice::EmbeddedMemory, 1);
    let first_dir = first_options.data_dir.clone();
    let first = Bank::start(first_options).await?;
    let second_options = options(StoreChoice::External(first.connection_string.clone()), 1);
    let second_dir = second_options.data_dir.clone();
    let second = Bank::start(second_options).await?;
    let http = reqwest::Client::new();
    let accounts = ["40000211111111", "40000222222222"];
    for (i, id) in accounts.iter().enumerate() {
        json_of(
            http.post(format!("{}/accounts", first.urls.accounts))
                .json(&json!({ "sortCode": &id[..6], "accountNumber": &id[6..], "name": format!("HOLDER {i}") }))
                .send()
                .await?,
        )
        .await?;
    }
    let total_payments = 120;
    let mut expected = [0i64; 2];
    let mut second = Some(second);
    for n in 0..total_payments {
        let target = n % 2;
        let amount = 100 + n as i64;
        expected[target] += amount;
        let id = accounts[target];
        let payment = json!({
            "schemeTransactionId": format!("CC-{n}"),
            "payer": { "name": "ACME PAYROLL LTD", "sortCode": "200000", "accountNumber": "55779911" },
            "beneficiary": { "name": "HOLDER", "sortCode": &id[..6], "accountNumber": &id[6..] },
            "amount": amount,
            "reference": format!("CC {n}"),
        });
        // While both run, half the payments enter through each instance's gateway.
        let gateway = match &second {
            Some(other) if n % 2 == 1 => other.urls.payments.clone(),
            _ => first.urls.payments.clone(),
        };
        json_of(
            http.post(format!("{gateway}/scheme/inbound"))
                .json(&payment)
                .send()
                .await?,
        )
        .await?;
        if n == total_payments / 2 {
            // One instance of every consumer group goes away mid-run, with whatever it had in flight.
            if let Some(stopping) = second.take() {
                stopping.shutdown().await?;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut balances = [0i64; 2];
        for (i, id) in accounts.iter().enumerate() {
            let account = json_of(
                http.get(format!("{}/accounts/{id}", first.urls.accounts))
                    .send()
                    .await?,
            )
            .await?;
            balances[i] = account["balance"].as_i64().unwrap_or(-1);
        }
        if balances == expected {
            break;
        }
        assert!(
            balances.iter().zip(expected).all(|(b, e)| *b <= e),
            "a payment was credited twice: balances {balances:?}, expected {expected:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "payments did not all complete: {balances:?} vs {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.shutdown().await?;
    for dir in [first_dir, second_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// What a new user does right after `bank up` prints its URLs: the seeded accounts are listed at once, so a random
/// mix of ordinary payments goes to real accounts (before, the accounts read model could still be empty and every
/// "ordinary" payment became an unknown-account one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_bank_lists_its_seeded_accounts_at_once() -> anyhow::Result<()> {
    let plan = data_seeder::SeedPlan::default();
    let open = plan.accounts - plan.blocked - plan.closed;
    let mut options = options(StoreChoice::EmbeddedMemory, 1);
    options.seed = Some(plan);
    let dir = options.data_dir.clone();
    let bank = Bank::start(options).await?;
    let http = reqwest::Client::new();
    let listed = json_of(
        http.get(format!(
            "{}/accounts?status=open&pageSize=200",
            bank.urls.accounts
        ))
        .send()
        .await?,
    )
    .await?;
    let submitted = json_of(
        http.post(format!("{}/inbound-payments/random", bank.urls.simulator))
            .json(&json!({ "count": 20, "sanctionedRatio": 0, "invalidRatio": 0, "unknownAccountRatio": 0, "closedAccountRatio": 0 }))
            .send()
            .await?,
    )
    .await?;
    bank.shutdown().await?;
    let _ = std::fs::remove_dir_all(dir);
    let items = listed["items"].as_array().map_or(0, Vec::len);
    assert_eq!(
        items as u32, open,
        "every open seeded account is listed: {listed}"
    );
    assert_eq!(submitted["cases"]["ordinary"], 20, "{submitted}");
    Ok(())
}
