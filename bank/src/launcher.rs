//! Starting and stopping the whole bank in one process: the event store (eventstore-lite in-process, or a real
//! cluster), the seed data, and every service on its own port with its consumer groups. In secure mode the store
//! serves TLS and checks credentials, the seeder (as admin) makes a user per domain, and each service connects as
//! its own user with its domain's role as owner of the streams it creates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use infrastructure::{CancellationToken, EventStore};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::credentials::{with_credentials, Credentials};
use crate::UpArgs;

/// Ports of the services; 0 picks a free one (tests and the demo).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub sanctions: u16,
    pub accounts: u16,
    pub payments: u16,
    pub simulator: u16,
    pub eventstore: u16,
}

impl Ports {
    /// DESIGN §5's defaults.
    pub const DEFAULT: Ports = Ports {
        sanctions: 5000,
        accounts: 5002,
        payments: 5004,
        simulator: 5006,
        eventstore: 2113,
    };
    pub const ANY: Ports = Ports {
        sanctions: 0,
        accounts: 0,
        payments: 0,
        simulator: 0,
        eventstore: 0,
    };
}

/// Where the store lives.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// eventstore-lite in this process, durable under this directory.
    EmbeddedDisk(PathBuf),
    /// eventstore-lite in this process, in memory (the demo, tests).
    EmbeddedMemory,
    /// A real EventStoreDB / KurrentDB (or any compatible server).
    External(String),
}

#[derive(Debug, Clone)]
pub struct BankOptions {
    pub store: StoreChoice,
    /// Read models of the services live under `<data_dir>/<service>`.
    pub data_dir: PathBuf,
    pub replicas: usize,
    pub ports: Ports,
    pub seed: Option<data_seeder::SeedPlan>,
    /// Secure mode: eventstore-lite with TLS (a self-signed development certificate) and authentication, a store
    /// user per domain service (passwords in `<data_dir>/credentials.json`), and each domain's streams writable
    /// only by its user. An external store must then be given with an admin's credentials.
    pub secure: bool,
}

/// The services' base URLs.
#[derive(Debug, Clone)]
pub struct Urls {
    pub accounts: String,
    pub sanctions: String,
    pub payments: String,
    pub simulator: String,
    pub eventstore: String,
}

/// A running bank.
pub struct Bank {
    pub urls: Urls,
    pub connection_string: String,
    embedded: Option<eventstore_lite::RunningServer>,
    credentials: Option<Credentials>,
    token: CancellationToken,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

/// Builds a service's clap `Config` from command-line style arguments, so the launcher uses exactly the
/// options a user would pass to the service's own binary.
fn config_from<T: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    args: &[String],
) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new(name).no_binary_name(true));
    let matches = command
        .try_get_matches_from(args)
        .with_context(|| format!("options for {name}"))?;
    Ok(T::from_arg_matches(&matches)?)
}

async fn bind(port: u16, service: &str) -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("{service} cannot listen on 127.0.0.1:{port}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

fn args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [format!("--{k}"), v.clone()])
        .collect()
}

fn service_dir(data_dir: &Path, service: &str) -> String {
    data_dir.join(service).display().to_string()
}

/// The embedded store's live read interval (eventstore-lite's `--live-read-interval-ms`, by default none): a busy
/// live subscription or group takes the commits of 5 ms in one read, which costs a payment at most 5 ms per stage
/// and saves the fixed cost of a read per commit per subscription (ARCHITECTURE.md, "Live reads are paced").
const EMBEDDED_LIVE_READ_INTERVAL: Duration = Duration::from_millis(5);

