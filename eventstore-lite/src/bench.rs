//! The load tool behind `eventstore-lite bench`, in the spirit of EventStoreDB's test client: write-flood,
//! read-flood, catch-up, latency and restart, each driven through the official `eventstore` client and each
//! printing one JSON line on stdout (progress goes to stderr).
//!
//! Every test talks to a server given by `--connection-string`, or, with `--embedded` and no connection
//! string, to a server started in this process (durable in a temporary directory unless `--db` or `--mem-db`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, ReadAllOptions,
    ReadStreamOptions, StreamPosition, SubscribeToAllOptions, SubscribeToStreamOptions,
    SubscriptionEvent,
};
use futures::StreamExt;
use serde_json::json;

use crate::{start, RunningServer, ServerConfig};

const DEFAULT_CONNECTION_STRING: &str = "esdb://127.0.0.1:2113?tls=false";

/// Every event the tool writes has this type.
const BENCH_EVENT_TYPE: &str = "BenchEventWritten";

/// How often the long-running phases report progress on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// EventStoreDB refuses appends above 16 MiB; staying well below keeps pre-write batches valid whatever `--size`.
const MAX_PREWRITE_APPEND_BYTES: usize = 4 * 1024 * 1024;

/// A flood gives up once this many appends have failed: a server that is down must not cost minutes of retries.
const MAX_FAILED_APPENDS: u64 = 1_000;

/// How long to wait for a server to answer its first read before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Streams written by the pre-write phase of read-flood and catch-up.
const PREWRITE_STREAM_PREFIX: &str = "bench-fill";
const PREWRITE_STREAMS: u64 = 1_000;
const PREWRITE_EVENTS_PER_APPEND: usize = 500;
const PREWRITE_CONCURRENCY: u64 = 16;

/// `eventstore-lite bench …`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Many concurrent appends (ExpectedRevision::Any) spread over many streams: events/s and append latency.
    WriteFlood(WriteFloodArgs),
    /// Reads `$all` forwards from the start, pre-writing events first if the store holds too few.
    ReadFlood(ReadFloodArgs),
    /// A catch-up subscription to `$all` (or one stream) from the start, counting events until it has seen N.
    CatchUp(CatchUpArgs),
    /// One client appending single events one after another, compared with this disk's raw fsync latency.
    Latency(LatencyArgs),
    /// Time from opening a store of N events (filled on first use) to its first answered read; clean and after a crash.
    Restart(RestartArgs),
}

/// Which server to load.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Server to load [default: esdb://127.0.0.1:2113?tls=false]; leave it unset with `--embedded` to start a
    /// server in this process instead.
    #[arg(long, env = "EVENTSTORE_CONNECTION_STRING")]
    pub connection_string: Option<String>,
    /// Start an in-process server (durable, in a temporary directory removed at the end) when no connection
    /// string is given.
    #[arg(long)]
    pub embedded: bool,
    /// Data directory of the embedded server; kept at the end.
    #[arg(long, requires = "embedded")]
    pub db: Option<PathBuf>,
    /// Keep the embedded server's data in memory.
    #[arg(long, requires = "embedded", conflicts_with = "db")]
    pub mem_db: bool,
    /// Do not run the system projections in the embedded server (they write link events for every event).
    #[arg(long, requires = "embedded")]
    pub no_standard_projections: bool,
}

#[derive(clap::Args, Debug)]
pub struct WriteFloodArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Concurrent tasks, each with at most one append in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Total number of appends.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Number of distinct streams the appends are spread over, round-robin.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub streams: u64,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Events in each append.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub events_per_append: u64,
    /// Client instances (one HTTP/2 connection each) shared round-robin by the tasks.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
}

#[derive(clap::Args, Debug)]
pub struct ReadFloodArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Events each reader reads from the start of `$all` (pre-written first if the store holds fewer).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Concurrent readers, each on its own connection, each reading the same events.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Bytes of data per pre-written event.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
}

#[derive(clap::Args, Debug)]
pub struct CatchUpArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Events each subscription must see (pre-written first if the store holds fewer).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Concurrent subscriptions, each on its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Subscribe to this stream instead of `$all`.
    #[arg(long)]
    pub stream: Option<String>,
    /// Bytes of data per pre-written event.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Give up if the subscriptions have not seen all events after this many seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

#[derive(clap::Args, Debug)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sequential single-event appends that are measured.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Appends made before measuring, so connection set-up is not counted.
    #[arg(long, default_value_t = 50)]
    pub warmup: u64,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// 256-byte write + fsync rounds used to measure the disk.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub fsync_samples: u64,
    /// Directory on the disk to measure [default: the embedded server's data directory, else the system
    /// temporary directory].
    #[arg(long)]
    pub fsync_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    /// Data directory of the store to restart; filled with events on first use and kept.
    #[arg(long)]
    pub db: PathBuf,
    /// Events the store must hold (in the tool's fill streams) before restarts are measured.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Events per append while filling.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub events_per_append: u64,
    /// Concurrent appending tasks while filling.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub fill_clients: u64,
    /// Client instances (connections) shared by the filling tasks.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Streams the fill is spread over.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub streams: u64,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Skip the measurement after a simulated crash.
    #[arg(long)]
    pub no_crash: bool,
    /// Do not run the system projections (they write link events for every event).
    #[arg(long)]
    pub no_standard_projections: bool,
    /// Give up if a restarted server has not answered a read after this many seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub ready_timeout_secs: u64,
}

