//! Persistent subscriptions (competing consumers): the registry of groups, their stored configuration, and the
//! operations the PersistentSubscriptions service exposes. Each group runs as its own task (`group`).
//!
//! Storage follows EventStoreDB's conventions: every group's configuration in `$persistentSubscriptionConfig`,
//! checkpoints in `$persistentsubscription-<stream>::<group>-checkpoint`, parked messages as `$>` links in
//! `…-parked`. A restart reloads the groups and resumes each from its checkpoint.

pub mod config;
pub mod group;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use crate::storage::{ExpectedRevision, ProposedEvent, Store, StreamFrom, StreamRead};
use config::{GroupConfig, Settings, StoredConfig, CONFIG_EVENT_TYPE, CONFIG_STREAM};
use group::{
    Command, ConnectError, ConsumerId, ConsumerInfo, Delivery, DropReason, Group, GroupInfo,
    NackAction,
};

#[derive(Debug, thiserror::Error)]
pub enum PersistentError {
    #[error("Subscription group {group} on stream {stream} exists.")]
    AlreadyExists { stream: String, group: String },
    #[error("Subscription group '{group}' on stream '{stream}' does not exist.")]
    NotFound { stream: String, group: String },
    #[error("Maximum subscriptions reached.")]
    MaximumSubscribersReached,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    config: GroupConfig,
}

/// The persistent subscription subsystem.
pub struct Subsystem {
    store: Store,
    /// Keyed by (stream or `$all`, group name).
    groups: Mutex<BTreeMap<(String, String), Handle>>,
    live_read_interval: Duration,
}

/// A connected consumer: its deliveries, and where its acks go.
pub struct Connection {
    pub consumer: ConsumerId,
    deliveries: Mutex<Option<mpsc::Receiver<Delivery>>>,
    pub commands: mpsc::UnboundedSender<Command>,
    pub resolve_link_tos: bool,
}

impl Subsystem {
    /// Loads every stored group and starts it. A live group reads at most once per `live_read_interval`
    /// (see `crate::pace`).
    pub async fn start(
        store: Store,
        live_read_interval: Duration,
    ) -> Result<Self, PersistentError> {
        let subsystem = Self {
            store,
            groups: Mutex::new(BTreeMap::new()),
            live_read_interval,
        };
        subsystem.load().await?;
        Ok(subsystem)
    }

