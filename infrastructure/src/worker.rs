//! A persistent-subscription worker: one competing consumer of a group. Each delivered event goes to a handler;
//! success acks it, a transient error nacks it for a retry, a poison message is parked for a human to look at.
//! A dropped subscription is reconnected with exponential back-off; a shutdown token stops the worker cleanly.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use events::DomainEvent;
use eventstore::{
    NakAction, PersistentSubscription, PersistentSubscriptionEvent, RecordedEvent, ResolvedEvent,
    SubscribeToPersistentSubscriptionOptions,
};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::group::SubscriptionSource;
use crate::metrics::{Counter, Metrics};
use crate::repository::ExecuteError;
use crate::store::{EventStore, StoreError, StoredEvent};

/// Why a handler did not handle an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (the store was unreachable, another writer won a race): nack with retry.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Will never succeed (unreadable event, a broken invariant): nack with park, for a human to look at and
    /// replay once fixed.
    #[error("poison message: {0}")]
    Poison(String),
}

impl HandlerError {
    pub fn transient(reason: impl Display) -> Self {
        HandlerError::Transient(reason.to_string())
    }

    pub fn poison(reason: impl Display) -> Self {
        HandlerError::Poison(reason.to_string())
    }
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::WrongExpectedVersion { .. } | StoreError::Other { .. } => {
                HandlerError::transient(error)
            }
            StoreError::NotFound(_)
            | StoreError::Deleted(_)
            | StoreError::Undecodable(_)
            | StoreError::Unencodable { .. } => HandlerError::poison(error),
        }
    }
}

impl<E: Display> From<ExecuteError<E>> for HandlerError {
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Rejected(rejection) => HandlerError::poison(rejection),
            ExecuteError::Conflict { .. } => HandlerError::transient(error),
            ExecuteError::Store(store) => store.into(),
        }
    }
}

/// One event handed to this consumer.
#[derive(Debug)]
pub struct Delivery {
    /// How many times the event was delivered before (0 on the first delivery).
    pub retry_count: usize,
    resolved: ResolvedEvent,
}

impl Delivery {
    pub fn new(resolved: ResolvedEvent, retry_count: usize) -> Self {
        Self {
            retry_count,
            resolved,
        }
    }

    /// The event as the client delivered it (a link and its target when the group resolves links).
    pub fn resolved(&self) -> &ResolvedEvent {
        &self.resolved
    }

    /// The event itself: the target of a resolved link, else what was delivered.
    pub fn recorded(&self) -> &RecordedEvent {
        self.resolved
            .event
            .as_ref()
            .unwrap_or_else(|| self.resolved.get_original_event())
    }

    pub fn event_type(&self) -> &str {
        &self.recorded().event_type
    }

    /// The event decoded as one of `E`'s; `Ok(None)` when its type is not one of them (not this handler's
    /// business: ack it), a poison error when it is but does not read.
    pub fn decode<E: DomainEvent>(&self) -> Result<Option<StoredEvent<E>>, HandlerError> {
        let recorded = self.recorded();
        if !StoredEvent::<E>::is_known_type(&recorded.event_type) {
            return Ok(None);
        }
        StoredEvent::decode(recorded)
            .map(Some)
            .map_err(HandlerError::poison)
    }

    /// The `$correlationId` of the event's metadata, when it has one.
    pub fn correlation_id(&self) -> Option<Uuid> {
        let metadata: serde_json::Value =
            serde_json::from_slice(&self.recorded().custom_metadata).ok()?;
        metadata.get("$correlationId")?.as_str()?.parse().ok()
    }

    /// The id to ack or nack: the delivered event's (the link's, for a link).
    fn ack_id(&self) -> Uuid {
        self.resolved.get_original_event().id
    }
}

/// Handles one delivered event. Implemented for every `Fn(Delivery) -> impl Future<Output = Result<…>>`.
/// A handler must be idempotent: an event can be delivered more than once.
pub trait Handler: Send + Sync {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(delivery)
    }
}

/// What a worker has done, for `/metrics` and tests. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct WorkerCounters {
    /// Events the handler handled (acked).
    pub handled: Counter,
    /// Events nacked for a retry after a transient error.
    pub retried: Counter,
    /// Events nacked to be parked as poison.
    pub parked: Counter,
    /// Times the subscription dropped and the worker connected again.
    pub reconnects: Counter,
}

