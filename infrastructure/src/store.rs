//! Typed access to the event store through the official `eventstore` client: connecting with retry, appending
//! `DomainEvent`s with their `EventMetadata`, reading streams back as typed events, and (opt-in) making the
//! streams a service creates private to its role with a stream `$acl`.

use std::error::Error as StdError;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::ids::deterministic_event_id;
use events::{DomainEvent, EventMetadata};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, Position,
    ReadStreamOptions, RecordedEvent, StreamPosition,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::appender::Appender;

/// The longest single connection attempt: long enough for a TLS handshake and cluster discovery.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How many times [`EventStore::claim_stream`] re-reads metadata that another writer changed meanwhile.
const CLAIM_ATTEMPTS: u32 = 5;

/// A connected client with typed operations. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct EventStore {
    client: Client,
    /// Shared by clones: appends go through one BatchAppend session per connection.
    appender: Arc<Appender>,
    /// The role the streams this store creates are private to ([`EventStore::with_owner_role`]).
    owner_role: Option<Arc<str>>,
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("owner_role", &self.owner_role)
            .finish_non_exhaustive()
    }
}

/// Why [`EventStore::connect`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the event store connection string is invalid")]
    InvalidConnectionString(#[source] eventstore::ClientSettingsParseError),
    #[error("no event store answered within {waited:?}; last error: {last_error}")]
    Unreachable {
        waited: Duration,
        last_error: String,
    },
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else appended first (optimistic concurrency): reload and decide again.
    #[error("stream '{stream}' is at {actual}, not at the expected {expected:?}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedRevision,
        actual: ActualRevision,
    },
    #[error("stream '{0}' does not exist")]
    NotFound(String),
    #[error("stream '{0}' has been deleted")]
    Deleted(String),
    #[error(transparent)]
    Undecodable(#[from] UndecodableEvent),
    #[error("event '{event_type}' cannot be encoded as JSON")]
    Unencodable {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("event store operation on '{stream}' failed")]
    Other {
        stream: String,
        #[source]
        source: eventstore::Error,
    },
}

/// Where a stream actually was when an append's expected revision did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActualRevision {
    NoStream,
    Revision(u64),
}

impl fmt::Display for ActualRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActualRevision::NoStream => f.write_str("no stream"),
            ActualRevision::Revision(revision) => write!(f, "revision {revision}"),
        }
    }
}

impl StoreError {
    /// Classifies a client error for an operation on `stream`.
    pub fn from_client(stream: &str, error: eventstore::Error) -> Self {
        match error {
            eventstore::Error::WrongExpectedVersion { expected, current } => {
                StoreError::WrongExpectedVersion {
                    stream: stream.to_owned(),
                    expected,
                    actual: match current {
                        eventstore::CurrentRevision::NoStream => ActualRevision::NoStream,
                        eventstore::CurrentRevision::Current(revision) => {
                            ActualRevision::Revision(revision)
                        }
                    },
                }
            }
            eventstore::Error::ResourceNotFound => StoreError::NotFound(stream.to_owned()),
            eventstore::Error::ResourceDeleted => StoreError::Deleted(stream.to_owned()),
            source => StoreError::Other {
                stream: stream.to_owned(),
                source,
            },
        }
    }

    pub fn is_wrong_expected_version(&self) -> bool {
        matches!(self, StoreError::WrongExpectedVersion { .. })
    }
}

/// A stored event whose body or metadata does not read as the expected type.
#[derive(Debug, thiserror::Error)]
#[error("event {revision}@{stream} of type '{event_type}' cannot be read")]
pub struct UndecodableEvent {
    pub stream: String,
    pub revision: u64,
    pub event_type: String,
    #[source]
    pub source: Box<dyn StdError + Send + Sync>,
}

/// An event to append: its id, the event and its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent<E> {
    /// Deterministic (UUID v5 of a business key and step) where a retry could repeat the write, so the store's
    /// idempotent append makes the repeat a no-op; random otherwise.
    pub id: Uuid,
    pub event: E,
    pub metadata: EventMetadata,
}

impl<E> NewEvent<E> {
    /// An event with a random id.
    pub fn new(event: E, metadata: EventMetadata) -> Self {
        Self::with_id(Uuid::new_v4(), event, metadata)
    }

