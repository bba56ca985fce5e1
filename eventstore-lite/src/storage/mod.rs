//! The durable store: an append-only log of framed records (the truth) and a redb index over it.
//!
//! - [`record`]: the record format. [`log`]: the log file. [`index`]: the redb index.
//! - [`writer`]: the single writer thread: expected-revision rules, group commit, system-projection links.
//! - [`reader`]: stream and `$all` reads with metadata rules (`$tb`, `$maxCount`, `$maxAge`) and link resolution.
//!
//! This module knows bytes, records and EventStoreDB's stream semantics, nothing about gRPC.

mod filter;
mod index;
mod log;
mod metadata;
mod reader;
mod record;
mod writer;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

pub use filter::{EventFilter, FilterTarget};
pub use metadata::{Acl, StreamMetadata};
pub(crate) use reader::link_data;
pub use reader::{AllFrom, AllRead, ReadError, ResolvedItem, StreamFrom, StreamRead};
pub use record::StoredEvent;

use index::Index;
use log::Log;

/// Name of the event log file inside the data directory.
pub const LOG_FILE_NAME: &str = "events.log";
/// Name of the index database inside the data directory.
pub const INDEX_FILE_NAME: &str = "index.redb";
/// Revision of the `$streamDeleted` event a tombstone writes.
pub const TOMBSTONE_REVISION: u64 = i64::MAX as u64;
/// EventStoreDB's limit on the bytes of one append.
pub const MAX_APPEND_SIZE: usize = 16 * 1024 * 1024;

/// What the caller expects the stream's current revision to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

/// An event proposed for appending.
#[derive(Debug, Clone)]
pub struct ProposedEvent {
    pub id: Uuid,
    pub event_type: String,
    pub is_json: bool,
    pub metadata: Bytes,
    pub data: Bytes,
}

/// The outcome of a successful write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    /// The stream's revision after the write (`None`: still no events).
    pub current_revision: Option<u64>,
    /// Position of the last record written (`None` when nothing was written).
    pub position: Option<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("wrong expected version: expected {expected:?}, current {current:?}")]
    WrongExpectedVersion {
        current: Option<u64>,
        expected: ExpectedRevision,
    },
    #[error("stream '{0}' is deleted")]
    StreamDeleted(String),
    #[error("invalid write: {0}")]
    Invalid(String),
    #[error("the store stopped accepting writes after an I/O failure: {0}")]
    Poisoned(Arc<io::Error>),
    #[error("the store is shutting down")]
    ShuttingDown,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the data directory {path}")]
    Directory { path: PathBuf, source: io::Error },
    #[error("cannot open the event log")]
    Log(#[source] io::Error),
    #[error("cannot open the index")]
    Index(#[source] redb::Error),
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `None`: in memory.
    pub directory: Option<PathBuf>,
    /// Maintain `$ce-`, `$et-`, `$streams` and `$category-` streams.
    pub standard_projections: bool,
    /// How many streams' heads (id, last revision, metadata flags) the writer keeps between write batches;
    /// beyond that it forgets them all and reloads each from the index on its next write.
    pub remembered_heads: usize,
    /// How long the index's write transaction stays open across write batches before it commits (readers see
    /// each batch at once either way).
    pub index_commit_interval: std::time::Duration,
    /// How often (at most) an index commit is durable, a checkpoint: it bounds the log replayed after a crash.
    /// Checkpoints run on a thread of their own while the writer goes on.
    pub index_checkpoint_interval: std::time::Duration,
    /// The most memory the index's page cache (redb's read and write caches) may hold, in bytes.
    pub index_cache_bytes: usize,
}

impl StoreOptions {
    pub fn new(directory: Option<PathBuf>, standard_projections: bool) -> Self {
        Self {
            directory,
            standard_projections,
            remembered_heads: writer::REMEMBERED_HEADS,
            index_commit_interval: writer::COMMIT_INTERVAL,
            index_checkpoint_interval: writer::CHECKPOINT_INTERVAL,
            index_cache_bytes: index::DEFAULT_CACHE_BYTES,
        }
    }
}

/// Counters for `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub events_written: AtomicU64,
    pub writes: AtomicU64,
    pub batches: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_micros_total: AtomicU64,
    /// Index commits (about one a second), and the time the writer spent writing the index: applying each batch
    /// to the open transaction and committing it, and handing checkpoints to their thread (or waiting for one).
    pub index_commits: AtomicU64,
    pub index_commit_micros_total: AtomicU64,
    /// Durable index commits (checkpoints): each writes every index page changed since the last one and fsyncs,
    /// on a thread of its own while the writer goes on; the longest one that has finished.
    pub index_checkpoints: AtomicU64,
    pub index_checkpoint_micros_max: AtomicU64,
    pub recovered_records: AtomicU64,
}

