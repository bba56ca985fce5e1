//! payment-scheme-domain: the scheme gateway and the payment process managers. Owns `inboundPayment-…` and
//! `outboundPayment-…` streams.
//!
//! - [`validation`]: Bacs gateway validation of inbound payments.
//! - [`inbound`]: the inbound payment process (aggregate and stage handlers).
//! - `http`: the HTTP API (`POST /scheme/inbound`, `GET /payments/{id}`, `GET /payments`, `GET /stats`).
//! - `workers`: the consumer groups that move a payment through its stages and send returns to the scheme.
//! - `read_model`: payments by stage and the statistics, kept by a projector of `$ce-inboundPayment`.
//!
//! [`Config`] and [`run`] are the service; `main.rs` only parses and calls them.

mod admission;
mod http;
pub mod inbound;
mod read_model;
pub mod validation;
mod workers;

use std::path::PathBuf;

use anyhow::Context as _;
use events::bacs::DEFAULT_MAX_AMOUNT;
use events::Money;
use infrastructure::{
    ensure_group, CancellationToken, EventStoreArgs, HttpArgs, Metrics, Projector, ProjectorSource,
    ReadModelStore, Repository, Shutdown, Worker,
};
use tokio::net::TcpListener;

pub use admission::DEFAULT_MAX_IN_PROGRESS;
pub use workers::GROUPS;

/// Payments whose state the service keeps in memory between stages (about 1 KiB each): enough for every payment
/// in flight at thousands per second.
const PAYMENTS_CACHED: usize = 100_000;

/// The service's default HTTP port (DESIGN §5).
pub const DEFAULT_PORT: u16 = 5004;

/// The service's options; every one can also be given as an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub eventstore: EventStoreArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    /// How many competing workers of each consumer group run in this process.
    #[arg(long, env = "REPLICAS", default_value_t = 1)]
    pub replicas: usize,

    /// Where the read models are kept.
    #[arg(long, env = "DATA_DIR", default_value = "./data/payment-scheme-domain")]
    pub data_dir: PathBuf,

    /// The scheme simulator, which receives returned payments on `{url}/returns`; returns are not sent when unset.
    #[arg(long, env = "SIMULATOR_URL")]
    pub simulator_url: Option<String>,

    /// The largest inbound payment accepted, in pence.
    #[arg(long, env = "MAX_PAYMENT_AMOUNT", default_value_t = DEFAULT_MAX_AMOUNT.pence())]
    pub max_amount: i64,

    /// The store role (user group) this service's streams are private to: the streams it creates get an `$acl`
    /// that lets only this role write them (see infrastructure's `EventStore::with_owner_role`). Unset: streams
    /// are created without an ACL, as on an insecure store.
    #[arg(long, env = "PAYMENTS_OWNER_ROLE")]
    pub owner_role: Option<String>,

    /// Admission control: while this many payments are in progress (received, not yet credited or returned,
    /// not held), `POST /scheme/inbound` answers 503 `busy` with `Retry-After`. 0: no limit.
    #[arg(long, env = "MAX_PAYMENTS_IN_PROGRESS", default_value_t = DEFAULT_MAX_IN_PROGRESS)]
    pub max_in_progress: u64,
}

impl Config {
    /// The defaults, connecting to `connection_string`, with read models under `data_dir`.
    pub fn new(connection_string: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            eventstore: EventStoreArgs::new(connection_string),
            http: HttpArgs { listen: None },
            replicas: 1,
            data_dir: data_dir.into(),
            simulator_url: None,
            max_amount: DEFAULT_MAX_AMOUNT.pence(),
            owner_role: None,
            max_in_progress: DEFAULT_MAX_IN_PROGRESS,
        }
    }
}

/// Runs the service: connects, ensures its consumer groups, starts the workers and the projector, and serves
/// HTTP on `listener` until `shutdown` is cancelled; then stops everything and waits for it.
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
    let read_models = ReadModelStore::open(config.data_dir.join("payments.redb"))
        .context("opening the read-model database")?;
    let metrics = Metrics::new();
    let tasks = Shutdown::child_of(&shutdown);

    for (source, group, settings) in workers::groups() {
        ensure_group(&store, &source, group, &settings)
            .await
            .with_context(|| format!("creating consumer group {group}"))?;
    }

    let repository =
        Repository::<inbound::InboundPayment>::new(store.clone()).with_cache(PAYMENTS_CACHED);
    let handlers = workers::Handlers::new(
        repository.clone(),
        Money::from_pence(config.max_amount),
        config.simulator_url.clone(),
    );
    for _ in 0..config.replicas.max(1) {
        for (source, group, _) in workers::groups() {
            let handlers = handlers.clone();
            let handler = move |delivery| {
                let handlers = handlers.clone();
                async move { handlers.handle(group, delivery).await }
            };
            let worker = Worker::new(store.clone(), source, group, handler).with_metrics(&metrics);
            tasks.spawn(worker.run(tasks.token()));
        }
    }

    let projector = Projector::new(
        read_model::PROJECTOR_NAME,
        store.clone(),
        read_models.clone(),
        ProjectorSource::Stream {
            stream: events::streams::by_category(events::streams::INBOUND_PAYMENT_CATEGORY),
            resolve_link_tos: true,
        },
        read_model::PaymentsModel,
    )
    .with_metrics(&metrics);
    let admission = admission::Admission::new(
        config.max_in_progress,
        read_model::PaymentsQuery::new(read_models.clone()),
        projector.progress(),
    );
    projector.spawn(&tasks);

    let state = http::AppState {
        store,
        payments: repository,
        read_models,
        admission: std::sync::Arc::new(admission),
    };
    let router = http::router(state, metrics);
    infrastructure::http::serve_until_shutdown(&tasks, listener, router)
        .await
        .context("serving HTTP")
}
