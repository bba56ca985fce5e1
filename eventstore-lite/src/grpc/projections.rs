//! The Projections service: maps EventStoreDB's wire messages onto the `projections` subsystem.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Code, Request, Response, Status};

use super::proto::projections::{
    create_req, projections_server, statistics_req, statistics_resp, update_req, CreateReq,
    CreateResp, DeleteReq, DeleteResp, DisableReq, DisableResp, EnableReq, EnableResp, ResetReq,
    ResetResp, ResultReq, ResultResp, StateReq, StateResp, StatisticsReq, StatisticsResp,
    UpdateReq, UpdateResp,
};
use super::proto::Empty;
use super::{invalid_argument, required};
use crate::projections::runner::Mode;
use crate::projections::subsystem::{Details, ProjectionError, Selection, Subsystem};

pub struct ProjectionsService {
    subsystem: Arc<Subsystem>,
}

impl ProjectionsService {
    pub fn new(subsystem: Arc<Subsystem>) -> Self {
        Self { subsystem }
    }
}

fn status(error: ProjectionError) -> Status {
    match &error {
        ProjectionError::NotFound(_) => Status::new(Code::NotFound, error.to_string()),
        ProjectionError::Conflict => Status::new(Code::Unknown, error.to_string()),
        ProjectionError::Invalid(message) => invalid_argument(message.clone()),
        ProjectionError::Failed(message) => Status::new(Code::Unknown, message.clone()),
    }
}

/// JSON text → `google.protobuf.Value`; no state (or unreadable JSON) is an empty Struct, as EventStoreDB
/// answers for a projection without state. Numbers are doubles.
pub fn json_to_value(json: Option<&str>) -> prost_types::Value {
    let parsed = json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok());
    match parsed {
        Some(value) => to_value(value),
        None => empty_struct(),
    }
}

fn empty_struct() -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StructValue(
            prost_types::Struct::default(),
        )),
    }
}

fn to_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            Kind::NumberValue(if f.is_finite() { f } else { 0.0 })
        }
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn details(d: Details) -> StatisticsResp {
    StatisticsResp {
        details: Some(statistics_resp::Details {
            core_processing_time: d.stats.core_processing_ms,
            version: d.version,
            epoch: d.epoch,
            effective_name: d.name.clone(),
            writes_in_progress: 0,
            reads_in_progress: 0,
            partitions_cached: d.stats.partitions_cached,
            status: d.stats.status,
            state_reason: d.stats.state_reason,
            name: d.name,
            mode: d.mode.as_str().to_owned(),
            position: d.stats.position,
            progress: d.stats.progress,
            last_checkpoint: d.stats.last_checkpoint,
            events_processed_after_restart: d.stats.events_processed,
            checkpoint_status: String::new(),
            buffered_events: 0,
            write_pending_events_before_checkpoint: 0,
            write_pending_events_after_checkpoint: 0,
        }),
    }
}

fn name_of(name: &str) -> Result<&str, Status> {
    if name.is_empty() {
        return Err(required("name"));
    }
    Ok(name)
}

type StatisticsStream = Pin<Box<dyn Stream<Item = Result<StatisticsResp, Status>> + Send>>;

#[tonic::async_trait]
impl projections_server::Projections for ProjectionsService {
    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let (mode, name, emit, track) = match options.mode {
            Some(create_req::options::Mode::OneTime(_)) => (Mode::OneTime, None, false, false),
            Some(create_req::options::Mode::Transient(t)) => {
                (Mode::Transient, Some(t.name), false, false)
            }
            Some(create_req::options::Mode::Continuous(c)) => (
                Mode::Continuous,
                Some(c.name),
                c.emit_enabled,
                c.track_emitted_streams,
            ),
            None => return Err(required("mode")),
        };
        self.subsystem
            .create(mode, name, options.query, emit, track)
            .await
            .map_err(status)?;
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let emit = match options.emit_option {
            Some(update_req::options::EmitOption::EmitEnabled(emit)) => Some(emit),
            _ => None,
        };
        self.subsystem
            .update(name_of(&options.name)?, options.query, emit)
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        self.subsystem
            .delete(
                name_of(&options.name)?,
                options.delete_emitted_streams,
                options.delete_state_stream,
                options.delete_checkpoint_stream,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteResp {}))
    }

    type StatisticsStream = StatisticsStream;

    async fn statistics(
        &self,
        request: Request<StatisticsReq>,
    ) -> Result<Response<Self::StatisticsStream>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let selection = match options.mode {
            Some(statistics_req::options::Mode::Name(name)) => Selection::Name(name),
            Some(statistics_req::options::Mode::All(_)) | None => Selection::All,
            Some(statistics_req::options::Mode::Transient(_)) => Selection::Mode(Mode::Transient),
            Some(statistics_req::options::Mode::Continuous(_)) => Selection::Mode(Mode::Continuous),
            Some(statistics_req::options::Mode::OneTime(_)) => Selection::Mode(Mode::OneTime),
        };
        let all = self.subsystem.statistics(selection).await.map_err(status)?;
        let items: Vec<Result<StatisticsResp, Status>> =
            all.into_iter().map(|d| Ok(details(d))).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn disable(&self, request: Request<DisableReq>) -> Result<Response<DisableResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        self.subsystem
            .disable(name_of(&options.name)?, options.write_checkpoint)
            .await
            .map_err(status)?;
        Ok(Response::new(DisableResp {}))
    }

    async fn enable(&self, request: Request<EnableReq>) -> Result<Response<EnableResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        self.subsystem
            .enable(name_of(&options.name)?)
            .await
            .map_err(status)?;
        Ok(Response::new(EnableResp {}))
    }

    async fn reset(&self, request: Request<ResetReq>) -> Result<Response<ResetResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        self.subsystem
            .reset(name_of(&options.name)?)
            .await
            .map_err(status)?;
        Ok(Response::new(ResetResp {}))
    }

    async fn state(&self, request: Request<StateReq>) -> Result<Response<StateResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let state = self
            .subsystem
            .state(name_of(&options.name)?, &options.partition)
            .await
            .map_err(status)?;
        Ok(Response::new(StateResp {
            state: Some(json_to_value(state.as_deref())),
        }))
    }

    async fn result(&self, request: Request<ResultReq>) -> Result<Response<ResultResp>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| required("options"))?;
        let result = self
            .subsystem
            .result(name_of(&options.name)?, &options.partition)
            .await
            .map_err(status)?;
        Ok(Response::new(ResultResp {
            result: Some(json_to_value(result.as_deref())),
        }))
    }

    async fn restart_subsystem(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.subsystem.restart().await.map_err(status)?;
        Ok(Response::new(Empty {}))
    }
}
