//! The bank's composition root — the only crate that knows every other one.
//!
//! - [`launcher`]: starts the event store (eventstore-lite in-process unless `--eventstore` names a cluster),
//!   seeds it, and starts every service with its consumer groups; stops them all cleanly. `--secure`: TLS,
//!   authentication, a store user per domain and private streams.
//! - [`credentials`]: secure mode's passwords for the domain users, and connection strings that log in as them.
//! - [`bench`]: end-to-end pipeline benchmarks (payments per second, received → final latency).
//! - [`demo`]: a scripted scenario through every branch of the inbound pipeline, with an outcome table and a
//!   money-conservation check.

pub mod bench;
pub mod credentials;
pub mod demo;
pub mod launcher;

use std::path::PathBuf;

/// `bank`'s command line.
#[derive(Debug, clap::Parser)]
#[command(name = "bank", about = "An event-sourced UK bank on EventStoreDB")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the bank: the event store (unless --eventstore), the seed data, every service. Ctrl-C stops it.
    Up(UpArgs),
    /// Run a scripted scenario through every branch on a temporary store and check that money is conserved.
    Demo(DemoArgs),
    /// Measure the inbound pipeline end to end on a temporary durable store (JSON on stdout).
    Bench(bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// A real EventStoreDB / KurrentDB cluster (`esdb://…`); without it eventstore-lite runs in-process.
    #[arg(long, env = "EVENTSTORE_CONNECTION_STRING")]
    pub eventstore: Option<String>,
    /// Where eventstore-lite and the services' read models keep their data.
    #[arg(long, env = "BANK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Competing instances of every consumer group in this process.
    #[arg(long, env = "BANK_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Skip seeding.
    #[arg(long)]
    pub no_seed: bool,
    /// Secure mode: the store serves TLS (eventstore-lite: a self-signed development certificate) and checks
    /// credentials; the seeder makes a store user per domain service (passwords kept in
    /// `<data-dir>/credentials.json`) and each service connects as its own user, so a domain's streams are
    /// writable only by it. With --eventstore, give an admin's credentials in the connection string.
    #[arg(long, env = "BANK_SECURE")]
    pub secure: bool,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run the demo on an insecure store, without users (by default it runs in secure mode, see `up --secure`).
    #[arg(long)]
    pub insecure: bool,
}

/// Runs the command; `Ok(false)` means the demo's checks failed.
pub async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Up(args) => launcher::up(args).await.map(|()| true),
        Command::Demo(args) => demo::run(!args.insecure).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
