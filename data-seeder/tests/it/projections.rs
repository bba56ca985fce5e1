//! The seeder deploys the bank's JavaScript projections: they run over what was seeded, and a second run leaves
//! them as they are.

use std::time::Duration;

use data_seeder::{seed, SeedPlan, BANK_PROJECTIONS};
use infrastructure::eventstore::{GetStateProjectionOptions, ProjectionClient};

use crate::helpers::{start_store, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projections_are_deployed_once_and_count_the_seeded_accounts() {
    let test = start_store().await;
    let plan = SeedPlan {
        accounts: 12,
        blocked: 2,
        closed: 3,
        ..SeedPlan::default()
    };
    let first = within("seeding", seed(&test.store, &plan, |_| {}))
        .await
        .expect("seeds");
    let names: Vec<&str> = BANK_PROJECTIONS.iter().map(|p| p.name).collect();
    assert_eq!(first.projections.created, names);
    let second = within("seeding again", seed(&test.store, &plan, |_| {}))
        .await
        .expect("seeds");
    assert_eq!(
        second.projections.unchanged, names,
        "{:?}",
        second.projections
    );
    assert!(second.projections.created.is_empty() && second.projections.updated.is_empty());

    let client = ProjectionClient::new(test.store.client().settings().clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state: serde_json::Value = client
            .get_state("open-accounts", &GetStateProjectionOptions::default())
            .await
            .expect("the projection answers")
            .unwrap_or_default();
        // State crosses the wire as google.protobuf.Value: numbers are doubles, as with EventStoreDB.
        let count = |status: &str| state[status].as_f64();
        if count("open") == Some(7.0)
            && count("blocked") == Some(2.0)
            && count("closed") == Some(3.0)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "open-accounts never counted the seed: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
