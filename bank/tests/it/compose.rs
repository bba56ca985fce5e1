//! The distributed-mode deployment (docker-compose.yml, Dockerfile, deploy/nginx.conf; DESIGN §1, issue 5 item 6)
//! cannot be started here, so this checks what a reader of the files could get wrong: a three-node secure KurrentDB
//! cluster whose nodes gossip with each other, projections on, certificates made before the nodes start and
//! mounted where the settings point, the seeder running once before the services, every service twice with a
//! connection string the real `eventstore` client parses to all three nodes over verified TLS, and every variable
//! given to a service mapped back to an option of that service's own `Config`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use clap::Args as _;
use infrastructure::eventstore::{ClientSettings, NodePreference};
use serde::Deserialize;
use serde_norway::Value;

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const NODE_PORT: u16 = 2113;
const SEEDER: &str = "data-seeder";
const CERT_GEN: &str = "cert-gen";
const GATEWAY: &str = "gateway";

/// Every binary the one image must hold (Dockerfile).
const BINARIES: [&str; 7] = [
    "accounts-api",
    "sanctions-api",
    "payment-scheme-domain",
    "scheme-simulator",
    "data-seeder",
    "bank",
    "eventstore-lite",
];

/// The KurrentDB options the nodes may set. KurrentDB refuses to start on an unknown option
/// (configuration/configuration.md), so a misspelt variable is caught here. Names from configuration/cluster.md,
/// configuration/networking.md, security/protocol-security.md and features/projections/settings.md.
const KURRENTDB_OPTIONS: [&str; 14] = [
    "KURRENTDB_CLUSTER_SIZE",
    "KURRENTDB_DISCOVER_VIA_DNS",
    "KURRENTDB_GOSSIP_SEED",
    "KURRENTDB_REPLICATION_IP",
    "KURRENTDB_NODE_IP",
    "KURRENTDB_ADVERTISE_HOST_TO_CLIENT_AS",
    "KURRENTDB_ADVERTISE_NODE_PORT_TO_CLIENT_AS",
    "KURRENTDB_CERTIFICATE_FILE",
    "KURRENTDB_CERTIFICATE_PRIVATE_KEY_FILE",
    "KURRENTDB_TRUSTED_ROOT_CERTIFICATES_PATH",
    "KURRENTDB_RUN_PROJECTIONS",
    "KURRENTDB_START_STANDARD_PROJECTIONS",
    "KURRENTDB_ENABLE_ATOM_PUB_OVER_HTTP",
    "KURRENTDB_INSECURE",
];

/// The seeder's own options besides the event store's (data-seeder/src/main.rs keeps its `Cli` private).
const SEEDER_OPTIONS: [&str; 5] = [
    "SEED_ACCOUNTS",
    "SEED_BLOCKED",
    "SEED_CLOSED",
    "SEED_SANCTIONED_NAMES",
    "SEED_CONCURRENCY",
];

/// A domain service as the compose file must run it, with its option parser.
struct BankService {
    name: &'static str,
    port: u16,
    /// Feeds the environment to the service's `Config` parser (see [`parse_environment`]).
    parse_environment: fn(&BTreeMap<String, String>) -> anyhow::Result<()>,
    /// The environment variable an option (by long flag) is read from.
    variable_of: fn(&str) -> anyhow::Result<String>,
}

static BANK_SERVICES: [BankService; 4] = [
    BankService {
        name: "sanctions-api",
        port: sanctions_api::DEFAULT_PORT,
        parse_environment: parse_environment::<sanctions_api::Config>,
        variable_of: variable_of::<sanctions_api::Config>,
    },
    BankService {
        name: "accounts-api",
        port: accounts_api::DEFAULT_PORT,
        parse_environment: parse_environment::<accounts_api::Config>,
        variable_of: variable_of::<accounts_api::Config>,
    },
    BankService {
        name: "payment-scheme-domain",
        port: payment_scheme_domain::DEFAULT_PORT,
        parse_environment: parse_environment::<payment_scheme_domain::Config>,
        variable_of: variable_of::<payment_scheme_domain::Config>,
    },
    BankService {
        name: "scheme-simulator",
        port: scheme_simulator::DEFAULT_PORT,
        parse_environment: parse_environment::<scheme_simulator::Config>,
        variable_of: variable_of::<scheme_simulator::Config>,
    },
];

