//! The `accounts-api` binary: telemetry, options, bind, run until Ctrl-C / SIGTERM.

use accounts_api::Config;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infrastructure::init_telemetry("info");
    let config = Config::parse();
    let address = config.listen_address();
    infrastructure::http::run_until_signalled(address, |listener, shutdown| {
        accounts_api::run(config, listener, shutdown)
    })
    .await
}
