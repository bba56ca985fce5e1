//! System projections: `$by_category` (`$ce-`), `$by_event_type` (`$et-`), `$streams` and
//! `$stream_by_category` (`$category-`) write link events that `resolveLinkTos` turns back into the originals.

use std::time::Duration;

use eventstore::{ReadStreamOptions, ResolvedEvent, StreamPosition, SubscribeToStreamOptions};

use crate::helpers::*;

/// `(event type, data as text)` of each event of a stream read without resolving links.
async fn links_in(client: &eventstore::Client, stream: &str) -> Vec<(String, String)> {
    match read_stream(client, stream).await {
        Ok(events) => events
            .iter()
            .map(|e| {
                let event = original(e);
                (
                    event.event_type.clone(),
                    String::from_utf8_lossy(&event.data).into_owned(),
                )
            })
            .collect(),
        Err(eventstore::Error::ResourceNotFound) => Vec::new(),
        Err(other) => panic!("reading {stream}: {other:?}"),
    }
}

/// Waits until `stream` holds exactly `expected` `(type, data)` pairs.
async fn wait_for_links(client: &eventstore::Client, stream: &str, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(t, d)| (t.to_string(), d.to_string()))
        .collect();
    let expected = &expected;
    wait_until(
        Duration::from_secs(10),
        &format!("{stream} holds {expected:?}"),
        || async move { &links_in(client, stream).await == expected },
    )
    .await;
}

fn link(data: &str) -> (&'static str, &str) {
    ("$>", data)
}