/// Which service calls which, through which option: (caller, its long flag, the service the URL must name).
const SERVICE_URLS: [(&str, &str, &str); 4] = [
    ("scheme-simulator", "bank-url", "payment-scheme-domain"),
    ("scheme-simulator", "accounts-url", "accounts-api"),
    ("scheme-simulator", "sanctions-url", "sanctions-api"),
    ("payment-scheme-domain", "simulator-url", "scheme-simulator"),
];

#[test]
fn the_cluster_is_three_secure_nodes_that_gossip_with_each_other() -> anyhow::Result<()> {
    let compose = Compose::load()?;
    let addresses = compose.node_addresses()?;
    for node in NODES {
        let service = compose.service(node)?;
        let environment = service.environment();
        let image = service.image.as_deref().unwrap_or_default();
        ensure!(
            image.starts_with("docker.kurrent.io/") && image.contains("/kurrentdb:"),
            "{node} runs the official KurrentDB image, not {image:?}"
        );
        for name in environment
            .keys()
            .filter(|name| name.starts_with("KURRENTDB_"))
        {
            ensure!(
                KURRENTDB_OPTIONS.contains(&name.as_str()),
                "{node}: {name} is not a KurrentDB option this deployment knows (an unknown one stops the server)"
            );
        }
        ensure!(
            get(&environment, node, "KURRENTDB_CLUSTER_SIZE")? == "3",
            "{node} expects a cluster of three"
        );
        ensure!(
            get(&environment, node, "KURRENTDB_DISCOVER_VIA_DNS")? == "false",
            "{node} discovers its peers through gossip seeds, not DNS"
        );
        ensure!(
            environment
                .get("KURRENTDB_INSECURE")
                .is_none_or(|value| value == "false"),
            "{node} runs secure"
        );

        let seeds: BTreeSet<&str> = get(&environment, node, "KURRENTDB_GOSSIP_SEED")?
            .split(',')
            .map(str::trim)
            .collect();
        ensure!(seeds.len() == 2, "{node} has two gossip seeds: {seeds:?}");
        for other in NODES.into_iter().filter(|other| *other != node) {
            let names_other = seeds.iter().any(|seed| {
                seed.rsplit_once(':').is_some_and(|(host, port)| {
                    port == NODE_PORT.to_string()
                        && (host == other || Some(host) == addresses.get(other).map(String::as_str))
                })
            });
            ensure!(
                names_other,
                "{node}'s gossip seeds {seeds:?} name {other} on port {NODE_PORT}"
            );
        }

        let address = addresses
            .get(node)
            .with_context(|| format!("{node} has a fixed address"))?;
        ensure!(
            get(&environment, node, "KURRENTDB_REPLICATION_IP")? == address,
            "{node} replicates on its own address {address}"
        );
        ensure!(
            get(&environment, node, "KURRENTDB_ADVERTISE_HOST_TO_CLIENT_AS")? == node,
            "{node} advertises the name the services reach it by"
        );
        ensure!(
            service.health_test().contains("/health/live"),
            "{node} has a health check on /health/live"
        );
    }
    Ok(())
}

#[test]
fn the_nodes_run_all_projections_with_the_standard_ones_started() -> anyhow::Result<()> {
    let compose = Compose::load()?;
    for node in NODES {
        let environment = compose.service(node)?.environment();
        ensure!(
            get(&environment, node, "KURRENTDB_RUN_PROJECTIONS")?.eq_ignore_ascii_case("all"),
            "{node} runs system and custom projections"
        );
        ensure!(
            get(&environment, node, "KURRENTDB_START_STANDARD_PROJECTIONS")?
                .eq_ignore_ascii_case("true"),
            "{node} starts $by_category and $by_event_type, whose $ce- / $et- streams the pipeline reads"
        );
    }
    Ok(())
}