    /// An event with the id the caller chose.
    pub fn with_id(id: Uuid, event: E, metadata: EventMetadata) -> Self {
        Self {
            id,
            event,
            metadata,
        }
    }
}

/// An event read back from a stream, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<E> {
    pub stream: String,
    pub revision: u64,
    pub id: Uuid,
    pub position: Position,
    pub event: E,
    pub metadata: EventMetadata,
}

impl<E: DomainEvent> StoredEvent<E> {
    /// Decodes a recorded event; an event type that `E` does not know is an error.
    pub fn decode(recorded: &RecordedEvent) -> Result<Self, UndecodableEvent> {
        let undecodable = |source: Box<dyn StdError + Send + Sync>| UndecodableEvent {
            stream: recorded.stream_id.clone(),
            revision: recorded.revision,
            event_type: recorded.event_type.clone(),
            source,
        };
        let event = E::decode(&recorded.event_type, &recorded.data)
            .map_err(|error| undecodable(Box::new(error)))?;
        let metadata: EventMetadata = serde_json::from_slice(&recorded.custom_metadata)
            .map_err(|error| undecodable(Box::new(error)))?;
        Ok(Self {
            stream: recorded.stream_id.clone(),
            revision: recorded.revision,
            id: recorded.id,
            position: recorded.position,
            event,
            metadata,
        })
    }

    /// Whether `E` has an event of this type; events of other types are someone else's to read.
    pub fn is_known_type(event_type: &str) -> bool {
        E::EVENT_TYPES.contains(&event_type)
    }
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The revision of the last event now in the stream: the expected revision of the next append.
    pub last_revision: u64,
    /// The position of the write in `$all`.
    pub position: Position,
}

impl EventStore {
    /// Connects, retrying with back-off until a server answers or `timeout` has passed.
    ///
    /// The official client never recovers if its very first call meets a refused connection, so each attempt
    /// first checks that a node accepts TCP connections, then builds a fresh client and asks for the server's
    /// info; the client is kept only once that succeeded.
    pub async fn connect(connection_string: &str, timeout: Duration) -> Result<Self, ConnectError> {
        let settings: ClientSettings = connection_string
            .parse()
            .map_err(ConnectError::InvalidConnectionString)?;
        let started = Instant::now();
        let deadline = started + timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let last_error = match attempt(&settings, deadline).await {
                Ok(client) => {
                    tracing::info!(elapsed = ?started.elapsed(), "connected to the event store");
                    return Ok(Self::from_client(client));
                }
                Err(error) => error,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ConnectError::Unreachable {
                    waited: started.elapsed(),
                    last_error,
                });
            }
            tracing::debug!(%last_error, ?backoff, "the event store is not answering yet");
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Wraps a client that is already known to reach a server.
    pub fn from_client(client: Client) -> Self {
        Self {
            appender: Arc::new(Appender::new(client.clone())),
            client,
            owner_role: None,
        }
    }

    /// This store (sharing its connection), making every stream it creates private to `role`, a user group of
    /// the store: before an append that creates a stream (expected revision `NoStream`, which is also how a
    /// [`crate::Repository`] saves a new aggregate) it writes the stream's `$acl` (see
    /// [`EventStore::claim_stream`]). Without an owner role, streams are created without metadata.
    pub fn with_owner_role(mut self, role: impl Into<String>) -> Self {
        self.owner_role = Some(Arc::from(role.into()));
        self
    }

    /// The role the streams this store creates are private to, if any.
    pub fn owner_role(&self) -> Option<&str> {
        self.owner_role.as_deref()
    }

