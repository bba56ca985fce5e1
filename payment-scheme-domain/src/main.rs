//! The payment-scheme-domain binary: telemetry, options, bind, run until Ctrl-C / SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use infrastructure::CancellationToken;
use payment_scheme_domain::{run, Config, DEFAULT_PORT};

#[derive(Debug, Parser)]
#[command(
    name = "payment-scheme-domain",
    about = "The bank's scheme gateway and payment process"
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
