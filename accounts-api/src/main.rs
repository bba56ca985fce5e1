//! The `accounts-api` binary: telemetry, options, bind, run until Ctrl-C / SIGTERM.

use accounts_api::Config;
use anyhow::Context;
use clap::Parser;
use infrastructure::{init_telemetry, shutdown_signal, CancellationToken};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_telemetry("info");
    let config = Config::parse();
    let address = config.listen_address();
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    accounts_api::run(config, listener, shutdown).await
}
