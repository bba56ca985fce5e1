//! Seeding: what a run writes, that a second run writes nothing, and the binary end to end.

use std::collections::BTreeMap;

use data_seeder::{consumer_groups, seed, SeedPlan, SeedStatus};
use events::accounts::AccountEvent;
use events::sanctions::SanctionedNamesEvent;
use events::streams;
use infrastructure::EventStore;

use crate::helpers::{start_store, within};

fn small_plan() -> SeedPlan {
    SeedPlan {
        accounts: 40,
        blocked: 4,
        closed: 3,
        sanctioned_names: vec![
            "VIKTOR ORLOVSKY".to_owned(),
            "Marina  Volkova".to_owned(),
            "GOLDEN CRESCENT CO".to_owned(),
        ],
        concurrency: 8,
        users: Vec::new(),
    }
}

/// The last revision of every stream the plan writes.
async fn revisions(store: &EventStore, plan: &SeedPlan) -> BTreeMap<String, u64> {
    let mut revisions = BTreeMap::new();
    for account in plan.accounts() {
        let stream = streams::account(&account.id);
        let events = store
            .read_stream::<AccountEvent>(&stream)
            .await
            .expect("the account stream reads");
        let last = events.last().expect("the account has events").revision;
        revisions.insert(stream, last);
    }
    let names = store
        .read_stream::<SanctionedNamesEvent>(streams::SANCTIONED_NAMES)
        .await
        .expect("the sanctioned names read");
    revisions.insert(
        streams::SANCTIONED_NAMES.to_owned(),
        names.last().expect("names were added").revision,
    );
    revisions
}

