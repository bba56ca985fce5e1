//! Graceful shutdown: one `CancellationToken` to signal it, one `TaskTracker` to wait for the tasks it stops,
//! and the Ctrl-C / SIGTERM future that usually triggers it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `docker stop` sends).
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a handler the process cannot be told to stop this way; wait for the other signal.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        _ = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// A shutdown signal and the tasks that must finish before the process exits. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown that also starts when `parent` is cancelled (e.g. the launcher's token).
    pub fn child_of(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            tracker: TaskTracker::new(),
        }
    }

    /// The token tasks watch; cancelled when shutdown starts.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Starts shutdown.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once shutdown has started.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Starts shutdown when `signal` completes (e.g. [`signal()`]).
    pub fn trigger_on(&self, signal: impl Future<Output = ()> + Send + 'static) {
        let token = self.token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = signal => token.cancel(),
                _ = token.cancelled() => {}
            }
        });
    }

    /// Runs `task` as a tracked task: [`Shutdown::wait`] waits for it.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Starts shutdown and waits for every tracked task to end, at most `grace`. Returns whether they all did.
    pub async fn shut_down(&self, grace: Duration) -> bool {
        self.trigger();
        self.wait(grace).await
    }

    /// Waits (at most `grace`) for every tracked task to end; no new task can be tracked afterwards.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tracker.close();
        let finished = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                remaining = self.tracker.len(),
                ?grace,
                "tasks still running after the grace period"
            );
        }
        finished
    }
}
