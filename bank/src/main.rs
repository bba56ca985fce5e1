//! `bank`: `bank up` runs the whole bank; `bank demo` runs a scripted scenario through every branch.

use clap::Parser;

/// mimalloc rather than glibc's malloc, whose arenas were ~13 % of the pipeline's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = bank::Cli::parse();
    // A benchmark reports in JSON; a log line per request would cost it throughput (RUST_LOG still decides).
    let default_level = match cli.command {
        bank::Command::Bench(_) => "warn",
        _ => "info",
    };
    infrastructure::init_telemetry(default_level);
    let ok = bank::run(cli).await?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
