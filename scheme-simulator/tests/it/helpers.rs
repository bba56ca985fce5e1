//! Shared helpers: eventstore-lite in memory, the fake bank, the simulator on port 0, deadlines.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use eventstore_lite::{RunningServer, ServerConfig};
use infrastructure::{CancellationToken, EventStore, EventStoreArgs};
use scheme_simulator::{run, Config, SchemePayment};
use serde_json::{json, Value};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub const OPEN_ACCOUNTS: &[(&str, &str, &str)] = &[
    ("309634", "11111111", "ADA LOVELACE"),
    ("309634", "22222222", "ALAN TURING"),
    ("309635", "33333333", "GRACE HOPPER"),
];
pub const CLOSED_ACCOUNTS: &[(&str, &str, &str)] = &[("309640", "44444444", "OLD ACCOUNT")];
pub const SANCTIONED: &[&str] = &["VIKTOR ORLOVSKY", "MARINA VOLKOVA"];

/// What the fake bank received on `POST /scheme/inbound`.
#[derive(Clone, Default)]
pub struct FakeBank {
    pub received: Arc<Mutex<Vec<SchemePayment>>>,
    /// How many of the next submissions it answers busy (503, `Retry-After: 1`) without taking them.
    pub busy_answers: Arc<AtomicUsize>,
}

impl FakeBank {
    pub fn received(&self) -> Vec<SchemePayment> {
        self.received.lock().expect("not poisoned").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("not poisoned").len()
    }
}

async fn inbound(
    State(bank): State<FakeBank>,
    Json(payments): Json<Vec<SchemePayment>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let busy = bank
        .busy_answers
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if busy {
        let body = json!({"error": "busy", "message": "the bank is busy"});
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(body),
        )
            .into_response();
    }
    let ids: Vec<String> = payments
        .iter()
        .map(|p| {
            events::ids::payment_id_for_scheme_transaction(&p.scheme_transaction_id).to_string()
        })
        .collect();
    bank.received.lock().expect("not poisoned").extend(payments);
    (StatusCode::ACCEPTED, Json(json!({ "paymentIds": ids }))).into_response()
}

/// Like accounts-api: pages count from 1 and hold at most 500 accounts.
async fn accounts(
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if number("page", 1) == 0 || !(1..=500).contains(&number("pageSize", 50)) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let item = |(sort_code, number, name): &(&str, &str, &str), status: &str| {
        json!({"id": format!("{sort_code}{number}"), "sortCode": sort_code, "accountNumber": number,
               "name": name, "status": status, "balance": 1000})
    };
    let items: Vec<Value> = OPEN_ACCOUNTS
        .iter()
        .map(|a| item(a, "open"))
        .chain(CLOSED_ACCOUNTS.iter().map(|a| item(a, "closed")))
        .collect();
    let items: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            query
                .get("status")
                .is_none_or(|status| item["status"] == status.as_str())
        })
        .collect();
    Ok(Json(json!({ "items": items, "total": items.len() })))
}

async fn sanctioned_names() -> Json<Value> {
    Json(json!(SANCTIONED
        .iter()
        .map(|name| json!({"name": name}))
        .collect::<Vec<_>>()))
}

/// The fake bank on a random port; returns its base URL.
async fn start_fake_bank(bank: FakeBank) -> String {
    let app = Router::new()
        .route("/scheme/inbound", post(inbound))
        .route("/accounts", get(accounts))
        .route("/sanctioned-names", get(sanctioned_names))
        .with_state(bank);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("has an address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

pub struct TestApp {
    #[allow(dead_code)]
    pub server: RunningServer,
    pub store: EventStore,
    pub base: String,
    pub http: reqwest::Client,
    pub bank: FakeBank,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = within("a POST", self.http.post(self.url(path)).json(&body).send())
            .await
            .expect("the simulator answers");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = within("a GET", self.http.get(self.url(path)).send())
            .await
            .expect("the simulator answers");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }
}

/// The simulator against a fresh store and a fresh fake bank; `bank_url` overrides the bank's URL.
pub async fn spawn_app_with(bank_url: Option<String>) -> TestApp {
    let server = within(
        "the server to start",
        eventstore_lite::start(ServerConfig::in_memory()),
    )
    .await
    .expect("the server starts");
    let connection_string = format!("{}&discoveryInterval=10", server.connection_string());
    let store = within(
        "connecting",
        EventStore::connect(&connection_string, DEADLINE),
    )
    .await
    .expect("connects");
    let bank = FakeBank::default();
    let fake_url = start_fake_bank(bank.clone()).await;
    let mut config = Config::new(EventStoreArgs::new(connection_string));
    config.bank_url = bank_url.unwrap_or_else(|| fake_url.clone());
    config.accounts_url = fake_url.clone();
    config.sanctions_url = fake_url;
    config.batch_size = 100;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(config, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    let live = format!("{base}/health/live");
    wait_until("the simulator answers", || {
        let http = http.clone();
        let live = live.clone();
        async move {
            http.get(&live)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    TestApp {
        server,
        store,
        base,
        http,
        bank,
        shutdown,
        task,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(None).await
}

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Polls `condition` until it holds, failing after [`DEADLINE`]; the pause only spaces the checks out.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {DEADLINE:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn payment(id: &str, amount: i64) -> Value {
    json!({
        "schemeTransactionId": id,
        "payer": {"name": "ACME PAYROLL LTD", "sortCode": "200000", "accountNumber": "55779911"},
        "beneficiary": {"name": "ADA LOVELACE", "sortCode": "309634", "accountNumber": "11111111"},
        "amount": amount,
        "reference": "SALARY",
    })
}
