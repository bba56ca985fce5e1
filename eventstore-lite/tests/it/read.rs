//! Reading: streams forwards and backwards from any revision with counts, missing streams, `$all` forwards and
//! backwards from the start, the end or a position, and filtered `$all` reads on stream names and event types.

use bytes::Bytes;
use eventstore::{
    EventData, Position, ReadAllOptions, ReadStreamOptions, StreamPosition, SubscriptionFilter,
};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reads_back_every_event_as_written() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("basket");
    let json_id = Uuid::new_v4();
    let binary_id = Uuid::new_v4();
    let json = EventData::json(
        "ItemAdded",
        &serde_json::json!({ "sku": "A-1", "quantity": 2 }),
    )?
    .id(json_id)
    .metadata_as_json(&serde_json::json!({ "correlation": "c-1" }))?;
    let binary =
        EventData::binary("ItemPhotographed", Bytes::from_static(&[0, 1, 2, 255])).id(binary_id);
    let before = now_in_ticks();

    app.client
        .append_to_stream(stream.as_str(), &Default::default(), vec![json, binary])
        .await?;

    let events = read_stream(&app.client, &stream).await?;
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e.link.is_none() && e.event.is_some()),
        "plain events are not links"
    );

    let first = original(&events[0]);
    assert_eq!(first.stream_id, stream);
    assert_eq!(first.revision, 0);
    assert_eq!(first.id, json_id);
    assert_eq!(first.event_type, "ItemAdded");
    assert!(first.is_json);
    assert_eq!(
        first.metadata.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        first.metadata.get("type").map(String::as_str),
        Some("ItemAdded")
    );
    assert_eq!(
        first.as_json::<serde_json::Value>()?,
        serde_json::json!({ "sku": "A-1", "quantity": 2 })
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&first.custom_metadata)?,
        serde_json::json!({ "correlation": "c-1" })
    );
    let created: u64 = first
        .metadata
        .get("created")
        .expect("a created timestamp")
        .parse()?;
    let after = now_in_ticks();
    assert!(
        before - 10_000_000 <= created && created <= after + 10_000_000,
        "created ({created}) is in 100 ns ticks since the Unix epoch, around now ({before}..{after})"
    );

    let second = original(&events[1]);
    assert_eq!(second.revision, 1);
    assert_eq!(second.id, binary_id);
    assert_eq!(second.event_type, "ItemPhotographed");
    assert!(!second.is_json);
    assert_eq!(
        second.metadata.get("content-type").map(String::as_str),
        Some("application/octet-stream")
    );
    assert_eq!(second.data, Bytes::from_static(&[0, 1, 2, 255]));
    assert!(second.custom_metadata.is_empty());
    assert!(first.position < second.position);
    Ok(())
}

