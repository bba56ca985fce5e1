//! The persistent-subscription worker against real groups: acks, retries after transient errors, parks poison
//! messages, reconnects after the subscription drops, stops on shutdown, and counts all of it for `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infrastructure::eventstore::{ReadStreamOptions, StreamPosition, SubscriptionFilter};
use infrastructure::{
    ensure_group, CancellationToken, Delivery, EventStore, GroupCreated, GroupSettings, Handler,
    HandlerError, Metrics, SubscriptionSource, Worker, WorkerCounters, WorkerOptions,
};

use crate::helpers::*;

const GROUP: &str = "tally-workers";

/// Settings that make a test's outcome quick to observe: checkpoint after every ack.
fn test_settings() -> GroupSettings {
    GroupSettings {
        resolve_link_tos: false,
        checkpoint_after: Duration::from_millis(100),
        checkpoint_lower_bound: 1,
        checkpoint_upper_bound: 1,
        ..GroupSettings::default()
    }
}

fn quick_options() -> WorkerOptions {
    WorkerOptions {
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        retry_delay: Duration::from_millis(10),
        ..WorkerOptions::default()
    }
}

/// What a handler saw: amount → the retry counts it was delivered with.
type Seen = Arc<Mutex<BTreeMap<u64, Vec<usize>>>>;

/// Handles `Added { amount }`: 13 is poison, 99 panics, 7 fails once then succeeds, anything else succeeds.
fn picky_handler(
    seen: Seen,
) -> impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync {
    move |delivery: Delivery| {
        let result = (|| {
            let Some(stored) = delivery.decode::<TallyEvent>()? else {
                return Ok(());
            };
            let TallyEvent::Added(Added { amount }) = stored.event else {
                return Ok(());
            };
            seen.lock()
                .expect("not poisoned")
                .entry(amount)
                .or_default()
                .push(delivery.retry_count);
            match amount {
                13 => Err(HandlerError::poison("thirteen is unlucky")),
                99 => panic!("a bug in the handler"),
                7 if delivery.retry_count == 0 => {
                    Err(HandlerError::transient("the ledger is busy"))
                }
                _ => Ok(()),
            }
        })();
        std::future::ready(result)
    }
}

fn spawn_worker(
    store: &EventStore,
    source: SubscriptionSource,
    seen: Seen,
    metrics: &Metrics,
) -> (
    WorkerCounters,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let worker = Worker::new(store.clone(), source, GROUP, picky_handler(seen))
        .with_options(quick_options())
        .with_metrics(metrics);
    let counters = worker.counters();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    (counters, shutdown, task)
}

async fn counts_reach(counters: &WorkerCounters, handled: u64, retried: u64, parked: u64) {
    wait_until(
        &format!("handled {handled}, retried {retried}, parked {parked}"),
        || async {
            (
                counters.handled.get(),
                counters.retried.get(),
                counters.parked.get(),
            ) == (handled, retried, parked)
        },
    )
    .await;
}

