//! The single writer thread. It drains every queued write into one batch (group commit): checks expected
//! revisions, stages records, writes and fsyncs the log once, indexes the batch (with the system projections'
//! links) in the open redb transaction, publishes the new `$all` end and only then answers the callers. The
//! transaction commits every [`COMMIT_INTERVAL`] (readers see each batch before that: see `index.rs`).
//!
//! Recovery reuses the same `observe` and `index_event` steps on the log's tail, so an index rebuilt after a crash
//! is the index the writer would have built.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::index::{Entry, Index, IndexWrite};
use super::log::{Log, FIRST_POSITION};
use super::metadata::{StreamMetadata, SOFT_DELETED_TB};
use super::{
    category_of, now_ticks, ExpectedRevision, FastMap, OpenError, ProposedEvent, Shared,
    StoreOptions, StoreStats, StoredEvent, WriteError, WriteRequest, WriteResult,
    TOMBSTONE_REVISION,
};

/// Requests taken into one batch at most (group commit).
const MAX_BATCH_REQUESTS: usize = 2048;
/// The index's write transaction commits with the first batch after it has been open this long (and at every
/// checkpoint). Each commit rewrites every redb page it touches: committing every batch (~400 a second at 2,500
/// payments/s) cost ~9 % of the whole bank's CPU late in a long run (ARCHITECTURE.md has the measurements).
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// A durable index checkpoint (on a thread of its own; the writer goes on) at least this often...
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// ...or after this many log bytes, which bounds the log replayed at start-up.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;
/// Event ids remembered for idempotent appends with expected revision `any`.
const RECENT_IDS: usize = 100_000;
/// Records replayed per index transaction during recovery.
const RECOVERY_BATCH: usize = 50_000;

/// What the writer knows about a stream.
#[derive(Debug, Clone, Copy)]
struct Head {
    /// Index id; 0 until the stream's first record is indexed.
    id: u64,
    last: Option<u64>,
    tombstoned: bool,
    soft_deleted: bool,
    has_metadata: bool,
}

/// A failure of the store itself (not of the request): it poisons the store.
#[derive(Debug)]
enum Fault {
    Io(io::Error),
    Index(redb::Error),
}

impl<E: Into<redb::Error>> From<E> for Fault {
    fn from(e: E) -> Self {
        Fault::Index(e.into())
    }
}

impl Fault {
    fn into_io(self) -> io::Error {
        match self {
            Fault::Io(e) | Fault::Index(redb::Error::Io(e)) => e,
            Fault::Index(e) => io::Error::other(e),
        }
    }
}

struct RecentEntry {
    stream: Arc<str>,
    revision: u64,
    position: u64,
}

/// Recently written event ids, for `any` idempotency and fast exact-revision checks.
#[derive(Default)]
struct RecentIds {
    map: FastMap<Uuid, RecentEntry>,
    order: VecDeque<Uuid>,
}

impl RecentIds {
    fn insert(&mut self, id: Uuid, stream: &str, revision: u64, position: u64) {
        if self.order.len() >= RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(id);
        self.map.insert(
            id,
            RecentEntry {
                stream: Arc::from(stream),
                revision,
                position,
            },
        );
    }

    fn get(&self, id: &Uuid) -> Option<&RecentEntry> {
        self.map.get(id)
    }
}

/// One batch in progress.
struct Ctx<'a> {
    w: IndexWrite,
    log: &'a Log,
    /// End of the log as committed before this batch: loads of heads read below it.
    end: u64,
    staged: Vec<StoredEvent>,
    staged_bytes: u64,
}

impl<'a> Ctx<'a> {
    fn new(w: IndexWrite, log: &'a Log, end: u64) -> Self {
        Self {
            w,
            log,
            end,
            staged: Vec::new(),
            staged_bytes: 0,
        }
    }
}

/// Stream heads the writer keeps between batches at most: a store that creates streams all day (a payment's
/// streams are written for a second and never again) would otherwise keep a head per stream ever written.
pub(crate) const REMEMBERED_HEADS: usize = 200_000;

