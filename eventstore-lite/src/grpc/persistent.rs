//! The PersistentSubscriptions service: maps EventStoreDB's wire messages onto the `persistent` subsystem.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::proto::persistent_subscriptions::{
    self as ps, all_options, filter_options, get_info_req, group_options, list_req,
    persistent_subscriptions_server, read_req, read_resp_control, replay_parked_req, settings,
    stream_options, subscription_info, CreateReq, CreateResp, DeleteReq, DeleteResp, GetInfoReq,
    GetInfoResp, GroupOptions, ListReq, ListResp, ReadReq, ReadRespControl, ReplayParkedReq,
    ReplayParkedResp, SubscriptionInfo, UpdateReq, UpdateResp,
};
use super::proto::{self, Empty};
use super::wire::PersistentReadResp;
use super::{
    invalid_argument, principal, required, stream_name, uuid_from_proto, with_exception, UuidFormat,
};
use crate::auth::Principal;
use crate::persistent::config::{FilterSpec, GroupConfig, Settings, StartFrom, Strategy, ALL};
use crate::persistent::group::{ConsumerInfo, Delivery, DropReason, GroupInfo, NackAction};
use crate::persistent::{PersistentError, Subsystem};

const TICKS_PER_MS: i64 = 10_000;

pub struct PersistentService {
    subsystem: Arc<Subsystem>,
}

impl PersistentService {
    pub fn new(subsystem: Arc<Subsystem>) -> Self {
        Self { subsystem }
    }
}

fn status(error: PersistentError) -> Status {
    match &error {
        PersistentError::AlreadyExists { stream, group } => with_exception(
            Code::AlreadyExists,
            error.to_string(),
            "persistent-subscription-exists",
            &[
                ("stream-name", stream.clone()),
                ("group-name", group.clone()),
            ],
        ),
        PersistentError::NotFound { stream, group } => with_exception(
            Code::NotFound,
            error.to_string(),
            "persistent-subscription-does-not-exist",
            &[
                ("stream-name", stream.clone()),
                ("group-name", group.clone()),
            ],
        ),
        PersistentError::MaximumSubscribersReached => with_exception(
            Code::FailedPrecondition,
            error.to_string(),
            "maximum-subscribers-reached",
            &[],
        ),
        PersistentError::Invalid(message) => invalid_argument(message.clone()),
        PersistentError::Failed(message) => with_exception(
            Code::Internal,
            message.clone(),
            "persistent-subscription-failed",
            &[],
        ),
    }
}

fn dropped(reason: DropReason, stream: &str, group: &str) -> Status {
    match reason {
        DropReason::Deleted => with_exception(
            Code::Cancelled,
            format!("Persistent subscription group '{group}' on stream '{stream}' was deleted."),
            "persistent-subscription-dropped",
            &[
                ("stream-name", stream.to_owned()),
                ("group-name", group.to_owned()),
            ],
        ),
        DropReason::Stopped => with_exception(
            Code::Cancelled,
            "The consumer asked to stop.",
            "persistent-subscription-dropped",
            &[],
        ),
        DropReason::Restarting => Status::unavailable("Server Is Not Ready"),
        DropReason::ShuttingDown => Status::unavailable("Server Is Shutting Down"),
    }
}

fn non_negative(value: i32, name: &str) -> Result<u32, Status> {
    u32::try_from(value)
        .map_err(|_| invalid_argument(format!("{name} must not be negative (got {value})")))
}

