//! The projections subsystem: the registry of user projections, their stored definitions, and the operations the
//! Projections service exposes. Each projection runs on its own thread (`runner`).
//!
//! Storage follows EventStoreDB's conventions: `$ProjectionCreated` / `$ProjectionDeleted` (data: the name) in
//! `$projections-$all` list the projections; each definition change is a `$ProjectionUpdated` event (the JSON of
//! [`ProjectionConfig`]) in `$projections-<name>`, whose event number is the projection's version (create 0,
//! first update 1); progress is in `$projections-<name>-checkpoint`, results in `$projections-<name>-result`.
//! Continuous and one-time projections are durable: they are loaded on start and resume from their checkpoint (a
//! completed one-time projection stays Completed, with its state). Transient projections are not stored, as in
//! EventStoreDB: a restart forgets them.
//!
//! The version follows EventStoreDB's rule: every change written to the definition stream bumps it — update,
//! enable (unless the projection is already running), disable, abort, reset — and a reset sets the epoch to the
//! new version.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex as SyncMutex;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::runner::{self, Command, Mode, ProjectionConfig, Stats};
use crate::storage::{ExpectedRevision, ProposedEvent, Store, StreamFrom, StreamRead};

pub const REGISTRY_STREAM: &str = "$projections-$all";
pub const CREATED_EVENT_TYPE: &str = "$ProjectionCreated";
pub const DELETED_EVENT_TYPE: &str = "$ProjectionDeleted";
pub const UPDATED_EVENT_TYPE: &str = "$ProjectionUpdated";

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("Projection '{0}' not found")]
    NotFound(String),
    /// What EventStoreDB answers to a second create under a name in use.
    #[error("Envelope callback expected Updated, received Conflict instead")]
    Conflict,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

/// Which projections Statistics reports.
#[derive(Debug, Clone)]
pub enum Selection {
    Name(String),
    All,
    Mode(Mode),
}

/// One projection's statistics.
#[derive(Debug, Clone)]
pub struct Details {
    pub name: String,
    pub mode: Mode,
    pub version: i64,
    pub epoch: i64,
    pub stats: Stats,
}

struct Handle {
    config: ProjectionConfig,
    version: i64,
    stats: Arc<SyncMutex<Stats>>,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct Subsystem {
    store: Store,
    runtime: tokio::runtime::Handle,
    projections: Mutex<BTreeMap<String, Handle>>,
}

impl Subsystem {
    /// Loads every stored projection and starts it from its checkpoint.
    pub async fn start(store: Store) -> Result<Self, ProjectionError> {
        let subsystem = Self {
            store,
            runtime: tokio::runtime::Handle::current(),
            projections: Mutex::new(BTreeMap::new()),
        };
        subsystem.load().await?;
        Ok(subsystem)
    }

    async fn load(&self) -> Result<(), ProjectionError> {
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || load_definitions(&store))
            .await
            .map_err(|e| ProjectionError::Failed(e.to_string()))??;
        let mut projections = self.projections.lock().await;
        for (config, version) in stored {
            let name = config.name.clone();
            match self.spawn(config, version) {
                Ok(handle) => {
                    projections.insert(name, handle);
                }
                Err(error) => {
                    tracing::error!(projection = %name, %error, "cannot start a projection")
                }
            }
        }
        Ok(())
    }

