//! Stream metadata: set and get (system and custom keys), the metastream keeping one event, `$maxCount`, `$tb`
//! and `$maxAge` hiding events on read, and metadata of streams that have none.

use std::time::Duration;

use eventstore::{
    Acl, AppendToStreamOptions, CurrentRevision, Error, EventData, ExpectedRevision,
    ReadStreamOptions, StreamAclBuilder, StreamMetadata, StreamMetadataResult, StreamPosition,
};

use crate::helpers::*;

fn expect_metadata(result: StreamMetadataResult) -> Box<eventstore::VersionedMetadata> {
    match result {
        StreamMetadataResult::Success(metadata) => metadata,
        other => panic!("expected metadata, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_round_trips_with_system_and_custom_keys() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("profile");
    let acl = StreamAclBuilder::new()
        .add_read_roles("$all")
        .add_write_roles("alice")
        .add_write_roles("bob")
        .add_delete_roles("$admins")
        .add_meta_read_roles("$all")
        .add_meta_write_roles("$admins")
        .build();
    let first = StreamMetadata::builder()
        .max_count(10)
        .max_age(Duration::from_secs(7_200))
        .truncate_before(2)
        .cache_control(Duration::from_secs(30))
        .acl(Acl::Stream(acl))
        .insert_custom_property("owner", "team-a")
        .insert_custom_property("tags", vec!["x", "y"])
        .insert_custom_property("limits", serde_json::json!({ "daily": 5 }))
        .build();

    let written = app
        .client
        .set_stream_metadata(stream.as_str(), &Default::default(), &first)
        .await?;
    assert_eq!(written.next_expected_version, 0);

    let read = expect_metadata(
        app.client
            .get_stream_metadata(stream.as_str(), &Default::default())
            .await?,
    );
    assert_eq!(read.stream_name(), format!("$${stream}"));
    assert_eq!(read.version(), 0);
    assert_eq!(read.metadata(), &first);

    let second = StreamMetadata::builder()
        .max_count(3)
        .insert_custom_property("owner", "team-b")
        .build();
    let written = app
        .client
        .set_stream_metadata(
            stream.as_str(),
            &AppendToStreamOptions::default().expected_revision(ExpectedRevision::Exact(0)),
            &second,
        )
        .await?;
    assert_eq!(written.next_expected_version, 1);

    let read = expect_metadata(
        app.client
            .get_stream_metadata(stream.as_str(), &Default::default())
            .await?,
    );
    assert_eq!(read.version(), 1);
    assert_eq!(
        read.metadata(),
        &second,
        "the latest metadata replaces the earlier one as a whole"
    );

    // A metastream keeps only its latest event.
    let meta_events = read_stream(&app.client, &format!("$${stream}")).await?;
    assert_eq!(meta_events.len(), 1);
    assert_eq!(original(&meta_events[0]).revision, 1);
    assert_eq!(original(&meta_events[0]).event_type, "$metadata");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_keeps_unknown_keys_verbatim() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("profile");
    let raw = serde_json::json!({
        "$maxCount": 4,
        "$maxAge": 3600,
        "$acl": { "$r": "$all", "$w": ["alice", "bob"] },
        "nested": { "a": [1, 2, { "b": null }] },
        "flag": true
    });

    app.client
        .append_to_stream(
            format!("$${stream}"),
            &Default::default(),
            EventData::json("$metadata", &raw)?,
        )
        .await?;

    let events = read_stream(&app.client, &format!("$${stream}")).await?;
    assert_eq!(original(&events[0]).as_json::<serde_json::Value>()?, raw);
    let read = expect_metadata(
        app.client
            .get_stream_metadata(stream.as_str(), &Default::default())
            .await?,
    );
    assert_eq!(read.metadata().max_count, Some(4));
    assert_eq!(
        read.metadata().custom_properties.get("flag"),
        Some(&serde_json::json!(true))
    );
    assert_eq!(
        read.metadata().custom_properties.get("nested"),
        Some(&raw["nested"])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_of_a_stream_without_any_says_not_found() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let missing = unique_stream("profile");
    let result = app
        .client
        .get_stream_metadata(missing.as_str(), &Default::default())
        .await?;
    assert!(result.is_not_found(), "never written: {result:?}");

    let plain = unique_stream("profile");
    app.client
        .append_to_stream(
            plain.as_str(),
            &Default::default(),
            json_event("Created", 0),
        )
        .await?;
    let result = app
        .client
        .get_stream_metadata(plain.as_str(), &Default::default())
        .await?;
    assert!(result.is_not_found(), "events but no metadata: {result:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_metadata_checks_the_metastream_revision() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("profile");
    let result = app
        .client
        .set_stream_metadata(
            stream.as_str(),
            &AppendToStreamOptions::default().expected_revision(ExpectedRevision::Exact(5)),
            &StreamMetadata::builder().max_count(1).build(),
        )
        .await;
    match result {
        Err(Error::WrongExpectedVersion { current, expected }) => {
            assert_eq!(current, CurrentRevision::NoStream);
            assert_eq!(expected, ExpectedRevision::Exact(5));
        }
        other => panic!("expected a wrong expected version, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_count_and_truncate_before_hide_older_events() -> anyhow::Result<()> {
    let app = spawn_app().await;
    // (metadata, revisions visible forwards out of 0..5)
    let cases = [
        (StreamMetadata::builder().max_count(2).build(), vec![3, 4]),
        (
            StreamMetadata::builder().max_count(10).build(),
            vec![0, 1, 2, 3, 4],
        ),
        (
            StreamMetadata::builder().truncate_before(3).build(),
            vec![3, 4],
        ),
        (
            StreamMetadata::builder()
                .max_count(4)
                .truncate_before(2)
                .build(),
            vec![2, 3, 4],
        ),
    ];

    for (metadata, visible) in cases {
        let context = format!("{metadata:?}");
        let stream = unique_stream("window");
        app.client
            .append_to_stream(
                stream.as_str(),
                &Default::default(),
                json_events("Measured", 0, 5),
            )
            .await?;
        app.client
            .set_stream_metadata(stream.as_str(), &Default::default(), &metadata)
            .await?;

        assert_eq!(
            stream_revisions(&app.client, &stream).await?,
            visible,
            "{context}: forwards"
        );
        let backwards = read_stream_with(
            &app.client,
            &stream,
            &ReadStreamOptions::default().position(StreamPosition::End),
        )
        .await?;
        let mut reversed = visible.clone();
        reversed.reverse();
        assert_eq!(
            backwards
                .iter()
                .map(|e| original(e).revision)
                .collect::<Vec<_>>(),
            reversed,
            "{context}: backwards"
        );
        let from_zero = read_stream_with(
            &app.client,
            &stream,
            &ReadStreamOptions::default()
                .position(StreamPosition::Position(0))
                .max_count(1),
        )
        .await?;
        assert_eq!(
            from_zero
                .iter()
                .map(|e| original(e).revision)
                .collect::<Vec<_>>(),
            vec![visible[0]],
            "{context}: a read from revision 0 starts at the first visible event"
        );
    }

    // The window slides as events are added.
    let stream = unique_stream("window");
    app.client
        .set_stream_metadata(
            stream.as_str(),
            &Default::default(),
            &StreamMetadata::builder().max_count(2).build(),
        )
        .await?;
    for n in 0..5 {
        app.client
            .append_to_stream(
                stream.as_str(),
                &Default::default(),
                json_event("Measured", n),
            )
            .await?;
    }
    assert_eq!(stream_revisions(&app.client, &stream).await?, vec![3, 4]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_hides_expired_events() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("sensor");
    // `$maxAge` is in seconds. Written as raw JSON: the Rust client's typed `max_age` serialises milliseconds.
    let one_second = serde_json::json!({ "$maxAge": 1 });
    app.client
        .append_to_stream(
            format!("$${stream}"),
            &Default::default(),
            EventData::json("$metadata", &one_second)?,
        )
        .await?;
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Sampled", 0, 2),
        )
        .await?;
    assert_eq!(
        stream_revisions(&app.client, &stream).await?,
        vec![0, 1],
        "fresh events are visible"
    );

    let client = &app.client;
    let stream_name = stream.as_str();
    wait_until(
        Duration::from_secs(10),
        "events older than $maxAge are hidden",
        || async move {
            matches!(
                stream_revisions(client, stream_name).await.as_deref(),
                Ok([])
            )
        },
    )
    .await;

    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Sampled", 2),
        )
        .await?;
    assert_eq!(
        stream_revisions(&app.client, &stream).await?,
        vec![2],
        "a new event is visible again"
    );
    Ok(())
}