async fn group_names(store: &EventStore) -> Vec<String> {
    let groups = store
        .client()
        .list_all_persistent_subscriptions(&Default::default())
        .await
        .expect("the groups list");
    let mut names: Vec<String> = groups.into_iter().map(|g| g.group_name).collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_second_run_changes_nothing() {
    let test = start_store().await;
    let plan = small_plan();
    let progress = std::sync::Mutex::new(Vec::new());
    let first = within(
        "the first run",
        seed(&test.store, &plan, |p| {
            progress.lock().expect("not poisoned").push(p)
        }),
    )
    .await
    .expect("the first run seeds");
    assert_eq!(first.accounts_created, 40);
    assert_eq!(first.accounts_existing, 0);
    assert_eq!(first.sanctioned_names_added, 3);
    assert_eq!(first.groups_created.len(), consumer_groups().len());
    let seen = progress.into_inner().expect("not poisoned");
    assert!(seen.iter().any(|p| p.done == 40 && p.total == 40));

    let after_first = revisions(&test.store, &plan).await;
    let groups_after_first = group_names(&test.store).await;
    let mut expected_groups: Vec<String> = consumer_groups()
        .iter()
        .map(|g| g.name.to_owned())
        .collect();
    expected_groups.sort();
    assert_eq!(groups_after_first, expected_groups);

    let second = within("the second run", seed(&test.store, &plan, |_| {}))
        .await
        .expect("the second run succeeds");
    assert!(!second.changed_anything(), "{second:?}");
    assert_eq!(second.accounts_existing, 40);
    assert_eq!(second.sanctioned_names_existing, 3);
    assert_eq!(second.groups_existing.len(), consumer_groups().len());
    assert_eq!(revisions(&test.store, &plan).await, after_first);
    assert_eq!(group_names(&test.store).await, groups_after_first);
}

#[tokio::test]
async fn accounts_are_opened_funded_and_some_blocked_or_closed_empty() {
    let test = start_store().await;
    let plan = small_plan();
    within("seeding", seed(&test.store, &plan, |_| {}))
        .await
        .expect("seeds");
    for account in plan.accounts() {
        let events: Vec<AccountEvent> = test
            .store
            .read_stream::<AccountEvent>(&streams::account(&account.id))
            .await
            .expect("reads")
            .into_iter()
            .map(|stored| stored.event)
            .collect();
        let AccountEvent::AccountOpened(opened) = &events[0] else {
            panic!("the first event opens the account: {events:?}");
        };
        assert_eq!(opened.account_id, account.id);
        assert_eq!(opened.name, account.name);
        let balance: i64 = events
            .iter()
            .map(|event| match event {
                AccountEvent::FundsDeposited(e) => e.amount.pence(),
                AccountEvent::FundsWithdrawn(e) => -e.amount.pence(),
                _ => 0,
            })
            .sum();
        let last = events.last().expect("events");
        match account.status {
            SeedStatus::Open => {
                assert_eq!(events.len(), 2);
                assert_eq!(balance, account.initial_deposit.pence());
            }
            SeedStatus::Blocked => {
                assert!(matches!(last, AccountEvent::AccountBlocked(_)));
                assert!(balance > 0);
            }
            SeedStatus::Closed => {
                assert!(matches!(last, AccountEvent::AccountClosed(_)));
                assert_eq!(balance, 0);
            }
        }
    }
}

#[tokio::test]
async fn names_already_listed_or_removed_since_are_not_added_again() {
    let test = start_store().await;
    let plan = small_plan();
    within("seeding", seed(&test.store, &plan, |_| {}))
        .await
        .expect("seeds");
    // An operator removes a seeded name; a later run with one more name adds only the new one.
    let removal = infrastructure::NewEvent::new(
        SanctionedNamesEvent::from(events::sanctions::SanctionedNameRemoved {
            name: "VIKTOR ORLOVSKY".to_owned(),
        }),
        events::EventMetadata::for_request(uuid::Uuid::new_v4()),
    );
    test.store
        .append(
            streams::SANCTIONED_NAMES,
            infrastructure::eventstore::ExpectedRevision::Any,
            &[removal],
        )
        .await
        .expect("the removal is written");
    let mut more = plan.clone();
    more.sanctioned_names.push("NORTHSTAR SHIPPING".to_owned());
    more.sanctioned_names.push("marina volkova".to_owned());
    let report = within("the second run", seed(&test.store, &more, |_| {}))
        .await
        .expect("seeds");
    assert_eq!(report.sanctioned_names_added, 1);
    let names: Vec<SanctionedNamesEvent> = test
        .store
        .read_stream::<SanctionedNamesEvent>(streams::SANCTIONED_NAMES)
        .await
        .expect("reads")
        .into_iter()
        .map(|stored| stored.event)
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(matches!(
        names.last(),
        Some(SanctionedNamesEvent::SanctionedNameAdded(added)) if added.name == "NORTHSTAR SHIPPING"
    ));
}

#[tokio::test]
async fn the_binary_seeds_and_reports_nothing_new_the_second_time() {
    let test = start_store().await;
    let connection_string = test.connection_string.clone();
    let run = move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_data-seeder"))
            .args([
                "--eventstore",
                &connection_string,
                "--accounts",
                "12",
                "--blocked",
                "2",
                "--closed",
                "1",
                "--sanctioned-names",
                "IGOR BELENKO,KASIMIR ZOLTAN",
            ])
            .output()
            .expect("the binary runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("a JSON report on stdout");
        (report, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (first, progress) = tokio::task::spawn_blocking(run.clone())
        .await
        .expect("joins");
    assert_eq!(first["accountsCreated"], 12);
    assert_eq!(first["sanctionedNamesAdded"], 2);
    assert!(progress.contains("accounts"), "{progress}");
    let (second, _) = tokio::task::spawn_blocking(run).await.expect("joins");
    assert_eq!(second["accountsCreated"], 0);
    assert_eq!(second["accountsExisting"], 12);
    assert_eq!(second["sanctionedNamesAdded"], 0);
    assert_eq!(second["groupsCreated"].as_array().map(Vec::len), Some(0));
}