/// Runs one load test and prints its result as one JSON line on stdout.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = match args.command {
        BenchCommand::WriteFlood(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = write_flood(&target, &args).await;
            target.close_after(outcome).await?
        }
        BenchCommand::ReadFlood(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = read_flood(&target, &args).await;
            target.close_after(outcome).await?
        }
        BenchCommand::CatchUp(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = catch_up(&target, &args).await;
            target.close_after(outcome).await?
        }
        BenchCommand::Latency(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = latency(&target, &args).await;
            target.close_after(outcome).await?
        }
        BenchCommand::Restart(args) => restart(&args).await?,
    };
    let line = serde_json::to_string(&report).context("serialize the report")?;
    println!("{line}");
    Ok(())
}

/// The server under load: an external one, or one started in this process and stopped by [`Target::close_after`].
struct Target {
    connection_string: String,
    /// `external`, `embedded-disk` or `embedded-memory`, copied into every report.
    kind: &'static str,
    server: Option<RunningServer>,
    /// The embedded server's data directory, if it has one.
    data_dir: Option<PathBuf>,
    /// A directory this tool created and must remove at the end.
    temporary_dir: Option<PathBuf>,
}

impl Target {
    async fn open(args: &TargetArgs) -> anyhow::Result<Self> {
        if let Some(connection_string) = &args.connection_string {
            return Ok(Self::external(connection_string.clone()));
        }
        if !args.embedded {
            return Ok(Self::external(DEFAULT_CONNECTION_STRING.to_owned()));
        }
        let (mut config, kind, data_dir, temporary_dir) = if args.mem_db {
            (ServerConfig::in_memory(), "embedded-memory", None, None)
        } else if let Some(db) = &args.db {
            (
                ServerConfig::on_disk(db.clone()),
                "embedded-disk",
                Some(db.clone()),
                None,
            )
        } else {
            let dir = std::env::temp_dir()
                .join(format!("eventstore-lite-bench-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create temporary data directory {}", dir.display()))?;
            (
                ServerConfig::on_disk(dir.clone()),
                "embedded-disk",
                Some(dir.clone()),
                Some(dir),
            )
        };
        config.start_standard_projections = !args.no_standard_projections;
        let server = match start(config).await {
            Ok(server) => server,
            Err(error) => {
                if let Some(dir) = &temporary_dir {
                    remove_temporary_dir(dir);
                }
                return Err(error.context("start the embedded server"));
            }
        };
        let connection_string = server.connection_string();
        eprintln!("bench: embedded server ({kind}) at {connection_string}");
        Ok(Self {
            connection_string,
            kind,
            server: Some(server),
            data_dir,
            temporary_dir,
        })
    }

    fn external(connection_string: String) -> Self {
        eprintln!("bench: loading {connection_string}");
        Self {
            connection_string,
            kind: "external",
            server: None,
            data_dir: None,
            temporary_dir: None,
        }
    }

    /// Stops the embedded server and removes the temporary directory, whatever the outcome of the test; the
    /// test's own error wins over a failure to stop.
    async fn close_after<T>(self, outcome: anyhow::Result<T>) -> anyhow::Result<T> {
        let closed = match self.server {
            Some(server) => server
                .shutdown()
                .await
                .context("shut down the embedded server"),
            None => Ok(()),
        };
        if let Some(dir) = &self.temporary_dir {
            remove_temporary_dir(dir);
        }
        match (outcome, closed) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(error)) => Err(error),
            (Err(error), Ok(())) => Err(error),
            (Err(error), Err(close_error)) => {
                eprintln!("bench: {close_error:#}");
                Err(error)
            }
        }
    }
}

fn remove_temporary_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("bench: could not remove {}: {error}", dir.display());
    }
}

fn connect(connection_string: &str) -> anyhow::Result<Client> {
    let settings: ClientSettings = connection_string
        .parse()
        .with_context(|| format!("parse connection string {connection_string:?}"))?;
    Client::new(settings).context("create an eventstore client")
}

fn connect_many(connection_string: &str, count: u64) -> anyhow::Result<Vec<Client>> {
    (0..count).map(|_| connect(connection_string)).collect()
}

