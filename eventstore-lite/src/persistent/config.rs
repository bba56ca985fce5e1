//! Persistent subscription group configuration: the settings EventStoreDB knows, their defaults, and the JSON
//! they are stored as in `$persistentSubscriptionConfig` (one `$PersistentConfig` event holding every group).

use serde::{Deserialize, Serialize};

use crate::storage::{EventFilter, FilterTarget};

/// Stream holding the configuration of every group.
pub const CONFIG_STREAM: &str = "$persistentSubscriptionConfig";
pub const CONFIG_EVENT_TYPE: &str = "$PersistentConfig";
pub const CHECKPOINT_EVENT_TYPE: &str = "$SubscriptionCheckpoint";
pub const ALL: &str = "$all";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    RoundRobin,
    DispatchToSingle,
    Pinned,
    PinnedByCorrelation,
}

impl Strategy {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RoundRobin" => Some(Self::RoundRobin),
            "DispatchToSingle" => Some(Self::DispatchToSingle),
            "Pinned" => Some(Self::Pinned),
            "PinnedByCorrelation" => Some(Self::PinnedByCorrelation),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "RoundRobin",
            Self::DispatchToSingle => "DispatchToSingle",
            Self::Pinned => "Pinned",
            Self::PinnedByCorrelation => "PinnedByCorrelation",
        }
    }
}

/// Where a group starts when it has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartFrom {
    Start,
    End,
    /// A stream revision (inclusive).
    Revision(u64),
    /// A `$all` position (inclusive).
    Position(u64),
}

/// A `$all` group's filter, kept in a form that can be stored and compiled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSpec {
    pub on_event_type: bool,
    pub regex: String,
    pub prefixes: Vec<String>,
}

impl FilterSpec {
    pub fn compile(&self) -> Result<EventFilter, fancy_regex::Error> {
        let target = if self.on_event_type {
            FilterTarget::EventType
        } else {
            FilterTarget::StreamName
        };
        EventFilter::new(target, &self.regex, self.prefixes.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub resolve_link_tos: bool,
    pub extra_statistics: bool,
    pub message_timeout_ms: u64,
    pub max_retry_count: u32,
    pub min_checkpoint_count: u32,
    pub max_checkpoint_count: u32,
    /// 0 = unlimited.
    pub max_subscriber_count: u32,
    pub live_buffer_size: u32,
    pub read_batch_size: u32,
    pub history_buffer_size: u32,
    pub checkpoint_after_ms: u64,
    pub strategy: Strategy,
}

impl Default for Settings {
    /// EventStoreDB's defaults.
    fn default() -> Self {
        Self {
            resolve_link_tos: false,
            extra_statistics: false,
            message_timeout_ms: 30_000,
            max_retry_count: 10,
            min_checkpoint_count: 10,
            max_checkpoint_count: 1_000,
            max_subscriber_count: 0,
            live_buffer_size: 500,
            read_batch_size: 20,
            history_buffer_size: 500,
            checkpoint_after_ms: 2_000,
            strategy: Strategy::RoundRobin,
        }
    }
}

/// One group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupConfig {
    /// The stream name, or `$all`.
    pub stream: String,
    pub group: String,
    pub start_from: StartFrom,
    pub filter: Option<FilterSpec>,
    pub settings: Settings,
}

impl GroupConfig {
    pub fn is_all(&self) -> bool {
        self.stream == ALL
    }

    /// EventStoreDB's group id: `<stream>::<group>`.
    pub fn id(&self) -> String {
        group_id(&self.stream, &self.group)
    }

    pub fn checkpoint_stream(&self) -> String {
        format!("$persistentsubscription-{}-checkpoint", self.id())
    }

    pub fn parked_stream(&self) -> String {
        parked_stream(&self.stream, &self.group)
    }
}

pub fn group_id(stream: &str, group: &str) -> String {
    format!("{stream}::{group}")
}

pub fn parked_stream(stream: &str, group: &str) -> String {
    format!("$persistentsubscription-{}-parked", group_id(stream, group))
}

/// The body of a `$PersistentConfig` event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredConfig {
    pub version: String,
    pub updated_by: String,
    pub entries: Vec<GroupConfig>,
}
