//! `--create-users` on a secure store: a user per domain service, made once, and the seeded streams writable
//! only by their domain's user while every user can read them.

use data_seeder::SeedPlan;
use events::streams;
use eventstore_lite::ServerConfig;
use infrastructure::eventstore::{self, EventData, ExpectedRevision};
use infrastructure::EventStore;

use crate::helpers::{within, DEADLINE};

const PASSWORDS: &str =
    "accounts-api=acc-pw,sanctions-api=san-pw,payment-scheme-domain=pay-pw,scheme-simulator=sch-pw";

/// Runs the binary with `args`; its exit status, JSON report (if any) and stderr.
async fn run_seeder(args: Vec<String>) -> (bool, serde_json::Value, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_data-seeder"))
            .args(&args)
            .output()
            .expect("the binary runs");
        let report = serde_json::from_slice(&output.stdout).unwrap_or_default();
        (
            output.status.success(),
            report,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("joins")
}

async fn connect_as(address: std::net::SocketAddr, login: &str, password: &str) -> EventStore {
    let connection_string = format!(
        "esdb://{login}:{password}@{address}?tls=true&tlsVerifyCert=false&discoveryInterval=10"
    );
    within(
        "connecting",
        EventStore::connect(&connection_string, DEADLINE),
    )
    .await
    .expect("the user connects")
}

async fn append(store: &EventStore, stream: &str) -> Result<(), eventstore::Error> {
    let event = EventData::json("Probed", &serde_json::json!({})).expect("JSON");
    let options =
        eventstore::AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any);
    within(
        "an append",
        store.client().append_to_stream(stream, &options, event),
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_users_makes_a_user_per_domain_once_and_the_seeded_streams_private() {
    let mut config = ServerConfig::in_memory();
    config.insecure = false;
    config.dev = true;
    let server = within("the secure server to start", eventstore_lite::start(config))
        .await
        .expect("the server starts");
    let admin = format!("{}&discoveryInterval=10", server.connection_string());
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "--eventstore",
            &admin,
            "--accounts",
            "3",
            "--blocked",
            "0",
            "--closed",
            "0",
            "--sanctioned-names",
            "IGOR BELENKO",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args
    };

    let (ok, _, stderr) = run_seeder(args(&[
        "--create-users",
        "--user-password",
        "accounts-api=only-one",
    ]))
    .await;
    assert!(!ok, "every domain user needs a password");
    assert!(stderr.contains("sanctions-api"), "{stderr}");

    let (ok, first, stderr) =
        run_seeder(args(&["--create-users", "--user-password", PASSWORDS])).await;
    assert!(ok, "{stderr}");
    assert_eq!(first["usersCreated"].as_array().map(Vec::len), Some(4));
    assert_eq!(first["accountsCreated"], 3);
    let (ok, second, stderr) =
        run_seeder(args(&["--create-users", "--user-password", PASSWORDS])).await;
    assert!(ok, "{stderr}");
    assert_eq!(second["usersCreated"].as_array().map(Vec::len), Some(0));
    assert_eq!(second["usersExisting"].as_array().map(Vec::len), Some(4));
    assert_eq!(second["accountsCreated"], 0);

    let address = server.local_addr();
    let plan = SeedPlan {
        accounts: 3,
        blocked: 0,
        closed: 0,
        ..SeedPlan::default()
    };
    let account = streams::account(&plan.account(0).id);
    let accounts = connect_as(address, "accounts-api", "acc-pw").await;
    let sanctions = connect_as(address, "sanctions-api", "san-pw").await;
    let payments = connect_as(address, "payment-scheme-domain", "pay-pw").await;

    assert!(
        matches!(
            append(&payments, &account).await,
            Err(eventstore::Error::AccessDenied)
        ),
        "the payments user cannot write an account"
    );
    assert!(
        matches!(
            append(&accounts, streams::SANCTIONED_NAMES).await,
            Err(eventstore::Error::AccessDenied)
        ),
        "the accounts user cannot write the sanctioned names"
    );
    append(&accounts, &account)
        .await
        .expect("the accounts user writes its account");
    append(&sanctions, streams::SANCTIONED_NAMES)
        .await
        .expect("the sanctions user writes its list");
    let first_event = within("another domain reading", async {
        payments
            .client()
            .read_stream(account.as_str(), &Default::default())
            .await?
            .next()
            .await
    })
    .await
    .expect("every user reads an account");
    assert_eq!(
        first_event.map(|e| e.get_original_event().event_type.clone()),
        Some("AccountOpened".to_owned())
    );
    server.shutdown().await.expect("stops");
}