/// Waits until the server answers a read of the last event of `$all`, creating a fresh client after each
/// failure (the official client gives up on a connection for good once its discovery attempts run out).
/// With `require_event`, an empty answer does not count: used where the store is known to hold events.
async fn wait_until_ready(
    connection_string: &str,
    timeout: Duration,
    require_event: bool,
) -> anyhow::Result<Client> {
    let started = Instant::now();
    let options = ReadAllOptions::default()
        .position(StreamPosition::End)
        .max_count(1);
    let mut last_error = anyhow!("no attempt was made");
    for _attempt in 0..100_000u32 {
        let remaining = match timeout.checked_sub(started.elapsed()) {
            Some(remaining) if !remaining.is_zero() => remaining,
            _ => break,
        };
        let client = connect(connection_string)?;
        let attempt = async {
            let mut stream = client
                .read_all(&options)
                .await
                .context("read $all backwards")?;
            let event = stream.next().await.context("read the last event of $all")?;
            anyhow::Ok(event.is_some())
        };
        match tokio::time::timeout(remaining, attempt).await {
            Ok(Ok(true)) => return Ok(client),
            Ok(Ok(false)) if !require_event => return Ok(client),
            Ok(Ok(false)) => last_error = anyhow!("$all is still empty"),
            Ok(Err(error)) => last_error = error,
            Err(_) => last_error = anyhow!("the read did not finish in time"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(last_error.context(format!(
        "server at {connection_string} did not answer a read within {timeout:?}"
    )))
}

fn payload(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        (count as f64 / seconds).round()
    } else {
        0.0
    }
}

fn round_ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// p50 / p99 / p99.9 / max of latencies in microseconds (nearest-rank).
fn latency_summary(mut samples: Vec<u32>) -> serde_json::Value {
    samples.sort_unstable();
    let rank = |quantile: f64| -> u32 {
        if samples.is_empty() {
            return 0;
        }
        let rank = (quantile * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    };
    json!({
        "p50": rank(0.50),
        "p99": rank(0.99),
        "p999": rank(0.999),
        "max": samples.last().copied().unwrap_or(0),
    })
}

/// Prints `label: done/total unit (rate/s)` on stderr every [`PROGRESS_INTERVAL`] until dropped.
struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn spawn(label: &'static str, unit: &'static str, done: Arc<AtomicU64>, total: u64) -> Self {
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = tokio::time::interval_at(
                tokio::time::Instant::now() + PROGRESS_INTERVAL,
                PROGRESS_INTERVAL,
            );
            // Dropping the guard aborts this task; the bound only keeps the loop finite on paper.
            for _tick in 0..u32::MAX {
                ticks.tick().await;
                let done = done.load(Ordering::Relaxed);
                eprintln!(
                    "{label}: {done}/{total} {unit} ({:.0}/s)",
                    per_second(done, started.elapsed())
                );
                if done >= total {
                    break;
                }
            }
        });
        Self { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A set of appends to run with bounded concurrency.
struct AppendPlan {
    appends: u64,
    events_per_append: u64,
    /// Append number `i` goes to `streams[i % streams.len()]`.
    streams: Arc<Vec<String>>,
    concurrency: u64,
    payload: Bytes,
    record_latency: bool,
    label: &'static str,
}

#[derive(Default)]
struct AppendOutcome {
    latencies_us: Vec<u32>,
    succeeded: u64,
    failed: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

impl AppendOutcome {
    fn ensure_no_failure(&self) -> anyhow::Result<()> {
        if self.failed > 0 {
            bail!(
                "{} appends failed, the first with: {}",
                self.failed,
                self.first_error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok(())
    }
}

/// Runs `plan` on `clients` (shared round-robin by the tasks) and collects latencies and failures.
async fn run_appends(clients: &[Client], plan: AppendPlan) -> anyhow::Result<AppendOutcome> {
    if clients.is_empty() || plan.streams.is_empty() {
        bail!("an append plan needs at least one client and one stream");
    }
    let next_append = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let _progress = Progress::spawn(plan.label, "appends", completed.clone(), plan.appends);
    let per_task_capacity = if plan.record_latency {
        usize::try_from(plan.appends / plan.concurrency + 1).unwrap_or(0)
    } else {
        0
    };

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task_index in 0..plan.concurrency {
        let client = clients[(task_index % clients.len() as u64) as usize].clone();
        let next_append = next_append.clone();
        let completed = completed.clone();
        let failed = failed.clone();
        let streams = plan.streams.clone();
        let payload = plan.payload.clone();
        let (appends, events_per_append, record_latency) =
            (plan.appends, plan.events_per_append, plan.record_latency);
        tasks.spawn(async move {
            let options = AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any);
            let mut outcome = AppendOutcome {
                latencies_us: Vec::with_capacity(per_task_capacity),
                ..Default::default()
            };
            // Each iteration claims a distinct append number, so the loop ends after at most `appends` rounds.
            loop {
                let append_number = next_append.fetch_add(1, Ordering::Relaxed);
                if append_number >= appends || failed.load(Ordering::Relaxed) >= MAX_FAILED_APPENDS
                {
                    break;
                }
                let stream = &streams[(append_number % streams.len() as u64) as usize];
                let events: Vec<EventData> = (0..events_per_append)
                    .map(|_| EventData::binary(BENCH_EVENT_TYPE, payload.clone()))
                    .collect();
                let sent = Instant::now();
                match client
                    .append_to_stream(stream.as_str(), &options, events)
                    .await
                {
                    Ok(_) => {
                        if record_latency {
                            outcome.latencies_us.push(micros(sent.elapsed()));
                        }
                        outcome.succeeded += 1;
                    }
                    Err(error) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        outcome.failed += 1;
                        outcome.first_error.get_or_insert_with(|| error.to_string());
                    }
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
            outcome
        });
    }

    let mut total = AppendOutcome::default();
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.context("an append task panicked")?;
        total.latencies_us.extend(outcome.latencies_us);
        total.succeeded += outcome.succeeded;
        total.failed += outcome.failed;
        if total.first_error.is_none() {
            total.first_error = outcome.first_error;
        }
    }
    total.elapsed = started.elapsed();
    if let Some(error) = &total.first_error {
        eprintln!(
            "{}: {} appends failed, the first with: {error}",
            plan.label, total.failed
        );
    }
    Ok(total)
}

fn numbered_streams(prefix: &str, count: u64) -> Arc<Vec<String>> {
    Arc::new(
        (0..count)
            .map(|index| format!("{prefix}-{index}"))
            .collect(),
    )
}

fn check_append_size(events_per_append: u64, size: usize) -> anyhow::Result<()> {
    let bytes = events_per_append.saturating_mul(size as u64);
    if bytes > 16 * 1024 * 1024 {
        bail!(
            "{events_per_append} events of {size} bytes exceed EventStoreDB's 16 MiB append limit"
        );
    }
    Ok(())
}

async fn write_flood(target: &Target, args: &WriteFloodArgs) -> anyhow::Result<serde_json::Value> {
    check_append_size(args.events_per_append, args.size)?;
    wait_until_ready(&target.connection_string, READY_TIMEOUT, false).await?;
    let clients = connect_many(&target.connection_string, args.connections)?;
    eprintln!(
        "write-flood: {} appends of {} x {} bytes by {} clients over {} connections to {} streams",
        args.requests,
        args.events_per_append,
        args.size,
        args.clients,
        args.connections,
        args.streams
    );
    let outcome = run_appends(
        &clients,
        AppendPlan {
            appends: args.requests,
            events_per_append: args.events_per_append,
            streams: numbered_streams("bench-write", args.streams),
            concurrency: args.clients,
            payload: payload(args.size),
            record_latency: true,
            label: "write-flood",
        },
    )
    .await?;
    let events = outcome.succeeded * args.events_per_append;
    Ok(json!({
        "test": "write-flood",
        "target": target.kind,
        "clients": args.clients,
        "connections": args.connections,
        "requests": args.requests,
        "streams": args.streams,
        "events": events,
        "events_per_append": args.events_per_append,
        "size": args.size,
        "seconds": outcome.elapsed.as_secs_f64(),
        "events_per_sec": per_second(events, outcome.elapsed),
        "appends_per_sec": per_second(outcome.succeeded, outcome.elapsed),
        "latency_us": latency_summary(outcome.latencies_us),
        "errors": outcome.failed,
    }))
}

/// Reads up to `limit` events of `$all` from the start and returns how many there were.
async fn read_all_count(client: &Client, limit: u64) -> anyhow::Result<u64> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let options = ReadAllOptions::default()
        .position(StreamPosition::Start)
        .max_count(limit_usize);
    let mut stream = client
        .read_all(&options)
        .await
        .context("start reading $all")?;
    let mut count = 0u64;
    // The server sends at most `limit` events; the bound guards against one that does not honour the count.
    while count < limit {
        match stream.next().await.context("read $all")? {
            Some(_event) => count += 1,
            None => break,
        }
    }
    Ok(count)
}

/// Makes sure `$all` holds at least `wanted` events, appending to the pre-write streams what is missing.
/// Returns the number of events written.
async fn ensure_all_holds(
    connection_string: &str,
    wanted: u64,
    size: usize,
) -> anyhow::Result<u64> {
    let client = wait_until_ready(connection_string, READY_TIMEOUT, false).await?;
    let counting_started = Instant::now();
    let present = read_all_count(&client, wanted).await?;
    eprintln!(
        "prewrite: $all holds {present} events (counted in {:.1} s)",
        counting_started.elapsed().as_secs_f64()
    );
    if present >= wanted {
        return Ok(0);
    }
    let missing = wanted - present;
    let events_per_append = prewrite_events_per_append(size);
    let appends = missing.div_ceil(events_per_append);
    let clients = connect_many(connection_string, 4)?;
    eprintln!(
        "prewrite: appending {missing} events of {size} bytes, {events_per_append} per append"
    );
    let outcome = run_appends(
        &clients,
        AppendPlan {
            appends,
            events_per_append,
            streams: numbered_streams(PREWRITE_STREAM_PREFIX, PREWRITE_STREAMS),
            concurrency: PREWRITE_CONCURRENCY,
            payload: payload(size),
            record_latency: false,
            label: "prewrite",
        },
    )
    .await?;
    outcome.ensure_no_failure().context("pre-write events")?;
    Ok(outcome.succeeded * events_per_append)
}

fn prewrite_events_per_append(size: usize) -> u64 {
    let fitting = MAX_PREWRITE_APPEND_BYTES / size.max(1);
    fitting.clamp(1, PREWRITE_EVENTS_PER_APPEND) as u64
}

async fn read_flood(target: &Target, args: &ReadFloodArgs) -> anyhow::Result<serde_json::Value> {
    check_append_size(1, args.size)?;
    let prewritten = ensure_all_holds(&target.connection_string, args.events, args.size).await?;
    let clients = connect_many(&target.connection_string, args.clients)?;
    for client in &clients {
        // Connect every reader before the clock starts.
        read_all_count(client, 1)
            .await
            .context("connect a reader")?;
    }
    let total_wanted = args.events * args.clients;
    eprintln!(
        "read-flood: {} readers each reading {} events of $all",
        args.clients, args.events
    );
    let read = Arc::new(AtomicU64::new(0));
    let _progress = Progress::spawn("read-flood", "events", read.clone(), total_wanted);
    let started = Instant::now();
    let mut readers = tokio::task::JoinSet::new();
    for client in clients {
        let read = read.clone();
        let limit = args.events;
        readers.spawn(async move {
            let options = ReadAllOptions::default()
                .position(StreamPosition::Start)
                .max_count(usize::try_from(limit).unwrap_or(usize::MAX));
            let mut stream = client
                .read_all(&options)
                .await
                .context("start reading $all")?;
            let mut count = 0u64;
            while count < limit {
                match stream.next().await.context("read $all")? {
                    Some(_event) => {
                        count += 1;
                        if count % 4096 == 0 {
                            read.fetch_add(4096, Ordering::Relaxed);
                        }
                    }
                    None => break,
                }
            }
            anyhow::Ok(count)
        });
    }
    let mut events_read = 0u64;
    while let Some(joined) = readers.join_next().await {
        events_read += joined.context("a reader panicked")??;
    }
    let elapsed = started.elapsed();
    if events_read < total_wanted {
        eprintln!("read-flood: read {events_read} events, fewer than the {total_wanted} wanted");
    }
    Ok(json!({
        "test": "read-flood",
        "target": target.kind,
        "clients": args.clients,
        "events": events_read,
        "events_per_client": args.events,
        "prewritten": prewritten,
        "seconds": elapsed.as_secs_f64(),
        "events_per_sec": per_second(events_read, elapsed),
    }))
}

/// Number of events in `stream` (its last revision + 1), 0 if it does not exist.
async fn stream_length(client: &Client, stream: &str) -> anyhow::Result<u64> {
    let options = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .max_count(1);
    let last = match client.read_stream(stream, &options).await {
        Ok(mut events) => events.next().await,
        Err(error) => Err(error),
    };
    match last {
        Ok(Some(event)) => Ok(event.get_original_event().revision + 1),
        Ok(None) | Err(eventstore::Error::ResourceNotFound) => Ok(0),
        Err(error) => Err(error).with_context(|| format!("read the last event of {stream}")),
    }
}

/// Makes sure `stream` holds at least `wanted` events; returns the number written.
async fn ensure_stream_holds(
    connection_string: &str,
    stream: &str,
    wanted: u64,
    size: usize,
) -> anyhow::Result<u64> {
    let client = wait_until_ready(connection_string, READY_TIMEOUT, false).await?;
    let present = stream_length(&client, stream).await?;
    eprintln!("prewrite: {stream} holds {present} events");
    if present >= wanted {
        return Ok(0);
    }
    let events_per_append = prewrite_events_per_append(size);
    let outcome = run_appends(
        &[client],
        AppendPlan {
            appends: (wanted - present).div_ceil(events_per_append),
            events_per_append,
            streams: Arc::new(vec![stream.to_owned()]),
            concurrency: 4,
            payload: payload(size),
            record_latency: false,
            label: "prewrite",
        },
    )
    .await?;
    outcome.ensure_no_failure().context("pre-write events")?;
    Ok(outcome.succeeded * events_per_append)
}

async fn catch_up(target: &Target, args: &CatchUpArgs) -> anyhow::Result<serde_json::Value> {
    check_append_size(1, args.size)?;
    let prewritten = match &args.stream {
        Some(stream) => {
            ensure_stream_holds(&target.connection_string, stream, args.events, args.size).await?
        }
        None => ensure_all_holds(&target.connection_string, args.events, args.size).await?,
    };
    let clients = connect_many(&target.connection_string, args.clients)?;
    for client in &clients {
        // Connect every subscriber before the clock starts.
        read_all_count(client, 1)
            .await
            .context("connect a subscriber")?;
    }
    let source = args.stream.clone().unwrap_or_else(|| "$all".to_owned());
    let total_wanted = args.events * args.clients;
    eprintln!(
        "catch-up: {} subscriptions to {source}, each until it has seen {} events",
        args.clients, args.events
    );
    let seen = Arc::new(AtomicU64::new(0));
    let _progress = Progress::spawn("catch-up", "events", seen.clone(), total_wanted);
    let started = Instant::now();
    let mut subscribers = tokio::task::JoinSet::new();
    for client in clients {
        let seen = seen.clone();
        let wanted = args.events;
        let stream = args.stream.clone();
        subscribers.spawn(async move {
            let mut subscription = match &stream {
                Some(stream) => {
                    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Start);
                    client.subscribe_to_stream(stream.as_str(), &options).await
                }
                None => {
                    let options = SubscribeToAllOptions::default().position(StreamPosition::Start);
                    client.subscribe_to_all(&options).await
                }
            };
            let mut count = 0u64;
            // Besides events the server sends a confirmation, caught-up and a few other messages; the bound
            // allows for them while still ending a subscription that never delivers enough events.
            for _message in 0..wanted.saturating_mul(2).saturating_add(1_000) {
                if count >= wanted {
                    break;
                }
                match subscription.next_subscription_event().await.context("receive from the subscription")? {
                    SubscriptionEvent::EventAppeared(_event) => {
                        count += 1;
                        if count % 4096 == 0 {
                            seen.fetch_add(4096, Ordering::Relaxed);
                        }
                    }
                    SubscriptionEvent::CaughtUp if count < wanted => {
                        bail!("the subscription caught up after {count} events, {wanted} were expected")
                    }
                    _ => {}
                }
            }
            anyhow::Ok(count)
        });
    }
    let timeout = Duration::from_secs(args.timeout_secs);
    let collected = tokio::time::timeout(timeout, async {
        let mut events_seen = 0u64;
        while let Some(joined) = subscribers.join_next().await {
            events_seen += joined.context("a subscriber panicked")??;
        }
        anyhow::Ok(events_seen)
    })
    .await;
    let events_seen = match collected {
        Ok(outcome) => outcome?,
        Err(_) => bail!("the subscriptions did not see {total_wanted} events within {timeout:?}"),
    };
    let elapsed = started.elapsed();
    Ok(json!({
        "test": "catch-up",
        "target": target.kind,
        "source": source,
        "clients": args.clients,
        "events": events_seen,
        "events_per_client": args.events,
        "prewritten": prewritten,
        "seconds": elapsed.as_secs_f64(),
        "events_per_sec": per_second(events_seen, elapsed),
    }))
}

async fn latency(target: &Target, args: &LatencyArgs) -> anyhow::Result<serde_json::Value> {
    check_append_size(1, args.size)?;
    let client = wait_until_ready(&target.connection_string, READY_TIMEOUT, false).await?;
    let stream = format!("bench-latency-{}", uuid::Uuid::new_v4().simple());
    let options = AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any);
    let data = payload(args.size);
    for _warmup in 0..args.warmup {
        client
            .append_to_stream(
                stream.as_str(),
                &options,
                EventData::binary(BENCH_EVENT_TYPE, data.clone()),
            )
            .await
            .context("warm-up append")?;
    }
    eprintln!("latency: {} sequential appends to {stream}", args.requests);
    let completed = Arc::new(AtomicU64::new(0));
    let progress = Progress::spawn("latency", "appends", completed.clone(), args.requests);
    let mut latencies_us = Vec::with_capacity(usize::try_from(args.requests).unwrap_or(0));
    let mut errors = 0u64;
    let started = Instant::now();
    for _request in 0..args.requests {
        let event = EventData::binary(BENCH_EVENT_TYPE, data.clone());
        let sent = Instant::now();
        match client
            .append_to_stream(stream.as_str(), &options, event)
            .await
        {
            Ok(_) => latencies_us.push(micros(sent.elapsed())),
            Err(error) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("latency: an append failed: {error}");
                }
                if errors >= MAX_FAILED_APPENDS {
                    bail!("{errors} appends failed, the first reported above");
                }
            }
        }
        completed.fetch_add(1, Ordering::Relaxed);
    }
    let elapsed = started.elapsed();
    drop(progress);
    let append_p50 = median(&latencies_us);

    let fsync_dir = args
        .fsync_dir
        .clone()
        .or_else(|| target.data_dir.clone())
        .unwrap_or_else(std::env::temp_dir);
    eprintln!("latency: measuring fsync in {}", fsync_dir.display());
    let fsync_us = {
        let dir = fsync_dir.clone();
        let samples = args.fsync_samples;
        tokio::task::spawn_blocking(move || measure_fsync(&dir, samples))
            .await
            .context("the fsync measurement panicked")??
    };
    let fsync_p50 = median(&fsync_us);
    Ok(json!({
        "test": "latency",
        "target": target.kind,
        "requests": args.requests,
        "size": args.size,
        "seconds": elapsed.as_secs_f64(),
        "appends_per_sec": per_second(latencies_us.len() as u64, elapsed),
        "latency_us": latency_summary(latencies_us),
        "errors": errors,
        "fsync": {
            "dir": fsync_dir.display().to_string(),
            "samples": args.fsync_samples,
            "latency_us": latency_summary(fsync_us),
        },
        "append_p50_minus_fsync_p50_us": i64::from(append_p50) - i64::from(fsync_p50),
    }))
}

