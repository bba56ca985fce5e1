//! A catch-up projector: follows `$all` (filtered) or one stream from a stored checkpoint and applies events to a
//! read model kept in redb, writing the model's changes and the new checkpoint in the same redb transaction. A
//! restart therefore resumes exactly after the last applied event: no history replayed, no event applied twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use events::DomainEvent;
use eventstore::{
    Position, ResolvedEvent, StreamPosition, SubscribeToAllOptions, SubscribeToStreamOptions,
    Subscription, SubscriptionEvent, SubscriptionFilter,
};
use redb::Database;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::{Counter, Metrics};
use crate::read_model::{store_checkpoint, ApplyError, Checkpoint, ReadModel, ReadModelStore};
use crate::store::{EventStore, StoredEvent, UndecodableEvent};

/// Messages buffered between the subscription and the projector; also the most events one batch can hold.
const CHANNEL_CAPACITY: usize = 16_384;

/// What a projector follows.
#[derive(Debug, Clone)]
pub enum ProjectorSource {
    /// `$all`, optionally filtered on the server (by stream-name or event-type prefix or regex).
    All { filter: Option<SubscriptionFilter> },
    /// One stream; `resolve_link_tos` for projection streams such as `$ce-account`.
    Stream {
        stream: String,
        resolve_link_tos: bool,
    },
}

