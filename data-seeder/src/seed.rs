//! Writing a [`SeedPlan`] to the store: users (when the plan has any), accounts, sanctioned names, consumer
//! groups — each only if it is not there yet, so a second run writes nothing.

use std::collections::HashSet;

use anyhow::Context as _;
use events::accounts::{
    AccountBlocked, AccountClosed, AccountEvent, AccountOpened, FundsDeposited, FundsWithdrawn,
};
use events::ids::deterministic_event_id;
use events::sanctions::{SanctionedNameAdded, SanctionedNamesEvent};
use events::{streams, EventMetadata};
use futures::{StreamExt as _, TryStreamExt as _};
use infrastructure::eventstore::{self, ExpectedRevision, ReadStreamOptions, StreamPosition};
use infrastructure::{ensure_group, EventStore, GroupCreated, NewEvent, StoreError};
use serde::Serialize;

use crate::groups::consumer_groups;
use crate::plan::{name_key, SeedAccount, SeedPlan, SeedStatus};
use crate::users::{create_users, ACCOUNTS_ROLE, SANCTIONS_ROLE};

/// The actor recorded in the metadata of everything the seeder writes.
const ACTOR: &str = "data-seeder";

/// How many times the sanctioned names are re-read and re-appended when someone else writes the list at the
/// same moment.
const NAME_ATTEMPTS: usize = 5;

/// Which part of the plan is being seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    Users,
    Accounts,
    SanctionedNames,
    ConsumerGroups,
    Projections,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Users => "users",
            Stage::Accounts => "accounts",
            Stage::SanctionedNames => "sanctioned names",
            Stage::Projections => "projections",
            Stage::ConsumerGroups => "consumer groups",
        })
    }
}

/// How far a stage has got: `done` of `total` items handled (created or found already there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}

impl std::fmt::Display for Progress {
    /// `accounts 40/100`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.stage, self.done, self.total)
    }
}

/// What a run did. A second run of the same plan reports everything as existing and nothing as created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedReport {
    pub users_created: Vec<String>,
    pub users_existing: Vec<String>,
    pub accounts_created: u64,
    pub accounts_existing: u64,
    pub sanctioned_names_added: u64,
    pub sanctioned_names_existing: u64,
    pub groups_created: Vec<String>,
    pub groups_existing: Vec<String>,
    pub projections: crate::ProjectionsReport,
}

impl SeedReport {
    /// Whether this run wrote anything.
    pub fn changed_anything(&self) -> bool {
        !self.users_created.is_empty()
            || self.accounts_created > 0
            || self.sanctioned_names_added > 0
            || !self.groups_created.is_empty()
            || !self.projections.created.is_empty()
            || !self.projections.updated.is_empty()
    }
}