impl Bank {
    /// Starts everything and waits until every service answers `/health/live`, then (for a few seconds at most)
    /// until each is ready: a read model that has not caught up yet would answer, say, an empty accounts list.
    pub async fn start(options: BankOptions) -> anyhow::Result<Bank> {
        let (embedded, connection_string) = match &options.store {
            StoreChoice::External(cs) => (None, cs.clone()),
            choice => {
                let mut config = match choice {
                    StoreChoice::EmbeddedDisk(dir) => eventstore_lite::ServerConfig::on_disk(dir),
                    _ => eventstore_lite::ServerConfig::in_memory(),
                };
                config.http_port = options.ports.eventstore;
                config.live_read_interval = EMBEDDED_LIVE_READ_INTERVAL;
                if options.secure {
                    config.insecure = false;
                    config.dev = true;
                }
                let server = eventstore_lite::start(config)
                    .await
                    .context("cannot start eventstore-lite")?;
                let cs = format!("{}&discoveryInterval=10", server.connection_string());
                (Some(server), cs)
            }
        };
        let eventstore_url = match &embedded {
            Some(server) if options.secure => format!("https://{}", server.local_addr()),
            Some(server) => format!("http://{}", server.local_addr()),
            None => connection_string.clone(),
        };
        let credentials = options
            .secure
            .then(|| Credentials::load_or_create(&options.data_dir))
            .transpose()?;
        let users = credentials.as_ref().map(Credentials::seed_users);
        if options.seed.is_some() || users.is_some() {
            let store = EventStore::connect(&connection_string, Duration::from_secs(30))
                .await
                .context("cannot reach the event store to seed it")?;
            if let Some(plan) = &options.seed {
                let mut plan = plan.clone();
                plan.users = users.unwrap_or_default();
                let report = data_seeder::seed(&store, &plan, |p: data_seeder::Progress| {
                    eprintln!("seed: {p}")
                })
                .await
                .context("seeding failed")?;
                eprintln!("seed: {report:?}");
            } else if let Some(users) = users {
                let report = data_seeder::create_users(&store, &users)
                    .await
                    .context("creating the domain users failed")?;
                eprintln!("seed: {report:?}");
            }
        }

        let (sanctions_listener, sanctions) =
            bind(options.ports.sanctions, "sanctions-api").await?;
        let (accounts_listener, accounts) = bind(options.ports.accounts, "accounts-api").await?;
        let (payments_listener, payments) =
            bind(options.ports.payments, "payment-scheme-domain").await?;
        let (simulator_listener, simulator) =
            bind(options.ports.simulator, "scheme-simulator").await?;
        let urls = Urls {
            accounts: accounts.clone(),
            sanctions: sanctions.clone(),
            payments: payments.clone(),
            simulator: simulator.clone(),
            eventstore: eventstore_url,
        };
        let common = |service: &str| -> anyhow::Result<Vec<(&str, String)>> {
            let mut args = vec![
                (
                    "eventstore",
                    service_connection_string(&connection_string, credentials.as_ref(), service)?,
                ),
                ("replicas", options.replicas.to_string()),
                ("data-dir", service_dir(&options.data_dir, service)),
            ];
            if credentials.is_some() {
                args.push(("owner-role", domain_user(service)?.group.to_owned()));
            }
            Ok(args)
        };
        let token = CancellationToken::new();
        let mut services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();

        let config = config_from::<sanctions_api::Config>(
            "sanctions-api",
            &args(&common("sanctions-api")?),
        )?;
        services.push((
            "sanctions-api",
            tokio::spawn(sanctions_api::run(
                config,
                sanctions_listener,
                token.child_token(),
            )),
        ));

        let config =
            config_from::<accounts_api::Config>("accounts-api", &args(&common("accounts-api")?))?;
        services.push((
            "accounts-api",
            tokio::spawn(accounts_api::run(
                config,
                accounts_listener,
                token.child_token(),
            )),
        ));

        let mut payment_args = common("payment-scheme-domain")?;
        payment_args.push(("simulator-url", simulator.clone()));
        let config = config_from::<payment_scheme_domain::Config>(
            "payment-scheme-domain",
            &args(&payment_args),
        )?;
        services.push((
            "payment-scheme-domain",
            tokio::spawn(payment_scheme_domain::run(
                config,
                payments_listener,
                token.child_token(),
            )),
        ));

        let mut simulator_args = common("scheme-simulator")?;
        simulator_args.extend([
            ("bank-url", payments.clone()),
            ("accounts-url", accounts.clone()),
            ("sanctions-url", sanctions.clone()),
        ]);
        let config =
            config_from::<scheme_simulator::Config>("scheme-simulator", &args(&simulator_args))?;
        services.push((
            "scheme-simulator",
            tokio::spawn(scheme_simulator::run(
                config,
                simulator_listener,
                token.child_token(),
            )),
        ));

        let bank = Bank {
            urls,
            connection_string,
            embedded,
            credentials,
            token,
            services,
        };
        bank.wait_until_live(Duration::from_secs(60)).await?;
        bank.wait_until_ready(Duration::from_secs(10)).await;
        Ok(bank)
    }