/// Appends `OrderPlaced` to `order-1` and `order-2`, then `OrderShipped` to `order-1`; returns their ids.
async fn write_orders(client: &eventstore::Client) -> anyhow::Result<Vec<uuid::Uuid>> {
    let mut ids = Vec::new();
    for (stream, event_type, n) in [
        ("order-1", "OrderPlaced", 1),
        ("order-2", "OrderPlaced", 2),
        ("order-1", "OrderShipped", 1),
    ] {
        let id = uuid::Uuid::new_v4();
        client
            .append_to_stream(
                stream,
                &Default::default(),
                json_event(event_type, n).id(id),
            )
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

fn assert_resolved(
    event: &ResolvedEvent,
    target_stream: &str,
    target_revision: u64,
    link_stream: &str,
    link_revision: u64,
) {
    let target = event
        .event
        .as_ref()
        .expect("a resolved link carries the target event");
    let link = event
        .link
        .as_ref()
        .expect("a resolved link carries the link event");
    assert_eq!(
        (target.stream_id.as_str(), target.revision),
        (target_stream, target_revision)
    );
    assert_eq!(
        (link.stream_id.as_str(), link.revision),
        (link_stream, link_revision)
    );
    assert_eq!(link.event_type, "$>");
    assert_eq!(
        String::from_utf8_lossy(&link.data),
        format!("{target_revision}@{target_stream}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_category_links_events_into_ce_streams() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let ids = write_orders(&app.client).await?;

    wait_for_links(
        &app.client,
        "$ce-order",
        &[link("0@order-1"), link("0@order-2"), link("1@order-1")],
    )
    .await;

    let raw = read_stream(&app.client, "$ce-order").await?;
    assert!(
        raw.iter().all(|e| e.event.is_some() && e.link.is_none()),
        "without resolving, links are plain events"
    );
    assert_eq!(
        raw.iter().map(|e| original(e).revision).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );

    let resolved = read_stream_with(
        &app.client,
        "$ce-order",
        &ReadStreamOptions::default().resolve_link_tos(),
    )
    .await?;
    assert_eq!(resolved.len(), 3);
    assert_resolved(&resolved[0], "order-1", 0, "$ce-order", 0);
    assert_resolved(&resolved[1], "order-2", 0, "$ce-order", 1);
    assert_resolved(&resolved[2], "order-1", 1, "$ce-order", 2);
    let targets: Vec<_> = resolved
        .iter()
        .map(|e| e.event.as_ref().map(|t| t.id))
        .collect();
    assert_eq!(
        targets,
        ids.iter().copied().map(Some).collect::<Vec<_>>(),
        "the targets are the original events"
    );
    let target = resolved[1].event.as_ref().expect("target");
    assert_eq!(target.event_type, "OrderPlaced");
    assert_eq!(payload_number(target), 2);
    let original_order_2 = read_stream(&app.client, "order-2").await?;
    assert_eq!(target.position, original(&original_order_2[0]).position);

    let backwards = read_stream_with(
        &app.client,
        "$ce-order",
        &ReadStreamOptions::default()
            .position(StreamPosition::End)
            .resolve_link_tos(),
    )
    .await?;
    assert_resolved(&backwards[0], "order-1", 1, "$ce-order", 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_event_type_links_events_into_et_streams() -> anyhow::Result<()> {
    let app = spawn_app().await;
    write_orders(&app.client).await?;

    wait_for_links(
        &app.client,
        "$et-OrderPlaced",
        &[link("0@order-1"), link("0@order-2")],
    )
    .await;
    wait_for_links(&app.client, "$et-OrderShipped", &[link("1@order-1")]).await;

    let resolved = read_stream_with(
        &app.client,
        "$et-OrderPlaced",
        &ReadStreamOptions::default().resolve_link_tos(),
    )
    .await?;
    assert_eq!(resolved.len(), 2);
    assert_resolved(&resolved[0], "order-1", 0, "$et-OrderPlaced", 0);
    assert_resolved(&resolved[1], "order-2", 0, "$et-OrderPlaced", 1);
    assert!(resolved.iter().all(|e| e
        .event
        .as_ref()
        .is_some_and(|t| t.event_type == "OrderPlaced")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_category_projections_list_each_stream_once() -> anyhow::Result<()> {
    let app = spawn_app().await;
    write_orders(&app.client).await?;

    wait_for_links(
        &app.client,
        "$category-order",
        &[("$@", "order-1"), ("$@", "order-2")],
    )
    .await;

    let client = &app.client;
    wait_until(
        Duration::from_secs(10),
        "$streams links the first event of order-1 and order-2",
        || async move {
            let links = links_in(client, "$streams").await;
            links.iter().filter(|l| l.1 == "0@order-1").count() == 1
                && links.iter().filter(|l| l.1 == "0@order-2").count() == 1
        },
    )
    .await;
    let links = links_in(&app.client, "$streams").await;
    assert!(
        links.iter().all(|(event_type, _)| event_type == "$>"),
        "{links:?}"
    );
    assert!(
        !links.iter().any(|(_, data)| data == "1@order-1"),
        "only first events: {links:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_deleted_event_resolves_to_the_link_alone() -> anyhow::Result<()> {
    let app = spawn_app().await;
    app.client
        .append_to_stream("parcel-1", &Default::default(), json_event("ParcelSent", 1))
        .await?;
    app.client
        .append_to_stream("parcel-2", &Default::default(), json_event("ParcelSent", 2))
        .await?;
    wait_for_links(
        &app.client,
        "$ce-parcel",
        &[link("0@parcel-1"), link("0@parcel-2")],
    )
    .await;
    // Resolved once before the delete: the store remembers the targets' streams as visible, and the delete
    // must make it forget.
    let before = read_stream_with(
        &app.client,
        "$ce-parcel",
        &ReadStreamOptions::default().resolve_link_tos(),
    )
    .await?;
    assert!(before.iter().all(|e| e.event.is_some()), "{before:?}");

    app.client
        .delete_stream("parcel-1", &Default::default())
        .await?;

    let resolved = read_stream_with(
        &app.client,
        "$ce-parcel",
        &ReadStreamOptions::default().resolve_link_tos(),
    )
    .await?;
    assert_eq!(resolved.len(), 2);
    assert!(
        resolved[0].event.is_none(),
        "the target is gone: {:?}",
        resolved[0]
    );
    let dangling = resolved[0]
        .link
        .as_ref()
        .expect("the link itself is returned");
    assert_eq!(String::from_utf8_lossy(&dangling.data), "0@parcel-1");
    assert_eq!(original(&resolved[0]).stream_id, "$ce-parcel");
    assert_resolved(&resolved[1], "parcel-2", 0, "$ce-parcel", 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_to_a_category_stream_resolves_new_links() -> anyhow::Result<()> {
    let app = spawn_app().await;
    app.client
        .append_to_stream("shipment-1", &Default::default(), json_event("Packed", 1))
        .await?;
    wait_for_links(&app.client, "$ce-shipment", &[link("0@shipment-1")]).await;

    let mut subscription = app
        .client
        .subscribe_to_stream(
            "$ce-shipment",
            &SubscribeToStreamOptions::default()
                .start_from(StreamPosition::Start)
                .resolve_link_tos(),
        )
        .await;
    let caught_up = catch_up(&mut subscription).await;
    assert_eq!(caught_up.events.len(), 1);
    assert_resolved(&caught_up.events[0], "shipment-1", 0, "$ce-shipment", 0);

    app.client
        .append_to_stream("shipment-2", &Default::default(), json_event("Packed", 2))
        .await?;
    let live = next_event(&mut subscription).await;
    assert_resolved(&live, "shipment-2", 0, "$ce-shipment", 1);
    assert_eq!(live.event.as_ref().map(payload_number), Some(2));
    Ok(())
}
