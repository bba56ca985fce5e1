//! Tracing set-up for binaries (libraries only emit): human-readable logs to stderr, filtered by `RUST_LOG`
//! (e.g. `RUST_LOG=info,accounts_api=debug`) or by the default the binary passes.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Harmless when one is installed already (the launcher runs several services
/// in one process, and each may call this).
///
/// The official client logs an ERROR for every append in flight on a BatchAppend session that ends (the session
/// ends at its first failed append, a wrong expected revision included); the store's appender sends those again
/// as `Append` calls and says so at debug level, so the client's batch logs are off unless `RUST_LOG` says
/// otherwise.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_filter},eventstore::batch=off")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
