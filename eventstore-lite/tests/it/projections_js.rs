//! User-defined JavaScript projections through the official client's `ProjectionClient`: lifecycle (create,
//! statistics, state / result, disable / abort / enable, reset, update, delete), partitioned state, emit with
//! emit disabled (faults) and enabled, a faulting projection beside healthy ones, and a durable projection resuming
//! from its checkpoint after a restart without emitting anything twice.
//! Each language feature also has a small query with exact expectations (`language_cases`).

use std::path::Path;
use std::time::Duration;

use eventstore::{
    Client, CreateProjectionOptions, DeleteProjectionOptions, GenericProjectionOptions,
    GetResultProjectionOptions, GetStateProjectionOptions, ProjectionClient, ProjectionStatus,
    UpdateProjectionOptions,
};
use eventstore_lite::ServerConfig;
use serde_json::{json, Value};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

fn projections_for(app: &TestApp) -> ProjectionClient {
    let settings = quick_to_connect(&app.server.connection_string())
        .parse()
        .expect("the connection string parses");
    ProjectionClient::new(settings)
}

async fn append(client: &Client, stream: &str, event_type: &str, bodies: &[Value]) {
    let events: Vec<_> = bodies
        .iter()
        .map(|b| {
            eventstore::EventData::json(event_type, b)
                .expect("JSON")
                .id(uuid::Uuid::new_v4())
        })
        .collect();
    within(
        "an append",
        client.append_to_stream(stream, &Default::default(), events),
    )
    .await
    .expect("the append succeeds");
}

async fn status(projections: &ProjectionClient, name: &str) -> ProjectionStatus {
    within(
        "statistics",
        projections.get_status(name, &GenericProjectionOptions::default()),
    )
    .await
    .expect("statistics succeed")
    .expect("the projection is listed")
}

async fn state(projections: &ProjectionClient, name: &str, partition: &str) -> Value {
    within(
        "state",
        projections.get_state::<_, Value>(
            name,
            &GetStateProjectionOptions::default().partition(partition),
        ),
    )
    .await
    .expect("the state call succeeds")
    .expect("the state is JSON")
}

async fn result(projections: &ProjectionClient, name: &str, partition: &str) -> Value {
    within(
        "result",
        projections.get_result::<_, Value>(
            name,
            &GetResultProjectionOptions::default().partition(partition),
        ),
    )
    .await
    .expect("the result call succeeds")
    .expect("the result is JSON")
}

async fn wait_for_state(projections: &ProjectionClient, name: &str, partition: &str, want: Value) {
    let want = &want;
    wait_until(
        WAIT,
        &format!("{name}[{partition}] is {want}"),
        || async move { &state(projections, name, partition).await == want },
    )
    .await;
}

async fn wait_for_status(
    projections: &ProjectionClient,
    name: &str,
    want: &str,
) -> ProjectionStatus {
    wait_until(WAIT, &format!("{name} is {want}"), || async move {
        status(projections, name).await.status == want
    })
    .await;
    status(projections, name).await
}

async fn create(projections: &ProjectionClient, name: &str, query: &str, emit: bool) {
    within(
        "create",
        projections.create(
            name,
            query.to_owned(),
            &CreateProjectionOptions::default().emit(emit),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("creating {name}: {e:?}"));
}

/// The `(type, body)` of each event of a stream (empty when it does not exist).
async fn events_in(client: &Client, stream: &str) -> Vec<(String, Value)> {
    match read_stream(client, stream).await {
        Ok(events) => events
            .iter()
            .map(|e| {
                let event = original(e);
                (
                    event.event_type.clone(),
                    serde_json::from_slice(&event.data).unwrap_or(Value::Null),
                )
            })
            .collect(),
        Err(eventstore::Error::ResourceNotFound) => Vec::new(),
        Err(other) => panic!("reading {stream}: {other:?}"),
    }
}

const COUNTER: &str = "fromCategory('account').when({
    $init: function() { return { count: 0, total: 0 }; },
    Deposited: function(s, e) { s.count += 1; s.total += e.body.amount; }
}).transformBy(function(s) { return { average: s.total / s.count }; })";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_projection_counts_and_reports_state_result_and_statistics() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 10})],
    )
    .await;
    create(&projections, "counter", COUNTER, false).await;
    append(
        &app.client,
        "account-2",
        "Deposited",
        &[json!({"amount": 20}), json!({"amount": 30})],
    )
    .await;
    append(
        &app.client,
        "account-2",
        "Withdrawn",
        &[json!({"amount": 5})],
    )
    .await;

    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 3.0, "total": 60.0}),
    )
    .await;
    assert_eq!(
        result(&projections, "counter", "").await,
        json!({"average": 20.0})
    );

    let stats = status(&projections, "counter").await;
    assert_eq!(stats.name, "counter");
    assert_eq!(stats.effective_name, "counter");
    assert_eq!(stats.status, "Running");
    assert_eq!(stats.mode, "Continuous");
    assert_eq!(stats.version, 0);
    assert_eq!(stats.epoch, 0);
    assert_eq!(stats.state_reason, "");

    // The result (outputState through transformBy) is written to the result stream.
    wait_until(WAIT, "a Result event is written", || async {
        events_in(&app.client, "$projections-counter-result")
            .await
            .last()
            .is_some_and(|(t, body)| t == "Result" && body == &json!({"average": 20}))
    })
    .await;
    // The definition is stored.
    let definition = events_in(&app.client, "$projections-counter").await;
    assert_eq!(definition.len(), 1);
    assert_eq!(definition[0].0, "$ProjectionUpdated");
    assert_eq!(definition[0].1["query"], json!(COUNTER));

    // A second create under the same name is refused with EventStoreDB's message.
    let error = projections
        .create(
            "counter",
            COUNTER.to_owned(),
            &CreateProjectionOptions::default(),
        )
        .await
        .expect_err("a duplicate is refused");
    assert!(
        error
            .to_string()
            .contains("Envelope callback expected Updated, received Conflict instead"),
        "{error:?}"
    );

    // Unknown projections: not found.
    let missing = projections
        .get_state::<_, Value>("nope", &GetStateProjectionOptions::default())
        .await;
    assert!(
        matches!(missing, Err(eventstore::Error::ResourceNotFound)),
        "{missing:?}"
    );
    let list: Vec<String> = {
        use futures::TryStreamExt;
        projections
            .list(&GenericProjectionOptions::default())
            .await
            .expect("list")
            .map_ok(|s| s.name)
            .try_collect()
            .await
            .expect("list items")
    };
    assert_eq!(list, ["counter"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_without_state_answers_an_empty_object() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    create(
        &projections,
        "idle",
        "fromStream('nothing-here').when({ $any: function(s, e) { s.n = 1; } })",
        false,
    )
    .await;
    wait_for_status(&projections, "idle", "Running").await;
    assert_eq!(state(&projections, "idle", "").await, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_projection_keeps_a_state_per_partition() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    create(
        &projections,
        "per-account",
        "fromCategory('account').foreachStream().when({
            $init: function() { return { n: 0 }; },
            $any: function(s, e) { s.n += 1; s.last = e.eventType; }
        })",
        false,
    )
    .await;
    append(&app.client, "account-a", "Opened", &[json!({})]).await;
    append(&app.client, "account-b", "Opened", &[json!({})]).await;
    append(
        &app.client,
        "account-a",
        "Deposited",
        &[json!({"amount": 1})],
    )
    .await;

    wait_for_state(
        &projections,
        "per-account",
        "account-a",
        json!({"n": 2.0, "last": "Deposited"}),
    )
    .await;
    wait_for_state(
        &projections,
        "per-account",
        "account-b",
        json!({"n": 1.0, "last": "Opened"}),
    )
    .await;

    create(
        &projections,
        "by-region",
        "fromAll().partitionBy(function(e) { return e.body.region; }).when({
            $any: function(s, e) { s.n = (s.n || 0) + 1; }
        })",
        false,
    )
    .await;
    append(
        &app.client,
        "shop-1",
        "Sold",
        &[
            json!({"region": "north"}),
            json!({"region": "south"}),
            json!({"region": "north"}),
        ],
    )
    .await;
    wait_for_state(&projections, "by-region", "north", json!({"n": 2.0})).await;
    wait_for_state(&projections, "by-region", "south", json!({"n": 1.0})).await;
}