fn settings_from(s: Option<ps::Settings>) -> Result<Settings, Status> {
    let Some(s) = s else {
        return Err(required("settings"));
    };
    let strategy = if !s.consumer_strategy.is_empty() {
        Strategy::parse(&s.consumer_strategy).ok_or_else(|| {
            invalid_argument(format!(
                "unknown consumer strategy '{}'",
                s.consumer_strategy
            ))
        })?
    } else {
        match ps::ConsumerStrategy::try_from(s.named_consumer_strategy) {
            Ok(ps::ConsumerStrategy::DispatchToSingle) => Strategy::DispatchToSingle,
            Ok(ps::ConsumerStrategy::RoundRobin) => Strategy::RoundRobin,
            Ok(ps::ConsumerStrategy::Pinned) => Strategy::Pinned,
            Err(_) => {
                return Err(invalid_argument(format!(
                    "unknown consumer strategy {}",
                    s.named_consumer_strategy
                )))
            }
        }
    };
    let message_timeout_ms = match s.message_timeout {
        Some(settings::MessageTimeout::MessageTimeoutTicks(t)) => (t.max(0) / TICKS_PER_MS) as u64,
        Some(settings::MessageTimeout::MessageTimeoutMs(ms)) => ms.max(0) as u64,
        None => Settings::default().message_timeout_ms,
    };
    let checkpoint_after_ms = match s.checkpoint_after {
        Some(settings::CheckpointAfter::CheckpointAfterTicks(t)) => {
            (t.max(0) / TICKS_PER_MS) as u64
        }
        Some(settings::CheckpointAfter::CheckpointAfterMs(ms)) => ms.max(0) as u64,
        None => Settings::default().checkpoint_after_ms,
    };
    Ok(Settings {
        resolve_link_tos: s.resolve_links,
        extra_statistics: s.extra_statistics,
        message_timeout_ms,
        max_retry_count: non_negative(s.max_retry_count, "max_retry_count")?,
        min_checkpoint_count: non_negative(s.min_checkpoint_count, "min_checkpoint_count")?,
        max_checkpoint_count: non_negative(s.max_checkpoint_count, "max_checkpoint_count")?,
        max_subscriber_count: non_negative(s.max_subscriber_count, "max_subscriber_count")?,
        live_buffer_size: non_negative(s.live_buffer_size, "live_buffer_size")?,
        read_batch_size: non_negative(s.read_batch_size, "read_batch_size")?,
        history_buffer_size: non_negative(s.history_buffer_size, "history_buffer_size")?,
        checkpoint_after_ms,
        strategy,
    })
}

/// Source, start and filter of a Create or Update.
fn group_from(options: GroupOptions) -> Result<GroupConfig, Status> {
    if options.group_name.is_empty() {
        return Err(required("group_name"));
    }
    let settings_revision = options.settings.as_ref().map_or(0, |s| s.revision);
    let settings = settings_from(options.settings)?;
    let (stream, start_from, filter) = match options.stream_option {
        Some(group_options::StreamOption::Stream(s)) => {
            let name = stream_name(s.stream_identifier)?;
            let start = match s.revision_option {
                Some(stream_options::RevisionOption::Revision(r)) => StartFrom::Revision(r),
                Some(stream_options::RevisionOption::Start(_)) | None => StartFrom::Start,
                Some(stream_options::RevisionOption::End(_)) => StartFrom::End,
            };
            (name, start, None)
        }
        Some(group_options::StreamOption::All(a)) => {
            let start = match a.all_option {
                Some(all_options::AllOption::Position(p)) => StartFrom::Position(p.commit_position),
                Some(all_options::AllOption::Start(_)) | None => StartFrom::Start,
                Some(all_options::AllOption::End(_)) => StartFrom::End,
            };
            let filter = match a.filter_option {
                Some(all_options::FilterOption::Filter(f)) => {
                    let (on_event_type, expression) =
                        match f.filter.ok_or_else(|| required("filter"))? {
                            filter_options::Filter::StreamIdentifier(e) => (false, e),
                            filter_options::Filter::EventType(e) => (true, e),
                        };
                    Some(FilterSpec {
                        on_event_type,
                        regex: expression.regex,
                        prefixes: expression.prefix,
                    })
                }
                _ => None,
            };
            (ALL.to_owned(), start, filter)
        }
        None => {
            // Older clients: the deprecated top-level stream identifier and settings.revision.
            let name = stream_name(options.stream_identifier)?;
            let start = if settings_revision == u64::MAX {
                StartFrom::End
            } else {
                StartFrom::Revision(settings_revision)
            };
            (name, start, None)
        }
    };
    Ok(GroupConfig {
        stream,
        group: options.group_name,
        start_from,
        filter,
        settings,
    })
}

