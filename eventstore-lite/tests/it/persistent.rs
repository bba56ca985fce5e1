//! Persistent subscriptions (competing consumers) through the official client: groups on a stream and on `$all`,
//! delivery and acks, nack / timeout retries and parking, replay of parked messages, the consumer strategies,
//! statistics, updates and deletes, and groups surviving a restart of the server or of the subsystem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use eventstore::{
    Client, Error, NakAction, PersistentSubscription, PersistentSubscriptionEvent,
    PersistentSubscriptionInfo, PersistentSubscriptionOptions, PersistentSubscriptionToAllOptions,
    Position, ReadStreamOptions, ReplayParkedMessagesOptions, ResolvedEvent, StreamPosition,
    SubscribeToPersistentSubscriptionOptions, SubscriptionFilter, SystemConsumerStrategy,
};
use eventstore_lite::ServerConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::*;

const GROUP: &str = "workers";

// ----------------------------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------------------------

fn from_start() -> PersistentSubscriptionOptions {
    PersistentSubscriptionOptions::default().start_from(StreamPosition::Start)
}

/// A group that checkpoints after every acknowledged event, so that what a restart resumes from is exact.
fn checkpointing_every_ack(
    options: PersistentSubscriptionOptions,
) -> PersistentSubscriptionOptions {
    options
        .checkpoint_after(Duration::from_millis(100))
        .checkpoint_lower_bound(1)
        .checkpoint_upper_bound(1)
}

fn with_buffer(size: usize) -> SubscribeToPersistentSubscriptionOptions {
    SubscribeToPersistentSubscriptionOptions::default().buffer_size(size)
}

async fn connect(
    client: &Client,
    stream: &str,
    group: &str,
    buffer_size: usize,
) -> PersistentSubscription {
    within(
        &format!("connecting to {stream}::{group}"),
        client.subscribe_to_persistent_subscription(stream, group, &with_buffer(buffer_size)),
    )
    .await
    .unwrap_or_else(|error| panic!("connecting to {stream}::{group}: {error:?}"))
}

async fn connect_to_all(
    client: &Client,
    group: &str,
    buffer_size: usize,
) -> PersistentSubscription {
    within(
        &format!("connecting to $all::{group}"),
        client.subscribe_to_persistent_subscription_to_all(group, &with_buffer(buffer_size)),
    )
    .await
    .unwrap_or_else(|error| panic!("connecting to $all::{group}: {error:?}"))
}

/// The first message of a consumer: the server's confirmation, carrying the subscription id.
async fn confirmed(subscription: &mut PersistentSubscription) -> String {
    match within(
        "the subscription confirmation",
        subscription.next_subscription_event(),
    )
    .await
    {
        Ok(PersistentSubscriptionEvent::Confirmed(id)) => id,
        other => panic!("the first message confirms the subscription, got {other:?}"),
    }
}

/// The next event handed to a consumer, with its retry count; confirmations are skipped.
async fn next_delivery(subscription: &mut PersistentSubscription) -> (usize, ResolvedEvent) {
    loop {
        match within(
            "the next persistent subscription event",
            subscription.next_subscription_event(),
        )
        .await
        {
            Ok(PersistentSubscriptionEvent::EventAppeared { retry_count, event }) => {
                return (retry_count, event)
            }
            Ok(PersistentSubscriptionEvent::Confirmed(_)) => continue,
            Err(error) => panic!("the persistent subscription failed: {error:?}"),
        }
    }
}

/// The next `count` deliveries of one consumer, none acked.
async fn next_deliveries(subscription: &mut PersistentSubscription, count: usize) -> Vec<Delivery> {
    let mut deliveries = Vec::with_capacity(count);
    for _ in 0..count {
        let (retry_count, event) = next_delivery(subscription).await;
        deliveries.push(Delivery::of(0, retry_count, &event));
    }
    deliveries
}

async fn ack_all(subscription: &mut PersistentSubscription, deliveries: &[Delivery]) {
    subscription
        .ack_ids(deliveries.iter().map(|d| d.ack_id))
        .await
        .expect("the ack is sent");
}

/// The error a consumer meets when the server refuses it. The client reports it from
/// `subscribe_to_persistent_subscription` when the server fails the call before answering, else from the first
/// read of the subscription.
async fn refusal(result: eventstore::Result<PersistentSubscription>) -> Error {
    match result {
        Err(error) => error,
        Ok(mut subscription) => {
            match within("the refusal", subscription.next_subscription_event()).await {
                Err(error) => error,
                Ok(message) => {
                    panic!("expected the server to refuse the consumer, it sent {message:?}")
                }
            }
        }
    }
}

fn assert_not_found<T: Debug>(what: &str, result: eventstore::Result<T>) {
    assert!(
        matches!(result, Err(Error::ResourceNotFound)),
        "{what}: expected ResourceNotFound, got {result:?}"
    );
}

/// What a consumer was handed: enough to tell events apart and to ack them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivery {
    consumer: usize,
    retry_count: usize,
    /// Stream and revision of the event itself: the link's target when the group resolves links.
    stream: String,
    revision: u64,
    /// The `n` of the event's `{"n": n}` payload.
    n: u64,
    /// The id a consumer acks with: the link's when the event came through a link.
    ack_id: Uuid,
}

impl Delivery {
    fn of(consumer: usize, retry_count: usize, event: &ResolvedEvent) -> Self {
        let target = event
            .event
            .as_ref()
            .expect("the delivered event (or the link's target) is present");
        Delivery {
            consumer,
            retry_count,
            stream: target.stream_id.clone(),
            revision: target.revision,
            n: payload_number(target),
            ack_id: event.get_original_event().id,
        }
    }
}

fn revisions(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.revision).collect()
}

fn numbers(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.n).collect()
}

fn retry_counts(deliveries: &[Delivery]) -> Vec<usize> {
    deliveries.iter().map(|d| d.retry_count).collect()
}

/// Consumers that each run in a task, ack every event as soon as it arrives, and report it.
struct AckingConsumers {
    tasks: Vec<Option<JoinHandle<()>>>,
    sender: mpsc::UnboundedSender<Delivery>,
    received: mpsc::UnboundedReceiver<Delivery>,
}

impl AckingConsumers {
    fn new() -> Self {
        let (sender, received) = mpsc::unbounded_channel();
        AckingConsumers {
            tasks: Vec::new(),
            sender,
            received,
        }
    }

    /// Starts acking on `subscription`; returns the consumer's number.
    fn add(&mut self, mut subscription: PersistentSubscription) -> usize {
        let consumer = self.tasks.len();
        let sender = self.sender.clone();
        self.tasks.push(Some(tokio::spawn(async move {
            // The loop ends when the subscription fails or the test stops listening.
            while let Ok(message) = subscription.next_subscription_event().await {
                if let PersistentSubscriptionEvent::EventAppeared { retry_count, event } = message {
                    let delivery = Delivery::of(consumer, retry_count, &event);
                    if subscription.ack_ids([delivery.ack_id]).await.is_err()
                        || sender.send(delivery).is_err()
                    {
                        return;
                    }
                }
            }
        })));
        consumer
    }

    /// Disconnects a consumer: its task, and with it its `PersistentSubscription`, is dropped.
    async fn stop(&mut self, consumer: usize) {
        if let Some(task) = self.tasks[consumer].take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The next `count` deliveries, across all consumers.
    async fn collect(&mut self, count: usize) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut deliveries = Vec::with_capacity(count);
        while deliveries.len() < count {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(delivery)) => deliveries.push(delivery),
                Ok(None) => unreachable!("the sender lives as long as the consumers"),
                Err(_) => panic!(
                    "timed out after {DEADLINE:?} with {} of {count} deliveries: {deliveries:?}",
                    deliveries.len()
                ),
            }
        }
        deliveries
    }
}

