//! The payment-scheme-domain binary: telemetry, options, bind, run until Ctrl-C / SIGTERM.

use clap::Parser;
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
    infrastructure::http::run_until_signalled(address, |listener, shutdown| {
        run(config, listener, shutdown)
    })
    .await
}
