//! `eventstore-lite`: runs the server until Ctrl-C or SIGTERM, or the `bench` load tool.

use clap::Parser;
use eventstore_lite::config::Command;
use eventstore_lite::Cli;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(Command::Bench(args)) = cli.command {
        return eventstore_lite::bench::run(args).await;
    }
    let server = eventstore_lite::start(cli.server.into_config()).await?;
    println!(
        "eventstore-lite listening on {} ({})",
        server.local_addr(),
        server.connection_string()
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
