//! accounts-api: the Accounts domain service. Owns `account-…` and `transfer-…` streams.
//!
//! - [`account`]: the account aggregate (state from events, decisions as events). Pure.
//! - `http`: the HTTP API (accounts, deposits and withdrawals, status, overdraft, time machine, transfers,
//!   ledger) and its OpenAPI document.
//! - `workers`: the `account-posting` consumer group handler, which posts sanctions-checked inbound payments.
//! - `read_model`: the accounts list, transactions and bank-wide ledger, projected from `account-…` events.
//! - `transfers`: the internal transfer saga (debit, credit, compensate), run inside the request.
//!
//! [`run`] starts all of it with a [`Config`]; `main.rs` is a thin binary around it.

pub mod account;
mod http;
mod read_model;
mod transfers;
mod workers;

use std::path::PathBuf;

use anyhow::Context;
use events::AccountId;
use infrastructure::CancellationToken;
use infrastructure::{
    ensure_group, Aggregate, EventStoreArgs, GroupSettings, HttpArgs, Metrics, Projector,
    ProjectorSource, ReadModelStore, Repository, Shutdown, SubscriptionSource, Worker,
};
use tokio::net::TcpListener;

pub use account::{Account, AccountError, AccountStatus, Transaction};
pub use read_model::AccountsReadModel;

/// The default HTTP port of accounts-api (DESIGN §5).
pub const DEFAULT_PORT: u16 = 5002;
/// The consumer group that posts sanctions-checked inbound payments to accounts.
pub const POSTING_GROUP: &str = "account-posting";
/// The event type the posting group consumes.
pub const POSTING_TRIGGER: &str = "InboundPaymentSanctionsChecked";
/// The read model projector's name (its checkpoint key).
const PROJECTOR_NAME: &str = "accounts";
/// How often an account's state is snapshotted (events between snapshots). A snapshot holds the account's
/// remembered payment ids (up to 10,000, ~390 KB of JSON): one every 200 postings wrote ~2 KB per posting, more
/// than the posting's own events. Folding 1,000 events on a cold load reads about as much as the snapshot.
const SNAPSHOT_EVERY: u64 = 1_000;
/// Accounts whose state the service keeps in memory between postings.
const ACCOUNTS_CACHED: usize = 100_000;

/// accounts-api's options; each can also be set through its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "accounts-api", about = "The bank's Accounts domain service")]
pub struct Config {
    #[command(flatten)]
    pub eventstore: EventStoreArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    /// How many competing workers of each consumer group (`account-posting`) run in this process.
    #[arg(long, env = "REPLICAS", default_value_t = 1)]
    pub replicas: usize,

    /// Where the read model database lives.
    #[arg(long, env = "ACCOUNTS_DATA_DIR", default_value = "./data/accounts-api")]
    pub data_dir: PathBuf,

    /// The store role (user group) this service's streams are private to: the streams it creates get an `$acl`
    /// that lets only this role write them (see infrastructure's `EventStore::with_owner_role`). Unset: streams
    /// are created without an ACL, as on an insecure store.
    #[arg(long, env = "ACCOUNTS_OWNER_ROLE")]
    pub owner_role: Option<String>,
}

impl Config {
    /// Defaults for everything but the store and the data directory (for the launcher and tests).
    pub fn new(connection_string: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            eventstore: EventStoreArgs::new(connection_string),
            http: HttpArgs { listen: None },
            replicas: 1,
            data_dir: data_dir.into(),
            owner_role: None,
        }
    }

    /// The address to listen on: `--listen`, or 127.0.0.1:5002.
    pub fn listen_address(&self) -> std::net::SocketAddr {
        self.http.listen_or(DEFAULT_PORT)
    }
}

impl Aggregate for Account {
    type Event = events::accounts::AccountEvent;
    type Id = AccountId;

    fn stream_name(id: &AccountId) -> String {
        events::streams::account(id)
    }

    fn apply(&mut self, event: &Self::Event) {
        // The state counts its own revision: the next event is one past the last applied.
        let revision = self.revision.map_or(0, |revision| revision + 1);
        Account::apply(self, revision, event);
    }
}

/// Connects to the store, ensures the `account-posting` group, starts its workers and the read model projector,
/// and serves HTTP on `listener` until `shutdown` is cancelled; then stops everything and waits for it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut store = config
        .eventstore
        .connect()
        .await
        .context("connecting to the event store")?;
    if let Some(role) = &config.owner_role {
        store = store.with_owner_role(role);
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let read_models = ReadModelStore::open(config.data_dir.join("accounts.redb"))
        .context("opening the read model database")?;

    let source =
        SubscriptionSource::Stream(events::streams::by_event_type(POSTING_TRIGGER).to_string());
    ensure_group(&store, &source, POSTING_GROUP, &GroupSettings::default())
        .await
        .context("creating the account-posting group")?;

    let metrics = Metrics::new();
    let tasks = Shutdown::child_of(&shutdown);
    let accounts = Repository::<Account>::new(store.clone())
        .with_snapshots_every(SNAPSHOT_EVERY)
        .with_cache(ACCOUNTS_CACHED);

    for replica in 0..config.replicas.max(1) {
        let repository = accounts.clone();
        let handler = move |delivery| {
            let repository = repository.clone();
            async move { workers::post_inbound_payment(&repository, delivery).await }
        };
        let mut worker = Worker::new(store.clone(), source.clone(), POSTING_GROUP, handler);
        if replica == 0 {
            worker = worker.with_metrics(&metrics);
        }
        tasks.spawn(worker.run(tasks.token()));
    }

    let filter = infrastructure::eventstore::SubscriptionFilter::on_stream_name()
        .add_prefix(format!("{}-", events::streams::ACCOUNT_CATEGORY));
    let projector = Projector::new(
        PROJECTOR_NAME,
        store.clone(),
        read_models.clone(),
        ProjectorSource::All {
            filter: Some(filter),
        },
        AccountsReadModel,
    )
    .with_metrics(&metrics);
    let progress = projector.progress();
    projector.spawn(&tasks);

    let readiness = infrastructure::http::Readiness::new();
    readiness.add_check("read-model-caught-up", move || progress.is_caught_up());
    let state = http::AppState {
        accounts,
        store: store.clone(),
        read_models,
    };
    let router = infrastructure::http::RouterBuilder::new("accounts-api")
        .routes(http::routes(state))
        .openapi(http::openapi())
        .metrics(metrics)
        .readiness(readiness)
        .build();

    infrastructure::http::serve_until_shutdown(&tasks, listener, router)
        .await
        .context("serving HTTP")
}