impl Drop for AckingConsumers {
    fn drop(&mut self) {
        for task in self.tasks.iter().flatten() {
            task.abort();
        }
    }
}

async fn group_info(
    client: &Client,
    stream: &str,
    group: &str,
) -> eventstore::Result<PersistentSubscriptionInfo<u64>> {
    within(
        &format!("GetInfo of {stream}::{group}"),
        client.get_persistent_subscription_info(stream, group, &Default::default()),
    )
    .await
}

async fn group_info_to_all(
    client: &Client,
    group: &str,
) -> eventstore::Result<PersistentSubscriptionInfo<Position>> {
    within(
        &format!("GetInfo of $all::{group}"),
        client.get_persistent_subscription_info_to_all(group, &Default::default()),
    )
    .await
}

/// Polls a group's info until `accept` holds; fails with the last answer once [`DEADLINE`] has passed.
async fn wait_for_info<A, F, Fut>(
    what: &str,
    mut fetch: F,
    accept: impl Fn(&PersistentSubscriptionInfo<A>) -> bool,
) -> PersistentSubscriptionInfo<A>
where
    A: Clone + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = eventstore::Result<PersistentSubscriptionInfo<A>>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = fetch().await;
        if let Ok(info) = &last {
            if accept(info) {
                return info.clone();
            }
        }
        if Instant::now() >= deadline {
            panic!("timed out after {DEADLINE:?} waiting until {what}; the last GetInfo answered {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_group(
    client: &Client,
    stream: &str,
    group: &str,
    what: &str,
    accept: impl Fn(&PersistentSubscriptionInfo<u64>) -> bool,
) -> PersistentSubscriptionInfo<u64> {
    wait_for_info(
        &format!("{stream}::{group}: {what}"),
        || group_info(client, stream, group),
        accept,
    )
    .await
}

async fn wait_for_group_to_all(
    client: &Client,
    group: &str,
    what: &str,
    accept: impl Fn(&PersistentSubscriptionInfo<Position>) -> bool,
) -> PersistentSubscriptionInfo<Position> {
    wait_for_info(
        &format!("$all::{group}: {what}"),
        || group_info_to_all(client, group),
        accept,
    )
    .await
}

fn in_flight<A>(info: &PersistentSubscriptionInfo<A>) -> usize {
    info.stats.total_in_flight_messages
}

fn parked<A>(info: &PersistentSubscriptionInfo<A>) -> usize {
    info.stats.parked_message_count
}

fn parked_stream(stream: &str, group: &str) -> String {
    format!("$persistentsubscription-{stream}::{group}-parked")
}

/// `(stream, revision)` of every event a group has parked, read through the parked stream's links.
async fn parked_events(client: &Client, stream: &str, group: &str) -> Vec<(String, u64)> {
    let parked = parked_stream(stream, group);
    let events = match read_stream_with(
        client,
        &parked,
        &ReadStreamOptions::default().resolve_link_tos(),
    )
    .await
    {
        Ok(events) => events,
        Err(Error::ResourceNotFound) => Vec::new(),
        Err(other) => panic!("reading {parked}: {other:?}"),
    };
    events
        .iter()
        .map(|e| {
            let link = e.link.as_ref().expect("a parked message is a link");
            assert_eq!(link.event_type, "$>", "a parked message is a $> link");
            assert_eq!(link.stream_id, parked);
            let target = e
                .event
                .as_ref()
                .expect("a parked message's link resolves to the original event");
            (target.stream_id.clone(), target.revision)
        })
        .collect()
}

async fn append(client: &Client, stream: &str, events: Vec<eventstore::EventData>) {
    within(
        &format!("appending to {stream}"),
        client.append_to_stream(stream, &Default::default(), events),
    )
    .await
    .unwrap_or_else(|error| panic!("appending to {stream}: {error:?}"));
}

/// A durable server on `dir` without system projections.
async fn start_on(dir: &Path) -> TestApp {
    let mut config = ServerConfig::on_disk(dir);
    config.start_standard_projections = false;
    spawn_app_with(config).await
}

// ----------------------------------------------------------------------------------------------------------------
// Creating, updating, deleting
// ----------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_names_are_unique_per_source_and_missing_groups_are_not_found() -> anyhow::Result<()>
{
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    let other_stream = unique_stream("orders");

    // A group may be created on a stream that does not exist yet.
    client
        .create_persistent_subscription(stream.as_str(), GROUP, &Default::default())
        .await?;
    let duplicate = client
        .create_persistent_subscription(stream.as_str(), GROUP, &Default::default())
        .await;
    assert!(
        matches!(duplicate, Err(Error::ResourceAlreadyExists)),
        "a second {GROUP} on {stream}: {duplicate:?}"
    );
    client
        .create_persistent_subscription(other_stream.as_str(), GROUP, &Default::default())
        .await
        .expect("the same group name on another stream is another group");
    client
        .create_persistent_subscription_to_all(GROUP, &Default::default())
        .await
        .expect("the same group name on $all is another group");
    let duplicate = client
        .create_persistent_subscription_to_all(GROUP, &Default::default())
        .await;
    assert!(
        matches!(duplicate, Err(Error::ResourceAlreadyExists)),
        "a second {GROUP} on $all: {duplicate:?}"
    );

    let missing = "nobody";
    assert_not_found(
        "updating a missing group",
        client
            .update_persistent_subscription(stream.as_str(), missing, &Default::default())
            .await,
    );
    assert_not_found(
        "updating a missing group on $all",
        client
            .update_persistent_subscription_to_all(missing, &Default::default())
            .await,
    );
    assert_not_found(
        "deleting a missing group",
        client
            .delete_persistent_subscription(stream.as_str(), missing, &Default::default())
            .await,
    );
    assert_not_found(
        "deleting a missing group on $all",
        client
            .delete_persistent_subscription_to_all(missing, &Default::default())
            .await,
    );
    assert_not_found(
        "GetInfo of a missing group",
        group_info(client, &stream, missing).await,
    );
    assert_not_found(
        "GetInfo of a missing group on $all",
        group_info_to_all(client, missing).await,
    );
    assert_not_found(
        "GetInfo of a group on a stream that has none",
        group_info(client, &unique_stream("orders"), GROUP).await,
    );
    assert_not_found(
        "replaying the parked messages of a missing group",
        client
            .replay_parked_messages(stream.as_str(), missing, &Default::default())
            .await,
    );
    let error = refusal(
        client
            .subscribe_to_persistent_subscription(stream.as_str(), missing, &with_buffer(10))
            .await,
    )
    .await;
    assert!(
        matches!(error, Error::ResourceNotFound),
        "connecting to a missing group: {error:?}"
    );
    let error = refusal(
        client
            .subscribe_to_persistent_subscription_to_all(missing, &with_buffer(10))
            .await,
    )
    .await;
    assert!(
        matches!(error, Error::ResourceNotFound),
        "connecting to a missing group on $all: {error:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_drops_its_consumers_and_forgets_it() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    let kept_stream = unique_stream("orders");
    client
        .create_persistent_subscription(stream.as_str(), GROUP, &from_start())
        .await?;
    client
        .create_persistent_subscription(kept_stream.as_str(), GROUP, &from_start())
        .await?;
    append(client, &stream, json_events("OrderPlaced", 0, 1)).await;

    let mut consumer = connect(client, &stream, GROUP, 10).await;
    let delivered = next_deliveries(&mut consumer, 1).await;
    ack_all(&mut consumer, &delivered).await;
    wait_for_group(client, &stream, GROUP, "the event is acked", |info| {
        in_flight(info) == 0
    })
    .await;

    client
        .delete_persistent_subscription(stream.as_str(), GROUP, &Default::default())
        .await?;
    // The server ends the consumer's call with `exception: persistent-subscription-dropped`, which the client
    // reports as this IllegalStateError (commands.rs, PersistentSubscription::next_subscription_event).
    let ended = within(
        "the deleted group's consumer to be dropped",
        consumer.next_subscription_event(),
    )
    .await;
    match ended {
        Err(Error::IllegalStateError(message)) => {
            assert_eq!(message, "Persistent subscription has dropped")
        }
        other => panic!("the consumer of a deleted group is dropped, got {other:?}"),
    }

    assert_not_found(
        "GetInfo of the deleted group",
        group_info(client, &stream, GROUP).await,
    );
    let listed: Vec<(String, String)> = client
        .list_all_persistent_subscriptions(&Default::default())
        .await?
        .into_iter()
        .map(|info| (info.event_source, info.group_name))
        .collect();
    assert_eq!(listed, vec![(kept_stream.clone(), GROUP.to_owned())]);

    // The name is free again, and the new group starts afresh: the old group's checkpoint went with it.
    client
        .create_persistent_subscription(stream.as_str(), GROUP, &from_start())
        .await?;
    let info = group_info(client, &stream, GROUP).await?;
    assert_eq!(
        info.stats.last_checkpointed_event_revision, None,
        "a re-created group has no checkpoint: {info:#?}"
    );
    let mut consumer = connect(client, &stream, GROUP, 10).await;
    let delivered = next_deliveries(&mut consumer, 1).await;
    assert_eq!((delivered[0].revision, delivered[0].retry_count), (0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_a_live_group_changes_its_settings_and_behaviour() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start()
                .message_timeout(Duration::from_secs(30))
                .max_retry_count(10)
                .consumer_strategy_name(SystemConsumerStrategy::RoundRobin),
        )
        .await?;
    let mut first = connect(client, &stream, GROUP, 10).await;
    confirmed(&mut first).await;

    client
        .update_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start()
                .message_timeout(Duration::from_millis(300))
                .max_retry_count(1)
                .consumer_strategy_name(SystemConsumerStrategy::DispatchToSingle),
        )
        .await?;
    let info = group_info(client, &stream, GROUP).await?;
    let settings = info.settings.expect("GetInfo carries the settings");
    assert_eq!(settings.message_timeout, Duration::from_millis(300));
    assert_eq!(settings.max_retry_count, 1);
    assert_eq!(
        settings.consumer_strategy_name,
        SystemConsumerStrategy::DispatchToSingle
    );

    // EventStoreDB drops a group's consumers when it is updated; whether or not this server does, a consumer
    // connected after the update works under the new settings.
    drop(first);
    wait_for_group(client, &stream, GROUP, "no consumer is connected", |info| {
        info.connections.is_empty()
    })
    .await;
    let mut second = connect(client, &stream, GROUP, 10).await;
    confirmed(&mut second).await;
    append(client, &stream, json_events("OrderPlaced", 0, 1)).await;

    // The 300 ms timeout (not the old 30 s) retries the event once, then max_retry_count 1 parks it.
    let delivered = next_deliveries(&mut second, 2).await;
    assert_eq!(revisions(&delivered), vec![0, 0]);
    assert_eq!(retry_counts(&delivered), vec![0, 1]);
    wait_for_group(client, &stream, GROUP, "the event is parked", |info| {
        parked(info) == 1 && in_flight(info) == 0
    })
    .await;
    assert_eq!(
        parked_events(client, &stream, GROUP).await,
        vec![(stream.clone(), 0)]
    );
    Ok(())
}

// ----------------------------------------------------------------------------------------------------------------
// Delivery, ack and nack
// ----------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_group_delivers_in_order_from_where_it_starts() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    // (what, events before the group is created, where it starts, the first revision delivered). Two more events
    // are appended after Create and before a consumer connects: a group that starts at the end delivers those.
    let cases = [
        ("start of an existing stream", 5, StreamPosition::Start, 0),
        ("end of an existing stream", 5, StreamPosition::End, 5),
        ("revision 2, inclusive", 5, StreamPosition::Position(2), 2),
        (
            "start of a stream written later",
            0,
            StreamPosition::Start,
            0,
        ),
        ("end of a stream written later", 0, StreamPosition::End, 0),
        (
            "revision 1 of a stream written later",
            0,
            StreamPosition::Position(1),
            1,
        ),
    ];
    for (what, before, start, first) in cases {
        let stream = unique_stream("orders");
        if before > 0 {
            append(client, &stream, json_events("OrderPlaced", 0, before)).await;
        }
        client
            .create_persistent_subscription(
                stream.as_str(),
                GROUP,
                &PersistentSubscriptionOptions::default().start_from(start),
            )
            .await?;
        append(client, &stream, json_events("OrderPlaced", before, 2)).await;

        let mut consumer = connect(client, &stream, GROUP, 10).await;
        let id = confirmed(&mut consumer).await;
        assert!(!id.is_empty(), "{what}: a subscription id");
        let expected: Vec<u64> = (first..before + 2).collect();
        let delivered = next_deliveries(&mut consumer, expected.len()).await;
        assert_eq!(revisions(&delivered), expected, "{what}");
        assert_eq!(numbers(&delivered), expected, "{what}: the payloads");
        assert!(
            delivered
                .iter()
                .all(|d| d.stream == stream && d.retry_count == 0),
            "{what}: {delivered:?}"
        );
        ack_all(&mut consumer, &delivered).await;
        wait_for_group(client, &stream, GROUP, "nothing is in flight", |info| {
            in_flight(info) == 0
        })
        .await;

        // Acked events are gone: the next delivery is the next event written.
        append(client, &stream, json_events("OrderPlaced", before + 2, 1)).await;
        let next = next_deliveries(&mut consumer, 1).await;
        assert_eq!(
            (next[0].revision, next[0].retry_count),
            (before + 2, 0),
            "{what}"
        );
    }
    Ok(())
}

/// A live group woken by one append of more events than it reads at a time (64 once live, whatever its
/// `read_batch_size`) delivers every one, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_group_delivers_a_large_append_in_order_once() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    append(client, &stream, json_events("OrderPlaced", 0, 1)).await;
    client
        .create_persistent_subscription(stream.as_str(), GROUP, &from_start().read_batch_size(200))
        .await?;
    let mut consumer = connect(client, &stream, GROUP, 1000).await;
    confirmed(&mut consumer).await;
    // Delivered from the end of the stream's history: the group is live from here on.
    let first = next_deliveries(&mut consumer, 1).await;
    ack_all(&mut consumer, &first).await;

    append(client, &stream, json_events("OrderPlaced", 1, 300)).await;
    let delivered = next_deliveries(&mut consumer, 300).await;
    assert_eq!(revisions(&delivered), (1..301).collect::<Vec<u64>>());
    assert_eq!(numbers(&delivered), (1..301).collect::<Vec<u64>>());
    assert!(
        delivered.iter().all(|d| d.retry_count == 0),
        "{delivered:?}"
    );
    ack_all(&mut consumer, &delivered).await;
    wait_for_group(client, &stream, GROUP, "nothing is in flight", |info| {
        in_flight(info) == 0
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_pages_through_a_long_history_in_order_and_never_holds_more_than_its_buffer(
) -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("ledger");
    append(client, &stream, json_events("Posted", 0, 250)).await;
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start()
                .read_batch_size(10)
                .history_buffer_size(20)
                .live_buffer_size(20),
        )
        .await?;

    let buffer = 5;
    let mut consumer = connect(client, &stream, GROUP, buffer).await;
    let first = next_deliveries(&mut consumer, buffer).await;
    assert_eq!(revisions(&first), vec![0, 1, 2, 3, 4]);
    // Back-pressure: with nothing acked the server holds the rest back.
    let info = wait_for_group(client, &stream, GROUP, "the buffer is full", |info| {
        in_flight(info) == buffer
    })
    .await;
    assert_eq!(info.connections.len(), 1);
    assert_eq!(info.connections[0].in_flight_messages, buffer);
    ack_all(&mut consumer, &first).await;

    let mut expected = buffer as u64;
    while expected < 300 {
        if expected == 100 {
            // Live events arrive while the group is still paging through history.
            append(client, &stream, json_events("Posted", 250, 50)).await;
        }
        let delivery = next_deliveries(&mut consumer, 1).await;
        assert_eq!(
            (delivery[0].revision, delivery[0].n, delivery[0].retry_count),
            (expected, expected, 0)
        );
        ack_all(&mut consumer, &delivery).await;
        expected += 1;
    }
    wait_for_group(client, &stream, GROUP, "everything is acked", |info| {
        in_flight(info) == 0 && info.stats.total_items == 300
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_not_acked_within_the_message_timeout_is_redelivered() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start()
                .message_timeout(Duration::from_millis(300))
                .max_retry_count(10),
        )
        .await?;
    append(client, &stream, json_events("OrderPlaced", 0, 2)).await;

    let mut consumer = connect(client, &stream, GROUP, 10).await;
    let delivered = next_deliveries(&mut consumer, 2).await;
    assert_eq!(revisions(&delivered), vec![0, 1]);
    assert_eq!(retry_counts(&delivered), vec![0, 0]);
    ack_all(&mut consumer, &delivered[1..]).await;

    // Only the un-acked event comes back, once its timeout has passed, with its retry count raised.
    let retried = next_deliveries(&mut consumer, 1).await;
    assert_eq!((retried[0].revision, retried[0].retry_count), (0, 1));
    assert_eq!(retried[0].ack_id, delivered[0].ack_id);
    ack_all(&mut consumer, &retried).await;
    wait_for_group(client, &stream, GROUP, "nothing is in flight", |info| {
        in_flight(info) == 0
    })
    .await;

    append(client, &stream, json_events("OrderPlaced", 2, 1)).await;
    let next = next_deliveries(&mut consumer, 1).await;
    assert_eq!((next[0].revision, next[0].retry_count), (2, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_keeps_timing_out_is_parked_after_max_retry_count() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start()
                .message_timeout(Duration::from_millis(200))
                .max_retry_count(2),
        )
        .await?;
    append(client, &stream, json_events("OrderPlaced", 0, 1)).await;

    let mut consumer = connect(client, &stream, GROUP, 10).await;
    // Delivered once, then retried max_retry_count times, then parked.
    let delivered = next_deliveries(&mut consumer, 3).await;
    assert_eq!(revisions(&delivered), vec![0, 0, 0]);
    assert_eq!(retry_counts(&delivered), vec![0, 1, 2]);
    wait_for_group(client, &stream, GROUP, "the event is parked", |info| {
        parked(info) == 1 && in_flight(info) == 0
    })
    .await;
    assert_eq!(
        parked_events(client, &stream, GROUP).await,
        vec![(stream.clone(), 0)]
    );

    // The parked event is not delivered again.
    append(client, &stream, json_events("OrderPlaced", 1, 1)).await;
    let next = next_deliveries(&mut consumer, 1).await;
    assert_eq!((next[0].revision, next[0].retry_count), (1, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_events_are_retried_parked_or_skipped() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    client
        .create_persistent_subscription(stream.as_str(), GROUP, &from_start())
        .await?;
    append(client, &stream, json_events("OrderPlaced", 0, 3)).await;

    let mut consumer = connect(client, &stream, GROUP, 10).await;
    let delivered = next_deliveries(&mut consumer, 3).await;
    assert_eq!(revisions(&delivered), vec![0, 1, 2]);
    consumer
        .nack_ids([delivered[0].ack_id], NakAction::Retry, "try again")
        .await?;
    consumer
        .nack_ids([delivered[1].ack_id], NakAction::Park, "poison")
        .await?;
    consumer
        .nack_ids([delivered[2].ack_id], NakAction::Skip, "not for us")
        .await?;

    let retried = next_deliveries(&mut consumer, 1).await;
    assert_eq!((retried[0].revision, retried[0].retry_count), (0, 1));
    ack_all(&mut consumer, &retried).await;

    // Neither the parked nor the skipped event comes back.
    append(client, &stream, json_events("OrderPlaced", 3, 1)).await;
    let next = next_deliveries(&mut consumer, 1).await;
    assert_eq!((next[0].revision, next[0].retry_count), (3, 0));
    ack_all(&mut consumer, &next).await;

    wait_for_group(
        client,
        &stream,
        GROUP,
        "one event is parked and nothing is in flight",
        |info| parked(info) == 1 && in_flight(info) == 0,
    )
    .await;
    assert_eq!(
        parked_events(client, &stream, GROUP).await,
        vec![(stream.clone(), 1)]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_parked_messages_delivers_them_again() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    append(client, &stream, json_events("OrderPlaced", 0, 4)).await;
    let everything = "replay-everything";
    let two_at_first = "replay-two-at-first";
    for group in [everything, two_at_first] {
        client
            .create_persistent_subscription(stream.as_str(), group, &from_start())
            .await?;
    }
    let mut consumers = Vec::new();
    for group in [everything, two_at_first] {
        let mut consumer = connect(client, &stream, group, 10).await;
        let delivered = next_deliveries(&mut consumer, 4).await;
        consumer
            .nack_ids(delivered.iter().map(|d| d.ack_id), NakAction::Park, "later")
            .await?;
        wait_for_group(
            client,
            &stream,
            group,
            "all four events are parked",
            |info| parked(info) == 4 && in_flight(info) == 0,
        )
        .await;
        consumers.push(consumer);
    }
    let mut two_at_first_consumer = consumers.pop().expect("a consumer per group");
    let mut everything_consumer = consumers.pop().expect("a consumer per group");

    client
        .replay_parked_messages(stream.as_str(), everything, &Default::default())
        .await?;
    let replayed = next_deliveries(&mut everything_consumer, 4).await;
    assert_eq!(revisions(&replayed), vec![0, 1, 2, 3]);
    ack_all(&mut everything_consumer, &replayed).await;
    wait_for_group(
        client,
        &stream,
        everything,
        "nothing is parked or in flight",
        |info| parked(info) == 0 && in_flight(info) == 0,
    )
    .await;

    // stop_at: only the first two parked messages come back; the others stay parked until the next replay.
    client
        .replay_parked_messages(
            stream.as_str(),
            two_at_first,
            &ReplayParkedMessagesOptions::default().stop_at(2),
        )
        .await?;
    let replayed = next_deliveries(&mut two_at_first_consumer, 2).await;
    assert_eq!(revisions(&replayed), vec![0, 1]);
    ack_all(&mut two_at_first_consumer, &replayed).await;
    wait_for_group(
        client,
        &stream,
        two_at_first,
        "two events are still parked and nothing is in flight",
        |info| parked(info) == 2 && in_flight(info) == 0,
    )
    .await;
    client
        .replay_parked_messages(stream.as_str(), two_at_first, &Default::default())
        .await?;
    let replayed = next_deliveries(&mut two_at_first_consumer, 2).await;
    assert_eq!(revisions(&replayed), vec![2, 3]);
    ack_all(&mut two_at_first_consumer, &replayed).await;
    wait_for_group(
        client,
        &stream,
        two_at_first,
        "nothing is parked or in flight",
        |info| parked(info) == 0 && in_flight(info) == 0,
    )
    .await;
    Ok(())
}

// ----------------------------------------------------------------------------------------------------------------
// Competing consumers
// ----------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_event_to_one_consumer_and_splits_the_load_fairly(
) -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    // Every consumer's buffer holds the whole load, so the split is the strategy's alone, not a race between
    // consumers acking at different speeds (see the lock-step test below for small buffers).
    for (consumer_count, buffer) in [(2usize, 500usize), (3, 500)] {
        let stream = unique_stream("payments");
        client
            .create_persistent_subscription(
                stream.as_str(),
                GROUP,
                &from_start().consumer_strategy_name(SystemConsumerStrategy::RoundRobin),
            )
            .await?;
        let mut consumers = AckingConsumers::new();
        for _ in 0..consumer_count {
            consumers.add(connect(client, &stream, GROUP, buffer).await);
        }
        wait_for_group(
            client,
            &stream,
            GROUP,
            "every consumer is connected",
            |info| info.connections.len() == consumer_count,
        )
        .await;

        let total = 100 * consumer_count as u64;
        append(client, &stream, json_events("PaymentRequested", 0, total)).await;
        let deliveries = consumers.collect(total as usize).await;

        let delivered: BTreeSet<u64> = deliveries.iter().map(|d| d.revision).collect();
        assert_eq!(
            delivered.len(),
            deliveries.len(),
            "{consumer_count} consumers: no event is delivered twice"
        );
        assert_eq!(delivered, (0..total).collect::<BTreeSet<u64>>());
        assert!(deliveries.iter().all(|d| d.retry_count == 0));
        let mut per_consumer = vec![0usize; consumer_count];
        for delivery in &deliveries {
            per_consumer[delivery.consumer] += 1;
        }
        assert!(
            per_consumer.iter().all(|&count| (90..=110).contains(&count)),
            "{consumer_count} consumers with buffer {buffer} share {total} events fairly: {per_consumer:?}"
        );
        wait_for_group(client, &stream, GROUP, "everything is acked", |info| {
            in_flight(info) == 0 && info.stats.total_items == total as usize
        })
        .await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_and_refills_each_consumer_as_it_acks() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("payments");
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start().consumer_strategy_name(SystemConsumerStrategy::RoundRobin),
        )
        .await?;
    let buffer = 10;
    let mut first = connect(client, &stream, GROUP, buffer).await;
    confirmed(&mut first).await;
    let mut second = connect(client, &stream, GROUP, buffer).await;
    confirmed(&mut second).await;
    wait_for_group(
        client,
        &stream,
        GROUP,
        "both consumers are connected",
        |info| info.connections.len() == 2,
    )
    .await;
    append(client, &stream, json_events("PaymentRequested", 0, 200)).await;

    // The first fill alternates between the two consumers.
    let mut to_first = next_deliveries(&mut first, buffer).await;
    let mut to_second = next_deliveries(&mut second, buffer).await;
    let evens: Vec<u64> = (0..2 * buffer as u64).step_by(2).collect();
    let odds: Vec<u64> = (1..2 * buffer as u64).step_by(2).collect();
    let mut first_fill = [revisions(&to_first), revisions(&to_second)];
    first_fill.sort();
    assert_eq!(first_fill, [evens, odds]);

    // From then on each consumer is refilled as it acks, and never holds more than its buffer: reading exactly a
    // buffer's worth from each per round would hang (and fail) otherwise.
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    for _round in 1..10 {
        seen.extend(revisions(&to_first));
        seen.extend(revisions(&to_second));
        ack_all(&mut first, &to_first).await;
        ack_all(&mut second, &to_second).await;
        to_first = next_deliveries(&mut first, buffer).await;
        to_second = next_deliveries(&mut second, buffer).await;
    }
    seen.extend(revisions(&to_first));
    seen.extend(revisions(&to_second));
    assert_eq!(seen, (0..200).collect::<BTreeSet<u64>>());
    ack_all(&mut first, &to_first).await;
    ack_all(&mut second, &to_second).await;
    wait_for_group(client, &stream, GROUP, "everything is acked", |info| {
        in_flight(info) == 0 && info.stats.total_items == 200
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_to_single_fills_the_first_consumer_before_the_next() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("payments");
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start().consumer_strategy_name(SystemConsumerStrategy::DispatchToSingle),
        )
        .await?;
    let mut first = connect(client, &stream, GROUP, 5).await;
    confirmed(&mut first).await;
    wait_for_group(
        client,
        &stream,
        GROUP,
        "the first consumer is connected",
        |info| info.connections.len() == 1,
    )
    .await;
    let mut second = connect(client, &stream, GROUP, 5).await;
    confirmed(&mut second).await;
    wait_for_group(
        client,
        &stream,
        GROUP,
        "both consumers are connected",
        |info| info.connections.len() == 2,
    )
    .await;

    append(client, &stream, json_events("PaymentRequested", 0, 8)).await;
    assert_eq!(
        revisions(&next_deliveries(&mut first, 5).await),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        revisions(&next_deliveries(&mut second, 3).await),
        vec![5, 6, 7]
    );
    let info = wait_for_group(client, &stream, GROUP, "all eight are in flight", |info| {
        in_flight(info) == 8
    })
    .await;
    let mut per_connection: Vec<usize> = info
        .connections
        .iter()
        .map(|c| c.in_flight_messages)
        .collect();
    per_connection.sort_unstable();
    assert_eq!(per_connection, vec![3, 5]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_keeps_each_stream_on_one_consumer_and_moves_it_when_the_consumer_leaves(
) -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    client
        .create_persistent_subscription_to_all(
            GROUP,
            &PersistentSubscriptionToAllOptions::default()
                .start_from(StreamPosition::Start)
                .filter(SubscriptionFilter::on_stream_name().add_prefix("account-"))
                .consumer_strategy_name(SystemConsumerStrategy::Pinned),
        )
        .await?;
    let mut consumers = AckingConsumers::new();
    for _ in 0..3 {
        consumers.add(connect_to_all(client, GROUP, 100).await);
    }
    wait_for_group_to_all(client, GROUP, "three consumers are connected", |info| {
        info.connections.len() == 3
    })
    .await;
    // Enough streams that every consumer is likely to own some, and that a reshuffle of the streams of the
    // consumers that stay would not go unnoticed.
    let streams: Vec<String> = (0..12).map(|_| unique_stream("account")).collect();

    /// Which consumer each stream's events went to, checking that each stream went to exactly one, in order.
    fn owners(deliveries: &[Delivery], revisions: std::ops::Range<u64>) -> BTreeMap<String, usize> {
        let mut per_stream: BTreeMap<String, Vec<&Delivery>> = BTreeMap::new();
        for delivery in deliveries {
            per_stream
                .entry(delivery.stream.clone())
                .or_default()
                .push(delivery);
        }
        per_stream
            .into_iter()
            .map(|(stream, deliveries)| {
                let consumers: BTreeSet<usize> = deliveries.iter().map(|d| d.consumer).collect();
                assert_eq!(
                    consumers.len(),
                    1,
                    "all of {stream}'s events go to one consumer: {deliveries:?}"
                );
                assert_eq!(
                    deliveries.iter().map(|d| d.revision).collect::<Vec<_>>(),
                    revisions.clone().collect::<Vec<_>>(),
                    "{stream}'s events arrive once each, in order"
                );
                (stream, deliveries[0].consumer)
            })
            .collect()
    }

    for n in 0..5 {
        for stream in &streams {
            append(client, stream, json_events("Deposited", n, 1)).await;
        }
    }
    let before = owners(&consumers.collect(60).await, 0..5);
    assert_eq!(before.len(), streams.len());
    wait_for_group_to_all(client, GROUP, "everything is acked", |info| {
        in_flight(info) == 0
    })
    .await;

    let leaving = before[&streams[0]];
    consumers.stop(leaving).await;
    wait_for_group_to_all(client, GROUP, "two consumers are left", |info| {
        info.connections.len() == 2
    })
    .await;

    for n in 5..10 {
        for stream in &streams {
            append(client, stream, json_events("Deposited", n, 1)).await;
        }
    }
    let after = owners(&consumers.collect(60).await, 5..10);
    for stream in &streams {
        if before[stream] == leaving {
            assert_ne!(
                after[stream], leaving,
                "{stream} moved off the consumer that left"
            );
        } else {
            assert_eq!(
                after[stream], before[stream],
                "{stream} stays on its consumer"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_flight_to_a_consumer_that_leaves_go_to_another() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("payments");
    client
        .create_persistent_subscription(stream.as_str(), GROUP, &from_start())
        .await?;
    let mut leaving = connect(client, &stream, GROUP, 10).await;
    confirmed(&mut leaving).await;
    append(client, &stream, json_events("PaymentRequested", 0, 5)).await;
    let unacked = next_deliveries(&mut leaving, 5).await;
    assert_eq!(revisions(&unacked), vec![0, 1, 2, 3, 4]);

    let mut staying = connect(client, &stream, GROUP, 10).await;
    confirmed(&mut staying).await;
    wait_for_group(
        client,
        &stream,
        GROUP,
        "both consumers are connected",
        |info| info.connections.len() == 2,
    )
    .await;
    drop(leaving);

    let mut redelivered = revisions(&next_deliveries(&mut staying, 5).await);
    redelivered.sort_unstable();
    assert_eq!(redelivered, vec![0, 1, 2, 3, 4]);
    let info = group_info(client, &stream, GROUP).await?;
    assert_eq!(info.connections.len(), 1, "{info:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_subscriber_count_refuses_consumers_beyond_it() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("payments");
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &from_start().max_subscriber_count(1),
        )
        .await?;
    let mut first = connect(client, &stream, GROUP, 10).await;
    confirmed(&mut first).await;

    let error = refusal(
        client
            .subscribe_to_persistent_subscription(stream.as_str(), GROUP, &with_buffer(10))
            .await,
    )
    .await;
    match error {
        Error::Grpc { code, message } => {
            assert_eq!(code, tonic::Code::FailedPrecondition, "{message}");
            assert!(
                message.starts_with("Maximum subscriptions reached"),
                "{message}"
            );
        }
        other => panic!("a second consumer is refused, got {other:?}"),
    }
    let info = group_info(client, &stream, GROUP).await?;
    assert_eq!(info.connections.len(), 1, "{info:#?}");

    // Once the first consumer has left, another may join.
    drop(first);
    wait_for_group(client, &stream, GROUP, "no consumer is connected", |info| {
        info.connections.is_empty()
    })
    .await;
    let mut replacement = connect(client, &stream, GROUP, 10).await;
    confirmed(&mut replacement).await;
    append(client, &stream, json_events("PaymentRequested", 0, 1)).await;
    assert_eq!(
        revisions(&next_deliveries(&mut replacement, 1).await),
        vec![0]
    );
    Ok(())
}

// ----------------------------------------------------------------------------------------------------------------
// $all, links
// ----------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_on_all_deliver_the_events_their_filter_selects() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let billing_1 = unique_stream("billing");
    let billing_2 = unique_stream("billing");
    let orders = unique_stream("orders");
    for (stream, event_type, n) in [
        (&billing_1, "InvoiceIssued", 0),
        (&orders, "OrderPlaced", 1),
        (&billing_2, "InvoicePaid", 2),
        (&orders, "InvoiceRequested", 3),
        (&billing_1, "Reminded", 4),
    ] {
        append(client, stream, vec![json_event(event_type, n)]).await;
    }
    let invoice_paid_position = original(&read_stream(client, &billing_2).await?[0]).position;

    let by_stream = || SubscriptionFilter::on_stream_name().add_prefix("billing-");
    let groups = [
        (
            "billing",
            PersistentSubscriptionToAllOptions::default()
                .start_from(StreamPosition::Start)
                .filter(by_stream()),
            vec![0, 2, 4, 5],
        ),
        (
            "invoices",
            PersistentSubscriptionToAllOptions::default()
                .start_from(StreamPosition::Start)
                .filter(SubscriptionFilter::on_event_type().add_prefix("Invoice")),
            vec![0, 2, 3, 5],
        ),
        (
            "billing-from-the-paid-invoice",
            PersistentSubscriptionToAllOptions::default()
                .start_from(StreamPosition::Position(invoice_paid_position))
                .filter(by_stream()),
            vec![2, 4, 5],
        ),
        (
            "billing-from-now",
            PersistentSubscriptionToAllOptions::default()
                .start_from(StreamPosition::End)
                .filter(by_stream()),
            vec![5],
        ),
    ];
    for (group, options, _) in &groups {
        client
            .create_persistent_subscription_to_all(group, options)
            .await?;
    }
    // Written after every group exists and before any consumer connects.
    let billing_3 = unique_stream("billing");
    append(client, &billing_3, vec![json_event("InvoiceIssued", 5)]).await;

    for (group, _, expected) in &groups {
        let mut consumer = connect_to_all(client, group, 10).await;
        let delivered = next_deliveries(&mut consumer, expected.len()).await;
        assert_eq!(&numbers(&delivered), expected, "$all::{group}");
        ack_all(&mut consumer, &delivered).await;
        let info = wait_for_group_to_all(client, group, "nothing is in flight", |info| {
            in_flight(info) == 0
        })
        .await;
        assert_eq!(info.event_source, "$all");
    }

    // Parking and replaying work on $all groups too.
    let mut consumer = connect_to_all(client, "billing", 10).await;
    let billing_4 = unique_stream("billing");
    append(client, &billing_4, vec![json_event("Reminded", 6)]).await;
    let delivered = next_deliveries(&mut consumer, 1).await;
    assert_eq!(numbers(&delivered), vec![6]);
    consumer
        .nack_ids([delivered[0].ack_id], NakAction::Park, "later")
        .await?;
    wait_for_group_to_all(client, "billing", "the event is parked", |info| {
        parked(info) == 1 && in_flight(info) == 0
    })
    .await;
    assert_eq!(
        parked_events(client, "$all", "billing").await,
        vec![(billing_4.clone(), 0)]
    );
    client
        .replay_parked_messages_to_all("billing", &Default::default())
        .await?;
    let replayed = next_deliveries(&mut consumer, 1).await;
    assert_eq!(
        (replayed[0].stream.as_str(), replayed[0].n),
        (billing_4.as_str(), 6)
    );
    ack_all(&mut consumer, &replayed).await;
    wait_for_group_to_all(
        client,
        "billing",
        "nothing is parked or in flight",
        |info| parked(info) == 0 && in_flight(info) == 0,
    )
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_on_projection_streams_resolve_links_and_are_acked_by_the_link() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let client = &app.client;
    let by_category = "by-category";
    let by_type = "by-type";
    let resolving = from_start().resolve_link_tos(true);
    client
        .create_persistent_subscription("$ce-shop", by_category, &resolving)
        .await?;
    client
        .create_persistent_subscription("$et-ShopOpened", by_type, &resolving)
        .await?;

    let shop_1 = unique_stream("shop");
    let shop_2 = unique_stream("shop");
    append(client, &shop_1, vec![json_event("ShopOpened", 0)]).await;
    append(client, &shop_2, vec![json_event("ShopOpened", 1)]).await;
    append(client, &shop_1, vec![json_event("ShopClosed", 2)]).await;

    let mut consumers = Vec::new();
    for (link_stream, group, expected) in [
        (
            "$ce-shop",
            by_category,
            vec![(&shop_1, 0), (&shop_2, 0), (&shop_1, 1)],
        ),
        ("$et-ShopOpened", by_type, vec![(&shop_1, 0), (&shop_2, 0)]),
    ] {
        let mut consumer = connect(client, link_stream, group, 10).await;
        for (link_revision, (stream, revision)) in expected.into_iter().enumerate() {
            let (retry_count, event) = next_delivery(&mut consumer).await;
            assert_eq!(retry_count, 0);
            let target = event.event.as_ref().expect("the link is resolved");
            let link = event.link.as_ref().expect("the link comes with its target");
            assert_eq!(
                (target.stream_id.as_str(), target.revision),
                (stream.as_str(), revision)
            );
            assert_eq!(
                (
                    link.stream_id.as_str(),
                    link.revision,
                    link.event_type.as_str()
                ),
                (link_stream, link_revision as u64, "$>")
            );
            assert_eq!(
                String::from_utf8_lossy(&link.data),
                format!("{revision}@{stream}")
            );
            // The client acks with the link's id (ResolvedEvent::get_original_event).
            consumer.ack(event).await?;
        }
        wait_for_group(
            client,
            link_stream,
            group,
            "the acks by link id took",
            |info| in_flight(info) == 0,
        )
        .await;
        consumers.push((link_stream, consumer));
    }

    let shop_3 = unique_stream("shop");
    append(client, &shop_3, vec![json_event("ShopOpened", 3)]).await;
    for (link_stream, consumer) in &mut consumers {
        let next = next_deliveries(consumer, 1).await;
        assert_eq!(
            (
                next[0].stream.as_str(),
                next[0].revision,
                next[0].retry_count
            ),
            (shop_3.as_str(), 0, 0),
            "{link_stream}: acked events are not redelivered"
        );
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------------------------
// Statistics
// ----------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_info_and_list_describe_groups_and_their_consumers() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("info");
    append(client, &stream, json_events("Noted", 0, 3)).await;
    let positions: Vec<Position> = read_stream(client, &stream)
        .await?
        .iter()
        .map(|e| original(e).position)
        .collect();

    let detailed = checkpointing_every_ack(
        PersistentSubscriptionOptions::default()
            .start_from(StreamPosition::Position(1))
            .resolve_link_tos(true)
            .message_timeout(Duration::from_secs(7))
            .max_retry_count(3)
            .live_buffer_size(100)
            .read_batch_size(10)
            .history_buffer_size(50)
            .max_subscriber_count(5)
            .consumer_strategy_name(SystemConsumerStrategy::Pinned),
    );
    client
        .create_persistent_subscription(stream.as_str(), "detailed", &detailed)
        .await?;
    client
        .create_persistent_subscription(stream.as_str(), "plain", &Default::default())
        .await?;
    client
        .create_persistent_subscription_to_all(
            "everything",
            &PersistentSubscriptionToAllOptions::default()
                .start_from(StreamPosition::Position(positions[1]))
                .filter(SubscriptionFilter::on_stream_name().add_prefix(&stream))
                .checkpoint_after(Duration::from_millis(100))
                .checkpoint_lower_bound(1)
                .checkpoint_upper_bound(1),
        )
        .await?;

    let info = group_info(client, &stream, "detailed").await?;
    assert_eq!(info.group_name, "detailed");
    assert_eq!(info.event_source, stream);
    assert!(info.connections.is_empty());
    assert_eq!((parked(&info), in_flight(&info)), (0, 0));
    let settings = info.settings.expect("GetInfo carries the settings");
    let wanted = detailed.clone().settings_mut().clone();
    assert_eq!(settings.start_from, StreamPosition::Position(1));
    assert_eq!(settings.resolve_link_tos, wanted.resolve_link_tos);
    assert_eq!(settings.message_timeout, wanted.message_timeout);
    assert_eq!(settings.max_retry_count, wanted.max_retry_count);
    assert_eq!(settings.live_buffer_size, wanted.live_buffer_size);
    assert_eq!(settings.read_batch_size, wanted.read_batch_size);
    assert_eq!(settings.history_buffer_size, wanted.history_buffer_size);
    assert_eq!(settings.checkpoint_after, wanted.checkpoint_after);
    assert_eq!(
        settings.checkpoint_lower_bound,
        wanted.checkpoint_lower_bound
    );
    assert_eq!(
        settings.checkpoint_upper_bound,
        wanted.checkpoint_upper_bound
    );
    assert_eq!(settings.max_subscriber_count, wanted.max_subscriber_count);
    assert_eq!(
        settings.consumer_strategy_name,
        SystemConsumerStrategy::Pinned
    );

    let mut for_stream: Vec<(String, String)> = client
        .list_persistent_subscriptions_for_stream(stream.as_str(), &Default::default())
        .await?
        .into_iter()
        .map(|info| (info.event_source, info.group_name))
        .collect();
    for_stream.sort();
    assert_eq!(
        for_stream,
        vec![
            (stream.clone(), "detailed".to_owned()),
            (stream.clone(), "plain".to_owned())
        ]
    );
    let to_all = client
        .list_persistent_subscriptions_to_all(&Default::default())
        .await?;
    assert_eq!(to_all.len(), 1, "{to_all:#?}");
    assert_eq!(
        (
            to_all[0].event_source.as_str(),
            to_all[0].group_name.as_str()
        ),
        ("$all", "everything")
    );
    assert_eq!(
        to_all[0].settings.as_ref().map(|s| s.start_from),
        Some(StreamPosition::Position(positions[1]))
    );
    let mut everything: Vec<(String, String)> = client
        .list_all_persistent_subscriptions(&Default::default())
        .await?
        .into_iter()
        .map(|info| (info.event_source, info.group_name))
        .collect();
    everything.sort();
    assert_eq!(
        everything,
        vec![
            ("$all".to_owned(), "everything".to_owned()),
            (stream.clone(), "detailed".to_owned()),
            (stream.clone(), "plain".to_owned())
        ]
    );

    // A consumer holding two un-acked events.
    let mut consumer = connect(client, &stream, "detailed", 10).await;
    let delivered = next_deliveries(&mut consumer, 2).await;
    assert_eq!(revisions(&delivered), vec![1, 2]);
    wait_for_group(
        client,
        &stream,
        "detailed",
        "one connection holds two events",
        |info| {
            in_flight(info) == 2
                && info.connections.len() == 1
                && info.connections[0].in_flight_messages == 2
                && info.connections[0].available_slots == 8
                && info.stats.last_known_event_revision == Some(2)
        },
    )
    .await;
    ack_all(&mut consumer, &delivered).await;
    wait_for_group(
        client,
        &stream,
        "detailed",
        "both are acked and checkpointed",
        |info| {
            in_flight(info) == 0
                && info.connections.len() == 1
                && info.connections[0].in_flight_messages == 0
                && info.connections[0].available_slots == 10
                && info.stats.total_items == 2
                && info.stats.last_checkpointed_event_revision == Some(2)
        },
    )
    .await;

    // The $all group starts at (and includes) the event at its start position.
    let mut consumer = connect_to_all(client, "everything", 10).await;
    let delivered = next_deliveries(&mut consumer, 2).await;
    assert_eq!(revisions(&delivered), vec![1, 2]);
    ack_all(&mut consumer, &delivered).await;
    let last = positions[2];
    wait_for_group_to_all(
        client,
        "everything",
        "both are acked and checkpointed",
        |info| {
            in_flight(info) == 0
                && info.stats.total_items == 2
                && info.stats.last_known_position == Some(last)
                && info
                    .stats
                    .last_checkpointed_position
                    .is_some_and(|checkpoint| checkpoint >= last)
        },
    )
    .await;
    Ok(())
}

// ----------------------------------------------------------------------------------------------------------------
// Durability
// ----------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_resumes_from_its_checkpoint_after_a_restart_and_loses_nothing(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let stream = unique_stream("orders");
    let in_order = "acked-in-order";
    let with_a_gap = "acked-with-a-gap";
    let options = checkpointing_every_ack(from_start())
        .max_retry_count(4)
        .message_timeout(Duration::from_secs(20))
        .consumer_strategy_name(SystemConsumerStrategy::DispatchToSingle);

    {
        let app = start_on(dir.path()).await;
        let client = &app.client;
        append(client, &stream, json_events("OrderPlaced", 0, 10)).await;
        for group in [in_order, with_a_gap] {
            client
                .create_persistent_subscription(stream.as_str(), group, &options)
                .await?;
        }

        let mut consumer = connect(client, &stream, in_order, 10).await;
        let delivered = next_deliveries(&mut consumer, 10).await;
        assert_eq!(revisions(&delivered), (0..10).collect::<Vec<u64>>());
        ack_all(&mut consumer, &delivered[..6]).await;
        wait_for_group(
            client,
            &stream,
            in_order,
            "0..=5 are checkpointed",
            |info| info.stats.last_checkpointed_event_revision == Some(5),
        )
        .await;

        // Revision 3 stays un-acked: the checkpoint cannot pass it.
        let mut gap_consumer = connect(client, &stream, with_a_gap, 10).await;
        let delivered = next_deliveries(&mut gap_consumer, 10).await;
        let acked: Vec<Delivery> = delivered
            .into_iter()
            .filter(|d| [0, 1, 2, 4, 5].contains(&d.revision))
            .collect();
        ack_all(&mut gap_consumer, &acked).await;
        wait_for_group(
            client,
            &stream,
            with_a_gap,
            "0..=2 are checkpointed",
            |info| info.stats.last_checkpointed_event_revision == Some(2),
        )
        .await;

        drop((consumer, gap_consumer));
        let TestApp { server, client } = app;
        drop(client);
        within("the shutdown", server.shutdown()).await?;
    }

    let app = start_on(dir.path()).await;
    let client = &app.client;
    let info = group_info(client, &stream, in_order).await?;
    let settings = info.settings.expect("GetInfo carries the settings");
    assert_eq!(settings.start_from, StreamPosition::Start);
    assert_eq!(settings.max_retry_count, 4);
    assert_eq!(settings.message_timeout, Duration::from_secs(20));
    assert_eq!(settings.checkpoint_after, Duration::from_millis(100));
    assert_eq!(
        (
            settings.checkpoint_lower_bound,
            settings.checkpoint_upper_bound
        ),
        (1, 1)
    );
    assert_eq!(
        settings.consumer_strategy_name,
        SystemConsumerStrategy::DispatchToSingle
    );
    assert_eq!(info.stats.last_checkpointed_event_revision, Some(5));

    // Everything after the checkpoint, and nothing before it, then live events.
    let mut consumer = connect(client, &stream, in_order, 10).await;
    let delivered = next_deliveries(&mut consumer, 4).await;
    assert_eq!(revisions(&delivered), vec![6, 7, 8, 9]);
    ack_all(&mut consumer, &delivered).await;
    append(client, &stream, json_events("OrderPlaced", 10, 2)).await;
    let delivered = next_deliveries(&mut consumer, 2).await;
    assert_eq!(revisions(&delivered), vec![10, 11]);
    ack_all(&mut consumer, &delivered).await;

    // At least once: 4 and 5 may come again (they were after the checkpoint), 0..=2 may not, and every un-acked
    // event does.
    let mut gap_consumer = connect(client, &stream, with_a_gap, 10).await;
    let first = next_deliveries(&mut gap_consumer, 1).await;
    assert_eq!(first[0].revision, 3, "the first event after the checkpoint");
    ack_all(&mut gap_consumer, &first).await;
    let mut missing: BTreeSet<u64> = [6, 7, 8, 9, 10, 11].into_iter().collect();
    while !missing.is_empty() {
        let delivered = next_deliveries(&mut gap_consumer, 1).await;
        let revision = delivered[0].revision;
        assert!(
            (3..=11).contains(&revision),
            "revision {revision} was checkpointed before the restart"
        );
        missing.remove(&revision);
        ack_all(&mut gap_consumer, &delivered).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_reconnect_after_the_subsystem_restarts() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let client = &app.client;
    let stream = unique_stream("orders");
    client
        .create_persistent_subscription(
            stream.as_str(),
            GROUP,
            &checkpointing_every_ack(from_start()),
        )
        .await?;
    let mut before = connect(client, &stream, GROUP, 10).await;
    append(client, &stream, json_events("OrderPlaced", 0, 1)).await;
    let delivered = next_deliveries(&mut before, 1).await;
    ack_all(&mut before, &delivered).await;
    wait_for_group(
        client,
        &stream,
        GROUP,
        "revision 0 is checkpointed",
        |info| info.stats.last_checkpointed_event_revision == Some(0),
    )
    .await;

    client
        .restart_persistent_subscription_subsystem(&Default::default())
        .await?;
    drop(before);
    wait_for_group(
        client,
        &stream,
        GROUP,
        "the group is back with no consumer",
        |info| info.connections.is_empty(),
    )
    .await;

    let mut after = connect(client, &stream, GROUP, 10).await;
    confirmed(&mut after).await;
    append(client, &stream, json_events("OrderPlaced", 1, 1)).await;
    let delivered = next_deliveries(&mut after, 1).await;
    assert_eq!(
        (delivered[0].revision, delivered[0].retry_count),
        (1, 0),
        "the checkpointed event is not redelivered; the new one is"
    );
    Ok(())
}

/// With a live read interval, a group woken by commits that come while it waits out its interval reads them
/// together when it ends: every event is still delivered once, in order, and nothing waits for a later commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_group_delivers_every_event_of_quick_commits_once_in_order() {
    const COUNT: u64 = 200;
    let app = spawn_paced_app().await;
    let stream = unique_stream("paced");
    app.client
        .create_persistent_subscription(stream.as_str(), GROUP, &from_start())
        .await
        .expect("the group is created");
    let mut consumer = connect(&app.client, &stream, GROUP, 500).await;
    confirmed(&mut consumer).await;

    append_one_by_one(&app.client, &stream, COUNT).await;

    let deliveries = next_deliveries(&mut consumer, COUNT as usize).await;
    let numbers: Vec<u64> = deliveries.iter().map(|d| d.n).collect();
    assert_eq!(numbers, (0..COUNT).collect::<Vec<_>>());
    assert!(deliveries.iter().all(|d| d.retry_count == 0));
    ack_all(&mut consumer, &deliveries).await;
}
