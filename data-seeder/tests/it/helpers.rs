//! Shared test helpers: eventstore-lite in memory and a store connected to it.

use std::future::Future;
use std::time::Duration;

use eventstore_lite::{RunningServer, ServerConfig};
use infrastructure::EventStore;

/// How long any single step of a test may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct TestStore {
    /// Held so the server runs as long as the test does.
    #[allow(dead_code)]
    pub server: RunningServer,
    pub store: EventStore,
    pub connection_string: String,
}

pub async fn start_store() -> TestStore {
    let server = within(
        "the server to start",
        eventstore_lite::start(ServerConfig::in_memory()),
    )
    .await
    .expect("the server starts");
    // The client waits `discoveryInterval` before its first connection; a short one keeps tests fast.
    let connection_string = format!("{}&discoveryInterval=10", server.connection_string());
    let store = within(
        "connecting",
        EventStore::connect(&connection_string, DEADLINE),
    )
    .await
    .expect("the store connects");
    TestStore {
        server,
        store,
        connection_string,
    }
}

/// Runs `future`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}