#[test]
fn certificates_are_made_for_the_ca_and_each_node_before_the_nodes_start() -> anyhow::Result<()> {
    let compose = Compose::load()?;
    let addresses = compose.node_addresses()?;
    let cert_gen = compose.service(CERT_GEN)?;
    let certificates = compose.certificates_directory()?;
    let script = cert_gen.command_words().join(" ");
    let statements: Vec<&str> = script
        .split(';')
        .flat_map(|statement| statement.split("&&"))
        .collect();
    ensure!(
        cert_gen
            .image
            .as_deref()
            .unwrap_or_default()
            .contains("es-gencert-cli"),
        "{CERT_GEN} uses es-gencert-cli"
    );
    ensure!(
        statements
            .iter()
            .any(|statement| statement.contains("es-gencert-cli create-ca")),
        "{CERT_GEN} creates the CA"
    );

    for node in NODES {
        let out = format!("./{node}");
        let create_node: Vec<&str> = statements
            .iter()
            .map(|statement| statement.split_whitespace().collect::<Vec<_>>())
            .find(|words| {
                words.contains(&"create-node")
                    && flag(words, "-out").is_some_and(|dir| dir == out || dir == node)
            })
            .with_context(|| format!("{CERT_GEN} creates a certificate for {node} in {out}"))?;
        let ip_addresses: Vec<&str> = flag(&create_node, "-ip-addresses")
            .unwrap_or_default()
            .split(',')
            .collect();
        let dns_names: Vec<&str> = flag(&create_node, "-dns-names")
            .unwrap_or_default()
            .split(',')
            .collect();
        let address = addresses
            .get(node)
            .with_context(|| format!("{node} has a fixed address"))?;
        ensure!(
            ip_addresses.contains(&address.as_str()),
            "{node}'s certificate names its replication address {address}: {ip_addresses:?}"
        );
        ensure!(
            dns_names.contains(&node),
            "{node}'s certificate names the host the services connect to: {dns_names:?}"
        );

        // The node reads its certificate, key and the CA through a mount of the directory cert-gen writes.
        let service = compose.service(node)?;
        let environment = service.environment();
        for (variable, expected) in [
            ("KURRENTDB_CERTIFICATE_FILE", format!("{node}/node.crt")),
            (
                "KURRENTDB_CERTIFICATE_PRIVATE_KEY_FILE",
                format!("{node}/node.key"),
            ),
            ("KURRENTDB_TRUSTED_ROOT_CERTIFICATES_PATH", "ca".to_owned()),
        ] {
            let path = get(&environment, node, variable)?;
            let on_host = service.host_path_of(path).with_context(|| {
                format!("{node}: {variable}={path} is inside a mounted directory")
            })?;
            ensure!(
                on_host == certificates.join(&expected),
                "{node}: {variable}={path} is {} on the host, where cert-gen writes {}",
                on_host.display(),
                certificates.join(&expected).display()
            );
        }
        ensure!(
            service.depends_on().get(CERT_GEN).map(String::as_str)
                == Some("service_completed_successfully"),
            "{node} starts only once {CERT_GEN} has finished"
        );
    }
    Ok(())
}

#[test]
fn every_service_runs_twice_against_all_three_nodes_over_verified_tls() -> anyhow::Result<()> {
    let compose = Compose::load()?;
    let seeder_image = compose.service(SEEDER)?.image.clone();
    for bank_service in &BANK_SERVICES {
        let name = bank_service.name;
        let service = compose.service(name)?;
        let environment = service.environment();
        (bank_service.parse_environment)(&environment)
            .with_context(|| format!("{name}'s environment"))?;

        ensure!(
            service.command_words().first().map(String::as_str) == Some(name),
            "{name} runs its own binary: {:?}",
            service.command_words()
        );
        ensure!(
            service.image == seeder_image,
            "{name} runs the one image of the Dockerfile"
        );
        ensure!(
            service.deploy.as_ref().and_then(|deploy| deploy.replicas) == Some(2),
            "{name} runs two replicas"
        );
        ensure!(
            service.published_ports().is_empty(),
            "{name} publishes no host port: two replicas cannot bind the same one (the gateway does)"
        );

        let listen = (bank_service.variable_of)("listen")?;
        let expected_listen = format!("0.0.0.0:{}", bank_service.port);
        ensure!(
            environment.get(&listen) == Some(&expected_listen),
            "{name} listens on {expected_listen} through {listen}"
        );
        let connection_string = get(
            &environment,
            name,
            &(bank_service.variable_of)("eventstore")?,
        )?;
        check_connection_string(&compose, service, name, connection_string)?;

        let health = service.health_test();
        ensure!(
            health.contains("/health/live") && health.contains(&format!(":{}/", bank_service.port)),
            "{name} has a health check on its own /health/live: {health}"
        );
    }
    Ok(())
}

