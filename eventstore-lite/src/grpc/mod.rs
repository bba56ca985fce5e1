//! The gRPC side: generated protocol types, conversions between them and the store's types, EventStoreDB's
//! error conventions (status codes, messages and `exception` metadata), and the services.

// tonic::Status is large; every handler returns it, as tonic requires.
#![allow(clippy::result_large_err)]

pub mod features;
pub mod persistent;
pub mod projections;
pub mod streams;
pub mod wire;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::auth::Principal;

/// Code generated from `proto/` by `build.rs`.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    dead_code,
    missing_docs,
    unreachable_pub
)]
pub mod proto {
    pub mod event_store {
        pub mod client {
            tonic::include_proto!("event_store.client");
            pub mod streams {
                tonic::include_proto!("event_store.client.streams");
            }
            pub mod persistent_subscriptions {
                tonic::include_proto!("event_store.client.persistent_subscriptions");
            }
            pub mod projections {
                tonic::include_proto!("event_store.client.projections");
            }
            pub mod server_features {
                tonic::include_proto!("event_store.client.server_features");
            }
            pub mod gossip {
                tonic::include_proto!("event_store.client.gossip");
            }
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
    pub use event_store::client::*;
}

use proto::uuid as proto_uuid;
use proto::{StreamIdentifier, Uuid as ProtoUuid};

/// Longest stream name accepted (bytes). EventStoreDB has no documented limit; this one keeps index keys sane.
pub const MAX_STREAM_NAME_LEN: usize = 4096;

/// How the client wants ids back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UuidFormat {
    Structured,
    String,
}

pub fn uuid_to_proto(id: Uuid, format: UuidFormat) -> ProtoUuid {
    let value = match format {
        UuidFormat::String => proto_uuid::Value::String(id.hyphenated().to_string()),
        UuidFormat::Structured => {
            let bits = id.as_u128();
            proto_uuid::Value::Structured(proto_uuid::Structured {
                most_significant_bits: (bits >> 64) as i64,
                least_significant_bits: bits as u64 as i64,
            })
        }
    };
    ProtoUuid { value: Some(value) }
}

pub fn uuid_from_proto(id: Option<ProtoUuid>) -> Result<Uuid, Status> {
    match id.and_then(|u| u.value) {
        Some(proto_uuid::Value::String(s)) => {
            Uuid::parse_str(&s).map_err(|_| invalid_argument(format!("'{s}' is not a valid UUID")))
        }
        Some(proto_uuid::Value::Structured(s)) => Ok(Uuid::from_u128(
            ((s.most_significant_bits as u64 as u128) << 64)
                | s.least_significant_bits as u64 as u128,
        )),
        None => Err(invalid_argument("an event id is required")),
    }
}

/// Validates a stream name as EventStoreDB would: present, UTF-8, non-empty, not absurdly long.
pub fn stream_name(id: Option<StreamIdentifier>) -> Result<String, Status> {
    let Some(id) = id else {
        return Err(required("stream_identifier"));
    };
    let name = String::from_utf8(id.stream_name.to_vec())
        .map_err(|_| invalid_argument("stream name is not valid UTF-8"))?;
    if name.is_empty() {
        return Err(invalid_argument("Empty stream name"));
    }
    if name.len() > MAX_STREAM_NAME_LEN {
        return Err(invalid_argument(format!(
            "stream name is {} bytes long; the limit is {MAX_STREAM_NAME_LEN}",
            name.len()
        )));
    }
    Ok(name)
}

pub fn stream_identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: bytes::Bytes::copy_from_slice(name.as_bytes()),
    }
}

pub(crate) fn with_exception(
    code: Code,
    message: impl Into<String>,
    exception: &str,
    extra: &[(&'static str, String)],
) -> Status {
    let mut metadata = MetadataMap::new();
    if let Ok(value) = MetadataValue::try_from(exception) {
        metadata.insert("exception", value);
    }
    for (key, value) in extra {
        if let Ok(value) = MetadataValue::try_from(value.as_str()) {
            metadata.insert(*key, value);
        }
    }
    Status::with_metadata(code, message, metadata)
}

pub fn invalid_argument(message: impl Into<String>) -> Status {
    with_exception(Code::InvalidArgument, message, "invalid-argument", &[])
}

pub fn required(property: &str) -> Status {
    with_exception(
        Code::InvalidArgument,
        format!("Required metadata property '{property}' is missing"),
        "missing-required-metadata-property",
        &[("required-metadata-properties", property.to_owned())],
    )
}

pub fn stream_deleted(stream: &str) -> Status {
    with_exception(
        Code::FailedPrecondition,
        format!("Event stream '{stream}' is deleted."),
        "stream-deleted",
        &[("stream-name", stream.to_owned())],
    )
}

pub fn access_denied() -> Status {
    with_exception(
        Code::PermissionDenied,
        "Access Denied",
        "access-denied",
        &[],
    )
}

pub fn maximum_append_size_exceeded(limit: usize) -> Status {
    with_exception(
        Code::InvalidArgument,
        format!("Maximum Append Size of {limit} Exceeded."),
        "maximum-append-size-exceeded",
        &[("maximum-append-size", limit.to_string())],
    )
}

pub fn wrong_expected_version(
    operation: &str,
    stream: &str,
    expected: &str,
    actual: &str,
) -> Status {
    with_exception(
        Code::FailedPrecondition,
        format!(
            "{operation} failed due to WrongExpectedVersion. Stream: {stream}, Expected version: {expected}, Actual version: {actual}"
        ),
        "wrong-expected-version",
        &[
            ("stream-name", stream.to_owned()),
            ("expected-version", expected.to_owned()),
            ("actual-version", actual.to_owned()),
        ],
    )
}

pub fn server_unavailable(message: impl Into<String>) -> Status {
    Status::unavailable(message)
}

pub fn internal(message: impl Into<String>) -> Status {
    Status::internal(message)
}

/// The authenticated caller of a request (anonymous unless credentials were sent).
pub fn principal<T>(request: &tonic::Request<T>) -> Principal {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_default()
}
