//! One async lock per stream, taken by [`crate::Repository`] around a decision and its append, so that
//! concurrent commands on one aggregate in this process queue behind each other instead of racing to the store.
//!
//! Racing is correct (the expected revision catches the loser, who decides again) but it wastes a read, a
//! decision and an append per lost race, and a hot aggregate (an account receiving many payments at once)
//! loses most races: at 1,900 payments a second over a hundred accounts, decisions ran out of attempts and
//! went back to the queue as retries. Queued, each decision starts from the state the previous one saved.
//! Writers in other processes still race, and the expected revision still settles it.
//!
//! Only streams someone holds or waits for have an entry: the last guard out removes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Debug, Default)]
pub(crate) struct StreamLocks {
    streams: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    lock: Arc<AsyncMutex<()>>,
    /// Guards of this stream alive: holding the lock or waiting for it.
    users: usize,
}

/// Holds a stream's lock (or, while [`StreamLocks::lock`] waits, a place in its queue); dropping it lets the
/// next waiter in.
pub(crate) struct StreamGuard<'a> {
    locks: &'a StreamLocks,
    stream: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl StreamLocks {
    /// Waits until no other decision on `stream` runs in this process, and holds it until the guard drops.
    pub async fn lock(&self, stream: &str) -> StreamGuard<'_> {
        let lock = {
            let mut map = self.map();
            let entry = map.entry(stream.to_owned()).or_default();
            entry.users += 1;
            entry.lock.clone()
        };
        // Counted before the wait, so a caller that gives up waiting (its future dropped) still leaves.
        let mut turn = StreamGuard {
            locks: self,
            stream: stream.to_owned(),
            guard: None,
        };
        turn.guard = Some(lock.lock_owned().await);
        turn
    }

    /// Streams with a holder or a waiter.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map is consistent after every statement, so a panic elsewhere leaves it usable.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        if let Some(entry) = map.get_mut(&self.stream) {
            entry.users -= 1;
            if entry.users == 0 {
                map.remove(&self.stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn decisions_on_one_stream_take_turns_and_other_streams_go_on() {
        let locks = Arc::new(StreamLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most_inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (locks, inside, most_inside) = (locks.clone(), inside.clone(), most_inside.clone());
            tasks.spawn(async move {
                let _guard = locks.lock("account-1").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most_inside.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            });
        }
        // While account-1 is busy, another stream's lock is free.
        tokio::time::timeout(Duration::from_secs(1), locks.lock("account-2"))
            .await
            .expect("another stream is not held up");
        while let Some(done) = tasks.join_next().await {
            done.expect("no panic");
        }
        assert_eq!(most_inside.load(Ordering::SeqCst), 1, "one at a time");
        assert_eq!(
            locks.len(),
            0,
            "nothing is remembered once every guard is gone"
        );
    }
}
