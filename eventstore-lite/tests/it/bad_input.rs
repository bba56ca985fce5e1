//! Bad input: empty and over-long stream names and appends over EventStoreDB's 16 MiB limit get a clear gRPC
//! error, and the server keeps serving with earlier data intact.

use bytes::Bytes;
use eventstore::{Client, Error, EventData, ReadStreamOptions};

use crate::helpers::*;

const MAX_APPEND_SIZE: usize = 16 * 1024 * 1024;

/// Writes a stream the bad requests must not disturb.
async fn write_witness(client: &Client) -> anyhow::Result<String> {
    let stream = unique_stream("witness");
    client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Kept", 0, 3),
        )
        .await?;
    Ok(stream)
}

/// The witness stream is intact and the server still takes appends.
async fn assert_still_serving(client: &Client, witness: &str, context: &str) -> anyhow::Result<()> {
    let numbers: Vec<u64> = read_stream(client, witness)
        .await?
        .iter()
        .map(|e| payload_number(original(e)))
        .collect();
    assert_eq!(numbers, vec![0, 1, 2], "{context}: earlier data is intact");
    let written = client
        .append_to_stream(witness, &Default::default(), json_event("Kept", 3))
        .await
        .map_err(|e| anyhow::anyhow!("{context}: the next append must work: {e}"))?;
    assert_eq!(written.next_expected_version, 3, "{context}");
    let fresh = unique_stream("after");
    client
        .append_to_stream(fresh.as_str(), &Default::default(), json_event("Fine", 0))
        .await?;
    assert_eq!(
        stream_revisions(client, &fresh).await?,
        vec![0],
        "{context}"
    );
    Ok(())
}

fn assert_invalid_argument<T: std::fmt::Debug>(
    result: eventstore::Result<T>,
    context: &str,
) -> String {
    match result {
        Err(Error::Grpc {
            code: tonic::Code::InvalidArgument,
            message,
        }) => message,
        other => panic!("{context}: expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_names_are_rejected() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let mut witness = write_witness(&app.client).await?;
    let over_long = "x".repeat(1024 * 1024);

    for (case, name) in [
        ("an empty stream name", String::new()),
        ("a 1 MiB stream name", over_long),
    ] {
        let append = app
            .client
            .append_to_stream(name.as_str(), &Default::default(), json_event("Nope", 0))
            .await;
        assert_invalid_argument(append, &format!("append to {case}"));
        let read = read_stream_with(&app.client, &name, &ReadStreamOptions::default()).await;
        assert_invalid_argument(read, &format!("read of {case}"));
        let delete = app
            .client
            .delete_stream(name.as_str(), &Default::default())
            .await;
        assert_invalid_argument(delete, &format!("delete of {case}"));

        assert_still_serving(&app.client, &witness, case).await?;
        witness = write_witness(&app.client).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_over_16_mib_are_rejected_and_nothing_is_written() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let mut witness = write_witness(&app.client).await?;
    let big = |size: usize| EventData::binary("Blob", Bytes::from(vec![7u8; size]));
    let cases: Vec<(&str, Vec<EventData>)> = vec![
        (
            "one event over the limit",
            vec![big(MAX_APPEND_SIZE + 1024)],
        ),
        (
            "many events adding up to over the limit",
            (0..5).map(|_| big(3 * 1024 * 1024 + 512 * 1024)).collect(),
        ),
    ];

    for (case, events) in cases {
        let stream = unique_stream("huge");
        let result = app
            .client
            .append_to_stream(stream.as_str(), &Default::default(), events)
            .await;
        let message = assert_invalid_argument(result, case);
        assert_eq!(
            message,
            format!("Maximum Append Size of {MAX_APPEND_SIZE} Exceeded."),
            "{case}"
        );
        assert!(
            matches!(
                read_stream(&app.client, &stream).await,
                Err(Error::ResourceNotFound)
            ),
            "{case}: nothing of a rejected append is stored"
        );

        assert_still_serving(&app.client, &witness, case).await?;
        witness = write_witness(&app.client).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_event_under_the_limit_round_trips() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("large");
    let payload: Vec<u8> = (0..5 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();

    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            EventData::binary("Blob", Bytes::from(payload.clone())),
        )
        .await?;

    let events = read_stream(&app.client, &stream).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(original(&events[0]).data.len(), payload.len());
    assert!(
        original(&events[0]).data == payload,
        "the payload comes back byte for byte"
    );
    Ok(())
}