#[test]
fn the_services_find_each_other_by_service_name() -> anyhow::Result<()> {
    let compose = Compose::load()?;
    for (caller, option, callee) in SERVICE_URLS {
        let caller_service = bank_service(caller)?;
        let callee_service = bank_service(callee)?;
        let variable = (caller_service.variable_of)(option)?;
        let environment = compose.service(caller)?.environment();
        let expected = format!("http://{callee}:{}", callee_service.port);
        ensure!(
            environment.get(&variable) == Some(&expected),
            "{caller} --{option} (from {variable}) is {expected}, not {:?}",
            environment.get(&variable)
        );
    }
    Ok(())
}

#[test]
fn the_seeder_runs_once_after_the_cluster_is_healthy_and_before_every_service() -> anyhow::Result<()>
{
    let compose = Compose::load()?;
    let seeder = compose.service(SEEDER)?;
    ensure!(
        seeder.command_words().first().map(String::as_str) == Some(SEEDER),
        "{SEEDER} runs its binary"
    );
    ensure!(
        seeder
            .deploy
            .as_ref()
            .and_then(|deploy| deploy.replicas)
            .unwrap_or(1)
            == 1,
        "{SEEDER} runs once"
    );
    ensure!(
        seeder.restart.as_deref().unwrap_or("no") == "no",
        "{SEEDER} is a one-shot job: a restart policy would run it again after it succeeds"
    );
    let depends_on = seeder.depends_on();
    for node in NODES {
        ensure!(
            depends_on.get(node).map(String::as_str) == Some("service_healthy"),
            "{SEEDER} waits for {node} to be healthy"
        );
    }

    let environment = seeder.environment();
    let event_store_options =
        infrastructure::EventStoreArgs::augment_args(clap::Command::new("seeder"));
    let known: BTreeSet<String> = event_store_options
        .get_arguments()
        .filter_map(|option| option.get_env()?.to_str().map(str::to_owned))
        .chain(SEEDER_OPTIONS.map(str::to_owned))
        .collect();
    for name in environment.keys() {
        ensure!(
            known.contains(name),
            "{SEEDER}: {name} is not one of its options"
        );
    }
    let connection_string = get(&environment, SEEDER, "EVENTSTORE_CONNECTION_STRING")?;
    check_connection_string(&compose, seeder, SEEDER, connection_string)?;

    for bank_service in &BANK_SERVICES {
        let name = bank_service.name;
        ensure!(
            compose
                .service(name)?
                .depends_on()
                .get(SEEDER)
                .map(String::as_str)
                == Some("service_completed_successfully"),
            "{name} starts only after {SEEDER} has finished successfully"
        );
    }
    Ok(())
}

