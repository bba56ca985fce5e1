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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::engine::{Definition, EventInput, Limits, Projection};
use crate::storage::{
    AllFrom, ExpectedRevision, ProposedEvent, ResolvedItem, Store, StreamFrom, StreamRead,
};

/// Events read per batch.
const BATCH: usize = 500;
/// Records looked at per `$all` read (system streams and links are skipped).
const MAX_SCAN: usize = 4096;
/// A checkpoint at least every this many events processed …
const CHECKPOINT_EVENTS: u64 = 10_000;
/// … or this long after something changed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// How far back the tail of an emitted stream is checked for events already written before a restart.
const DEDUPE_TAIL: usize = 4096;
/// Namespace of the ids of emitted events.
const EMIT_NAMESPACE: Uuid = Uuid::from_u128(0x7072_6f6a_2d65_6d69_7474_6564_2d69_6401);

pub const CHECKPOINT_EVENT_TYPE: &str = "$ProjectionCheckpoint";
pub const RESULT_EVENT_TYPE: &str = "Result";
pub const STREAM_TRACKED_EVENT_TYPE: &str = "$StreamTracked";
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
    fn durable(&self) -> bool {
        self.mode == Mode::Continuous
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

/// The JSON of a `$ProjectionCheckpoint` event.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    epoch: i64,
    cursor: Cursor,
    /// State of each partition (`""` when not partitioned).
    states: BTreeMap<String, serde_json::Value>,
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
                dirty: HashSet::new(),
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
    /// Partitions changed since the last checkpoint (their results are written with it).
    dirty: HashSet<String>,
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
            if matches!(step, Step::More) {
                continue;
            }
            // Idle: checkpoint what changed, then wait for a commit (when running) or a command.
            if self.run == Run::Running {
                self.checkpoint_if_dirty();
                if self.config.mode == Mode::OneTime {
                    self.set_run(Run::Completed, "");
                }
            }
            let running = self.run == Run::Running;
            let commands = &mut self.commands;
            let commits = &mut self.commits;
            let woke = self.runtime.block_on(async {
                tokio::select! {
                    command = commands.recv() => Some(command),
                    changed = commits.changed(), if running => {
                        if changed.is_err() { Some(None) } else { None }
                    }
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
                self.dirty.clear();
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
        self.dirty.clear();
        self.deduped.clear();
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
        self.cursor = self.initial_cursor();
        if from_checkpoint && self.config.durable() {
            match self.read_checkpoint() {
                Ok(Some(checkpoint)) if checkpoint.epoch == self.config.epoch => {
                    for (partition, state) in &checkpoint.states {
                        if let Err(error) = engine.restore(partition, &state.to_string()) {
                            self.fault(format!("cannot restore the checkpoint: {error}"));
                            return;
                        }
                    }
                    self.stats.lock().partitions_cached = checkpoint.states.len() as i32;
                    self.merge_cursor(checkpoint.cursor);
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
        let batch = match self.read_batch() {
            Ok(batch) => batch,
            Err(error) => {
                self.fault(format!("cannot read the projection's source: {error}"));
                return Step::CaughtUp;
            }
        };
        let (items, next, more) = batch;
        let started = Instant::now();
        for (key, item) in items {
            if let Err(reason) = self.process(key, &item) {
                self.fault(reason);
                return Step::CaughtUp;
            }
        }
        self.stats.lock().core_processing_ms += started.elapsed().as_millis() as i64;
        self.cursor = next;
        if !self.pending.is_empty() {
            // Emitted events are written before the checkpoint that covers their cause.
            self.write_checkpoint();
        } else if self.since_checkpoint >= CHECKPOINT_EVENTS
            || self
                .changed_at
                .is_some_and(|t| t.elapsed() >= CHECKPOINT_INTERVAL)
        {
            self.checkpoint_if_dirty();
        }
        self.publish_position(false);
        if more {
            Step::More
        } else {
            Step::CaughtUp
        }
    }

    /// The next events in source order, each with a unique key (its position), the cursor after them, and
    /// whether more may follow.
    #[allow(clippy::type_complexity)]
    fn read_batch(&self) -> Result<(Vec<(u64, ResolvedItem)>, Cursor, bool), String> {
        match &self.cursor {
            Cursor::All(position) => {
                let include_links = self.definition.includes_links();
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
                        !i.record.stream.starts_with('$')
                            && (include_links || i.record.event_type != "$>")
                    })
                    .map(|i| (i.record.position, i))
                    .collect();
                let next = read.next.max(*position);
                Ok((items, Cursor::All(next), !read.reached_end))
            }
            Cursor::Streams(streams) => {
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
                        last_key = last_key.max(key);
                        fetched.push((stream.clone(), key, item));
                    }
                    if full {
                        more = true;
                        cutoff = cutoff.min(last_key);
                    }
                }
                fetched.sort_by_key(|(_, key, _)| *key);
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
                Ok((items, Cursor::Streams(next), more))
            }
        }
    }

    fn process(&mut self, key: u64, item: &ResolvedItem) -> Result<(), String> {
        let (event, link) = match &item.target {
            Some(target) => (target, Some(&item.record)),
            None => (&item.record, None),
        };
        if !self.definition.handles(&event.event_type) {
            return Ok(());
        }
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        let input = EventInput {
            stream_id: event.stream.clone(),
            sequence_number: event.revision,
            event_type: event.event_type.clone(),
            event_id: event.id.hyphenated().to_string(),
            category: event
                .stream
                .split_once('-')
                .map_or(event.stream.as_str(), |(c, _)| c)
                .to_owned(),
            is_json: event.is_json,
            body_raw: String::from_utf8_lossy(&event.data).into_owned(),
            metadata_raw: String::from_utf8_lossy(&event.metadata).into_owned(),
            link_metadata_raw: link
                .map(|l| String::from_utf8_lossy(&l.metadata).into_owned())
                .unwrap_or_default(),
        };
        let processed = engine.process(&input).map_err(|e| e.to_string())?;
        if !processed.handled {
            return Ok(());
        }
        if !processed.emitted.is_empty() && !self.config.emit_enabled {
            return Err(EMIT_NOT_ALLOWED.to_owned());
        }
        for (index, emitted) in processed.emitted.into_iter().enumerate() {
            let id = Uuid::new_v5(
                &EMIT_NAMESPACE,
                format!("{}/{}/{key}/{index}", self.config.name, self.config.epoch).as_bytes(),
            );
            let event = ProposedEvent {
                id,
                event_type: emitted.event_type,
                is_json: emitted.is_json,
                metadata: emitted.metadata.map(Bytes::from).unwrap_or_default(),
                data: Bytes::from(emitted.body),
            };
            self.pending.push((emitted.stream, event));
        }
        self.dirty.insert(processed.partition);
        self.since_checkpoint += 1;
        self.changed_at.get_or_insert_with(Instant::now);
        self.stats.lock().events_processed += 1;
        Ok(())
    }

    fn checkpoint_if_dirty(&mut self) {
        if self.config.durable()
            && (self.since_checkpoint > 0 || !self.pending.is_empty() || !self.dirty.is_empty())
        {
            self.write_checkpoint();
        } else if !self.config.durable() {
            // Nothing durable: emitted events still go out.
            self.flush_emitted();
            self.dirty.clear();
            self.since_checkpoint = 0;
            self.changed_at = None;
        }
    }

    /// Writes the pending emitted events, the changed results, then the checkpoint.
    fn write_checkpoint(&mut self) {
        if !self.flush_emitted() {
            return;
        }
        if !self.config.durable() {
            self.dirty.clear();
            return;
        }
        let Some(engine) = &self.engine else {
            return;
        };
        if self.definition.output_state {
            let mut results = Vec::new();
            for partition in &self.dirty {
                if let Ok(Some(result)) = engine.result(partition) {
                    results.push((self.result_stream(partition), result));
                }
            }
            for (stream, result) in results {
                let event = json_event(RESULT_EVENT_TYPE, result.into_bytes());
                if let Err(error) = self.append(stream, vec![event]) {
                    self.fault(format!("cannot write the result: {error}"));
                    return;
                }
            }
        }
        let mut states = BTreeMap::new();
        let partitions = match engine.partitions() {
            Ok(p) => p,
            Err(error) => {
                self.fault(error.to_string());
                return;
            }
        };
        for partition in partitions {
            if let Ok(Some(state)) = engine.state(&partition) {
                let value = serde_json::from_str(&state).unwrap_or(serde_json::Value::Null);
                states.insert(partition, value);
            }
        }
        self.stats.lock().partitions_cached = i32::try_from(states.len()).unwrap_or(i32::MAX);
        let checkpoint = Checkpoint {
            epoch: self.config.epoch,
            cursor: self.cursor.clone(),
            states,
        };
        let data = match serde_json::to_vec(&checkpoint) {
            Ok(data) => data,
            Err(error) => {
                self.fault(error.to_string());
                return;
            }
        };
        let event = json_event(CHECKPOINT_EVENT_TYPE, data);
        if let Err(error) = self.append(self.config.checkpoint_stream(), vec![event]) {
            self.fault(format!("cannot write the checkpoint: {error}"));
            return;
        }
        self.dirty.clear();
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
            if self.config.track_emitted_streams && !self.tracked.contains(&stream) {
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

fn json_event(event_type: &str, data: Vec<u8>) -> ProposedEvent {
    ProposedEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        is_json: true,
        metadata: Bytes::new(),
        data: Bytes::from(data),
    }
}