/// Seeds `plan` into `store`, calling `progress` as items are handled. Idempotent: see the crate's docs.
pub async fn seed(
    store: &EventStore,
    plan: &SeedPlan,
    progress: impl Fn(Progress),
) -> anyhow::Result<SeedReport> {
    plan.validate().context("invalid seed plan")?;
    let mut report = SeedReport::default();

    // With users, the domains' streams are made private to them: the stores below claim what they write.
    let secured = !plan.users.is_empty();
    let owned_by = |role: &str| {
        if secured {
            store.clone().with_owner_role(role)
        } else {
            store.clone()
        }
    };
    if secured {
        let total = plan.users.len() as u64;
        progress(Progress {
            stage: Stage::Users,
            done: 0,
            total,
        });
        let users = create_users(store, &plan.users)
            .await
            .context("creating the domain users")?;
        report.users_created = users.created;
        report.users_existing = users.existing;
        progress(Progress {
            stage: Stage::Users,
            done: total,
            total,
        });
    }

    let accounts_store = owned_by(ACCOUNTS_ROLE);
    let total = u64::from(plan.accounts);
    progress(Progress {
        stage: Stage::Accounts,
        done: 0,
        total,
    });
    let mut outcomes = futures::stream::iter(plan.accounts())
        .map(|account| {
            let store = &accounts_store;
            async move { seed_account(store, &account).await }
        })
        .buffer_unordered(plan.concurrency);
    let mut done = 0;
    while let Some(created) = outcomes.try_next().await? {
        if created {
            report.accounts_created += 1;
        } else {
            report.accounts_existing += 1;
        }
        done += 1;
        progress(Progress {
            stage: Stage::Accounts,
            done,
            total,
        });
    }
    drop(outcomes);

    let total = plan.sanctioned_names.len() as u64;
    progress(Progress {
        stage: Stage::SanctionedNames,
        done: 0,
        total,
    });
    let added = seed_sanctioned_names(&owned_by(SANCTIONS_ROLE), &plan.sanctioned_names).await?;
    report.sanctioned_names_added = added;
    report.sanctioned_names_existing = total - added;
    progress(Progress {
        stage: Stage::SanctionedNames,
        done: total,
        total,
    });

    let groups = consumer_groups();
    let total = groups.len() as u64;
    for (done, group) in (1..).zip(groups) {
        let created = ensure_group(store, &group.source, group.name, &group.settings)
            .await
            .with_context(|| {
                format!(
                    "creating consumer group '{}' on {}",
                    group.name, group.source
                )
            })?;
        match created {
            GroupCreated::Created => report.groups_created.push(group.name.to_owned()),
            GroupCreated::AlreadyExisted => report.groups_existing.push(group.name.to_owned()),
        }
        progress(Progress {
            stage: Stage::ConsumerGroups,
            done,
            total,
        });
    }

    let total = crate::BANK_PROJECTIONS.len() as u64;
    progress(Progress {
        stage: Stage::Projections,
        done: 0,
        total,
    });
    report.projections = crate::deploy_projections(store)
        .await
        .context("deploying the projections")?;
    progress(Progress {
        stage: Stage::Projections,
        done: total,
        total,
    });
    Ok(report)
}

/// Metadata for the seeder's writes to `stream`: a correlation id derived from the stream, so a re-run writes
/// byte-for-byte the same events (bar the timestamp).
fn metadata_for(stream: &str) -> EventMetadata {
    EventMetadata::for_request(deterministic_event_id(
        &format!("seed/{stream}"),
        "correlation",
    ))
    .with_actor(ACTOR)
}

/// The events of a seeded account: opened, first deposit, then blocked, or emptied and closed.
pub(crate) fn account_events(account: &SeedAccount) -> Vec<NewEvent<AccountEvent>> {
    let stream = streams::account(&account.id);
    let key = format!("seed/{stream}");
    let metadata = metadata_for(&stream);
    let event = |step: &str, event: AccountEvent| {
        NewEvent::with_id(deterministic_event_id(&key, step), event, metadata.clone())
    };
    let mut events = vec![
        event(
            "opened",
            AccountOpened {
                account_id: account.id,
                name: account.name.clone(),
                overdraft_limit: account.overdraft_limit,
            }
            .into(),
        ),
        event(
            "initial-deposit",
            FundsDeposited {
                amount: account.initial_deposit,
                reference: "OPENING DEPOSIT".to_owned(),
            }
            .into(),
        ),
    ];
    match account.status {
        SeedStatus::Open => {}
        SeedStatus::Blocked => events.push(event(
            "blocked",
            AccountBlocked {
                reason: "suspected fraud under review".to_owned(),
            }
            .into(),
        )),
        SeedStatus::Closed => {
            events.push(event(
                "closing-withdrawal",
                FundsWithdrawn {
                    amount: account.initial_deposit,
                    reference: "ACCOUNT CLOSURE".to_owned(),
                }
                .into(),
            ));
            events.push(event(
                "closed",
                AccountClosed {
                    reason: "closed at the customer's request".to_owned(),
                }
                .into(),
            ));
        }
    }
    events
}

