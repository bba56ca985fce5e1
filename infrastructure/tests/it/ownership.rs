//! Stream ownership: a store with an owner role writes a stream's `$acl` before creating it (appends with
//! `NoStream`, new aggregates, first snapshots), idempotently and keeping other metadata; a store without one
//! writes no metadata. On a secure server the ACL keeps other domains' users from writing the stream.

use events::EventMetadata;
use infrastructure::eventstore::{
    self, Client, ExpectedRevision, ReadStreamOptions, StreamPosition,
};
use infrastructure::{Aggregate, CommandContext, EventStore, Repository, StoreError};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

const ROLE: &str = "accounts-domain";

fn owner_acl() -> Value {
    json!({ "$w": [ROLE], "$d": [ROLE], "$mw": [ROLE], "$r": "$all", "$mr": "$all" })
}

/// The events of `$$<stream>` still readable (the store keeps the latest), with their revisions; empty when the
/// stream has no metadata.
async fn metadata_events(client: &Client, stream: &str) -> Vec<(u64, Value)> {
    let metadata_stream = format!("$${stream}");
    let options = ReadStreamOptions::default().position(StreamPosition::Start);
    let mut read = match client.read_stream(metadata_stream.as_str(), &options).await {
        Ok(read) => read,
        Err(eventstore::Error::ResourceNotFound) => return Vec::new(),
        Err(error) => panic!("reading {metadata_stream}: {error}"),
    };
    let mut bodies = Vec::new();
    loop {
        match read.next().await {
            Ok(Some(event)) => {
                let event = event.get_original_event();
                let body = serde_json::from_slice(&event.data).expect("JSON metadata");
                bodies.push((event.revision, body));
            }
            Ok(None) | Err(eventstore::Error::ResourceNotFound) => return bodies,
            Err(error) => panic!("reading {metadata_stream}: {error}"),
        }
    }
}