pub(crate) struct Writer {
    /// The heads of the streams written lately; within a batch, ahead of the index (which sees the batch only
    /// when it commits), so it is emptied only between batches.
    heads: FastMap<String, Head>,
    remembered_heads: usize,
    commit_interval: Duration,
    checkpoint_interval: Duration,
    log_end: u64,
    next_stream_id: u64,
    standard_projections: bool,
    recent: RecentIds,
    last_durable: Instant,
    bytes_since_durable: u64,
    /// Buffer for the name of the link stream being written (see `add_link_to`).
    link_stream_name: String,
    /// The batch being written changes a stream's metadata or tombstones a stream (see
    /// `Shared::metadata_generation`).
    metadata_changed: bool,
    /// The index's write transaction between batches, with when it began; dropped uncommitted only when the
    /// store stops writing (a fault poisons it).
    open: Option<(IndexWrite, Instant)>,
}

enum Check {
    Proceed,
    /// The expected revision is behind: the write may be a retry of one already done after this revision.
    Idempotent(Option<u64>),
    Wrong,
}

type Outcome = Result<WriteResult, WriteError>;

impl Writer {
    pub(crate) fn log_end(&self) -> u64 {
        self.log_end
    }

    /// Finds the log's valid end (cutting a torn or partly written last batch), then indexes the log past the
    /// index's last checkpoint.
    pub(crate) fn recover(
        log: &Log,
        index: &Index,
        options: &StoreOptions,
        stats: &StoreStats,
    ) -> Result<Self, OpenError> {
        let standard_projections = options.standard_projections;
        let (mut indexed_to, mut next_stream_id) = index.progress().map_err(OpenError::Index)?;
        let file_len = log.len().map_err(OpenError::Log)?;
        if indexed_to > file_len {
            tracing::warn!(
                indexed_to,
                file_len,
                "the log is shorter than the index; rebuilding the index from the log"
            );
            index.clear().map_err(OpenError::Index)?;
            indexed_to = FIRST_POSITION;
            next_stream_id = 1;
        }
        let mut valid_end = indexed_to;
        let mut scan = log.scan(indexed_to, file_len);
        for frame in scan.by_ref() {
            match frame {
                Ok(frame) if frame.commit => valid_end = frame.event.position + frame.len as u64,
                Ok(_) => {}
                Err((at, error)) => {
                    tracing::warn!(at, ?error, "log ends with an unreadable record");
                    break;
                }
            }
        }
        if valid_end < file_len {
            tracing::warn!(
                valid_end,
                dropped_bytes = file_len - valid_end,
                "cutting the log's torn tail"
            );
            log.truncate(valid_end).map_err(OpenError::Log)?;
        }
        let mut writer = Writer {
            heads: FastMap::default(),
            remembered_heads: options.remembered_heads,
            commit_interval: options.index_commit_interval,
            checkpoint_interval: options.index_checkpoint_interval,
            log_end: valid_end,
            next_stream_id,
            standard_projections,
            recent: RecentIds::default(),
            last_durable: Instant::now(),
            bytes_since_durable: 0,
            link_stream_name: String::new(),
            metadata_changed: false,
            open: None,
        };
        let mut replayed = 0u64;
        let mut ctx = writer
            .begin(index, log, indexed_to)
            .map_err(|e| OpenError::Log(e.into_io()))?;
        let mut position = indexed_to;
        for frame in log.scan(indexed_to, valid_end) {
            let frame = frame.map_err(|(at, e)| {
                OpenError::Log(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("record at {at}: {e:?}"),
                ))
            })?;
            position = frame.event.position + frame.len as u64;
            let event = frame.event;
            writer
                .replay(&mut ctx, &event)
                .map_err(|e| OpenError::Log(e.into_io()))?;
            replayed += 1;
            if replayed % RECOVERY_BATCH as u64 == 0 {
                ctx.w
                    .commit(position, writer.next_stream_id, false)
                    .map_err(OpenError::Index)?;
                ctx = writer
                    .begin(index, log, position)
                    .map_err(|e| OpenError::Log(e.into_io()))?;
            }
        }
        ctx.end = position;
        ctx.w
            .commit(valid_end, writer.next_stream_id, true)
            .map_err(OpenError::Index)?;
        stats.recovered_records.store(replayed, Ordering::Relaxed);
        if replayed > 0 {
            tracing::info!(replayed, "indexed the log past the last index checkpoint");
        }
        Ok(writer)
    }

    fn begin<'a>(&self, index: &Index, log: &'a Log, end: u64) -> Result<Ctx<'a>, Fault> {
        Ok(Ctx::new(index.begin_write()?, log, end))
    }

    fn replay(&mut self, ctx: &mut Ctx, event: &StoredEvent) -> Result<(), Fault> {
        // Heads are loaded from the index, which already holds every record before this one.
        ctx.end = event.position;
        self.head(ctx, &event.stream)?;
        self.observe(ctx, event)?;
        self.index_event(ctx, event)
    }

    /// The writer thread's loop: one batch per iteration until a `Stop` or every sender is gone.
    pub(crate) fn run(mut self, shared: &Shared, mut requests: mpsc::Receiver<WriteRequest>) {
        let mut stopping = false;
        while !stopping {
            let Some(first) = requests.blocking_recv() else {
                break;
            };
            let mut batch = Vec::with_capacity(64);
            let mut take = |request: WriteRequest, batch: &mut Vec<WriteRequest>| match request {
                WriteRequest::Stop => stopping = true,
                other => batch.push(other),
            };
            take(first, &mut batch);
            while batch.len() < MAX_BATCH_REQUESTS {
                match requests.try_recv() {
                    Ok(request) => take(request, &mut batch),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.process(shared, batch);
            }
        }
        // Answer whatever is still queued so no caller waits for ever.
        requests.close();
        while let Ok(request) = requests.try_recv() {
            reply(request, Err(WriteError::ShuttingDown));
        }
        let open = self.open.take();
        if !shared.skip_final_checkpoint.load(Ordering::Acquire) && shared.poisoned.lock().is_none()
        {
            let result = match open {
                Some((w, _)) => Ok(w),
                None => shared.index.begin_write(),
            }
            .and_then(|w| w.commit(self.log_end, self.next_stream_id, true));
            if let Err(error) = result {
                tracing::error!(%error, "final index checkpoint failed; the next start replays the log tail");
            }
        }
    }

    fn process(&mut self, shared: &Shared, batch: Vec<WriteRequest>) {
        if let Some(error) = shared.poisoned.lock().clone() {
            for request in batch {
                reply(request, Err(WriteError::Poisoned(error.clone())));
            }
            return;
        }
        match self.process_batch(shared, batch) {
            Ok(replies) => {
                for (request, outcome) in replies {
                    reply(request, outcome);
                }
            }
            Err((fault, requests)) => {
                let error = Arc::new(fault.into_io());
                tracing::error!(%error, "write failed; the store accepts no more writes until restarted");
                *shared.poisoned.lock() = Some(error.clone());
                for request in requests {
                    reply(request, Err(WriteError::Poisoned(error.clone())));
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn process_batch(
        &mut self,
        shared: &Shared,
        batch: Vec<WriteRequest>,
    ) -> Result<Vec<(WriteRequest, Outcome)>, (Fault, Vec<WriteRequest>)> {
        if self.heads.len() >= self.remembered_heads {
            // Between batches the index's write transaction holds every head, so forgetting them loses nothing.
            self.heads.clear();
        }
        let (w, opened) = match self.open.take() {
            Some(open) => open,
            None => match shared.index.begin_write() {
                Ok(w) => (w, Instant::now()),
                Err(error) => return Err((error.into(), batch)),
            },
        };
        let mut ctx = Ctx::new(w, &shared.log, self.log_end);
        let mut replies = Vec::with_capacity(batch.len());
        let mut iter = batch.into_iter();
        while let Some(request) = iter.next() {
            let outcome = match &request {
                WriteRequest::Append {
                    stream,
                    expected,
                    events,
                    ..
                } => self.apply_append(&mut ctx, stream, *expected, events),
                WriteRequest::Delete {
                    stream,
                    expected,
                    tombstone,
                    ..
                } => self.apply_delete(&mut ctx, stream, *expected, *tombstone),
                WriteRequest::Stop => Ok(Err(WriteError::ShuttingDown)),
            };
            match outcome {
                Ok(outcome) => replies.push((request, outcome)),
                Err(fault) => {
                    let mut pending: Vec<_> = replies.into_iter().map(|(r, _)| r).collect();
                    pending.push(request);
                    pending.extend(iter);
                    return Err((fault, pending));
                }
            }
        }
        if ctx.staged.is_empty() {
            self.open = Some((ctx.w, opened));
            return Ok(replies);
        }
        let fail = |fault: Fault, replies: Vec<(WriteRequest, Outcome)>| {
            (
                fault,
                replies.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
            )
        };
        let staged = std::mem::take(&mut ctx.staged);
        let mut buf = Vec::with_capacity(ctx.staged_bytes as usize);
        for (i, event) in staged.iter().enumerate() {
            event.encode(i + 1 == staged.len(), &mut buf);
        }
        let new_end = self.log_end + buf.len() as u64;
        let started = Instant::now();
        if let Err(e) = shared
            .log
            .write_at(&buf, self.log_end)
            .and_then(|()| shared.log.sync())
        {
            return Err(fail(e.into(), replies));
        }
        let stats = &shared.stats;
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        stats
            .fsync_micros_total
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        for event in &staged {
            if let Err(fault) = self.index_event(&mut ctx, event) {
                return Err(fail(fault, replies));
            }
        }
        self.bytes_since_durable += buf.len() as u64;
        let durable = self.last_durable.elapsed() >= self.checkpoint_interval
            || self.bytes_since_durable >= CHECKPOINT_BYTES;
        let committing = Instant::now();
        if let Err(e) = ctx.w.apply() {
            return Err(fail(e.into(), replies));
        }
        // A checkpoint that ended since the last batch (the one before, if the previous batch waited for it).
        if let Some(took) = ctx.w.take_checkpoint_time() {
            stats
                .index_checkpoint_micros_max
                .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
        }
        if durable {
            // The checkpoint runs on a thread of its own; the writer goes on with the next batch at once.
            if let Err(e) = ctx.w.checkpoint_in_background(new_end, self.next_stream_id) {
                return Err(fail(e.into(), replies));
            }
            stats.index_commits.fetch_add(1, Ordering::Relaxed);
            stats.index_checkpoints.fetch_add(1, Ordering::Relaxed);
            self.open = Some((ctx.w, Instant::now()));
            self.last_durable = Instant::now();
            self.bytes_since_durable = 0;
        } else if opened.elapsed() >= self.commit_interval && !ctx.w.checkpointing() {
            if let Err(e) = ctx.w.commit(new_end, self.next_stream_id, false) {
                return Err(fail(e.into(), replies));
            }
            stats.index_commits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.open = Some((ctx.w, opened));
        }
        let took = committing.elapsed().as_micros() as u64;
        stats
            .index_commit_micros_total
            .fetch_add(took, Ordering::Relaxed);
        if std::mem::take(&mut self.metadata_changed) {
            // After the batch is applied: a reader that saw the old generation may have read either index, and
            // whatever it remembered under that generation is now out of date.
            shared.metadata_generation.fetch_add(1, Ordering::AcqRel);
        }
        // Readers find the batch in memory from the moment they may read it.
        shared.log.remember(self.log_end, Bytes::from(buf));
        self.log_end = new_end;
        shared.committed_end.store(new_end, Ordering::Release);
        shared.committed_tx.send_replace(new_end);
        stats
            .events_written
            .fetch_add(staged.len() as u64, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(replies.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(replies)
    }

    fn head(&mut self, ctx: &Ctx, name: &str) -> Result<&mut Head, Fault> {
        if !self.heads.contains_key(name) {
            let head = load_head(ctx, name)?;
            self.heads.insert(name.to_owned(), head);
        }
        self.heads
            .get_mut(name)
            .ok_or_else(|| Fault::Io(io::Error::other("stream head vanished")))
    }

    fn apply_append(
        &mut self,
        ctx: &mut Ctx,
        stream: &str,
        expected: ExpectedRevision,
        events: &[ProposedEvent],
    ) -> Result<Outcome, Fault> {
        if let Some(target) = stream.strip_prefix("$$") {
            if self.head(ctx, target)?.tombstoned {
                return Ok(Err(WriteError::StreamDeleted(target.to_owned())));
            }
        }
        let head = *self.head(ctx, stream)?;
        if head.tombstoned {
            return Ok(Err(WriteError::StreamDeleted(stream.to_owned())));
        }
        let wrong = || {
            Ok(Err(WriteError::WrongExpectedVersion {
                current: head.last,
                expected,
            }))
        };
        match check_expected(&head, expected) {
            Check::Proceed => {}
            Check::Idempotent(expected_last) => {
                return self.idempotent_retry(ctx, stream, &head, expected_last, events, expected)
            }
            Check::Wrong => return wrong(),
        }
        if expected == ExpectedRevision::Any {
            if let Some(first) = events.first().and_then(|e| self.recent.get(&e.id)) {
                if &*first.stream == stream {
                    let first_revision = first.revision;
                    return self.idempotent_retry(
                        ctx,
                        stream,
                        &head,
                        first_revision.checked_sub(1),
                        events,
                        expected,
                    );
                }
            }
        }
        if events.is_empty() {
            return Ok(Ok(WriteResult {
                current_revision: head.last,
                position: None,
            }));
        }
        if head.soft_deleted {
            // Appending to a soft-deleted stream recreates it: older events stay hidden behind `$tb`.
            let tb = head.last.map_or(0, |last| last + 1);
            self.stage_metadata(ctx, stream, format!("{{\"$tb\":{tb}}}"))?;
        }
        let created = now_ticks();
        let mut revision = head.last.map_or(0, |last| last + 1);
        let mut position = 0;
        for proposed in events {
            position = self.log_end + ctx.staged_bytes;
            let event = StoredEvent {
                stream: stream.to_owned(),
                revision,
                position,
                id: proposed.id,
                event_type: proposed.event_type.clone(),
                is_json: proposed.is_json,
                created,
                metadata: proposed.metadata.clone(),
                data: proposed.data.clone(),
            };
            self.stage(ctx, event)?;
            revision += 1;
        }
        Ok(Ok(WriteResult {
            current_revision: Some(revision - 1),
            position: Some(position),
        }))
    }

    /// The write claims to follow `expected_last`, which is behind the stream: it succeeds only if it is a retry,
    /// i.e. every proposed id is already there at the revisions it would have taken.
    fn idempotent_retry(
        &mut self,
        ctx: &Ctx,
        stream: &str,
        head: &Head,
        expected_last: Option<u64>,
        events: &[ProposedEvent],
        expected: ExpectedRevision,
    ) -> Result<Outcome, Fault> {
        let wrong = Ok(Err(WriteError::WrongExpectedVersion {
            current: head.last,
            expected,
        }));
        if events.is_empty() {
            return wrong;
        }
        let first = expected_last.map_or(0, |n| n + 1);
        let mut position = 0;
        for (i, proposed) in events.iter().enumerate() {
            let revision = first + i as u64;
            if head.last.is_none_or(|last| revision > last) {
                return wrong;
            }
            let found = match self.recent.get(&proposed.id) {
                Some(recent) if &*recent.stream == stream && recent.revision == revision => {
                    Some((proposed.id, recent.position))
                }
                _ => self.event_at(ctx, head.id, revision)?,
            };
            match found {
                Some((id, at)) if id == proposed.id => position = at,
                _ => return wrong,
            }
        }
        Ok(Ok(WriteResult {
            current_revision: Some(first + events.len() as u64 - 1),
            position: Some(position),
        }))
    }

    /// Id and position of the stream's event at `revision`, from the recent-ids cache or the index and log.
    fn event_at(
        &self,
        ctx: &Ctx,
        stream_id: u64,
        revision: u64,
    ) -> Result<Option<(Uuid, u64)>, Fault> {
        if stream_id == 0 {
            return Ok(None);
        }
        let Some(entry) = ctx.w.entry(stream_id, revision)? else {
            return Ok(None);
        };
        let frame = ctx.log.read_record(entry.position(), ctx.end)?;
        Ok(Some((frame.event.id, entry.position())))
    }

    fn apply_delete(
        &mut self,
        ctx: &mut Ctx,
        stream: &str,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<Outcome, Fault> {
        let head = *self.head(ctx, stream)?;
        if head.tombstoned {
            return Ok(Err(WriteError::StreamDeleted(stream.to_owned())));
        }
        let wrong = Ok(Err(WriteError::WrongExpectedVersion {
            current: head.last,
            expected,
        }));
        let exists = head.last.is_some() && !head.soft_deleted;
        let allowed = match expected {
            ExpectedRevision::Any => tombstone || head.last.is_some(),
            ExpectedRevision::NoStream => head.last.is_none() && tombstone,
            ExpectedRevision::StreamExists => exists,
            ExpectedRevision::Exact(n) => head.last == Some(n),
        };
        if !allowed {
            return wrong;
        }
        let position = self.log_end + ctx.staged_bytes;
        if tombstone {
            let event = StoredEvent {
                stream: stream.to_owned(),
                revision: TOMBSTONE_REVISION,
                position,
                id: Uuid::new_v4(),
                event_type: "$streamDeleted".to_owned(),
                is_json: true,
                created: now_ticks(),
                metadata: Bytes::new(),
                data: Bytes::new(),
            };
            self.stage(ctx, event)?;
        } else {
            self.stage_metadata(ctx, stream, format!("{{\"$tb\":{SOFT_DELETED_TB}}}"))?;
        }
        Ok(Ok(WriteResult {
            current_revision: head.last,
            position: Some(position),
        }))
    }

    /// Stages a `$metadata` event for `stream` in `$$stream`.
    fn stage_metadata(&mut self, ctx: &mut Ctx, stream: &str, json: String) -> Result<(), Fault> {
        let meta_stream = format!("$${stream}");
        let revision = self
            .head(ctx, &meta_stream)?
            .last
            .map_or(0, |last| last + 1);
        let event = StoredEvent {
            stream: meta_stream,
            revision,
            position: self.log_end + ctx.staged_bytes,
            id: Uuid::new_v4(),
            event_type: "$metadata".to_owned(),
            is_json: true,
            created: now_ticks(),
            metadata: Bytes::new(),
            data: Bytes::from(json),
        };
        self.stage(ctx, event)
    }

    fn stage(&mut self, ctx: &mut Ctx, event: StoredEvent) -> Result<(), Fault> {
        self.observe(ctx, &event)?;
        ctx.staged_bytes += event.framed_len() as u64;
        ctx.staged.push(event);
        Ok(())
    }

    /// Updates the heads for a record that is being (or, in recovery, was) written.
    fn observe(&mut self, ctx: &Ctx, event: &StoredEvent) -> Result<(), Fault> {
        if let Some(target) = event.stream.strip_prefix("$$") {
            let meta = StreamMetadata::parse(&event.data);
            let head = self.head(ctx, target)?;
            head.has_metadata = true;
            head.soft_deleted = meta.is_soft_deleted();
        }
        let head = self.head(ctx, &event.stream)?;
        if event.revision == TOMBSTONE_REVISION {
            head.tombstoned = true;
        } else {
            head.last = Some(event.revision);
        }
        self.recent
            .insert(event.id, &event.stream, event.revision, event.position);
        Ok(())
    }

    /// Adds the record's index entry and the system projections' links.
    fn index_event(&mut self, ctx: &mut Ctx, event: &StoredEvent) -> Result<(), Fault> {
        if event.stream.starts_with("$$") || event.revision == TOMBSTONE_REVISION {
            self.metadata_changed = true;
        }
        let id = self.stream_id(ctx, &event.stream)?;
        ctx.w
            .add_entry(id, event.revision, Entry::Event(event.position));
        if !self.standard_projections
            || event.stream.starts_with('$')
            || event.revision == TOMBSTONE_REVISION
        {
            return Ok(());
        }
        let category = category_of(&event.stream);
        if let Some(category) = category {
            self.add_link_to(ctx, "$ce-", category, Entry::Link(event.position))?;
        }
        if event.event_type != "$>" {
            self.add_link_to(ctx, "$et-", &event.event_type, Entry::Link(event.position))?;
        }
        if event.revision == 0 {
            self.add_link(ctx, "$streams", Entry::Link(event.position))?;
            if let Some(category) = category {
                self.add_link_to(
                    ctx,
                    "$category-",
                    category,
                    Entry::StreamRef(event.position),
                )?;
            }
        }
        Ok(())
    }

    fn stream_id(&mut self, ctx: &mut Ctx, stream: &str) -> Result<u64, Fault> {
        let next = self.next_stream_id;
        let head = self.head(ctx, stream)?;
        if head.id != 0 {
            return Ok(head.id);
        }
        head.id = next;
        self.next_stream_id += 1;
        ctx.w.add_stream(stream.to_owned(), next);
        Ok(next)
    }

    /// `add_link` to the stream `<prefix><name>`, whose name is built in a reused buffer: this runs for every
    /// event, twice.
    fn add_link_to(
        &mut self,
        ctx: &mut Ctx,
        prefix: &str,
        name: &str,
        entry: Entry,
    ) -> Result<(), Fault> {
        let mut link_stream = std::mem::take(&mut self.link_stream_name);
        link_stream.clear();
        link_stream.push_str(prefix);
        link_stream.push_str(name);
        let result = self.add_link(ctx, &link_stream, entry);
        self.link_stream_name = link_stream;
        result
    }

    fn add_link(&mut self, ctx: &mut Ctx, link_stream: &str, entry: Entry) -> Result<(), Fault> {
        let next = self.next_stream_id;
        let head = self.head(ctx, link_stream)?;
        let new_stream = head.id == 0;
        if new_stream {
            head.id = next;
        }
        let id = head.id;
        let revision = (!head.tombstoned).then(|| {
            let revision = head.last.map_or(0, |last| last + 1);
            head.last = Some(revision);
            revision
        });
        if new_stream {
            self.next_stream_id += 1;
            ctx.w.add_stream(link_stream.to_owned(), id);
        }
        let Some(revision) = revision else {
            return Ok(());
        };
        match entry {
            Entry::Link(position) => ctx.w.add_link(id, revision, position),
            other => ctx.w.add_entry(id, revision, other),
        }
        Ok(())
    }
}

fn load_head(ctx: &Ctx, name: &str) -> Result<Head, Fault> {
    let mut head = Head {
        id: 0,
        last: None,
        tombstoned: false,
        soft_deleted: false,
        has_metadata: false,
    };
    if let Some(id) = ctx.w.stream_id(name)? {
        head.id = id;
        if let Some((revision, _)) = ctx.w.last_entry(id)? {
            if revision == TOMBSTONE_REVISION {
                head.tombstoned = true;
            } else {
                head.last = Some(revision);
            }
        }
    }
    if !name.starts_with("$$") {
        if let Some(meta_id) = ctx.w.stream_id(&format!("$${name}"))? {
            if let Some((_, entry)) = ctx.w.last_entry(meta_id)? {
                head.has_metadata = true;
                let frame = ctx.log.read_record(entry.position(), ctx.end)?;
                head.soft_deleted = StreamMetadata::parse(&frame.event.data).is_soft_deleted();
            }
        }
    }
    Ok(head)
}

fn check_expected(head: &Head, expected: ExpectedRevision) -> Check {
    match expected {
        ExpectedRevision::Any => Check::Proceed,
        ExpectedRevision::NoStream if head.last.is_none() || head.soft_deleted => Check::Proceed,
        ExpectedRevision::NoStream => Check::Idempotent(None),
        ExpectedRevision::StreamExists
            if !head.soft_deleted && (head.last.is_some() || head.has_metadata) =>
        {
            Check::Proceed
        }
        ExpectedRevision::StreamExists => Check::Wrong,
        ExpectedRevision::Exact(n) => match head.last {
            Some(last) if last == n => Check::Proceed,
            Some(last) if n < last => Check::Idempotent(Some(n)),
            _ => Check::Wrong,
        },
    }
}

fn reply(request: WriteRequest, outcome: Outcome) {
    match request {
        WriteRequest::Append { reply, .. } | WriteRequest::Delete { reply, .. } => {
            let _ = reply.send(outcome);
        }
        WriteRequest::Stop => {}
    }
}