/// Writes the account's stream unless it exists. Returns whether it was written. A store with an owner role
/// claims the stream, new or not (see the crate's docs).
async fn seed_account(store: &EventStore, account: &SeedAccount) -> anyhow::Result<bool> {
    let stream = streams::account(&account.id);
    if stream_exists(store, &stream).await? {
        store
            .claim_stream(&stream)
            .await
            .with_context(|| format!("making {stream} private"))?;
        return Ok(false);
    }
    match store
        .append(
            &stream,
            ExpectedRevision::NoStream,
            &account_events(account),
        )
        .await
    {
        Ok(_) => Ok(true),
        // Created in the meantime (another seeder, or accounts-api): it is there, which is all we want.
        Err(error) if error.is_wrong_expected_version() => Ok(false),
        Err(error) => Err(error).with_context(|| format!("seeding {stream}")),
    }
}

/// Whether `stream` has ever been written (a deleted stream counts: the seeder must not bring it back).
async fn stream_exists(store: &EventStore, stream: &str) -> anyhow::Result<bool> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::Start)
        .max_count(1);
    let first = match store.client().read_stream(stream, &options).await {
        Ok(mut read) => read.next().await,
        Err(error) => Err(error),
    };
    match first {
        Ok(Some(_)) => Ok(true),
        Ok(None) | Err(eventstore::Error::ResourceNotFound) => Ok(false),
        Err(eventstore::Error::ResourceDeleted) => Ok(true),
        Err(error) => Err(StoreError::from_client(stream, error))
            .with_context(|| format!("checking whether {stream} exists")),
    }
}

/// The id of the event that adds `name` to the list: the same name (however spaced or cased) always gets the
/// same id.
fn sanctioned_name_event_id(name: &str) -> uuid::Uuid {
    deterministic_event_id(&format!("seed/sanctioned-name/{}", name_key(name)), "added")
}

/// Appends a `SanctionedNameAdded` for every name neither on the list nor ever added by the seeder (an operator
/// may have removed a seeded name since; a re-run respects that). Returns how many were added.
async fn seed_sanctioned_names(store: &EventStore, names: &[String]) -> anyhow::Result<u64> {
    let stream = streams::SANCTIONED_NAMES;
    // The list is appended to at the revision read, not only created: claimed whatever its state.
    store
        .claim_stream(stream)
        .await
        .context("making the sanctioned names private")?;
    for _ in 0..NAME_ATTEMPTS {
        let existing = match store.read_stream::<SanctionedNamesEvent>(stream).await {
            Ok(events) => events,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(error) => return Err(error).context("reading the sanctioned names"),
        };
        let expected = existing.last().map_or(ExpectedRevision::NoStream, |last| {
            ExpectedRevision::Exact(last.revision)
        });
        let seen_ids: HashSet<_> = existing.iter().map(|event| event.id).collect();
        let mut listed = HashSet::new();
        for stored in &existing {
            match &stored.event {
                SanctionedNamesEvent::SanctionedNameAdded(added) => {
                    listed.insert(name_key(&added.name));
                }
                SanctionedNamesEvent::SanctionedNameRemoved(removed) => {
                    listed.remove(&name_key(&removed.name));
                }
            }
        }
        let metadata = metadata_for(stream);
        let mut to_add = Vec::new();
        let mut planned = HashSet::new();
        for name in names {
            let id = sanctioned_name_event_id(name);
            let key = name_key(name);
            if seen_ids.contains(&id) || listed.contains(&key) || !planned.insert(key) {
                continue;
            }
            to_add.push(NewEvent::with_id(
                id,
                SanctionedNamesEvent::from(SanctionedNameAdded {
                    name: name.trim().to_owned(),
                }),
                metadata.clone(),
            ));
        }
        if to_add.is_empty() {
            return Ok(0);
        }
        match store.append(stream, expected, &to_add).await {
            Ok(_) => return Ok(to_add.len() as u64),
            Err(error) if error.is_wrong_expected_version() => continue,
            Err(error) => return Err(error).context("adding sanctioned names"),
        }
    }
    anyhow::bail!(
        "the sanctioned names kept changing while seeding them ({NAME_ATTEMPTS} attempts)"
    )
}