fn context() -> CommandContext {
    CommandContext::new(EventMetadata::for_request(Uuid::new_v4()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_claims_the_streams_it_creates_once_and_keeps_their_other_metadata() {
    let app = start_store().await;
    let client = app.store.client().clone();
    let owner = app.store.clone().with_owner_role(ROLE);
    assert_eq!(owner.owner_role(), Some(ROLE));
    assert_eq!(app.store.owner_role(), None);

    // Creating a stream writes its ACL first; a retried create (the stream exists now) writes nothing more.
    let stream = format!("tally-{}", unique_id());
    let events = [new_event(added(1))];
    within(
        "creating",
        owner.append(&stream, ExpectedRevision::NoStream, &events),
    )
    .await
    .expect("the owner creates the stream");
    let again = within(
        "creating again",
        owner.append(&stream, ExpectedRevision::NoStream, &events),
    )
    .await;
    assert!(
        again.is_ok()
            || again
                .as_ref()
                .is_err_and(StoreError::is_wrong_expected_version),
        "{again:?}"
    );
    within("claiming again", owner.claim_stream(&stream))
        .await
        .expect("a repeated claim succeeds");
    let metadata = metadata_events(&client, &stream).await;
    assert_eq!(metadata, vec![(0, json!({ "$acl": owner_acl() }))]);
    assert_eq!(
        within("reading", owner.read_stream::<TallyEvent>(&stream))
            .await
            .expect("reads")
            .len(),
        1,
        "the metadata did not stop the stream from being created"
    );

    // Appends to an existing stream, and stores without an owner, write no metadata.
    append_added(&owner, &stream, &[2]).await;
    let unowned = format!("tally-{}", unique_id());
    within(
        "creating without an owner",
        app.store
            .append(&unowned, ExpectedRevision::NoStream, &events),
    )
    .await
    .expect("creates");
    assert_eq!(metadata_events(&client, &stream).await.len(), 1);
    assert!(metadata_events(&client, &unowned).await.is_empty());

    // A stream with metadata of its own: the ACL is added, the rest kept, and a second claim changes nothing.
    let limited = format!("tally-{}", unique_id());
    let max_count = eventstore::StreamMetadata::builder().max_count(10).build();
    within(
        "setting $maxCount",
        client.set_stream_metadata(limited.as_str(), &Default::default(), &max_count),
    )
    .await
    .expect("metadata set");
    within("claiming", owner.claim_stream(&limited))
        .await
        .expect("claims");
    within("claiming again", owner.claim_stream(&limited))
        .await
        .expect("claims again");
    assert_eq!(
        metadata_events(&client, &limited).await.last(),
        Some(&(1, json!({ "$maxCount": 10, "$acl": owner_acl() }))),
        "one write added the ACL to the metadata"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_claims_new_aggregates_and_their_snapshots() {
    let app = start_store().await;
    let client = app.store.client().clone();
    let owner = app.store.clone().with_owner_role(ROLE);
    let repository = Repository::<Tally>::new(owner).with_snapshots_every(2);
    let id = unique_id();
    for amount in [1, 2, 3] {
        within(
            "executing",
            repository.execute(&id, &context(), |_: &Tally| {
                Ok::<_, std::convert::Infallible>(vec![added(amount)])
            }),
        )
        .await
        .expect("executes");
    }
    let stream = Tally::stream_name(&id);
    assert_eq!(
        metadata_events(&client, &stream).await,
        vec![(0, json!({ "$acl": owner_acl() }))]
    );
    let snapshots = infrastructure::snapshot_stream(&stream);
    assert_eq!(
        metadata_events(&client, &snapshots).await,
        vec![(0, json!({ "$acl": owner_acl() }))]
    );
    assert_eq!(
        repository.load(&id).await.expect("loads").state.total,
        6,
        "the aggregate still loads (from its snapshot)"
    );
}

/// A secure server with two users, one per domain, each connected as a store with its own owner role.
struct TwoDomains {
    _server: eventstore_lite::RunningServer,
    accounts: EventStore,
    payments: EventStore,
}

async fn two_domains() -> anyhow::Result<TwoDomains> {
    let mut config = eventstore_lite::ServerConfig::in_memory();
    config.insecure = false;
    config.dev = true;
    let server = within("the secure server to start", eventstore_lite::start(config)).await?;
    let addr = server.local_addr();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()?;
    let mut stores = Vec::new();
    for (login, group) in [
        ("accounts", "accounts-domain"),
        ("payments", "payments-domain"),
    ] {
        let created = http
            .post(format!("https://{addr}/users"))
            .basic_auth("admin", Some("changeit"))
            .json(&json!({ "loginName": login, "fullName": login, "groups": [group], "password": "s3cret" }))
            .send()
            .await?;
        anyhow::ensure!(
            created.status().is_success(),
            "creating {login}: {created:?}"
        );
        let connection_string =
            format!("esdb://{login}:s3cret@{addr}?tls=true&tlsVerifyCert=false");
        let store = within(
            "connecting",
            EventStore::connect(&quick_to_connect(&connection_string), DEADLINE),
        )
        .await?;
        stores.push(store.with_owner_role(group));
    }
    let payments = stores.pop().expect("two stores");
    let accounts = stores.pop().expect("two stores");
    Ok(TwoDomains {
        _server: server,
        accounts,
        payments,
    })
}

fn is_access_denied(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Other {
            source: eventstore::Error::AccessDenied,
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owning_role_writes_a_claimed_stream_and_everyone_reads_it() -> anyhow::Result<()>
{
    let domains = two_domains().await?;
    let repository = Repository::<Tally>::new(domains.accounts.clone());
    let id = unique_id();
    within(
        "the owner creating its aggregate",
        repository.execute(&id, &context(), |_: &Tally| {
            Ok::<_, std::convert::Infallible>(vec![added(5)])
        }),
    )
    .await?;
    let stream = Tally::stream_name(&id);

    let refused = within(
        "another domain appending",
        domains
            .payments
            .append(&stream, ExpectedRevision::Any, &[new_event(added(1))]),
    )
    .await;
    assert!(
        refused.as_ref().is_err_and(is_access_denied),
        "another domain cannot write: {refused:?}"
    );
    let refused = within(
        "another domain taking the stream over",
        domains.payments.claim_stream(&stream),
    )
    .await;
    assert!(
        refused.as_ref().is_err_and(is_access_denied),
        "another domain cannot rewrite the ACL: {refused:?}"
    );
    let read = within(
        "another domain reading",
        domains.payments.read_stream::<TallyEvent>(&stream),
    )
    .await?;
    assert_eq!(read.len(), 1, "reading is open to every user");

    within(
        "the owner appending again",
        repository.execute(&id, &context(), |_: &Tally| {
            Ok::<_, std::convert::Infallible>(vec![added(5)])
        }),
    )
    .await?;
    assert_eq!(repository.load(&id).await?.state.total, 10);
    Ok(())
}
