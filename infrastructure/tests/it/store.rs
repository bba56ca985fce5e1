//! `EventStore`: connecting before the server listens, typed appends and reads with metadata, expected revisions
//! and idempotent appends, and the errors of missing and deleted streams.

use std::net::TcpListener;
use std::time::Duration;

use events::EventMetadata;
use infrastructure::eventstore::{ExpectedRevision, TombstoneStreamOptions};
use infrastructure::{ActualRevision, ConnectError, EventStore, NewEvent, StoreError};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_waits_for_a_server_that_starts_later() {
    // A port that is free now and that the server will take once the client is already trying.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let connection_string = quick_to_connect(&format!("esdb://127.0.0.1:{port}?tls=false"));
    let connecting =
        tokio::spawn(async move { EventStore::connect(&connection_string, DEADLINE).await });
    // Let the first attempts meet a closed port: the point of the test.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut config = eventstore_lite::ServerConfig::in_memory();
    config.http_port = port;
    let _server = eventstore_lite::start(config)
        .await
        .expect("the server starts");

    let store = within("the connection", connecting)
        .await
        .expect("the task runs")
        .expect("the store connects once the server listens");
    let stream = format!("tally-{}", unique_id());
    append_added(&store, &stream, &[1]).await;
}

#[tokio::test]
async fn connect_gives_up_at_its_deadline_and_rejects_bad_connection_strings() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let result = EventStore::connect(
        &format!("esdb://127.0.0.1:{port}?tls=false"),
        Duration::from_millis(300),
    )
    .await;
    assert!(
        matches!(result, Err(ConnectError::Unreachable { .. })),
        "{result:?}"
    );
    let result = EventStore::connect("http://not an esdb string", Duration::from_millis(300)).await;
    assert!(
        matches!(result, Err(ConnectError::InvalidConnectionString(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn typed_events_round_trip_with_their_metadata_and_ids() {
    let app = start_store().await;
    let stream = format!("tally-{}", unique_id());
    let request = Uuid::new_v4();
    let metadata = EventMetadata::for_request(request).with_actor("teller-7");
    let chosen_id = Uuid::new_v4();
    let written = vec![
        NewEvent::with_id(chosen_id, added(5), metadata.clone()),
        NewEvent::new(
            TallyEvent::Cleared(Cleared {}),
            metadata.caused_by(chosen_id),
        ),
    ];
    let appended = app
        .store
        .append(&stream, ExpectedRevision::NoStream, &written)
        .await
        .expect("the first append to a new stream succeeds");
    assert_eq!(appended.last_revision, 1);

    let read = app
        .store
        .read_stream::<TallyEvent>(&stream)
        .await
        .expect("the stream reads");
    let summary: Vec<_> = read
        .iter()
        .map(|e| {
            (
                e.revision,
                e.event.clone(),
                e.metadata.correlation_id,
                e.metadata.causation_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, added(5), request, request),
            (1, TallyEvent::Cleared(Cleared {}), request, chosen_id),
        ]
    );
    assert_eq!(read[0].id, chosen_id);
    assert_eq!(read[0].metadata.actor.as_deref(), Some("teller-7"));
    assert_eq!(read[1].position, appended.position);
    let last = app
        .store
        .read_last::<TallyEvent>(&stream)
        .await
        .expect("reads");
    assert_eq!(last.map(|e| e.revision), Some(1));
    let tail = app
        .store
        .read_stream_from::<TallyEvent>(&stream, 1)
        .await
        .expect("reads");
    assert_eq!(tail.len(), 1);

    // The body is stored as JSON, readable by projections and other clients.
    let mut raw = app
        .store
        .client()
        .read_stream(stream.as_str(), &Default::default())
        .await
        .expect("reads");
    let first = raw.next().await.expect("reads").expect("an event");
    let recorded = first.get_original_event();
    assert!(recorded.is_json);
    assert_eq!(recorded.event_type, "Added");
    assert_eq!(
        recorded.as_json::<serde_json::Value>().expect("JSON"),
        serde_json::json!({"amount": 5})
    );
}

#[tokio::test]
async fn expected_revisions_are_enforced_and_reported() {
    let app = start_store().await;
    let stream = format!("tally-{}", unique_id());
    let store = &app.store;
    store
        .append(&stream, ExpectedRevision::NoStream, &[new_event(added(1))])
        .await
        .expect("creates the stream");

    let cases = [
        (
            ExpectedRevision::NoStream,
            Some(ActualRevision::Revision(0)),
        ),
        (
            ExpectedRevision::Exact(5),
            Some(ActualRevision::Revision(0)),
        ),
        (ExpectedRevision::Exact(0), None),
        (ExpectedRevision::StreamExists, None),
        (ExpectedRevision::Any, None),
    ];
    for (expected, conflict) in cases {
        let result = store
            .append(&stream, expected, &[new_event(added(1))])
            .await;
        match (conflict, result) {
            (None, Ok(_)) => {}
            (Some(actual), Err(StoreError::WrongExpectedVersion { actual: got, .. })) => {
                assert_eq!(got, actual, "expected {expected:?}")
            }
            (wanted, got) => {
                panic!("expected {expected:?}: wanted a conflict {wanted:?}, got {got:?}")
            }
        }
    }
    let missing = format!("tally-{}", unique_id());
    let result = store
        .append(&missing, ExpectedRevision::Exact(0), &[new_event(added(1))])
        .await;
    assert!(
        matches!(
            result,
            Err(StoreError::WrongExpectedVersion {
                actual: ActualRevision::NoStream,
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_append_resent_with_the_same_ids_is_stored_once() {
    let app = start_store().await;
    let stream = format!("tally-{}", unique_id());
    let events = vec![new_event(added(1)), new_event(added(2))];
    let first = app
        .store
        .append(&stream, ExpectedRevision::NoStream, &events)
        .await
        .expect("appends");
    let again = app
        .store
        .append(&stream, ExpectedRevision::NoStream, &events)
        .await
        .expect("the same events at the same revision are an idempotent success");
    assert_eq!(first.last_revision, again.last_revision);
    assert_eq!(
        app.store
            .read_stream::<TallyEvent>(&stream)
            .await
            .expect("reads")
            .len(),
        2
    );
}

#[tokio::test]
async fn missing_deleted_and_foreign_streams_are_reported_as_such() {
    let app = start_store().await;
    let missing = format!("tally-{}", unique_id());
    let result = app.store.read_stream::<TallyEvent>(&missing).await;
    assert!(
        matches!(result, Err(StoreError::NotFound(ref s)) if *s == missing),
        "{result:?}"
    );
    assert!(app
        .store
        .read_last::<TallyEvent>(&missing)
        .await
        .expect("reads")
        .is_none());

    let deleted = format!("tally-{}", unique_id());
    append_added(&app.store, &deleted, &[1]).await;
    app.store
        .client()
        .tombstone_stream(deleted.as_str(), &TombstoneStreamOptions::default())
        .await
        .expect("tombstones");
    let result = app.store.read_stream::<TallyEvent>(&deleted).await;
    assert!(matches!(result, Err(StoreError::Deleted(_))), "{result:?}");

    // An event type the reader does not know is an error that names the event.
    let foreign = format!("tally-{}", unique_id());
    app.store
        .client()
        .append_to_stream(
            foreign.as_str(),
            &Default::default(),
            infrastructure::eventstore::EventData::json("SomethingElse", &serde_json::json!({}))
                .expect("JSON"),
        )
        .await
        .expect("appends");
    let result = app.store.read_stream::<TallyEvent>(&foreign).await;
    match result {
        Err(StoreError::Undecodable(error)) => {
            assert_eq!(
                (error.revision, error.event_type.as_str()),
                (0, "SomethingElse")
            );
        }
        other => panic!("expected an undecodable event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_land_once_each_while_conflicts_among_them_are_reported() {
    // Appends share one BatchAppend session, which the official client ends at the first failed append, failing
    // the others in flight: each of those must still land exactly once, and each conflict be reported with the
    // stream's actual revision.
    let app = start_store().await;
    let taken = format!("tally-{}", unique_id());
    append_added(&app.store, &taken, &[1]).await;
    let streams: Vec<String> = (0..200).map(|_| format!("tally-{}", unique_id())).collect();
    let mut appends = futures::stream::FuturesUnordered::new();
    for (n, stream) in streams.iter().enumerate() {
        let store = app.store.clone();
        let stream = stream.clone();
        let taken = taken.clone();
        appends.push(tokio::spawn(async move {
            let fresh = store
                .append(&stream, ExpectedRevision::NoStream, &[new_event(added(1))])
                .await
                .map(|_| ());
            // Every tenth append also tries to create a stream that exists.
            let conflict = if n % 10 == 0 {
                Some(
                    store
                        .append(&taken, ExpectedRevision::NoStream, &[new_event(added(1))])
                        .await,
                )
            } else {
                None
            };
            (fresh, conflict)
        }));
    }
    let mut conflicts = 0;
    while let Some(joined) = within("the appends", futures::StreamExt::next(&mut appends)).await {
        let (fresh, conflict) = joined.expect("the task ends");
        fresh.expect("a new stream is created");
        if let Some(conflict) = conflict {
            conflicts += 1;
            assert!(
                matches!(
                    conflict,
                    Err(StoreError::WrongExpectedVersion {
                        actual: ActualRevision::Revision(0),
                        ..
                    })
                ),
                "{conflict:?}"
            );
        }
    }
    assert_eq!(conflicts, 20);
    for stream in &streams {
        let events = app
            .store
            .read_stream::<TallyEvent>(stream)
            .await
            .expect("reads");
        assert_eq!(events.len(), 1, "{stream}");
    }
    assert_eq!(
        app.store
            .read_stream::<TallyEvent>(&taken)
            .await
            .expect("reads")
            .len(),
        1
    );
}
