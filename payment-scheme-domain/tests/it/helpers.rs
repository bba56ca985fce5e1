//! Shared test helpers: `spawn_app` (store + service), typed HTTP calls, the other domains' events appended as
//! they would append them, and waiting for conditions with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use events::accounts::{AccountEvent, FundsCredited, PaymentPostingRefused};
use events::bacs::ReturnReason;
use events::sanctions::{
    HeldPaymentRejected, HeldPaymentReleased, NameMatch, PaymentScreened, ScreeningEvent,
    ScreeningOutcome,
};
use events::{streams, AccountId, EventMetadata, Money, PaymentId};
use eventstore_lite::{RunningServer, ServerConfig};
use infrastructure::eventstore::ExpectedRevision;
use infrastructure::{CancellationToken, EventStore, NewEvent};
use payment_scheme_domain::Config;
use serde_json::{json, Value};
use uuid::Uuid;

pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct App {
    #[allow(dead_code)]
    pub server: RunningServer,
    pub store: EventStore,
    pub base_url: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
}

pub fn quick_to_connect(connection_string: &str) -> String {
    let separator = if connection_string.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{connection_string}{separator}discoveryInterval=10")
}

pub async fn spawn_app() -> App {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> App {
    let server = eventstore_lite::start(ServerConfig::in_memory())
        .await
        .expect("the store starts");
    let connection = quick_to_connect(&server.connection_string());
    let store = EventStore::connect(&connection, DEADLINE)
        .await
        .expect("the test connects");
    let data = tempfile::tempdir().expect("a temp dir");
    let mut config = Config::new(connection, data.path());
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base_url = format!("http://{}", listener.local_addr().expect("bound"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(payment_scheme_domain::run(
        config,
        listener,
        shutdown.clone(),
    ));
    let app = App {
        server,
        store,
        base_url,
        client: reqwest::Client::new(),
        shutdown,
        task: Some(task),
        _data: data,
    };
    let url = format!("{}/health/live", app.base_url);
    let client = app.client.clone();
    wait_until("the service answers", || {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    app
}

impl App {
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .json(body)
            .send()
            .await
            .expect("the request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("the request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends one scheme payment and returns its payment id.
    pub async fn receive(&self, payment: &Value) -> PaymentId {
        let (status, body) = self.post("/scheme/inbound", payment).await;
        assert_eq!(status, 202, "{body}");
        body["paymentIds"][0]
            .as_str()
            .expect("a payment id")
            .parse()
            .expect("a uuid")
    }

    pub async fn payment(&self, id: PaymentId) -> Value {
        let (status, body) = self.get(&format!("/payments/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the payment is at `stage`, and returns it.
    pub async fn wait_for_stage(&self, id: PaymentId, stage: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, body) = self.get(&format!("/payments/{id}")).await;
            if status == 200 && body["stage"] == stage {
                return body;
            }
            if Instant::now() >= deadline {
                panic!("payment {id} never reached {stage}; it is {body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Appends what sanctions-api would append to `screening-{id}`.
    pub async fn screening(&self, event: ScreeningEvent) {
        let id = match &event {
            ScreeningEvent::PaymentScreened(e) => e.payment_id,
            ScreeningEvent::HeldPaymentReleased(e) => e.payment_id,
            ScreeningEvent::HeldPaymentRejected(e) => e.payment_id,
        };
        self.append(&streams::screening(&id), event).await;
    }

    pub async fn screened_clear(&self, id: PaymentId) {
        self.screening(
            PaymentScreened {
                payment_id: id,
                screened_name: "J SMITH".into(),
                result: ScreeningOutcome::Clear,
            }
            .into(),
        )
        .await;
    }

    pub async fn screened_hit(&self, id: PaymentId) {
        self.screening(
            PaymentScreened {
                payment_id: id,
                screened_name: "VLADIMIR PETROV".into(),
                result: ScreeningOutcome::Hit {
                    matches: vec![NameMatch {
                        sanctioned_name: "Vladimir Petrov".into(),
                        score: 1.0,
                    }],
                },
            }
            .into(),
        )
        .await;
    }

    pub async fn released(&self, id: PaymentId) {
        self.screening(
            HeldPaymentReleased {
                payment_id: id,
                by: "ops.alice".into(),
                reason: "false positive".into(),
            }
            .into(),
        )
        .await;
    }

    pub async fn rejected(&self, id: PaymentId) {
        self.screening(
            HeldPaymentRejected {
                payment_id: id,
                by: "ops.bob".into(),
                reason: "true match".into(),
            }
            .into(),
        )
        .await;
    }

    /// Appends what accounts-api would append to the beneficiary's account stream.
    pub async fn credited(&self, account: &str, id: PaymentId, amount: i64) {
        let event = FundsCredited {
            payment_id: id,
            amount: Money::from_pence(amount),
            payer_name: "J SMITH".into(),
            reference: "RENT".into(),
            transfer_id: None,
        };
        self.append_account(account, event.into()).await;
    }

    pub async fn refused(&self, account: &str, id: PaymentId, amount: i64, reason: ReturnReason) {
        let event = PaymentPostingRefused {
            payment_id: id,
            amount: Money::from_pence(amount),
            reason,
        };
        self.append_account(account, event.into()).await;
    }

    async fn append_account(&self, account: &str, event: AccountEvent) {
        let id: AccountId = account.parse().expect("14 digits");
        self.append(&streams::account(&id), event).await;
    }

    async fn append<E: events::DomainEvent>(&self, stream: &str, event: E) {
        let metadata = EventMetadata::for_request(Uuid::new_v4());
        self.store
            .append(
                stream,
                ExpectedRevision::Any,
                &[NewEvent::new(event, metadata)],
            )
            .await
            .expect("the append succeeds");
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the service stops in time")
                .expect("the service task does not panic");
            result.expect("the service ends cleanly");
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A scheme payment to the beneficiary `sort_code` + `account_number`.
pub fn scheme_payment(
    transaction: &str,
    sort_code: &str,
    account_number: &str,
    amount: i64,
) -> Value {
    json!({
        "schemeTransactionId": transaction,
        "payer": {"name": "J SMITH", "sortCode": "200000", "accountNumber": "55779911"},
        "beneficiary": {"name": "ADA LOVELACE", "sortCode": sort_code, "accountNumber": account_number},
        "amount": amount,
        "reference": "RENT"
    })
}

/// A transaction id no other test uses.
pub fn unique_transaction() -> String {
    format!("T-{}", Uuid::new_v4().simple())
}

/// The event types of a payment's history, in order.
pub fn history_types(payment: &Value) -> Vec<String> {
    payment["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|entry| entry["eventType"].as_str().unwrap_or_default().to_owned())
        .collect()
}

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