pub(crate) enum WriteRequest {
    Append {
        stream: String,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
        reply: oneshot::Sender<Result<WriteResult, WriteError>>,
    },
    Delete {
        stream: String,
        expected: ExpectedRevision,
        tombstone: bool,
        reply: oneshot::Sender<Result<WriteResult, WriteError>>,
    },
    /// Finish the queued writes, checkpoint and end the writer thread.
    Stop,
}

pub(crate) struct Shared {
    log: Log,
    index: Index,
    /// End of the last committed batch: readers never look past it.
    committed_end: AtomicU64,
    committed_tx: watch::Sender<u64>,
    poisoned: Mutex<Option<Arc<io::Error>>>,
    stats: StoreStats,
    /// Set by `crash()`: the writer stops without its final durable checkpoint.
    skip_final_checkpoint: AtomicBool,
    /// Bumped by the writer after every index commit that changed a stream's metadata or tombstoned a stream:
    /// what [`Shared::visibility`] remembers is valid only for the generation it was read under.
    metadata_generation: AtomicU64,
    /// Stream → (generation, how its metadata limits it), for streams whose visibility does not change with
    /// time or with new events (no `$maxAge`, no `$maxCount`). Resolving a `$ce-` or `$et-` link checks the
    /// target's stream, which took three index lookups per event.
    visibility: Mutex<FastMap<String, (u64, reader::Remembered)>>,
}

/// A hash map for the store's hot in-memory maps (stream names, ids): foldhash, several times cheaper than the
/// standard SipHash per lookup, and still seeded per process.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The event store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    writes: mpsc::Sender<WriteRequest>,
    writer_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    options: Arc<StoreOptions>,
}

impl Store {
    /// Opens (or creates) the store, recovering from a crash if needed: a torn tail of the log is cut, and the
    /// log past the index's last checkpoint is indexed again.
    pub fn open(options: StoreOptions) -> Result<Self, OpenError> {
        let (log, index) = match &options.directory {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
                    path: dir.clone(),
                    source,
                })?;
                let log = Log::open(&dir.join(LOG_FILE_NAME)).map_err(OpenError::Log)?;
                let index = Index::open(&dir.join(INDEX_FILE_NAME), options.index_cache_bytes)
                    .map_err(OpenError::Index)?;
                (log, index)
            }
            None => (
                Log::in_memory(),
                Index::in_memory().map_err(OpenError::Index)?,
            ),
        };
        let stats = StoreStats::default();
        let writer = writer::Writer::recover(&log, &index, &options, &stats)?;
        let end = writer.log_end();
        let (committed_tx, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            log,
            index,
            committed_end: AtomicU64::new(end),
            committed_tx,
            poisoned: Mutex::new(None),
            stats,
            skip_final_checkpoint: AtomicBool::new(false),
            metadata_generation: AtomicU64::new(0),
            visibility: Mutex::new(FastMap::default()),
        });
        let (writes, requests) = mpsc::channel(4096);
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("eventstore-lite-writer".into())
            .spawn(move || writer.run(&thread_shared, requests))
            .map_err(OpenError::Log)?;
        Ok(Self {
            shared,
            writes,
            writer_thread: Arc::new(Mutex::new(Some(handle))),
            options: Arc::new(options),
        })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// Position just past the last committed record (the `$all` end).
    pub fn committed_end(&self) -> u64 {
        self.shared.committed_end.load(Ordering::Acquire)
    }

    /// Wakes whenever a batch commits; the value is the new `$all` end.
    pub fn watch_commits(&self) -> watch::Receiver<u64> {
        self.shared.committed_tx.subscribe()
    }

    pub async fn append(
        &self,
        stream: String,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<WriteResult, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.submit(
            WriteRequest::Append {
                stream,
                expected,
                events,
                reply,
            },
            rx,
        )
        .await
    }

    pub async fn delete(
        &self,
        stream: String,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<WriteResult, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.submit(
            WriteRequest::Delete {
                stream,
                expected,
                tombstone,
                reply,
            },
            rx,
        )
        .await
    }

    async fn submit(
        &self,
        request: WriteRequest,
        rx: oneshot::Receiver<Result<WriteResult, WriteError>>,
    ) -> Result<WriteResult, WriteError> {
        if let Some(error) = self.shared.poisoned.lock().clone() {
            return Err(WriteError::Poisoned(error));
        }
        self.writes
            .send(request)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        rx.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// Stops the writer after the writes already queued, writes a final durable index checkpoint and waits for
    /// the writer thread. Later writes fail with `ShuttingDown`.
    pub async fn close(&self) {
        let _ = self.writes.send(WriteRequest::Stop).await;
        let handle = self.writer_thread.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// A handle that tells when every clone of this store is gone, and with them its files (redb's lock on the
    /// index): a task still holding a clone after the server stopped (a read streaming its last item) would
    /// otherwise keep the next open of the same directory from starting.
    pub fn released(&self) -> Released {
        Released(Arc::downgrade(&self.shared))
    }

    /// Like `close`, but the writer skips its final durable checkpoint, as if the process had died.
    pub async fn crash(&self) {
        self.shared
            .skip_final_checkpoint
            .store(true, Ordering::Release);
        self.close().await;
    }
}

/// See [`Store::released`].
pub struct Released(std::sync::Weak<Shared>);

impl Released {
    /// Waits until the store is gone, at most `timeout`; false if a clone outlived it.
    pub async fn wait(self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.0.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        true
    }
}

/// Current time as EventStoreDB's `created`: 100-nanosecond ticks since the Unix epoch.
pub fn now_ticks() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_nanos() / 100) as i64
}