    /// Makes `stream` private to the owner role: its metadata gets
    /// `$acl: {$w, $d, $mw: [role], $r, $mr: "$all"}` — only the role writes, deletes or changes the metadata,
    /// anyone may read. The rest of any existing metadata is kept. Does nothing without an owner role.
    ///
    /// Idempotent: a stream whose ACL is already this one is left alone, and the first write has an id derived
    /// from the stream and the role, so a retry after an unknown outcome is recognised by the store. A stream
    /// need not exist yet (its metadata can precede it), which is how creating appends use it; fixed streams
    /// that a service appends to with `ExpectedRevision::Any` are claimed once at start-up.
    pub async fn claim_stream(&self, stream: &str) -> Result<(), StoreError> {
        let Some(role) = self.owner_role.as_deref() else {
            return Ok(());
        };
        let metadata_stream = format!("$${stream}");
        // Most streams are claimed as they are created, before they have any metadata: then one write does it.
        let mut first = Map::new();
        first.insert("$acl".to_owned(), owner_acl(role));
        let id = deterministic_event_id(&metadata_stream, &format!("owner/{role}"));
        match self
            .write_metadata(&metadata_stream, ExpectedRevision::NoStream, &first, id)
            .await
        {
            Err(error) if error.is_wrong_expected_version() => {}
            written => return written,
        }
        let mut attempts = 0;
        loop {
            // The stream has metadata already: keep what else it says, and set the ACL unless it is this one.
            let (revision, mut metadata) = self.read_metadata(&metadata_stream).await?;
            if metadata
                .get("$acl")
                .is_some_and(|acl| is_owner_acl(acl, role))
            {
                return Ok(());
            }
            metadata.insert("$acl".to_owned(), owner_acl(role));
            let (expected, step) = match revision {
                Some(revision) => (
                    ExpectedRevision::Exact(revision),
                    format!("owner/{role}/after/{revision}"),
                ),
                None => (ExpectedRevision::NoStream, format!("owner/{role}")),
            };
            let id = deterministic_event_id(&metadata_stream, &step);
            attempts += 1;
            match self
                .write_metadata(&metadata_stream, expected, &metadata, id)
                .await
            {
                Err(error) if error.is_wrong_expected_version() && attempts < CLAIM_ATTEMPTS => {}
                written => return written,
            }
        }
    }

    async fn write_metadata(
        &self,
        metadata_stream: &str,
        expected: ExpectedRevision,
        metadata: &Map<String, Value>,
        id: Uuid,
    ) -> Result<(), StoreError> {
        let data = EventData::json("$metadata", metadata)
            .map_err(|source| StoreError::Unencodable {
                event_type: "$metadata".to_owned(),
                source,
            })?
            .id(id);
        let options = AppendToStreamOptions::default().expected_revision(expected);
        self.client
            .append_to_stream(metadata_stream, &options, data)
            .await
            .map_err(|error| StoreError::from_client(metadata_stream, error))?;
        Ok(())
    }

    /// The revision and body of the last event of a `$$` stream; no revision when it has none. A body that is
    /// not a JSON object reads as empty (the store cannot honour it either).
    async fn read_metadata(
        &self,
        metadata_stream: &str,
    ) -> Result<(Option<u64>, Map<String, Value>), StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1);
        let last = match self.client.read_stream(metadata_stream, &options).await {
            Ok(mut read) => read.next().await,
            Err(error) => Err(error),
        };
        match last {
            Ok(Some(resolved)) => {
                let event = resolved.get_original_event();
                let body = match serde_json::from_slice(&event.data) {
                    Ok(Value::Object(body)) => body,
                    _ => Map::new(),
                };
                Ok((Some(event.revision), body))
            }
            Ok(None) | Err(eventstore::Error::ResourceNotFound) => Ok((None, Map::new())),
            Err(error) => Err(StoreError::from_client(metadata_stream, error)),
        }
    }

    /// The official client, for what this type does not wrap (subscriptions, projections, stream metadata).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Appends `events` to `stream` if the stream is at `expected`.
    pub async fn append<E: DomainEvent>(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: &[NewEvent<E>],
    ) -> Result<Appended, StoreError> {
        let data = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        // The ACL goes first, so the stream is never writable by others, not even for a moment.
        if matches!(expected, ExpectedRevision::NoStream) {
            self.claim_stream(stream).await?;
        }
        self.appender
            .append(stream, expected, data)
            .await
            .map_err(|error| StoreError::from_client(stream, error))
    }

    /// Every event of `stream`, forwards from its start. A stream that never existed is [`StoreError::NotFound`].
    pub async fn read_stream<E: DomainEvent>(
        &self,
        stream: &str,
    ) -> Result<Vec<StoredEvent<E>>, StoreError> {
        self.read_stream_from(stream, 0).await
    }

    /// The events of `stream` from revision `from` (inclusive) to its end.
    pub async fn read_stream_from<E: DomainEvent>(
        &self,
        stream: &str,
        from: u64,
    ) -> Result<Vec<StoredEvent<E>>, StoreError> {
        let mut reader = self.read_events(stream, from, None).await?;
        let mut events = Vec::new();
        while let Some(event) = reader.next().await? {
            events.push(event);
        }
        Ok(events)
    }

    /// The last event of `stream`, or `None` when the stream does not exist.
    pub async fn read_last<E: DomainEvent>(
        &self,
        stream: &str,
    ) -> Result<Option<StoredEvent<E>>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .max_count(1);
        let mut reader = self.reader(stream, &options).await?;
        match reader.next().await {
            Ok(event) => Ok(event),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// A forwards reader of `stream` from revision `from`, yielding at most `max_count` events when given. Events
    /// are read from the server as the reader is drained, so a long stream is never held in memory at once.
    pub async fn read_events<E: DomainEvent>(
        &self,
        stream: &str,
        from: u64,
        max_count: Option<usize>,
    ) -> Result<EventReader<E>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(from))
            .forwards()
            .max_count(max_count.unwrap_or(usize::MAX));
        self.reader(stream, &options).await
    }

    async fn reader<E: DomainEvent>(
        &self,
        stream: &str,
        options: &ReadStreamOptions,
    ) -> Result<EventReader<E>, StoreError> {
        let read = self
            .client
            .read_stream(stream, options)
            .await
            .map_err(|error| StoreError::from_client(stream, error))?;
        Ok(EventReader {
            stream: stream.to_owned(),
            read,
            _event: PhantomData,
        })
    }
}

