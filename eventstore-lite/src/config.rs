//! Server configuration: the typed `ServerConfig` and the command line (EventStoreDB's option names and
//! `EVENTSTORE_*` environment variables) that produces it.

use std::net::IpAddr;
use std::path::PathBuf;

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
    /// Password of the built-in `admin` user (EventStoreDB's default: `changeit`).
    pub default_admin_password: String,
    /// Password of the built-in `ops` user.
    pub default_ops_password: String,
    /// Run `$by_category`, `$by_event_type`, `$streams` and `$stream_by_category`.
    pub start_standard_projections: bool,
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
            default_admin_password: "changeit".to_owned(),
            default_ops_password: "changeit".to_owned(),
            start_standard_projections: true,
        }
    }

    /// A durable, insecure server storing under `dir`, on 127.0.0.1 and a random port.
    pub fn on_disk(dir: impl Into<PathBuf>) -> Self {
        Self { storage: StorageLocation::Directory(dir.into()), ..Self::in_memory() }
    }
}