/// Category of a stream, as `$by_category` sees it: the part before the first `-`.
pub fn category_of(stream: &str) -> Option<&str> {
    if stream.starts_with('$') {
        return None;
    }
    stream.split_once('-').map(|(category, _)| category)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(n: u64) -> ProposedEvent {
        ProposedEvent {
            id: Uuid::from_u128(u128::from(n) + 1),
            event_type: "Tested".into(),
            is_json: true,
            metadata: Bytes::new(),
            data: Bytes::from(format!("{{\"n\":{n}}}")),
        }
    }

    #[tokio::test]
    async fn the_writer_forgets_heads_without_forgetting_streams() {
        // Commits every batch; once an hour; once an hour with a checkpoint every batch (each on its own thread
        // while the writer goes on, so later batches wait in memory for the next transaction).
        let hour = Duration::from_secs(3600);
        for (interval, checkpoints) in
            [(Duration::ZERO, hour), (hour, hour), (hour, Duration::ZERO)]
        {
            let directory = tempfile::tempdir().expect("a directory");
            let mut options = StoreOptions::new(Some(directory.path().to_owned()), true);
            options.remembered_heads = 2;
            options.index_commit_interval = interval;
            options.index_checkpoint_interval = checkpoints;
            let store = Store::open(options.clone()).expect("a store");
            let streams: Vec<String> = (0..5).map(|n| format!("tested-{n}")).collect();
            // Each round writes every stream once, expecting the revision the previous round left: the writer
            // has forgotten most heads in between, and must find them in the index (or its open transaction).
            for round in 0..3u64 {
                for stream in &streams {
                    let expected = match round {
                        0 => ExpectedRevision::NoStream,
                        r => ExpectedRevision::Exact(r - 1),
                    };
                    let written = store
                        .append(stream.clone(), expected, vec![event(round)])
                        .await
                        .expect("appended");
                    assert_eq!(written.current_revision, Some(round), "{stream}");
                    assert_eq!(store.last_revision(stream).expect("read"), Some(round));
                }
            }
            assert_streams_read_back(&store, &streams, interval).await;
            store.close().await;
            drop(store);
            // The open transaction was committed at the close.
            let store = Store::open(options.clone()).expect("the store again");
            assert_streams_read_back(&store, &streams, interval).await;
            // A crash (no final checkpoint) right after more appends: the restart replays what the index lacks.
            for stream in &streams {
                store
                    .append(stream.clone(), ExpectedRevision::Exact(2), vec![event(3)])
                    .await
                    .expect("appended");
            }
            store.crash().await;
            drop(store);
            let store = Store::open(options).expect("the store after a crash");
            for stream in &streams {
                assert_eq!(
                    store.last_revision(stream).expect("read"),
                    Some(3),
                    "{stream}"
                );
            }
            store.close().await;
        }
    }

    async fn assert_streams_read_back(store: &Store, streams: &[String], interval: Duration) {
        for stream in streams {
            let stale = store
                .append(stream.clone(), ExpectedRevision::Exact(0), vec![event(99)])
                .await;
            assert!(
                matches!(
                    stale,
                    Err(WriteError::WrongExpectedVersion {
                        current: Some(2),
                        ..
                    })
                ),
                "{stream} ({interval:?}): {stale:?}"
            );
            match store.read_stream(stream, StreamFrom::Start, false, 10, false) {
                Ok(StreamRead::Found { items, .. }) => {
                    assert_eq!(items.len(), 3, "{stream} ({interval:?})")
                }
                other => panic!("{stream} ({interval:?}): {other:?}"),
            }
        }
        match store.read_stream("$ce-tested", StreamFrom::Start, false, 100, true) {
            Ok(StreamRead::Found { items, .. }) => assert_eq!(items.len(), 15, "{interval:?}"),
            other => panic!("$ce-tested ({interval:?}): {other:?}"),
        }
        match store.read_stream("$ce-tested", StreamFrom::End, true, 4, true) {
            Ok(StreamRead::Found { items, .. }) => {
                let revisions: Vec<u64> = items.iter().map(|i| i.record.revision).collect();
                assert_eq!(revisions, [14, 13, 12, 11], "{interval:?}");
            }
            other => panic!("$ce-tested ({interval:?}): {other:?}"),
        }
    }
}