impl WorkerCounters {
    /// Registers the counters as `subscription_events_{handled,retried,parked}_total` and
    /// `subscription_reconnects_total`, labelled with the source stream and the group.
    pub fn register(&self, metrics: &Metrics, source: &SubscriptionSource, group: &str) {
        let source = source.to_string();
        let labels = [("stream", source.as_str()), ("group", group)];
        let all = [
            (
                "subscription_events_handled_total",
                "Events handled and acked.",
                &self.handled,
            ),
            (
                "subscription_events_retried_total",
                "Events nacked for a retry after a transient error.",
                &self.retried,
            ),
            (
                "subscription_events_parked_total",
                "Events parked as poison messages.",
                &self.parked,
            ),
            (
                "subscription_reconnects_total",
                "Times the subscription dropped and was connected again.",
                &self.reconnects,
            ),
        ];
        for (name, help, counter) in all {
            metrics.register(name, help, &labels, counter);
        }
    }
}

/// How a worker consumes and reconnects.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Events the server may have in flight to this consumer at once.
    pub buffer_size: usize,
    /// Events handled at the same time (1: one after another).
    pub concurrency: usize,
    /// The first wait before reconnecting; doubled after each failure up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The pause before nacking a transient failure for retry, doubled per earlier delivery up to `max_backoff`,
    /// so a struggling dependency is not hammered.
    pub retry_delay: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            buffer_size: 128,
            concurrency: 64,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            retry_delay: Duration::from_millis(50),
        }
    }
}

/// One consumer of a persistent subscription group.
pub struct Worker<H> {
    store: EventStore,
    source: SubscriptionSource,
    group: String,
    handler: H,
    options: WorkerOptions,
    counters: WorkerCounters,
}

/// How a connected subscription ended.
enum Ended {
    ShutDown,
    Dropped(eventstore::Error),
}

impl<H: Handler> Worker<H> {
    pub fn new(
        store: EventStore,
        source: SubscriptionSource,
        group: impl Into<String>,
        handler: H,
    ) -> Self {
        Self {
            store,
            source,
            group: group.into(),
            handler,
            options: WorkerOptions::default(),
            counters: WorkerCounters::default(),
        }
    }

    pub fn with_options(mut self, options: WorkerOptions) -> Self {
        self.options = options;
        self
    }

    /// Registers the worker's counters in `metrics` (see [`WorkerCounters::register`]).
    pub fn with_metrics(self, metrics: &Metrics) -> Self {
        self.counters.register(metrics, &self.source, &self.group);
        self
    }

    pub fn counters(&self) -> WorkerCounters {
        self.counters.clone()
    }