    fn spawn(&self, config: ProjectionConfig, version: i64) -> Result<Handle, ProjectionError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(SyncMutex::new(Stats {
            status: "Stopped".to_owned(),
            ..Stats::default()
        }));
        let thread = runner::spawn(
            config.clone(),
            self.store.clone(),
            self.runtime.clone(),
            stats.clone(),
            receiver,
        )
        .map_err(|e| ProjectionError::Failed(format!("cannot start the projection: {e}")))?;
        Ok(Handle {
            config,
            version,
            stats,
            commands,
            thread: Some(thread),
        })
    }

    /// Appends a `$ProjectionUpdated` with the config; returns its event number (the new version).
    async fn persist(&self, config: &ProjectionConfig) -> Result<i64, ProjectionError> {
        let data =
            serde_json::to_vec(config).map_err(|e| ProjectionError::Failed(e.to_string()))?;
        let written = self
            .store
            .append(
                config.definition_stream(),
                ExpectedRevision::Any,
                vec![event(UPDATED_EVENT_TYPE, true, data)],
            )
            .await
            .map_err(|e| ProjectionError::Failed(format!("cannot store the projection: {e}")))?;
        Ok(written
            .current_revision
            .map_or(0, |r| i64::try_from(r).unwrap_or(i64::MAX)))
    }

    async fn register(&self, event_type: &str, name: &str) -> Result<(), ProjectionError> {
        self.store
            .append(
                REGISTRY_STREAM.to_owned(),
                ExpectedRevision::Any,
                vec![event(event_type, false, name.as_bytes().to_vec())],
            )
            .await
            .map(|_| ())
            .map_err(|e| ProjectionError::Failed(format!("cannot store the projection: {e}")))
    }

    /// Creates a projection; one-time projections get a generated name. Returns the name.
    pub async fn create(
        &self,
        mode: Mode,
        name: Option<String>,
        query: String,
        emit_enabled: bool,
        track_emitted_streams: bool,
    ) -> Result<String, ProjectionError> {
        let name = match (mode, name) {
            (Mode::OneTime, _) => Uuid::new_v4().hyphenated().to_string(),
            (_, Some(name)) if !name.is_empty() => name,
            _ => return Err(ProjectionError::Invalid("Name is required".to_owned())),
        };
        let mut projections = self.projections.lock().await;
        if projections.contains_key(&name) {
            return Err(ProjectionError::Conflict);
        }
        let config = ProjectionConfig {
            name: name.clone(),
            query,
            mode,
            enabled: true,
            emit_enabled,
            track_emitted_streams,
            epoch: 0,
        };
        let version = if config.durable() {
            self.register(CREATED_EVENT_TYPE, &name).await?;
            self.persist(&config).await?
        } else {
            0
        };
        let handle = self.spawn(config, version)?;
        projections.insert(name.clone(), handle);
        Ok(name)
    }

    /// Changes the query (and the emit option when given); the projection carries on from its checkpoint.
    pub async fn update(
        &self,
        name: &str,
        query: String,
        emit_enabled: Option<bool>,
    ) -> Result<(), ProjectionError> {
        let mut projections = self.projections.lock().await;
        let handle = projections.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut config = handle.config.clone();
        config.query = query;
        if let Some(emit) = emit_enabled {
            config.emit_enabled = emit;
        }
        self.apply(handle, config, Command::Update).await
    }

    /// Stores a changed config (when durable), then hands it to the runner with `command`.
    async fn apply(
        &self,
        handle: &mut Handle,
        config: ProjectionConfig,
        command: impl FnOnce(ProjectionConfig, oneshot::Sender<()>) -> Command,
    ) -> Result<(), ProjectionError> {
        handle.version = self.write_definition(handle.version, &config).await?;
        handle.config = config.clone();
        ask(
            &handle.commands,
            |reply| command(config, reply),
            &handle.config.name,
        )
        .await
    }

    /// Stores `config` (a durable projection's) and returns the new version: the event number of the new
    /// definition; a transient projection's version goes up by one all the same.
    async fn write_definition(
        &self,
        version: i64,
        config: &ProjectionConfig,
    ) -> Result<i64, ProjectionError> {
        if config.durable() {
            self.persist(config).await
        } else {
            Ok(version + 1)
        }
    }

    pub async fn enable(&self, name: &str) -> Result<(), ProjectionError> {
        self.set_enabled(name, true, Command::Enable).await
    }

    /// Disables a projection: with `write_checkpoint` it stops (status Stopped) after checkpointing, without it
    /// aborts (status Aborted) and loses what followed the last checkpoint.
    pub async fn disable(&self, name: &str, write_checkpoint: bool) -> Result<(), ProjectionError> {
        self.set_enabled(name, false, |reply| Command::Disable {
            write_checkpoint,
            reply,
        })
        .await
    }

    async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        command: impl FnOnce(oneshot::Sender<()>) -> Command,
    ) -> Result<(), ProjectionError> {
        let mut projections = self.projections.lock().await;
        let handle = projections.get_mut(name).ok_or_else(|| not_found(name))?;
        // EventStoreDB answers an enable of a running projection without writing anything; every other enable,
        // and every disable or abort, writes the definition (and so bumps the version).
        let running = handle.stats.lock().status == "Running";
        if !(enabled && handle.config.enabled && running) {
            let mut config = handle.config.clone();
            config.enabled = enabled;
            handle.version = self.write_definition(handle.version, &config).await?;
            handle.config = config;
        }
        ask(&handle.commands, command, name).await
    }

    /// Starts the projection again from the beginning, with a new epoch: the version the reset is written
    /// under, as EventStoreDB numbers it.
    pub async fn reset(&self, name: &str) -> Result<(), ProjectionError> {
        let mut projections = self.projections.lock().await;
        let handle = projections.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut config = handle.config.clone();
        config.epoch = handle.version + 1;
        self.apply(handle, config, Command::Reset).await
    }

    /// Deletes a projection (running or not) and, as asked, its checkpoint, state/result and emitted streams.
    pub async fn delete(
        &self,
        name: &str,
        delete_emitted_streams: bool,
        delete_state_stream: bool,
        delete_checkpoint_stream: bool,
    ) -> Result<(), ProjectionError> {
        let mut handle = {
            let mut projections = self.projections.lock().await;
            projections.remove(name).ok_or_else(|| not_found(name))?
        };
        let emitted = handle.stats.lock().emitted_streams.clone();
        stop(&mut handle).await;
        if !handle.config.durable() {
            return Ok(());
        }
        self.register(DELETED_EVENT_TYPE, name).await?;
        let mut owned = vec![handle.config.definition_stream()];
        if delete_checkpoint_stream {
            owned.push(handle.config.checkpoint_stream());
        }
        if delete_state_stream {
            owned.push(format!("$projections-{name}-result"));
        }
        if delete_checkpoint_stream {
            owned.push(handle.config.partitions_stream());
        }
        if delete_emitted_streams {
            owned.extend(emitted);
            owned.push(handle.config.emitted_streams_stream());
        }
        for stream in owned {
            let _ = self
                .store
                .delete(stream, ExpectedRevision::Any, false)
                .await;
        }
        Ok(())
    }

    pub async fn statistics(&self, selection: Selection) -> Result<Vec<Details>, ProjectionError> {
        let projections = self.projections.lock().await;
        let details = |handle: &Handle| Details {
            name: handle.config.name.clone(),
            mode: handle.config.mode,
            version: handle.version,
            epoch: handle.config.epoch,
            stats: handle.stats.lock().clone(),
        };
        match selection {
            Selection::Name(name) => projections
                .get(&name)
                .map(|h| vec![details(h)])
                .ok_or_else(|| not_found(&name)),
            Selection::All => Ok(projections.values().map(details).collect()),
            Selection::Mode(mode) => Ok(projections
                .values()
                .filter(|h| h.config.mode == mode)
                .map(details)
                .collect()),
        }
    }

    /// A partition's state as JSON (`None`: no state yet).
    pub async fn state(
        &self,
        name: &str,
        partition: &str,
    ) -> Result<Option<String>, ProjectionError> {
        self.query(name, |reply| Command::State {
            partition: partition.to_owned(),
            reply,
        })
        .await
    }

    /// A partition's result (its state through `transformBy` / `filterBy`) as JSON.
    pub async fn result(
        &self,
        name: &str,
        partition: &str,
    ) -> Result<Option<String>, ProjectionError> {
        self.query(name, |reply| Command::Result {
            partition: partition.to_owned(),
            reply,
        })
        .await
    }

    async fn query(
        &self,
        name: &str,
        command: impl FnOnce(oneshot::Sender<Option<String>>) -> Command,
    ) -> Result<Option<String>, ProjectionError> {
        let commands = {
            let projections = self.projections.lock().await;
            projections
                .get(name)
                .ok_or_else(|| not_found(name))?
                .commands
                .clone()
        };
        let (reply, answer) = oneshot::channel();
        commands.send(command(reply)).map_err(|_| not_found(name))?;
        answer.await.map_err(|_| not_found(name))
    }

    /// Stops every projection (checkpointing) and starts the stored ones again.
    pub async fn restart(&self) -> Result<(), ProjectionError> {
        self.shutdown().await;
        self.load().await
    }

    /// Stops every projection, checkpointing what is done.
    pub async fn shutdown(&self) {
        let mut projections = self.projections.lock().await;
        for (_, mut handle) in std::mem::take(&mut *projections) {
            stop(&mut handle).await;
        }
    }

    /// Ends every projection's thread without writing anything, as a dying process would.
    pub async fn halt(&self) {
        let mut projections = self.projections.lock().await;
        for (_, mut handle) in std::mem::take(&mut *projections) {
            let (reply, done) = oneshot::channel();
            if handle.commands.send(Command::Halt(reply)).is_ok() {
                let _ = done.await;
            }
            if let Some(thread) = handle.thread.take() {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
    }
}

async fn ask(
    commands: &mpsc::UnboundedSender<Command>,
    command: impl FnOnce(oneshot::Sender<()>) -> Command,
    name: &str,
) -> Result<(), ProjectionError> {
    let (reply, done) = oneshot::channel();
    commands
        .send(command(reply))
        .map_err(|_| ProjectionError::Failed(format!("projection '{name}' is not running")))?;
    done.await
        .map_err(|_| ProjectionError::Failed(format!("projection '{name}' is not running")))
}

async fn stop(handle: &mut Handle) {
    let (reply, done) = oneshot::channel();
    if handle.commands.send(Command::Stop(reply)).is_ok() {
        let _ = done.await;
    }
    if let Some(thread) = handle.thread.take() {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn not_found(name: &str) -> ProjectionError {
    ProjectionError::NotFound(name.to_owned())
}

fn event(event_type: &str, is_json: bool, data: Vec<u8>) -> ProposedEvent {
    ProposedEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        is_json,
        metadata: Bytes::new(),
        data: Bytes::from(data),
    }
}

/// The stored projections with their versions, in creation order.
fn load_definitions(store: &Store) -> Result<Vec<(ProjectionConfig, i64)>, ProjectionError> {
    let failed = |e: crate::storage::ReadError| ProjectionError::Failed(e.to_string());
    let mut names: Vec<String> = Vec::new();
    let mut from = 0;
    loop {
        let read = store
            .read_stream(
                REGISTRY_STREAM,
                StreamFrom::Revision(from),
                false,
                1000,
                false,
            )
            .map_err(failed)?;
        let StreamRead::Found { items, .. } = read else {
            break;
        };
        if items.is_empty() {
            break;
        }
        for item in items {
            from = item.record.revision + 1;
            let name = String::from_utf8_lossy(&item.record.data).into_owned();
            match item.record.event_type.as_str() {
                CREATED_EVENT_TYPE if !names.contains(&name) => names.push(name),
                DELETED_EVENT_TYPE => names.retain(|n| n != &name),
                _ => {}
            }
        }
    }
    let mut stored = Vec::new();
    for name in names {
        let read = store
            .read_stream(
                &format!("$projections-{name}"),
                StreamFrom::End,
                true,
                1,
                false,
            )
            .map_err(failed)?;
        let StreamRead::Found { items, .. } = read else {
            continue;
        };
        let Some(item) = items.first() else {
            continue;
        };
        match serde_json::from_slice::<ProjectionConfig>(&item.record.data) {
            Ok(config) => stored.push((
                config,
                i64::try_from(item.record.revision).unwrap_or(i64::MAX),
            )),
            Err(error) => {
                tracing::error!(projection = %name, %error, "unreadable projection definition")
            }
        }
    }
    Ok(stored)
}