fn target_of(
    stream_identifier: Option<proto::StreamIdentifier>,
    all: bool,
) -> Result<String, Status> {
    if all {
        Ok(ALL.to_owned())
    } else {
        stream_name(stream_identifier)
    }
}

fn position_text(config: &GroupConfig, key: Option<u64>) -> String {
    match key {
        None => String::new(),
        Some(k) if config.is_all() => format!("C:{k}/P:{k}"),
        Some(k) => k.to_string(),
    }
}

fn subscription_info(info: GroupInfo) -> SubscriptionInfo {
    let config = &info.config;
    let s = &config.settings;
    let start_from = match (config.start_from, config.is_all()) {
        (StartFrom::Start, false) => "0".to_owned(),
        (StartFrom::End, false) => "-1".to_owned(),
        (StartFrom::Start, true) => "C:0/P:0".to_owned(),
        (StartFrom::End, true) => "C:-1/P:-1".to_owned(),
        (StartFrom::Revision(r), _) => r.to_string(),
        (StartFrom::Position(p), _) => format!("C:{p}/P:{p}"),
    };
    let clamp = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
    SubscriptionInfo {
        event_source: config.stream.clone(),
        group_name: config.group.clone(),
        status: if info.live { "Live" } else { "CatchingUp" }.to_owned(),
        connections: info
            .connections
            .iter()
            .map(|c| subscription_info::ConnectionInfo {
                from: c.info.from.clone(),
                username: c.info.username.clone(),
                average_items_per_second: c.average_per_second as i32,
                total_items: c.total_items as i64,
                count_since_last_measurement: c.count_since_last_measurement as i64,
                observed_measurements: Vec::new(),
                available_slots: clamp(c.available_slots as u64),
                in_flight_messages: clamp(c.in_flight as u64),
                connection_name: c.info.connection_name.clone(),
            })
            .collect(),
        average_per_second: info.average_per_second as i32,
        total_items: info.total_items as i64,
        count_since_last_measurement: info.count_since_last_measurement as i64,
        last_checkpointed_event_position: position_text(config, info.last_checkpoint),
        last_known_event_position: position_text(config, info.last_known),
        resolve_link_tos: s.resolve_link_tos,
        start_from,
        message_timeout_milliseconds: clamp(s.message_timeout_ms),
        extra_statistics: s.extra_statistics,
        max_retry_count: clamp(s.max_retry_count.into()),
        live_buffer_size: clamp(s.live_buffer_size.into()),
        buffer_size: clamp(s.history_buffer_size.into()),
        read_batch_size: clamp(s.read_batch_size.into()),
        check_point_after_milliseconds: clamp(s.checkpoint_after_ms),
        min_check_point_count: clamp(s.min_checkpoint_count.into()),
        max_check_point_count: clamp(s.max_checkpoint_count.into()),
        read_buffer_count: clamp(info.buffered as u64),
        live_buffer_count: if info.live { info.buffered as i64 } else { 0 },
        retry_buffer_count: clamp(info.retry_buffered as u64),
        total_in_flight_messages: clamp(info.in_flight as u64),
        outstanding_messages_count: clamp(
            (info.in_flight + info.buffered + info.retry_buffered) as u64,
        ),
        named_consumer_strategy: s.strategy.name().to_owned(),
        max_subscriber_count: clamp(s.max_subscriber_count.into()),
        parked_message_count: info.parked as i64,
    }
}

/// A delivery as the generated message would carry it (the server sends [`PersistentReadResp::Event`], whose
/// test checks it decodes to exactly this).
#[cfg(test)]
pub(crate) fn persistent_event(
    item: &crate::storage::ResolvedItem,
    resolve: bool,
    retry_count: u32,
    format: UuidFormat,
) -> ReadRespControl {
    let convert = |e: &crate::storage::StoredEvent| {
        let r = super::streams::recorded_event(e, format);
        read_resp_control::read_event::RecordedEvent {
            id: r.id,
            stream_identifier: r.stream_identifier,
            stream_revision: r.stream_revision,
            prepare_position: r.prepare_position,
            commit_position: r.commit_position,
            metadata: r.metadata,
            custom_metadata: r.custom_metadata,
            data: r.data,
        }
    };
    let (event, link) = if resolve && item.is_link {
        (
            item.target.as_ref().map(convert),
            Some(convert(&item.record)),
        )
    } else {
        (Some(convert(&item.record)), None)
    };
    ReadRespControl {
        content: Some(read_resp_control::Content::Event(
            read_resp_control::ReadEvent {
                event,
                link,
                position: Some(read_resp_control::read_event::Position::CommitPosition(
                    item.record.position,
                )),
                count: Some(read_resp_control::read_event::Count::RetryCount(
                    i32::try_from(retry_count).unwrap_or(i32::MAX),
                )),
            },
        )),
    }
}

