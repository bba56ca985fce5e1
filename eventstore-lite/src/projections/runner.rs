//! One projection at run time: a dedicated OS thread (the QuickJS runtime is not `Send`) that reads the
//! projection's sources from the store, feeds the events to the engine, writes what the handlers emitted, the
//! results and the checkpoint, and goes live on commit notifications. Commands (state / result queries, enable,
//! disable, reset, update, stop) reach it on a channel between batches; statistics are published in a shared
//! [`Stats`] the gRPC side reads without asking the thread.
//!
//! Ordering on disk for one batch: emitted events first, then results, then the checkpoint. Emitted events get
//! deterministic ids (UUID v5 of projection, epoch, source position and index), and the first write to each
//! emitted stream after a start skips ids already at the stream's tail, so re-processing what followed the last
//! checkpoint after a crash writes nothing twice.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::engine::{Batch, Definition, EventRef, Limits, Projection};
use crate::storage::{
    AllFrom, ExpectedRevision, ProposedEvent, ResolvedItem, Store, StreamFrom, StreamRead,
};

/// Events read per batch.
const BATCH: usize = 500;
/// Records looked at per `$all` read (system streams and links are skipped).
const MAX_SCAN: usize = 4096;
/// A checkpoint at least every this many events processed (or, when there are more partitions than that, every
/// as many events as there are partitions: a checkpoint holds every partition's state, so its cost is then
/// spread evenly over the events) …
const CHECKPOINT_EVENTS: u64 = 10_000;
/// … or this long after something changed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// Once live, how long a projection woken by a commit waits for more before it reads.
const LIVE_BATCH_WINDOW: Duration = Duration::from_millis(20);
/// How far back the tail of an emitted stream is checked for events already written before a restart.
const DEDUPE_TAIL: usize = 4096;
/// Namespace of the ids of emitted events.
const EMIT_NAMESPACE: Uuid = Uuid::from_u128(0x7072_6f6a_2d65_6d69_7474_6564_2d69_6401);

pub const CHECKPOINT_EVENT_TYPE: &str = "$ProjectionCheckpoint";
pub const RESULT_EVENT_TYPE: &str = "Result";
pub const STREAM_TRACKED_EVENT_TYPE: &str = "$StreamTracked";
/// One per partition of a partitioned projection, in `$projections-<name>-partitions`; data: the partition.
pub const PARTITION_EVENT_TYPE: &str = "$partition";
pub const EMIT_NOT_ALLOWED: &str = "'emit' is not allowed by the projection/configuration/mode";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    OneTime,
    Transient,
    Continuous,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::OneTime => "OneTime",
            Mode::Transient => "Transient",
            Mode::Continuous => "Continuous",
        }
    }
}

/// What a projection is: the JSON of its `$ProjectionUpdated` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionConfig {
    pub name: String,
    pub query: String,
    pub mode: Mode,
    pub enabled: bool,
    pub emit_enabled: bool,
    pub track_emitted_streams: bool,
    /// Bumped by every reset; part of the emitted events' ids.
    #[serde(default)]
    pub epoch: i64,
}

impl ProjectionConfig {
    pub fn definition_stream(&self) -> String {
        format!("$projections-{}", self.name)
    }
    pub fn checkpoint_stream(&self) -> String {
        format!("$projections-{}-checkpoint", self.name)
    }
    pub fn emitted_streams_stream(&self) -> String {
        format!("$projections-{}-emittedstreams", self.name)
    }
    pub fn partitions_stream(&self) -> String {
        format!("$projections-{}-partitions", self.name)
    }
    /// Continuous and one-time projections are stored, checkpointed and resumed; transient ones live in memory
    /// only, as in EventStoreDB.
    pub fn durable(&self) -> bool {
        self.mode != Mode::Transient
    }
}

/// Statistics, published by the runner.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub status: String,
    pub state_reason: String,
    pub position: String,
    pub last_checkpoint: String,
    pub progress: f32,
    pub events_processed: i64,
    pub partitions_cached: i32,
    pub core_processing_ms: i64,
    pub emitted_streams: BTreeSet<String>,
}