/// Why a projector stopped. These need a human: the projector does not skip what it cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("read model storage failed")]
    Storage(#[from] redb::Error),
    #[error(transparent)]
    Undecodable(#[from] UndecodableEvent),
    #[error("the read model could not apply event {revision}@{stream}")]
    Apply {
        stream: String,
        revision: u64,
        #[source]
        source: ApplyError,
    },
    #[error("the stored checkpoint of projector '{projector}' is unreadable: {reason}")]
    CorruptCheckpoint { projector: String, reason: String },
    #[error("the read model could not create its tables")]
    Setup(#[source] ApplyError),
    #[error("the read model panicked")]
    Panicked,
}

/// How a projector batches and reconnects.
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// The most events applied in one transaction; events already waiting are batched, so a projector that is
    /// behind commits (and fsyncs) once per batch rather than once per event.
    pub max_batch: usize,
    /// How long a batch that is not full waits for more events after its first. Live, events arrive a few at a
    /// time, and each batch is a transaction: waiting a moment turns a busy stream's trickle into batches (the
    /// read model lags by at most this much more). Each transaction rewrites every B-tree page it touches, so
    /// rows keyed by random ids (a payment's) cost a page each per commit: the longer the window, the more of
    /// an entity's changes share one rewrite (a payment's five stages mostly fall into one batch at 250 ms).
    pub batch_window: Duration,
    /// The window after a batch of at least `busy_batch` events: under load the model lags a little more and
    /// commits less often (every commit rewrites the pages it touched, wherever the rows sit — an account's
    /// last transactions page, the newest payments), while a quiet model still shows a change within
    /// `batch_window`.
    pub busy_batch_window: Duration,
    pub busy_batch: usize,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl ProjectorOptions {
    /// How long the next batch waits to fill, after a batch of `last_batch` events.
    fn window_after(&self, last_batch: usize) -> Duration {
        if last_batch >= self.busy_batch {
            self.busy_batch_window
        } else {
            self.batch_window
        }
    }
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            max_batch: CHANNEL_CAPACITY,
            batch_window: Duration::from_millis(250),
            busy_batch_window: Duration::from_secs(1),
            busy_batch: 256,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
struct ProgressState {
    applied: Counter,
    caught_up: AtomicBool,
    stopped: AtomicBool,
    checkpoint: watch::Sender<Option<Checkpoint>>,
}

/// What a projector has done: events applied, whether it has caught up, its committed checkpoint. Clones share
/// the state; useful for readiness and for a query that must see a write it just made.
#[derive(Debug, Clone)]
pub struct ProjectorProgress {
    state: Arc<ProgressState>,
}

impl ProjectorProgress {
    fn new() -> Self {
        Self {
            state: Arc::new(ProgressState {
                applied: Counter::new(),
                caught_up: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                checkpoint: watch::channel(None).0,
            }),
        }
    }

    /// Events applied by this projector since it started (not counting those before a restart).
    pub fn applied(&self) -> u64 {
        self.state.applied.get()
    }

    /// Whether the projector has reached the live end of its source at least once since it started.
    pub fn is_caught_up(&self) -> bool {
        self.state.caught_up.load(Ordering::Acquire)
    }

    /// Whether the projector has stopped (shut down, or an error it cannot retry): its model no longer follows
    /// the store.
    pub fn has_stopped(&self) -> bool {
        self.state.stopped.load(Ordering::Acquire)
    }

    /// The last committed checkpoint.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        *self.state.checkpoint.borrow()
    }

    /// Waits until the committed checkpoint covers `target` (e.g. the position of a write the caller just made).
    pub async fn wait_for(&self, target: Checkpoint) {
        let mut receiver = self.state.checkpoint.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = receiver
            .wait_for(|checkpoint| checkpoint.is_some_and(|c| c.covers(&target)))
            .await;
    }

    fn commit(&self, checkpoint: Checkpoint, applied: u64) {
        self.state.applied.add(applied);
        self.state.checkpoint.send_replace(Some(checkpoint));
    }

    /// Registers `projector_events_applied_total{projector=name}`.
    pub fn register(&self, metrics: &Metrics, name: &str) {
        metrics.register(
            "projector_events_applied_total",
            "Events applied to read models.",
            &[("projector", name)],
            &self.state.applied,
        );
    }
}

/// A decoded batch, ready for one transaction.
struct Batch<E> {
    events: Vec<StoredEvent<E>>,
    checkpoint: Checkpoint,
}

/// Applies events from a source to a read model.
pub struct Projector<M> {
    name: String,
    store: EventStore,
    read_models: ReadModelStore,
    source: ProjectorSource,
    model: Option<M>,
    options: ProjectorOptions,
    progress: ProjectorProgress,
    last_durable: std::time::Instant,
    /// How many events the last batch held.
    last_batch: usize,
}

/// Read-model commits are fsynced at most this often. The model and its checkpoint share every transaction, so
/// a crash loses both together and the projector resumes from the older checkpoint: never an event applied
/// twice, never one skipped. A clean stop makes everything durable.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

impl<M: ReadModel> Projector<M> {
    /// A projector called `name` (its checkpoint's key: keep it stable across releases).
    pub fn new(
        name: impl Into<String>,
        store: EventStore,
        read_models: ReadModelStore,
        source: ProjectorSource,
        model: M,
    ) -> Self {
        Self {
            name: name.into(),
            store,
            read_models,
            source,
            model: Some(model),
            options: ProjectorOptions::default(),
            progress: ProjectorProgress::new(),
            last_durable: std::time::Instant::now(),
            last_batch: 0,
        }
    }

    pub fn with_options(mut self, options: ProjectorOptions) -> Self {
        self.options = options;
        self
    }

    pub fn with_metrics(self, metrics: &Metrics) -> Self {
        self.progress.register(metrics, &self.name);
        self
    }

    pub fn progress(&self) -> ProjectorProgress {
        self.progress.clone()
    }

    /// Runs the projector as one of `tasks` until their shutdown; an error that stops it is logged.
    pub fn spawn(self, tasks: &crate::Shutdown)
    where
        M: Sync,
    {
        let token = tasks.token();
        let name = self.name.clone();
        tasks.spawn(async move {
            if let Err(error) = self.run(token).await {
                tracing::error!(projector = %name, %error, "the read model stopped");
            }
        });
    }

    /// Projects until `shutdown` is cancelled (then `Ok`), reconnecting with back-off when the subscription
    /// drops. Returns an error only for what retrying cannot fix: an unreadable event, a read model that
    /// refuses an event, a failing database.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        let span = tracing::info_span!("projector", name = %self.name);
        let result = self.run_inner(shutdown).instrument(span).await;
        self.progress.state.stopped.store(true, Ordering::Release);
        // An empty durable commit makes every earlier non-durable one durable.
        let flushed = self
            .blocking(|_, database| {
                database
                    .begin_write()
                    .map_err(redb::Error::from)?
                    .commit()
                    .map_err(redb::Error::from)?;
                Ok(())
            })
            .await;
        result.and(flushed)
    }

    async fn run_inner(&mut self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        let mut checkpoint = self.read_models.checkpoint(&self.name)?;
        if let Some(checkpoint) = checkpoint {
            self.progress
                .state
                .checkpoint
                .send_replace(Some(checkpoint));
        }
        self.blocking(|model, database| {
            let transaction = database.begin_write().map_err(redb::Error::from)?;
            model.setup(&transaction).map_err(ProjectorError::Setup)?;
            transaction.commit().map_err(redb::Error::from)?;
            Ok(())
        })
        .await?;
        let mut backoff = self.options.first_backoff;
        loop {
            let subscription = self.subscribe(checkpoint).await;
            let (sender, mut receiver) = mpsc::channel(CHANNEL_CAPACITY);
            let pump = tokio::spawn(pump(subscription, sender));
            let ended = self
                .consume(&mut receiver, &mut checkpoint, &mut backoff, &shutdown)
                .await;
            pump.abort();
            match ended {
                Ok(Some(error)) => {
                    tracing::warn!(%error, ?backoff, "subscription dropped; resubscribing");
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    tracing::error!(%error, "projector stopped");
                    return Err(error);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
    }

    async fn subscribe(&self, checkpoint: Option<Checkpoint>) -> Subscription {
        let client = self.store.client();
        match &self.source {
            ProjectorSource::All { filter } => {
                let start = match checkpoint {
                    Some(Checkpoint::All { commit, prepare }) => {
                        StreamPosition::Position(Position { commit, prepare })
                    }
                    _ => StreamPosition::Start,
                };
                let mut options = SubscribeToAllOptions::default().position(start);
                if let Some(filter) = filter {
                    options = options.filter(filter.clone());
                }
                client.subscribe_to_all(&options).await
            }
            ProjectorSource::Stream {
                stream,
                resolve_link_tos,
            } => {
                let start = match checkpoint {
                    Some(Checkpoint::Stream { revision }) => StreamPosition::Position(revision),
                    _ => StreamPosition::Start,
                };
                let mut options = SubscribeToStreamOptions::default().start_from(start);
                if *resolve_link_tos {
                    options = options.resolve_link_tos();
                }
                client.subscribe_to_stream(stream.as_str(), &options).await
            }
        }
    }

    /// Applies what the subscription delivers until it drops (`Ok(Some(error))`), shutdown (`Ok(None)`) or a
    /// fatal error.
    async fn consume(
        &mut self,
        receiver: &mut mpsc::Receiver<eventstore::Result<SubscriptionEvent>>,
        checkpoint: &mut Option<Checkpoint>,
        backoff: &mut Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<eventstore::Error>, ProjectorError> {
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(None),
                message = receiver.recv() => match message {
                    Some(message) => message,
                    None => return Ok(Some(eventstore::Error::ConnectionClosed)),
                },
            };
            let mut pending = vec![first];
            let max_batch = self.options.max_batch.max(1);
            let window_ends =
                tokio::time::Instant::now() + self.options.window_after(self.last_batch);
            while pending.len() < max_batch {
                let message = match receiver.try_recv() {
                    Ok(message) => message,
                    Err(_) => {
                        let next = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => None,
                            next = tokio::time::timeout_at(window_ends, receiver.recv()) => next.ok().flatten(),
                        };
                        match next {
                            Some(message) => message,
                            None => break,
                        }
                    }
                };
                pending.push(message);
            }
            self.last_batch = pending.len();
            let mut events = Vec::new();
            let mut new_checkpoint = *checkpoint;
            let mut caught_up = false;
            let mut dropped = None;
            for message in pending {
                match message {
                    Ok(SubscriptionEvent::EventAppeared(event)) => {
                        let at = Checkpoint::of(&self.source, &event);
                        // A server that resends the checkpointed event must not get it applied twice.
                        if new_checkpoint.is_some_and(|c| c.covers(&at)) {
                            continue;
                        }
                        new_checkpoint = Some(at);
                        if let Some(stored) = decode::<M::Event>(&event)? {
                            events.push(stored);
                        }
                    }
                    Ok(SubscriptionEvent::Checkpoint(position)) => {
                        let at = Checkpoint::All {
                            commit: position.commit,
                            prepare: position.prepare,
                        };
                        if matches!(self.source, ProjectorSource::All { .. })
                            && !new_checkpoint.is_some_and(|c| c.covers(&at))
                        {
                            new_checkpoint = Some(at);
                        }
                    }
                    Ok(SubscriptionEvent::CaughtUp) => caught_up = true,
                    Ok(SubscriptionEvent::Confirmed(_)) => *backoff = self.options.first_backoff,
                    Ok(_) => {}
                    Err(error) => {
                        dropped = Some(error);
                        break;
                    }
                }
            }
            if let Some(at) = new_checkpoint.filter(|at| Some(*at) != *checkpoint) {
                let applied = events.len() as u64;
                self.commit(Batch {
                    events,
                    checkpoint: at,
                })
                .await?;
                *checkpoint = Some(at);
                self.progress.commit(at, applied);
            }
            if caught_up && !self.progress.is_caught_up() {
                tracing::info!("caught up");
                self.progress.state.caught_up.store(true, Ordering::Release);
            }
            if let Some(error) = dropped {
                return Ok(Some(error));
            }
        }
    }

    /// Applies a batch and stores its checkpoint in one transaction, off the async runtime (redb blocks on
    /// fsync).
    async fn commit(&mut self, batch: Batch<M::Event>) -> Result<(), ProjectorError> {
        let name = self.name.clone();
        let durable = self.last_durable.elapsed() >= DURABLE_EVERY;
        self.blocking(move |model, database| {
            let mut transaction = database.begin_write().map_err(redb::Error::from)?;
            if !durable {
                transaction
                    .set_durability(redb::Durability::None)
                    .map_err(redb::Error::from)?;
            }
            model
                .apply_batch(&transaction, &batch.events)
                .map_err(|(index, source)| {
                    let event = batch.events.get(index).or(batch.events.last());
                    ProjectorError::Apply {
                        stream: event.map(|e| e.stream.clone()).unwrap_or_default(),
                        revision: event.map_or(0, |e| e.revision),
                        source,
                    }
                })?;
            store_checkpoint(&transaction, &name, &batch.checkpoint)?;
            transaction.commit().map_err(redb::Error::from)?;
            Ok(())
        })
        .await?;
        if durable {
            self.last_durable = std::time::Instant::now();
        }
        Ok(())
    }

    /// Runs `work` with the model and the database on the blocking pool.
    async fn blocking<F>(&mut self, work: F) -> Result<(), ProjectorError>
    where
        F: FnOnce(&mut M, &Database) -> Result<(), ProjectorError> + Send + 'static,
    {
        let Some(mut model) = self.model.take() else {
            return Err(ProjectorError::Panicked);
        };
        let read_models = self.read_models.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let result = work(&mut model, read_models.database());
            (model, result)
        })
        .await;
        match joined {
            Ok((model, result)) => {
                self.model = Some(model);
                result
            }
            Err(_) => Err(ProjectorError::Panicked),
        }
    }
}