fn median(samples: &[u32]) -> u32 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// Appends 256 bytes to a fresh file and `sync_data`s it, `samples` times: the floor under any durable append.
fn measure_fsync(dir: &Path, samples: u64) -> anyhow::Result<Vec<u32>> {
    use std::io::Write;

    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("bench-fsync-{}.tmp", uuid::Uuid::new_v4().simple()));
    let measured = (|| {
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let record = [0xA5u8; 256];
        let mut latencies_us = Vec::with_capacity(usize::try_from(samples).unwrap_or(0));
        for _sample in 0..samples {
            let started = Instant::now();
            file.write_all(&record)
                .context("write to the fsync probe file")?;
            file.sync_data().context("fsync the probe file")?;
            latencies_us.push(micros(started.elapsed()));
        }
        anyhow::Ok(latencies_us)
    })();
    if let Err(error) = std::fs::remove_file(&path) {
        eprintln!("latency: could not remove {}: {error}", path.display());
    }
    measured
}

fn restart_config(args: &RestartArgs) -> ServerConfig {
    let mut config = ServerConfig::on_disk(args.db.clone());
    config.start_standard_projections = !args.no_standard_projections;
    config
}

/// How long a restart took: `start()` returning, then the first answered read.
struct RestartTiming {
    start: Duration,
    ready: Duration,
    server: RunningServer,
    client: Client,
}

