//! How often a live subscription reads the store.
//!
//! A live subscription (a catch-up subscription that has caught up, a persistent subscription group) reads the
//! store when a commit wakes it. Under load the store commits several hundred times a second, and each of a
//! dozen subscriptions reading after every commit finds a handful of events per read: the fixed cost of a read
//! (waking the task, an index snapshot, the source stream's visibility, an HTTP/2 flush and the client's wake-up
//! on the other side) is paid per commit rather than per event. With an interval (`--live-read-interval-ms`), a
//! subscription reads at most once per interval: woken sooner than that after its previous live read, it waits
//! out the rest and takes every commit since in one read. An idle subscription still reads at once, so a lone
//! append is delivered as fast as without; only a busy one waits, by at most the interval. The default is no
//! interval (a read per commit, as EventStoreDB pushes every event); the bank's embedded store uses 5 ms.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The shortest time between the starts of two live reads of one subscription, unless configured: none, a read
/// per commit.
pub const DEFAULT_LIVE_READ_INTERVAL: Duration = Duration::ZERO;

/// When one subscription last read live, and how far apart its live reads must be.
#[derive(Debug)]
pub struct LivePace {
    interval: Duration,
    last_read: Option<Instant>,
}

impl LivePace {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_read: None,
        }
    }

    /// When the next live read may start, if that is later than `now`.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        let due = self.last_read? + self.interval;
        (due > now).then_some(due)
    }

    /// A live read starts at `now`.
    pub fn read_started(&mut self, now: Instant) {
        self.last_read = Some(now);
    }

    /// Waits for the next commit, then until the next live read may start, and counts that read as started;
    /// `false` when the store or the server stops first. (A persistent group cannot wait here — it handles acks
    /// meanwhile — and uses [`LivePace::due`] with a timer in its own loop.)
    pub async fn next_live_read(
        &mut self,
        commits: &mut watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> bool {
        let committed = tokio::select! {
            changed = commits.changed() => changed.is_ok(),
            () = shutdown.cancelled() => false,
        };
        if !committed {
            return false;
        }
        if let Some(due) = self.due(Instant::now()) {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = shutdown.cancelled() => return false,
            }
        }
        self.read_started(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(5);

    #[test]
    fn a_live_read_waits_only_for_the_rest_of_the_interval() {
        let start = Instant::now();
        let mut pace = LivePace::new(INTERVAL);
        assert_eq!(pace.due(start), None, "the first read never waits");
        pace.read_started(start);
        let due = start + INTERVAL;
        assert_eq!(
            pace.due(start),
            Some(due),
            "right after a read: the whole interval"
        );
        assert_eq!(
            pace.due(start + INTERVAL / 2),
            Some(due),
            "half an interval later: the rest of it"
        );
        assert_eq!(
            pace.due(due),
            None,
            "an interval after the last read: at once"
        );
        assert_eq!(pace.due(due + INTERVAL), None);
    }

    #[test]
    fn without_an_interval_every_live_read_starts_at_once() {
        let start = Instant::now();
        let mut pace = LivePace::new(Duration::ZERO);
        pace.read_started(start);
        assert_eq!(pace.due(start), None);
    }
}