/// The event a projection applies: the target of a resolved link, else the event; `None` for event types the
/// model does not know (and for links whose target is gone).
fn decode<E: DomainEvent>(
    event: &ResolvedEvent,
) -> Result<Option<StoredEvent<E>>, UndecodableEvent> {
    let recorded = match (&event.event, &event.link) {
        (Some(target), _) => target,
        (None, Some(_)) => return Ok(None),
        (None, None) => return Ok(None),
    };
    if !StoredEvent::<E>::is_known_type(&recorded.event_type) {
        return Ok(None);
    }
    StoredEvent::decode(recorded).map(Some)
}

/// Moves subscription messages into a channel. The client's subscription is not safe to cancel mid-read, so it
/// lives in its own task and the projector waits on the channel, which is.
async fn pump(
    mut subscription: Subscription,
    sender: mpsc::Sender<eventstore::Result<SubscriptionEvent>>,
) {
    loop {
        let message = subscription.next_subscription_event().await;
        let failed = message.is_err();
        if sender.send(message).await.is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_projector_waits_longer_for_its_next_batch_than_a_quiet_one() {
        let options = ProjectorOptions::default();
        assert_eq!(options.window_after(0), options.batch_window);
        assert_eq!(
            options.window_after(options.busy_batch - 1),
            options.batch_window
        );
        assert_eq!(
            options.window_after(options.busy_batch),
            options.busy_batch_window
        );
        assert!(options.busy_batch_window > options.batch_window);
    }
}
