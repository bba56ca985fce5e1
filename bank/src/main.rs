//! `bank`: `bank up` runs the whole bank; `bank demo` runs a scripted scenario through every branch.

use clap::Parser;

/// mimalloc rather than glibc's malloc, whose arenas were ~13 % of the pipeline's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infrastructure::init_telemetry("info");
    let cli = bank::Cli::parse();
    let ok = bank::run(cli).await?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
