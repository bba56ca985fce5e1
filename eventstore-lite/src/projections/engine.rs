//! One JavaScript projection: EventStoreDB's projection language (`prelude.js`) and the user's query in an
//! embedded QuickJS runtime (rquickjs), with a memory limit and a time limit per call, so a runaway or greedy
//! projection faults with a message instead of hurting the server.
//!
//! The runtime is not `Send`: a projection lives on the thread that created it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::{Context, Function, Runtime};
use serde::{Deserialize, Serialize};

const PRELUDE: &str = include_str!("prelude.js");

/// Limits a projection runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    /// For compiling the query and for each event.
    pub time_per_call: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            time_per_call: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    /// The query or a handler threw; the message carries the JavaScript error and, when known, its position.
    #[error("{0}")]
    Script(String),
    #[error("the projection ran longer than {0:?} on one call and was stopped")]
    TimedOut(Duration),
    #[error("the projection used more than {0} bytes of memory and was stopped")]
    OutOfMemory(usize),
    #[error("the JavaScript engine failed: {0}")]
    Engine(String),
}

/// What the query reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Sources {
    pub all: bool,
    pub streams: Vec<String>,
    pub categories: Vec<String>,
}

/// What the query declares, read once after compiling it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    pub sources: Sources,
    /// Named handlers (without `$init`, `$any`, …).
    pub event_types: Vec<String>,
    pub handles_any: bool,
    pub handles_deleted: bool,
    pub partitioned: bool,
    pub by_stream: bool,
    pub output_state: bool,
    pub result_stream: Option<String>,
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl Definition {
    /// Whether events of this type reach a handler.
    pub fn handles(&self, event_type: &str) -> bool {
        self.handles_any
            || self.event_types.iter().any(|t| t == event_type)
            || (event_type == "$streamDeleted" && self.handles_deleted)
    }

    /// `reorderEvents` with its `processingLag`: how long an event of a multi-stream projection is held back.
    pub fn processing_lag(&self) -> Option<Duration> {
        let reorder = self
            .options
            .get("reorderEvents")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if !reorder {
            return None;
        }
        let lag = self
            .options
            .get("processingLag")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Some(Duration::from_millis(lag))
    }

    pub fn bi_state(&self) -> bool {
        self.options
            .get("biState")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// EventStoreDB's checks of a query's sources and options, with its messages.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(lag) = self.processing_lag() {
            if self.sources.all {
                return Err("Event reordering cannot be used with fromAll()".to_owned());
            }
            if self.sources.streams.len() < 2 || !self.sources.categories.is_empty() {
                return Err(
                    "Event reordering is only available in fromStreams([]) projections".to_owned(),
                );
            }
            if lag < Duration::from_millis(50) {
                return Err("Event reordering requires processing lag at least of 50ms".to_owned());
            }
        }
        Ok(())
    }

    pub fn includes_links(&self) -> bool {
        self.options
            .get("$includeLinks")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
}

/// An event as a projection sees it (EventStoreDB's event object, before parsing).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventInput {
    pub stream_id: String,
    pub sequence_number: u64,
    pub event_type: String,
    pub event_id: String,
    pub category: String,
    pub is_json: bool,
    pub body_raw: String,
    pub metadata_raw: String,
    pub link_metadata_raw: String,
}

/// An event as a projection sees it, borrowed: what the runner puts in a batch.
#[derive(Debug, Clone)]
pub struct EventRef<'a> {
    pub stream_id: &'a str,
    pub sequence_number: u64,
    pub event_type: &'a str,
    pub event_id: uuid::fmt::Hyphenated,
    pub category: &'a str,
    pub is_json: bool,
    pub body_raw: std::borrow::Cow<'a, str>,
    pub metadata_raw: std::borrow::Cow<'a, str>,
    pub link_metadata_raw: std::borrow::Cow<'a, str>,
}

