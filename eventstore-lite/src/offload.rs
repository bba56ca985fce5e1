//! Where a store read runs: on the async worker that asks for it, or in tokio's blocking pool.

/// Reads up to this many events run on the async worker rather than in the blocking pool (see [`store_read`]).
pub const INLINE_READ: usize = 64;

/// Runs a store read. A read of a few events (page-cache resident, a few µs each) runs right here: handing it to
/// the blocking pool costs two thread wake-ups, more than the read itself — the bank's pipeline spent ~15 % of
/// its CPU on those hand-offs. Bigger reads (catching up, large pages) go to the blocking pool so that they
/// never hold an async worker for long.
pub async fn store_read<T: Send + 'static>(
    small: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if small {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("read task failed: {e}"))
}
