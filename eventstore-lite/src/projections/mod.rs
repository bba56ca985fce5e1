//! JavaScript projections: the engine that runs EventStoreDB's projection language (issue 6). The Projections
//! gRPC service, their durable progress and the bank's projections build on it.
//!
//! - [`engine`]: one compiled projection (QuickJS through rquickjs) with its state, limits and emitted events.

pub mod engine;
