//! The bank's published language, shared by every service: event types, stream names, identifiers, money and
//! the metadata envelope. No IO, no async, no knowledge of EventStoreDB's client or of HTTP.
//!
//! - [`money`]: `Money` in pence.
//! - [`ids`]: `SortCode`, `AccountNumber`, `AccountId`, payment and transfer ids, deterministic event ids.
//! - [`streams`]: every stream name and category.
//! - [`envelope`]: `EventMetadata` (`$correlationId`, `$causationId`, schema version) and the `DomainEvent` trait.
//! - [`bacs`]: Bacs field rules and ARUCS-style return reason codes.
//! - [`accounts`], [`payments`], [`sanctions`], [`transfers`]: the events, grouped by the stream that holds them.

pub mod accounts;
pub mod bacs;
pub mod envelope;
pub mod ids;
pub mod money;
pub mod payments;
pub mod sanctions;
pub mod streams;
pub mod transfers;

pub use envelope::{DecodeError, DomainEvent, EventMetadata};

pub use ids::{AccountId, AccountNumber, IdError, PaymentId, SortCode, TransferId};
pub use money::Money;
/// Used by `domain_events!`, so crates using the macro need no serde_json dependency of their own.
#[doc(hidden)]
pub use serde as __serde;
pub use serde_json as __serde_json;
