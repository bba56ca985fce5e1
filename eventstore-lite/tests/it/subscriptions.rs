//! Catch-up subscriptions: to a stream and to `$all`, from the start, a revision or position (exclusive) or the
//! end; confirmation, history, caught-up, then live events; filtered `$all` subscriptions with checkpoints.

use eventstore::{
    Position, StreamPosition, SubscribeToAllOptions, SubscribeToStreamOptions, SubscriptionEvent,
    SubscriptionFilter,
};

use crate::helpers::*;

fn revisions(events: &[eventstore::ResolvedEvent]) -> Vec<u64> {
    events.iter().map(|e| original(e).revision).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_subscription_catches_up_then_goes_live() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("chat");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Said", 0, 3),
        )
        .await?;

    let mut subscription = app
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;

    match next_message(&mut subscription).await {
        SubscriptionEvent::Confirmed(id) => assert!(!id.is_empty(), "a subscription id"),
        other => panic!("the first message confirms the subscription, got {other:?}"),
    }
    let history = catch_up(&mut subscription).await;
    assert_eq!(revisions(&history.events), vec![0, 1, 2]);
    assert!(history
        .events
        .iter()
        .all(|e| original(e).stream_id == stream));

    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Said", 3, 2),
        )
        .await?;
    let other = unique_stream("chat");
    app.client
        .append_to_stream(other.as_str(), &Default::default(), json_event("Said", 0))
        .await?;
    app.client
        .append_to_stream(stream.as_str(), &Default::default(), json_event("Said", 5))
        .await?;

    let live: Vec<_> = [
        next_event(&mut subscription).await,
        next_event(&mut subscription).await,
        next_event(&mut subscription).await,
    ]
    .into_iter()
    .collect();
    assert_eq!(
        revisions(&live),
        vec![3, 4, 5],
        "only this stream's events, in order"
    );
    assert_eq!(
        live.iter()
            .map(|e| payload_number(original(e)))
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_subscription_from_a_revision_starts_after_it() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("chat");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Said", 0, 5),
        )
        .await?;

    let mut subscription = app
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Position(2)),
        )
        .await;

    let history = catch_up(&mut subscription).await;
    assert_eq!(revisions(&history.events), vec![3, 4]);
    app.client
        .append_to_stream(stream.as_str(), &Default::default(), json_event("Said", 5))
        .await?;
    assert_eq!(original(&next_event(&mut subscription).await).revision, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_subscription_from_the_end_sees_only_new_events() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("chat");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Said", 0, 3),
        )
        .await?;

    let mut subscription = app
        .client
        .subscribe_to_stream(stream.as_str(), &SubscribeToStreamOptions::default())
        .await;
    let history = catch_up(&mut subscription).await;
    assert!(history.events.is_empty(), "{:?}", history.events);

    app.client
        .append_to_stream(stream.as_str(), &Default::default(), json_event("Said", 3))
        .await?;
    let live = next_event(&mut subscription).await;
    assert_eq!(original(&live).revision, 3);
    assert_eq!(payload_number(original(&live)), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_to_a_stream_that_does_not_exist_yet_waits_for_it() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("later");

    let mut subscription = app
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    let history = catch_up(&mut subscription).await;
    assert!(history.events.is_empty());

    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Arrived", 0, 2),
        )
        .await?;
    assert_eq!(original(&next_event(&mut subscription).await).revision, 0);
    assert_eq!(original(&next_event(&mut subscription).await).revision, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_subscription_catches_up_then_goes_live() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("feed");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_events("Posted", 0, 3),
        )
        .await?;

    let mut subscription = app
        .client
        .subscribe_to_all(&SubscribeToAllOptions::default())
        .await;
    let history = catch_up(&mut subscription).await;
    assert!(history.confirmed, "the subscription was confirmed");
    let ours: Vec<_> = history
        .events
        .iter()
        .filter(|e| original(e).stream_id == stream)
        .collect();
    assert_eq!(
        ours.iter()
            .map(|e| original(e).revision)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let summaries: Vec<Summary> = history
        .events
        .iter()
        .map(|e| summary(original(e)))
        .collect();
    assert_positions_strictly_increase(&summaries);

    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Posted", 3),
        )
        .await?;
    let last_seen = summaries.last().expect("history").position;
    loop {
        let event = next_event(&mut subscription).await;
        let event = original(&event);
        assert!(event.position > last_seen, "live events come after history");
        if event.stream_id == stream {
            assert_eq!(event.revision, 3);
            break;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_subscription_from_a_position_starts_after_it() -> anyhow::Result<()> {
    let app = spawn_app_without_projections().await;
    let stream = unique_stream("feed");
    let mut positions = Vec::new();
    for n in 0..4 {
        positions.push(
            app.client
                .append_to_stream(
                    stream.as_str(),
                    &Default::default(),
                    json_event("Posted", n),
                )
                .await?
                .position,
        );
    }

    let mut subscription = app
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default().position(StreamPosition::Position(positions[1])),
        )
        .await;
    let history = catch_up(&mut subscription).await;
    let seen: Vec<Position> = history
        .events
        .iter()
        .map(|e| original(e).position)
        .collect();
    assert_eq!(
        seen,
        positions[2..].to_vec(),
        "exclusive of the starting position"
    );

    let mut from_end = app
        .client
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
        .await;
    assert!(catch_up(&mut from_end).await.events.is_empty());
    let written = app
        .client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Posted", 4),
        )
        .await?;
    assert_eq!(
        original(&next_event(&mut from_end).await).position,
        written.position
    );
    assert_eq!(
        original(&next_event(&mut subscription).await).position,
        written.position
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_all_subscription_delivers_matching_events_and_checkpoints() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let write = |stream: String, first: u64, count: u64| {
        let client = app.client.clone();
        async move {
            client
                .append_to_stream(
                    stream,
                    &Default::default(),
                    json_events("Moved", first, count),
                )
                .await
        }
    };
    // Far more non-matching events than the checkpoint window (32 events), around a few matching ones.
    let mut expected = Vec::new();
    for round in 0..20 {
        write(format!("noise-{}", round % 7), round * 10, 10).await?;
        if round % 5 == 0 {
            let written = write(format!("acct-{round}"), round, 1).await?;
            expected.push(written.position);
        }
    }

    let filter = SubscriptionFilter::on_stream_name().add_prefix("acct-");
    let mut subscription = app
        .client
        .subscribe_to_all(&SubscribeToAllOptions::default().filter(filter))
        .await;
    let history = catch_up(&mut subscription).await;

    let seen: Vec<Position> = history
        .events
        .iter()
        .map(|e| original(e).position)
        .collect();
    assert_eq!(seen, expected, "only acct- events, in order");
    assert!(history
        .events
        .iter()
        .all(|e| original(e).stream_id.starts_with("acct-")));
    assert!(
        !history.checkpoints.is_empty(),
        "a filtered subscription sends checkpoints while it skips non-matching events"
    );
    let end_of_history = read_all_forwards(&app.client)
        .await
        .last()
        .expect("$all is not empty")
        .position;
    for pair in history.checkpoints.windows(2) {
        assert!(pair[0] <= pair[1], "checkpoints move forwards: {pair:?}");
    }
    for checkpoint in &history.checkpoints {
        assert_eq!(checkpoint.commit, checkpoint.prepare);
        assert!(
            *checkpoint <= end_of_history,
            "a checkpoint is a position already in $all"
        );
    }

    // Live: checkpoints keep coming while only non-matching events are written.
    for round in 20..30 {
        write(format!("noise-{}", round % 7), round * 10, 10).await?;
    }
    let matching = write("acct-live".to_owned(), 300, 1).await?;
    let mut live_checkpoints = Vec::new();
    let live_event = loop {
        match next_message(&mut subscription).await {
            SubscriptionEvent::Checkpoint(position) => live_checkpoints.push(position),
            SubscriptionEvent::EventAppeared(event) => break event,
            _ => {}
        }
    };
    assert_eq!(original(&live_event).stream_id, "acct-live");
    assert_eq!(original(&live_event).position, matching.position);
    assert!(
        !live_checkpoints.is_empty(),
        "checkpoints while live, before the next matching event"
    );
    let last_history_checkpoint = history
        .checkpoints
        .last()
        .copied()
        .unwrap_or_else(Position::start);
    for checkpoint in &live_checkpoints {
        assert!(*checkpoint >= last_history_checkpoint);
        assert!(
            *checkpoint < matching.position,
            "a checkpoint before the event it precedes"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_all_subscription_on_event_type_goes_live() -> anyhow::Result<()> {
    let app = spawn_app().await;
    app.client
        .append_to_stream("wallet-1", &Default::default(), json_event("FundsAdded", 1))
        .await?;
    app.client
        .append_to_stream("wallet-1", &Default::default(), json_event("Renamed", 2))
        .await?;

    let filter = SubscriptionFilter::on_event_type().regex("^Funds");
    let mut subscription = app
        .client
        .subscribe_to_all(&SubscribeToAllOptions::default().filter(filter))
        .await;
    let history = catch_up(&mut subscription).await;
    assert_eq!(
        history
            .events
            .iter()
            .map(|e| original(e).event_type.clone())
            .collect::<Vec<_>>(),
        vec!["FundsAdded"]
    );

    app.client
        .append_to_stream("wallet-2", &Default::default(), json_event("Renamed", 3))
        .await?;
    app.client
        .append_to_stream(
            "wallet-2",
            &Default::default(),
            json_event("FundsRemoved", 4),
        )
        .await?;
    let live = next_event(&mut subscription).await;
    assert_eq!(original(&live).event_type, "FundsRemoved");
    assert_eq!(original(&live).stream_id, "wallet-2");
    Ok(())
}

/// With a live read interval, commits that come while a subscription waits out its interval are read together
/// when it ends: every event still arrives, once, in order, to a stream subscription and a filtered `$all` one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_subscriptions_deliver_every_event_of_quick_commits_in_order() -> anyhow::Result<()> {
    const COUNT: u64 = 200;
    let app = spawn_paced_app().await;
    let stream = unique_stream("paced");
    let mut to_stream = app
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    let mut to_all = app
        .client
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .filter(SubscriptionFilter::on_stream_name().add_prefix(&stream)),
        )
        .await;
    catch_up(&mut to_stream).await;
    catch_up(&mut to_all).await;

    append_one_by_one(&app.client, &stream, COUNT).await;

    for subscription in [&mut to_stream, &mut to_all] {
        let mut numbers = Vec::new();
        for _ in 0..COUNT {
            numbers.push(payload_number(original(&next_event(subscription).await)));
        }
        assert_eq!(numbers, (0..COUNT).collect::<Vec<_>>());
    }
    Ok(())
}