const ALERTS: &str = "fromCategory('account').when({
    $init: function() { return { n: 0 }; },
    Deposited: function(s, e) {
        s.n += 1;
        if (e.body.amount >= 100) { emit('alerts', 'BigDeposit', { stream: e.streamId, amount: e.body.amount }); }
    }
})";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitting_faults_without_emit_enabled_and_writes_events_with_it() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    create(&projections, "no-emit", ALERTS, false).await;
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 5}), json!({"amount": 500})],
    )
    .await;
    let faulted = wait_for_status(&projections, "no-emit", "Faulted").await;
    assert!(
        faulted
            .state_reason
            .contains("'emit' is not allowed by the projection/configuration/mode"),
        "{faulted:?}"
    );
    assert!(events_in(&app.client, "alerts").await.is_empty());

    create(&projections, "with-emit", ALERTS, true).await;
    assert_eq!(
        status(&projections, "with-emit").await.version,
        1,
        "create + the client's emit update"
    );
    wait_for_state(&projections, "with-emit", "", json!({"n": 2.0})).await;
    wait_until(WAIT, "the alert is written", || async {
        events_in(&app.client, "alerts").await
            == vec![(
                "BigDeposit".to_owned(),
                json!({"stream": "account-1", "amount": 500}),
            )]
    })
    .await;
    assert_eq!(status(&projections, "with-emit").await.status, "Running");

    // Turning emit on for the faulted one (an update) restarts it from its checkpoint, and it emits too.
    within(
        "update",
        projections.update(
            "no-emit",
            ALERTS.to_owned(),
            &UpdateProjectionOptions::default().emit(true),
        ),
    )
    .await
    .expect("update");
    wait_for_status(&projections, "no-emit", "Running").await;
    wait_until(WAIT, "both projections alerted", || async {
        events_in(&app.client, "alerts").await.len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_abort_enable_and_reset() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    let options = GenericProjectionOptions::default();
    create(&projections, "counter", COUNTER, false).await;
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 10})],
    )
    .await;
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 1.0, "total": 10.0}),
    )
    .await;

    within("disable", projections.disable("counter", &options))
        .await
        .expect("disable");
    assert_eq!(status(&projections, "counter").await.status, "Stopped");
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 20})],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        state(&projections, "counter", "").await,
        json!({"count": 1.0, "total": 10.0})
    );

    within("enable", projections.enable("counter", &options))
        .await
        .expect("enable");
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 2.0, "total": 30.0}),
    )
    .await;
    assert_eq!(status(&projections, "counter").await.status, "Running");

    within("abort", projections.abort("counter", &options))
        .await
        .expect("abort");
    assert_eq!(status(&projections, "counter").await.status, "Aborted");
    within("enable", projections.enable("counter", &options))
        .await
        .expect("enable");
    wait_for_status(&projections, "counter", "Running").await;
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 2.0, "total": 30.0}),
    )
    .await;

    // Reset: back to the beginning with a new epoch (the version it is written under: create, disable,
    // enable, abort, enable, reset); the same events give the same state.
    within("reset", projections.reset("counter", &options))
        .await
        .expect("reset");
    let after = status(&projections, "counter").await;
    assert_eq!((after.version, after.epoch), (5, 5));
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 2.0, "total": 30.0}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_bumps_the_version_and_changes_the_query_and_delete_removes_it() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    create(&projections, "counter", COUNTER, false).await;
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 10})],
    )
    .await;
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 1.0, "total": 10.0}),
    )
    .await;
    assert_eq!(status(&projections, "counter").await.version, 0);

    let doubled = COUNTER.replace("s.count += 1", "s.count += 2");
    within(
        "update",
        projections.update("counter", doubled, &UpdateProjectionOptions::default()),
    )
    .await
    .expect("update");
    assert_eq!(status(&projections, "counter").await.version, 1);
    // The state carries on from the checkpoint; new events go through the new query.
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 10})],
    )
    .await;
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 3.0, "total": 20.0}),
    )
    .await;

    within(
        "disable",
        projections.disable("counter", &GenericProjectionOptions::default()),
    )
    .await
    .expect("disable");
    within(
        "delete",
        projections.delete(
            "counter",
            &DeleteProjectionOptions::default()
                .delete_checkpoint_stream(true)
                .delete_state_stream(true),
        ),
    )
    .await
    .expect("delete");
    let gone = projections
        .get_status("counter", &GenericProjectionOptions::default())
        .await;
    assert!(
        matches!(gone, Err(eventstore::Error::ResourceNotFound)),
        "{gone:?}"
    );
    let again = projections
        .delete("counter", &DeleteProjectionOptions::default())
        .await;
    assert!(
        matches!(again, Err(eventstore::Error::ResourceNotFound)),
        "{again:?}"
    );
    assert!(events_in(&app.client, "$projections-counter-checkpoint")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_projection_is_faulted_with_its_message_while_others_keep_running() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    create(
        &projections,
        "thrower",
        "fromCategory('account').when({ Deposited: function(s, e) { throw new Error('bad amount ' + e.body.amount); } })",
        false,
    )
    .await;
    create(
        &projections,
        "spinner",
        "fromCategory('account').when({ Deposited: function(s, e) { while (true) {} } })",
        false,
    )
    .await;
    create(&projections, "counter", COUNTER, false).await;
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 7})],
    )
    .await;

    let thrower = wait_for_status(&projections, "thrower", "Faulted").await;
    assert!(thrower.state_reason.contains("bad amount 7"), "{thrower:?}");
    let spinner = wait_for_status(&projections, "spinner", "Faulted").await;
    assert!(spinner.state_reason.contains("stopped"), "{spinner:?}");

    append(
        &app.client,
        "account-2",
        "Deposited",
        &[json!({"amount": 3})],
    )
    .await;
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 2.0, "total": 10.0}),
    )
    .await;
    assert_eq!(status(&projections, "counter").await.status, "Running");

    // A query that does not compile faults at once.
    create(&projections, "broken", "fromAll().when({", false).await;
    let broken = wait_for_status(&projections, "broken", "Faulted").await;
    assert!(!broken.state_reason.is_empty());
}

