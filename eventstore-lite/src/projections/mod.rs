//! JavaScript projections (issue 6): the engine that runs EventStoreDB's projection language, the runner that
//! feeds it a projection's sources on its own thread, and the subsystem behind the Projections gRPC service.
//!
//! - [`engine`]: one compiled projection (QuickJS through rquickjs) with its state, limits and emitted events.
//! - [`runner`]: one projection's thread: reads, processes, writes emitted events, results and checkpoints.
//! - [`subsystem`]: the registry of projections, their stored definitions, the service's operations.

pub mod engine;
pub mod runner;
pub mod subsystem;