async fn timed_restart(args: &RestartArgs) -> anyhow::Result<RestartTiming> {
    let started = Instant::now();
    let server = start(restart_config(args))
        .await
        .context("restart the server")?;
    let start_elapsed = started.elapsed();
    let ready = wait_until_ready(
        &server.connection_string(),
        Duration::from_secs(args.ready_timeout_secs),
        true,
    )
    .await;
    let ready_elapsed = started.elapsed();
    match ready {
        Ok(client) => Ok(RestartTiming {
            start: start_elapsed,
            ready: ready_elapsed,
            server,
            client,
        }),
        Err(error) => {
            if let Err(shutdown_error) = server.shutdown().await {
                eprintln!("restart: shutting down after a failed restart: {shutdown_error:#}");
            }
            Err(error)
        }
    }
}

async fn restart(args: &RestartArgs) -> anyhow::Result<serde_json::Value> {
    check_append_size(args.events_per_append, args.size)?;
    std::fs::create_dir_all(&args.db).with_context(|| format!("create {}", args.db.display()))?;

    // Fill: count what the fill streams hold, append what is missing, close cleanly.
    let server = start(restart_config(args))
        .await
        .context("start the server to fill it")?;
    let filled = fill_for_restart(&server, args).await;
    let closed = server
        .shutdown()
        .await
        .context("shut down the filled server");
    let (stored, fill) = filled?;
    closed?;

    eprintln!("restart: {stored} events stored, measuring a clean restart");
    let clean = timed_restart(args).await?;
    let clean_report =
        json!({ "start_ms": round_ms(clean.start), "ready_ms": round_ms(clean.ready) });

    if args.no_crash {
        clean
            .server
            .shutdown()
            .await
            .context("shut down after the clean restart")?;
        return Ok(restart_report(
            args,
            stored,
            fill,
            clean_report,
            serde_json::Value::Null,
        ));
    }

    // Crash: acknowledge a few batches after the clean start, stop without the clean close, reopen.
    let crash_stream = format!("bench-restart-crash-{}", uuid::Uuid::new_v4().simple());
    let acknowledged = match append_crash_batches(&clean.client, &crash_stream).await {
        Ok(acknowledged) => acknowledged,
        Err(error) => {
            if let Err(shutdown_error) = clean.server.shutdown().await {
                eprintln!("restart: {shutdown_error:#}");
            }
            return Err(error);
        }
    };
    drop(clean.client);
    clean.server.crash().await;
    eprintln!("restart: crashed after {acknowledged} acknowledged events in {crash_stream}, measuring recovery");
    let recovered = timed_restart(args).await?;
    let survived = stream_length(&recovered.client, &crash_stream).await;
    let closed = recovered
        .server
        .shutdown()
        .await
        .context("shut down after the crash restart");
    let survived = survived?;
    closed?;
    let crash_report = json!({
        "start_ms": round_ms(recovered.start),
        "ready_ms": round_ms(recovered.ready),
        "acknowledged_events": acknowledged,
        "recovered_events": survived,
        "acknowledged_events_survived": survived >= acknowledged,
    });
    Ok(restart_report(
        args,
        stored,
        fill,
        clean_report,
        crash_report,
    ))
}