async fn start_on(dir: &Path) -> TestApp {
    spawn_app_with(ServerConfig::on_disk(dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_projection_resumes_from_its_checkpoint_after_a_restart_without_duplicate_emits(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let app = start_on(dir.path()).await;
        let projections = projections_for(&app);
        create(&projections, "alerts", ALERTS, true).await;
        create(&projections, "counter", COUNTER, false).await;
        append(
            &app.client,
            "account-1",
            "Deposited",
            &[json!({"amount": 100}), json!({"amount": 1})],
        )
        .await;
        wait_for_state(&projections, "alerts", "", json!({"n": 2.0})).await;
        wait_for_state(
            &projections,
            "counter",
            "",
            json!({"count": 2.0, "total": 101.0}),
        )
        .await;
        wait_until(WAIT, "one alert", || async {
            events_in(&app.client, "alerts").await.len() == 1
        })
        .await;
        let TestApp { server, client } = app;
        drop(client);
        within("the shutdown", server.shutdown()).await?;
    }

    let app = start_on(dir.path()).await;
    let projections = projections_for(&app);
    // The state comes back from the checkpoint, before any new event.
    wait_for_state(&projections, "alerts", "", json!({"n": 2.0})).await;
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 2.0, "total": 101.0}),
    )
    .await;
    let stats = status(&projections, "alerts").await;
    assert_eq!((stats.status.as_str(), stats.version), ("Running", 1));

    append(
        &app.client,
        "account-2",
        "Deposited",
        &[json!({"amount": 200})],
    )
    .await;
    wait_for_state(&projections, "alerts", "", json!({"n": 3.0})).await;
    wait_for_state(
        &projections,
        "counter",
        "",
        json!({"count": 3.0, "total": 301.0}),
    )
    .await;
    wait_until(WAIT, "two alerts", || async {
        events_in(&app.client, "alerts").await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        events_in(&app.client, "alerts").await,
        vec![
            (
                "BigDeposit".to_owned(),
                json!({"stream": "account-1", "amount": 100})
            ),
            (
                "BigDeposit".to_owned(),
                json!({"stream": "account-2", "amount": 200})
            ),
        ]
    );

    // RestartSubsystem: the projections come back from their checkpoints as well.
    within(
        "restart subsystem",
        projections.restart_subsystem(&GenericProjectionOptions::default()),
    )
    .await?;
    wait_for_state(&projections, "alerts", "", json!({"n": 3.0})).await;
    assert_eq!(events_in(&app.client, "alerts").await.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_a_projection_resumes_and_emits_nothing_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let app = start_on(dir.path()).await;
        let projections = projections_for(&app);
        create(&projections, "alerts", ALERTS, true).await;
        append(
            &app.client,
            "account-1",
            "Deposited",
            &[json!({"amount": 100}), json!({"amount": 150})],
        )
        .await;
        wait_until(WAIT, "two alerts", || async {
            events_in(&app.client, "alerts").await.len() == 2
        })
        .await;
        let TestApp { server, client } = app;
        drop(client);
        within("the crash", server.crash()).await;
    }

    let app = start_on(dir.path()).await;
    let projections = projections_for(&app);
    append(
        &app.client,
        "account-2",
        "Deposited",
        &[json!({"amount": 300})],
    )
    .await;
    wait_for_state(&projections, "alerts", "", json!({"n": 3.0})).await;
    wait_until(WAIT, "three alerts", || async {
        events_in(&app.client, "alerts").await.len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let amounts: Vec<Value> = events_in(&app.client, "alerts")
        .await
        .into_iter()
        .map(|(_, body)| body["amount"].clone())
        .collect();
    assert_eq!(amounts, [json!(100), json!(150), json!(300)]);
    Ok(())
}

/// The Rust client creates continuous projections only; one-time and transient ones are created here with the
/// protocol's own `Create` message (field numbers of `projections.proto`), over a plain gRPC channel.
mod raw {
    use std::net::SocketAddr;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateReq {
        #[prost(message, optional, tag = "1")]
        pub options: Option<CreateOptions>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateOptions {
        #[prost(oneof = "Mode", tags = "1, 2")]
        pub mode: Option<Mode>,
        #[prost(string, tag = "4")]
        pub query: String,
    }
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Mode {
        #[prost(message, tag = "1")]
        OneTime(Empty),
        #[prost(message, tag = "2")]
        Transient(Named),
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Named {
        #[prost(string, tag = "1")]
        pub name: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateResp {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatisticsReq {
        #[prost(message, optional, tag = "1")]
        pub options: Option<StatisticsOptions>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatisticsOptions {
        /// `all`
        #[prost(message, optional, tag = "2")]
        pub all: Option<Empty>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatisticsResp {
        #[prost(message, optional, tag = "1")]
        pub details: Option<Details>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Details {
        #[prost(string, tag = "10")]
        pub name: String,
        #[prost(string, tag = "11")]
        pub mode: String,
    }

    async fn connect(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect()
            .await
            .expect("the server accepts a connection");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("the channel is ready");
        grpc
    }

    /// `(name, mode)` of every projection (Statistics with `all`, which the Rust client never asks for).
    pub async fn all(addr: SocketAddr) -> Vec<(String, String)> {
        let mut grpc = connect(addr).await;
        let request = StatisticsReq {
            options: Some(StatisticsOptions {
                all: Some(Empty {}),
            }),
        };
        let mut stream = grpc
            .server_streaming(
                tonic::Request::new(request),
                http::uri::PathAndQuery::from_static(
                    "/event_store.client.projections.Projections/Statistics",
                ),
                tonic::codec::ProstCodec::<StatisticsReq, StatisticsResp>::default(),
            )
            .await
            .expect("statistics")
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.message().await.expect("a statistics item") {
            let details = item.details.unwrap_or_default();
            out.push((details.name, details.mode));
        }
        out
    }

    pub async fn create(addr: SocketAddr, mode: Mode, query: &str) -> Result<(), tonic::Status> {
        let mut grpc = connect(addr).await;
        let request = CreateReq {
            options: Some(CreateOptions {
                mode: Some(mode),
                query: query.to_owned(),
            }),
        };
        grpc.unary(
            tonic::Request::new(request),
            http::uri::PathAndQuery::from_static(
                "/event_store.client.projections.Projections/Create",
            ),
            tonic::codec::ProstCodec::<CreateReq, CreateResp>::default(),
        )
        .await
        .map(|_| ())
    }
}

async fn listed(projections: &ProjectionClient) -> Vec<ProjectionStatus> {
    use futures::TryStreamExt;
    within("list", async {
        projections
            .list(&GenericProjectionOptions::default())
            .await
            .expect("list")
            .try_collect::<Vec<_>>()
            .await
            .expect("list items")
    })
    .await
}

const DEPOSITS: &str = "fromCategory('account').when({
    $init: function() { return { count: 0, total: 0 }; },
    Deposited: function(s, e) { s.count += 1; s.total += e.body.amount; }
}).outputState()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_one_time_projection_stays_completed_across_a_restart_and_a_transient_one_is_forgotten(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let one_time = {
        let app = start_on(dir.path()).await;
        let projections = projections_for(&app);
        append(
            &app.client,
            "account-1",
            "Deposited",
            &[json!({"amount": 10}), json!({"amount": 20})],
        )
        .await;
        within(
            "a one-time create",
            raw::create(app.addr(), raw::Mode::OneTime(raw::Empty {}), DEPOSITS),
        )
        .await?;
        within(
            "a transient create",
            raw::create(
                app.addr(),
                raw::Mode::Transient(raw::Named {
                    name: "passing".to_owned(),
                }),
                DEPOSITS,
            ),
        )
        .await?;
        let all = within("statistics", raw::all(app.addr())).await;
        let one_time = all
            .iter()
            .find(|(_, mode)| mode == "OneTime")
            .map(|(name, _)| name.clone())
            .expect("the one-time projection is listed under a generated name");
        assert!(
            all.contains(&("passing".to_owned(), "Transient".to_owned())),
            "{all:?}"
        );
        wait_for_status(&projections, &one_time, "Completed").await;
        assert_eq!(
            state(&projections, &one_time, "").await,
            json!({"count": 2.0, "total": 30.0})
        );
        wait_for_state(
            &projections,
            "passing",
            "",
            json!({"count": 2.0, "total": 30.0}),
        )
        .await;
        // A completed one-time projection does not take later events.
        append(
            &app.client,
            "account-1",
            "Deposited",
            &[json!({"amount": 5})],
        )
        .await;
        wait_for_state(
            &projections,
            "passing",
            "",
            json!({"count": 3.0, "total": 35.0}),
        )
        .await;
        assert_eq!(
            state(&projections, &one_time, "").await,
            json!({"count": 2.0, "total": 30.0})
        );
        let TestApp { server, client } = app;
        drop(client);
        within("the shutdown", server.shutdown()).await?;
        one_time
    };

    let app = start_on(dir.path()).await;
    let projections = projections_for(&app);
    let after = wait_for_status(&projections, &one_time, "Completed").await;
    assert_eq!(after.mode, "OneTime");
    assert_eq!(
        state(&projections, &one_time, "").await,
        json!({"count": 2.0, "total": 30.0})
    );
    assert_eq!(
        result(&projections, &one_time, "").await,
        json!({"count": 2.0, "total": 30.0})
    );
    let missing = projections
        .get_status("passing", &GenericProjectionOptions::default())
        .await;
    assert!(
        matches!(missing, Err(eventstore::Error::ResourceNotFound)),
        "a transient projection is not stored: {missing:?}"
    );
    assert_eq!(
        within("statistics", raw::all(app.addr())).await,
        [(one_time, "OneTime".to_owned())]
    );
    assert!(
        listed(&projections).await.is_empty(),
        "no continuous projection"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_events_processes_several_streams_in_all_order_and_bad_options_fault_with_eventstoredbs_messages(
) {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    create(
        &projections,
        "merged",
        "options({ reorderEvents: true, processingLag: 100 });
         fromStreams(['left-1', 'right-1']).when({
            $init: function() { return { seen: [] }; },
            $any: function(s, e) { s.seen.push(e.streamId + ':' + e.sequenceNumber); }
         })",
        false,
    )
    .await;
    for (stream, n) in [
        ("left-1", 0),
        ("right-1", 0),
        ("right-1", 1),
        ("left-1", 1),
        ("right-1", 2),
    ] {
        append(&app.client, stream, "Tick", &[json!({ "n": n })]).await;
    }
    wait_for_state(
        &projections,
        "merged",
        "",
        json!({"seen": ["left-1:0", "right-1:0", "right-1:1", "left-1:1", "right-1:2"]}),
    )
    .await;
    assert_eq!(status(&projections, "merged").await.status, "Running");

    for (name, query, reason) in [
        (
            "reorder-all",
            "options({ reorderEvents: true, processingLag: 100 }); fromAll().when({ $any: function(s) { return s; } })",
            "Event reordering cannot be used with fromAll()",
        ),
        (
            "reorder-one",
            "options({ reorderEvents: true, processingLag: 100 }); fromStreams(['a-1']).when({ $any: function(s) { return s; } })",
            "Event reordering is only available in fromStreams([]) projections",
        ),
        (
            "reorder-quick",
            "options({ reorderEvents: true, processingLag: 10 }); fromStreams(['a-1', 'b-1']).when({ $any: function(s) { return s; } })",
            "Event reordering requires processing lag at least of 50ms",
        ),
    ] {
        create(&projections, name, query, false).await;
        let faulted = wait_for_status(&projections, name, "Faulted").await;
        assert_eq!(faulted.state_reason, reason);
    }
}

const SHARED: &str = "options({ biState: true });
fromCategory('account').foreachStream().when({
    $init: function() { return { n: 0 }; },
    $initShared: function() { return { total: 0, accounts: 0 }; },
    $created: function(s, e) { s[1].accounts += 1; },
    Deposited: function(s, e) { s[0].n += 1; s[1].total += e.body.amount; return s; }
})";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bi_state_projection_keeps_a_state_per_partition_and_one_shared_by_all(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let app = start_on(dir.path()).await;
        let projections = projections_for(&app);
        create(&projections, "shared", SHARED, false).await;
        append(
            &app.client,
            "account-1",
            "Deposited",
            &[json!({"amount": 10}), json!({"amount": 20})],
        )
        .await;
        append(
            &app.client,
            "account-2",
            "Deposited",
            &[json!({"amount": 30})],
        )
        .await;
        wait_for_state(
            &projections,
            "shared",
            "",
            json!({"total": 60.0, "accounts": 2.0}),
        )
        .await;
        assert_eq!(
            state(&projections, "shared", "account-1").await,
            json!({"n": 2.0})
        );
        assert_eq!(
            state(&projections, "shared", "account-2").await,
            json!({"n": 1.0})
        );
        let TestApp { server, client } = app;
        drop(client);
        within("the shutdown", server.shutdown()).await?;
    }
    // Both the partitions' and the shared state come back from the checkpoint.
    let app = start_on(dir.path()).await;
    let projections = projections_for(&app);
    wait_for_state(
        &projections,
        "shared",
        "",
        json!({"total": 60.0, "accounts": 2.0}),
    )
    .await;
    append(
        &app.client,
        "account-1",
        "Deposited",
        &[json!({"amount": 5})],
    )
    .await;
    wait_for_state(
        &projections,
        "shared",
        "",
        json!({"total": 65.0, "accounts": 2.0}),
    )
    .await;
    assert_eq!(
        state(&projections, "shared", "account-1").await,
        json!({"n": 3.0})
    );
    Ok(())
}

/// `(type, data as text)` of each event of a stream (empty when it does not exist).
async fn raw_events_in(client: &Client, stream: &str) -> Vec<(String, String)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_projection_writes_one_partition_event_per_new_partition() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    create(
        &projections,
        "regions",
        "fromCategory('shop').partitionBy(function(e) { return e.body.region; }).when({
            $any: function(s, e) { s.n = (s.n || 0) + 1; }
        })",
        false,
    )
    .await;
    append(
        &app.client,
        "shop-1",
        "Sold",
        &[json!({"region": "north"}), json!({"region": "south"})],
    )
    .await;
    wait_for_state(&projections, "regions", "south", json!({"n": 1.0})).await;
    append(
        &app.client,
        "shop-2",
        "Sold",
        &[json!({"region": "north"}), json!({"region": "west"})],
    )
    .await;
    wait_for_state(&projections, "regions", "west", json!({"n": 1.0})).await;
    wait_for_state(&projections, "regions", "north", json!({"n": 2.0})).await;
    let expected: Vec<(String, String)> = ["north", "south", "west"]
        .iter()
        .map(|p| ("$partition".to_owned(), (*p).to_owned()))
        .collect();
    let expected = &expected;
    wait_until(WAIT, "three $partition events", || async {
        &raw_events_in(&app.client, "$projections-regions-partitions").await == expected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_definition_change_bumps_the_version_as_eventstoredb_does_and_reset_takes_the_new_version_as_epoch(
) {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    let options = GenericProjectionOptions::default();
    create(&projections, "counter", COUNTER, false).await;
    wait_for_status(&projections, "counter", "Running").await;
    let version = |p: ProjectionStatus| (p.version, p.epoch);
    assert_eq!(version(status(&projections, "counter").await), (0, 0));

    // Enabling a running projection changes nothing.
    within("enable", projections.enable("counter", &options))
        .await
        .expect("enable");
    assert_eq!(version(status(&projections, "counter").await), (0, 0));

    within("disable", projections.disable("counter", &options))
        .await
        .expect("disable");
    assert_eq!(version(status(&projections, "counter").await), (1, 0));
    within("enable", projections.enable("counter", &options))
        .await
        .expect("enable");
    assert_eq!(version(status(&projections, "counter").await), (2, 0));
    within("abort", projections.abort("counter", &options))
        .await
        .expect("abort");
    assert_eq!(version(status(&projections, "counter").await), (3, 0));
    within("enable", projections.enable("counter", &options))
        .await
        .expect("enable");
    within("reset", projections.reset("counter", &options))
        .await
        .expect("reset");
    assert_eq!(version(status(&projections, "counter").await), (5, 5));
    // Each change is a `$ProjectionUpdated` in the definition stream, whose last event number is the version.
    assert_eq!(
        events_in(&app.client, "$projections-counter").await.len(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_emitted_before_a_crash_that_beat_the_checkpoint_are_not_written_again(
) -> anyhow::Result<()> {
    use eventstore_lite::projections::runner::{emitted_event_id, Mode, ProjectionConfig};
    let dir = tempfile::tempdir()?;
    {
        // The state a crash between the emitted events' write and the checkpoint's leaves: the source event,
        // and the alert the projection emitted for it, with the id the runner gives it — but no checkpoint.
        let app = start_on(dir.path()).await;
        let written = within(
            "an append",
            app.client.append_to_stream(
                "account-1",
                &Default::default(),
                eventstore::EventData::json("Deposited", &json!({"amount": 500}))?,
            ),
        )
        .await?;
        let config = ProjectionConfig {
            name: "alerts".to_owned(),
            query: ALERTS.to_owned(),
            mode: Mode::Continuous,
            enabled: true,
            emit_enabled: true,
            track_emitted_streams: false,
            epoch: 0,
        };
        let alert = eventstore::EventData::json(
            "BigDeposit",
            &json!({"stream": "account-1", "amount": 500}),
        )?
        .id(emitted_event_id(&config, written.position.commit, 0));
        within(
            "the alert",
            app.client
                .append_to_stream("alerts", &Default::default(), alert),
        )
        .await?;
        let TestApp { server, client } = app;
        drop(client);
        within("the crash", server.crash()).await;
    }

    let app = start_on(dir.path()).await;
    let projections = projections_for(&app);
    create(&projections, "alerts", ALERTS, true).await;
    wait_for_state(&projections, "alerts", "", json!({"n": 1.0})).await;
    append(
        &app.client,
        "account-2",
        "Deposited",
        &[json!({"amount": 300})],
    )
    .await;
    wait_for_state(&projections, "alerts", "", json!({"n": 2.0})).await;
    wait_until(WAIT, "the second alert", || async {
        events_in(&app.client, "alerts").await.len() >= 2
    })
    .await;
    let amounts: Vec<Value> = events_in(&app.client, "alerts")
        .await
        .into_iter()
        .map(|(_, body)| body["amount"].clone())
        .collect();
    assert_eq!(amounts, [json!(500), json!(300)]);
    Ok(())
}

/// One step of a language-feature case, run in order.
enum Step {
    /// A JSON event (`stream`, `type`, body).
    Json(&'static str, &'static str, Value),
    /// Any event, as the client builds it.
    Event(&'static str, eventstore::EventData),
    /// A hard delete (tombstone) of the stream.
    Tombstone(&'static str),
    /// A soft delete of the stream.
    SoftDelete(&'static str),
}

/// What a case must end with, exactly.
enum Expect {
    /// The state of a partition (`""`: the projection's own).
    State(&'static str, Value),
    /// The result of a partition.
    Result(&'static str, Value),
    /// Every event of a stream, as `(type, data as text)`.
    Stream(&'static str, Vec<(&'static str, &'static str)>),
    /// The last event of a result stream: a `Result` with this data.
    LastResult(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    query: &'static str,
    emit: bool,
    steps: Vec<Step>,
    expect: Vec<Expect>,
}

const EVENT_ID_1: &str = "6f1d2f1e-2c47-4a4e-9d0e-0f7a1c3b5d01";
const EVENT_ID_2: &str = "6f1d2f1e-2c47-4a4e-9d0e-0f7a1c3b5d02";

fn language_cases() -> Vec<Case> {
    use Expect::*;
    use Step::*;
    vec![
        // A `$initShared` handler turns the shared state on without `options({ biState: true })`.
        Case {
            name: "init-shared",
            query: "fromCategory('shr').foreachStream().when({
                $init: function() { return { n: 0 }; },
                $initShared: function() { return { total: 0 }; },
                $any: function(s, e) { s[0].n += 1; s[1].total += 1; return s; }
            })",
            emit: false,
            steps: vec![
                Json("shr-1", "T", json!({})),
                Json("shr-2", "T", json!({})),
                Json("shr-1", "T", json!({})),
            ],
            expect: vec![
                State("shr-1", json!({"n": 2.0})),
                State("shr-2", json!({"n": 1.0})),
                State("", json!({"total": 3.0})),
            ],
        },
        Case {
            name: "from-stream",
            query: "fromStream('fs-1').when({
                $init: function() { return { types: [] }; },
                $any: function(s, e) { s.types.push(e.eventType); }
            })",
            emit: false,
            steps: vec![
                Json("fs-1", "A", json!({})),
                Json("fs-2", "Other", json!({})),
                Json("fs-1", "B", json!({})),
            ],
            expect: vec![State("", json!({"types": ["A", "B"]}))],
        },
        Case {
            name: "from-streams",
            query: "fromStreams('fss-a', 'fss-b').when({
                $init: function() { return { seen: [] }; },
                $any: function(s, e) { s.seen.push(e.streamId + ':' + e.sequenceNumber); }
            })",
            emit: false,
            steps: vec![
                Json("fss-a", "T", json!({})),
                Json("fss-c", "T", json!({})),
                Json("fss-b", "T", json!({})),
                Json("fss-a", "T", json!({})),
            ],
            expect: vec![State(
                "",
                json!({"seen": ["fss-a:0", "fss-b:0", "fss-a:1"]}),
            )],
        },
        // fromCategory reads one category only; a named handler takes its events, $any the rest.
        Case {
            name: "named-and-any",
            query: "fromCategory('named').when({
                $init: function() { return { opened: 0, other: [] }; },
                Opened: function(s, e) { s.opened += 1; },
                $any: function(s, e) { s.other.push(e.eventType); }
            })",
            emit: false,
            steps: vec![
                Json("named-1", "Opened", json!({})),
                Json("named-1", "Deposited", json!({})),
                Json("namedx-1", "Opened", json!({})),
                Json("named-2", "Opened", json!({})),
                Json("named-2", "Closed", json!({})),
            ],
            expect: vec![State(
                "",
                json!({"opened": 2.0, "other": ["Deposited", "Closed"]}),
            )],
        },
        // A handler's return value replaces the state; a named handler alone ignores other types.
        Case {
            name: "named-only",
            query: "fromCategory('only').when({
                Opened: function(s, e) { return { last: e.body.n }; }
            })",
            emit: false,
            steps: vec![
                Json("only-1", "Opened", json!({"n": 1})),
                Json("only-1", "Ignored", json!({"n": 2})),
                Json("only-2", "Opened", json!({"n": 3})),
                Json("only-2", "Ignored", json!({"n": 4})),
            ],
            expect: vec![State("", json!({"last": 3.0}))],
        },
        Case {
            name: "foreach-created",
            query: "fromCategory('fe').foreachStream().when({
                $init: function() { return { n: 0, created: 0 }; },
                $created: function(s, e) { s.created += 1; s.first = e.eventType; },
                $any: function(s, e) { s.n += 1; s.partition = e.partition; }
            })",
            emit: false,
            steps: vec![
                Json("fe-1", "Opened", json!({})),
                Json("fe-2", "Opened", json!({})),
                Json("fe-1", "Deposited", json!({})),
            ],
            expect: vec![
                State(
                    "fe-1",
                    json!({"n": 2.0, "created": 1.0, "first": "Opened", "partition": "fe-1"}),
                ),
                State(
                    "fe-2",
                    json!({"n": 1.0, "created": 1.0, "first": "Opened", "partition": "fe-2"}),
                ),
            ],
        },
        // A hard-deleted stream's partition gets `$deleted` (a soft delete does not yet: not covered).
        Case {
            name: "deleted",
            query: "fromAll().foreachStream().when({
                $init: function() { return { n: 0 }; },
                $any: function(s, e) { s.n += 1; },
                $deleted: function(s, e) { s.deleted = e.partition; }
            })",
            emit: false,
            steps: vec![
                Json("del-1", "Opened", json!({})),
                Json("del-2", "Opened", json!({})),
                Tombstone("del-1"),
            ],
            expect: vec![
                State("del-1", json!({"n": 1.0, "deleted": "del-1"})),
                State("del-2", json!({"n": 1.0})),
            ],
        },
        // A soft delete reaches $deleted too (its `$metadata` event sets `$tb` to the end).
        Case {
            name: "soft-deleted",
            query: "fromAll().foreachStream().when({
                $init: function() { return { n: 0 }; },
                $any: function(s, e) { s.n += 1; },
                $deleted: function(s, e) { s.deleted = e.partition; }
            })",
            emit: false,
            steps: vec![
                Json("sdel-1", "Opened", json!({})),
                Json("sdel-2", "Opened", json!({})),
                SoftDelete("sdel-1"),
            ],
            expect: vec![
                State("sdel-1", json!({"n": 1.0, "deleted": "sdel-1"})),
                State("sdel-2", json!({"n": 1.0})),
            ],
        },
        // transformBy and filterBy shape the result (not the state); a filtered-out result is none.
        Case {
            name: "transform-filter",
            query: "fromCategory('tf').foreachStream().when({
                $init: function() { return { n: 0 }; },
                $any: function(s, e) { s.n += 1; }
            }).transformBy(function(s) { return { double: s.n * 2 }; })
              .filterBy(function(r) { return r.double > 2; })",
            emit: false,
            steps: vec![
                Json("tf-1", "T", json!({})),
                Json("tf-1", "T", json!({})),
                Json("tf-2", "T", json!({})),
            ],
            expect: vec![
                State("tf-1", json!({"n": 2.0})),
                State("tf-2", json!({"n": 1.0})),
                Result("tf-1", json!({"double": 4.0})),
                Result("tf-2", json!({})),
                LastResult("$projections-transform-filter-tf-1-result", "{\"double\":4}"),
                Stream("$projections-transform-filter-tf-2-result", vec![]),
            ],
        },
        Case {
            name: "output-state",
            query: "fromCategory('os').when({
                $init: function() { return { n: 0 }; },
                $any: function(s, e) { s.n += 1; }
            }).outputState()",
            emit: false,
            steps: vec![Json("os-1", "T", json!({})), Json("os-2", "T", json!({}))],
            expect: vec![
                Result("", json!({"n": 2.0})),
                LastResult("$projections-output-state-result", "{\"n\":2}"),
            ],
        },
        Case {
            name: "output-to",
            query: "fromCategory('ot').when({
                $init: function() { return { n: 0 }; },
                $any: function(s, e) { s.n += 1; }
            }).outputState().outputTo('otresults')",
            emit: false,
            steps: vec![Json("ot-1", "T", json!({}))],
            expect: vec![
                LastResult("otresults", "{\"n\":1}"),
                Stream("$projections-output-to-result", vec![]),
            ],
        },
        Case {
            name: "result-stream-name",
            query: "options({ resultStreamName: 'rsnresults' });
            fromCategory('rsn').when({
                $init: function() { return { n: 0 }; },
                $any: function(s, e) { s.n += 1; }
            }).outputState()",
            emit: false,
            steps: vec![Json("rsn-1", "T", json!({})), Json("rsn-1", "T", json!({}))],
            expect: vec![
                LastResult("rsnresults", "{\"n\":2}"),
                Stream("$projections-result-stream-name-result", vec![]),
            ],
        },
        Case {
            name: "include-links",
            query: "options({ $includeLinks: true });
            fromAll().when({
                $init: function() { return { seen: [] }; },
                $any: function(s, e) {
                    if (e.streamId.indexOf('inc-') === 0) { s.seen.push(e.eventType + ' ' + e.bodyRaw); }
                }
            })",
            emit: false,
            steps: vec![
                Json("inc-src", "Thing", json!({"k": 1})),
                Event(
                    "inc-links",
                    eventstore::EventData::binary("$>", "0@inc-src".into())
                        .id(uuid::Uuid::new_v4()),
                ),
            ],
            expect: vec![State(
                "",
                json!({"seen": ["Thing {\"k\":1}", "$> 0@inc-src"]}),
            )],
        },
        Case {
            name: "without-links",
            query: "fromAll().when({
                $init: function() { return { seen: [] }; },
                $any: function(s, e) {
                    if (e.streamId.indexOf('inc-') === 0) { s.seen.push(e.eventType + ' ' + e.bodyRaw); }
                }
            })",
            emit: false,
            steps: vec![],
            expect: vec![State("", json!({"seen": ["Thing {\"k\":1}"]}))],
        },
        Case {
            name: "link-copy-stream",
            query: "fromCategory('lk').when({
                $any: function(s, e) {
                    linkTo('lkout-links', e);
                    copyTo('lkout-copies', e);
                    linkStreamTo('lkout-streams', e.streamId);
                }
            })",
            emit: true,
            steps: vec![
                Json("lk-1", "Opened", json!({"a": 1})),
                Json("lk-2", "Closed", json!({"b": 2})),
            ],
            expect: vec![
                Stream("lkout-links", vec![("$>", "0@lk-1"), ("$>", "0@lk-2")]),
                Stream(
                    "lkout-copies",
                    vec![("Opened", "{\"a\":1}"), ("Closed", "{\"b\":2}")],
                ),
                Stream("lkout-streams", vec![("$@", "lk-1"), ("$@", "lk-2")]),
            ],
        },
        Case {
            name: "event-fields",
            query: "fromStream('evf-1').when({
                $init: function() { return { seen: [] }; },
                $any: function(s, e) {
                    s.seen.push([e.eventType, e.streamId, e.sequenceNumber, e.eventId, e.isJson, e.body,
                        e.data, e.bodyRaw, e.metadata, e.partition]);
                }
            })",
            emit: false,
            steps: vec![
                Event(
                    "evf-1",
                    eventstore::EventData::json("Typed", &json!({"a": 1}))
                        .expect("JSON")
                        .metadata_as_json(&json!({"who": "me"}))
                        .expect("JSON")
                        .id(EVENT_ID_1.parse().expect("a UUID")),
                ),
                Event(
                    "evf-1",
                    eventstore::EventData::binary("Blob", "raw bytes".into())
                        .id(EVENT_ID_2.parse().expect("a UUID")),
                ),
            ],
            expect: vec![State(
                "",
                json!({"seen": [
                    ["Typed", "evf-1", 0.0, EVENT_ID_1, true, {"a": 1.0}, {"a": 1.0}, "{\"a\":1}",
                        {"who": "me"}, ""],
                    ["Blob", "evf-1", 1.0, EVENT_ID_2, false, null, null, "raw bytes", null, ""]
                ]}),
            )],
        },
    ]
}