pub enum Command {
    State {
        partition: String,
        reply: oneshot::Sender<Option<String>>,
    },
    Result {
        partition: String,
        reply: oneshot::Sender<Option<String>>,
    },
    Enable(oneshot::Sender<()>),
    Disable {
        write_checkpoint: bool,
        reply: oneshot::Sender<()>,
    },
    /// Back to the beginning with a new epoch (the config carries it).
    Reset(ProjectionConfig, oneshot::Sender<()>),
    /// A new query or emit option: restart from the checkpoint with it.
    Update(ProjectionConfig, oneshot::Sender<()>),
    /// Checkpoint (when running) and end the thread.
    Stop(oneshot::Sender<()>),
    /// End the thread at once, writing nothing (a simulated crash).
    Halt(oneshot::Sender<()>),
}

/// Where the projection is in its sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Cursor {
    /// Next `$all` position to read.
    All(u64),
    /// Next revision of each source stream.
    Streams(BTreeMap<String, u64>),
}

impl Cursor {
    fn describe(&self) -> String {
        match self {
            Cursor::All(p) => format!("C:{p}/P:{p}"),
            Cursor::Streams(streams) => streams
                .iter()
                .map(|(s, r)| format!("{s}: {}", r.saturating_sub(1)))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// The JSON of a `$ProjectionCheckpoint` event (written by [`Runner::write_checkpoint`]).
#[derive(Debug, Deserialize)]
struct Checkpoint {
    epoch: i64,
    cursor: Cursor,
    /// State of each partition (`""` when not partitioned): `{partition: state}`.
    states: serde_json::Value,
    /// The shared state of a biState projection.
    #[serde(default)]
    shared: Option<serde_json::Value>,
    /// A one-time projection that reached the end of its sources.
    #[serde(default)]
    completed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Running,
    Stopped,
    Aborted,
    Faulted,
    Completed,
}

impl Run {
    fn status(self) -> &'static str {
        match self {
            Run::Running => "Running",
            Run::Stopped => "Stopped",
            Run::Aborted => "Aborted",
            Run::Faulted => "Faulted",
            Run::Completed => "Completed",
        }
    }
}

/// Starts the thread of one projection.
pub fn spawn(
    config: ProjectionConfig,
    store: Store,
    runtime: Handle,
    stats: Arc<Mutex<Stats>>,
    commands: mpsc::UnboundedReceiver<Command>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("projection-{}", config.name))
        .spawn(move || {
            let mut runner = Runner {
                commits: store.watch_commits(),
                config,
                store,
                runtime,
                stats,
                commands,
                engine: None,
                definition: Definition::default(),
                cursor: Cursor::All(0),
                run: Run::Stopped,
                completed: false,
                partition_count: 0,
                since_checkpoint: 0,
                changed_at: None,
                pending: Vec::new(),
                deduped: HashMap::new(),
                tracked: BTreeSet::new(),
                needs_reload: false,
            };
            runner.main();
        })
}

struct Runner {
    config: ProjectionConfig,
    store: Store,
    runtime: Handle,
    stats: Arc<Mutex<Stats>>,
    commands: mpsc::UnboundedReceiver<Command>,
    commits: watch::Receiver<u64>,
    engine: Option<Projection>,
    definition: Definition,
    cursor: Cursor,
    run: Run,
    /// A one-time projection that has reached the end of its sources (kept in its checkpoint).
    completed: bool,
    partition_count: usize,
    since_checkpoint: u64,
    changed_at: Option<Instant>,
    /// Emitted and not yet written: (stream, event).
    pending: Vec<(String, ProposedEvent)>,
    /// Emitted streams whose tail was checked since this start: ids already there.
    deduped: HashMap<String, HashSet<Uuid>>,
    tracked: BTreeSet<String>,
    /// After a fault or an abort, what is in memory is not to be trusted: enabling goes back to the checkpoint.
    needs_reload: bool,
}

enum Step {
    /// More may be there: read again.
    More,
    /// Caught up: wait for a commit.
    CaughtUp,
    /// Events are held back (`reorderEvents`): read again after this long, or on a commit.
    Wait(Duration),
}

impl Runner {
    fn main(&mut self) {
        self.load_tracked();
        self.start(true);
        loop {
            // Commands first, without waiting.
            loop {
                match self.commands.try_recv() {
                    Ok(command) => {
                        if !self.handle(command) {
                            return;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            let step = if self.run == Run::Running {
                self.step()
            } else {
                Step::CaughtUp
            };
            let mut wait = match step {
                Step::More => continue,
                Step::CaughtUp => None,
                Step::Wait(duration) => Some(duration),
            };
            // Idle: a one-time projection completes. A continuous one checkpoints what changed once the
            // checkpoint interval has passed since the first unsaved change, not every time it catches up: live,
            // it catches up after nearly every commit, and a checkpoint serialises every partition's state (at a
            // few thousand commits a second that was a tenth of the whole bank's CPU). Until then it waits for a
            // commit, a command, or the moment the checkpoint falls due. A stop checkpoints regardless.
            if self.run == Run::Running {
                if self.config.mode == Mode::OneTime && wait.is_none() {
                    self.complete();
                } else {
                    match self.checkpoint_due_in() {
                        Some(Duration::ZERO) | None => self.checkpoint_if_dirty(),
                        Some(due_in) => wait = Some(wait.map_or(due_in, |w| w.min(due_in))),
                    }
                }
            }
            let running = self.run == Run::Running;
            let commands = &mut self.commands;
            let commits = &mut self.commits;
            let woke = self.runtime.block_on(async {
                let woke = tokio::select! {
                    command = commands.recv() => Some(command),
                    changed = commits.changed(), if running => {
                        if changed.is_err() { return Some(None) }
                        None
                    }
                    () = tokio::time::sleep(wait.unwrap_or_default()), if running && wait.is_some() => None,
                };
                if woke.is_some() {
                    return woke;
                }
                // Caught up and woken by a commit: let a few more commits land before reading, so that a busy
                // store's commits are processed a batch at a time rather than one read and one engine call each
                // (the per-read cost, not the per-event one, is what a projection spends live). Commands still
                // come first.
                tokio::select! {
                    command = commands.recv() => Some(command),
                    () = tokio::time::sleep(LIVE_BATCH_WINDOW) => None,
                }
            });
            let keep_going = match woke {
                Some(Some(command)) => self.handle(command),
                Some(None) => false,
                None => true,
            };
            if !keep_going {
                return;
            }
        }
    }

    /// Handles one command; false ends the thread.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::State { partition, reply } => {
                let state = self
                    .engine
                    .as_ref()
                    .and_then(|e| e.state(&partition).ok().flatten());
                let _ = reply.send(state);
            }
            Command::Result { partition, reply } => {
                let result = self
                    .engine
                    .as_ref()
                    .and_then(|e| e.result(&partition).ok().flatten());
                let _ = reply.send(result);
            }
            Command::Enable(reply) => {
                self.config.enabled = true;
                if self.run != Run::Running {
                    if self.needs_reload || self.engine.is_none() {
                        self.start(true);
                    } else {
                        self.set_run(Run::Running, "");
                    }
                }
                let _ = reply.send(());
            }
            Command::Disable {
                write_checkpoint,
                reply,
            } => {
                self.config.enabled = false;
                if write_checkpoint {
                    if self.run == Run::Running {
                        self.checkpoint_if_dirty();
                    }
                    self.set_run(Run::Stopped, "");
                } else {
                    self.pending.clear();
                    self.needs_reload = true;
                    self.set_run(Run::Aborted, "");
                }
                let _ = reply.send(());
            }
            Command::Reset(config, reply) => {
                self.config = config;
                self.pending.clear();
                self.start(false);
                if self.config.durable() && self.engine.is_some() {
                    // The reset is durable: a restart must not go back to the old checkpoint.
                    self.write_checkpoint();
                }
                let _ = reply.send(());
            }
            Command::Update(config, reply) => {
                if self.run == Run::Running {
                    self.checkpoint_if_dirty();
                }
                self.config = config;
                self.start(true);
                let _ = reply.send(());
            }
            Command::Stop(reply) => {
                if self.run == Run::Running {
                    self.checkpoint_if_dirty();
                }
                let _ = reply.send(());
                return false;
            }
            Command::Halt(reply) => {
                let _ = reply.send(());
                return false;
            }
        }
        true
    }

    fn set_run(&mut self, run: Run, reason: &str) {
        self.run = run;
        let mut stats = self.stats.lock();
        stats.status = run.status().to_owned();
        stats.state_reason = reason.to_owned();
    }

    /// A one-time projection at the end of its sources: checkpointed as completed, so that it stays Completed,
    /// with its state and result, across a restart.
    fn complete(&mut self) {
        self.completed = true;
        self.write_checkpoint();
        if self.run == Run::Running {
            self.set_run(Run::Completed, "");
        }
    }

    fn fault(&mut self, reason: String) {
        tracing::warn!(projection = %self.config.name, %reason, "projection faulted");
        self.pending.clear();
        self.needs_reload = true;
        self.set_run(Run::Faulted, &reason);
    }

    /// (Re)compiles the query and positions the projection: from its checkpoint when `from_checkpoint`, else
    /// from the beginning. Runs it when enabled.
    fn start(&mut self, from_checkpoint: bool) {
        self.engine = None;
        self.needs_reload = false;
        self.pending.clear();
        self.deduped.clear();
        self.completed = false;
        self.partition_count = 0;
        self.since_checkpoint = 0;
        self.changed_at = None;
        {
            let mut stats = self.stats.lock();
            stats.events_processed = 0;
            stats.partitions_cached = 0;
        }
        let engine = match Projection::compile(&self.config.query, Limits::default()) {
            Ok(engine) => engine,
            Err(error) => {
                self.fault(error.to_string());
                return;
            }
        };
        self.definition = engine.definition().clone();
        if let Err(reason) = self.definition.validate() {
            self.fault(reason);
            return;
        }
        self.cursor = self.initial_cursor();
        if from_checkpoint && self.config.durable() {
            match self.read_checkpoint() {
                Ok(Some(checkpoint)) if checkpoint.epoch == self.config.epoch => {
                    let shared = checkpoint.shared.as_ref().map(ToString::to_string);
                    let restored = engine
                        .restore_all(&checkpoint.states.to_string(), shared.as_deref())
                        .and_then(|()| engine.partition_count());
                    match restored {
                        Ok(count) => self.partition_count = count,
                        Err(error) => {
                            self.fault(format!("cannot restore the checkpoint: {error}"));
                            return;
                        }
                    }
                    self.stats.lock().partitions_cached =
                        i32::try_from(self.partition_count).unwrap_or(i32::MAX);
                    self.merge_cursor(checkpoint.cursor);
                    if checkpoint.completed && self.config.mode == Mode::OneTime {
                        self.completed = true;
                        self.engine = Some(engine);
                        self.publish_position(true);
                        self.set_run(Run::Completed, "");
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    self.fault(format!("cannot read the checkpoint: {error}"));
                    return;
                }
            }
        }
        self.engine = Some(engine);
        self.publish_position(true);
        if self.config.enabled {
            self.set_run(Run::Running, "");
        } else {
            self.set_run(Run::Stopped, "");
        }
    }

    fn initial_cursor(&self) -> Cursor {
        let sources = &self.definition.sources;
        if sources.all {
            return Cursor::All(0);
        }
        let mut streams = BTreeMap::new();
        for stream in &sources.streams {
            streams.insert(stream.clone(), 0);
        }
        for category in &sources.categories {
            streams.insert(format!("$ce-{category}"), 0);
        }
        Cursor::Streams(streams)
    }

    /// Takes a checkpointed cursor, keeping the streams the (possibly updated) query reads.
    fn merge_cursor(&mut self, stored: Cursor) {
        match (&mut self.cursor, stored) {
            (Cursor::All(p), Cursor::All(stored)) => *p = stored,
            (Cursor::Streams(current), Cursor::Streams(stored)) => {
                for (stream, revision) in current.iter_mut() {
                    if let Some(r) = stored.get(stream) {
                        *revision = *r;
                    }
                }
            }
            // The query changed its kind of source: start it from the beginning.
            _ => {}
        }
    }

    fn read_checkpoint(&self) -> Result<Option<Checkpoint>, String> {
        let read = self
            .store
            .read_stream(
                &self.config.checkpoint_stream(),
                StreamFrom::End,
                true,
                1,
                false,
            )
            .map_err(|e| e.to_string())?;
        let StreamRead::Found { items, .. } = read else {
            return Ok(None);
        };
        let Some(item) = items.first() else {
            return Ok(None);
        };
        serde_json::from_slice(&item.record.data)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn load_tracked(&mut self) {
        if !self.config.track_emitted_streams {
            return;
        }
        let stream = self.config.emitted_streams_stream();
        let mut from = 0;
        while let Ok(StreamRead::Found { items, .. }) =
            self.store
                .read_stream(&stream, StreamFrom::Revision(from), false, 1000, false)
        {
            if items.is_empty() {
                break;
            }
            for item in &items {
                from = item.record.revision + 1;
                self.tracked
                    .insert(String::from_utf8_lossy(&item.record.data).into_owned());
            }
        }
        self.stats.lock().emitted_streams = self.tracked.clone();
    }

    /// Reads and processes one batch.
    fn step(&mut self) -> Step {
        let read = match self.read_batch() {
            Ok(read) => read,
            Err(error) => {
                self.fault(format!("cannot read the projection's source: {error}"));
                return Step::CaughtUp;
            }
        };
        let started = Instant::now();
        let outcome = match self.process(&read.items) {
            Ok(outcome) => outcome,
            Err(reason) => {
                self.fault(reason);
                return Step::CaughtUp;
            }
        };
        {
            let mut stats = self.stats.lock();
            stats.core_processing_ms += started.elapsed().as_millis() as i64;
            stats.events_processed += i64::try_from(outcome).unwrap_or(i64::MAX);
            if self.definition.partitioned {
                stats.partitions_cached = i32::try_from(self.partition_count).unwrap_or(i32::MAX);
            } else if stats.events_processed > 0 {
                stats.partitions_cached = 1;
            }
        }
        self.cursor = read.next;
        if !self.pending.is_empty() {
            // Emitted events are written before the checkpoint that covers their cause.
            self.write_checkpoint();
        } else if self.since_checkpoint >= CHECKPOINT_EVENTS.max(self.partition_count as u64)
            || self
                .changed_at
                .is_some_and(|t| t.elapsed() >= CHECKPOINT_INTERVAL)
        {
            self.checkpoint_if_dirty();
        }
        self.publish_position(false);
        match (read.more, read.wait) {
            (true, _) => Step::More,
            (false, Some(wait)) => Step::Wait(wait),
            (false, None) => Step::CaughtUp,
        }
    }

    /// The next events in source order, each with a unique key (its position), the cursor after them, and
    /// whether more may follow.
    fn read_batch(&self) -> Result<SourceRead, String> {
        match &self.cursor {
            Cursor::All(position) => {
                let include_links = self.definition.includes_links();
                let handles_deleted = self.definition.handles("$streamDeleted");
                let read = self
                    .store
                    .read_all(
                        AllFrom::Position(*position),
                        false,
                        BATCH,
                        MAX_SCAN,
                        None,
                        false,
                    )
                    .map_err(|e| e.to_string())?;
                let items = read
                    .items
                    .into_iter()
                    .filter(|i| {
                        (!i.record.stream.starts_with('$')
                            && (include_links || i.record.event_type != "$>"))
                            || (handles_deleted && soft_deletes(&i.record))
                    })
                    .map(|i| (i.record.position, i))
                    .collect();
                let next = read.next.max(*position);
                Ok(SourceRead {
                    items,
                    next: Cursor::All(next),
                    more: !read.reached_end,
                    wait: None,
                })
            }
            Cursor::Streams(streams) => {
                // Only events committed before the reads start are taken: a stream read later could otherwise
                // return an event committed after one that an earlier stream's read missed, and the two would
                // be processed out of `$all` order.
                let committed = self.store.committed_end();
                // Read a batch of each stream, then keep only what is certainly in order: up to the lowest last
                // position among streams that may have more.
                let mut fetched: Vec<(String, u64, ResolvedItem)> = Vec::new();
                let mut cutoff = u64::MAX;
                let mut more = false;
                for (stream, revision) in streams {
                    let read = match self.store.read_stream(
                        stream,
                        StreamFrom::Revision(*revision),
                        false,
                        BATCH,
                        true,
                    ) {
                        Ok(read) => read,
                        Err(crate::storage::ReadError::StreamDeleted(_)) => continue,
                        Err(e) => return Err(e.to_string()),
                    };
                    let StreamRead::Found { items, .. } = read else {
                        continue;
                    };
                    let full = items.len() >= BATCH;
                    let mut last_key = 0;
                    for item in items {
                        let key = item
                            .target
                            .as_ref()
                            .map_or(item.record.position, |t| t.position);
                        if item.record.position >= committed {
                            continue;
                        }
                        last_key = last_key.max(key);
                        fetched.push((stream.clone(), key, item));
                    }
                    if full {
                        more = true;
                        cutoff = cutoff.min(last_key);
                    }
                }
                fetched.sort_by_key(|(_, key, _)| *key);
                // reorderEvents: an event is processed once it is `processingLag` old, so that events of the
                // other streams committed around it are processed in `$all` order with it.
                let mut wait = None;
                if let Some(lag) = self.definition.processing_lag() {
                    let now = crate::storage::now_ticks();
                    let lag_ticks = i64::try_from(lag.as_micros() * 10).unwrap_or(i64::MAX);
                    if let Some((_, key, item)) = fetched.iter().find(|(_, _, item)| {
                        let event = item.target.as_ref().unwrap_or(&item.record);
                        event.created.saturating_add(lag_ticks) > now
                    }) {
                        let event = item.target.as_ref().unwrap_or(&item.record);
                        let due = event.created.saturating_add(lag_ticks) - now;
                        wait = Some(Duration::from_micros(
                            u64::try_from(due / 10).unwrap_or(0).max(1_000),
                        ));
                        cutoff = cutoff.min(key.saturating_sub(1));
                        more = false;
                    }
                }
                let mut next = streams.clone();
                let mut items = Vec::with_capacity(fetched.len());
                for (stream, key, item) in fetched {
                    if key > cutoff {
                        continue;
                    }
                    if let Some(revision) = next.get_mut(&stream) {
                        *revision = (*revision).max(item.record.revision + 1);
                    }
                    // An unresolvable link (its target deleted) is passed over.
                    if item.is_link && item.target.is_none() {
                        continue;
                    }
                    items.push((key, item));
                }
                Ok(SourceRead {
                    items,
                    next: Cursor::Streams(next),
                    more,
                    wait,
                })
            }
        }
    }

    /// Runs the handlers over a batch (one call into the engine) and queues what they emitted; returns how
    /// many events a handler took.
    fn process(&mut self, items: &[(u64, ResolvedItem)]) -> Result<u64, String> {
        let Some(engine) = &self.engine else {
            return Ok(0);
        };
        let mut batch = Batch::default();
        let mut keys = Vec::with_capacity(items.len());
        for (key, item) in items {
            let (event, link) = match &item.target {
                Some(target) => (target, Some(&item.record)),
                None => (&item.record, None),
            };
            // A soft delete (the `$metadata` event that sets `$tb` to the end) is the stream's deletion, as the
            // tombstone's `$streamDeleted` is for a hard delete.
            let (stream_id, event_type) = match event.stream.strip_prefix("$$") {
                Some(deleted) if soft_deletes(event) => (deleted, "$streamDeleted"),
                _ => (event.stream.as_str(), event.event_type.as_str()),
            };
            if !self.definition.handles(event_type) {
                continue;
            }
            let input = EventRef {
                stream_id,
                sequence_number: event.revision,
                event_type,
                event_id: event.id.hyphenated(),
                category: stream_id.split_once('-').map_or(stream_id, |(c, _)| c),
                is_json: event.is_json,
                body_raw: String::from_utf8_lossy(&event.data),
                metadata_raw: String::from_utf8_lossy(&event.metadata),
                link_metadata_raw: link
                    .map_or(Cow::Borrowed(""), |l| String::from_utf8_lossy(&l.metadata)),
            };
            batch.push(&input).map_err(|e| e.to_string())?;
            keys.push(*key);
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let outcome = engine.process_batch(batch).map_err(|e| e.to_string())?;
        if self.definition.partitioned {
            self.partition_count = engine.partition_count().map_err(|e| e.to_string())?;
        }
        if !outcome.emits.is_empty() && !self.config.emit_enabled {
            return Err(EMIT_NOT_ALLOWED.to_owned());
        }
        for (index, emitted) in outcome.emits {
            let key = keys.get(index).copied().unwrap_or_default();
            for (n, emitted) in emitted.into_iter().enumerate() {
                let event = ProposedEvent {
                    id: emitted_event_id(&self.config, key, n),
                    event_type: emitted.event_type,
                    is_json: emitted.is_json,
                    metadata: emitted.metadata.map(Bytes::from).unwrap_or_default(),
                    data: Bytes::from(emitted.body),
                };
                self.pending.push((emitted.stream, event));
            }
        }
        if outcome.handled > 0 {
            self.since_checkpoint += outcome.handled;
            self.changed_at.get_or_insert_with(Instant::now);
        }
        Ok(outcome.handled)
    }

    /// How long until a durable projection's unsaved changes are due for a checkpoint (zero: now); `None` when
    /// there is nothing to wait for (no change, emitted events pending, or nothing durable).
    fn checkpoint_due_in(&self) -> Option<Duration> {
        if !self.config.durable() || !self.pending.is_empty() || self.since_checkpoint == 0 {
            return None;
        }
        let changed_at = self.changed_at?;
        Some(CHECKPOINT_INTERVAL.saturating_sub(changed_at.elapsed()))
    }

    fn checkpoint_if_dirty(&mut self) {
        if self.config.durable() && (self.since_checkpoint > 0 || !self.pending.is_empty()) {
            self.write_checkpoint();
        } else if !self.config.durable() {
            // Nothing durable: emitted events still go out.
            self.flush_emitted();
            if let Some(engine) = &self.engine {
                let _ = engine.take_dirty();
                let _ = engine.take_new_partitions();
            }
            self.since_checkpoint = 0;
            self.changed_at = None;
        }
    }

    /// Writes the pending emitted events and the new partitions' `$partition` events, the changed results,
    /// then the checkpoint.
    fn write_checkpoint(&mut self) {
        if self.config.durable() && self.definition.partitioned {
            let partitions = match self.engine.as_ref().map(Projection::take_new_partitions) {
                Some(Ok(partitions)) => partitions,
                Some(Err(error)) => {
                    self.fault(error.to_string());
                    return;
                }
                None => Vec::new(),
            };
            let stream = self.config.partitions_stream();
            for partition in partitions {
                let id = Uuid::new_v5(
                    &EMIT_NAMESPACE,
                    format!(
                        "{}/{}/partition/{partition}",
                        self.config.name, self.config.epoch
                    )
                    .as_bytes(),
                );
                let event = ProposedEvent {
                    id,
                    event_type: PARTITION_EVENT_TYPE.to_owned(),
                    is_json: false,
                    metadata: Bytes::new(),
                    data: Bytes::from(partition),
                };
                self.pending.push((stream.clone(), event));
            }
        }
        if !self.flush_emitted() {
            return;
        }
        let Some(engine) = &self.engine else {
            return;
        };
        let dirty = match engine.take_dirty() {
            Ok(dirty) => dirty,
            Err(error) => {
                self.fault(error.to_string());
                return;
            }
        };
        if !self.config.durable() {
            return;
        }
        if self.definition.output_state {
            let mut results = Vec::new();
            for partition in &dirty {
                if let Ok(Some(result)) = engine.result(partition) {
                    results.push((self.result_stream(partition), result));
                }
            }
            // Many partitions' results at once: the writer commits them together.
            for chunk in results.chunks(1_000) {
                let appends = chunk.iter().map(|(stream, result)| {
                    let event = json_event(RESULT_EVENT_TYPE, result.clone().into_bytes());
                    self.store
                        .append(stream.clone(), ExpectedRevision::Any, vec![event])
                });
                let written = self.runtime.block_on(futures::future::join_all(appends));
                if let Some(Err(error)) = written.into_iter().find(Result::is_err) {
                    self.fault(format!("cannot write the result: {error}"));
                    return;
                }
            }
        }
        let (states, shared) = match engine.snapshot() {
            Ok(snapshot) => snapshot,
            Err(error) => {
                self.fault(error.to_string());
                return;
            }
        };
        let cursor = match serde_json::to_string(&self.cursor) {
            Ok(cursor) => cursor,
            Err(error) => {
                self.fault(error.to_string());
                return;
            }
        };
        // Written by hand: the states are already JSON, and re-parsing 100,000 of them would cost more than
        // the projection spent on the events.
        let data = format!(
            "{{\"epoch\":{},\"cursor\":{cursor},\"states\":{states},\"shared\":{},\"completed\":{}}}",
            self.config.epoch,
            shared.as_deref().unwrap_or("null"),
            self.completed
        );
        let event = json_event(CHECKPOINT_EVENT_TYPE, data.into_bytes());
        if let Err(error) = self.append(self.config.checkpoint_stream(), vec![event]) {
            self.fault(format!("cannot write the checkpoint: {error}"));
            return;
        }
        self.since_checkpoint = 0;
        self.changed_at = None;
        self.publish_position(true);
    }

    fn result_stream(&self, partition: &str) -> String {
        if let Some(stream) = &self.definition.result_stream {
            return stream.clone();
        }
        if let Some(stream) = self
            .definition
            .options
            .get("resultStreamName")
            .and_then(|v| v.as_str())
        {
            return stream.to_owned();
        }
        if partition.is_empty() {
            format!("$projections-{}-result", self.config.name)
        } else {
            format!("$projections-{}-{partition}-result", self.config.name)
        }
    }

    /// Writes the emitted events, stream by stream in order of first appearance; false when it faulted.
    fn flush_emitted(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut order: Vec<String> = Vec::new();
        let mut by_stream: HashMap<String, Vec<ProposedEvent>> = HashMap::new();
        for (stream, event) in pending {
            if !by_stream.contains_key(&stream) {
                order.push(stream.clone());
            }
            by_stream.entry(stream).or_default().push(event);
        }
        for stream in order {
            let mut events = by_stream.remove(&stream).unwrap_or_default();
            let already = self.already_written(&stream);
            events.retain(|e| !already.contains(&e.id));
            if events.is_empty() {
                continue;
            }
            if self.config.track_emitted_streams
                && !self.tracked.contains(&stream)
                && stream != self.config.partitions_stream()
            {
                let event = ProposedEvent {
                    id: Uuid::new_v5(
                        &EMIT_NAMESPACE,
                        format!("{}/tracked/{stream}", self.config.name).as_bytes(),
                    ),
                    event_type: STREAM_TRACKED_EVENT_TYPE.to_owned(),
                    is_json: false,
                    metadata: Bytes::new(),
                    data: Bytes::from(stream.clone()),
                };
                if let Err(error) = self.append(self.config.emitted_streams_stream(), vec![event]) {
                    self.fault(format!("cannot track the emitted stream {stream}: {error}"));
                    return false;
                }
                self.tracked.insert(stream.clone());
                self.stats.lock().emitted_streams = self.tracked.clone();
            }
            if let Err(error) = self.append(stream.clone(), events) {
                self.fault(format!("cannot write to {stream}: {error}"));
                return false;
            }
        }
        true
    }

    /// Ids at the tail of `stream`, read once per start (events written before a crash and processed again).
    fn already_written(&mut self, stream: &str) -> HashSet<Uuid> {
        if let Some(ids) = self.deduped.get(stream) {
            return ids.clone();
        }
        let mut ids = HashSet::new();
        if let Ok(StreamRead::Found { items, .. }) =
            self.store
                .read_stream(stream, StreamFrom::End, true, DEDUPE_TAIL, false)
        {
            ids.extend(items.iter().map(|i| i.record.id));
        }
        // Later writes in this run are deduplicated by the store's recent-ids cache; one check is enough.
        self.deduped.insert(stream.to_owned(), HashSet::new());
        ids
    }

    fn append(&self, stream: String, events: Vec<ProposedEvent>) -> Result<(), String> {
        self.runtime
            .block_on(self.store.append(stream, ExpectedRevision::Any, events))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn publish_position(&self, checkpointed: bool) {
        let position = self.cursor.describe();
        let progress = match &self.cursor {
            Cursor::All(p) => {
                let end = self.store.committed_end().max(1);
                ((*p as f64 / end as f64) * 100.0).min(100.0) as f32
            }
            Cursor::Streams(_) => 100.0,
        };
        let mut stats = self.stats.lock();
        if checkpointed {
            stats.last_checkpoint = position.clone();
        }
        stats.position = position;
        stats.progress = progress;
    }
}

/// What one read of the sources gave.
struct SourceRead {
    /// Events in source order, each with a unique key (its `$all` position).
    items: Vec<(u64, ResolvedItem)>,
    /// The cursor after them.
    next: Cursor,
    /// Whether more may follow at once.
    more: bool,
    /// Events held back by `reorderEvents`, due after this long.
    wait: Option<Duration>,
}

/// The id of the `index`-th event emitted while processing the event at `key`: the same on every run of the
/// same epoch, so that what a crash made the projection emit twice is recognised.
pub fn emitted_event_id(config: &ProjectionConfig, key: u64, index: usize) -> Uuid {
    Uuid::new_v5(
        &EMIT_NAMESPACE,
        format!("{}/{}/{key}/{index}", config.name, config.epoch).as_bytes(),
    )
}

fn json_event(event_type: &str, data: Vec<u8>) -> ProposedEvent {
    ProposedEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        is_json: true,
        metadata: Bytes::new(),
        data: Bytes::from(data),
    }
}

/// Whether `record` soft-deletes a stream: a `$metadata` event in its `$$` metastream whose `$tb` is the end.
fn soft_deletes(record: &crate::storage::StoredEvent) -> bool {
    record.stream.starts_with("$$")
        && record.event_type == "$metadata"
        && crate::storage::StreamMetadata::parse(&record.data).is_soft_deleted()
}
