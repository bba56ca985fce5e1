//! The Streams service: Append, BatchAppend, Read (reads and catch-up subscriptions), Delete, Tombstone.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::proto::streams::read_req::options as read_options;
use super::proto::streams::{
    append_req, append_resp, batch_append_req, batch_append_resp, delete_req, delete_resp,
    read_resp_control, streams_server, tombstone_resp, AppendReq, AppendResp, BatchAppendReq,
    BatchAppendResp, DeleteReq, DeleteResp, Position, ProposedMessage, ReadReq, ReadRespControl,
    TombstoneReq, TombstoneResp,
};
use super::proto::{self, AllStreamPosition};
use super::wire::ReadResp;
use super::{
    access_denied, internal, invalid_argument, maximum_append_size_exceeded, principal, required,
    server_unavailable, stream_deleted, stream_identifier, stream_name, uuid_from_proto,
    wrong_expected_version, UuidFormat,
};
use crate::auth::{Operation, Principal};
use crate::storage::{
    AllFrom, EventFilter, ExpectedRevision, FilterTarget, ProposedEvent, ReadError, ResolvedItem,
    Store, StreamFrom, StreamRead, WriteError, WriteResult, MAX_APPEND_SIZE,
};

/// Events fetched from storage per step of a read or a catch-up.
const PAGE: usize = 512;
/// Records fetched per step of a `$all` read (a sequential log scan: bigger steps mean fewer task switches).
const ALL_PAGE: usize = 2048;
/// EventStoreDB's default checkpoint window for filtered subscriptions, in events considered.
const DEFAULT_CHECKPOINT_WINDOW: usize = 32;

pub struct StreamsService {
    store: Store,
    shutdown: CancellationToken,
    subscription_ids: AtomicU64,
    pub(crate) live_subscriptions: Arc<AtomicU64>,
    /// A live subscription reads at most once per this (see `crate::pace`).
    live_read_interval: Duration,
}

