//! Appending: expected-revision rules, wrong-expected-version errors, idempotent re-appends, batch appends and
//! tens of thousands of events read back in order.

use eventstore::{AppendToStreamOptions, CurrentRevision, Error, ExpectedRevision, StreamMetadata};
use futures::future::try_join_all;

use crate::helpers::*;

fn expecting(revision: ExpectedRevision) -> AppendToStreamOptions {
    AppendToStreamOptions::default().expected_revision(revision)
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The append succeeds and the stream's last revision becomes this.
    Appended { last_revision: u64 },
    /// The append fails with this current revision reported.
    Rejected { current: CurrentRevision },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_revision_decides_whether_an_append_is_accepted() -> anyhow::Result<()> {
    let app = spawn_app().await;
    use ExpectedRevision::*;
    use Outcome::*;
    // (events already in the stream, expected revision of an append of two more events, outcome)
    let cases = [
        (0, Any, Appended { last_revision: 1 }),
        (3, Any, Appended { last_revision: 4 }),
        (0, NoStream, Appended { last_revision: 1 }),
        (
            3,
            NoStream,
            Rejected {
                current: CurrentRevision::Current(2),
            },
        ),
        (
            0,
            StreamExists,
            Rejected {
                current: CurrentRevision::NoStream,
            },
        ),
        (3, StreamExists, Appended { last_revision: 4 }),
        (
            0,
            Exact(0),
            Rejected {
                current: CurrentRevision::NoStream,
            },
        ),
        (3, Exact(2), Appended { last_revision: 4 }),
        (
            3,
            Exact(3),
            Rejected {
                current: CurrentRevision::Current(2),
            },
        ),
        (
            3,
            Exact(7),
            Rejected {
                current: CurrentRevision::Current(2),
            },
        ),
        (
            3,
            Exact(1),
            Rejected {
                current: CurrentRevision::Current(2),
            },
        ),
    ];

    for (existing, expected, outcome) in cases {
        let stream = unique_stream("account");
        if existing > 0 {
            app.client
                .append_to_stream(
                    stream.as_str(),
                    &expecting(NoStream),
                    json_events("Opened", 0, existing),
                )
                .await?;
        }
        let context = format!("{existing} events, expected {expected:?}");

        let result = app
            .client
            .append_to_stream(
                stream.as_str(),
                &expecting(expected),
                json_events("Deposited", 100, 2),
            )
            .await;

        match outcome {
            Appended { last_revision } => {
                let written = result.map_err(|e| anyhow::anyhow!("{context}: {e}"))?;
                assert_eq!(written.next_expected_version, last_revision, "{context}");
                let events = read_stream(&app.client, &stream).await?;
                assert_eq!(events.len() as u64, last_revision + 1, "{context}");
                let last = original(events.last().expect("events"));
                assert_eq!(
                    written.position, last.position,
                    "{context}: the write reports its last event's position"
                );
            }
            Rejected { current } => {
                match result {
                    Err(Error::WrongExpectedVersion {
                        current: got_current,
                        expected: got_expected,
                    }) => {
                        assert_eq!(got_current, current, "{context}");
                        assert_eq!(got_expected, expected, "{context}");
                    }
                    other => panic!("{context}: expected a wrong expected version, got {other:?}"),
                }
                match read_stream(&app.client, &stream).await {
                    Ok(events) => assert_eq!(
                        events.len() as u64,
                        existing,
                        "{context}: nothing was written"
                    ),
                    Err(Error::ResourceNotFound) => assert_eq!(existing, 0, "{context}"),
                    Err(other) => panic!("{context}: {other:?}"),
                }
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_exists_accepts_a_stream_that_only_has_metadata() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("account");
    app.client
        .set_stream_metadata(
            stream.as_str(),
            &Default::default(),
            &StreamMetadata::builder().max_count(10).build(),
        )
        .await?;

    let written = app
        .client
        .append_to_stream(
            stream.as_str(),
            &expecting(ExpectedRevision::StreamExists),
            json_event("Opened", 0),
        )
        .await?;

    assert_eq!(written.next_expected_version, 0);
    assert_eq!(stream_revisions(&app.client, &stream).await?, vec![0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_appending_the_same_event_ids_is_idempotent() -> anyhow::Result<()> {
    let app = spawn_app().await;
    use ExpectedRevision::*;
    // (events already in the stream, expected revision of both the append and its retry)
    let cases = [(0, NoStream), (0, Any), (2, Exact(1)), (2, Any)];

    let mut failures = Vec::new();
    for (earlier, expected) in cases {
        if let Err(error) = append_twice(&app.client, earlier, expected).await {
            failures.push(format!(
                "{earlier} earlier events, expected {expected:?}: {error}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "re-appends that were not idempotent:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// Appends the same three events twice with `expected` after `earlier` events: the retry must report the first
/// append's revision and position and write nothing.
async fn append_twice(
    client: &eventstore::Client,
    earlier: u64,
    expected: ExpectedRevision,
) -> anyhow::Result<()> {
    let stream = unique_stream("payment");
    if earlier > 0 {
        let events = json_events("Started", 0, earlier);
        client
            .append_to_stream(
                stream.as_str(),
                &expecting(ExpectedRevision::NoStream),
                events,
            )
            .await?;
    }
    let batch = json_events("Paid", 10, 3);

    let first = client
        .append_to_stream(stream.as_str(), &expecting(expected), batch.clone())
        .await?;
    let again = client
        .append_to_stream(stream.as_str(), &expecting(expected), batch.clone())
        .await
        .map_err(|e| anyhow::anyhow!("the retry must succeed: {e}"))?;

    anyhow::ensure!(
        first.next_expected_version == earlier + 2,
        "first append: {first:?}"
    );
    anyhow::ensure!(
        (again.next_expected_version, again.position)
            == (first.next_expected_version, first.position),
        "the retry reports {again:?}, the first append {first:?}"
    );
    let revisions = stream_revisions(client, &stream).await?;
    anyhow::ensure!(
        revisions == (0..earlier + 3).collect::<Vec<_>>(),
        "duplicates: {revisions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_only_partly_matches_earlier_ids_is_a_wrong_expected_version(
) -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("payment");
    let batch = json_events("Paid", 0, 3);
    app.client
        .append_to_stream(
            stream.as_str(),
            &expecting(ExpectedRevision::NoStream),
            batch.clone(),
        )
        .await?;

    let mut mixed = batch[..2].to_vec();
    mixed.push(json_event("Paid", 99));
    let result = app
        .client
        .append_to_stream(
            stream.as_str(),
            &expecting(ExpectedRevision::NoStream),
            mixed,
        )
        .await;

    match result {
        Err(Error::WrongExpectedVersion { current, expected }) => {
            assert_eq!(current, CurrentRevision::Current(2));
            assert_eq!(expected, ExpectedRevision::NoStream);
        }
        other => panic!("expected a wrong expected version, got {other:?}"),
    }
    assert_eq!(stream_revisions(&app.client, &stream).await?, vec![0, 1, 2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_append_writes_to_several_streams_over_one_session() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let batch = app.client.batch_append(&Default::default()).await?;
    let stream = unique_stream("cart");

    let first = batch
        .append_to_stream(
            &stream,
            ExpectedRevision::NoStream,
            json_events("ItemAdded", 0, 3),
        )
        .await?;
    let second = batch
        .append_to_stream(
            &stream,
            ExpectedRevision::Exact(2),
            json_events("ItemAdded", 3, 2),
        )
        .await?;

    assert_eq!(first.stream_name(), stream);
    assert_eq!(first.current_revision(), Some(2));
    assert_eq!(first.expected_version(), Some(ExpectedRevision::NoStream));
    assert_eq!(second.current_revision(), Some(4));
    assert_eq!(second.expected_version(), Some(ExpectedRevision::Exact(2)));
    let first_position = first.current_position().expect("a position");
    let second_position = second.current_position().expect("a position");
    assert!(second_position > first_position);

    let events = read_stream(&app.client, &stream).await?;
    let numbers: Vec<u64> = events.iter().map(|e| payload_number(original(e))).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3, 4]);
    assert_eq!(original(&events[4]).position, second_position);

    // Concurrent requests on the same session, each to its own stream.
    let streams: Vec<String> = (0..5).map(|_| unique_stream("cart")).collect();
    let results = try_join_all(streams.iter().map(|s| {
        batch.append_to_stream(s, ExpectedRevision::Any, json_events("ItemAdded", 0, 10))
    }))
    .await?;
    for (stream, result) in streams.iter().zip(&results) {
        assert_eq!(result.stream_name(), stream);
        assert_eq!(result.current_revision(), Some(9));
        assert_eq!(
            stream_revisions(&app.client, stream).await?,
            (0..10).collect::<Vec<_>>()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_append_with_a_wrong_expected_version_fails_and_writes_nothing() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let stream = unique_stream("cart");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("ItemAdded", 0, 3),
        )
        .await?;

    // The client closes a batch session after a failed request, so each failure gets its own session.
    for expected in [
        ExpectedRevision::Exact(7),
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(1),
    ] {
        let batch = app.client.batch_append(&Default::default()).await?;
        let result = batch
            .append_to_stream(&stream, expected, json_events("ItemAdded", 3, 2))
            .await;
        match result {
            Err(Error::Grpc { code, message }) => {
                assert_eq!(code, tonic::Code::AlreadyExists, "{expected:?}");
                assert_eq!(message, "WrongExpectedVersion", "{expected:?}");
            }
            other => panic!("{expected:?}: expected a wrong expected version, got {other:?}"),
        }
    }
    assert_eq!(stream_revisions(&app.client, &stream).await?, vec![0, 1, 2]);

    let batch = app.client.batch_append(&Default::default()).await?;
    let missing = unique_stream("cart");
    let result = batch
        .append_to_stream(
            &missing,
            ExpectedRevision::StreamExists,
            json_events("ItemAdded", 0, 1),
        )
        .await;
    assert!(
        matches!(
            &result,
            Err(Error::Grpc {
                code: tonic::Code::AlreadyExists,
                ..
            })
        ),
        "stream_exists on a missing stream: {result:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tens_of_thousands_of_events_read_back_in_order() -> anyhow::Result<()> {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 5_000;
    const PER_APPEND: u64 = 500;
    let app = spawn_app_without_projections().await;
    let streams: Vec<String> = (0..WRITERS).map(|_| unique_stream("bulk")).collect();

    within(
        "20,000 appends",
        try_join_all(streams.iter().map(|stream| {
            let client = app.client.clone();
            let stream = stream.clone();
            async move {
                for first in (0..PER_WRITER).step_by(PER_APPEND as usize) {
                    let expected = if first == 0 {
                        ExpectedRevision::NoStream
                    } else {
                        ExpectedRevision::Exact(first - 1)
                    };
                    let written = client
                        .append_to_stream(
                            stream.as_str(),
                            &expecting(expected),
                            json_events("Loaded", first, PER_APPEND),
                        )
                        .await?;
                    assert_eq!(written.next_expected_version, first + PER_APPEND - 1);
                }
                Ok::<_, eventstore::Error>(())
            }
        })),
    )
    .await?;

    for stream in &streams {
        let forwards = read_stream(&app.client, stream).await?;
        assert_eq!(forwards.len() as u64, PER_WRITER);
        for (i, event) in forwards.iter().enumerate() {
            let event = original(event);
            assert_eq!(event.revision, i as u64);
            assert_eq!(payload_number(event), i as u64);
        }
        let backwards = read_stream_with(
            &app.client,
            stream,
            &eventstore::ReadStreamOptions::default().position(eventstore::StreamPosition::End),
        )
        .await?;
        let revisions: Vec<u64> = backwards.iter().map(|e| original(e).revision).collect();
        assert_eq!(revisions, (0..PER_WRITER).rev().collect::<Vec<_>>());
    }

    let names: Vec<&str> = streams.iter().map(String::as_str).collect();
    let all = all_events_of(&app.client, &names).await;
    assert_eq!(all.len() as u64, WRITERS * PER_WRITER);
    assert_positions_strictly_increase(&all);
    for stream in &streams {
        let revisions: Vec<u64> = all
            .iter()
            .filter(|e| &e.stream == stream)
            .map(|e| e.revision)
            .collect();
        assert_eq!(
            revisions,
            (0..PER_WRITER).collect::<Vec<_>>(),
            "$all keeps each stream's order"
        );
    }
    Ok(())
}
