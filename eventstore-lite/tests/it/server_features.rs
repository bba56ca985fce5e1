//! Connecting and stopping: the advertised server version and features, clients that discover the node through
//! gossip, name a node preference or send credentials to an insecure node, and a clean shutdown that does not wait
//! on open sessions.

use eventstore::operations::Features;
use eventstore::{Endpoint, ExpectedRevision};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reports_an_eventstoredb_version_and_batch_append() -> anyhow::Result<()> {
    let app = spawn_app().await;

    let info = app.client.server_info().await?;

    assert!(
        info.version().major() >= 20,
        "an EventStoreDB-like version, got {}",
        info.version()
    );
    assert!(
        info.contains_features(Features::BATCH_APPEND),
        "BatchAppend is advertised"
    );
    let batch = app.client.batch_append(&Default::default()).await?;
    let written = batch
        .append_to_stream(
            unique_stream("probe"),
            ExpectedRevision::NoStream,
            vec![json_event("Probed", 0)],
        )
        .await?;
    assert_eq!(written.current_revision(), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_work_whichever_way_they_connect() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let port = app.addr().port();
    let cases = [
        (
            "node preference",
            format!("esdb://127.0.0.1:{port}?tls=false&nodePreference=leader"),
        ),
        (
            "gossip discovery",
            format!("esdb+discover://127.0.0.1:{port}?tls=false&nodePreference=leader"),
        ),
        (
            "gossip seeds",
            format!("esdb://127.0.0.1:{port},127.0.0.1:{port}?tls=false"),
        ),
        (
            "credentials on an insecure node",
            format!("esdb://admin:changeit@127.0.0.1:{port}?tls=false"),
        ),
        (
            "connection name and deadline",
            format!("esdb://127.0.0.1:{port}?tls=false&connectionName=it&defaultDeadline=5000"),
        ),
    ];

    for (case, connection_string) in cases {
        let client = client_for(&quick_to_connect(&connection_string));
        let stream = unique_stream("probe");
        let written = client
            .append_to_stream(
                stream.as_str(),
                &Default::default(),
                json_events("Probed", 0, 2),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{case}: append: {e}"))?;
        assert_eq!(written.next_expected_version, 1, "{case}");
        let revisions = stream_revisions(&client, &stream)
            .await
            .map_err(|e| anyhow::anyhow!("{case}: read: {e}"))?;
        assert_eq!(revisions, vec![0, 1], "{case}");
        assert_eq!(
            stream_revisions(&app.client, &stream).await?,
            vec![0, 1],
            "{case}: same store"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_names_this_node_as_the_leader() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let port = app.addr().port();

    for connection_string in [
        format!("esdb+discover://127.0.0.1:{port}?tls=false"),
        format!("esdb://127.0.0.1:{port},127.0.0.1:{port}?tls=false&nodePreference=leader"),
    ] {
        let settings = quick_to_connect(&connection_string).parse()?;
        let operations = eventstore::operations::Client::new(settings);
        let selected = within("node selection", operations.current_selected_node())
            .await
            .map_err(|e| anyhow::anyhow!("{connection_string}: {e}"))?;
        assert_eq!(
            selected,
            Endpoint {
                host: "127.0.0.1".to_owned(),
                port: u32::from(port)
            },
            "{connection_string}: the client connects where gossip says the leader listens"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_ends_open_subscriptions_and_batch_sessions_promptly() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let stream = unique_stream("open");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 0),
        )
        .await?;
    let mut subscription = app
        .client
        .subscribe_to_stream(
            stream.as_str(),
            &eventstore::SubscribeToStreamOptions::default()
                .start_from(eventstore::StreamPosition::Start),
        )
        .await;
    catch_up(&mut subscription).await;
    // The official client never ends a batch-append session by itself, not even when it is dropped.
    let batch = app.client.batch_append(&Default::default()).await?;
    batch
        .append_to_stream(
            &stream,
            ExpectedRevision::Exact(0),
            vec![json_event("Opened", 1)],
        )
        .await?;

    let TestApp { server, client } = app;
    let started = std::time::Instant::now();
    within("the shutdown", server.shutdown()).await?;
    let took = started.elapsed();

    assert!(
        took < std::time::Duration::from_secs(2),
        "shutdown took {took:?}: open streams must be ended, not waited for"
    );
    // The batch-appended event may still be on its way; after it, the subscription must end with an error.
    let mut ended = Ok(eventstore::SubscriptionEvent::CaughtUp);
    for _ in 0..3 {
        ended = within(
            "the subscription to end",
            subscription.next_subscription_event(),
        )
        .await;
        if ended.is_err() {
            break;
        }
    }
    assert!(
        ended.is_err(),
        "the subscription ends with an error status (ending it with OK makes the Rust client spin): {ended:?}"
    );
    drop((batch, client));
    Ok(())
}
