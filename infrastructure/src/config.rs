//! Command-line options shared by the services, each also read from an environment variable: where the event
//! store is and how long to wait for it, and where to listen for HTTP. A service flattens these into its own
//! clap parser.

use std::net::SocketAddr;
use std::time::Duration;

use crate::store::{ConnectError, EventStore};

/// The event store to use.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct EventStoreArgs {
    /// EventStoreDB connection string, e.g. `esdb://127.0.0.1:2113?tls=false` or
    /// `esdb+discover://admin:changeit@cluster.local:2113`.
    #[arg(
        long = "eventstore",
        env = "EVENTSTORE_CONNECTION_STRING",
        default_value = "esdb://127.0.0.1:2113?tls=false"
    )]
    pub connection_string: String,

    /// How long to keep trying to reach the event store at start-up (e.g. `30s`, `2m`).
    #[arg(
        long = "eventstore-connect-timeout",
        env = "EVENTSTORE_CONNECT_TIMEOUT",
        default_value = "30s",
        value_parser = humantime::parse_duration
    )]
    pub connect_timeout: Duration,
}

impl EventStoreArgs {
    pub fn new(connection_string: impl Into<String>) -> Self {
        Self {
            connection_string: connection_string.into(),
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// Connects, retrying until the timeout (see [`EventStore::connect`]).
    pub async fn connect(&self) -> Result<EventStore, ConnectError> {
        EventStore::connect(&self.connection_string, self.connect_timeout).await
    }
}

/// Where to serve HTTP.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct HttpArgs {
    /// The address to listen on; each service has its own default port (DESIGN §5).
    #[arg(long, env = "LISTEN")]
    pub listen: Option<SocketAddr>,
}

impl HttpArgs {
    /// The address given, or `127.0.0.1:default_port`.
    pub fn listen_or(&self, default_port: u16) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        eventstore: EventStoreArgs,
        #[command(flatten)]
        http: HttpArgs,
    }

    #[test]
    fn flags_parse_with_embedded_mode_defaults() {
        let cli = Cli::try_parse_from(["service"]).expect("defaults suffice");
        assert_eq!(
            cli.eventstore.connection_string,
            "esdb://127.0.0.1:2113?tls=false"
        );
        assert_eq!(cli.eventstore.connect_timeout, Duration::from_secs(30));
        assert_eq!(
            cli.http.listen_or(5002),
            SocketAddr::from(([127, 0, 0, 1], 5002))
        );

        let cli = Cli::try_parse_from([
            "service",
            "--eventstore",
            "esdb://node:2113?tls=true",
            "--eventstore-connect-timeout",
            "2m",
            "--listen",
            "0.0.0.0:6000",
        ])
        .expect("flags parse");
        assert_eq!(
            cli.eventstore.connection_string,
            "esdb://node:2113?tls=true"
        );
        assert_eq!(cli.eventstore.connect_timeout, Duration::from_secs(120));
        assert_eq!(
            cli.http.listen_or(5002),
            SocketAddr::from(([0, 0, 0, 0], 6000))
        );
        assert!(Cli::try_parse_from(["service", "--eventstore-connect-timeout", "soon"]).is_err());
    }
}
