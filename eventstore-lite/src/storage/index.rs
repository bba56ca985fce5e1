//! The stream index, kept in redb: stream name → stream id, and (stream id, revision) → log position.
//!
//! The system projections' `$>` links are stored as *runs*: one entry per link stream and write batch (at most
//! [`MAX_RUN_LEN`] links), keyed by the stream and the revision of the run's last link, whose value holds the
//! positions of the linked events. A batch of 100-event appends to one category then costs the index one B-tree
//! insert per event plus a handful per batch, instead of three per event. Readers see runs as ordinary entries.
//!
//! The writer keeps one redb write transaction open across write batches and commits it every
//! [`COMMIT_INTERVAL`](super::writer) or so: a redb commit rewrites every page the transaction touched, and at
//! ~400 batches a second committing each one was the largest single cost of a long run. A batch's changes go into
//! the open transaction (where the writer sees them) and into the *recent changes* of the current [`Epoch`],
//! where readers see them until the transaction commits; each commit starts a new epoch. A reader takes the
//! epoch and how many batches it may see, then the epoch's redb snapshot — opened by the epoch's first reader,
//! after the commit that started the epoch, and shared by the rest (opening a read transaction and its tables
//! for every read was ~1.3 % of the bank's CPU) — so the two together hold every batch it may see (a batch
//! committed after the epoch began may show in both, with the same entries).
//!
//! Most commits are not fsynced (the log is the source of truth and was fsynced first); every checkpoint
//! interval one commit is durable, and it runs on a thread of its own: until it ends the writer applies the next
//! batches to no transaction — readers see them in the current epoch as before — and then writes them into the
//! next transaction and moves readers to an epoch holding them. Each commit also records how far into the log the
//! index reaches (`indexed_to`), and holds whole batches only, so after a crash the index is whatever redb
//! recovered (redb may keep a non-durable commit), and the log past its `indexed_to` is replayed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::log::FIRST_POSITION;
use super::FastMap;

const STREAMS: TableDefinition<&str, u64> = TableDefinition::new("streams");
const ENTRIES: TableDefinition<(u64, u64), u64> = TableDefinition::new("stream_entries");
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");
/// (link stream id, revision of the run's last link) → the linked events' positions, 8 bytes little-endian each.
const LINK_RUNS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("link_runs");

/// Links per run at most: bounds the bytes a reader decodes to find one link (8 bytes a link).
const MAX_RUN_LEN: usize = 128;
/// The index's page cache by default (redb's own default is 1 GiB per database, half of which may hold pages
/// waiting for a durable commit). 256 MiB cost no CPU in 4 minutes at 3,200 payments/s and took the whole bank's
/// peak memory from 3.2 to 1.5 GB (with the read models' 64 MiB; ARCHITECTURE.md).
pub(crate) const DEFAULT_CACHE_BYTES: usize = 256 << 20;

const INDEXED_TO: &str = "indexed_to";
const NEXT_STREAM_ID: &str = "next_stream_id";

/// An index entry: where a stream's event lives, and whether the stream holds the event itself or points at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The record at this position belongs to the stream.
    Event(u64),
    /// A `$>` link (written by a system projection) to the record at this position.
    Link(u64),
    /// A `$@` stream reference: the record at this position is the first event of the referenced stream.
    StreamRef(u64),
}

const LINK_BIT: u64 = 1 << 63;
const STREAM_REF_BIT: u64 = 1 << 62;

impl Entry {
    fn encode(self) -> u64 {
        match self {
            Entry::Event(p) => p,
            Entry::Link(p) => p | LINK_BIT,
            Entry::StreamRef(p) => p | STREAM_REF_BIT,
        }
    }

    fn decode(v: u64) -> Self {
        if v & LINK_BIT != 0 {
            Entry::Link(v & !LINK_BIT)
        } else if v & STREAM_REF_BIT != 0 {
            Entry::StreamRef(v & !STREAM_REF_BIT)
        } else {
            Entry::Event(v)
        }
    }

    pub fn position(self) -> u64 {
        match self {
            Entry::Event(p) | Entry::Link(p) | Entry::StreamRef(p) => p,
        }
    }
}

pub type IndexResult<T> = Result<T, redb::Error>;

pub struct Index {
    db: Arc<Database>,
    /// The epoch readers take: the changes applied since the last commit.
    epoch: Arc<Mutex<Arc<Epoch>>>,
}

/// The index changes applied to the open write transaction since its start, for readers. Frozen (the writer
/// moves to a new epoch) once the transaction commits; dropped when the last reader that took it is done.
#[derive(Default)]
struct Epoch {
    /// The newest batch readers may see: those up to it are in this epoch or committed before it began.
    visible: AtomicU64,
    changes: RwLock<Changes>,
    /// The redb snapshot this epoch's readers share, opened by the first of them (after the commit the epoch
    /// starts from, so it holds every batch before the epoch's).
    snapshot: OnceLock<Arc<Snapshot>>,
}

/// The index's tables as one redb read transaction sees them.
struct Snapshot {
    streams: redb::ReadOnlyTable<&'static str, u64>,
    entries: redb::ReadOnlyTable<(u64, u64), u64>,
    runs: redb::ReadOnlyTable<(u64, u64), &'static [u8]>,
}

