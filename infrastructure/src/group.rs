//! Persistent subscription groups: what a group reads (`SubscriptionSource`), the settings it is created with
//! (`GroupSettings`), and `ensure_group`, which creates a group unless it exists, so every service and the
//! seeder can run it at start-up.

use std::fmt::Display;
use std::time::Duration;

use eventstore::{
    PersistentSubscriptionOptions, PersistentSubscriptionSettings,
    PersistentSubscriptionToAllOptions, StreamPosition, SubscriptionFilter, SystemConsumerStrategy,
};

use crate::store::{EventStore, StoreError};

/// What a group reads: one stream (often a `$et-` or `$ce-` projection stream) or `$all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionSource {
    Stream(String),
    All,
}

impl Display for SubscriptionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscriptionSource::Stream(stream) => f.write_str(stream),
            SubscriptionSource::All => f.write_str("$all"),
        }
    }
}

/// The settings a group is created with. The defaults suit the bank's pipeline: start from the beginning,
/// resolve links (consumers read `$et-` streams), round-robin between consumers.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub start_from_beginning: bool,
    pub resolve_link_tos: bool,
    /// A delivered event not acked within this is delivered again.
    pub message_timeout: Duration,
    /// Deliveries (retries and timeouts) after which the server parks an event.
    pub max_retry_count: i32,
    pub consumer_strategy: SystemConsumerStrategy,
    pub checkpoint_after: Duration,
    pub checkpoint_lower_bound: i32,
    pub checkpoint_upper_bound: i32,
    pub read_batch_size: i32,
    pub live_buffer_size: i32,
    pub history_buffer_size: i32,
    /// 0: no limit.
    pub max_subscriber_count: i32,
    /// For `$all` groups: which events the group sees.
    pub filter: Option<SubscriptionFilter>,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            start_from_beginning: true,
            resolve_link_tos: true,
            message_timeout: Duration::from_secs(30),
            max_retry_count: 10,
            consumer_strategy: SystemConsumerStrategy::RoundRobin,
            checkpoint_after: Duration::from_secs(2),
            checkpoint_lower_bound: 10,
            checkpoint_upper_bound: 1_000,
            read_batch_size: 100,
            live_buffer_size: 500,
            history_buffer_size: 500,
            max_subscriber_count: 0,
            filter: None,
        }
    }
}

impl GroupSettings {
    fn for_client<A>(&self) -> PersistentSubscriptionSettings<A> {
        PersistentSubscriptionSettings {
            resolve_link_tos: self.resolve_link_tos,
            start_from: if self.start_from_beginning {
                StreamPosition::Start
            } else {
                StreamPosition::End
            },
            extra_statistics: false,
            message_timeout: self.message_timeout,
            max_retry_count: self.max_retry_count,
            live_buffer_size: self.live_buffer_size,
            read_batch_size: self.read_batch_size,
            history_buffer_size: self.history_buffer_size,
            checkpoint_after: self.checkpoint_after,
            checkpoint_lower_bound: self.checkpoint_lower_bound,
            checkpoint_upper_bound: self.checkpoint_upper_bound,
            max_subscriber_count: self.max_subscriber_count,
            consumer_strategy_name: self.consumer_strategy.clone(),
        }
    }
}

/// Whether [`ensure_group`] created the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupCreated {
    Created,
    AlreadyExisted,
}

/// Creates the group `group` on `source` with `settings` unless it exists (its settings are then left alone).
pub async fn ensure_group(
    store: &EventStore,
    source: &SubscriptionSource,
    group: &str,
    settings: &GroupSettings,
) -> Result<GroupCreated, StoreError> {
    let client = store.client();
    let result = match source {
        SubscriptionSource::Stream(stream) => {
            let options = PersistentSubscriptionOptions::default().settings(settings.for_client());
            client
                .create_persistent_subscription(stream.as_str(), group, &options)
                .await
        }
        SubscriptionSource::All => {
            let mut options =
                PersistentSubscriptionToAllOptions::default().settings(settings.for_client());
            if let Some(filter) = &settings.filter {
                options = options.filter(filter.clone());
            }
            client
                .create_persistent_subscription_to_all(group, &options)
                .await
        }
    };
    match result {
        Ok(()) => Ok(GroupCreated::Created),
        Err(eventstore::Error::ResourceAlreadyExists) => Ok(GroupCreated::AlreadyExisted),
        Err(error) => Err(StoreError::from_client(&source.to_string(), error)),
    }
}
