//! eventstore-lite: a single-node event store that speaks EventStoreDB's gRPC protocol.
//!
//! - [`storage`]: the durable log and its redb index (bytes, records and stream rules; no gRPC).
//! - [`config`]: `ServerConfig` and the command line.
//! - `grpc`: the generated protocol types and the gRPC services.
//! - `http`: `/health/live`, `/info`, `/stats`, `/metrics`.
//! - `persistent`: persistent subscription groups (competing consumers).
//! - `offload`: whether a store read runs on the async worker or in the blocking pool.
//! - [`projections`]: the JavaScript projection engine.
//! - `auth`: Basic authentication and stream ACLs; `users`: user accounts stored in `$user-…` streams.
//! - `server`: listener, TLS, routing, graceful shutdown.
//! - [`bench`]: the load tool behind `eventstore-lite bench`.

mod auth;
pub mod bench;
pub mod config;
mod grpc;
mod http;
mod offload;
mod pace;
mod persistent;
pub mod projections;
mod server;
pub mod storage;
mod users;

pub use config::{Cli, ServerConfig, StorageLocation};
pub use server::{start, RunningServer};