#[test]
fn the_gateway_publishes_each_api_once_and_proxies_it_to_the_replicas() -> anyhow::Result<()> {
    let compose = Compose::load()?;
    let gateway = compose.service(GATEWAY)?;
    let published = gateway.published_ports();
    let (config_on_host, _) = gateway
        .mounts()
        .into_iter()
        .find(|(_, target)| target.starts_with("/etc/nginx/"))
        .context("the gateway mounts its nginx configuration")?;
    let config_path = repository_root().join(&config_on_host);
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    ensure!(
        config.contains("resolver 127.0.0.11"),
        "nginx re-resolves service names with Docker's DNS, so every replica gets traffic"
    );
    for bank_service in &BANK_SERVICES {
        let (name, port) = (bank_service.name, bank_service.port);
        ensure!(
            published.contains(&format!("{port}:{port}")),
            "the gateway publishes {name} on {port}: {published:?}"
        );
        ensure!(
            config.contains(&format!("listen {port};"))
                && config.contains(&format!("http://{name}:{port}")),
            "{} listens on {port} and proxies it to {name}:{port}",
            config_path.display()
        );
        ensure!(
            gateway.depends_on().contains_key(name),
            "the gateway starts after {name}"
        );
    }
    Ok(())
}

#[test]
fn one_image_holds_every_binary_the_compose_file_runs() -> anyhow::Result<()> {
    let root = repository_root();
    let dockerfile =
        std::fs::read_to_string(root.join("Dockerfile")).context("reading Dockerfile")?;
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.trim().strip_prefix("FROM "))
        .collect();
    ensure!(
        stages
            .first()
            .is_some_and(|stage| stage.starts_with("rust:1-slim")),
        "the build stage is rust:1 slim: {stages:?}"
    );
    ensure!(
        stages
            .last()
            .is_some_and(|stage| stage.starts_with("debian:bookworm-slim")),
        "the runtime stage is debian:bookworm-slim: {stages:?}"
    );
    ensure!(
        dockerfile.contains("cargo build --release")
            && dockerfile.contains("--workspace")
            && dockerfile.contains("--bins"),
        "the Dockerfile builds every binary of the workspace in release mode"
    );
    for tool in ["ca-certificates", "curl"] {
        ensure!(
            dockerfile.contains(tool),
            "the runtime image installs {tool}"
        );
    }
    for binary in BINARIES {
        ensure!(dockerfile.contains(binary), "the image holds {binary}");
    }

    let compose = Compose::load()?;
    let seeder_image = compose.service(SEEDER)?.image.clone();
    for (name, service) in &compose.services {
        if service.image != seeder_image {
            continue;
        }
        let program = service.command_words().first().cloned().unwrap_or_default();
        ensure!(
            BINARIES.contains(&program.as_str()),
            "{name} runs {program:?}, which the image does not hold"
        );
    }

    let dockerignore =
        std::fs::read_to_string(root.join(".dockerignore")).context("reading .dockerignore")?;
    let ignored: BTreeSet<&str> = dockerignore
        .lines()
        .map(|line| line.trim().trim_end_matches('/'))
        .collect();
    for entry in ["target", "data", ".git"] {
        ensure!(ignored.contains(entry), ".dockerignore leaves out {entry}");
    }
    Ok(())
}

/// Parses a connection string with the `eventstore` client itself and checks it reaches the whole cluster securely,
/// with a CA certificate the service can read: the file sits in a mounted directory whose host side is the CA
/// cert-gen writes.
fn check_connection_string(
    compose: &Compose,
    service: &Service,
    name: &str,
    connection_string: &str,
) -> anyhow::Result<()> {
    let settings: ClientSettings = connection_string
        .parse()
        .with_context(|| format!("{name}'s connection string {connection_string}"))?;
    let hosts: BTreeSet<String> = settings
        .hosts()
        .iter()
        .map(|endpoint| format!("{}:{}", endpoint.host, endpoint.port))
        .collect();
    let nodes: BTreeSet<String> = NODES
        .iter()
        .map(|node| format!("{node}:{NODE_PORT}"))
        .collect();
    ensure!(
        hosts == nodes,
        "{name} is given every node as a gossip seed: {hosts:?}"
    );
    ensure!(
        !settings.is_dns_discovery_enabled(),
        "{name} uses the nodes as gossip seeds (esdb+discover:// would only ever ask the first one)"
    );
    ensure!(
        settings.is_secure_mode_enabled(),
        "{name} connects with TLS"
    );
    ensure!(
        settings.is_tls_certificate_verification_enabled(),
        "{name} verifies the nodes' certificates"
    );
    ensure!(
        settings.default_authenticated_user().is_some(),
        "{name} authenticates to the secure cluster"
    );
    ensure!(
        settings.node_preference() == NodePreference::Leader,
        "{name} prefers the leader, which serves writes and persistent subscriptions"
    );
    let ca = settings
        .tls_ca_file()
        .with_context(|| format!("{name} trusts the cluster's own CA (tlsCaFile)"))?;
    let on_host = service
        .host_path_of(ca)
        .with_context(|| format!("{name}: tlsCaFile={ca} is inside a mounted directory"))?;
    let expected = compose.certificates_directory()?.join("ca/ca.crt");
    ensure!(
        on_host == expected,
        "{name}: tlsCaFile={ca} is {} on the host, where cert-gen writes {}",
        on_host.display(),
        expected.display()
    );
    Ok(())
}