fn restart_report(
    args: &RestartArgs,
    stored: u64,
    fill: Option<(u64, Duration)>,
    clean: serde_json::Value,
    after_crash: serde_json::Value,
) -> serde_json::Value {
    let (filled, fill_elapsed) = fill.unwrap_or((0, Duration::ZERO));
    json!({
        "test": "restart",
        "target": "embedded-disk",
        "db": args.db.display().to_string(),
        "events": stored,
        "standard_projections": !args.no_standard_projections,
        "filled": filled,
        "fill_seconds": fill_elapsed.as_secs_f64(),
        "fill_events_per_sec": per_second(filled, fill_elapsed),
        "clean": clean,
        "after_crash": after_crash,
    })
}

/// Counts the events in the fill streams and appends what is missing. Returns the events stored afterwards and,
/// if it wrote any, how many and how long it took.
async fn fill_for_restart(
    server: &RunningServer,
    args: &RestartArgs,
) -> anyhow::Result<(u64, Option<(u64, Duration)>)> {
    let connection_string = server.connection_string();
    let client = wait_until_ready(&connection_string, READY_TIMEOUT, false).await?;
    let streams = numbered_streams("bench-restart", args.streams);
    let lengths: Vec<anyhow::Result<u64>> = futures::stream::iter(streams.iter())
        .map(|stream| stream_length(&client, stream))
        .buffer_unordered(32)
        .collect()
        .await;
    let mut present = 0u64;
    for length in lengths {
        present += length?;
    }
    eprintln!(
        "restart: {} holds {present} events in its fill streams",
        args.db.display()
    );
    if present >= args.events {
        return Ok((present, None));
    }
    let missing = args.events - present;
    let appends = missing.div_ceil(args.events_per_append);
    eprintln!(
        "restart: filling {missing} events, {} per append, {} tasks",
        args.events_per_append, args.fill_clients
    );
    let clients = connect_many(&connection_string, args.connections)?;
    let outcome = run_appends(
        &clients,
        AppendPlan {
            appends,
            events_per_append: args.events_per_append,
            streams,
            concurrency: args.fill_clients,
            payload: payload(args.size),
            record_latency: false,
            label: "restart fill",
        },
    )
    .await?;
    outcome.ensure_no_failure().context("fill the store")?;
    let written = outcome.succeeded * args.events_per_append;
    Ok((present + written, Some((written, outcome.elapsed))))
}

