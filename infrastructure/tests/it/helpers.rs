//! Shared test helpers: a store started in-process, deadlines, unique stream names, and a small aggregate
//! (`Tally`) with its events.

use std::future::Future;
use std::time::{Duration, Instant};

use events::{domain_events, EventMetadata};
use eventstore_lite::{RunningServer, ServerConfig};
use infrastructure::{Aggregate, EventStore, NewEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long any single step of a test may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// eventstore-lite running in memory, and a store connected to it.
pub struct TestStore {
    /// Held so the server runs as long as the test does.
    #[allow(dead_code)]
    pub server: RunningServer,
    pub store: EventStore,
}

pub async fn start_store() -> TestStore {
    let server = within(
        "the server to start",
        eventstore_lite::start(ServerConfig::in_memory()),
    )
    .await
    .expect("the server starts");
    let store = within(
        "connecting",
        EventStore::connect(&quick_to_connect(&server.connection_string()), DEADLINE),
    )
    .await
    .expect("the store connects");
    TestStore { server, store }
}

/// The official client waits `discoveryInterval` (500 ms by default) before its first connection, even to a
/// single node; a short interval keeps each test's first call fast.
pub fn quick_to_connect(connection_string: &str) -> String {
    let separator = if connection_string.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{connection_string}{separator}discoveryInterval=10")
}

/// Runs `future`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`]. The pause between polls only spaces
/// the checks out; the condition is what the test waits for.
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

/// A fresh id, for stream names no other test uses.
pub fn unique_id() -> String {
    Uuid::new_v4().simple().to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Added {
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleared {}

domain_events! {
    /// The events of a `tally-…` stream.
    pub enum TallyEvent {
        Added,
        Cleared,
    }
}

/// A running total: the test aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub total: u64,
    pub events: u64,
}

impl Aggregate for Tally {
    type Event = TallyEvent;
    type Id = str;

    fn stream_name(id: &str) -> String {
        format!("tally-{id}")
    }

    fn apply(&mut self, event: &TallyEvent) {
        match event {
            TallyEvent::Added(added) => self.total += added.amount,
            TallyEvent::Cleared(_) => self.total = 0,
        }
        self.events += 1;
    }
}

pub fn added(amount: u64) -> TallyEvent {
    TallyEvent::Added(Added { amount })
}

pub fn new_event(event: TallyEvent) -> NewEvent<TallyEvent> {
    NewEvent::new(event, EventMetadata::for_request(Uuid::new_v4()))
}

/// Appends `amounts` as `Added` events to `stream`, whatever its revision.
pub async fn append_added(
    store: &EventStore,
    stream: &str,
    amounts: &[u64],
) -> infrastructure::Appended {
    let events: Vec<_> = amounts
        .iter()
        .map(|amount| new_event(added(*amount)))
        .collect();
    within(
        "appending",
        store.append(
            stream,
            infrastructure::eventstore::ExpectedRevision::Any,
            &events,
        ),
    )
    .await
    .expect("the append succeeds")
}
