//! Shared test helpers: `spawn_app` (a store in memory plus the service on port 0), typed HTTP calls, deadlines.

use std::future::Future;
use std::time::{Duration, Instant};

use accounts_api::Config;
use eventstore_lite::{RunningServer, ServerConfig};
use infrastructure::{CancellationToken, EventStore};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// How long any single step may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The service running against its own in-memory store.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// A client of the same store, for writing other services' events as a test fixture.
    pub store: EventStore,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    config: Config,
    _data: tempfile::TempDir,
    _server: RunningServer,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    let server = within(
        "the store to start",
        eventstore_lite::start(ServerConfig::in_memory()),
    )
    .await
    .expect("the store starts");
    // The client waits `discoveryInterval` (500 ms by default) before connecting; keep tests quick.
    let connection = server.connection_string();
    let separator = if connection.contains('?') { '&' } else { '?' };
    let connection = format!("{connection}{separator}discoveryInterval=10");
    let data = tempfile::tempdir().expect("a temp dir");
    let config = Config::new(connection.clone(), data.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("has an address"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(accounts_api::run(
        config.clone(),
        listener,
        shutdown.clone(),
    ));
    let store = within("connecting", EventStore::connect(&connection, DEADLINE))
        .await
        .expect("connects");
    let app = TestApp {
        base,
        client: reqwest::Client::new(),
        store,
        shutdown,
        task: Some(task),
        config,
        _data: data,
        _server: server,
    };
    app.wait_until_live().await;
    app
}

impl TestApp {
    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = within("a response", request.send())
            .await
            .expect("the request is answered");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.put(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// Opens an account and returns its id, failing the test unless it is created.
    pub async fn open(&self, id: &str, name: &str, initial_deposit: i64) -> Value {
        let (status, body) = self
            .post(
                "/accounts",
                json!({
                    "sortCode": &id[..6],
                    "accountNumber": &id[6..],
                    "name": name,
                    "initialDeposit": initial_deposit,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn balance(&self, id: &str) -> i64 {
        let (status, body) = self.get(&format!("/accounts/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["balance"].as_i64().expect("a balance")
    }

    /// The `/metrics` counter `name` of the `account-posting` group.
    pub async fn posting_counter(&self, name: &str) -> u64 {
        let response = within(
            "metrics",
            self.client.get(format!("{}/metrics", self.base)).send(),
        )
        .await
        .expect("metrics answer");
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with(name) && line.contains("account-posting"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    async fn wait_until_live(&self) {
        wait_until("the service answers", || async {
            self.client
                .get(format!("{}/health/live", self.base))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        })
        .await;
    }

    /// Stops the service and starts it again on the same store and data directory (a new port).
    pub async fn restart(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            within("the service to stop", task)
                .await
                .expect("the task joins")
                .expect("the service stops cleanly");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        self.base = format!("http://{}", listener.local_addr().expect("has an address"));
        self.shutdown = CancellationToken::new();
        self.task = Some(tokio::spawn(accounts_api::run(
            self.config.clone(),
            listener,
            self.shutdown.clone(),
        )));
        self.wait_until_live().await;
    }

    /// Stops the service and waits for it to end cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            within("the service to stop", task)
                .await
                .expect("the task joins")
                .expect("the service stops cleanly");
        }
    }
}

/// Runs `future`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
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
