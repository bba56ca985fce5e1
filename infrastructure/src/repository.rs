//! The aggregate repository: rebuilds an aggregate by folding its stream (from its latest snapshot when there is
//! one), saves new events with the loaded revision as the expected revision, retries a decision when another
//! writer got there first, and keeps snapshots of long streams in a separate `snapshot-<stream>` stream. With an
//! owner role on the store ([`EventStore::with_owner_role`]), new aggregates' streams and their snapshot streams
//! are private to it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use events::ids::deterministic_event_id;
use events::{DomainEvent, EventMetadata};
use eventstore::{EventData, ExpectedRevision, ReadStreamOptions, StreamPosition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{Appended, EventStore, NewEvent, StoreError};
use crate::stream_locks::StreamLocks;

/// The event type of the snapshots in a `snapshot-<stream>` stream.
pub const SNAPSHOT_EVENT_TYPE: &str = "AggregateSnapshotTaken";

/// How many times [`Repository::execute`] decides again after losing a race to another writer.
const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// State rebuilt from one stream of events.
///
/// The state is serialised as JSON into snapshots, so it must round-trip through serde; bump
/// [`Aggregate::SNAPSHOT_VERSION`] when its shape changes in a way older snapshots cannot be read as, and they
/// are ignored (the stream is folded from its start instead).
pub trait Aggregate: Clone + Default + Serialize + DeserializeOwned + Send + Sync {
    type Event: DomainEvent + Clone + Send + Sync;
    /// What names one aggregate (an account id, a payment id, `()` for a singleton).
    type Id: ?Sized + Sync;

    const SNAPSHOT_VERSION: u32 = 1;

    /// The stream that holds the aggregate's events.
    fn stream_name(id: &Self::Id) -> String;

    /// Applies an event that happened. Never fails: the decision that produced the event already validated it.
    fn apply(&mut self, event: &Self::Event);
}

/// The stream holding the snapshots of `stream`: a category of its own (`snapshot`), with no `$` (which is
/// reserved for the server's own streams) and no suffix (which would put snapshots into the aggregate's
/// category, where `$ce-` subscribers would meet them).
pub fn snapshot_stream(stream: &str) -> String {
    format!("snapshot-{stream}")
}

/// An aggregate as rebuilt from its stream, and where that stream was.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    pub state: A,
    /// The revision of the last event applied; `None` when the stream does not exist yet.
    pub revision: Option<u64>,
    /// When the last event applied happened (from its metadata).
    pub last_occurred_at: Option<DateTime<Utc>>,
    /// The revision the latest snapshot read or written covers.
    snapshot_revision: Option<u64>,
}

impl<A: Default> Loaded<A> {
    fn empty() -> Self {
        Self {
            state: A::default(),
            revision: None,
            last_occurred_at: None,
            snapshot_revision: None,
        }
    }
}

impl<A> Loaded<A> {
    /// The expected revision of an append that builds on this state.
    pub fn expected_revision(&self) -> ExpectedRevision {
        match self.revision {
            None => ExpectedRevision::NoStream,
            Some(revision) => ExpectedRevision::Exact(revision),
        }
    }

    /// Whether the stream held at least one event.
    pub fn exists(&self) -> bool {
        self.revision.is_some()
    }
}

/// The metadata of the events one command writes, and how their ids are made.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandContext {
    pub metadata: EventMetadata,
    /// Names the decision (e.g. a message id and a step). With a key, event `i` of the decision on stream `s`
    /// gets the id `deterministic_event_id(key, "s/i")`, so an append re-sent after an unknown outcome is
    /// recognised by the store as already written. Without one, ids are random.
    pub idempotency_key: Option<String>,
}

impl CommandContext {
    pub fn new(metadata: EventMetadata) -> Self {
        Self {
            metadata,
            idempotency_key: None,
        }
    }