/// A batch of events for [`Projection::process_batch`]: one JSON array, parsed once on the JavaScript side.
#[derive(Debug, Default)]
pub struct Batch {
    json: Vec<u8>,
    len: usize,
}

impl Batch {
    pub fn push(&mut self, event: &EventRef<'_>) -> Result<(), ProjectionError> {
        self.json.push(if self.len == 0 { b'[' } else { b',' });
        // A tuple, in the order `__Event` in prelude.js reads it.
        let tuple = (
            event.stream_id,
            event.sequence_number,
            event.event_type,
            event.event_id,
            event.category,
            event.is_json,
            &event.body_raw,
            &event.metadata_raw,
            &event.link_metadata_raw,
        );
        serde_json::to_writer(&mut self.json, &tuple)
            .map_err(|e| ProjectionError::Engine(e.to_string()))?;
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn finish(mut self) -> String {
        if self.len == 0 {
            self.json.push(b'[');
        }
        self.json.push(b']');
        // Only serde_json wrote here: valid UTF-8.
        String::from_utf8(self.json).unwrap_or_default()
    }
}

/// What processing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BatchOutcome {
    /// Events a handler took.
    pub handled: u64,
    /// What was emitted, by index of the event in the batch.
    #[serde(default)]
    pub emits: Vec<(usize, Vec<Emitted>)>,
}

/// An event a handler emitted (`emit`, `linkTo`, `copyTo`, `linkStreamTo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Emitted {
    pub stream: String,
    pub event_type: String,
    pub body: String,
    pub metadata: Option<String>,
    pub is_json: bool,
}

/// What processing one event did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Processed {
    pub handled: bool,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub emitted: Vec<Emitted>,
}

/// A compiled projection with its state.
pub struct Projection {
    // The context must drop before the runtime.
    context: Context,
    _runtime: Runtime,
    deadline: Rc<Cell<Option<Instant>>>,
    long_call: Cell<bool>,

    limits: Limits,
    definition: Definition,
}

/// How many handler time limits a call over every state may take.
const LONG_CALL_FACTOR: u32 = 40;