#[derive(Default)]
struct Changes {
    /// New stream name → (stream id, batch).
    names: FastMap<String, (u64, u64)>,
    /// Stream id → (revision, encoded entry, batch), ascending by revision (and so by batch).
    entries: FastMap<u64, Vec<(u64, u64, u64)>>,
}

impl Epoch {
    fn starting_after(batch: u64) -> Self {
        Self {
            visible: AtomicU64::new(batch),
            ..Self::default()
        }
    }
}

/// A reader's view of the recent changes: its epoch and the newest batch it sees.
struct Recent {
    epoch: Arc<Epoch>,
    visible: u64,
}

impl Recent {
    fn stream_id(&self, name: &str) -> Option<u64> {
        let changes = self.epoch.changes.read();
        let &(id, batch) = changes.names.get(name)?;
        (batch <= self.visible).then_some(id)
    }

    /// Up to `limit` of the stream's entries with revisions in `[from, to]`, ascending or descending.
    fn entries(
        &self,
        stream_id: u64,
        from: u64,
        to: u64,
        backwards: bool,
        limit: usize,
    ) -> Vec<(u64, Entry)> {
        let changes = self.epoch.changes.read();
        let Some(entries) = changes.entries.get(&stream_id) else {
            return Vec::new();
        };
        // Revisions and batches both ascend: what this reader sees is a prefix of the list.
        let seen = entries.partition_point(|(_, _, batch)| *batch <= self.visible);
        let start = entries[..seen].partition_point(|(revision, _, _)| *revision < from);
        let end = entries[..seen].partition_point(|(revision, _, _)| *revision <= to);
        let found = entries[start..end.max(start)].iter();
        let decode = |&(revision, entry, _): &(u64, u64, u64)| (revision, Entry::decode(entry));
        if backwards {
            found.rev().take(limit).map(decode).collect()
        } else {
            found.take(limit).map(decode).collect()
        }
    }

    fn last_entry(&self, stream_id: u64) -> Option<(u64, Entry)> {
        self.entries(stream_id, 0, u64::MAX, true, 1).pop()
    }

    fn entry(&self, stream_id: u64, revision: u64) -> Option<Entry> {
        self.entries(stream_id, revision, revision, false, 1)
            .pop()
            .map(|(_, entry)| entry)
    }
}

impl Index {
    pub fn open(path: &Path, cache_bytes: usize) -> IndexResult<Self> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        Self::init(db)
    }

    pub fn in_memory() -> IndexResult<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db)
    }

    fn init(db: Database) -> IndexResult<Self> {
        let txn = db.begin_write()?;
        txn.open_table(STREAMS)?;
        txn.open_table(ENTRIES)?;
        txn.open_table(STATE)?;
        txn.open_table(LINK_RUNS)?;
        txn.commit()?;
        Ok(Self {
            db: Arc::new(db),
            epoch: Arc::default(),
        })
    }

    /// (indexed_to, next_stream_id) as of the last commit redb kept.
    pub fn progress(&self) -> IndexResult<(u64, u64)> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let indexed_to = state
            .get(INDEXED_TO)?
            .map(|v| v.value())
            .unwrap_or(FIRST_POSITION);
        let next_id = state.get(NEXT_STREAM_ID)?.map(|v| v.value()).unwrap_or(1);
        Ok((indexed_to, next_id))
    }

    /// Drops everything (used when the log turns out shorter than the index: it is rebuilt from the log).
    pub fn clear(&self) -> IndexResult<()> {
        let txn = self.db.begin_write()?;
        txn.delete_table(STREAMS)?;
        txn.delete_table(ENTRIES)?;
        txn.delete_table(STATE)?;
        txn.delete_table(LINK_RUNS)?;
        txn.open_table(STREAMS)?;
        txn.open_table(ENTRIES)?;
        txn.open_table(STATE)?;
        txn.open_table(LINK_RUNS)?;
        txn.commit()?;
        Ok(())
    }

    /// Opens the index's write transaction; only one is open at a time (redb waits for the previous one).
    pub fn begin_write(&self) -> IndexResult<IndexWrite> {
        let txn = self.db.begin_write()?;
        let epoch = self.epoch.lock().clone();
        let batch = epoch.visible.load(Ordering::Acquire);
        Ok(IndexWrite {
            db: self.db.clone(),
            txn: Some(txn),
            staged: Staged::default(),
            epoch,
            slot: self.epoch.clone(),
            batch,
            checkpoint: None,
            view: std::cell::OnceCell::new(),
            checkpoint_took: None,
        })
    }

    pub fn reader(&self) -> IndexResult<IndexReader> {
        // The epoch and its visible batch first, the snapshot after (see the module's documentation).
        let recent = self.recent();
        reader_over(&self.db, recent)
    }

    fn recent(&self) -> Recent {
        let epoch = self.epoch.lock().clone();
        let visible = epoch.visible.load(Ordering::Acquire);
        Recent { epoch, visible }
    }
}

