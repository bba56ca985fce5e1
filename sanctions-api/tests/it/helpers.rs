//! Shared test helpers: `spawn_app` (store + service), HTTP calls, validated payments appended as
//! payment-scheme-domain would append them, and waiting with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use events::payments::{InboundPaymentEvent, InboundPaymentValidated};
use events::sanctions::ScreeningEvent;
use events::{streams, EventMetadata, Money, PaymentId};
use eventstore_lite::{RunningServer, ServerConfig};
use infrastructure::eventstore::ExpectedRevision;
use infrastructure::{CancellationToken, EventStore, NewEvent, StoreError, StoredEvent};
use sanctions_api::Config;
use serde_json::Value;
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

fn quick_to_connect(connection_string: &str) -> String {
    let separator = if connection_string.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{connection_string}{separator}discoveryInterval=10")
}

pub async fn spawn_app() -> App {
    let server = eventstore_lite::start(ServerConfig::in_memory())
        .await
        .expect("the store starts");
    let connection = quick_to_connect(&server.connection_string());
    let store = EventStore::connect(&connection, DEADLINE)
        .await
        .expect("the test connects");
    let data = tempfile::tempdir().expect("a temp dir");
    let mut config = Config::new(connection, data.path());
    config.snapshot_every = 3;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base_url = format!("http://{}", listener.local_addr().expect("bound"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(sanctions_api::run(config, listener, shutdown.clone()));
    let app = App {
        server,
        store,
        base_url,
        client: reqwest::Client::new(),
        shutdown,
        task: Some(task),
        _data: data,
    };
    wait_until("the service answers", || async {
        app.client
            .get(format!("{}/health/live", app.base_url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    app
}

impl App {
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("the request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.base_url))
                .json(body),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base_url)))
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.client.delete(format!("{}{path}", self.base_url)))
            .await
    }

    /// Appends `InboundPaymentValidated` for a new payment from `payer_name`, as payment-scheme-domain does.
    pub async fn validated_payment(&self, payer_name: &str) -> PaymentId {
        let payment_id = PaymentId::new();
        let event = InboundPaymentValidated {
            payment_id,
            beneficiary_sort_code: "123456".parse().expect("sort code"),
            beneficiary_account_number: "12345678".parse().expect("account number"),
            beneficiary_name: "ADA LOVELACE".into(),
            payer_name: payer_name.into(),
            amount: Money::from_pence(500),
            reference: "RENT".into(),
        };
        let event = NewEvent::new(
            InboundPaymentEvent::from(event),
            EventMetadata::for_request(Uuid::new_v4()),
        );
        self.store
            .append(
                &streams::inbound_payment(&payment_id),
                ExpectedRevision::Any,
                &[event],
            )
            .await
            .expect("the append succeeds");
        payment_id
    }

    /// The events of `screening-{id}` (empty while it does not exist).
    pub async fn screening(&self, id: PaymentId) -> Vec<StoredEvent<ScreeningEvent>> {
        match self.store.read_stream(&streams::screening(&id)).await {
            Ok(events) => events,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(error) => panic!("reading the screening: {error}"),
        }
    }

    /// Waits until the payment has been screened, and returns its screening stream.
    pub async fn wait_for_screening(&self, id: PaymentId) -> Vec<StoredEvent<ScreeningEvent>> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let events = self.screening(id).await;
            if !events.is_empty() {
                return events;
            }
            if Instant::now() >= deadline {
                panic!("payment {id} was never screened");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the service stops in time")
                .expect("the service task does not panic")
                .expect("the service ends cleanly");
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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