/// Feeds a service's environment to its own option parser the way the container would read it: each variable
/// becomes the flag of the option that reads it. A variable no option reads, or a value the option rejects, is
/// an error.
fn parse_environment<C: clap::Args>(environment: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let options = C::augment_args(clap::Command::new("service").no_binary_name(true));
    let mut flags = Vec::new();
    for (name, value) in environment {
        let option = options
            .get_arguments()
            .find(|option| option.get_env().is_some_and(|env| env == name.as_str()))
            .with_context(|| format!("{name} is read by no option of the service"))?;
        let long = option
            .get_long()
            .with_context(|| format!("the option read from {name} has a long flag"))?;
        flags.push(format!("--{long}={value}"));
    }
    let matches = options
        .try_get_matches_from(flags)
        .context("the service accepts its environment")?;
    C::from_arg_matches(&matches).context("the service accepts its environment")?;
    Ok(())
}

/// The environment variable the option with this long flag is read from.
fn variable_of<C: clap::Args>(long: &str) -> anyhow::Result<String> {
    let options = C::augment_args(clap::Command::new("service"));
    let option = options
        .get_arguments()
        .find(|option| option.get_long() == Some(long))
        .with_context(|| format!("the service has a --{long} option"))?;
    let variable = option
        .get_env()
        .with_context(|| format!("--{long} can be set from an environment variable"))?;
    variable
        .to_str()
        .map(str::to_owned)
        .context("the variable's name is UTF-8")
}

fn bank_service(name: &str) -> anyhow::Result<&'static BankService> {
    BANK_SERVICES
        .iter()
        .find(|service| service.name == name)
        .with_context(|| format!("{name} is one of the bank's services"))
}

fn get<'a>(
    environment: &'a BTreeMap<String, String>,
    service: &str,
    name: &str,
) -> anyhow::Result<&'a str> {
    environment
        .get(name)
        .map(String::as_str)
        .with_context(|| format!("{service} sets {name}"))
}

