//! The bank's plumbing on the official `eventstore` client; the domain services build on it and never talk to
//! the client's lower layers themselves. Depends on `events` only, of the workspace.
//!
//! - `store`: [`EventStore`] — connect with retry, typed append and read of [`events::DomainEvent`]s with their
//!   [`events::EventMetadata`]; [`StoreError`]. Opt-in stream ownership ([`EventStore::with_owner_role`]): the
//!   streams a service creates get an `$acl` that lets only its role write them. Appends go through one
//!   BatchAppend session per connection (`appender`), falling back to `Append` calls.
//! - `repository`: [`Repository`] of an [`Aggregate`] — fold a stream (from a snapshot), save with the expected
//!   revision, [`Repository::execute`] a decision with retries on conflict, snapshots in `snapshot-<stream>`.
//! - `worker`: [`Worker`] — one competing consumer of a persistent subscription group; handler → ack, transient
//!   error → nack retry, poison → nack park; reconnects with back-off.
//! - `group`: [`ensure_group`] creates a persistent subscription group with [`GroupSettings`] unless it exists.
//! - `projector`: [`Projector`] — a catch-up subscription applying events to a read model, storing the model's
//!   changes and its checkpoint in one transaction.
//! - `read_model`: [`ReadModel`] (what a service implements), [`ReadModelStore`] (redb, on disk or in memory),
//!   [`Checkpoint`].
//! - [`http`]: router scaffolding (health, `/metrics`, OpenAPI and docs page, correlation ids, JSON errors) and
//!   `serve` with graceful shutdown.
//! - `metrics`: [`Metrics`], a tiny Prometheus counter registry.
//! - `config`: clap arguments shared by the services ([`EventStoreArgs`], [`HttpArgs`]).
//! - `shutdown`: [`Shutdown`] (token + task tracker) and [`shutdown_signal`] (Ctrl-C / SIGTERM).
//! - `telemetry`: [`init_telemetry`], for binaries only.

mod appender;
mod config;
mod group;
pub mod http;
mod metrics;
mod projector;
mod read_model;
mod repository;
mod shutdown;
mod store;
mod stream_locks;
mod telemetry;
mod worker;

pub use config::{EventStoreArgs, HttpArgs};
pub use group::{ensure_group, GroupCreated, GroupSettings, SubscriptionSource};
pub use metrics::{Counter, Metrics};
pub use projector::{
    Projector, ProjectorError, ProjectorOptions, ProjectorProgress, ProjectorSource,
};
pub use read_model::{ApplyError, Checkpoint, ReadModel, ReadModelStore};
pub use repository::{
    snapshot_stream, Aggregate, CommandContext, ExecuteError, Executed, Loaded, Repository,
    SNAPSHOT_EVENT_TYPE,
};
pub use shutdown::{signal as shutdown_signal, Shutdown};
pub use store::{
    ActualRevision, Appended, ConnectError, EventReader, EventStore, NewEvent, StoreError,
    StoredEvent, UndecodableEvent,
};
pub use telemetry::init as init_telemetry;
pub use worker::{Delivery, Handler, HandlerError, Worker, WorkerCounters, WorkerOptions};

/// The official client, re-exported so every crate uses the same version of its types (`ExpectedRevision`,
/// `SubscriptionFilter`, `Position`…).
pub use eventstore;
/// The read models' storage engine, re-exported for the same reason (tables, transactions).
pub use redb;
/// Cancellation for [`Worker::run`], [`Projector::run`] and services' `run`.
pub use tokio_util::sync::CancellationToken;
