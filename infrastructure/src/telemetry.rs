//! Tracing set-up for binaries (libraries only emit): human-readable logs to stderr, filtered by `RUST_LOG`
//! (e.g. `RUST_LOG=info,accounts_api=debug`) or by the default the binary passes.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Harmless when one is installed already (the launcher runs several services
/// in one process, and each may call this).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