    pub fn idempotent(metadata: EventMetadata, key: impl Into<String>) -> Self {
        Self {
            metadata,
            idempotency_key: Some(key.into()),
        }
    }

    fn new_events<E>(&self, stream: &str, events: Vec<E>) -> Vec<NewEvent<E>> {
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| match &self.idempotency_key {
                Some(key) => NewEvent::with_id(
                    deterministic_event_id(key, &format!("{stream}/{index}")),
                    event,
                    self.metadata.clone(),
                ),
                None => NewEvent::new(event, self.metadata.clone()),
            })
            .collect()
    }
}

/// What [`Repository::execute`] did. `view` is what [`Repository::execute_viewing`]'s caller made of the state
/// after the new events (`()` from `execute`): the state itself stays with the repository's cache, so a
/// command costs no copy of it — an account's state holds thousands of remembered payment ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<A: Aggregate, T = ()> {
    pub view: T,
    /// The events the decision produced (possibly none).
    pub events: Vec<A::Event>,
    /// Where they were written; `None` when there were none to write.
    pub appended: Option<Appended>,
    /// How many decisions it took (1 unless another writer got there first).
    pub attempts: u32,
}

/// Why [`Repository::execute`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The decision refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept appending to the stream between every load and save.
    #[error("stream '{stream}' kept changing; gave up after {attempts} attempts")]
    Conflict { stream: String, attempts: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Aggregates as this process last saved them, by stream, so a decision on an aggregate this process wrote a
/// moment ago does not read its stream again. Bounded: two generations of at most `capacity / 2` entries each;
/// when the young one fills up, the old one is dropped and the young one becomes old (an approximate LRU
/// without per-entry bookkeeping).
///
/// Only ever an optimisation: an entry may be stale (another process appended since), and the repository
/// relies on the store's expected-revision check to find out (see [`Repository::execute`]).
struct AggregateCache<A> {
    generations: Mutex<[HashMap<String, Loaded<A>>; 2]>,
    generation_capacity: usize,
}

impl<A> AggregateCache<A> {
    fn new(capacity: usize) -> Self {
        Self {
            generations: Mutex::new([HashMap::new(), HashMap::new()]),
            generation_capacity: (capacity / 2).max(1),
        }
    }

    /// Takes the entry out: two decisions on one aggregate at the same time do not both build on it (the
    /// second reads the stream, and the store orders their appends).
    fn take(&self, stream: &str) -> Option<Loaded<A>> {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let [young, old] = &mut *generations;
        young.remove(stream).or_else(|| old.remove(stream))
    }

    fn put(&self, stream: String, loaded: Loaded<A>) {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if generations[0].len() >= self.generation_capacity {
            generations.swap(0, 1);
            generations[0].clear();
        }
        generations[1].remove(&stream);
        generations[0].insert(stream, loaded);
    }
}

/// Loads and saves aggregates of type `A`.
pub struct Repository<A> {
    store: EventStore,
    snapshot_every: Option<u64>,
    max_attempts: u32,
    cache: Option<Arc<AggregateCache<A>>>,
    /// Shared by clones: decisions on one stream through this repository take turns.
    locks: Arc<StreamLocks>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            snapshot_every: self.snapshot_every,
            max_attempts: self.max_attempts,
            cache: self.cache.clone(),
            locks: self.locks.clone(),
            _aggregate: PhantomData,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotToWrite<'a, A> {
    schema_version: u32,
    revision: u64,
    occurred_at: Option<DateTime<Utc>>,
    state: &'a A,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotRead<A> {
    schema_version: u32,
    revision: u64,
    occurred_at: Option<DateTime<Utc>>,
    state: A,
}

/// Where [`Repository::execute`] takes the state of its first decision from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The cache, else the store.
    Cached,
    /// The cache, else the empty state (no stream yet).
    CachedOrNew,
    /// The store.
    Store,
}

