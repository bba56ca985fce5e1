//! The `scheme-simulator` binary: telemetry, options, listen, run until Ctrl-C / SIGTERM.

use clap::Parser;
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
    infrastructure::http::run_until_signalled(address, |listener, shutdown| {
        run(config, listener, shutdown)
    })
    .await
}