fn reader_over(db: &Database, recent: Recent) -> IndexResult<IndexReader> {
    let snapshot = match recent.epoch.snapshot.get() {
        Some(snapshot) => snapshot.clone(),
        None => {
            let txn = db.begin_read()?;
            let opened = Arc::new(Snapshot {
                streams: txn.open_table(STREAMS)?,
                entries: txn.open_table(ENTRIES)?,
                runs: txn.open_table(LINK_RUNS)?,
            });
            // Two first readers may race: either snapshot holds the epoch's start; one is kept.
            recent.epoch.snapshot.get_or_init(|| opened).clone()
        }
    };
    Ok(IndexReader {
        generation: None,
        recent,
        snapshot,
    })
}

/// The index's write transaction: the writer adds a batch's changes, [`apply`](Self::apply)s them (readers see
/// them from then on) and, every so often, commits the transaction. Dropping it without a commit loses what it
/// applied from redb (not from readers of this process): only for a store that stops writing.
///
/// A durable commit (a checkpoint) can run on a thread of its own ([`checkpoint_in_background`]
/// (Self::checkpoint_in_background)): until it is done the writer goes on applying batches, which readers see in
/// the current epoch as before, and which wait in memory for the next transaction; the writer's own lookups then
/// read what readers read (the last commit's snapshot and the recent changes).
pub struct IndexWrite {
    db: Arc<Database>,
    /// `None` while a checkpoint commits the previous transaction.
    txn: Option<redb::WriteTransaction>,
    /// The batch being added.
    staged: Staged,
    /// The epoch the applied batches are published in, and where the index keeps the current one.
    epoch: Arc<Epoch>,
    slot: Arc<Mutex<Arc<Epoch>>>,
    /// The last batch applied (numbered across transactions).
    batch: u64,
    checkpoint: Option<Checkpoint>,
    /// While a checkpoint runs: the writer's view for the batch being added (one redb snapshot per batch).
    view: std::cell::OnceCell<IndexReader>,
    /// How long the last checkpoint that finished took, until the writer asks.
    checkpoint_took: Option<Duration>,
}

/// A durable commit running on its own thread, and the batches applied since it began.
struct Checkpoint {
    thread: std::thread::JoinHandle<IndexResult<Duration>>,
    /// The last batch the checkpoint holds.
    batch: u64,
    /// Applied since (published to readers in the current epoch); written into the next transaction.
    queued: Vec<(u64, Staged)>,
}

/// One batch's changes.
#[derive(Default)]
struct Staged {
    new_streams: Vec<(String, u64)>,
    pending: Vec<((u64, u64), u64)>,
    /// Link runs of this batch, in the order they were started.
    runs: Vec<PendingRun>,
    /// Link stream id → its run still open in `runs`.
    open_runs: HashMap<u64, usize>,
}

struct PendingRun {
    stream_id: u64,
    first: u64,
    positions: Vec<u64>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.runs.is_empty() && self.new_streams.is_empty()
    }

    /// Sorts the changes into the order both [`insert`](Self::insert) and [`publish`](Self::publish) expect.
    fn sort(&mut self) {
        self.new_streams.sort_unstable();
        self.pending.sort_unstable_by_key(|(k, _)| *k);
        self.runs
            .sort_unstable_by_key(|run| (run.stream_id, run.first));
        self.open_runs.clear();
    }

    /// Writes the (sorted) changes into the transaction.
    fn insert(&self, txn: &redb::WriteTransaction) -> IndexResult<()> {
        let mut streams = txn.open_table(STREAMS)?;
        for (name, id) in &self.new_streams {
            streams.insert(name.as_str(), id)?;
        }
        let mut entries = txn.open_table(ENTRIES)?;
        for (key, value) in &self.pending {
            entries.insert(key, value)?;
        }
        let mut runs = txn.open_table(LINK_RUNS)?;
        let mut value = Vec::with_capacity(MAX_RUN_LEN * 8);
        for run in &self.runs {
            value.clear();
            for position in &run.positions {
                value.extend_from_slice(&position.to_le_bytes());
            }
            let last = run.first + run.positions.len() as u64 - 1;
            runs.insert((run.stream_id, last), value.as_slice())?;
        }
        Ok(())
    }

    /// Adds the (sorted) changes to the epoch's recent changes as batch `batch` (readers see them once the
    /// epoch's `visible` reaches it).
    fn publish(&self, epoch: &Epoch, batch: u64) {
        let mut changes = epoch.changes.write();
        for (name, id) in &self.new_streams {
            changes.names.insert(name.clone(), (*id, batch));
        }
        // `pending` is sorted by stream and revision, runs by stream and first revision; within a stream both
        // follow the stream's earlier entries. Interleave them by revision per stream.
        for &((stream_id, revision), entry) in &self.pending {
            changes
                .entries
                .entry(stream_id)
                .or_default()
                .push((revision, entry, batch));
        }
        for run in &self.runs {
            let list = changes.entries.entry(run.stream_id).or_default();
            for (i, position) in run.positions.iter().enumerate() {
                list.push((run.first + i as u64, Entry::Link(*position).encode(), batch));
            }
        }
        let touched = self.runs.iter().map(|run| run.stream_id).filter(|id| {
            self.pending
                .binary_search_by_key(id, |((s, _), _)| *s)
                .is_ok()
        });
        for id in touched {
            if let Some(list) = changes.entries.get_mut(&id) {
                list.sort_by_key(|(revision, _, _)| *revision);
            }
        }
    }
}