/// How far a load folds.
#[derive(Debug, Clone, Copy)]
enum Until {
    End,
    Revision(u64),
    Instant(DateTime<Utc>),
}

impl Until {
    fn admits_snapshot<A>(self, snapshot: &SnapshotRead<A>) -> bool {
        match self {
            Until::End => true,
            Until::Revision(revision) => snapshot.revision <= revision,
            Until::Instant(instant) => snapshot.occurred_at.is_some_and(|at| at <= instant),
        }
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository without snapshots that retries a conflicting decision up to 5 times.
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            snapshot_every: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            cache: None,
            locks: Arc::default(),
            _aggregate: PhantomData,
        }
    }

    /// Remembers up to `capacity` aggregates this repository (and its clones) saved, so the next decision on
    /// one of them starts from memory instead of reading its stream. Safe with other writers: a decision made
    /// on a stale state fails the store's expected-revision check and is made again on a fresh load, and a
    /// cached state that decides nothing or refuses is checked against a fresh load before that is believed.
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(AggregateCache::new(capacity)));
        self
    }

    /// Writes a snapshot whenever `events` events have been saved since the last one.
    pub fn with_snapshots_every(mut self, events: u64) -> Self {
        self.snapshot_every = Some(events.max(1));
        self
    }

    /// How many decisions [`Repository::execute`] makes before it reports a conflict (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The aggregate as it is now: the latest snapshot plus the events after it. A stream that does not exist
    /// (or was soft-deleted) loads as `A::default()` with no revision.
    pub async fn load(&self, id: &A::Id) -> Result<Loaded<A>, StoreError> {
        self.load_until(&A::stream_name(id), Until::End).await
    }

    /// The aggregate as it was once the event at `revision` had been applied (the time machine).
    pub async fn load_at_revision(
        &self,
        id: &A::Id,
        revision: u64,
    ) -> Result<Loaded<A>, StoreError> {
        self.load_until(&A::stream_name(id), Until::Revision(revision))
            .await
    }

    /// The aggregate as it was at `instant`: every event up to the first one that occurred after it.
    pub async fn load_as_of(
        &self,
        id: &A::Id,
        instant: DateTime<Utc>,
    ) -> Result<Loaded<A>, StoreError> {
        self.load_until(&A::stream_name(id), Until::Instant(instant))
            .await
    }

    /// Appends `events` on top of `loaded` (which must be the latest state), applies them, and writes a snapshot
    /// when one is due. A concurrent writer makes this fail with [`StoreError::WrongExpectedVersion`].
    pub async fn save(
        &self,
        id: &A::Id,
        mut loaded: Loaded<A>,
        events: Vec<NewEvent<A::Event>>,
    ) -> Result<(Loaded<A>, Option<Appended>), StoreError> {
        if events.is_empty() {
            return Ok((loaded, None));
        }
        let stream = A::stream_name(id);
        let appended = self
            .store
            .append(&stream, loaded.expected_revision(), &events)
            .await?;
        for new in &events {
            loaded.state.apply(&new.event);
        }
        loaded.revision = Some(appended.last_revision);
        loaded.last_occurred_at = events.last().map(|new| new.metadata.occurred_at);
        self.snapshot_if_due(&stream, &mut loaded).await;
        Ok((loaded, Some(appended)))
    }

    /// Loads the aggregate, lets `decide` turn the command into events, and saves them. When another writer
    /// appended in between, loads again and decides again, up to the configured number of attempts. Decisions
    /// on one aggregate through this repository and its clones take turns (a hot aggregate's commands queue
    /// instead of racing each other to the store); other writers are caught by the expected revision.
    pub async fn execute<F, E>(
        &self,
        id: &A::Id,
        context: &CommandContext,
        decide: F,
    ) -> Result<Executed<A>, ExecuteError<E>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
    {
        self.execute_from(id, context, Start::Cached, decide, |_| ())
            .await
    }

    /// [`Repository::execute`], and `view` of the state after the new events (e.g. an API's answer, or
    /// `A::clone` for the state itself).
    pub async fn execute_viewing<F, E, V, T>(
        &self,
        id: &A::Id,
        context: &CommandContext,
        decide: F,
        view: V,
    ) -> Result<Executed<A, T>, ExecuteError<E>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
        V: FnOnce(&A) -> T,
    {
        self.execute_from(id, context, Start::Cached, decide, view)
            .await
    }

    /// [`Repository::execute`] for a command that usually creates its aggregate (a payment received, a payment
    /// screened): unless the aggregate is cached, the first decision is made on the empty state without reading
    /// the stream, and the append expects no stream. When the stream exists after all, the store says so and
    /// the decision is made again on the loaded state.
    pub async fn execute_expecting_new<F, E>(
        &self,
        id: &A::Id,
        context: &CommandContext,
        decide: F,
    ) -> Result<Executed<A>, ExecuteError<E>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
    {
        self.execute_from(id, context, Start::CachedOrNew, decide, |_| ())
            .await
    }

    async fn execute_from<F, E, V, T>(
        &self,
        id: &A::Id,
        context: &CommandContext,
        mut start: Start,
        mut decide: F,
        view: V,
    ) -> Result<Executed<A, T>, ExecuteError<E>>
    where
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
        V: FnOnce(&A) -> T,
    {
        let stream = A::stream_name(id);
        let _turn = self.locks.lock(&stream).await;
        let mut attempt = 0;
        while attempt < self.max_attempts {
            let (loaded, fresh) = self.start(&stream, start).await?;
            start = Start::Store;
            let events = match decide(&loaded.state) {
                // A remembered state that refuses, or has nothing to do, may only be out of date: ask the
                // store before believing it.
                Err(_) if !fresh => continue,
                Ok(events) if events.is_empty() && !fresh => continue,
                Err(rejection) => {
                    self.remember(&stream, loaded);
                    return Err(ExecuteError::Rejected(rejection));
                }
                Ok(events) => events,
            };
            attempt += 1;
            let new_events = context.new_events(&stream, events.clone());
            match self.save(id, loaded, new_events).await {
                Ok((saved, appended)) => {
                    let view = view(&saved.state);
                    self.remember(&stream, saved);
                    return Ok(Executed {
                        view,
                        events,
                        appended,
                        attempts: attempt,
                    });
                }
                Err(error) if error.is_wrong_expected_version() => {
                    tracing::debug!(%stream, attempt, "another writer appended first; deciding again");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(ExecuteError::Conflict {
            stream,
            attempts: self.max_attempts,
        })
    }

    /// The state a decision starts from, and whether it was read from the store just now.
    async fn start(&self, stream: &str, start: Start) -> Result<(Loaded<A>, bool), StoreError> {
        if start != Start::Store {
            if let Some(cached) = self.cache.as_ref().and_then(|cache| cache.take(stream)) {
                return Ok((cached, false));
            }
            if start == Start::CachedOrNew {
                return Ok((Loaded::empty(), false));
            }
        }
        Ok((self.load_until(stream, Until::End).await?, true))
    }

    fn remember(&self, stream: &str, loaded: Loaded<A>) {
        if let Some(cache) = &self.cache {
            cache.put(stream.to_owned(), loaded);
        }
    }

    async fn load_until(&self, stream: &str, until: Until) -> Result<Loaded<A>, StoreError> {
        let mut loaded = match self.latest_snapshot(stream, until).await {
            Some(snapshot) => Loaded {
                state: snapshot.state,
                revision: Some(snapshot.revision),
                last_occurred_at: snapshot.occurred_at,
                snapshot_revision: Some(snapshot.revision),
            },
            None => Loaded::empty(),
        };
        let from = loaded.revision.map_or(0, |revision| revision + 1);
        let max_count = match until {
            Until::Revision(last) if last < from => return Ok(loaded),
            Until::Revision(last) => usize::try_from(last - from + 1).ok(),
            Until::End | Until::Instant(_) => None,
        };
        let mut reader = self
            .store
            .read_events::<A::Event>(stream, from, max_count)
            .await?;
        loop {
            let event = match reader.next().await {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(loaded),
                // A soft-deleted stream reads as missing: whatever a snapshot remembers is gone with it.
                Err(StoreError::NotFound(_)) => return Ok(Loaded::empty()),
                Err(other) => return Err(other),
            };
            if let Until::Instant(instant) = until {
                if event.metadata.occurred_at > instant {
                    return Ok(loaded);
                }
            }
            loaded.state.apply(&event.event);
            loaded.revision = Some(event.revision);
            loaded.last_occurred_at = Some(event.metadata.occurred_at);
        }
    }

    /// The newest readable snapshot that `until` admits. Snapshots are an optimisation: one that cannot be read
    /// (another schema version, a read error) is passed over, never fatal.
    async fn latest_snapshot(&self, stream: &str, until: Until) -> Option<SnapshotRead<A>> {
        self.snapshot_every?;
        let snapshots = snapshot_stream(stream);
        let mut options = ReadStreamOptions::default().position(StreamPosition::End);
        if let Until::End = until {
            options = options.max_count(1);
        }
        let mut read = self
            .store
            .client()
            .read_stream(snapshots.as_str(), &options)
            .await
            .ok()?;
        loop {
            let resolved = match read.next().await {
                Ok(Some(resolved)) => resolved,
                Ok(None) | Err(eventstore::Error::ResourceNotFound) => return None,
                Err(error) => {
                    tracing::warn!(%snapshots, %error, "snapshots unreadable; folding from the start");
                    return None;
                }
            };
            let recorded = resolved.get_original_event();
            match serde_json::from_slice::<SnapshotRead<A>>(&recorded.data) {
                Ok(snapshot) if snapshot.schema_version == A::SNAPSHOT_VERSION => {
                    if until.admits_snapshot(&snapshot) {
                        return Some(snapshot);
                    }
                }
                Ok(_) => return None,
                Err(error) => {
                    tracing::warn!(%snapshots, revision = recorded.revision, %error, "skipping an unreadable snapshot");
                }
            }
        }
    }

    async fn snapshot_if_due(&self, stream: &str, loaded: &mut Loaded<A>) {
        let (Some(every), Some(revision)) = (self.snapshot_every, loaded.revision) else {
            return;
        };
        let since_snapshot = match loaded.snapshot_revision {
            Some(snapshot) => revision.saturating_sub(snapshot),
            None => revision + 1,
        };
        if since_snapshot < every {
            return;
        }
        let snapshots = snapshot_stream(stream);
        // Snapshots are appended with `Any`, so the first one (none was read) claims the stream for the owner
        // role first: another domain must not be able to plant a state for this aggregate.
        if loaded.snapshot_revision.is_none() {
            if let Err(error) = self.store.claim_stream(&snapshots).await {
                tracing::warn!(%snapshots, %error, "snapshot stream not claimed; snapshot not written");
                return;
            }
        }
        let body = SnapshotToWrite {
            schema_version: A::SNAPSHOT_VERSION,
            revision,
            occurred_at: loaded.last_occurred_at,
            state: &loaded.state,
        };
        // The same snapshot written twice (two instances racing) has the same id, so it is stored once.
        let written = EventData::json(SNAPSHOT_EVENT_TYPE, &body)
            .map(|data| data.id(deterministic_event_id(&snapshots, &revision.to_string())));
        let result = match written {
            Ok(data) => self
                .store
                .client()
                .append_to_stream(snapshots.as_str(), &Default::default(), data)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match result {
            Ok(_) => loaded.snapshot_revision = Some(revision),
            Err(error) => tracing::warn!(%snapshots, revision, %error, "snapshot not written"),
        }
    }
}