    async fn load(&self) -> Result<(), PersistentError> {
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            store.read_stream(CONFIG_STREAM, StreamFrom::End, true, 1, false)
        })
        .await
        .map_err(|e| PersistentError::Failed(e.to_string()))?
        .map_err(|e| PersistentError::Failed(e.to_string()))?;
        let stored: StoredConfig = match read {
            StreamRead::Found { items, .. } => match items.first() {
                Some(item) => serde_json::from_slice(&item.record.data).map_err(|e| {
                    PersistentError::Failed(format!("unreadable {CONFIG_STREAM}: {e}"))
                })?,
                None => StoredConfig::default(),
            },
            StreamRead::NotFound => StoredConfig::default(),
        };
        let mut groups = self.groups.lock().await;
        for config in stored.entries {
            let key = (config.stream.clone(), config.group.clone());
            match self.spawn(config.clone(), false).await {
                Ok(commands) => {
                    groups.insert(key, Handle { commands, config });
                }
                Err(error) => {
                    tracing::error!(group = %config.id(), %error, "cannot start a persistent subscription")
                }
            }
        }
        Ok(())
    }

    async fn spawn(
        &self,
        config: GroupConfig,
        new_group: bool,
    ) -> Result<mpsc::UnboundedSender<Command>, String> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let group = Group::load(
            config,
            self.store.clone(),
            receiver,
            new_group,
            self.live_read_interval,
        )
        .await?;
        tokio::spawn(group.run());
        Ok(commands)
    }

    async fn persist(
        &self,
        groups: &BTreeMap<(String, String), Handle>,
    ) -> Result<(), PersistentError> {
        let stored = StoredConfig {
            version: "2".to_owned(),
            updated_by: "admin".to_owned(),
            entries: groups.values().map(|h| h.config.clone()).collect(),
        };
        let body =
            serde_json::to_vec(&stored).map_err(|e| PersistentError::Failed(e.to_string()))?;
        let event = ProposedEvent {
            id: Uuid::new_v4(),
            event_type: CONFIG_EVENT_TYPE.to_owned(),
            is_json: true,
            metadata: Bytes::new(),
            data: Bytes::from(body),
        };
        self.store
            .append(CONFIG_STREAM.to_owned(), ExpectedRevision::Any, vec![event])
            .await
            .map_err(|e| PersistentError::Failed(format!("cannot store the configuration: {e}")))?;
        Ok(())
    }

    pub async fn create(&self, config: GroupConfig) -> Result<(), PersistentError> {
        validate(&config.settings)?;
        if let Some(filter) = &config.filter {
            filter
                .compile()
                .map_err(|e| PersistentError::Invalid(format!("invalid filter: {e}")))?;
        }
        let mut groups = self.groups.lock().await;
        let key = (config.stream.clone(), config.group.clone());
        if groups.contains_key(&key) {
            return Err(PersistentError::AlreadyExists {
                stream: key.0,
                group: key.1,
            });
        }
        groups.insert(
            key.clone(),
            Handle {
                commands: mpsc::unbounded_channel().0,
                config: config.clone(),
            },
        );
        if let Err(error) = self.persist(&groups).await {
            groups.remove(&key);
            return Err(error);
        }
        match self.spawn(config, true).await {
            Ok(commands) => {
                if let Some(handle) = groups.get_mut(&key) {
                    handle.commands = commands;
                }
                Ok(())
            }
            Err(error) => {
                groups.remove(&key);
                let _ = self.persist(&groups).await;
                Err(PersistentError::Failed(error))
            }
        }
    }

    /// Changes a live group's settings (its consumers stay connected).
    pub async fn update(
        &self,
        stream: &str,
        group: &str,
        settings: Settings,
    ) -> Result<(), PersistentError> {
        validate(&settings)?;
        let mut groups = self.groups.lock().await;
        let key = (stream.to_owned(), group.to_owned());
        let handle = groups
            .get_mut(&key)
            .ok_or_else(|| not_found(stream, group))?;
        let previous = handle.config.settings.clone();
        handle.config.settings = settings.clone();
        if let Err(error) = self.persist(&groups).await {
            if let Some(handle) = groups.get_mut(&key) {
                handle.config.settings = previous;
            }
            return Err(error);
        }
        if let Some(handle) = groups.get(&key) {
            let (reply, done) = oneshot::channel();
            if handle
                .commands
                .send(Command::Update(settings, reply))
                .is_ok()
            {
                let _ = done.await;
            }
        }
        Ok(())
    }

    /// Deletes a group: its consumers are dropped and its configuration removed.
    pub async fn delete(&self, stream: &str, group: &str) -> Result<(), PersistentError> {
        let mut groups = self.groups.lock().await;
        let key = (stream.to_owned(), group.to_owned());
        let handle = groups
            .remove(&key)
            .ok_or_else(|| not_found(stream, group))?;
        stop(&handle, DropReason::Deleted).await;
        self.persist(&groups).await?;
        // Like EventStoreDB, a deleted group takes its checkpoint and parked messages with it, so a group created
        // again under the same name starts afresh.
        for owned in [
            handle.config.checkpoint_stream(),
            handle.config.parked_stream(),
        ] {
            let _ = self.store.delete(owned, ExpectedRevision::Any, false).await;
        }
        Ok(())
    }

    pub async fn connect(
        &self,
        stream: &str,
        group: &str,
        buffer_size: usize,
        info: ConsumerInfo,
    ) -> Result<Connection, PersistentError> {
        let groups = self.groups.lock().await;
        let handle = groups
            .get(&(stream.to_owned(), group.to_owned()))
            .ok_or_else(|| not_found(stream, group))?;
        let (deliveries_tx, deliveries) = mpsc::channel(buffer_size.max(1) + 1);
        let (reply, answer) = oneshot::channel();
        let command = Command::Connect {
            buffer_size,
            info,
            deliveries: deliveries_tx,
            reply,
        };
        handle
            .commands
            .send(command)
            .map_err(|_| PersistentError::Failed("the group is stopping".into()))?;
        let commands = handle.commands.clone();
        let resolve_link_tos = handle.config.settings.resolve_link_tos;
        drop(groups);
        match answer.await {
            Ok(Ok(consumer)) => Ok(Connection {
                consumer,
                deliveries: Mutex::new(Some(deliveries)),
                commands,
                resolve_link_tos,
            }),
            Ok(Err(ConnectError::MaximumSubscribersReached)) => {
                Err(PersistentError::MaximumSubscribersReached)
            }
            Err(_) => Err(PersistentError::Failed("the group stopped".into())),
        }
    }

    pub async fn info(&self, stream: &str, group: &str) -> Result<GroupInfo, PersistentError> {
        let commands = {
            let groups = self.groups.lock().await;
            let handle = groups
                .get(&(stream.to_owned(), group.to_owned()))
                .ok_or_else(|| not_found(stream, group))?;
            handle.commands.clone()
        };
        group_info(&commands)
            .await
            .ok_or_else(|| not_found(stream, group))
    }

    /// Every group, or those of one stream (`$all` included).
    pub async fn list(&self, stream: Option<&str>) -> Vec<GroupInfo> {
        let handles: Vec<_> = {
            let groups = self.groups.lock().await;
            groups
                .iter()
                .filter(|((s, _), _)| stream.is_none_or(|wanted| wanted == s))
                .map(|(_, h)| h.commands.clone())
                .collect()
        };
        let mut infos = Vec::with_capacity(handles.len());
        for commands in handles {
            if let Some(info) = group_info(&commands).await {
                infos.push(info);
            }
        }
        infos
    }

    pub async fn replay_parked(
        &self,
        stream: &str,
        group: &str,
        stop_at: Option<u64>,
    ) -> Result<(), PersistentError> {
        let commands = {
            let groups = self.groups.lock().await;
            let handle = groups
                .get(&(stream.to_owned(), group.to_owned()))
                .ok_or_else(|| not_found(stream, group))?;
            handle.commands.clone()
        };
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::ReplayParked { stop_at, reply })
            .map_err(|_| not_found(stream, group))?;
        answer
            .await
            .map_err(|_| not_found(stream, group))?
            .map_err(PersistentError::Failed)
    }

    /// Stops every group (dropping its consumers) and starts them again from the stored configuration.
    pub async fn restart(&self) -> Result<(), PersistentError> {
        {
            let mut groups = self.groups.lock().await;
            for (_, handle) in std::mem::take(&mut *groups) {
                stop(&handle, DropReason::Restarting).await;
            }
        }
        self.load().await
    }

    /// Stops every group, checkpointing what is done.
    pub async fn shutdown(&self) {
        let mut groups = self.groups.lock().await;
        for (_, handle) in std::mem::take(&mut *groups) {
            stop(&handle, DropReason::ShuttingDown).await;
        }
    }
}

