//! Shared test helpers: start a server with a client, wait for conditions with a deadline, collect reads and
//! subscription messages, build events and unique stream names, and speak raw HTTP/1.1.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventstore::{
    Client, EventData, Position, ReadAllOptions, ReadStreamOptions, RecordedEvent, ResolvedEvent,
    StreamPosition, SubscribeToAllOptions, Subscription, SubscriptionEvent, SubscriptionFilter,
};
use eventstore_lite::{RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// How long any single step of a test may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A server started in-process on a random port, and an official client connected to it.
pub struct TestApp {
    pub server: RunningServer,
    pub client: Client,
}

impl TestApp {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// An in-memory, insecure server (system projections running) and a client.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(ServerConfig::in_memory()).await
}

/// An in-memory server whose `$all` holds only what the test writes: no system projections adding link events.
pub async fn spawn_app_without_projections() -> TestApp {
    let mut config = ServerConfig::in_memory();
    config.start_standard_projections = false;
    spawn_app_with(config).await
}

/// An in-memory server whose live subscriptions and persistent groups read at most every 50 ms
/// (`--live-read-interval-ms`), so that quick appends land within one interval and are read together.
pub async fn spawn_paced_app() -> TestApp {
    let mut config = ServerConfig::in_memory();
    config.live_read_interval = Duration::from_millis(50);
    spawn_app_with(config).await
}

/// Appends `count` events to `stream` one append (one commit) at a time, numbered from 0.
pub async fn append_one_by_one(client: &Client, stream: &str, count: u64) {
    for n in 0..count {
        client
            .append_to_stream(stream, &Default::default(), json_event("Ticked", n))
            .await
            .unwrap_or_else(|error| panic!("append {n} to {stream}: {error:?}"));
    }
}

/// Starts a server with `config` and connects a client once it is listening: the client's first call must not
/// meet a refused connection, which would kill that client for good.
pub async fn spawn_app_with(config: ServerConfig) -> TestApp {
    let server = within("the server to start", eventstore_lite::start(config))
        .await
        .expect("the server starts");
    let client = client_for(&quick_to_connect(&server.connection_string()));
    TestApp { server, client }
}

/// The official client waits `discoveryInterval` (500 ms by default) before its first connection attempt, even to
/// a single node; a short interval keeps each test's first call fast.
pub fn quick_to_connect(connection_string: &str) -> String {
    let separator = if connection_string.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{connection_string}{separator}discoveryInterval=10")
}

pub fn client_for(connection_string: &str) -> Client {
    let settings = connection_string
        .parse()
        .unwrap_or_else(|error| panic!("connection string {connection_string:?} parses: {error}"));
    Client::new(settings).expect("the client is created")
}

/// Runs `future`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Polls `condition` until it holds, failing the test once `timeout` has passed. The short pause between polls
/// only spaces the checks out; the condition itself is what the test waits for.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A unique stream name in the category `category` (the part before the first `-`).
pub fn unique_stream(category: &str) -> String {
    format!("{category}-{}", Uuid::new_v4().simple())
}

/// A JSON event `{"n": n}` of type `event_type` with a fresh id.
pub fn json_event(event_type: &str, n: u64) -> EventData {
    // An explicit id, so that a clone re-sent as a retry carries the same id (the client draws a fresh one per
    // send otherwise).
    EventData::json(event_type, &serde_json::json!({ "n": n }))
        .expect("a JSON payload serialises")
        .id(uuid::Uuid::new_v4())
}

/// `count` JSON events of type `event_type` numbered from `first`.
pub fn json_events(event_type: &str, first: u64, count: u64) -> Vec<EventData> {
    (first..first + count)
        .map(|n| json_event(event_type, n))
        .collect()
}

/// The `n` of a `{"n": n}` payload.
pub fn payload_number(event: &RecordedEvent) -> u64 {
    let value: serde_json::Value = event.as_json().expect("the payload is JSON");
    value["n"].as_u64().expect("the payload has a numeric n")
}

/// What a user compares about a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub stream: String,
    pub revision: u64,
    pub id: Uuid,
    pub event_type: String,
    pub position: Position,
}

pub fn summary(event: &RecordedEvent) -> Summary {
    Summary {
        stream: event.stream_id.clone(),
        revision: event.revision,
        id: event.id,
        event_type: event.event_type.clone(),
        position: event.position,
    }
}

/// The event a read returned: the link when it is a link, else the event.
pub fn original(event: &ResolvedEvent) -> &RecordedEvent {
    event.get_original_event()
}