/// Typed events read from one stream, one at a time.
pub struct EventReader<E> {
    stream: String,
    read: eventstore::ReadStream,
    _event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> EventReader<E> {
    /// The next event, or `None` at the end. A missing stream is [`StoreError::NotFound`] on the first call.
    pub async fn next(&mut self) -> Result<Option<StoredEvent<E>>, StoreError> {
        match self.read.next().await {
            Ok(Some(resolved)) => Ok(Some(StoredEvent::decode(resolved.get_original_event())?)),
            Ok(None) => Ok(None),
            Err(error) => Err(StoreError::from_client(&self.stream, error)),
        }
    }
}

/// One connection attempt: a TCP check of the nodes, then a fresh client and its first call.
async fn attempt(settings: &ClientSettings, deadline: Instant) -> Result<Client, String> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let limit = remaining.clamp(Duration::from_millis(100), ATTEMPT_TIMEOUT);
    if !settings.is_dns_discovery_enabled() && !any_node_accepts(settings, limit).await {
        return Err("no node accepts connections".to_owned());
    }
    let client = Client::new(settings.clone()).map_err(|error| error.to_string())?;
    match tokio::time::timeout(limit, client.server_info()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

async fn any_node_accepts(settings: &ClientSettings, limit: Duration) -> bool {
    for endpoint in settings.hosts() {
        let address = format!("{}:{}", endpoint.host, endpoint.port);
        if let Ok(Ok(_)) =
            tokio::time::timeout(limit, tokio::net::TcpStream::connect(&address)).await
        {
            return true;
        }
    }
    false
}

/// The `$acl` of a stream private to `role`.
fn owner_acl(role: &str) -> Value {
    json!({ "$w": [role], "$d": [role], "$mw": [role], "$r": "$all", "$mr": "$all" })
}

/// Whether `acl` grants what [`owner_acl`] grants, however its roles are spelled (a role alone or a list).
fn is_owner_acl(acl: &Value, role: &str) -> bool {
    let roles = |key: &str| match acl.get(key) {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    ["$w", "$d", "$mw"].iter().all(|key| roles(key) == [role])
        && ["$r", "$mr"].iter().all(|key| roles(key) == ["$all"])
        && acl.as_object().is_some_and(|acl| acl.len() == 5)
}

fn encode<E: DomainEvent>(new: &NewEvent<E>) -> Result<EventData, StoreError> {
    let event_type = new.event.event_type();
    let unencodable = |source| StoreError::Unencodable {
        event_type: event_type.to_owned(),
        source,
    };
    // The event serialises as its body (`DomainEvent`), straight into the store's event.
    EventData::json(event_type, &new.event)
        .and_then(|data| data.metadata_as_json(&new.metadata))
        .map(|data| data.id(new.id))
        .map_err(unencodable)
}