fn ids_from(ids: Vec<proto::Uuid>) -> Result<Vec<uuid::Uuid>, Status> {
    ids.into_iter()
        .map(|id| uuid_from_proto(Some(id)))
        .collect()
}

fn authorize_admin(principal: &Principal) -> Result<(), Status> {
    if principal.can_read_all() {
        Ok(())
    } else {
        Err(super::access_denied())
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<PersistentReadResp, Status>> + Send>>;

#[tonic::async_trait]
impl persistent_subscriptions_server::PersistentSubscriptions for PersistentService {
    type ReadStream = ReadStream;

    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        authorize_admin(&principal(&request))?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let config = group_from(options)?;
        self.subsystem.create(config).await.map_err(status)?;
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        authorize_admin(&principal(&request))?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let config = group_from(options)?;
        self.subsystem
            .update(&config.stream, &config.group, config.settings)
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        authorize_admin(&principal(&request))?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let stream = match options.stream_option {
            Some(ps::delete_req::options::StreamOption::StreamIdentifier(id)) => {
                stream_name(Some(id))?
            }
            Some(ps::delete_req::options::StreamOption::All(_)) => ALL.to_owned(),
            None => return Err(required("stream_option")),
        };
        self.subsystem
            .delete(&stream, &options.group_name)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteResp {}))
    }

    async fn read(
        &self,
        request: Request<Streaming<ReadReq>>,
    ) -> Result<Response<ReadStream>, Status> {
        let principal = principal(&request);
        let from = request
            .extensions()
            .get::<crate::server::PeerAddr>()
            .map(|peer| peer.0.to_string())
            .unwrap_or_default();
        let connection_name = request
            .metadata()
            .get("connection-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| required("options"))?;
        let Some(read_req::Content::Options(options)) = first.content else {
            return Err(required("options"));
        };
        let stream = match options.stream_option {
            Some(read_req::options::StreamOption::StreamIdentifier(id)) => stream_name(Some(id))?,
            Some(read_req::options::StreamOption::All(_)) => ALL.to_owned(),
            None => return Err(required("stream_option")),
        };
        let format = match options.uuid_option.and_then(|u| u.content) {
            Some(ps::uuid_option::Content::Structured(_)) => UuidFormat::Structured,
            _ => UuidFormat::String,
        };
        let group = options.group_name;
        let buffer_size = usize::try_from(options.buffer_size).unwrap_or(0).max(1);
        let info = ConsumerInfo {
            from,
            username: principal.user().unwrap_or_default().to_owned(),
            connection_name,
        };
        let connection = self
            .subsystem
            .connect(&stream, &group, buffer_size, info)
            .await
            .map_err(status)?;
        let connection = Arc::new(connection);

        // Acks and nacks from the client go straight to the group; when the client goes, so does the consumer.
        let acks = connection.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = incoming.message().await {
                match message.content {
                    Some(read_req::Content::Ack(ack)) => {
                        if let Ok(ids) = ids_from(ack.ids) {
                            acks.ack(ids);
                        }
                    }
                    Some(read_req::Content::Nack(nack)) => {
                        let action = match read_req::nack::Action::try_from(nack.action) {
                            Ok(read_req::nack::Action::Park) => NackAction::Park,
                            Ok(read_req::nack::Action::Skip) => NackAction::Skip,
                            Ok(read_req::nack::Action::Stop) => NackAction::Stop,
                            _ => NackAction::Retry,
                        };
                        if let Ok(ids) = ids_from(nack.ids) {
                            acks.nack(ids, action, nack.reason);
                        }
                    }
                    _ => {}
                }
            }
            acks.disconnect();
        });

        let subscription_id = format!("{stream}::{group}");
        let output = async_stream::try_stream! {
            let guard = DisconnectOnDrop(connection.clone());
            yield PersistentReadResp::from(ReadRespControl {
                content: Some(read_resp_control::Content::SubscriptionConfirmation(
                    read_resp_control::SubscriptionConfirmation { subscription_id },
                )),
            });
            let resolve = connection.resolve_link_tos;
            // The receiver lives in the connection; take it out for this stream.
            let mut deliveries = guard.take_deliveries().await;
            loop {
                match deliveries.recv().await {
                    Some(Delivery::Event { item, retry_count }) => {
                        yield PersistentReadResp::Event {
                            item,
                            resolve_links: resolve,
                            format,
                            retry_count: Some(i32::try_from(retry_count).unwrap_or(i32::MAX)),
                        };
                    }
                    Some(Delivery::Dropped(reason)) => {
                        Err(dropped(reason, &stream, &group))?;
                    }
                    None => {
                        Err(dropped(DropReason::ShuttingDown, &stream, &group))?;
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(output)))
    }

    async fn get_info(
        &self,
        request: Request<GetInfoReq>,
    ) -> Result<Response<GetInfoResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let stream = match options.stream_option {
            Some(get_info_req::options::StreamOption::StreamIdentifier(id)) => {
                target_of(Some(id), false)?
            }
            Some(get_info_req::options::StreamOption::All(_)) => ALL.to_owned(),
            None => return Err(required("stream_option")),
        };
        let info = self
            .subsystem
            .info(&stream, &options.group_name)
            .await
            .map_err(status)?;
        Ok(Response::new(GetInfoResp {
            subscription_info: Some(subscription_info(info)),
        }))
    }

    async fn replay_parked(
        &self,
        request: Request<ReplayParkedReq>,
    ) -> Result<Response<ReplayParkedResp>, Status> {
        authorize_admin(&principal(&request))?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let stream = match options.stream_option {
            Some(replay_parked_req::options::StreamOption::StreamIdentifier(id)) => {
                stream_name(Some(id))?
            }
            Some(replay_parked_req::options::StreamOption::All(_)) => ALL.to_owned(),
            None => return Err(required("stream_option")),
        };
        let stop_at = match options.stop_at_option {
            Some(replay_parked_req::options::StopAtOption::StopAt(n)) => {
                Some(u64::try_from(n).unwrap_or(0))
            }
            _ => None,
        };
        self.subsystem
            .replay_parked(&stream, &options.group_name, stop_at)
            .await
            .map_err(status)?;
        Ok(Response::new(ReplayParkedResp {}))
    }

    async fn list(&self, request: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let stream = match options.list_option {
            Some(list_req::options::ListOption::ListAllSubscriptions(_)) | None => None,
            Some(list_req::options::ListOption::ListForStream(s)) => match s.stream_option {
                Some(list_req::stream_option::StreamOption::Stream(id)) => {
                    Some(stream_name(Some(id))?)
                }
                Some(list_req::stream_option::StreamOption::All(_)) => Some(ALL.to_owned()),
                None => None,
            },
        };
        let infos = self.subsystem.list(stream.as_deref()).await;
        Ok(Response::new(ListResp {
            subscriptions: infos.into_iter().map(subscription_info).collect(),
        }))
    }

    async fn restart_subsystem(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        authorize_admin(&principal(&request))?;
        self.subsystem.restart().await.map_err(status)?;
        Ok(Response::new(Empty {}))
    }
}

/// Tells the group the consumer is gone when the response stream is dropped (client disconnect).
struct DisconnectOnDrop(Arc<crate::persistent::Connection>);

impl DisconnectOnDrop {
    async fn take_deliveries(&self) -> tokio::sync::mpsc::Receiver<Delivery> {
        self.0.take_deliveries().await
    }
}

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        self.0.disconnect();
    }
}