/// Appends 10 batches of 100 events, each acknowledged before the next; returns the events acknowledged.
async fn append_crash_batches(client: &Client, stream: &str) -> anyhow::Result<u64> {
    const BATCHES: u64 = 10;
    const EVENTS_PER_BATCH: u64 = 100;
    let options = AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any);
    let data = payload(100);
    for _batch in 0..BATCHES {
        let events: Vec<EventData> = (0..EVENTS_PER_BATCH)
            .map(|_| EventData::binary(BENCH_EVENT_TYPE, data.clone()))
            .collect();
        client
            .append_to_stream(stream, &options, events)
            .await
            .context("append before the crash")?;
    }
    Ok(BATCHES * EVENTS_PER_BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_uses_nearest_rank() {
        let summary = latency_summary((1..=1000).collect());
        assert_eq!(
            summary,
            json!({ "p50": 500, "p99": 990, "p999": 999, "max": 1000 })
        );
        assert_eq!(
            latency_summary(Vec::new()),
            json!({ "p50": 0, "p99": 0, "p999": 0, "max": 0 })
        );
    }

    #[test]
    fn prewrite_batches_stay_below_the_append_limit() {
        assert_eq!(prewrite_events_per_append(100), 500);
        assert_eq!(prewrite_events_per_append(1024 * 1024), 4);
        assert_eq!(prewrite_events_per_append(64 * 1024 * 1024), 1);
        assert_eq!(prewrite_events_per_append(0), 500);
    }

    #[test]
    fn command_line_parses() {
        use clap::Parser;

        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli = Cli::try_parse_from([
            "bench",
            "write-flood",
            "--embedded",
            "--clients",
            "8",
            "--events-per-append",
            "100",
        ])
        .expect("write-flood arguments parse");
        match cli.bench.command {
            BenchCommand::WriteFlood(args) => {
                assert!(args.target.embedded);
                assert_eq!(
                    (args.clients, args.events_per_append, args.requests),
                    (8, 100, 100_000)
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            Cli::try_parse_from(["bench", "restart"]).is_err(),
            "restart needs --db"
        );
        assert!(
            Cli::try_parse_from(["bench", "latency", "--mem-db"]).is_err(),
            "--mem-db needs --embedded"
        );
    }
}
