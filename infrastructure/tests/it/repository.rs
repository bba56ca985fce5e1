//! The aggregate repository: a round trip through `execute`, deciding again after losing a race, giving up after
//! too many, rejections, snapshots written every N events and used on load, and the time machine.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use events::EventMetadata;
use infrastructure::eventstore::{EventData, ExpectedRevision};
use infrastructure::{
    snapshot_stream, Aggregate, CommandContext, ExecuteError, Repository, SNAPSHOT_EVENT_TYPE,
};
use uuid::Uuid;

use crate::helpers::*;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the tally is capped at {0}")]
struct OverCap(u64);

fn context() -> CommandContext {
    CommandContext::new(EventMetadata::for_request(Uuid::new_v4()))
}

/// Blocks the calling (decision) thread until `future` completes: a decision is synchronous, and these tests
/// make a concurrent write from inside one.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

#[tokio::test]
async fn execute_decides_on_the_current_state_and_saves_with_metadata() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone());
    let id = unique_id();

    let fresh = repository.load(&id).await.expect("loads");
    assert_eq!(
        (fresh.state.clone(), fresh.revision, fresh.exists()),
        (Tally::default(), None, false)
    );

    let context = context();
    let executed = repository
        .execute_viewing(
            &id,
            &context,
            |tally: &Tally| Ok::<_, OverCap>(vec![added(tally.total + 2), added(3)]),
            Tally::clone,
        )
        .await
        .expect("executes");
    assert_eq!(
        executed.view,
        Tally {
            total: 5,
            events: 2
        }
    );
    assert_eq!(executed.attempts, 1);
    assert_eq!(executed.appended.map(|a| a.last_revision), Some(1));

    let executed = repository
        .execute_viewing(
            &id,
            &context,
            |tally: &Tally| Ok::<_, OverCap>(vec![added(tally.total)]),
            Tally::clone,
        )
        .await
        .expect("executes");
    assert_eq!(executed.view.total, 10);

    let loaded = repository.load(&id).await.expect("loads");
    assert_eq!((loaded.state.total, loaded.revision), (10, Some(2)));
    let stored = app
        .store
        .read_stream::<TallyEvent>(&Tally::stream_name(&id))
        .await
        .expect("reads");
    assert!(
        stored.iter().all(|e| e.metadata == context.metadata),
        "every event carries the command's metadata"
    );

    // A decision with no events writes nothing.
    let executed = repository
        .execute_viewing(
            &id,
            &context,
            |_: &Tally| Ok::<_, OverCap>(vec![]),
            Tally::clone,
        )
        .await
        .expect("executes");
    assert_eq!((executed.appended, executed.view.total), (None, 10));
    assert_eq!(repository.load(&id).await.expect("loads").revision, Some(2));
}

#[tokio::test]
async fn a_rejected_command_writes_nothing() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone());
    let id = unique_id();
    let result = repository
        .execute(&id, &context(), |tally: &Tally| {
            if tally.total + 50 > 10 {
                Err(OverCap(10))
            } else {
                Ok(vec![added(50)])
            }
        })
        .await;
    assert!(
        matches!(result, Err(ExecuteError::Rejected(OverCap(10)))),
        "{result:?}"
    );
    assert!(!repository.load(&id).await.expect("loads").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_aggregate_take_turns_instead_of_racing() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone()).with_cache(100);
    let id = unique_id();
    let mut commands = tokio::task::JoinSet::new();
    for n in 1..=20 {
        let (repository, id) = (repository.clone(), id.clone());
        commands.spawn(async move {
            repository
                .execute(&id, &context(), |_: &Tally| {
                    Ok::<_, OverCap>(vec![added(n)])
                })
                .await
        });
    }
    let mut attempts = Vec::new();
    while let Some(done) = commands.join_next().await {
        attempts.push(done.expect("no panic").expect("executes").attempts);
    }
    assert_eq!(
        attempts,
        vec![1; 20],
        "no decision lost a race to another in this process"
    );
    let stored = repository.load(&id).await.expect("loads").state;
    assert_eq!((stored.total, stored.events), ((1..=20).sum(), 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_lost_a_race_is_made_again_on_the_new_state() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone());
    let id = unique_id();
    let stream = Tally::stream_name(&id);
    append_added(&app.store, &stream, &[1]).await;

    let decisions = AtomicU32::new(0);
    let seen_totals = std::sync::Mutex::new(Vec::new());
    let executed = repository
        .execute_viewing(
            &id,
            &context(),
            |tally: &Tally| {
                seen_totals.lock().expect("not poisoned").push(tally.total);
                if decisions.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Another writer appends between this decision's load and its save.
                    block_on(append_added(&app.store, &stream, &[100]));
                }
                // "Double the total": only right if decided on the latest state.
                Ok::<_, OverCap>(vec![added(tally.total)])
            },
            Tally::clone,
        )
        .await
        .expect("executes after one conflict");
    assert_eq!(executed.attempts, 2);
    assert_eq!(*seen_totals.lock().expect("not poisoned"), vec![1, 101]);
    assert_eq!(executed.view.total, 202);
    assert_eq!(repository.load(&id).await.expect("loads").state.total, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_gives_up_when_every_attempt_loses_the_race() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone()).with_max_attempts(3);
    let id = unique_id();
    let stream = Tally::stream_name(&id);
    let decisions = AtomicU32::new(0);
    let result = repository
        .execute(&id, &context(), |_: &Tally| {
            decisions.fetch_add(1, Ordering::SeqCst);
            block_on(append_added(&app.store, &stream, &[1]));
            Ok::<_, OverCap>(vec![added(1000)])
        })
        .await;
    assert!(
        matches!(result, Err(ExecuteError::Conflict { attempts: 3, .. })),
        "{result:?}"
    );
    assert_eq!(decisions.load(Ordering::SeqCst), 3);
    let loaded = repository.load(&id).await.expect("loads");
    assert_eq!(
        loaded.state.total, 3,
        "only the competing writer's events are stored"
    );
}

