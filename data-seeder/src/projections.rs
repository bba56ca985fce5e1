//! Deploys the bank's JavaScript projections (`projections-js/`): each is created when missing and updated when
//! its query changed; an unchanged projection is left alone, so seeding twice changes nothing.

use anyhow::Context;
use infrastructure::eventstore::{
    CreateProjectionOptions, ProjectionClient, ReadStreamOptions, StreamPosition,
    UpdateProjectionOptions,
};
use infrastructure::EventStore;

/// A projection of the bank: its name, its query, and whether it emits events.
pub struct BankProjection {
    pub name: &'static str,
    pub query: &'static str,
    pub emits: bool,
}

/// Every projection in `projections-js/`.
pub const BANK_PROJECTIONS: &[BankProjection] = &[
    BankProjection {
        name: "open-accounts",
        query: include_str!("../../projections-js/open-accounts.js"),
        emits: false,
    },
    BankProjection {
        name: "sanctioned-payments",
        query: include_str!("../../projections-js/sanctioned-payments.js"),
        emits: false,
    },
    BankProjection {
        name: "payment-stats",
        query: include_str!("../../projections-js/payment-stats.js"),
        emits: false,
    },
    BankProjection {
        name: "fraud-velocity",
        query: include_str!("../../projections-js/fraud-velocity.js"),
        emits: true,
    },
];

/// What deploying did to each projection.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionsReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// The query a projection was last defined with, from its `$projections-<name>` stream (`None`: no such
/// projection).
async fn deployed_query(store: &EventStore, name: &str) -> anyhow::Result<Option<String>> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .backwards()
        .max_count(1);
    let mut read = match store
        .client()
        .read_stream(format!("$projections-{name}"), &options)
        .await
    {
        Ok(read) => read,
        Err(infrastructure::eventstore::Error::ResourceNotFound) => return Ok(None),
        Err(error) => return Err(error).context("reading a projection's definition"),
    };
    match read.next().await {
        Ok(Some(event)) => {
            let definition: serde_json::Value =
                event.get_original_event().as_json().unwrap_or_default();
            Ok(Some(
                definition["query"].as_str().unwrap_or_default().to_owned(),
            ))
        }
        Ok(None) | Err(infrastructure::eventstore::Error::ResourceNotFound) => Ok(None),
        Err(error) => Err(error).context("reading a projection's definition"),
    }
}

/// Creates or updates every bank projection.
pub async fn deploy_projections(store: &EventStore) -> anyhow::Result<ProjectionsReport> {
    let client = ProjectionClient::new(store.client().settings().clone());
    let mut report = ProjectionsReport::default();
    for projection in BANK_PROJECTIONS {
        match deployed_query(store, projection.name).await? {
            None => {
                let options = CreateProjectionOptions::new().emit(projection.emits);
                client
                    .create(projection.name, projection.query.to_owned(), &options)
                    .await
                    .with_context(|| format!("creating projection '{}'", projection.name))?;
                report.created.push(projection.name.to_owned());
            }
            Some(query) if query == projection.query => {
                report.unchanged.push(projection.name.to_owned())
            }
            Some(_) => {
                let options = UpdateProjectionOptions::new().emit(projection.emits);
                client
                    .update(projection.name, projection.query.to_owned(), &options)
                    .await
                    .with_context(|| format!("updating projection '{}'", projection.name))?;
                report.updated.push(projection.name.to_owned());
            }
        }
    }
    Ok(report)
}
