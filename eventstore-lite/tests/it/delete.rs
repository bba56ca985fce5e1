//! Deleting: soft delete hides a stream until it is written again (numbering continues), tombstones are for ever,
//! and both check the expected revision.

use eventstore::{
    AppendToStreamOptions, DeleteStreamOptions, Error, ExpectedRevision, ReadStreamOptions,
    StreamMetadataResult, StreamPosition, TombstoneStreamOptions,
};

use crate::helpers::*;

fn delete_expecting(revision: ExpectedRevision) -> DeleteStreamOptions {
    DeleteStreamOptions::default().expected_revision(revision)
}

fn tombstone_expecting(revision: ExpectedRevision) -> TombstoneStreamOptions {
    TombstoneStreamOptions::default().expected_revision(revision)
}

fn deleted<T>(result: &eventstore::Result<T>) -> bool {
    matches!(result, Err(Error::ResourceDeleted))
}

/// Delete and tombstone report a wrong expected version as FAILED_PRECONDITION with EventStoreDB's message.
fn assert_wrong_expected_version<T: std::fmt::Debug>(
    result: eventstore::Result<T>,
    stream: &str,
    context: &str,
) {
    match result {
        Err(Error::Grpc { code, message }) => {
            assert_eq!(
                code,
                tonic::Code::FailedPrecondition,
                "{context}: {message}"
            );
            assert!(
                message.contains("WrongExpectedVersion"),
                "{context}: {message}"
            );
            assert!(
                message.contains(&format!("Stream: {stream}")),
                "{context}: {message}"
            );
        }
        other => panic!("{context}: expected a wrong expected version, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_deleted_stream_reads_as_not_found() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("session");
    let written = app
        .client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Started", 0, 3),
        )
        .await?;

    let position = app
        .client
        .delete_stream(stream.as_str(), &Default::default())
        .await?;

    let position = position.expect("a delete reports its position");
    assert!(position > written.position);
    for options in [
        ReadStreamOptions::default(),
        ReadStreamOptions::default().position(StreamPosition::End),
    ] {
        let result = read_stream_with(&app.client, &stream, &options).await;
        assert!(matches!(result, Err(Error::ResourceNotFound)), "{result:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appending_after_a_soft_delete_continues_the_numbering_and_hides_older_events(
) -> anyhow::Result<()> {
    let app = spawn_app().await;
    for expected in [ExpectedRevision::Any, ExpectedRevision::NoStream] {
        let stream = unique_stream("session");
        app.client
            .append_to_stream(
                stream.as_str(),
                &Default::default(),
                json_events("Started", 0, 3),
            )
            .await?;
        app.client
            .delete_stream(
                stream.as_str(),
                &delete_expecting(ExpectedRevision::Exact(2)),
            )
            .await?;

        let written = app
            .client
            .append_to_stream(
                stream.as_str(),
                &AppendToStreamOptions::default().expected_revision(expected),
                json_events("Restarted", 3, 2),
            )
            .await?;

        assert_eq!(written.next_expected_version, 4, "{expected:?}");
        let events = read_stream(&app.client, &stream).await?;
        let revisions: Vec<u64> = events.iter().map(|e| original(e).revision).collect();
        assert_eq!(
            revisions,
            vec![3, 4],
            "{expected:?}: only events written after the delete are visible"
        );
        assert!(events.iter().all(|e| original(e).event_type == "Restarted"));
        let backwards = read_stream_with(
            &app.client,
            &stream,
            &ReadStreamOptions::default().position(StreamPosition::End),
        )
        .await?;
        assert_eq!(
            backwards
                .iter()
                .map(|e| original(e).revision)
                .collect::<Vec<_>>(),
            vec![4, 3]
        );

        match app
            .client
            .get_stream_metadata(stream.as_str(), &Default::default())
            .await?
        {
            StreamMetadataResult::Success(metadata) => {
                assert_eq!(
                    metadata.metadata().truncate_before,
                    Some(3),
                    "{expected:?}: $tb marks the undelete"
                );
            }
            other => panic!("{expected:?}: expected metadata, got {other:?}"),
        }

        let next = app
            .client
            .append_to_stream(
                stream.as_str(),
                &AppendToStreamOptions::default().expected_revision(ExpectedRevision::Exact(4)),
                json_event("Restarted", 5),
            )
            .await?;
        assert_eq!(next.next_expected_version, 5);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_stream_that_never_existed_is_a_wrong_expected_version() -> anyhow::Result<()> {
    let app = spawn_app().await;
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::StreamExists,
        ExpectedRevision::Exact(0),
    ] {
        let stream = unique_stream("nothing");
        let result = app
            .client
            .delete_stream(stream.as_str(), &delete_expecting(expected))
            .await;
        assert_wrong_expected_version(
            result,
            &stream,
            &format!("soft delete, expected {expected:?}"),
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_check_the_expected_revision() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("session");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Started", 0, 3),
        )
        .await?;

    for expected in [
        ExpectedRevision::Exact(5),
        ExpectedRevision::Exact(1),
        ExpectedRevision::NoStream,
    ] {
        let context = format!("expected {expected:?}");
        let result = app
            .client
            .delete_stream(stream.as_str(), &delete_expecting(expected))
            .await;
        assert_wrong_expected_version(result, &stream, &format!("soft delete, {context}"));
        let result = app
            .client
            .tombstone_stream(stream.as_str(), &tombstone_expecting(expected))
            .await;
        assert_wrong_expected_version(result, &stream, &format!("tombstone, {context}"));
        assert_eq!(
            stream_revisions(&app.client, &stream).await?,
            vec![0, 1, 2],
            "{context}: still there"
        );
    }

    app.client
        .delete_stream(
            stream.as_str(),
            &delete_expecting(ExpectedRevision::StreamExists),
        )
        .await?;
    assert!(matches!(
        read_stream(&app.client, &stream).await,
        Err(Error::ResourceNotFound)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstoned_stream_refuses_reads_appends_and_deletes_for_ever() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("closed");
    let written = app
        .client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Opened", 0, 2),
        )
        .await?;

    let position = app
        .client
        .tombstone_stream(
            stream.as_str(),
            &tombstone_expecting(ExpectedRevision::Exact(1)),
        )
        .await?;
    assert!(position.expect("a tombstone reports its position") > written.position);

    let forwards = read_stream(&app.client, &stream).await;
    assert!(deleted(&forwards), "read forwards: {forwards:?}");
    let backwards = read_stream_with(
        &app.client,
        &stream,
        &ReadStreamOptions::default().position(StreamPosition::End),
    )
    .await;
    assert!(deleted(&backwards), "read backwards: {backwards:?}");
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(1),
    ] {
        let append = app
            .client
            .append_to_stream(
                stream.as_str(),
                &AppendToStreamOptions::default().expected_revision(expected),
                json_event("Reopened", 2),
            )
            .await
            .map(|_| ());
        assert!(
            deleted(&append),
            "append expecting {expected:?}: {append:?}"
        );
    }
    let delete = app
        .client
        .delete_stream(stream.as_str(), &Default::default())
        .await;
    assert!(deleted(&delete), "soft delete: {delete:?}");
    let tombstone = app
        .client
        .tombstone_stream(stream.as_str(), &Default::default())
        .await;
    assert!(deleted(&tombstone), "tombstone again: {tombstone:?}");

    let batch = app.client.batch_append(&Default::default()).await?;
    let result = batch
        .append_to_stream(
            &stream,
            ExpectedRevision::Any,
            json_events("Reopened", 2, 1),
        )
        .await;
    assert!(
        matches!(
            &result,
            Err(Error::Grpc {
                code: tonic::Code::NotFound,
                ..
            })
        ),
        "batch append to a tombstoned stream: {result:?}"
    );

    // Other streams are unaffected.
    let other = unique_stream("open");
    app.client
        .append_to_stream(other.as_str(), &Default::default(), json_event("Opened", 0))
        .await?;
    assert_eq!(stream_revisions(&app.client, &other).await?, vec![0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_deleted_stream_can_still_be_tombstoned() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("session");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Started", 0, 2),
        )
        .await?;
    app.client
        .delete_stream(stream.as_str(), &Default::default())
        .await?;

    app.client
        .tombstone_stream(stream.as_str(), &Default::default())
        .await?;

    assert!(matches!(
        read_stream(&app.client, &stream).await,
        Err(Error::ResourceDeleted)
    ));
    Ok(())
}
