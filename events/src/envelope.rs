//! The envelope every event travels in: EventStoreDB's `$correlationId` / `$causationId` metadata plus the
//! event's schema version and when it happened; and `DomainEvent`, which maps an enum of events to
//! (event type, JSON) and back.
//!
//! Schema evolution: payload changes are additive (new fields carry `#[serde(default)]`), so every version ever
//! written still decodes; a breaking change gets a new event type. `eventVersion` records which shape was written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Metadata stored with every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The HTTP request or scheme message that started the chain of events.
    #[serde(rename = "$correlationId")]
    pub correlation_id: Uuid,
    /// The event (or request) that directly caused this one.
    #[serde(rename = "$causationId")]
    pub causation_id: Uuid,
    #[serde(rename = "eventVersion", default = "first_version")]
    pub event_version: u16,
    #[serde(rename = "occurredAt")]
    pub occurred_at: DateTime<Utc>,
    /// Who acted (an operator, a service), when it matters.
    #[serde(rename = "actor", default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

fn first_version() -> u16 {
    1
}

impl EventMetadata {
    /// The first event of a chain: correlation and causation are the request's id.
    pub fn for_request(request_id: Uuid) -> Self {
        Self {
            correlation_id: request_id,
            causation_id: request_id,
            event_version: 1,
            occurred_at: Utc::now(),
            actor: None,
        }
    }

    /// Metadata for an event caused by the event `cause_id`, which carried `self`.
    pub fn caused_by(&self, cause_id: Uuid) -> Self {
        Self {
            correlation_id: self.correlation_id,
            causation_id: cause_id,
            event_version: 1,
            occurred_at: Utc::now(),
            actor: None,
        }
    }

    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    #[error("event '{event_type}' has an unreadable body: {source}")]
    Json {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// An enum of the events one stream (or process) holds. It serialises as its body (the payload alone, as
/// [`DomainEvent::to_json`] writes it), so a writer can encode it straight into the store's event.
pub trait DomainEvent: Sized + serde::Serialize {
    /// Every event type the enum knows.
    const EVENT_TYPES: &'static [&'static str];

    /// The type stored in EventStoreDB: the event's name, in the past tense.
    fn event_type(&self) -> &'static str;

    /// The JSON body.
    fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an event back from its type and body.
    fn decode(event_type: &str, data: &[u8]) -> Result<Self, DecodeError>;
}

/// Declares an enum of events, one variant per payload struct of the same name, with its `DomainEvent` impl.
#[macro_export]
macro_rules! domain_events {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant($variant)),*
        }

        impl $crate::__serde::Serialize for $name {
            fn serialize<S: $crate::__serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Self::$variant(event) => $crate::__serde::Serialize::serialize(event, serializer)),*
                }
            }
        }

        impl $crate::envelope::DomainEvent for $name {
            const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),*];

            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),*
                }
            }

            fn decode(event_type: &str, data: &[u8]) -> Result<Self, $crate::envelope::DecodeError> {
                match event_type {
                    $(stringify!($variant) => $crate::__serde_json::from_slice(data).map(Self::$variant).map_err(|source| {
                        $crate::envelope::DecodeError::Json { event_type: event_type.to_owned(), source }
                    }),)*
                    other => Err($crate::envelope::DecodeError::UnknownType(other.to_owned())),
                }
            }
        }

        $(impl From<$variant> for $name {
            fn from(event: $variant) -> Self {
                Self::$variant(event)
            }
        })*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_uses_eventstoredb_keys_and_chains_causation() {
        let request = Uuid::new_v4();
        let first = EventMetadata::for_request(request);
        let json = serde_json::to_value(&first).expect("serialises");
        assert_eq!(json["$correlationId"], request.to_string());
        assert_eq!(json["$causationId"], request.to_string());
        let cause = Uuid::new_v4();
        let next = first.caused_by(cause);
        assert_eq!(next.correlation_id, request);
        assert_eq!(next.causation_id, cause);
        let old: EventMetadata = serde_json::from_str(&format!(
            r#"{{"$correlationId":"{request}","$causationId":"{request}","occurredAt":"2026-01-01T00:00:00Z"}}"#
        ))
        .expect("metadata without a version reads as version 1");
        assert_eq!(old.event_version, 1);
    }
}