impl StreamsService {
    pub fn new(store: Store, shutdown: CancellationToken, live_read_interval: Duration) -> Self {
        Self {
            store,
            shutdown,
            live_read_interval,
            subscription_ids: AtomicU64::new(1),
            live_subscriptions: Arc::default(),
        }
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<BatchAppendResp, Status>> + Send>>;

fn expected_from(
    option: Option<append_req::options::ExpectedStreamRevision>,
) -> Result<ExpectedRevision, Status> {
    use append_req::options::ExpectedStreamRevision as E;
    match option {
        Some(E::Revision(r)) => Ok(ExpectedRevision::Exact(r)),
        Some(E::NoStream(_)) => Ok(ExpectedRevision::NoStream),
        Some(E::Any(_)) => Ok(ExpectedRevision::Any),
        Some(E::StreamExists(_)) => Ok(ExpectedRevision::StreamExists),
        None => Err(required("expected_stream_revision")),
    }
}

fn delete_expected(
    option: Option<delete_req::options::ExpectedStreamRevision>,
) -> Result<ExpectedRevision, Status> {
    use delete_req::options::ExpectedStreamRevision as E;
    match option {
        Some(E::Revision(r)) => Ok(ExpectedRevision::Exact(r)),
        Some(E::NoStream(_)) => Ok(ExpectedRevision::NoStream),
        Some(E::Any(_)) => Ok(ExpectedRevision::Any),
        Some(E::StreamExists(_)) => Ok(ExpectedRevision::StreamExists),
        None => Err(required("expected_stream_revision")),
    }
}

fn proposed_event(message: ProposedMessage) -> Result<ProposedEvent, Status> {
    let id = uuid_from_proto(message.id)?;
    let mut metadata = message.metadata;
    let event_type = metadata.remove("type").unwrap_or_default();
    if event_type.is_empty() {
        return Err(required("type"));
    }
    let content_type = metadata
        .remove("content-type")
        .ok_or_else(|| required("content-type"))?;
    Ok(ProposedEvent {
        id,
        event_type,
        is_json: content_type == "application/json",
        metadata: message.custom_metadata,
        data: message.data,
    })
}

/// EventStoreDB's numeric spelling of expected versions, used in error metadata.
fn expected_number(expected: ExpectedRevision) -> String {
    match expected {
        ExpectedRevision::Any => "-2".into(),
        ExpectedRevision::NoStream => "-1".into(),
        ExpectedRevision::StreamExists => "-4".into(),
        ExpectedRevision::Exact(n) => n.to_string(),
    }
}

fn write_error(operation: &str, stream: &str, error: WriteError) -> Status {
    match error {
        WriteError::WrongExpectedVersion { current, expected } => wrong_expected_version(
            operation,
            stream,
            &expected_number(expected),
            &current.map_or("-1".into(), |c| c.to_string()),
        ),
        WriteError::StreamDeleted(stream) => stream_deleted(&stream),
        WriteError::Invalid(message) => invalid_argument(message),
        WriteError::ShuttingDown => server_unavailable("Server Is Shutting Down"),
        WriteError::Poisoned(error) => internal(format!("the store cannot write: {error}")),
    }
}

fn read_error(error: ReadError) -> Status {
    match error {
        ReadError::StreamDeleted(stream) => stream_deleted(&stream),
        ReadError::InvalidPosition(position) => {
            invalid_argument(format!("no event starts at position {position} of $all"))
        }
        other => {
            tracing::error!(error = %other, "read failed");
            internal(other.to_string())
        }
    }
}

fn append_success(result: WriteResult) -> AppendResp {
    use append_resp::success::{CurrentRevisionOption, PositionOption};
    let success = append_resp::Success {
        current_revision_option: Some(match result.current_revision {
            Some(r) => CurrentRevisionOption::CurrentRevision(r),
            None => CurrentRevisionOption::NoStream(proto::Empty {}),
        }),
        position_option: Some(match result.position {
            Some(p) => PositionOption::Position(Position {
                commit_position: p,
                prepare_position: p,
            }),
            None => PositionOption::NoPosition(proto::Empty {}),
        }),
    };
    AppendResp {
        result: Some(append_resp::Result::Success(success)),
    }
}

fn append_wrong_version(current: Option<u64>, expected: ExpectedRevision) -> AppendResp {
    use append_resp::wrong_expected_version::*;
    let empty = proto::Empty {};
    let wrong = append_resp::WrongExpectedVersion {
        current_revision_option_20_6_0: Some(match current {
            Some(r) => CurrentRevisionOption2060::CurrentRevision2060(r),
            None => CurrentRevisionOption2060::NoStream2060(empty),
        }),
        expected_revision_option_20_6_0: match expected {
            ExpectedRevision::Exact(r) => Some(ExpectedRevisionOption2060::ExpectedRevision2060(r)),
            ExpectedRevision::Any => Some(ExpectedRevisionOption2060::Any2060(empty)),
            ExpectedRevision::StreamExists => {
                Some(ExpectedRevisionOption2060::StreamExists2060(empty))
            }
            ExpectedRevision::NoStream => None,
        },
        current_revision_option: Some(match current {
            Some(r) => CurrentRevisionOption::CurrentRevision(r),
            None => CurrentRevisionOption::CurrentNoStream(empty),
        }),
        expected_revision_option: Some(match expected {
            ExpectedRevision::Exact(r) => ExpectedRevisionOption::ExpectedRevision(r),
            ExpectedRevision::Any => ExpectedRevisionOption::ExpectedAny(empty),
            ExpectedRevision::StreamExists => ExpectedRevisionOption::ExpectedStreamExists(empty),
            ExpectedRevision::NoStream => ExpectedRevisionOption::ExpectedNoStream(empty),
        }),
    };
    AppendResp {
        result: Some(append_resp::Result::WrongExpectedVersion(wrong)),
    }
}

/// Converts a stored record to the generated wire form (the server encodes events by hand: `wire.rs`).
#[cfg(test)]
pub fn recorded_event(
    event: &crate::storage::StoredEvent,
    format: UuidFormat,
) -> read_resp_control::read_event::RecordedEvent {
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("type".to_owned(), event.event_type.clone());
    metadata.insert(
        "content-type".to_owned(),
        if event.is_json {
            "application/json"
        } else {
            "application/octet-stream"
        }
        .to_owned(),
    );
    metadata.insert("created".to_owned(), event.created.to_string());
    read_resp_control::read_event::RecordedEvent {
        id: Some(super::uuid_to_proto(event.id, format)),
        stream_identifier: Some(stream_identifier(&event.stream)),
        stream_revision: event.revision,
        prepare_position: event.position,
        commit_position: event.position,
        metadata,
        custom_metadata: event.metadata.clone(),
        data: event.data.clone(),
    }
}

/// The wire form of a read item, as the generated message: with resolution, `event` is the target and `link` the
/// link. The server sends `wire::ReadResp`, whose tests check it decodes to exactly this.
#[cfg(test)]
pub fn read_event(
    item: &ResolvedItem,
    resolve_links: bool,
    format: UuidFormat,
) -> read_resp_control::ReadEvent {
    let (event, link) = if resolve_links && item.is_link {
        (
            item.target.as_ref().map(|t| recorded_event(t, format)),
            Some(recorded_event(&item.record, format)),
        )
    } else {
        (Some(recorded_event(&item.record, format)), None)
    };
    read_resp_control::ReadEvent {
        event,
        link,
        position: Some(read_resp_control::read_event::Position::CommitPosition(
            item.record.position,
        )),
    }
}

fn event_resp(item: ResolvedItem, plan: &ReadPlan) -> ReadResp {
    ReadResp::Event {
        item,
        resolve_links: plan.resolve_links,
        format: plan.uuid_format,
        retry_count: None,
    }
}

/// A control message (confirmation, checkpoint, positions, …).
fn control(content: read_resp_control::Content) -> ReadResp {
    ReadResp::Control(ReadRespControl {
        content: Some(content),
    })
}

#[derive(Debug, Clone)]
enum Source {
    Stream { name: String, from: StreamFrom },
    All { from: AllFrom },
}

/// A validated Read request.
#[derive(Debug, Clone)]
struct ReadPlan {
    source: Source,
    backwards: bool,
    resolve_links: bool,
    /// `None`: a subscription.
    count: Option<u64>,
    filter: Option<EventFilter>,
    /// Checkpoint every this many events considered (filtered `$all` subscriptions).
    checkpoint_every: Option<usize>,
    uuid_format: UuidFormat,
    compatibility: u32,
}

impl ReadPlan {
    fn parse(options: super::proto::streams::read_req::Options) -> Result<Self, Status> {
        use read_options::{
            all_options::AllOption, stream_options::RevisionOption, CountOption, FilterOption,
        };
        let source = match options
            .stream_option
            .ok_or_else(|| required("stream_option"))?
        {
            read_options::StreamOption::Stream(s) => {
                let name = stream_name(s.stream_identifier)?;
                let from = match s
                    .revision_option
                    .ok_or_else(|| required("revision_option"))?
                {
                    RevisionOption::Revision(r) => StreamFrom::Revision(r),
                    RevisionOption::Start(_) => StreamFrom::Start,
                    RevisionOption::End(_) => StreamFrom::End,
                };
                Source::Stream { name, from }
            }
            read_options::StreamOption::All(a) => {
                let from = match a.all_option.ok_or_else(|| required("all_option"))? {
                    AllOption::Position(p) => AllFrom::Position(p.commit_position),
                    AllOption::Start(_) => AllFrom::Start,
                    AllOption::End(_) => AllFrom::End,
                };
                Source::All { from }
            }
        };
        let backwards = match read_options::ReadDirection::try_from(options.read_direction) {
            Ok(read_options::ReadDirection::Forwards) => false,
            Ok(read_options::ReadDirection::Backwards) => true,
            Err(_) => {
                return Err(invalid_argument(format!(
                    "unknown read direction {}",
                    options.read_direction
                )))
            }
        };
        let count = match options
            .count_option
            .ok_or_else(|| required("count_option"))?
        {
            CountOption::Count(n) => Some(n),
            CountOption::Subscription(_) => None,
        };
        let (filter, checkpoint_every) = match options.filter_option {
            Some(FilterOption::Filter(f)) => {
                if !matches!(source, Source::All { .. }) {
                    return Err(invalid_argument("filters apply to $all only"));
                }
                let (target, expression) = match f.filter.ok_or_else(|| required("filter"))? {
                    read_options::filter_options::Filter::StreamIdentifier(e) => {
                        (FilterTarget::StreamName, e)
                    }
                    read_options::filter_options::Filter::EventType(e) => {
                        (FilterTarget::EventType, e)
                    }
                };
                let filter = EventFilter::new(target, &expression.regex, expression.prefix)
                    .map_err(|e| {
                        invalid_argument(format!(
                            "invalid filter regex '{}': {e}",
                            expression.regex
                        ))
                    })?;
                let window = match f.window {
                    Some(read_options::filter_options::Window::Max(max)) => max as usize,
                    _ => DEFAULT_CHECKPOINT_WINDOW,
                };
                if count.is_none() && f.checkpoint_interval_multiplier == 0 {
                    return Err(invalid_argument(
                        "checkpointIntervalMultiplier must be greater than 0",
                    ));
                }
                let every = window
                    .max(1)
                    .saturating_mul(f.checkpoint_interval_multiplier.max(1) as usize);
                (Some(filter), Some(every))
            }
            Some(FilterOption::NoFilter(_)) | None => (None, None),
        };
        let uuid_format = match options.uuid_option.and_then(|u| u.content) {
            Some(read_options::uuid_option::Content::Structured(_)) => UuidFormat::Structured,
            _ => UuidFormat::String,
        };
        Ok(Self {
            source,
            backwards,
            resolve_links: options.resolve_links,
            count,
            filter,
            checkpoint_every,
            uuid_format,
            compatibility: options.control_option.map_or(0, |c| c.compatibility),
        })
    }
}

use crate::offload::{store_read, INLINE_READ};
use crate::pace::LivePace;

async fn blocking<T: Send + 'static>(
    small: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    store_read(small, f).await.map_err(internal)
}

fn authorize(
    principal: &Principal,
    store: &Store,
    operation: Operation,
    stream: &str,
) -> Result<(), Status> {
    if !principal.auth_enabled() {
        return Ok(());
    }
    let target = stream.strip_prefix("$$").unwrap_or(stream);
    let metadata = store.stream_metadata(target).map_err(read_error)?;
    let operation = match (stream.starts_with("$$"), operation) {
        (true, Operation::Read) => Operation::MetaRead,
        (true, Operation::Write) => Operation::MetaWrite,
        (_, op) => op,
    };
    if principal.allowed(
        operation,
        target,
        metadata.as_ref().and_then(|m| m.acl.as_ref()),
    ) {
        Ok(())
    } else {
        Err(access_denied())
    }
}

impl StreamsService {
    /// Delete and Tombstone share everything but the kind of deletion.
    async fn delete_stream(
        &self,
        principal: &Principal,
        options: Option<delete_req::Options>,
        tombstone: bool,
    ) -> Result<Option<Position>, Status> {
        let options = options.ok_or_else(|| required("options"))?;
        let stream = stream_name(options.stream_identifier)?;
        let expected = delete_expected(options.expected_stream_revision)?;
        authorize(principal, &self.store, Operation::Delete, &stream)?;
        let result = self.store.delete(stream.clone(), expected, tombstone).await;
        let result = result.map_err(|e| write_error("Delete", &stream, e))?;
        Ok(result.position.map(|p| Position {
            commit_position: p,
            prepare_position: p,
        }))
    }
}

#[tonic::async_trait]
impl streams_server::Streams for StreamsService {
    type ReadStream = ReadStream;
    type BatchAppendStream = BatchStream;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadStream>, Status> {
        let principal = principal(&request);
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let plan = ReadPlan::parse(options)?;
        match &plan.source {
            Source::Stream { name, .. } => {
                authorize(&principal, &self.store, Operation::Read, name)?
            }
            Source::All { .. } => {
                if !principal.can_read_all() {
                    return Err(access_denied());
                }
            }
        }
        let store = self.store.clone();
        match (plan.source.clone(), plan.count) {
            (Source::Stream { name, from }, Some(count)) => {
                read_stream(store, plan, name, from, count).await
            }
            (Source::All { from }, Some(count)) => Ok(read_all(store, plan, from, count)),
            (source, None) => {
                if let Source::Stream { name, .. } = &source {
                    // A tombstoned stream fails before the subscription starts.
                    let probe_store = store.clone();
                    let probe_name = name.clone();
                    blocking(true, move || probe_store.last_revision(&probe_name))
                        .await?
                        .map_err(read_error)?;
                }
                let id = self.subscription_ids.fetch_add(1, Ordering::Relaxed);
                let live = self.live_subscriptions.clone();
                Ok(subscribe(
                    store,
                    plan,
                    source,
                    format!("{id:016x}"),
                    self.shutdown.clone(),
                    live,
                    self.live_read_interval,
                ))
            }
        }
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let principal = principal(&request);
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| required("options"))?;
        let Some(append_req::Content::Options(options)) = first.content else {
            return Err(required("options"));
        };
        let stream = stream_name(options.stream_identifier)?;
        let expected = expected_from(options.expected_stream_revision)?;
        authorize(&principal, &self.store, Operation::Write, &stream)?;
        let mut events = Vec::new();
        let mut size = 0usize;
        while let Some(message) = incoming.message().await? {
            match message.content {
                Some(append_req::Content::ProposedMessage(message)) => {
                    let event = proposed_event(message)?;
                    size += event.data.len() + event.metadata.len();
                    if size > MAX_APPEND_SIZE {
                        return Err(maximum_append_size_exceeded(MAX_APPEND_SIZE));
                    }
                    events.push(event);
                }
                Some(append_req::Content::Options(_)) => {
                    return Err(invalid_argument("options may only be sent once, first"))
                }
                None => return Err(required("proposed_message")),
            }
        }
        match self.store.append(stream.clone(), expected, events).await {
            Ok(result) => Ok(Response::new(append_success(result))),
            Err(WriteError::WrongExpectedVersion { current, expected }) => {
                Ok(Response::new(append_wrong_version(current, expected)))
            }
            Err(error) => Err(write_error("Append", &stream, error)),
        }
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let principal = principal(&request);
        let options = request.into_inner().options;
        let position = self.delete_stream(&principal, options, false).await?;
        let position_option = Some(match position {
            Some(p) => delete_resp::PositionOption::Position(p),
            None => delete_resp::PositionOption::NoPosition(proto::Empty {}),
        });
        Ok(Response::new(DeleteResp { position_option }))
    }

    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        let principal = principal(&request);
        let options = request.into_inner().options;
        let position = self.delete_stream(&principal, options, true).await?;
        let position_option = Some(match position {
            Some(p) => tombstone_resp::PositionOption::Position(p),
            None => tombstone_resp::PositionOption::NoPosition(proto::Empty {}),
        });
        Ok(Response::new(TombstoneResp { position_option }))
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BatchStream>, Status> {
        let principal = principal(&request);
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<BatchAppendResp, Status>>(256);
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut pending: HashMap<Vec<u8>, PendingBatch> = HashMap::new();
            loop {
                // The client keeps this session open for ever: end it on shutdown, as subscriptions are.
                let next = tokio::select! {
                    next = incoming.message() => next,
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(server_unavailable("Server Is Shutting Down"))).await;
                        break;
                    }
                };
                let message = match next {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let key = message
                    .correlation_id
                    .clone()
                    .map(|c| c.encode_to_vec())
                    .unwrap_or_default();
                let batch = pending.entry(key.clone()).or_insert_with(|| PendingBatch {
                    correlation_id: message.correlation_id.clone(),
                    options: None,
                    events: Vec::new(),
                    size: 0,
                    failed: None,
                });
                if message.options.is_some() {
                    batch.options = message.options;
                }
                for proposed in message.proposed_messages {
                    if batch.failed.is_some() {
                        break;
                    }
                    match proposed_event(proposed) {
                        Ok(event) => {
                            batch.size += event.data.len() + event.metadata.len();
                            if batch.size > MAX_APPEND_SIZE {
                                batch.failed = Some(maximum_append_size_exceeded(MAX_APPEND_SIZE));
                            }
                            batch.events.push(event);
                        }
                        Err(status) => batch.failed = Some(status),
                    }
                }
                if message.is_final {
                    if let Some(batch) = pending.remove(&key) {
                        let store = store.clone();
                        let tx = tx.clone();
                        let principal = principal.clone();
                        tokio::spawn(async move {
                            let response = batch.complete(&store, &principal).await;
                            let _ = tx.send(Ok(response)).await;
                        });
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct PendingBatch {
    correlation_id: Option<proto::Uuid>,
    options: Option<batch_append_req::Options>,
    events: Vec<ProposedEvent>,
    size: usize,
    failed: Option<Status>,
}

fn rpc_status(
    status: &Status,
    detail: Option<prost_types::Any>,
) -> super::proto::google::rpc::Status {
    super::proto::google::rpc::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: detail,
    }
}

impl PendingBatch {
    async fn complete(self, store: &Store, principal: &Principal) -> BatchAppendResp {
        use batch_append_req::options::ExpectedStreamPosition as In;
        use batch_append_resp::ExpectedStreamPosition as Out;
        let mut response = BatchAppendResp {
            correlation_id: self.correlation_id,
            result: None,
            stream_identifier: None,
            expected_stream_position: None,
        };
        let fail = |status: Status, detail: Option<prost_types::Any>| {
            Some(batch_append_resp::Result::Error(rpc_status(
                &status, detail,
            )))
        };
        let Some(options) = self.options else {
            response.result = fail(required("options"), None);
            return response;
        };
        response.stream_identifier = options.stream_identifier.clone();
        let stream = match stream_name(options.stream_identifier) {
            Ok(stream) => stream,
            Err(status) => {
                response.result = fail(status, None);
                return response;
            }
        };
        let expected = match options.expected_stream_position {
            Some(In::StreamPosition(r)) => ExpectedRevision::Exact(r),
            Some(In::NoStream(())) => ExpectedRevision::NoStream,
            Some(In::Any(())) => ExpectedRevision::Any,
            Some(In::StreamExists(())) => ExpectedRevision::StreamExists,
            None => {
                response.result = fail(required("expected_stream_position"), None);
                return response;
            }
        };
        response.expected_stream_position = Some(match expected {
            ExpectedRevision::Exact(r) => Out::StreamPosition(r),
            ExpectedRevision::NoStream => Out::NoStream(()),
            ExpectedRevision::Any => Out::Any(()),
            ExpectedRevision::StreamExists => Out::StreamExists(()),
        });
        if let Some(status) = self.failed {
            response.result = fail(status, None);
            return response;
        }
        if let Err(status) = authorize(principal, store, Operation::Write, &stream) {
            response.result = fail(
                status,
                Some(any(
                    "event_store.client.AccessDenied",
                    &proto::AccessDenied {},
                )),
            );
            return response;
        }
        response.result = match store.append(stream.clone(), expected, self.events).await {
            Ok(result) => {
                use batch_append_resp::success::{CurrentRevisionOption, PositionOption};
                Some(batch_append_resp::Result::Success(
                    batch_append_resp::Success {
                        current_revision_option: Some(match result.current_revision {
                            Some(r) => CurrentRevisionOption::CurrentRevision(r),
                            None => CurrentRevisionOption::NoStream(()),
                        }),
                        position_option: Some(match result.position {
                            Some(p) => PositionOption::Position(AllStreamPosition {
                                commit_position: p,
                                prepare_position: p,
                            }),
                            None => PositionOption::NoPosition(()),
                        }),
                    },
                ))
            }
            Err(WriteError::WrongExpectedVersion { current, expected }) => {
                use proto::wrong_expected_version::{
                    CurrentStreamRevisionOption, ExpectedStreamPositionOption,
                };
                let detail = proto::WrongExpectedVersion {
                    current_stream_revision_option: Some(match current {
                        Some(r) => CurrentStreamRevisionOption::CurrentStreamRevision(r),
                        None => CurrentStreamRevisionOption::CurrentNoStream(()),
                    }),
                    expected_stream_position_option: Some(match expected {
                        ExpectedRevision::Exact(r) => {
                            ExpectedStreamPositionOption::ExpectedStreamPosition(r)
                        }
                        ExpectedRevision::Any => ExpectedStreamPositionOption::ExpectedAny(()),
                        ExpectedRevision::StreamExists => {
                            ExpectedStreamPositionOption::ExpectedStreamExists(())
                        }
                        ExpectedRevision::NoStream => {
                            ExpectedStreamPositionOption::ExpectedNoStream(())
                        }
                    }),
                };
                fail(
                    Status::already_exists("WrongExpectedVersion"),
                    Some(any("event_store.client.WrongExpectedVersion", &detail)),
                )
            }
            Err(WriteError::StreamDeleted(name)) => fail(
                Status::not_found(format!("Event stream '{name}' is deleted.")),
                Some(any(
                    "event_store.client.StreamDeleted",
                    &proto::StreamDeleted {
                        stream_identifier: Some(stream_identifier(&name)),
                    },
                )),
            ),
            Err(error) => fail(write_error("Append", &stream, error), None),
        };
        response
    }
}

fn any(type_name: &str, message: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

/// A plain stream read: the first page is read before answering, so a tombstoned stream fails the call itself.
async fn read_stream(
    store: Store,
    plan: ReadPlan,
    name: String,
    from: StreamFrom,
    count: u64,
) -> Result<Response<ReadStream>, Status> {
    let first_page = (count as usize).clamp(1, PAGE);
    let (read_store, read_name) = (store.clone(), name.clone());
    let backwards = plan.backwards;
    let resolve = plan.resolve_links;
    // Most reads are of short streams (an aggregate) asking for everything: the stream's last revision (an index
    // lookup) tells how many events that is.
    let small = first_page <= INLINE_READ || {
        let start = match (from, backwards) {
            (StreamFrom::Start, false) => Some(0),
            (StreamFrom::Revision(revision), false) => Some(revision),
            _ => None,
        };
        // An index lookup; a stream that is missing or unreadable answers at once as well.
        start.is_some_and(|start| match store.last_revision(&name) {
            Ok(Some(last)) => last.saturating_sub(start) < INLINE_READ as u64,
            Ok(None) | Err(_) => true,
        })
    };
    let first = blocking(small, move || {
        read_store.read_stream(&read_name, from, backwards, first_page, resolve)
    })
    .await?
    .map_err(read_error)?;
    let (items, last_revision, first_revision) = match first {
        StreamRead::NotFound => {
            let not_found = control(read_resp_control::Content::StreamNotFound(
                read_resp_control::StreamNotFound {
                    stream_identifier: Some(stream_identifier(&name)),
                },
            ));
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(not_found)))));
        }
        StreamRead::Found {
            items,
            last_revision,
            first_revision,
        } => (items, last_revision, first_revision),
    };
    let stream = async_stream::try_stream! {
        let mut remaining = count;
        let mut items = items;
        let empty_first_page = items.is_empty();
        loop {
            let got = items.len();
            let mut next_revision = None;
            for item in std::mem::take(&mut items).into_iter().take(remaining.min(usize::MAX as u64) as usize) {
                next_revision = Some(item.record.revision);
                yield event_resp(item, &plan);
            }
            remaining = remaining.saturating_sub(got as u64);
            let Some(last_seen) = next_revision else { break };
            if remaining == 0 || got < first_page.min(PAGE) {
                break;
            }
            let next = if plan.backwards {
                match last_seen.checked_sub(1) { Some(n) => n, None => break }
            } else {
                last_seen + 1
            };
            let (read_store, read_name) = (store.clone(), name.clone());
            let page = (remaining as usize).min(PAGE);
            let read = blocking(page <= INLINE_READ, move || {
                read_store.read_stream(&read_name, StreamFrom::Revision(next), backwards, page, resolve)
            })
            .await?
            .map_err(read_error)?;
            items = match read {
                StreamRead::Found { items, .. } => items,
                StreamRead::NotFound => break,
            };
        }
        if plan.compatibility >= 1 {
            if empty_first_page && from != StreamFrom::Start {
                yield control(read_resp_control::Content::FirstStreamPosition(first_revision));
            }
            yield control(read_resp_control::Content::LastStreamPosition(last_revision));
        }
    };
    Ok(Response::new(Box::pin(stream)))
}