/// Now in EventStoreDB's `created` unit: 100 ns ticks since the Unix epoch.
fn now_in_ticks() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    (since_epoch.as_nanos() / 100) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reads_honour_direction_start_and_count() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("ledger");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Posted", 0, 10),
        )
        .await?;
    let options = ReadStreamOptions::default;
    let at = StreamPosition::Position;

    let cases: Vec<(&str, ReadStreamOptions, Vec<u64>)> = vec![
        ("forwards from the start", options(), (0..10).collect()),
        (
            "backwards from the end",
            options().position(StreamPosition::End),
            (0..10).rev().collect(),
        ),
        (
            "forwards from revision 4",
            options().position(at(4)),
            (4..10).collect(),
        ),
        (
            "backwards from revision 4",
            options().position(at(4)).backwards(),
            vec![4, 3, 2, 1, 0],
        ),
        ("forwards, at most 3", options().max_count(3), vec![0, 1, 2]),
        (
            "backwards from the end, at most 3",
            options().position(StreamPosition::End).max_count(3),
            vec![9, 8, 7],
        ),
        (
            "forwards from revision 8, at most 5",
            options().position(at(8)).max_count(5),
            vec![8, 9],
        ),
        (
            "backwards from revision 6, at most 2",
            options().position(at(6)).backwards().max_count(2),
            vec![6, 5],
        ),
        (
            "forwards from the last revision",
            options().position(at(9)),
            vec![9],
        ),
        ("forwards past the end", options().position(at(10)), vec![]),
    ];

    for (case, options, expected) in cases {
        let events = read_stream_with(&app.client, &stream, &options)
            .await
            .map_err(|e| anyhow::anyhow!("{case}: {e}"))?;
        let revisions: Vec<u64> = events.iter().map(|e| original(e).revision).collect();
        assert_eq!(revisions, expected, "{case}");
        let numbers: Vec<u64> = events.iter().map(|e| payload_number(original(e))).collect();
        assert_eq!(
            numbers, expected,
            "{case}: each revision carries its own payload"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_missing_stream_says_not_found() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let missing = unique_stream("ghost");
    for (case, options) in [
        ("forwards", ReadStreamOptions::default()),
        (
            "backwards",
            ReadStreamOptions::default().position(StreamPosition::End),
        ),
        (
            "from a revision",
            ReadStreamOptions::default().position(StreamPosition::Position(3)),
        ),
    ] {
        let result = read_stream_with(&app.client, &missing, &options).await;
        assert!(
            matches!(result, Err(eventstore::Error::ResourceNotFound)),
            "{case}: {result:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_reads_forwards_and_backwards_with_increasing_positions() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let streams = [unique_stream("alpha"), unique_stream("beta")];
    for round in 0..3 {
        for stream in &streams {
            app.client
                .append_to_stream(
                    stream.as_str(),
                    &Default::default(),
                    json_events("Ticked", round * 2, 2),
                )
                .await?;
        }
    }

    let forwards = read_all_forwards(&app.client).await;
    assert_positions_strictly_increase(&forwards);
    let ours: Vec<(String, u64)> = forwards
        .iter()
        .filter(|e| streams.contains(&e.stream))
        .map(|e| (e.stream.clone(), e.revision))
        .collect();
    let mut expected = Vec::new();
    for round in 0..3 {
        for stream in &streams {
            expected.push((stream.clone(), round * 2));
            expected.push((stream.clone(), round * 2 + 1));
        }
    }
    assert_eq!(
        ours, expected,
        "$all holds the events in the order they were written"
    );

    let backwards: Vec<Summary> = read_all_with(
        &app.client,
        &ReadAllOptions::default().position(StreamPosition::End),
    )
    .await?
    .iter()
    .map(|e| summary(original(e)))
    .collect();
    let mut reversed = forwards.clone();
    reversed.reverse();
    assert_eq!(
        backwards, reversed,
        "backwards from the end is forwards reversed"
    );

    let first_three: Vec<Summary> =
        read_all_with(&app.client, &ReadAllOptions::default().max_count(3))
            .await?
            .iter()
            .map(|e| summary(original(e)))
            .collect();
    assert_eq!(first_three, forwards[..3].to_vec());
    let last_two: Vec<Summary> = read_all_with(
        &app.client,
        &ReadAllOptions::default()
            .position(StreamPosition::End)
            .max_count(2),
    )
    .await?
    .iter()
    .map(|e| summary(original(e)))
    .collect();
    assert_eq!(last_two, reversed[..2].to_vec());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_reads_from_a_position() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let stream = unique_stream("gamma");
    let mut positions = Vec::new();
    for n in 0..6 {
        let written = app
            .client
            .append_to_stream(
                stream.as_str(),
                &Default::default(),
                json_event("Ticked", n),
            )
            .await?;
        positions.push(written.position);
    }
    let all = read_all_forwards(&app.client).await;
    let index_of = |position: Position| {
        all.iter()
            .position(|e| e.position == position)
            .expect("in $all")
    };
    let middle = positions[3];
    let middle_index = index_of(middle);

    let from_middle: Vec<Summary> = read_all_with(
        &app.client,
        &ReadAllOptions::default().position(StreamPosition::Position(middle)),
    )
    .await?
    .iter()
    .map(|e| summary(original(e)))
    .collect();
    assert_eq!(
        from_middle,
        all[middle_index..].to_vec(),
        "forwards from a position includes that event"
    );

    let limited: Vec<Summary> = read_all_with(
        &app.client,
        &ReadAllOptions::default()
            .position(StreamPosition::Position(middle))
            .max_count(2),
    )
    .await?
    .iter()
    .map(|e| summary(original(e)))
    .collect();
    assert_eq!(limited, all[middle_index..middle_index + 2].to_vec());

    let before_middle: Vec<Summary> = read_all_with(
        &app.client,
        &ReadAllOptions::default()
            .position(StreamPosition::Position(middle))
            .backwards(),
    )
    .await?
    .iter()
    .map(|e| summary(original(e)))
    .collect();
    // Whether the event at the position itself comes first is EventStoreDB's business; everything before it must
    // follow, newest first.
    let mut inclusive = all[..=middle_index].to_vec();
    inclusive.reverse();
    let mut exclusive = all[..middle_index].to_vec();
    exclusive.reverse();
    assert!(
        before_middle == inclusive || before_middle == exclusive,
        "backwards from a position: {before_middle:#?}"
    );

    let from_start_position: Vec<Summary> = read_all_with(
        &app.client,
        &ReadAllOptions::default().position(StreamPosition::Position(Position::start())),
    )
    .await?
    .iter()
    .map(|e| summary(original(e)))
    .collect();
    assert_eq!(from_start_position, all, "position 0 is the start of $all");
    Ok(())
}

/// `(stream, event type)` of an event.
type StreamAndType = (String, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_all_reads_select_on_stream_name_and_event_type() -> anyhow::Result<()> {
    let app = spawn_app().await;
    // Events in the order written: (stream, event type).
    let written = [
        ("invoice-1", "InvoiceIssued"),
        ("order-1", "OrderPlaced"),
        ("invoice-2", "InvoiceIssued"),
        ("order-1", "OrderShipped"),
        ("invoice-1", "InvoicePaid"),
        ("customer-1", "CustomerRegistered"),
        ("invoice-2", "InvoicePaid"),
    ];
    for (stream, event_type) in written {
        app.client
            .append_to_stream(stream, &Default::default(), json_event(event_type, 0))
            .await?;
    }
    // Metadata lives in a `$$` stream: a system stream that user filters must leave out.
    app.client
        .set_stream_metadata(
            "order-1",
            &Default::default(),
            &eventstore::StreamMetadata::builder().max_count(100).build(),
        )
        .await?;
    let expect_where = |keep: &dyn Fn(&str, &str) -> bool| -> Vec<StreamAndType> {
        written
            .iter()
            .filter(|(stream, event_type)| keep(stream, event_type))
            .map(|(stream, event_type)| (stream.to_string(), event_type.to_string()))
            .collect()
    };

    let cases: Vec<(&str, SubscriptionFilter, Vec<StreamAndType>)> = vec![
        (
            "stream prefix",
            SubscriptionFilter::on_stream_name().add_prefix("invoice-"),
            expect_where(&|s, _| s.starts_with("invoice-")),
        ),
        (
            "two stream prefixes",
            SubscriptionFilter::on_stream_name()
                .add_prefix("order-")
                .add_prefix("customer-"),
            expect_where(&|s, _| s.starts_with("order-") || s.starts_with("customer-")),
        ),
        (
            "stream regex",
            SubscriptionFilter::on_stream_name().regex("^(invoice|customer)-1$"),
            expect_where(&|s, _| s == "invoice-1" || s == "customer-1"),
        ),
        (
            "stream look-ahead regex excluding system streams",
            SubscriptionFilter::on_stream_name().regex(r"^(?!\$)"),
            expect_where(&|_, _| true),
        ),
        (
            "stream look-ahead regex as clients send it",
            SubscriptionFilter::on_stream_name()
                .regex(r"^(?!(\$.+$|PersistentConfig\d+$|Result$|order-))"),
            expect_where(&|s, _| !s.starts_with("order-")),
        ),
        (
            "event type prefix",
            SubscriptionFilter::on_event_type().add_prefix("Invoice"),
            expect_where(&|_, t| t.starts_with("Invoice")),
        ),
        (
            "event type regex",
            SubscriptionFilter::on_event_type().regex("Paid$|Shipped$"),
            expect_where(&|_, t| t.ends_with("Paid") || t.ends_with("Shipped")),
        ),
        (
            "event type look-ahead regex excluding system events",
            SubscriptionFilter::on_event_type().regex(r"^(?!\$)"),
            expect_where(&|_, _| true),
        ),
        (
            "excluding system events",
            SubscriptionFilter::on_event_type().exclude_system_events(),
            expect_where(&|_, _| true),
        ),
    ];

    for (case, filter, expected) in cases {
        let events = filtered_all(&app.client, filter).await;
        let got: Vec<StreamAndType> = events
            .iter()
            .map(|e| (e.stream.clone(), e.event_type.clone()))
            .collect();
        assert_eq!(got, expected, "{case}");
        assert_positions_strictly_increase(&events);
    }

    // A filter that matches only system streams sees the metadata event.
    let meta = filtered_all(
        &app.client,
        SubscriptionFilter::on_stream_name().add_prefix("$$order-1"),
    )
    .await;
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].event_type, "$metadata");
    Ok(())
}