impl IndexWrite {
    /// What the writer reads while a checkpoint runs: what readers read, with every batch applied so far.
    fn reader(&self) -> IndexResult<&IndexReader> {
        if let Some(view) = self.view.get() {
            return Ok(view);
        }
        let recent = Recent {
            epoch: self.epoch.clone(),
            visible: self.batch,
        };
        let view = reader_over(&self.db, recent)?;
        Ok(self.view.get_or_init(|| view))
    }

    pub fn stream_id(&self, name: &str) -> IndexResult<Option<u64>> {
        match &self.txn {
            Some(txn) => {
                let streams = txn.open_table(STREAMS)?;
                let id = streams.get(name)?.map(|v| v.value());
                Ok(id)
            }
            None => self.reader()?.stream_id(name),
        }
    }

    /// The highest revision recorded for the stream, and its entry.
    pub fn last_entry(&self, stream_id: u64) -> IndexResult<Option<(u64, Entry)>> {
        match &self.txn {
            Some(txn) => {
                let entries = txn.open_table(ENTRIES)?;
                let runs = txn.open_table(LINK_RUNS)?;
                last_entry_in(&entries, &runs, stream_id)
            }
            None => self.reader()?.last_entry(stream_id),
        }
    }

    pub fn entry(&self, stream_id: u64, revision: u64) -> IndexResult<Option<Entry>> {
        match &self.txn {
            Some(txn) => {
                let entries = txn.open_table(ENTRIES)?;
                let runs = txn.open_table(LINK_RUNS)?;
                entry_in(&entries, &runs, stream_id, revision)
            }
            None => self.reader()?.entry(stream_id, revision),
        }
    }

    pub fn add_stream(&mut self, name: String, id: u64) {
        self.staged.new_streams.push((name, id));
    }

    pub fn add_entry(&mut self, stream_id: u64, revision: u64, entry: Entry) {
        self.staged
            .pending
            .push(((stream_id, revision), entry.encode()));
    }

    /// Adds a `$>` link at `revision` of a link stream; `revision` follows the stream's previous one. Consecutive
    /// links of a stream within the batch share one run.
    pub fn add_link(&mut self, stream_id: u64, revision: u64, position: u64) {
        let staged = &mut self.staged;
        if let Some(&open) = staged.open_runs.get(&stream_id) {
            let run = &mut staged.runs[open];
            if run.positions.len() < MAX_RUN_LEN
                && run.first + run.positions.len() as u64 == revision
            {
                run.positions.push(position);
                return;
            }
        }
        staged.open_runs.insert(stream_id, staged.runs.len());
        staged.runs.push(PendingRun {
            stream_id,
            first: revision,
            positions: vec![position],
        });
    }

