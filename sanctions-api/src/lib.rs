//! sanctions-api: the Sanctions domain service. Owns `sanctionedNames` and `screening-…` streams.
//!
//! - [`matching`]: fuzzy name screening.
//! - [`list`]: the sanctioned-names list aggregate.
//! - [`screening`]: one payment's screening and the operator's decision (`screening-{paymentId}`).
//! - `names`: the list behind the repository (with snapshots) and the up-to-date copy screening reads.
//! - `http`: the HTTP API (sanctioned names, `/screen`, held payments).
//! - `workers`: the `sanctions-screening` consumer group.
//! - `read_model`: held payments not yet decided, kept by a projector of `$ce-screening`.
//!
//! [`Config`] and [`run`] are the service; `main.rs` only parses and calls them.

mod http;
pub mod list;
pub mod matching;
mod names;
mod read_model;
pub mod screening;
mod workers;

use std::path::PathBuf;

use anyhow::Context as _;
use infrastructure::{
    ensure_group, CancellationToken, EventStoreArgs, HttpArgs, Metrics, Projector, ProjectorSource,
    ReadModelStore, Repository, Shutdown, Worker,
};
use tokio::net::TcpListener;

pub use workers::SCREENING_GROUP;

/// The service's default HTTP port (DESIGN §5).
pub const DEFAULT_PORT: u16 = 5000;

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
    #[arg(long, env = "DATA_DIR", default_value = "./data/sanctions-api")]
    pub data_dir: PathBuf,

    /// Similarity (0..=1) at or above which a name matches a sanctioned one and the payment is held.
    #[arg(long, env = "MATCH_THRESHOLD", default_value_t = matching::DEFAULT_THRESHOLD)]
    pub match_threshold: f64,

    /// A snapshot of the sanctioned-names list is written every this many events.
    #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = 50)]
    pub snapshot_every: u64,

    /// The store role (user group) this service's streams are private to: the streams it creates get an `$acl`
    /// that lets only this role write them (see infrastructure's `EventStore::with_owner_role`). Unset: streams
    /// are created without an ACL, as on an insecure store.
    #[arg(long, env = "SANCTIONS_OWNER_ROLE")]
    pub owner_role: Option<String>,
}

impl Config {
    /// The defaults, connecting to `connection_string`, with read models under `data_dir`.
    pub fn new(connection_string: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            eventstore: EventStoreArgs::new(connection_string),
            http: HttpArgs { listen: None },
            replicas: 1,
            data_dir: data_dir.into(),
            match_threshold: matching::DEFAULT_THRESHOLD,
            snapshot_every: 50,
            owner_role: None,
        }
    }
}

/// Runs the service: connects, ensures its consumer group, starts the screening workers and the held-payments
/// projector, and serves HTTP on `listener` until `shutdown` is cancelled; then stops everything and waits.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&config.match_threshold) {
        anyhow::bail!(
            "--match-threshold must be between 0 and 1, not {}",
            config.match_threshold
        );
    }
    let mut store = config
        .eventstore
        .connect()
        .await
        .context("connecting to the event store")?;
    if let Some(role) = &config.owner_role {
        store = store.with_owner_role(role);
        // The list is appended to with the revision the repository loaded, but it may have been created by
        // the seeder: claim it (again) here rather than only when this service creates it.
        store
            .claim_stream(events::streams::SANCTIONED_NAMES)
            .await
            .context("making the sanctioned-names stream private")?;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let read_models = ReadModelStore::open(config.data_dir.join("sanctions.redb"))
        .context("opening the read-model database")?;
    let metrics = Metrics::new();
    let tasks = Shutdown::child_of(&shutdown);

    let (source, settings) = workers::screening_group();
    ensure_group(&store, &source, SCREENING_GROUP, &settings)
        .await
        .with_context(|| format!("creating consumer group {SCREENING_GROUP}"))?;

    let names = Repository::<list::SanctionedNames>::new(store.clone())
        .with_snapshots_every(config.snapshot_every);
    let list = names::CurrentList::new(names.clone());
    // Screenings are written once by the screening worker and rarely touched again: the cache only saves the
    // operator's decision a read, and new screenings skip the read of a stream that cannot exist yet.
    let screenings = Repository::<screening::Screening>::new(store.clone()).with_cache(10_000);
    let handler = workers::ScreeningHandler {
        list: list.clone(),
        screenings: screenings.clone(),
        threshold: config.match_threshold,
    };
    for _ in 0..config.replicas.max(1) {
        let handler = handler.clone();
        let handle = move |delivery| {
            let handler = handler.clone();
            async move { handler.handle(delivery).await }
        };
        let worker = Worker::new(store.clone(), source.clone(), SCREENING_GROUP, handle)
            .with_metrics(&metrics);
        tasks.spawn(worker.run(tasks.token()));
    }

    let projector = Projector::new(
        read_model::PROJECTOR_NAME,
        store.clone(),
        read_models.clone(),
        ProjectorSource::Stream {
            stream: events::streams::by_category(events::streams::SCREENING_CATEGORY),
            resolve_link_tos: true,
        },
        read_model::HeldPaymentsModel,
    )
    .with_metrics(&metrics);
    projector.spawn(&tasks);

    let state = http::AppState {
        names,
        list,
        screenings,
        read_models,
        threshold: config.match_threshold,
    };
    let router = http::router(state, metrics);
    infrastructure::http::serve_until_shutdown(&tasks, listener, router)
        .await
        .context("serving HTTP")
}