/// `(stream, revision)` of the events parked by `group` on `source`.
async fn parked(store: &EventStore, source: &str, group: &str) -> Vec<(String, u64)> {
    let parked = format!("$persistentsubscription-{source}::{group}-parked");
    let options = ReadStreamOptions::default().resolve_link_tos();
    let mut read = match store.client().read_stream(parked.as_str(), &options).await {
        Ok(read) => read,
        Err(_) => return Vec::new(),
    };
    let mut events = Vec::new();
    while let Ok(Some(event)) = read.next().await {
        if let Some(target) = &event.event {
            events.push((target.stream_id.clone(), target.revision));
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_acks_retries_and_parks() {
    let app = start_store().await;
    let stream = format!("tally-{}", unique_id());
    let source = SubscriptionSource::Stream(stream.clone());
    let created = ensure_group(&app.store, &source, GROUP, &test_settings())
        .await
        .expect("creates");
    assert_eq!(created, GroupCreated::Created);
    let again = ensure_group(&app.store, &source, GROUP, &test_settings())
        .await
        .expect("exists");
    assert_eq!(again, GroupCreated::AlreadyExisted);
    let info = app
        .store
        .client()
        .get_persistent_subscription_info(stream.as_str(), GROUP, &Default::default())
        .await
        .expect("the group is described");
    let settings = info.settings.expect("the group has settings");
    assert_eq!(
        (
            settings.start_from,
            settings.max_retry_count,
            settings.checkpoint_upper_bound
        ),
        (StreamPosition::Start, 10, 1),
        "the group was created with the settings given"
    );

    append_added(&app.store, &stream, &[1, 7, 13, 2, 99]).await;
    let seen: Seen = Arc::default();
    let metrics = Metrics::new();
    let (counters, shutdown, task) = spawn_worker(&app.store, source, seen.clone(), &metrics);

    counts_reach(&counters, 3, 1, 2).await;
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(seen[&1], vec![0]);
    assert_eq!(
        seen[&7],
        vec![0, 1],
        "the transient failure was delivered again, with its retry count"
    );
    assert_eq!(seen[&13], vec![0], "a poison message is not retried");
    assert_eq!(seen[&2], vec![0]);
    assert_eq!(
        seen[&99],
        vec![0],
        "a panicking handler parks its message and the worker goes on"
    );
    wait_until("the poison messages are in the parked stream", || async {
        let mut parked = parked(&app.store, &stream, GROUP).await;
        parked.sort();
        parked == vec![(stream.clone(), 2), (stream.clone(), 4)]
    })
    .await;

    let rendered = metrics.render();
    for line in [
        format!("subscription_events_handled_total{{group=\"{GROUP}\",stream=\"{stream}\"}} 3"),
        format!("subscription_events_retried_total{{group=\"{GROUP}\",stream=\"{stream}\"}} 1"),
        format!("subscription_events_parked_total{{group=\"{GROUP}\",stream=\"{stream}\"}} 2"),
    ] {
        assert!(rendered.contains(&line), "{line} in\n{rendered}");
    }

    shutdown.cancel();
    within("the worker to stop", task)
        .await
        .expect("the worker ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_when_its_subscription_drops() {
    let app = start_store().await;
    let stream = format!("tally-{}", unique_id());
    let source = SubscriptionSource::Stream(stream.clone());
    ensure_group(&app.store, &source, GROUP, &test_settings())
        .await
        .expect("creates");
    let seen: Seen = Arc::default();
    let (counters, shutdown, task) =
        spawn_worker(&app.store, source, seen.clone(), &Metrics::new());
    append_added(&app.store, &stream, &[1]).await;
    counts_reach(&counters, 1, 0, 0).await;

    app.store
        .client()
        .restart_persistent_subscription_subsystem(&Default::default())
        .await
        .expect("the subsystem restarts");
    wait_until("the worker reconnected", || async {
        counters.reconnects.get() >= 1
    })
    .await;
    append_added(&app.store, &stream, &[2]).await;
    counts_reach(&counters, 2, 0, 0).await;
    assert_eq!(seen.lock().expect("not poisoned")[&2], vec![0]);

    shutdown.cancel();
    within("the worker to stop", task)
        .await
        .expect("the worker ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_a_filtered_all_group_share_the_events() {
    let app = start_store().await;
    let category = format!("tallyall{}", unique_id());
    let mut settings = test_settings();
    settings.filter = Some(SubscriptionFilter::on_stream_name().add_prefix(format!("{category}-")));
    ensure_group(&app.store, &SubscriptionSource::All, GROUP, &settings)
        .await
        .expect("creates");

    let seen: Seen = Arc::default();
    let metrics = Metrics::new();
    let (first, stop_first, first_task) =
        spawn_worker(&app.store, SubscriptionSource::All, seen.clone(), &metrics);
    let (second, stop_second, second_task) = spawn_worker(
        &app.store,
        SubscriptionSource::All,
        seen.clone(),
        &Metrics::new(),
    );
    let amounts: Vec<u64> = (100..120).collect();
    for amount in &amounts {
        append_added(&app.store, &format!("{category}-{amount}"), &[*amount]).await;
    }
    wait_until("every event is handled by one of the two", || async {
        first.handled.get() + second.handled.get() == amounts.len() as u64
    })
    .await;
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        amounts,
        "each event once, none from other streams"
    );
    assert!(seen.values().all(|deliveries| deliveries == &vec![0]));

    stop_first.cancel();
    stop_second.cancel();
    within("the first worker to stop", first_task)
        .await
        .expect("ends");
    within("the second worker to stop", second_task)
        .await
        .expect("ends");
}

/// A handler written as a type, as services write theirs.
struct SummingHandler {
    sum: Arc<AtomicU64>,
}

impl Handler for SummingHandler {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        if let Some(stored) = delivery.decode::<TallyEvent>()? {
            if let TallyEvent::Added(Added { amount }) = stored.event {
                self.sum.fetch_add(amount, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_trying_a_group_that_does_not_exist_yet_and_stops_on_shutdown() {
    let app = start_store().await;
    let stream = format!("tally-{}", unique_id());
    let source = SubscriptionSource::Stream(stream.clone());
    let sum = Arc::new(AtomicU64::new(0));
    let handler = SummingHandler { sum: sum.clone() };
    let worker = Worker::new(app.store.clone(), source.clone(), GROUP, handler)
        .with_options(quick_options());
    let counters = worker.counters();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    wait_until("the worker has retried", || async {
        counters.reconnects.get() >= 2
    })
    .await;

    ensure_group(&app.store, &source, GROUP, &test_settings())
        .await
        .expect("creates");
    append_added(&app.store, &stream, &[5, 6]).await;
    counts_reach(&counters, 2, 0, 0).await;
    assert_eq!(sum.load(Ordering::SeqCst), 11);

    shutdown.cancel();
    within("the worker to stop", task)
        .await
        .expect("the worker ends cleanly");
}
