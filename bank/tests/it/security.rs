//! Secure mode end to end: TLS, a store user per domain service, and each domain's streams private to it. The
//! demo's branches (and a transfer saga) still complete with money conserved, and one domain's user cannot write
//! another domain's streams (nor take them over by rewriting their ACL) while every user can read them.

use std::time::Duration;

use bank::launcher::{Bank, BankOptions, Ports, StoreChoice};
use infrastructure::eventstore::{
    self, AppendToStreamOptions, Client, EventData, ExpectedRevision,
};
use infrastructure::EventStore;

async fn client_of(bank: &Bank, service: &str) -> anyhow::Result<Client> {
    let connection_string = bank.connection_string_of(service)?;
    anyhow::ensure!(
        connection_string.contains(&format!("{service}:")),
        "{service} logs in as itself"
    );
    let store = EventStore::connect(&connection_string, Duration::from_secs(30)).await?;
    Ok(store.client().clone())
}

async fn append(client: &Client, stream: &str) -> Result<(), eventstore::Error> {
    let event = EventData::json("Intruded", &serde_json::json!({ "by": "another domain" }))
        .map_err(|error| eventstore::Error::InternalParsingError(error.to_string()))?;
    let options = AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any);
    client
        .append_to_stream(stream, &options, event)
        .await
        .map(|_| ())
}

/// The type of the first event of `stream`, read by `client`.
async fn first_event_type(client: &Client, stream: &str) -> anyhow::Result<Option<String>> {
    let mut read = client.read_stream(stream, &Default::default()).await?;
    Ok(read
        .next()
        .await?
        .map(|event| event.get_original_event().event_type.clone()))
}

async fn checks(bank: &Bank) -> anyhow::Result<()> {
    anyhow::ensure!(
        bank.urls.eventstore.starts_with("https://"),
        "the store serves TLS: {}",
        bank.urls.eventstore
    );
    let conserved = bank::demo::scenario(bank).await?;
    anyhow::ensure!(
        conserved,
        "every branch ends as expected and money is conserved"
    );

    // A transfer saga's stream is the accounts domain's too (appended to with `Any`, claimed when it starts).
    let transfer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/transfers", bank.urls.accounts))
        .json(&serde_json::json!({
            "from": bank::demo::OPEN_ACCOUNT,
            "to": bank::demo::CLOSED_ACCOUNT,
            "amount": 100,
            "reference": "SECURE MODE"
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(
        transfer["status"] == "compensated",
        "a transfer to a closed account is refunded: {transfer}"
    );
    let transfer = events::streams::transfer(&transfer["id"].as_str().unwrap_or_default().parse()?);

    let account = events::streams::account(&bank::demo::OPEN_ACCOUNT.parse()?);
    let payment = events::streams::inbound_payment(
        &events::ids::payment_id_for_scheme_transaction(&bank::demo::scheme_transaction_id(0)),
    );
    let accounts = client_of(bank, "accounts-api").await?;
    let payments = client_of(bank, "payment-scheme-domain").await?;

    let refused = append(&accounts, &payment).await;
    anyhow::ensure!(
        matches!(refused, Err(eventstore::Error::AccessDenied)),
        "the accounts user cannot append to {payment}: {refused:?}"
    );
    let refused = append(&payments, &account).await;
    anyhow::ensure!(
        matches!(refused, Err(eventstore::Error::AccessDenied)),
        "the payments user cannot append to {account}: {refused:?}"
    );
    let refused = append(&payments, &transfer).await;
    anyhow::ensure!(
        matches!(refused, Err(eventstore::Error::AccessDenied)),
        "the payments user cannot append to {transfer}: {refused:?}"
    );
    let open_to_all = eventstore::StreamMetadata::builder()
        .acl(eventstore::Acl::Stream(
            eventstore::StreamAclBuilder::new()
                .add_write_roles("$all")
                .build(),
        ))
        .build();
    let refused = payments
        .set_stream_metadata(account.as_str(), &Default::default(), &open_to_all)
        .await;
    anyhow::ensure!(
        matches!(refused, Err(eventstore::Error::AccessDenied)),
        "the payments user cannot rewrite the ACL of {account}: {refused:?}"
    );

    for (who, client) in [("accounts", &accounts), ("payments", &payments)] {
        anyhow::ensure!(
            first_event_type(client, &payment).await?.as_deref() == Some("InboundPaymentReceived"),
            "the {who} user reads {payment}"
        );
        anyhow::ensure!(
            first_event_type(client, &account).await?.as_deref() == Some("AccountOpened"),
            "the {who} user reads {account}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_secure_mode_every_branch_completes_and_no_domain_writes_another_domains_streams(
) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("bank-it-{}", uuid::Uuid::new_v4().simple()));
    let bank = Bank::start(BankOptions {
        store: StoreChoice::EmbeddedMemory,
        data_dir: data_dir.clone(),
        replicas: 2,
        ports: Ports::ANY,
        seed: None,
        secure: true,
    })
    .await?;
    let result = checks(&bank).await;
    bank.shutdown().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}