impl Projection {
    /// Compiles `query`; a syntax error or an exception while defining it is a `Script` error.
    pub fn compile(query: &str, limits: Limits) -> Result<Self, ProjectionError> {
        let runtime = Runtime::new().map_err(|e| ProjectionError::Engine(e.to_string()))?;
        runtime.set_memory_limit(limits.memory_bytes);
        runtime.set_max_stack_size(1024 * 1024);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            watched.get().is_some_and(|d| Instant::now() > d)
        })));
        let context =
            Context::full(&runtime).map_err(|e| ProjectionError::Engine(e.to_string()))?;
        let mut projection = Projection {
            context,
            _runtime: runtime,
            deadline,
            long_call: Cell::new(false),
            limits,
            definition: Definition::default(),
        };
        let ticked = projection.deadline.clone();
        let per_event = limits.time_per_call;
        projection.context.with(|ctx| {
            let tick = Function::new(ctx.clone(), move || {
                ticked.set(Some(Instant::now() + per_event));
            })
            .map_err(|e| ProjectionError::Engine(e.to_string()))?;
            ctx.globals()
                .set("__tick", tick)
                .map_err(|e| ProjectionError::Engine(e.to_string()))
        })?;
        projection.call_script(PRELUDE)?;
        projection.call_script(query)?;
        let description = projection.call("__describe", None)?.unwrap_or_default();
        projection.definition = serde_json::from_str(&description)
            .map_err(|e| ProjectionError::Engine(format!("unreadable definition: {e}")))?;
        Ok(projection)
    }

    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    /// Runs the handler for one event (nothing when no handler matches).
    pub fn process(&self, event: &EventInput) -> Result<Processed, ProjectionError> {
        let input =
            serde_json::to_string(event).map_err(|e| ProjectionError::Engine(e.to_string()))?;
        let output = self
            .call("__process", Some(&[input.as_str()]))?
            .unwrap_or_default();
        serde_json::from_str(&output)
            .map_err(|e| ProjectionError::Engine(format!("unreadable outcome: {e}")))
    }

    /// Runs the handlers for a batch of events, in order; the time limit applies to each event. An error
    /// leaves the states part-way through the batch: the caller must not trust them any more.
    pub fn process_batch(&self, batch: Batch) -> Result<BatchOutcome, ProjectionError> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let input = batch.finish();
        let output = self
            .call("__processBatch", Some(&[input.as_str()]))?
            .unwrap_or_default();
        if let Ok(handled) = output.parse::<u64>() {
            return Ok(BatchOutcome {
                handled,
                emits: Vec::new(),
            });
        }
        serde_json::from_str(&output)
            .map_err(|e| ProjectionError::Engine(format!("unreadable outcome: {e}")))
    }

    /// Every partition's state as one JSON object (`{partition: state}`), and the shared state of a biState
    /// projection: what a checkpoint holds.
    pub fn snapshot(&self) -> Result<(String, Option<String>), ProjectionError> {
        let states = self
            .call_long("__snapshot", None)?
            .unwrap_or_else(|| "{}".to_owned());
        let shared = self.call("__snapshotShared", None)?;
        Ok((states, shared))
    }

    /// Puts back what [`Projection::snapshot`] returned, replacing every state.
    pub fn restore_all(&self, states: &str, shared: Option<&str>) -> Result<(), ProjectionError> {
        self.call_long("__restoreAll", Some(&[states, shared.unwrap_or_default()]))
            .map(|_| ())
    }

    /// The partitions changed since the last call (`""` stands for the shared state of a biState projection).
    pub fn take_dirty(&self) -> Result<Vec<String>, ProjectionError> {
        self.json_call("__takeDirty")
    }

    /// The partitions first seen since the last call, in order.
    pub fn take_new_partitions(&self) -> Result<Vec<String>, ProjectionError> {
        self.json_call("__takeNewPartitions")
    }

    pub fn partition_count(&self) -> Result<usize, ProjectionError> {
        self.json_call("__partitionCount")
    }

    fn json_call<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ProjectionError> {
        let json = self.call(name, None)?.unwrap_or_else(|| "null".to_owned());
        serde_json::from_str(&json).map_err(|e| ProjectionError::Engine(e.to_string()))
    }

    /// The state of a partition (`""` when not partitioned), as JSON.
    pub fn state(&self, partition: &str) -> Result<Option<String>, ProjectionError> {
        self.call("__state", Some(&[partition]))
    }

    /// The result of a partition: its state through `transformBy` / `filterBy`.
    pub fn result(&self, partition: &str) -> Result<Option<String>, ProjectionError> {
        self.call("__result", Some(&[partition]))
    }

    /// Puts back a partition's state from a checkpoint.
    pub fn restore(&self, partition: &str, state_json: &str) -> Result<(), ProjectionError> {
        self.call("__restore", Some(&[partition, state_json]))
            .map(|_| ())
    }

    pub fn partitions(&self) -> Result<Vec<String>, ProjectionError> {
        let json = self
            .call("__partitions", None)?
            .unwrap_or_else(|| "[]".to_owned());
        serde_json::from_str(&json).map_err(|e| ProjectionError::Engine(e.to_string()))
    }

    fn arm(&self) {
        self.deadline
            .set(Some(Instant::now() + self.limits.time_per_call));
    }

    /// A call over every state (snapshot, restore): allowed [`LONG_CALL_FACTOR`] times a handler's limit.
    fn call_long(
        &self,
        name: &str,
        args: Option<&[&str]>,
    ) -> Result<Option<String>, ProjectionError> {
        self.long_call.set(true);
        let result = self.call(name, args);
        self.long_call.set(false);
        result
    }

    fn call_script(&self, source: &str) -> Result<(), ProjectionError> {
        self.arm();
        let result = self.context.with(|ctx| match ctx.eval::<(), _>(source) {
            Ok(()) => Ok(()),
            Err(rquickjs::Error::Exception) => Err(self.exception(&ctx)),
            Err(e) => Err(self.engine_error(e)),
        });
        self.deadline.set(None);
        result
    }

    /// Calls a prelude function with string arguments; it returns a string or null.
    fn call(&self, name: &str, args: Option<&[&str]>) -> Result<Option<String>, ProjectionError> {
        if self.long_call.get() {
            self.deadline.set(Some(
                Instant::now() + self.limits.time_per_call * LONG_CALL_FACTOR,
            ));
        } else {
            self.arm();
        }
        let result = self.context.with(|ctx| {
            let function: Function = ctx.globals().get(name).map_err(|e| self.engine_error(e))?;
            let outcome = match args.unwrap_or_default() {
                [] => function.call::<_, Option<String>>(()),
                [a] => function.call::<_, Option<String>>((*a,)),
                [a, b, ..] => function.call::<_, Option<String>>((*a, *b)),
            };
            match outcome {
                Ok(value) => Ok(value),
                Err(rquickjs::Error::Exception) => Err(self.exception(&ctx)),
                Err(e) => Err(self.engine_error(e)),
            }
        });
        self.deadline.set(None);
        result
    }

    fn timed_out(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() > d)
    }

    fn engine_error(&self, error: rquickjs::Error) -> ProjectionError {
        let text = error.to_string();
        if self.timed_out() {
            ProjectionError::TimedOut(self.limits.time_per_call)
        } else if text.contains("out of memory") || matches!(error, rquickjs::Error::Allocation) {
            ProjectionError::OutOfMemory(self.limits.memory_bytes)
        } else {
            ProjectionError::Engine(text)
        }
    }

    fn exception(&self, ctx: &rquickjs::Ctx<'_>) -> ProjectionError {
        if self.timed_out() {
            return ProjectionError::TimedOut(self.limits.time_per_call);
        }
        let value = ctx.catch();
        if let Some(exception) = value.as_exception() {
            let message = exception.message().unwrap_or_default();
            if message.contains("out of memory") {
                return ProjectionError::OutOfMemory(self.limits.memory_bytes);
            }
            let stack = exception.stack().unwrap_or_default();
            let position = stack
                .lines()
                .find(|l| l.contains("eval_script"))
                .map(str::trim)
                .unwrap_or_default();
            return ProjectionError::Script(if position.is_empty() {
                message
            } else {
                format!("{message} ({position})")
            });
        }
        // QuickJS throws `null` when it cannot even allocate its "out of memory" error (what a greedy query
        // meets at the limit); the message can only be found when there was memory to build it. A query that
        // throws `null` itself is reported the same way.
        if value.is_null() {
            return ProjectionError::OutOfMemory(self.limits.memory_bytes);
        }
        let text: Option<String> = value.as_string().and_then(|s| s.to_string().ok());
        ProjectionError::Script(
            text.unwrap_or_else(|| "the projection threw a non-Error value".to_owned()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, n: u64, event_type: &str, body: &str) -> EventInput {
        EventInput {
            stream_id: stream.into(),
            sequence_number: n,
            event_type: event_type.into(),
            event_id: format!("00000000-0000-0000-0000-{n:012}"),
            category: stream.split('-').next().unwrap_or_default().into(),
            is_json: true,
            body_raw: body.into(),
            metadata_raw: "{\"$correlationId\":\"c1\"}".into(),
            link_metadata_raw: String::new(),
        }
    }

    #[test]
    fn a_counting_projection_declares_its_sources_and_keeps_state() {
        let p = Projection::compile(
            "fromAll().when({ $init: function(){ return { count: 0, total: 0 }; },
                              FundsDeposited: function(s, e){ s.count += 1; s.total += e.body.amount; } })",
            Limits::default(),
        )
        .expect("compiles");
        assert!(p.definition().sources.all);
        assert_eq!(p.definition().event_types, ["FundsDeposited"]);
        assert!(!p.definition().handles("FundsWithdrawn"));
        for n in 0..3 {
            assert!(
                p.process(&event("account-1", n, "FundsDeposited", "{\"amount\":5}"))
                    .expect("runs")
                    .handled
            );
        }
        assert!(
            !p.process(&event("account-1", 3, "FundsWithdrawn", "{\"amount\":5}"))
                .expect("runs")
                .handled
        );
        assert_eq!(
            p.state("").expect("state").as_deref(),
            Some("{\"count\":3,\"total\":15}")
        );
    }

    #[test]
    fn partitions_transforms_and_emits() {
        let p = Projection::compile(
            "options({ resultStreamName: 'r' });
             fromCategory('account').partitionBy(function(e){ return e.body.region; })
               .when({ $any: function(s, e){ s.n = (s.n || 0) + 1; if (s.n == 2) emit('alerts', 'Twice', { region: e.partition }); linkTo('all-seen', e); } })
               .transformBy(function(s){ return { doubled: s.n * 2 }; })",
            Limits::default(),
        )
        .expect("compiles");
        assert_eq!(p.definition().sources.categories, ["account"]);
        assert!(p.definition().partitioned);
        let first = p
            .process(&event("account-1", 0, "X", "{\"region\":\"north\"}"))
            .expect("runs");
        assert_eq!(first.partition, "north");
        assert_eq!(first.emitted.len(), 1);
        assert_eq!(first.emitted[0].event_type, "$>");
        assert_eq!(first.emitted[0].body, "0@account-1");
        let second = p
            .process(&event("account-2", 0, "X", "{\"region\":\"north\"}"))
            .expect("runs");
        assert_eq!(second.emitted[0].stream, "alerts");
        assert_eq!(second.emitted[0].body, "{\"region\":\"north\"}");
        p.process(&event("account-3", 0, "X", "{\"region\":\"south\"}"))
            .expect("runs");
        assert_eq!(
            p.result("north").expect("result").as_deref(),
            Some("{\"doubled\":4}")
        );
        let mut partitions = p.partitions().expect("partitions");
        partitions.sort();
        assert_eq!(partitions, ["north", "south"]);
        p.restore("west", "{\"n\":10}").expect("restores");
        assert_eq!(
            p.result("west").expect("result").as_deref(),
            Some("{\"doubled\":20}")
        );
    }

    fn batch_of(events: &[EventInput]) -> Batch {
        let mut batch = Batch::default();
        for e in events {
            batch
                .push(&EventRef {
                    stream_id: &e.stream_id,
                    sequence_number: e.sequence_number,
                    event_type: &e.event_type,
                    event_id: uuid::Uuid::nil().hyphenated(),
                    category: &e.category,
                    is_json: e.is_json,
                    body_raw: e.body_raw.as_str().into(),
                    metadata_raw: e.metadata_raw.as_str().into(),
                    link_metadata_raw: e.link_metadata_raw.as_str().into(),
                })
                .expect("serialises");
        }
        batch
    }

    #[test]
    fn a_batch_runs_every_handler_in_order_and_reports_emits_by_index() {
        let p = Projection::compile(
            "options({ biState: true });
             fromAll().foreachStream().when({
               $init: function(){ return { n: 0 }; },
               $initShared: function(){ return { total: 0 }; },
               X: function(s, e){ s[0].n += 1; s[1].total += e.body.amount; if (e.body.amount > 5) emit('big', 'Big', e.body); return s; }
             })",
            Limits::default(),
        )
        .expect("compiles");
        let events = [
            event("a-1", 0, "X", "{\"amount\":1}"),
            event("a-2", 0, "Y", "{\"amount\":100}"),
            event("a-1", 1, "X", "{\"amount\":10}"),
        ];
        let outcome = p.process_batch(batch_of(&events)).expect("runs");
        assert_eq!(outcome.handled, 2);
        assert_eq!(outcome.emits.len(), 1);
        assert_eq!(outcome.emits[0].0, 2);
        assert_eq!(outcome.emits[0].1[0].body, "{\"amount\":10}");
        assert_eq!(p.state("a-1").expect("state").as_deref(), Some("{\"n\":2}"));
        assert_eq!(
            p.state("").expect("state").as_deref(),
            Some("{\"total\":11}")
        );
        assert_eq!(p.take_new_partitions().expect("partitions"), ["a-1"]);
        let mut dirty = p.take_dirty().expect("dirty");
        dirty.sort();
        assert_eq!(dirty, ["", "a-1"]);
        let (states, shared) = p.snapshot().expect("snapshot");
        let copy = Projection::compile(
            "fromAll().foreachStream().when({ $any: function(){} })",
            Limits::default(),
        )
        .expect("compiles");
        copy.restore_all(&states, shared.as_deref())
            .expect("restores");
        assert_eq!(
            copy.state("a-1").expect("state").as_deref(),
            Some("{\"n\":2}")
        );
    }

    #[test]
    fn a_query_cannot_reach_the_per_event_timer() {
        let limits = Limits {
            time_per_call: Duration::from_millis(50),
            ..Limits::default()
        };
        let sneaky = Projection::compile(
            "fromAll().when({ $any: function(){ while (true) { if (typeof __tick === 'function') { __tick(); } } } })",
            limits,
        )
        .expect("compiles");
        assert_eq!(
            sneaky
                .process_batch(batch_of(&[event("a-1", 0, "X", "{}")]))
                .err(),
            Some(ProjectionError::TimedOut(limits.time_per_call))
        );
    }

    #[test]
    fn errors_runaways_and_greedy_projections_fault_with_a_message() {
        let syntax = Projection::compile("fromAll().when({", Limits::default())
            .err()
            .expect("a syntax error");
        assert!(matches!(syntax, ProjectionError::Script(_)), "{syntax:?}");
        let bad_option = Projection::compile("options({ nope: 1 }); fromAll()", Limits::default())
            .err()
            .expect("refused");
        assert!(
            bad_option.to_string().contains("Unknown option 'nope'"),
            "{bad_option}"
        );

        let throws = Projection::compile(
            "fromAll().when({ $any: function(s, e){ throw new Error('boom ' + e.sequenceNumber); } })",
            Limits::default(),
        )
        .expect("compiles");
        let error = throws
            .process(&event("a-1", 7, "X", "{}"))
            .err()
            .expect("faults");
        assert!(error.to_string().contains("boom 7"), "{error}");

        let limits = Limits {
            time_per_call: Duration::from_millis(50),
            ..Limits::default()
        };
        let spins = Projection::compile(
            "fromAll().when({ $any: function(){ while (true) {} } })",
            limits,
        )
        .expect("compiles");
        assert_eq!(
            spins.process(&event("a-1", 0, "X", "{}")).err(),
            Some(ProjectionError::TimedOut(limits.time_per_call))
        );

        let limits = Limits {
            memory_bytes: 8 * 1024 * 1024,
            ..Limits::default()
        };
        let greedy = Projection::compile(
            "fromAll().when({ $any: function(s){ s.a = []; for (;;) { s.a.push(new Array(1000).fill('x')); } } })",
            limits,
        )
        .expect("compiles");
        let error = greedy
            .process(&event("a-1", 0, "X", "{}"))
            .err()
            .expect("stopped");
        assert!(
            matches!(
                error,
                ProjectionError::OutOfMemory(_) | ProjectionError::TimedOut(_)
            ),
            "a greedy projection is stopped: {error:?}"
        );
    }
}
