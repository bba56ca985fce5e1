//! The `scheme-simulator` binary: telemetry, options, listen, run until Ctrl-C / SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use infrastructure::CancellationToken;
use scheme_simulator::{run, Config, DEFAULT_PORT};

/// The simulated Bacs scheme: sends the bank inbound payments and receives its returns.
#[derive(Debug, Parser)]
#[command(name = "scheme-simulator", version)]
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
        .with_context(|| format!("listening on {address}"))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        infrastructure::shutdown_signal().await;
        signal.cancel();
    });
    run(config, listener, shutdown).await
}