    /// Writes the batch's changes into the transaction (or, while a checkpoint runs, keeps them for the next
    /// one) and publishes them to readers.
    pub fn apply(&mut self) -> IndexResult<()> {
        if self
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.thread.is_finished())
        {
            self.finish_checkpoint()?;
        }
        if self.staged.is_empty() {
            return Ok(());
        }
        // The writer's view no longer shows every batch applied.
        self.view.take();
        let batch = self.batch + 1;
        let mut staged = std::mem::take(&mut self.staged);
        staged.sort();
        staged.publish(&self.epoch, batch);
        match (&self.txn, &mut self.checkpoint) {
            (Some(txn), _) => staged.insert(txn)?,
            (None, Some(checkpoint)) => checkpoint.queued.push((batch, staged)),
            (None, None) => unreachable!("an index write has a transaction or a checkpoint"),
        }
        self.batch = batch;
        self.epoch.visible.store(batch, Ordering::Release);
        Ok(())
    }

    /// Whether a checkpoint is still running.
    pub fn checkpointing(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// How long the last finished checkpoint took, once.
    pub fn take_checkpoint_time(&mut self) -> Option<Duration> {
        self.checkpoint_took.take()
    }

    /// Waits for the running checkpoint, if any, then opens the next transaction with the batches applied
    /// meanwhile, and moves readers to a new epoch holding those batches.
    pub fn finish_checkpoint(&mut self) -> IndexResult<()> {
        let Some(checkpoint) = self.checkpoint.take() else {
            return Ok(());
        };
        let took = checkpoint.thread.join().map_err(|_| {
            redb::Error::Io(std::io::Error::other(
                "the index checkpoint thread panicked",
            ))
        })??;
        self.checkpoint_took = Some(took);
        let txn = self.db.begin_write()?;
        let epoch = Arc::new(Epoch::starting_after(checkpoint.batch));
        for (batch, staged) in &checkpoint.queued {
            staged.insert(&txn)?;
            staged.publish(&epoch, *batch);
        }
        epoch.visible.store(self.batch, Ordering::Release);
        // The checkpoint is committed: a reader that takes the new epoch opens a snapshot that holds it.
        *self.slot.lock() = epoch.clone();
        self.epoch = epoch;
        self.txn = Some(txn);
        self.view.take();
        Ok(())
    }

    fn record_progress(&mut self, indexed_to: u64, next_stream_id: u64) -> IndexResult<()> {
        self.apply()?;
        self.finish_checkpoint()?;
        let txn = self.txn.as_ref().expect("no checkpoint runs");
        let mut state = txn.open_table(STATE)?;
        state.insert(INDEXED_TO, indexed_to)?;
        state.insert(NEXT_STREAM_ID, next_stream_id)?;
        Ok(())
    }

    /// Applies what is pending and commits the transaction (after the running checkpoint, if any), recording
    /// `indexed_to` and `next_stream_id`. `durable` fsyncs it (a checkpoint); otherwise redb may lose it in a
    /// crash, and the log past the previous durable `indexed_to` is replayed instead. Readers move to a new epoch.
    pub fn commit(
        mut self,
        indexed_to: u64,
        next_stream_id: u64,
        durable: bool,
    ) -> IndexResult<()> {
        self.record_progress(indexed_to, next_stream_id)?;
        let mut txn = self.txn.take().expect("no checkpoint runs");
        if durable {
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(Durability::None)
                .map_err(redb::Error::from)?;
        }
        txn.commit()?;
        // After the commit: a reader that takes the new epoch opens a snapshot that holds every batch so far.
        *self.slot.lock() = Arc::new(Epoch::starting_after(self.batch));
        Ok(())
    }

    /// Like a durable [`commit`](Self::commit), on a thread of its own (after the previous checkpoint, if one
    /// still runs): the write goes on at once, without a transaction until [`finish_checkpoint`]
    /// (Self::finish_checkpoint) (which [`apply`](Self::apply) calls once the checkpoint is done).
    pub fn checkpoint_in_background(
        &mut self,
        indexed_to: u64,
        next_stream_id: u64,
    ) -> IndexResult<()> {
        self.checkpoint_after(indexed_to, next_stream_id, || ())
    }

    /// [`checkpoint_in_background`](Self::checkpoint_in_background), its thread calling `first` before it
    /// commits (tests hold the checkpoint there).
    fn checkpoint_after(
        &mut self,
        indexed_to: u64,
        next_stream_id: u64,
        first: impl FnOnce() + Send + 'static,
    ) -> IndexResult<()> {
        self.record_progress(indexed_to, next_stream_id)?;
        let mut txn = self.txn.take().expect("no checkpoint runs");
        let thread = std::thread::Builder::new()
            .name("index-checkpoint".to_owned())
            .spawn(move || {
                first();
                let started = Instant::now();
                txn.set_quick_repair(true);
                txn.commit()?;
                Ok(started.elapsed())
            })
            .map_err(redb::Error::Io)?;
        self.checkpoint = Some(Checkpoint {
            thread,
            batch: self.batch,
            queued: Vec::new(),
        });
        Ok(())
    }
}

impl Drop for IndexWrite {
    /// A running checkpoint finishes before the write is gone, so the database is free once the writer is.
    fn drop(&mut self) {
        if let Some(checkpoint) = self.checkpoint.take() {
            let _ = checkpoint.thread.join();
        }
    }
}

/// A consistent snapshot of the index for readers.
pub struct IndexReader {
    /// The store's metadata generation read just before this snapshot was opened, when the caller took it.
    pub(crate) generation: Option<u64>,
    recent: Recent,
    snapshot: Arc<Snapshot>,
}

impl IndexReader {
    pub fn stream_id(&self, name: &str) -> IndexResult<Option<u64>> {
        if let Some(id) = self.recent.stream_id(name) {
            return Ok(Some(id));
        }
        Ok(self.snapshot.streams.get(name)?.map(|v| v.value()))
    }

    pub fn last_entry(&self, stream_id: u64) -> IndexResult<Option<(u64, Entry)>> {
        let stored = last_entry_in(&self.snapshot.entries, &self.snapshot.runs, stream_id)?;
        Ok(match (stored, self.recent.last_entry(stream_id)) {
            (Some(s), Some(r)) => Some(if s.0 > r.0 { s } else { r }),
            (s, r) => s.or(r),
        })
    }

    pub fn entry(&self, stream_id: u64, revision: u64) -> IndexResult<Option<Entry>> {
        if let Some(entry) = self.recent.entry(stream_id, revision) {
            return Ok(Some(entry));
        }
        entry_in(
            &self.snapshot.entries,
            &self.snapshot.runs,
            stream_id,
            revision,
        )
    }

