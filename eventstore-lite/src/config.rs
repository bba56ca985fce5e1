//! Server configuration: the typed `ServerConfig` and the command line (EventStoreDB's option names and
//! `EVENTSTORE_*` environment variables) that produces it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the store keeps its data.
#[derive(Debug, Clone)]
pub enum StorageLocation {
    /// Everything in memory; gone when the server stops (`--mem-db`).
    InMemory,
    /// Durable files under this directory (`--db DIR`).
    Directory(PathBuf),
}

/// Everything `start` needs. Build one with [`ServerConfig::in_memory`] or [`ServerConfig::on_disk`] and adjust
/// the public fields.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub storage: StorageLocation,
    /// Plain HTTP/2 without TLS and without authentication (`--insecure`).
    pub insecure: bool,
    pub node_ip: IpAddr,
    /// 0 picks a free port; [`crate::RunningServer::local_addr`] tells which.
    pub http_port: u16,
    pub certificate_file: Option<PathBuf>,
    pub certificate_private_key_file: Option<PathBuf>,
    /// Development mode: TLS with a self-signed certificate made at start-up when no certificate is given.
    pub dev: bool,
    /// Password of the built-in `admin` user (EventStoreDB's default: `changeit`).
    pub default_admin_password: String,
    /// Password of the built-in `ops` user.
    pub default_ops_password: String,
    /// Run `$by_category`, `$by_event_type`, `$streams` and `$stream_by_category`.
    pub start_standard_projections: bool,
    /// A live subscription or persistent group reads the store at most once per this; woken sooner by a commit,
    /// it waits out the rest and takes every commit since in one read (`--live-read-interval-ms`, see
    /// `pace.rs`). Zero reads on every commit.
    pub live_read_interval: Duration,
}

impl ServerConfig {
    /// An in-memory, insecure server on 127.0.0.1 and a random port: what tests want.
    pub fn in_memory() -> Self {
        Self {
            storage: StorageLocation::InMemory,
            insecure: true,
            node_ip: IpAddr::from([127, 0, 0, 1]),
            http_port: 0,
            certificate_file: None,
            certificate_private_key_file: None,
            dev: false,
            default_admin_password: "changeit".to_owned(),
            default_ops_password: "changeit".to_owned(),
            start_standard_projections: true,
            live_read_interval: crate::pace::DEFAULT_LIVE_READ_INTERVAL,
        }
    }

    /// A durable, insecure server storing under `dir`, on 127.0.0.1 and a random port.
    pub fn on_disk(dir: impl Into<PathBuf>) -> Self {
        Self {
            storage: StorageLocation::Directory(dir.into()),
            ..Self::in_memory()
        }
    }
}

/// `eventstore-lite`'s command line. Option names follow EventStoreDB's; every option also reads the
/// `EVENTSTORE_*` environment variable of the same name.
#[derive(Debug, clap::Parser)]
#[command(
    name = "eventstore-lite",
    version,
    about = "A single-node event store speaking EventStoreDB's gRPC protocol"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load tests through the official client (write-flood, read-flood, catch-up, latency, restart).
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Directory of the durable store.
    #[arg(long = "db", env = "EVENTSTORE_DB", default_value = "./data")]
    pub db: PathBuf,
    /// Keep everything in memory (nothing survives a restart).
    #[arg(long = "mem-db", env = "EVENTSTORE_MEM_DB")]
    pub mem_db: bool,
    /// Plain HTTP/2 without TLS, and no authentication.
    #[arg(long, env = "EVENTSTORE_INSECURE")]
    pub insecure: bool,
    #[arg(
        long = "node-ip",
        env = "EVENTSTORE_NODE_IP",
        default_value = "127.0.0.1"
    )]
    pub node_ip: IpAddr,
    #[arg(
        long = "http-port",
        env = "EVENTSTORE_HTTP_PORT",
        default_value_t = 2113
    )]
    pub http_port: u16,
    /// PEM certificate chain for TLS.
    #[arg(long = "certificate-file", env = "EVENTSTORE_CERTIFICATE_FILE")]
    pub certificate_file: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(
        long = "certificate-private-key-file",
        env = "EVENTSTORE_CERTIFICATE_PRIVATE_KEY_FILE"
    )]
    pub certificate_private_key_file: Option<PathBuf>,
    /// Development mode: TLS and authentication with a self-signed certificate made at start-up.
    #[arg(long, env = "EVENTSTORE_DEV")]
    pub dev: bool,
    #[arg(
        long = "default-admin-password",
        env = "EVENTSTORE_DEFAULT_ADMIN_PASSWORD",
        default_value = "changeit"
    )]
    pub default_admin_password: String,
    #[arg(
        long = "default-ops-password",
        env = "EVENTSTORE_DEFAULT_OPS_PASSWORD",
        default_value = "changeit"
    )]
    pub default_ops_password: String,
    /// Maintain `$ce-`, `$et-`, `$streams` and `$category-` streams.
    #[arg(
        long = "start-standard-projections",
        env = "EVENTSTORE_START_STANDARD_PROJECTIONS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub start_standard_projections: bool,
    /// The shortest time between two live reads of one subscription or persistent group: a busy one takes the
    /// commits of this many milliseconds in one read (less CPU, up to this much more latency); an idle one reads
    /// at once. 0: a read on every commit.
    #[arg(
        long = "live-read-interval-ms",
        env = "EVENTSTORE_LIVE_READ_INTERVAL_MS",
        default_value_t = 0
    )]
    pub live_read_interval_ms: u64,
}

impl ServerArgs {
    pub fn into_config(self) -> ServerConfig {
        ServerConfig {
            storage: if self.mem_db {
                StorageLocation::InMemory
            } else {
                StorageLocation::Directory(self.db)
            },
            insecure: self.insecure,
            node_ip: self.node_ip,
            http_port: self.http_port,
            certificate_file: self.certificate_file,
            certificate_private_key_file: self.certificate_private_key_file,
            dev: self.dev,
            default_admin_password: self.default_admin_password,
            default_ops_password: self.default_ops_password,
            start_standard_projections: self.start_standard_projections,
            live_read_interval: Duration::from_millis(self.live_read_interval_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn live_reads_are_paced_only_when_told_to() {
        let config = |args: &[&str]| {
            let mut argv = vec!["eventstore-lite"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
                .expect("arguments parse")
                .server
                .into_config()
        };
        assert_eq!(config(&[]).live_read_interval, Duration::ZERO);
        assert_eq!(
            config(&["--live-read-interval-ms", "5"]).live_read_interval,
            Duration::from_millis(5)
        );
        assert_eq!(ServerConfig::in_memory().live_read_interval, Duration::ZERO);
    }
}