/// Reads a stream to its end with `options`; the error of a missing or deleted stream comes back as `Err`.
pub async fn read_stream_with(
    client: &Client,
    stream: &str,
    options: &ReadStreamOptions,
) -> eventstore::Result<Vec<ResolvedEvent>> {
    within(&format!("reading stream {stream}"), async {
        let mut read = client.read_stream(stream, options).await?;
        let mut events = Vec::new();
        while let Some(event) = read.next().await? {
            events.push(event);
        }
        Ok(events)
    })
    .await
}

/// Reads a stream forwards from its start.
pub async fn read_stream(client: &Client, stream: &str) -> eventstore::Result<Vec<ResolvedEvent>> {
    read_stream_with(client, stream, &ReadStreamOptions::default()).await
}

/// The revisions a forwards read of `stream` returns.
pub async fn stream_revisions(client: &Client, stream: &str) -> eventstore::Result<Vec<u64>> {
    Ok(read_stream(client, stream)
        .await?
        .iter()
        .map(|e| original(e).revision)
        .collect())
}

/// Reads `$all` to its end with `options`.
pub async fn read_all_with(
    client: &Client,
    options: &ReadAllOptions,
) -> eventstore::Result<Vec<ResolvedEvent>> {
    within("reading $all", async {
        let mut read = client.read_all(options).await?;
        let mut events = Vec::new();
        while let Some(event) = read.next().await? {
            events.push(event);
        }
        Ok(events)
    })
    .await
}

/// Every event of `$all`, forwards from the start.
pub async fn read_all_forwards(client: &Client) -> Vec<Summary> {
    read_all_with(client, &ReadAllOptions::default())
        .await
        .expect("$all reads")
        .iter()
        .map(|e| summary(original(e)))
        .collect()
}

/// The events of `$all` (forwards) that belong to one of `streams`.
pub async fn all_events_of(client: &Client, streams: &[&str]) -> Vec<Summary> {
    read_all_forwards(client)
        .await
        .into_iter()
        .filter(|e| streams.contains(&e.stream.as_str()))
        .collect()
}

/// Fails unless `positions` strictly increase and every position has commit == prepare.
pub fn assert_positions_strictly_increase(events: &[Summary]) {
    for event in events {
        assert_eq!(
            event.position.commit, event.position.prepare,
            "commit == prepare for {event:?}"
        );
    }
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions must strictly increase: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// The next message of a subscription, failing the test if none comes within [`DEADLINE`].
pub async fn next_message(subscription: &mut Subscription) -> SubscriptionEvent {
    within(
        "the next subscription message",
        subscription.next_subscription_event(),
    )
    .await
    .expect("the subscription keeps running")
}

/// The next event of a subscription, skipping confirmation, caught-up and checkpoint messages.
pub async fn next_event(subscription: &mut Subscription) -> ResolvedEvent {
    within("the next subscription event", subscription.next())
        .await
        .expect("the subscription keeps running")
}

/// What a subscription delivered up to its caught-up message.
#[derive(Debug, Default)]
pub struct CatchUp {
    pub confirmed: bool,
    pub events: Vec<ResolvedEvent>,
    pub checkpoints: Vec<Position>,
}

/// Reads a subscription until the server says it has caught up.
pub async fn catch_up(subscription: &mut Subscription) -> CatchUp {
    let mut seen = CatchUp::default();
    loop {
        match next_message(subscription).await {
            SubscriptionEvent::Confirmed(_) => seen.confirmed = true,
            SubscriptionEvent::EventAppeared(event) => seen.events.push(event),
            SubscriptionEvent::Checkpoint(position) => seen.checkpoints.push(position),
            SubscriptionEvent::CaughtUp => return seen,
            _ => {}
        }
    }
}

/// A filtered read of `$all` from the start. The Rust client's `read_all` cannot send a filter, so this reads
/// through a filtered subscription until it has caught up, as that client's users do.
pub async fn filtered_all(client: &Client, filter: SubscriptionFilter) -> Vec<Summary> {
    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::Start)
        .filter(filter);
    let mut subscription = client.subscribe_to_all(&options).await;
    catch_up(&mut subscription)
        .await
        .events
        .iter()
        .map(|e| summary(original(e)))
        .collect()
}

/// An HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }
}

/// `GET path` over a plain HTTP/1.1 connection (the same port serves gRPC and HTTP).
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    within(&format!("GET {path}"), async {
        let mut socket = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the HTTP port accepts");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        socket
            .write_all(request.as_bytes())
            .await
            .expect("the request is sent");
        let mut raw = Vec::new();
        socket
            .read_to_end(&mut raw)
            .await
            .expect("the response is read");
        parse_http_response(&raw)
    })
    .await
}

fn parse_http_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status code in {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        decode_chunked(rest)
    } else {
        rest.to_vec()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn decode_chunked(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("a textual chunk size");
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("a hexadecimal chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