#[tokio::test]
async fn idempotent_commands_get_deterministic_event_ids() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone());
    let id = unique_id();
    let metadata = EventMetadata::for_request(Uuid::new_v4());
    let context = CommandContext::idempotent(metadata, "message-42/credit");
    repository
        .execute(&id, &context, |_: &Tally| {
            Ok::<_, OverCap>(vec![added(1), added(2)])
        })
        .await
        .expect("executes");
    let stored = app
        .store
        .read_stream::<TallyEvent>(&Tally::stream_name(&id))
        .await
        .expect("reads");
    let stream = Tally::stream_name(&id);
    let expected: Vec<Uuid> = (0..2)
        .map(|i| events::ids::deterministic_event_id("message-42/credit", &format!("{stream}/{i}")))
        .collect();
    assert_eq!(stored.iter().map(|e| e.id).collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn snapshots_are_written_every_n_events_and_loads_start_from_them() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone()).with_snapshots_every(3);
    let id = unique_id();
    let stream = Tally::stream_name(&id);
    for amount in 1..=7 {
        repository
            .execute(&id, &context(), |_: &Tally| {
                Ok::<_, OverCap>(vec![added(amount)])
            })
            .await
            .expect("executes");
    }
    let snapshots = snapshot_revisions(&app.store, &stream).await;
    assert_eq!(snapshots, vec![2, 5], "a snapshot after every third event");
    let loaded = repository.load(&id).await.expect("loads");
    assert_eq!((loaded.state.total, loaded.revision), (28, Some(6)));
    assert_eq!(
        loaded.state,
        Repository::<Tally>::new(app.store.clone())
            .load(&id)
            .await
            .expect("loads")
            .state,
        "the snapshot + tail equals the full fold"
    );

    // Proof that a load starts from the latest snapshot: plant one whose state no fold could give.
    plant_snapshot(
        &app.store,
        &stream,
        6,
        Tally {
            total: 1_000_000,
            events: 7,
        },
    )
    .await;
    let loaded = repository.load(&id).await.expect("loads");
    assert_eq!(loaded.state.total, 1_000_000);
    // A snapshot of another schema version is ignored.
    plant_raw_snapshot(
        &app.store,
        &stream,
        serde_json::json!({"schemaVersion": 99, "revision": 6, "state": {"other": "shape"}}),
    )
    .await;
    assert_eq!(repository.load(&id).await.expect("loads").state.total, 28);
}

#[tokio::test]
async fn the_time_machine_rebuilds_past_states_by_revision_and_instant() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone()).with_snapshots_every(2);
    let id = unique_id();
    let mut instants: Vec<DateTime<Utc>> = Vec::new();
    for amount in [1, 10, 100, 1000, 10000] {
        repository
            .execute(&id, &context(), |_: &Tally| {
                Ok::<_, OverCap>(vec![added(amount)])
            })
            .await
            .expect("executes");
        instants.push(Utc::now());
    }
    let stream = Tally::stream_name(&id);
    assert_eq!(snapshot_revisions(&app.store, &stream).await, vec![1, 3]);
    let totals = [1, 11, 111, 1111, 11111];
    for (revision, total) in totals.iter().enumerate() {
        let at = repository
            .load_at_revision(&id, revision as u64)
            .await
            .expect("loads");
        assert_eq!(
            (at.state.total, at.revision),
            (*total, Some(revision as u64)),
            "at revision {revision}"
        );
        let then = repository
            .load_as_of(&id, instants[revision])
            .await
            .expect("loads");
        assert_eq!(
            then.state.total, *total,
            "as of the instant after revision {revision}"
        );
    }
    let before = repository
        .load_as_of(&id, DateTime::<Utc>::MIN_UTC)
        .await
        .expect("loads");
    assert_eq!((before.state.total, before.revision), (0, None));
    let beyond = repository.load_at_revision(&id, 99).await.expect("loads");
    assert_eq!(beyond.state.total, 11111);
}