fn read_all(store: Store, plan: ReadPlan, from: AllFrom, count: u64) -> Response<ReadStream> {
    let stream = async_stream::try_stream! {
        let mut remaining = count;
        let mut from = from;
        while remaining > 0 {
            let page = (remaining as usize).min(ALL_PAGE);
            let (read_store, filter) = (store.clone(), plan.filter.clone());
            let (backwards, resolve) = (plan.backwards, plan.resolve_links);
            let read = blocking(page <= INLINE_READ, move || {
                read_store.read_all(from, backwards, page, usize::MAX, filter.as_ref(), resolve)
            })
            .await?
            .map_err(read_error)?;
            let got = read.items.len();
            for item in read.items {
                yield event_resp(item, &plan);
            }
            remaining = remaining.saturating_sub(got as u64);
            if read.reached_end || got == 0 {
                break;
            }
            from = AllFrom::Position(read.next);
        }
        if plan.compatibility >= 1 {
            let end = store.committed_end();
            yield control(read_resp_control::Content::LastAllStreamPosition(AllStreamPosition {
                    commit_position: end,
                    prepare_position: end,
                }));
        }
    };
    Response::new(Box::pin(stream))
}

/// A catch-up subscription: confirmation, history, `caught_up`, then live events as batches commit. Checkpoints
/// go out every `checkpoint_every` events considered when filtering `$all`. It never ends with OK: the client
/// takes that as a protocol error; on shutdown it ends with UNAVAILABLE.
fn subscribe(
    store: Store,
    plan: ReadPlan,
    source: Source,
    subscription_id: String,
    shutdown: CancellationToken,
    live: Arc<AtomicU64>,
    live_read_interval: Duration,
) -> Response<ReadStream> {
    let stream = async_stream::try_stream! {
        let _guard = LiveGuard::new(live);
        let mut commits = store.watch_commits();
        yield control(read_resp_control::Content::Confirmation(read_resp_control::SubscriptionConfirmation { subscription_id }));
        let resolve = plan.resolve_links;
        let mut caught_up_sent = false;
        let mut pace = LivePace::new(live_read_interval);
        match source {
            Source::Stream { name, from } => {
                // Subscriptions from a revision are exclusive of it; End means only new events.
                let mut next = match from {
                    StreamFrom::Start => Some(0),
                    StreamFrom::Revision(r) => Some(r + 1),
                    StreamFrom::End => None,
                };
                if next.is_none() {
                    let (s, n) = (store.clone(), name.clone());
                    let last = blocking(true, move || s.last_revision(&n)).await?.map_err(read_error)?;
                    next = Some(last.map_or(0, |l| l + 1));
                }
                let mut next = next.unwrap_or(0);
                // Live (woken by a commit), a read finds a few new events; catching up, full pages.
                let mut live = false;
                loop {
                    let (s, n) = (store.clone(), name.clone());
                    let read = blocking(live, move || s.read_stream(&n, StreamFrom::Revision(next), false, PAGE, resolve))
                        .await?
                        .map_err(read_error)?;
                    let items = match read {
                        StreamRead::Found { items, last_revision, .. } => {
                            // Events hidden by metadata must not stall the subscription.
                            if items.is_empty() && last_revision >= next { next = last_revision + 1; }
                            items
                        }
                        StreamRead::NotFound => Vec::new(),
                    };
                    let full = items.len() == PAGE;
                    live = items.len() <= INLINE_READ;
                    for item in items {
                        next = item.record.revision + 1;
                        yield event_resp(item, &plan);
                    }
                    if full {
                        continue;
                    }
                    if !caught_up_sent {
                        caught_up_sent = true;
                        yield control(read_resp_control::Content::CaughtUp(read_resp_control::CaughtUp {}));
                    }
                    if !pace.next_live_read(&mut commits, &shutdown).await {
                        Err(server_unavailable("Server Is Shutting Down"))?;
                    }
                }
            }
            Source::All { from } => {
                let mut position = match from {
                    AllFrom::Start => AllFrom::Start,
                    AllFrom::End => AllFrom::Position(store.committed_end()),
                    AllFrom::Position(p) => {
                        // Exclusive: skip the record at p.
                        let s = store.clone();
                        let read = blocking(true, move || s.read_all(AllFrom::Position(p), false, 1, 1, None, false))
                            .await?
                            .map_err(read_error)?;
                        AllFrom::Position(read.next)
                    }
                };
                let mut considered = 0usize;
                let mut live = false;
                loop {
                    let (s, filter) = (store.clone(), plan.filter.clone());
                    let read = blocking(live, move || s.read_all(position, false, ALL_PAGE, ALL_PAGE * 4, filter.as_ref(), resolve))
                        .await?
                        .map_err(read_error)?;
                    let (scanned, last_scanned, next, reached_end) = (read.scanned, read.last_scanned, read.next, read.reached_end);
                    live = scanned <= INLINE_READ;
                    for item in read.items {
                        yield event_resp(item, &plan);
                    }
                    if let Some(every) = plan.checkpoint_every {
                        let before = considered;
                        considered += scanned;
                        if let (true, Some(p)) = (considered / every > before / every, last_scanned) {
                            yield control(read_resp_control::Content::Checkpoint(Position { commit_position: p, prepare_position: p }));
                        }
                    }
                    position = AllFrom::Position(next);
                    if !reached_end {
                        continue;
                    }
                    if !caught_up_sent {
                        caught_up_sent = true;
                        yield control(read_resp_control::Content::CaughtUp(read_resp_control::CaughtUp {}));
                    }
                    if !pace.next_live_read(&mut commits, &shutdown).await {
                        Err(server_unavailable("Server Is Shutting Down"))?;
                    }
                }
            }
        }
    };
    Response::new(Box::pin(stream))
}

/// Counts live subscriptions for `/stats`.
struct LiveGuard(Arc<AtomicU64>);

impl LiveGuard {
    fn new(counter: Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