    /// Up to `limit` entries with revisions in `[from, to]`, ascending or descending.
    pub fn range(
        &self,
        stream_id: u64,
        from: u64,
        to: u64,
        backwards: bool,
        limit: usize,
    ) -> IndexResult<Vec<(u64, Entry)>> {
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let singles = self.single_entries(stream_id, from, to, backwards, limit)?;
        let linked = runs_in(&self.snapshot.runs, stream_id, from, to, backwards, limit)?;
        let recent = self.recent.entries(stream_id, from, to, backwards, limit);
        let mut parts: Vec<_> = [singles, linked, recent]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect();
        if parts.len() <= 1 {
            return Ok(parts.pop().unwrap_or_default());
        }
        // Several sources hold entries (links written before runs existed, events appended to a link stream,
        // a batch both in a snapshot and in the recent changes): merge them, each revision once.
        let mut merged: Vec<(u64, Entry)> = parts.into_iter().flatten().collect();
        if backwards {
            merged.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
        } else {
            merged.sort_by_key(|(revision, _)| *revision);
        }
        merged.dedup_by_key(|(revision, _)| *revision);
        merged.truncate(limit);
        Ok(merged)
    }

    fn single_entries(
        &self,
        stream_id: u64,
        from: u64,
        to: u64,
        backwards: bool,
        limit: usize,
    ) -> IndexResult<Vec<(u64, Entry)>> {
        let mut out = Vec::new();
        let range = self
            .snapshot
            .entries
            .range((stream_id, from)..=(stream_id, to))?;
        let decode = |item: EntryItem| item.map(|(k, v)| (k.value().1, Entry::decode(v.value())));
        if backwards {
            for item in range.rev().take(limit) {
                out.push(decode(item)?);
            }
        } else {
            for item in range.take(limit) {
                out.push(decode(item)?);
            }
        }
        Ok(out)
    }
}

/// A stored run of links: revisions `first..=last` of a link stream.
struct Run<'a> {
    first: u64,
    last: u64,
    positions: &'a [u8],
}

impl<'a> Run<'a> {
    fn decode(last: u64, positions: &'a [u8]) -> IndexResult<Self> {
        let len = (positions.len() / 8) as u64;
        if len == 0 || !positions.len().is_multiple_of(8) || len - 1 > last {
            return Err(redb::StorageError::Corrupted(format!(
                "a link run ending at revision {last} holds {} bytes",
                positions.len()
            ))
            .into());
        }
        Ok(Self {
            first: last - (len - 1),
            last,
            positions,
        })
    }

    /// The link at `revision`, which lies within the run.
    fn entry(&self, revision: u64) -> Entry {
        let at = (revision - self.first) as usize * 8;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.positions[at..at + 8]);
        Entry::Link(u64::from_le_bytes(bytes))
    }

    /// Entries for the revisions of `[from, to]` within the run, in order, until `out` holds `limit`.
    fn push(&self, from: u64, to: u64, backwards: bool, limit: usize, out: &mut Vec<(u64, Entry)>) {
        let (low, high) = (self.first.max(from), self.last.min(to));
        if low > high {
            return;
        }
        let room = limit.saturating_sub(out.len());
        if backwards {
            out.extend((low..=high).rev().take(room).map(|r| (r, self.entry(r))));
        } else {
            out.extend((low..=high).take(room).map(|r| (r, self.entry(r))));
        }
    }
}

type EntryItem<'a> = Result<
    (
        redb::AccessGuard<'a, (u64, u64)>,
        redb::AccessGuard<'a, u64>,
    ),
    redb::StorageError,
>;