/// Each language feature with a small query, all on one server: every projection is created, then every
/// case's events are appended, then each case's exact expectations are awaited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_language_feature_gives_exactly_the_expected_state_result_and_emitted_events() {
    let app = spawn_app().await;
    let projections = projections_for(&app);
    let cases = language_cases();
    for case in &cases {
        create(&projections, case.name, case.query, case.emit).await;
    }
    for case in &cases {
        for step in &case.steps {
            match step {
                Step::Json(stream, event_type, body) => {
                    append(&app.client, stream, event_type, std::slice::from_ref(body)).await
                }
                Step::Event(stream, event) => {
                    within(
                        "an append",
                        app.client
                            .append_to_stream(*stream, &Default::default(), event.clone()),
                    )
                    .await
                    .expect("the append succeeds");
                }
                Step::Tombstone(stream) => {
                    within(
                        "a tombstone",
                        app.client.tombstone_stream(*stream, &Default::default()),
                    )
                    .await
                    .expect("the tombstone succeeds");
                }
                Step::SoftDelete(stream) => {
                    within(
                        "a delete",
                        app.client.delete_stream(*stream, &Default::default()),
                    )
                    .await
                    .expect("the delete succeeds");
                }
            }
        }
    }
    for case in &cases {
        let name = case.name;
        for expect in &case.expect {
            match expect {
                Expect::State(partition, want) => {
                    wait_for_state(&projections, name, partition, want.clone()).await
                }
                Expect::Result(partition, want) => {
                    let projections = &projections;
                    wait_until(
                        WAIT,
                        &format!("{name}[{partition}] result is {want}"),
                        || async move { &result(projections, name, partition).await == want },
                    )
                    .await
                }
                Expect::LastResult(stream, want) => {
                    let client = &app.client;
                    wait_until(
                        WAIT,
                        &format!("{name}: the last of {stream} is a Result {want}"),
                        || async move {
                            raw_events_in(client, stream).await.last()
                                == Some(&("Result".to_owned(), (*want).to_owned()))
                        },
                    )
                    .await
                }
                Expect::Stream(stream, want) => {
                    let want: Vec<(String, String)> = want
                        .iter()
                        .map(|(t, d)| ((*t).to_owned(), (*d).to_owned()))
                        .collect();
                    let (client, want) = (&app.client, &want);
                    wait_until(
                        WAIT,
                        &format!("{name}: {stream} is {want:?}"),
                        || async move { &raw_events_in(client, stream).await == want },
                    )
                    .await
                }
            }
        }
        let after = status(&projections, name).await;
        assert_eq!(after.status, "Running", "{name}: {after:?}");
    }
}