async fn snapshot_revisions(store: &infrastructure::EventStore, stream: &str) -> Vec<u64> {
    let mut read = store
        .client()
        .read_stream(snapshot_stream(stream).as_str(), &Default::default())
        .await
        .expect("reads");
    let mut revisions = Vec::new();
    while let Some(event) = read.next().await.expect("reads") {
        let recorded = event.get_original_event();
        assert_eq!(recorded.event_type, SNAPSHOT_EVENT_TYPE);
        let body: serde_json::Value = recorded.as_json().expect("JSON");
        revisions.push(body["revision"].as_u64().expect("a revision"));
    }
    revisions
}

async fn plant_snapshot(
    store: &infrastructure::EventStore,
    stream: &str,
    revision: u64,
    state: Tally,
) {
    plant_raw_snapshot(
        store,
        stream,
        serde_json::json!({"schemaVersion": 1, "revision": revision, "state": state}),
    )
    .await;
}

async fn plant_raw_snapshot(
    store: &infrastructure::EventStore,
    stream: &str,
    body: serde_json::Value,
) {
    store
        .client()
        .append_to_stream(
            snapshot_stream(stream).as_str(),
            &infrastructure::eventstore::AppendToStreamOptions::default()
                .expected_revision(ExpectedRevision::Any),
            EventData::json(SNAPSHOT_EVENT_TYPE, &body).expect("JSON"),
        )
        .await
        .expect("appends");
}

/// Two processes, each with its own cache, deciding on one aggregate in turn: every decision is made on the
/// state the store has, never on what a process remembers from before the other one wrote.
#[tokio::test]
async fn cached_aggregates_never_decide_on_a_state_another_writer_changed() {
    let app = start_store().await;
    let first = Repository::<Tally>::new(app.store.clone()).with_cache(100);
    let second = Repository::<Tally>::new(app.store.clone()).with_cache(100);
    let id = unique_id();
    let capped = |cap: u64| {
        move |tally: &Tally| {
            if tally.total >= cap {
                Err(OverCap(cap))
            } else {
                Ok(vec![added(1)])
            }
        }
    };

    for round in 0..4u64 {
        let executed = first
            .execute_viewing(&id, &context(), capped(100), Tally::clone)
            .await
            .expect("the first process adds");
        assert_eq!(executed.view.total, 2 * round + 1);
        let executed = second
            .execute_viewing(&id, &context(), capped(100), Tally::clone)
            .await
            .expect("the second process adds");
        assert_eq!(
            executed.view.total,
            2 * round + 2,
            "decided on the stored total"
        );
    }

    // The second process wrote last: the first process remembers a total of 7, the store has 8. Deciding on
    // the stale 7 and appending fails the expected-revision check, and the decision is made again on 8.
    let refused = first.execute(&id, &context(), capped(8)).await;
    assert!(
        matches!(refused, Err(ExecuteError::Rejected(OverCap(8)))),
        "the stored total is 8, at the cap: {refused:?}"
    );
    // A remembered state that refuses is checked against the store before the refusal is believed: the
    // first process remembers 8 (read for the refusal), the second one makes it 9.
    second
        .execute(&id, &context(), capped(100))
        .await
        .expect("adds");
    let even_refused = |tally: &Tally| {
        if tally.total % 2 == 0 {
            Err(OverCap(tally.total))
        } else {
            Ok(vec![added(2)])
        }
    };
    let executed = first
        .execute_viewing(&id, &context(), even_refused, Tally::clone)
        .await
        .expect("the stored 9 is odd");
    assert_eq!(executed.view.total, 11);
    // A remembered state with nothing to do is checked too: the second process writes, the first
    // remembers 11 while the store has 12.
    second
        .execute(&id, &context(), capped(100))
        .await
        .expect("adds");
    let executed = first
        .execute_viewing(
            &id,
            &context(),
            |tally: &Tally| {
                Ok::<_, OverCap>(if tally.total == 12 {
                    vec![added(10)]
                } else {
                    vec![]
                })
            },
            Tally::clone,
        )
        .await
        .expect("decides on the stored state");
    assert_eq!(executed.view.total, 22);
    let stored = first.load(&id).await.expect("loads");
    assert_eq!(stored.state.total, 22);
}

/// A command that usually creates its aggregate skips the read; when the aggregate exists after all, it is
/// decided on the stored state.
#[tokio::test]
async fn execute_expecting_new_creates_and_falls_back_to_the_stored_state() {
    let app = start_store().await;
    let repository = Repository::<Tally>::new(app.store.clone());
    let create_once = |tally: &Tally| {
        Ok::<_, OverCap>(if tally.events == 0 {
            vec![added(5)]
        } else {
            vec![]
        })
    };

    let id = unique_id();
    let created = repository
        .execute_expecting_new(&id, &context(), create_once)
        .await
        .expect("creates");
    assert_eq!((created.events.len(), created.attempts), (1, 1));
    assert_eq!(repository.load(&id).await.expect("loads").state.total, 5);

    let again = repository
        .execute_expecting_new(&id, &context(), create_once)
        .await
        .expect("finds it there");
    assert!(
        again.events.is_empty(),
        "nothing is created twice: {again:?}"
    );
    let stored = repository.load(&id).await.expect("loads");
    assert_eq!((stored.state.total, stored.revision), (5, Some(0)));
}