type RunItem<'a> = Result<
    (
        redb::AccessGuard<'a, (u64, u64)>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

fn last_entry_in(
    entries: &impl ReadableTable<(u64, u64), u64>,
    runs: &impl ReadableTable<(u64, u64), &'static [u8]>,
    stream_id: u64,
) -> IndexResult<Option<(u64, Entry)>> {
    let single = entries
        .range((stream_id, 0)..=(stream_id, u64::MAX))?
        .next_back()
        .transpose()?
        .map(|(k, v)| (k.value().1, Entry::decode(v.value())));
    let linked = match runs
        .range((stream_id, 0)..=(stream_id, u64::MAX))?
        .next_back()
        .transpose()?
    {
        Some((k, v)) => {
            let last = k.value().1;
            Some((last, Run::decode(last, v.value())?.entry(last)))
        }
        None => None,
    };
    Ok(match (single, linked) {
        (Some(s), Some(l)) => Some(if s.0 > l.0 { s } else { l }),
        (s, l) => s.or(l),
    })
}

fn entry_in(
    entries: &impl ReadableTable<(u64, u64), u64>,
    runs: &impl ReadableTable<(u64, u64), &'static [u8]>,
    stream_id: u64,
    revision: u64,
) -> IndexResult<Option<Entry>> {
    if let Some(v) = entries.get((stream_id, revision))? {
        return Ok(Some(Entry::decode(v.value())));
    }
    // The run holding `revision` is the first one ending at or after it.
    let Some((k, v)) = runs
        .range((stream_id, revision)..=(stream_id, u64::MAX))?
        .next()
        .transpose()?
    else {
        return Ok(None);
    };
    let run = Run::decode(k.value().1, v.value())?;
    Ok((run.first <= revision).then(|| run.entry(revision)))
}

/// Up to `limit` links stored in runs with revisions in `[from, to]` (`from <= to`), ascending or descending.
fn runs_in(
    runs: &impl ReadableTable<(u64, u64), &'static [u8]>,
    stream_id: u64,
    from: u64,
    to: u64,
    backwards: bool,
    limit: usize,
) -> IndexResult<Vec<(u64, Entry)>> {
    let mut out = Vec::new();
    let take = |item: RunItem, out: &mut Vec<(u64, Entry)>| -> IndexResult<bool> {
        let (k, v) = item?;
        let run = Run::decode(k.value().1, v.value())?;
        if !backwards && run.first > to {
            return Ok(false);
        }
        run.push(from, to, backwards, limit, out);
        Ok(out.len() < limit)
    };
    if backwards {
        // The run holding `to` (or starting past it) ends at or after `to`; the rest end in `[from, to)`.
        if let Some(item) = runs.range((stream_id, to)..=(stream_id, u64::MAX))?.next() {
            if !take(item, &mut out)? {
                return Ok(out);
            }
        }
        if from < to {
            for item in runs.range((stream_id, from)..(stream_id, to))?.rev() {
                if !take(item, &mut out)? {
                    break;
                }
            }
        }
    } else {
        for item in runs.range((stream_id, from)..=(stream_id, u64::MAX))? {
            if !take(item, &mut out)? {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link stream whose first links are single entries (as written before runs existed) and the rest runs
    /// of several batches, next to another link stream filled in the same batches.
    fn index_with_links() -> (Index, Vec<(u64, Entry)>) {
        let index = Index::in_memory().expect("an in-memory index");
        let mut expected = Vec::new();
        let position = |revision: u64| 1_000 + revision * 37;
        let mut w = index.begin_write().expect("a write");
        for revision in 0..5 {
            w.add_entry(1, revision, Entry::Link(position(revision)));
            expected.push((revision, Entry::Link(position(revision))));
        }
        w.commit(0, 3, false).expect("commit");
        let mut revision = 5;
        for batch_len in [1, 2, MAX_RUN_LEN + 3, 40, 3 * MAX_RUN_LEN] {
            let mut w = index.begin_write().expect("a write");
            for _ in 0..batch_len {
                w.add_link(1, revision, position(revision));
                w.add_link(2, revision, 7);
                expected.push((revision, Entry::Link(position(revision))));
                revision += 1;
            }
            w.commit(0, 3, false).expect("commit");
        }
        (index, expected)
    }

    /// A write holding a first batch, not applied yet: `orders-1` (id 1) with an event at 100, and `$ce-orders`
    /// (id 2) linking to it.
    fn first_batch(index: &Index) -> IndexWrite {
        let mut w = index.begin_write().expect("a write");
        w.add_stream("orders-1".to_owned(), 1);
        w.add_stream("$ce-orders".to_owned(), 2);
        w.add_entry(1, 0, Entry::Event(100));
        w.add_link(2, 0, 100);
        w
    }

    /// Every view a reader can have of the write transaction: before a batch is applied, after, after the
    /// commit, and with an epoch taken before the commit and a snapshot after it (a batch in both).
    #[test]
    fn applied_batches_are_read_before_and_after_their_commit() {
        let index = Index::in_memory().expect("an in-memory index");
        let mut w = first_batch(&index);
        let before = index.reader().expect("a reader");
        w.apply().expect("apply");
        let first = index.reader().expect("a reader");
        assert_eq!(before.stream_id("orders-1").expect("id"), None);
        assert_eq!(before.last_entry(1).expect("last"), None);
        assert_eq!(first.stream_id("orders-1").expect("id"), Some(1));
        assert_eq!(first.stream_id("$ce-orders").expect("id"), Some(2));
        assert_eq!(
            first.last_entry(2).expect("last"),
            Some((0, Entry::Link(100)))
        );

        w.add_entry(1, 1, Entry::Event(200));
        w.add_link(2, 1, 200);
        w.add_entry(2, 2, Entry::Event(250));
        w.apply().expect("apply");
        let second = index.reader().expect("a reader");
        let epoch_before_commit = index.recent();
        w.commit(300, 3, false).expect("commit");
        let straddling = reader_over(&index.db, epoch_before_commit).expect("a reader");
        let third = index.reader().expect("a reader");

        let stream = vec![(0, Entry::Event(100)), (1, Entry::Event(200))];
        let links = vec![
            (0, Entry::Link(100)),
            (1, Entry::Link(200)),
            (2, Entry::Event(250)),
        ];
        assert_eq!(
            first.range(1, 0, u64::MAX, false, 10).expect("range"),
            stream[..1]
        );
        for reader in [&second, &straddling, &third] {
            assert_eq!(
                reader.range(1, 0, u64::MAX, false, 10).expect("range"),
                stream
            );
            assert_eq!(
                reader.range(2, 0, u64::MAX, false, 10).expect("range"),
                links
            );
            assert_eq!(
                reader.range(2, 0, 1, true, 10).expect("range"),
                vec![links[1], links[0]]
            );
            assert_eq!(
                reader.range(2, 1, u64::MAX, false, 1).expect("range"),
                links[1..2]
            );
            assert_eq!(reader.last_entry(2).expect("last"), Some(links[2]));
            assert_eq!(reader.entry(2, 1).expect("entry"), Some(Entry::Link(200)));
            assert_eq!(reader.entry(2, 3).expect("entry"), None);
        }

        // The next transaction starts from what the last one committed.
        let mut w = index.begin_write().expect("a write");
        assert_eq!(w.last_entry(1).expect("last"), Some(stream[1]));
        w.add_entry(1, 2, Entry::Event(400));
        w.apply().expect("apply");
        let fourth = index.reader().expect("a reader");
        assert_eq!(
            fourth.range(1, 0, u64::MAX, true, 2).expect("range"),
            vec![(2, Entry::Event(400)), stream[1]]
        );
        assert_eq!(third.last_entry(1).expect("last"), Some(stream[1]));
        drop(w);
        // A transaction dropped without a commit leaves redb as it was.
        assert_eq!(Index::progress(&index).expect("progress"), (300, 3));
    }

    #[test]
    fn batches_applied_during_a_checkpoint_are_read_and_land_in_the_next_transaction() {
        let index = Index::in_memory().expect("an in-memory index");
        let mut w = first_batch(&index);
        w.apply().expect("apply");
        // The checkpoint waits until the test lets it commit.
        let (go, held) = std::sync::mpsc::channel::<()>();
        w.checkpoint_after(200, 3, move || {
            let _ = held.recv();
        })
        .expect("a checkpoint");
        assert!(w.checkpointing());

        // The writer reads what readers read: the checkpoint's batches are in the epoch.
        assert_eq!(w.stream_id("orders-1").expect("id"), Some(1));
        assert_eq!(w.last_entry(2).expect("last"), Some((0, Entry::Link(100))));
        w.add_stream("orders-2".to_owned(), 3);
        w.add_entry(3, 0, Entry::Event(300));
        w.add_link(2, 1, 300);
        w.apply().expect("apply while the checkpoint runs");
        assert!(w.checkpointing(), "the held checkpoint is still running");
        assert_eq!(w.stream_id("orders-2").expect("id"), Some(3));
        assert_eq!(w.last_entry(2).expect("last"), Some((1, Entry::Link(300))));
        assert_eq!(w.entry(3, 0).expect("entry"), Some(Entry::Event(300)));
        let during = index.reader().expect("a reader");
        assert_eq!(
            Index::progress(&index).expect("progress"),
            (FIRST_POSITION, 1)
        );

        go.send(()).expect("the checkpoint waits");
        w.finish_checkpoint().expect("the checkpoint commits");
        assert!(!w.checkpointing());
        assert!(w.take_checkpoint_time().is_some());
        assert_eq!(Index::progress(&index).expect("progress"), (200, 3));
        let after = index.reader().expect("a reader");
        // The batch applied meanwhile is in the next transaction: its commit holds it.
        w.add_entry(1, 1, Entry::Event(400));
        w.apply().expect("apply");
        w.commit(500, 4, false).expect("commit");
        let committed = index.reader().expect("a reader");
        let links = vec![(0, Entry::Link(100)), (1, Entry::Link(300))];
        for reader in [&during, &after, &committed] {
            assert_eq!(reader.stream_id("orders-2").expect("id"), Some(3));
            assert_eq!(
                reader.range(2, 0, u64::MAX, false, 10).expect("range"),
                links
            );
            assert_eq!(
                reader.last_entry(3).expect("last"),
                Some((0, Entry::Event(300)))
            );
        }
        assert_eq!(
            committed.last_entry(1).expect("last"),
            Some((1, Entry::Event(400)))
        );
        assert_eq!(Index::progress(&index).expect("progress"), (500, 4));
        let epoch = index.recent();
        assert!(
            epoch.epoch.changes.read().names.is_empty(),
            "a new epoch after the commit"
        );
    }

    #[test]
    fn runs_read_like_single_entries() {
        let (index, expected) = index_with_links();
        let reader = index.reader().expect("a reader");
        let last = expected.last().copied();
        assert_eq!(reader.last_entry(1).expect("last"), last);
        let write = index.begin_write().expect("a write");
        assert_eq!(write.last_entry(1).expect("last"), last);
        let count = expected.len() as u64;
        for (revision, entry) in &expected {
            assert_eq!(reader.entry(1, *revision).expect("entry"), Some(*entry));
            assert_eq!(write.entry(1, *revision).expect("entry"), Some(*entry));
        }
        assert_eq!(reader.entry(1, count).expect("entry"), None);
        assert_eq!(reader.entry(3, 0).expect("entry"), None);
        let bounds = [
            0,
            1,
            4,
            5,
            6,
            7,
            8,
            100,
            135,
            136,
            137,
            200,
            count - 1,
            count,
            u64::MAX,
        ];
        for from in bounds {
            for to in bounds {
                for limit in [0, 1, 3, 129, usize::MAX] {
                    for backwards in [false, true] {
                        let mut wanted: Vec<_> = expected
                            .iter()
                            .filter(|(r, _)| (from..=to).contains(r))
                            .copied()
                            .collect();
                        if backwards {
                            wanted.reverse();
                        }
                        wanted.truncate(limit);
                        let got = reader.range(1, from, to, backwards, limit).expect("range");
                        assert_eq!(
                            got, wanted,
                            "from {from} to {to} limit {limit} backwards {backwards}"
                        );
                    }
                }
            }
        }
    }
}