    /// The connection string `service` uses: in secure mode, logged in as its own user; otherwise the bank's.
    pub fn connection_string_of(&self, service: &str) -> anyhow::Result<String> {
        service_connection_string(&self.connection_string, self.credentials.as_ref(), service)
    }

    /// Where secure mode keeps the domain users' passwords.
    pub fn credentials_file(&self) -> Option<&Path> {
        self.credentials.as_ref().map(Credentials::file)
    }

    /// Waits for every service's `/health/ready`; one still catching up a long history after `timeout` is
    /// reported and left to catch up while the bank runs.
    async fn wait_until_ready(&self, timeout: Duration) {
        if let Err(error) = self.wait_for("ready", timeout).await {
            tracing::warn!(
                %error,
                "a service is not ready yet (a read model catching up?); its answers may lag for a while"
            );
        }
    }

    async fn wait_until_live(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for("live", timeout).await
    }

    /// Polls each service's `/health/{state}` until it answers with success; fails when a service stops or
    /// `timeout` passes first.
    async fn wait_for(&self, state: &str, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let services = [
            ("sanctions-api", &self.urls.sanctions),
            ("accounts-api", &self.urls.accounts),
            ("payment-scheme-domain", &self.urls.payments),
            ("scheme-simulator", &self.urls.simulator),
        ];
        for (name, url) in services {
            loop {
                if let Some((_, task)) = self.services.iter().find(|(n, _)| *n == name) {
                    if task.is_finished() {
                        anyhow::bail!("{name} stopped while starting");
                    }
                }
                let answer = http.get(format!("{url}/health/{state}")).send().await;
                if answer.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!("{name} did not become {state} within {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Stops every service, then the embedded store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.token.cancel();
        for (name, task) in self.services {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => {
                    tracing::error!(service = name, %error, "stopped with an error")
                }
                Ok(Err(error)) => tracing::error!(service = name, %error, "task failed"),
                Err(_) => tracing::error!(service = name, "did not stop within 15 s"),
            }
        }
        if let Some(server) = self.embedded {
            server.shutdown().await?;
        }
        Ok(())
    }
}

/// The store user a service connects as in secure mode (its login is the service's name).
fn domain_user(service: &str) -> anyhow::Result<&'static data_seeder::DomainUser> {
    data_seeder::DOMAIN_USERS
        .iter()
        .find(|user| user.login == service)
        .with_context(|| format!("{service} has no store user"))
}

/// The connection string `service` uses: the bank's, logged in as the service's own user when there are
/// credentials (secure mode).
fn service_connection_string(
    connection_string: &str,
    credentials: Option<&Credentials>,
    service: &str,
) -> anyhow::Result<String> {
    let Some(credentials) = credentials else {
        return Ok(connection_string.to_owned());
    };
    let user = domain_user(service)?;
    let password = credentials
        .password_of(user.login)
        .with_context(|| format!("no password for {}", user.login))?;
    with_credentials(connection_string, user.login, password)
}

/// `bank up`.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let store = match args.eventstore {
        Some(cs) => StoreChoice::External(cs),
        None => StoreChoice::EmbeddedDisk(args.data_dir.join("eventstore")),
    };
    let options = BankOptions {
        store,
        data_dir: args.data_dir.clone(),
        replicas: args.replicas.max(1),
        ports: Ports::DEFAULT,
        seed: (!args.no_seed).then(data_seeder::SeedPlan::default),
        secure: args.secure,
    };
    let started = std::time::Instant::now();
    let bank = Bank::start(options).await?;
    println!("The bank is up in {:.1?}:", started.elapsed());
    println!(
        "  event store            {}  ({})",
        bank.urls.eventstore, bank.connection_string
    );
    if let Some(file) = bank.credentials_file() {
        println!(
            "  secure: each service logs in as its own user (passwords in {}); its streams are private to it",
            file.display()
        );
    }
    println!("  accounts-api           {}/docs", bank.urls.accounts);
    println!("  sanctions-api          {}/docs", bank.urls.sanctions);
    println!("  payment-scheme-domain  {}/docs", bank.urls.payments);
    println!("  scheme-simulator       {}/docs", bank.urls.simulator);
    println!("Try: curl -X POST {}/inbound-payments/random -H 'content-type: application/json' -d '{{\"count\":10}}'", bank.urls.simulator);
    println!("Ctrl-C stops the bank.");
    infrastructure::shutdown_signal().await;
    println!("Stopping…");
    bank.shutdown().await
}
