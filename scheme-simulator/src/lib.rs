//! scheme-simulator: the simulated Bacs scheme, an external party. It sends the bank inbound payments (explicit,
//! random, from Standard 18 files, or as load at a target rate) and receives returns, keeping its own record in
//! `scheme-*` streams.
//!
//! - [`generator`]: random payments with realistic names, amounts and references, and chosen ratios of
//!   sanctioned / invalid / unknown-account / closed-account cases.
//! - [`standard18`]: Bacs Standard 18 payment records.
//! - [`record`]: the simulator's events and streams (`scheme-submissions`, `scheme-returns`, …).
//! - `bank`: the bank's HTTP APIs as the simulator uses them (gateway, accounts, sanctioned names).
//! - `submit`: forwarding payments to the bank in batches and recording each batch.
//! - `load`: the load generator (a bounded background run at a target rate).
//! - `http`: the simulator's routes.
//!
//! [`Config`] and [`run`] start it as a service; `main.rs` is the thin binary.

mod bank;
pub mod generator;
mod http;
mod load;
pub mod record;
pub mod standard18;
mod submit;

pub use bank::retry_after;

use std::sync::Arc;
use std::time::Duration;

use infrastructure::{CancellationToken, EventStoreArgs, HttpArgs, Shutdown};
use serde::{Deserialize, Serialize};

/// The default HTTP port (DESIGN §5).
pub const DEFAULT_PORT: u16 = 5006;

/// A payment as the scheme sends it to the bank's gateway (`POST /scheme/inbound`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemePayment {
    pub scheme_transaction_id: String,
    pub payer: events::payments::Party,
    pub beneficiary: events::payments::Party,
    /// Pence.
    pub amount: i64,
    pub reference: String,
}

/// The simulator's options; each also read from an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub eventstore: EventStoreArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    /// The bank's scheme gateway (payment-scheme-domain), which receives inbound payments.
    #[arg(
        long,
        env = "SIMULATOR_BANK_URL",
        default_value = "http://127.0.0.1:5004"
    )]
    pub bank_url: String,

    /// accounts-api, asked which accounts exist for the random mix.
    #[arg(
        long,
        env = "SIMULATOR_ACCOUNTS_URL",
        default_value = "http://127.0.0.1:5002"
    )]
    pub accounts_url: String,

    /// sanctions-api, asked which names are sanctioned for the random mix.
    #[arg(
        long,
        env = "SIMULATOR_SANCTIONS_URL",
        default_value = "http://127.0.0.1:5000"
    )]
    pub sanctions_url: String,

    /// Competing worker instances per consumer group. The simulator is an external party and runs no consumer
    /// groups, so this is accepted for a uniform command line and has no effect.
    #[arg(long, env = "REPLICAS", default_value_t = 1)]
    pub replicas: usize,

    /// Accepted so that every service takes the same options; the simulator keeps no local state (its record
    /// is in its `scheme-*` streams), so nothing is written here.
    #[arg(long, env = "SIMULATOR_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,

    /// How many payments go to the bank in one request.
    #[arg(long, env = "SIMULATOR_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,

    /// The longest load run `POST /load` accepts.
    #[arg(
        long,
        env = "SIMULATOR_MAX_LOAD_DURATION",
        default_value = "10m",
        value_parser = humantime::parse_duration
    )]
    pub max_load_duration: Duration,

    /// The highest rate `POST /load` accepts, payments per second.
    #[arg(long, env = "SIMULATOR_MAX_LOAD_RATE", default_value_t = 20_000)]
    pub max_load_rate: u32,

    /// The store role (user group) the simulator's `scheme-*` streams are private to: the streams it creates get an `$acl`
    /// that lets only this role write them (see infrastructure's `EventStore::with_owner_role`). Unset: streams
    /// are created without an ACL, as on an insecure store.
    #[arg(long, env = "SIMULATOR_OWNER_ROLE")]
    pub owner_role: Option<String>,
}

impl Config {
    /// The defaults, with the given event store.
    pub fn new(eventstore: EventStoreArgs) -> Self {
        Self {
            eventstore,
            http: HttpArgs { listen: None },
            bank_url: "http://127.0.0.1:5004".to_owned(),
            accounts_url: "http://127.0.0.1:5002".to_owned(),
            sanctions_url: "http://127.0.0.1:5000".to_owned(),
            replicas: 1,
            data_dir: None,
            batch_size: 500,
            max_load_duration: Duration::from_secs(600),
            max_load_rate: 20_000,
            owner_role: None,
        }
    }
}

/// Shared by the routes and load runs.
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: infrastructure::EventStore,
    pub bank: bank::Bank,
    pub config: Arc<Config>,
    pub loads: load::Loads,
    pub shutdown: Shutdown,
}

/// Connects to the store, serves the simulator's HTTP API on `listener` until `shutdown` is cancelled, then
/// stops the load runs in progress and waits for them.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;

    anyhow::ensure!(config.batch_size > 0, "--batch-size must be at least 1");
    let mut store = config
        .eventstore
        .connect()
        .await
        .context("connecting to the event store")?;
    if let Some(role) = &config.owner_role {
        store = store.with_owner_role(role);
        // The record's fixed streams are appended to with `Any`: claimed here, once.
        for stream in [record::SUBMISSIONS_STREAM, record::RETURNS_STREAM] {
            store
                .claim_stream(stream)
                .await
                .with_context(|| format!("making {stream} private"))?;
        }
    }
    let bank = bank::Bank::new(
        &config.bank_url,
        &config.accounts_url,
        &config.sanctions_url,
    )
    .context("building the HTTP client")?;
    let tasks = Shutdown::child_of(&shutdown);
    let state = AppState {
        store,
        bank,
        config: Arc::new(config),
        loads: load::Loads::default(),
        shutdown: tasks.clone(),
    };
    let router = http::router(state);
    infrastructure::http::serve_until_shutdown(&tasks, listener, router)
        .await
        .context("serving HTTP")
}
