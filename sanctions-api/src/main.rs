//! The sanctions-api binary: telemetry, options, bind, run until Ctrl-C / SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use infrastructure::CancellationToken;
use sanctions_api::{run, Config, DEFAULT_PORT};

#[derive(Debug, Parser)]
#[command(
    name = "sanctions-api",
    about = "The bank's sanctions list, screening and held payments"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infrastructure::init_telemetry("info");
    let config = Cli::parse().config;
    let address = config.http.listen_or(DEFAULT_PORT);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    let shutdown = CancellationToken::new();
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        infrastructure::shutdown_signal().await;
        signalled.cancel();
    });
    run(config, listener, shutdown).await
}