async fn stop(handle: &Handle, reason: DropReason) {
    let (reply, done) = oneshot::channel();
    if handle.commands.send(Command::Stop(reason, reply)).is_ok() {
        let _ = done.await;
    }
}

async fn group_info(commands: &mpsc::UnboundedSender<Command>) -> Option<GroupInfo> {
    let (reply, answer) = oneshot::channel();
    commands.send(Command::Info(reply)).ok()?;
    answer.await.ok()
}

fn not_found(stream: &str, group: &str) -> PersistentError {
    PersistentError::NotFound {
        stream: stream.to_owned(),
        group: group.to_owned(),
    }
}

fn validate(settings: &Settings) -> Result<(), PersistentError> {
    if settings.read_batch_size >= settings.history_buffer_size {
        return Err(PersistentError::Failed(
            "Read batch size should be less than history buffer size.".to_owned(),
        ));
    }
    Ok(())
}

impl Connection {
    /// The consumer's deliveries; the first caller gets them, later callers a closed channel.
    pub async fn take_deliveries(&self) -> mpsc::Receiver<Delivery> {
        match self.deliveries.lock().await.take() {
            Some(receiver) => receiver,
            None => mpsc::channel(1).1,
        }
    }

    pub fn ack(&self, ids: Vec<Uuid>) {
        let _ = self.commands.send(Command::Ack(ids));
    }

    pub fn nack(&self, ids: Vec<Uuid>, action: NackAction, reason: String) {
        let _ = self.commands.send(Command::Nack {
            consumer: self.consumer,
            ids,
            action,
            reason,
        });
    }

    pub fn disconnect(&self) {
        let _ = self.commands.send(Command::Disconnect(self.consumer));
    }
}