/// The value after `name` in a word list (`-out ./node1` → `./node1`).
fn flag<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    let position = words.iter().position(|word| *word == name)?;
    words.get(position + 1).copied()
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The parts of a Compose file this test reads. Shapes the Compose specification allows in more than one form
/// (environment as a map or a list, `depends_on` as a list or a map, ...) are kept as YAML values and read by the
/// methods of [`Service`].
#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Service {
    image: Option<String>,
    command: Option<Value>,
    environment: Option<Value>,
    volumes: Vec<Value>,
    ports: Vec<Value>,
    depends_on: Option<Value>,
    healthcheck: Option<Healthcheck>,
    deploy: Option<Deploy>,
    networks: Option<Value>,
    restart: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Healthcheck {
    test: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Deploy {
    replicas: Option<u32>,
}

impl Compose {
    /// docker-compose.yml at the repository root, with YAML merge keys (`<<: *anchor`) applied as Compose does.
    fn load() -> anyhow::Result<Self> {
        let path = repository_root().join("docker-compose.yml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut document: Value =
            serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        document.apply_merge().context("applying YAML merge keys")?;
        serde_norway::from_value(document).with_context(|| format!("reading {}", path.display()))
    }

    fn service(&self, name: &str) -> anyhow::Result<&Service> {
        self.services
            .get(name)
            .with_context(|| format!("docker-compose.yml has a `{name}` service"))
    }

    /// Each node's fixed address on the compose network.
    fn node_addresses(&self) -> anyhow::Result<BTreeMap<&'static str, String>> {
        NODES
            .into_iter()
            .map(|node| {
                let address = self
                    .service(node)?
                    .ipv4_address()
                    .with_context(|| format!("{node} has a fixed ipv4_address"))?;
                Ok((node, address))
            })
            .collect()
    }

    /// Where cert-gen writes, on the host: the source of its `/certs` mount.
    fn certificates_directory(&self) -> anyhow::Result<PathBuf> {
        let cert_gen = self.service(CERT_GEN)?;
        match cert_gen
            .mounts()
            .into_iter()
            .find(|(_, target)| target == "/certs")
        {
            Some((source, _)) => Ok(PathBuf::from(source)),
            None => bail!("{CERT_GEN} writes into a directory mounted at /certs"),
        }
    }
}

impl Service {
    fn environment(&self) -> BTreeMap<String, String> {
        match &self.environment {
            Some(Value::Mapping(variables)) => variables
                .iter()
                .filter_map(|(name, value)| {
                    Some((scalar(name)?, scalar(value).unwrap_or_default()))
                })
                .collect(),
            Some(Value::Sequence(variables)) => variables
                .iter()
                .filter_map(scalar)
                .map(|variable| match variable.split_once('=') {
                    Some((name, value)) => (name.to_owned(), value.to_owned()),
                    None => (variable, String::new()),
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// The command as words: a list as given, a string split on whitespace.
    fn command_words(&self) -> Vec<String> {
        words(self.command.as_ref())
    }

    fn health_test(&self) -> String {
        words(
            self.healthcheck
                .as_ref()
                .and_then(|check| check.test.as_ref()),
        )
        .join(" ")
    }

    /// Each dependency with its condition (the list form means `service_started`).
    fn depends_on(&self) -> BTreeMap<String, String> {
        match &self.depends_on {
            Some(Value::Sequence(names)) => names
                .iter()
                .filter_map(scalar)
                .map(|name| (name, "service_started".to_owned()))
                .collect(),
            Some(Value::Mapping(dependencies)) => dependencies
                .iter()
                .filter_map(|(name, details)| {
                    let condition = details
                        .get("condition")
                        .and_then(scalar)
                        .unwrap_or_else(|| "service_started".to_owned());
                    Some((scalar(name)?, condition))
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Bind mounts and volumes as (source, target); short syntax `source:target[:mode]` or the long form.
    fn mounts(&self) -> Vec<(String, String)> {
        self.volumes
            .iter()
            .filter_map(|volume| match volume {
                Value::Mapping(_) => Some((
                    volume.get("source").and_then(scalar)?,
                    volume.get("target").and_then(scalar)?,
                )),
                _ => {
                    let short = scalar(volume)?;
                    let mut parts = short.split(':');
                    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
                }
            })
            .collect()
    }

    /// Where a path inside the container comes from on the host, if a mount covers it.
    fn host_path_of(&self, path: &str) -> Option<PathBuf> {
        let path = Path::new(path);
        self.mounts().into_iter().find_map(|(source, target)| {
            let inside = path.strip_prefix(&target).ok()?;
            Some(PathBuf::from(source).join(inside))
        })
    }

    /// Published ports as `host:container`.
    fn published_ports(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter_map(|port| match port {
                Value::Mapping(_) => Some(format!(
                    "{}:{}",
                    port.get("published").and_then(scalar)?,
                    port.get("target").and_then(scalar)?
                )),
                _ => scalar(port),
            })
            .collect()
    }

    fn ipv4_address(&self) -> Option<String> {
        match &self.networks {
            Some(Value::Mapping(networks)) => networks
                .values()
                .find_map(|network| network.get("ipv4_address").and_then(scalar)),
            _ => None,
        }
    }
}

fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(value) => scalar(value)
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// A YAML scalar as Compose reads it: strings, numbers and booleans as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}