    /// Consumes until `shutdown` is cancelled, reconnecting whenever the subscription drops. On shutdown, the
    /// events being handled are finished and acked; events delivered but not started go back to the group.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = tracing::info_span!("worker", stream = %self.source, group = %self.group);
        self.run_inner(shutdown).instrument(span).await;
    }

    async fn run_inner(&self, shutdown: CancellationToken) {
        let mut backoff = self.options.first_backoff;
        loop {
            let subscribed = tokio::select! {
                _ = shutdown.cancelled() => return,
                subscribed = self.subscribe() => subscribed,
            };
            let error = match subscribed {
                Ok(mut subscription) => {
                    match self
                        .consume(&mut subscription, &shutdown, &mut backoff)
                        .await
                    {
                        Ended::ShutDown => return,
                        Ended::Dropped(error) => error,
                    }
                }
                Err(error) => error,
            };
            if matches!(error, eventstore::Error::AccessDenied) {
                tracing::error!(%error, "access to the group is denied; retrying in case permissions change");
            } else {
                tracing::warn!(%error, ?backoff, "subscription dropped; reconnecting");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
            self.counters.reconnects.inc();
        }
    }

    async fn subscribe(&self) -> eventstore::Result<PersistentSubscription> {
        let options = SubscribeToPersistentSubscriptionOptions::default()
            .buffer_size(self.options.buffer_size);
        let client = self.store.client();
        match &self.source {
            SubscriptionSource::Stream(stream) => {
                client
                    .subscribe_to_persistent_subscription(stream.as_str(), &self.group, &options)
                    .await
            }
            SubscriptionSource::All => {
                client
                    .subscribe_to_persistent_subscription_to_all(&self.group, &options)
                    .await
            }
        }
    }

    async fn consume(
        &self,
        subscription: &mut PersistentSubscription,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
    ) -> Ended {
        let concurrency = self.options.concurrency.max(1);
        let mut in_flight = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let mut finished = Vec::new();
                    while let Some(outcome) = in_flight.next().await {
                        finished.push(outcome);
                    }
                    // The subscription may be gone already; the server then redelivers, which is safe.
                    let _ = self.settle(subscription, finished).await;
                    return Ended::ShutDown;
                }
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                    // Whatever else has finished meanwhile is settled with it: one ack for many events.
                    let mut finished = vec![outcome];
                    while let Some(Some(outcome)) = in_flight.next().now_or_never() {
                        finished.push(outcome);
                    }
                    if let Err(error) = self.settle(subscription, finished).await {
                        return Ended::Dropped(error);
                    }
                }
                message = subscription.next_subscription_event(), if in_flight.len() < concurrency => {
                    match message {
                        Ok(PersistentSubscriptionEvent::EventAppeared { retry_count, event }) => {
                            *backoff = self.options.first_backoff;
                            let delivery = Delivery::new(event, retry_count);
                            in_flight.push(self.handle(delivery, shutdown));
                        }
                        Ok(PersistentSubscriptionEvent::Confirmed(id)) => {
                            *backoff = self.options.first_backoff;
                            tracing::info!(subscription = %id, "consumer connected");
                        }
                        Err(error) => {
                            // Let the handlers under way finish rather than cut them off mid-write; their events
                            // cannot be acked on this subscription, so the group delivers them again.
                            while in_flight.next().await.is_some() {}
                            return Ended::Dropped(error);
                        }
                    }
                }
            }
        }
    }

    /// Runs the handler on one delivery inside a span carrying the event's correlation id. A panicking handler
    /// is treated as a poison message rather than taking the worker down.
    async fn handle(
        &self,
        delivery: Delivery,
        shutdown: &CancellationToken,
    ) -> (Uuid, Result<(), HandlerError>) {
        let ack_id = delivery.ack_id();
        let retry_count = delivery.retry_count;
        let recorded = delivery.recorded();
        let span = tracing::info_span!(
            "handle",
            event_type = %recorded.event_type,
            event = %format_args!("{}@{}", recorded.revision, recorded.stream_id),
            retry_count,
            correlation_id = tracing::field::Empty,
        );
        // Reading the id parses the event's metadata: only worth it when the span is recorded.
        if !span.is_disabled() {
            if let Some(correlation_id) = delivery.correlation_id() {
                span.record("correlation_id", tracing::field::display(correlation_id));
            }
        }
        // The call is inside the async block so that a handler panicking before it returns its future is caught
        // as well as one panicking while it runs.
        let handled = async { self.handler.handle(delivery).await };
        let outcome = AssertUnwindSafe(handled.instrument(span.clone()))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(HandlerError::poison("the handler panicked")));
        if let Err(HandlerError::Transient(reason)) = &outcome {
            tracing::warn!(parent: &span, %reason, "transient failure; the event will be retried");
            let exponent = u32::try_from(retry_count.min(16)).unwrap_or(16);
            let delay = self
                .options
                .retry_delay
                .saturating_mul(2u32.saturating_pow(exponent))
                .min(self.options.max_backoff);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if let Err(HandlerError::Poison(reason)) = &outcome {
            tracing::error!(parent: &span, %reason, "poison message; parking it");
        }
        (ack_id, outcome)
    }

    /// Acks the events handled (in one message) and nacks the others.
    async fn settle(
        &self,
        subscription: &mut PersistentSubscription,
        finished: Vec<(Uuid, Result<(), HandlerError>)>,
    ) -> eventstore::Result<()> {
        let mut acks = Vec::with_capacity(finished.len());
        for (ack_id, outcome) in finished {
            match outcome {
                Ok(()) => acks.push(ack_id),
                Err(HandlerError::Transient(reason)) => {
                    subscription
                        .nack_ids([ack_id], NakAction::Retry, reason)
                        .await?;
                    self.counters.retried.inc();
                }
                Err(HandlerError::Poison(reason)) => {
                    subscription
                        .nack_ids([ack_id], NakAction::Park, reason)
                        .await?;
                    self.counters.parked.inc();
                }
            }
        }
        if !acks.is_empty() {
            let count = acks.len() as u64;
            subscription.ack_ids(acks).await?;
            self.counters.handled.add(count);
        }
        Ok(())
    }
}
