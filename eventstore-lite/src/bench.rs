//! The load tool behind `eventstore-lite bench`, in the spirit of EventStoreDB's test client: write-flood,
//! read-flood, catch-up, latency, restart and persistent (subscription groups), each driven through the official `eventstore` client and each
//! printing one JSON line on stdout (progress goes to stderr).
//!
//! Every test talks to a server given by `--connection-string`, or, with `--embedded` and no connection
//! string, to a server started in this process on a runtime of its own (durable in a temporary directory
//! unless `--db` or `--mem-db`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, DeletePersistentSubscriptionOptions, EventData,
    ExpectedRevision, GetPersistentSubscriptionInfoOptions, PersistentSubscription,
    PersistentSubscriptionEvent, PersistentSubscriptionOptions, ReadAllOptions, ReadStreamOptions,
    StreamPosition, SubscribeToAllOptions, SubscribeToPersistentSubscriptionOptions,
    SubscribeToStreamOptions, SubscriptionEvent, SystemConsumerStrategy,
};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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

/// How long to wait for a server to answer its first read before giving up (restart has its own option).
const READY_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// One persistent subscription group with competing consumers acking one by one: messages/s when draining
    /// a pre-written stream, or append → delivery latency at a fixed rate; with `--embedded`, the process's RSS.
    Persistent(PersistentArgs),
    /// A JavaScript projection over pre-written events, created through the official client and timed until its
    /// statistics show every event processed: a `fromAll` `$any` counter, or `partitionBy` over many partitions.
    Projection(ProjectionArgs),
    /// What `$by_category` and `$by_event_type` (and `$streams`, `$stream_by_category`) cost an append: the same
    /// write-flood against fresh embedded servers with the system projections on and off, in alternating rounds.
    SystemProjections(SystemProjectionsArgs),
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
    /// The embedded server's `--live-read-interval-ms` (0: live subscriptions read on every commit).
    #[arg(long, requires = "embedded")]
    pub live_read_interval_ms: Option<u64>,
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
    /// Send the appends through one BatchAppend session per connection (many appends in flight on one gRPC
    /// call) instead of one Append call each.
    #[arg(long)]
    pub batch_append: bool,
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

/// What `bench persistent` measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistentMode {
    /// Pre-write `--events` to one stream, then time the consumers until every event is acked.
    Throughput,
    /// Append single events at `--rate` for `--duration-secs` to a live group; append → delivery latency.
    Latency,
}

#[derive(clap::Args, Debug)]
pub struct PersistentArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, value_enum, default_value_t = PersistentMode::Throughput)]
    pub mode: PersistentMode,
    /// Throughput mode: events pre-written to the group's stream, all of which must be acked.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Consumers connected to the group, each a task of its own acking every message as it arrives.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub consumers: u64,
    /// Messages the server may have in flight to each consumer (the subscription's buffer size).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub buffer_size: u64,
    /// Client instances (one HTTP/2 connection each) shared round-robin by the consumers; appends use one more.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Latency mode: events appended per second, one event per append.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    /// Latency mode: how long to append for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_secs: u64,
    /// Bytes of data per event (latency mode: at least the 8-byte send timestamp).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Throughput mode: give up if the consumers have not acked every event after this many seconds. Latency
    /// mode: wait at most this long (and at most 30 s) after the last append for every event to be delivered.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

/// What the projection under test does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectionKind {
    /// `fromAll().when({$any: count})`.
    Count,
    /// `fromAll().partitionBy(e => e.body.account).when({$any: count and sum})`.
    Partitioned,
}

#[derive(clap::Args, Debug)]
pub struct ProjectionArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, value_enum, default_value_t = ProjectionKind::Count)]
    pub kind: ProjectionKind,
    /// Events written before the projection is created (JSON bodies `{"account": …, "amount": …}`).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Distinct accounts in the bodies: the partitions of `--kind partitioned`.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub partitions: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

#[derive(clap::Args, Debug)]
pub struct SystemProjectionsArgs {
    /// Appends per write-flood round.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Events in each append.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub events_per_append: u64,
    /// Rounds of each setting (off, on, off, on, …).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub streams: u64,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Keep the stores in memory (no fsync), so that the CPU cost of the index entries is not hidden behind it.
    #[arg(long)]
    pub mem_db: bool,
}

/// Runs one load test and prints its result as one JSON line on stdout.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::WriteFlood(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = write_flood(&target, &args).await;
            print_report(&target.close_after(outcome).await?)
        }
        BenchCommand::ReadFlood(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = read_flood(&target, &args).await;
            print_report(&target.close_after(outcome).await?)
        }
        BenchCommand::CatchUp(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = catch_up(&target, &args).await;
            print_report(&target.close_after(outcome).await?)
        }
        BenchCommand::Latency(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = latency(&target, &args).await;
            print_report(&target.close_after(outcome).await?)
        }
        BenchCommand::Restart(args) => print_report(&restart(&args).await?),
        BenchCommand::Projection(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = projection(&target, &args).await;
            print_report(&target.close_after(outcome).await?)
        }
        BenchCommand::SystemProjections(args) => print_report(&system_projections(&args).await?),
        BenchCommand::Persistent(args) => {
            let target = Target::open(&args.target).await?;
            let outcome = persistent(&target, &args).await;
            print_report(&target.close_after(outcome).await?)
        }
    }
}

fn print_report(report: &impl Serialize) -> anyhow::Result<()> {
    let line = serde_json::to_string(report).context("serialize the report")?;
    println!("{line}");
    Ok(())
}

/// The server under load: an external one, or one started in this process and stopped by [`Target::close_after`].
struct Target {
    connection_string: String,
    /// `external`, `embedded-disk` or `embedded-memory`, copied into every report.
    kind: &'static str,
    server: Option<EmbeddedServer>,
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
        if let Some(ms) = args.live_read_interval_ms {
            config.live_read_interval = Duration::from_millis(ms);
        }
        let server = match EmbeddedServer::start(config).await {
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

/// A server started in this process on a tokio runtime of its own: the server and the load then do not share
/// worker threads, as when the server runs as a separate process.
struct EmbeddedServer {
    /// Always `Some` until `shutdown` or `crash` takes it.
    runtime: Option<tokio::runtime::Runtime>,
    connection_string: String,
    server: Option<RunningServer>,
}

impl EmbeddedServer {
    async fn start(config: ServerConfig) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("embedded-server")
            .build()
            .context("build the embedded server's runtime")?;
        let started = runtime.spawn(start(config)).await;
        let server = match started {
            Ok(Ok(server)) => server,
            Ok(Err(error)) => {
                runtime.shutdown_background();
                return Err(error);
            }
            Err(join_error) => {
                runtime.shutdown_background();
                return Err(join_error).context("the embedded server panicked while starting");
            }
        };
        Ok(Self {
            connection_string: server.connection_string(),
            runtime: Some(runtime),
            server: Some(server),
        })
    }

    fn connection_string(&self) -> String {
        self.connection_string.clone()
    }

    /// Closes the store cleanly, then stops the server's runtime.
    async fn shutdown(mut self) -> anyhow::Result<()> {
        let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) else {
            return Ok(());
        };
        let stopped = runtime.spawn(server.shutdown()).await;
        runtime.shutdown_background();
        stopped.context("the embedded server panicked while shutting down")?
    }

    /// Stops the server without the clean close (see [`RunningServer::crash`]).
    async fn crash(mut self) -> anyhow::Result<()> {
        let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) else {
            return Ok(());
        };
        let crashed = runtime.spawn(server.crash()).await;
        runtime.shutdown_background();
        crashed.context("the embedded server panicked while crashing")
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        // A runtime still here means an early return skipped `shutdown`; dropping a runtime inside async
        // code would panic, so let its threads wind down in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn remove_temporary_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("bench: could not remove {}: {error}", dir.display());
    }
}

/// The official client sleeps its discovery interval (500 ms by default) before it first connects; the tool
/// shortens it, unless the connection string sets it, so that connection set-up and restarts are timed as the
/// server makes them, not as the client's pause does.
fn with_quick_discovery(connection_string: &str) -> String {
    if connection_string
        .to_ascii_lowercase()
        .contains("discoveryinterval=")
    {
        return connection_string.to_owned();
    }
    let separator = if connection_string.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{connection_string}{separator}discoveryInterval=1")
}

fn connect(connection_string: &str) -> anyhow::Result<Client> {
    let settings: ClientSettings = with_quick_discovery(connection_string)
        .parse()
        .with_context(|| format!("parse connection string {connection_string:?}"))?;
    Client::new(settings).context("create an eventstore client")
}

/// `count` clients (one HTTP/2 connection each), connected before they are returned so that no timed
/// operation pays for connection set-up.
async fn connect_warm(connection_string: &str, count: u64) -> anyhow::Result<Vec<Client>> {
    let clients = (0..count)
        .map(|_| connect(connection_string))
        .collect::<anyhow::Result<Vec<_>>>()?;
    futures::future::try_join_all(clients.iter().map(read_last_event))
        .await
        .context("connect the clients")?;
    Ok(clients)
}

/// Reads the last event of `$all`; `Ok(None)` when the store is empty.
async fn read_last_event(client: &Client) -> anyhow::Result<Option<eventstore::ResolvedEvent>> {
    let options = ReadAllOptions::default()
        .position(StreamPosition::End)
        .max_count(1);
    let mut stream = client
        .read_all(&options)
        .await
        .context("read $all backwards")?;
    stream.next().await.context("read the last event of $all")
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
    let mut last_error = anyhow!("no attempt was made");
    let mut pause = Duration::from_millis(1);
    for _attempt in 0..100_000u32 {
        let remaining = match timeout.checked_sub(started.elapsed()) {
            Some(remaining) if !remaining.is_zero() => remaining,
            _ => break,
        };
        let client = connect(connection_string)?;
        match tokio::time::timeout(remaining, read_last_event(&client)).await {
            Ok(Ok(Some(_event))) => return Ok(client),
            Ok(Ok(None)) if !require_event => return Ok(client),
            Ok(Ok(None)) => last_error = anyhow!("$all is still empty"),
            Ok(Err(error)) => last_error = error,
            Err(_) => last_error = anyhow!("the read did not finish in time"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
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

/// Milliseconds with one decimal.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Seconds with millisecond precision.
fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000.0).round() / 1_000.0
}

/// Latencies in microseconds, nearest-rank percentiles.
#[derive(Serialize, Debug, PartialEq, Eq)]
struct LatencySummary {
    p50: u32,
    p99: u32,
    p999: u32,
    max: u32,
}

impl LatencySummary {
    fn of(mut samples: Vec<u32>) -> Self {
        samples.sort_unstable();
        let rank = |quantile: f64| -> u32 {
            if samples.is_empty() {
                return 0;
            }
            let rank = (quantile * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// Prints `label: done/total unit (rate/s)` on stderr every [`PROGRESS_INTERVAL`] until dropped; for appends of
/// several events it adds the event rate.
struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn spawn(label: &'static str, unit: &'static str, done: Arc<AtomicU64>, total: u64) -> Self {
        Self::spawn_scaled(label, unit, done, total, 1)
    }

    fn spawn_scaled(
        label: &'static str,
        unit: &'static str,
        done: Arc<AtomicU64>,
        total: u64,
        events_per_unit: u64,
    ) -> Self {
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
                let rate = per_second(done, started.elapsed());
                if events_per_unit > 1 {
                    let event_rate = rate * events_per_unit as f64;
                    eprintln!(
                        "{label}: {done}/{total} {unit} ({rate:.0}/s, {event_rate:.0} events/s)"
                    );
                } else {
                    eprintln!("{label}: {done}/{total} {unit} ({rate:.0}/s)");
                }
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
    /// Through BatchAppend sessions (one per client) rather than Append calls.
    batch_append: bool,
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
    let _progress = Progress::spawn_scaled(
        plan.label,
        "appends",
        completed.clone(),
        plan.appends,
        plan.events_per_append,
    );
    let per_task_capacity = if plan.record_latency {
        usize::try_from(plan.appends / plan.concurrency + 1).unwrap_or(0)
    } else {
        0
    };

    let sessions = if plan.batch_append {
        let mut sessions = Vec::with_capacity(clients.len());
        for client in clients {
            let session = client
                .batch_append(&Default::default())
                .await
                .context("opening a BatchAppend session")?;
            sessions.push(Some(Arc::new(session)));
        }
        sessions
    } else {
        vec![None; clients.len()]
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task_index in 0..plan.concurrency {
        let client = clients[(task_index % clients.len() as u64) as usize].clone();
        let session = sessions[(task_index % clients.len() as u64) as usize].clone();
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
                let appended = match &session {
                    Some(session) => session
                        .append_to_stream(stream.as_str(), ExpectedRevision::Any, events)
                        .await
                        .map(drop),
                    None => client
                        .append_to_stream(stream.as_str(), &options, events)
                        .await
                        .map(drop),
                };
                match appended {
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

/// One line of `bench write-flood` output.
#[derive(Serialize, Debug)]
struct WriteFloodReport {
    test: &'static str,
    target: &'static str,
    clients: u64,
    connections: u64,
    /// Appends attempted.
    requests: u64,
    streams: u64,
    /// Events acknowledged.
    events: u64,
    events_per_append: u64,
    size: usize,
    seconds: f64,
    events_per_sec: f64,
    appends_per_sec: f64,
    /// Of the acknowledged appends.
    latency_us: LatencySummary,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

async fn write_flood(target: &Target, args: &WriteFloodArgs) -> anyhow::Result<WriteFloodReport> {
    check_append_size(args.events_per_append, args.size)?;
    wait_until_ready(&target.connection_string, READY_TIMEOUT, false).await?;
    let clients = connect_warm(&target.connection_string, args.connections).await?;
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
            batch_append: args.batch_append,
        },
    )
    .await?;
    let events = outcome.succeeded * args.events_per_append;
    Ok(WriteFloodReport {
        test: "write-flood",
        target: target.kind,
        clients: args.clients,
        connections: args.connections,
        requests: outcome.succeeded + outcome.failed,
        streams: args.streams,
        events,
        events_per_append: args.events_per_append,
        size: args.size,
        seconds: seconds(outcome.elapsed),
        events_per_sec: per_second(events, outcome.elapsed),
        appends_per_sec: per_second(outcome.succeeded, outcome.elapsed),
        latency_us: LatencySummary::of(outcome.latencies_us),
        errors: outcome.failed,
        first_error: outcome.first_error,
    })
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
    let clients = connect_warm(connection_string, 4).await?;
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
            batch_append: false,
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

/// One line of `bench read-flood` output.
#[derive(Serialize, Debug)]
struct ReadFloodReport {
    test: &'static str,
    target: &'static str,
    clients: u64,
    /// Events read by all readers together.
    events: u64,
    events_per_client: u64,
    /// Events appended before reading because the store held too few.
    prewritten: u64,
    seconds: f64,
    events_per_sec: f64,
}

async fn read_flood(target: &Target, args: &ReadFloodArgs) -> anyhow::Result<ReadFloodReport> {
    check_append_size(1, args.size)?;
    let prewritten = ensure_all_holds(&target.connection_string, args.events, args.size).await?;
    let clients = connect_warm(&target.connection_string, args.clients).await?;
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
                        if count.is_multiple_of(4096) {
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
    Ok(ReadFloodReport {
        test: "read-flood",
        target: target.kind,
        clients: args.clients,
        events: events_read,
        events_per_client: args.events,
        prewritten,
        seconds: seconds(elapsed),
        events_per_sec: per_second(events_read, elapsed),
    })
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
            batch_append: false,
        },
    )
    .await?;
    outcome.ensure_no_failure().context("pre-write events")?;
    Ok(outcome.succeeded * events_per_append)
}

/// One line of `bench catch-up` output.
#[derive(Serialize, Debug)]
struct CatchUpReport {
    test: &'static str,
    target: &'static str,
    /// `$all` or the stream name.
    source: String,
    clients: u64,
    /// Events seen by all subscriptions together.
    events: u64,
    events_per_client: u64,
    /// Events appended before subscribing because the source held too few.
    prewritten: u64,
    seconds: f64,
    events_per_sec: f64,
}

async fn catch_up(target: &Target, args: &CatchUpArgs) -> anyhow::Result<CatchUpReport> {
    check_append_size(1, args.size)?;
    let prewritten = match &args.stream {
        Some(stream) => {
            ensure_stream_holds(&target.connection_string, stream, args.events, args.size).await?
        }
        None => ensure_all_holds(&target.connection_string, args.events, args.size).await?,
    };
    let clients = connect_warm(&target.connection_string, args.clients).await?;
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
                        if count.is_multiple_of(4096) {
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
    Ok(CatchUpReport {
        test: "catch-up",
        target: target.kind,
        source,
        clients: args.clients,
        events: events_seen,
        events_per_client: args.events,
        prewritten,
        seconds: seconds(elapsed),
        events_per_sec: per_second(events_seen, elapsed),
    })
}

/// One line of `bench latency` output.
#[derive(Serialize, Debug)]
struct LatencyReport {
    test: &'static str,
    target: &'static str,
    requests: u64,
    size: usize,
    seconds: f64,
    appends_per_sec: f64,
    /// Of the acknowledged appends.
    latency_us: LatencySummary,
    errors: u64,
    fsync: FsyncReport,
    /// How much an append costs above the fsync it cannot avoid.
    append_p50_minus_fsync_p50_us: i64,
}

/// The disk's own latency: 256-byte appends to a file, each followed by `sync_data`.
#[derive(Serialize, Debug)]
struct FsyncReport {
    dir: String,
    samples: u64,
    latency_us: LatencySummary,
}

async fn latency(target: &Target, args: &LatencyArgs) -> anyhow::Result<LatencyReport> {
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
    let appends = latencies_us.len() as u64;
    let append_latency = LatencySummary::of(latencies_us);

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
    let fsync_latency = LatencySummary::of(fsync_us);
    Ok(LatencyReport {
        test: "latency",
        target: target.kind,
        requests: args.requests,
        size: args.size,
        seconds: seconds(elapsed),
        appends_per_sec: per_second(appends, elapsed),
        append_p50_minus_fsync_p50_us: i64::from(append_latency.p50) - i64::from(fsync_latency.p50),
        latency_us: append_latency,
        errors,
        fsync: FsyncReport {
            dir: fsync_dir.display().to_string(),
            samples: args.fsync_samples,
            latency_us: fsync_latency,
        },
    })
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
    server: EmbeddedServer,
    client: Client,
}

async fn timed_restart(args: &RestartArgs) -> anyhow::Result<RestartTiming> {
    let started = Instant::now();
    let server = EmbeddedServer::start(restart_config(args))
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

/// One line of `bench restart` output.
#[derive(Serialize, Debug)]
struct RestartReport {
    test: &'static str,
    target: &'static str,
    db: String,
    /// Events in the tool's fill streams when the restarts were measured.
    events: u64,
    standard_projections: bool,
    /// Events appended by this run to reach `events`.
    filled: u64,
    fill_seconds: f64,
    fill_events_per_sec: f64,
    clean: RestartMeasurement,
    /// Absent with `--no-crash`.
    after_crash: Option<CrashRestartMeasurement>,
}

#[derive(Serialize, Debug)]
struct RestartMeasurement {
    /// Until `start()` returned.
    start_ms: f64,
    /// Until a new client's first read of the last event of `$all` was answered.
    ready_ms: f64,
}

#[derive(Serialize, Debug)]
struct CrashRestartMeasurement {
    start_ms: f64,
    ready_ms: f64,
    /// Events acknowledged to the tool just before the crash.
    acknowledged_events: u64,
    /// Of those, events readable after the restart.
    recovered_events: u64,
    acknowledged_events_survived: bool,
}

async fn restart(args: &RestartArgs) -> anyhow::Result<RestartReport> {
    check_append_size(args.events_per_append, args.size)?;
    std::fs::create_dir_all(&args.db).with_context(|| format!("create {}", args.db.display()))?;

    // Fill: count what the fill streams hold, append what is missing, close cleanly.
    let server = EmbeddedServer::start(restart_config(args))
        .await
        .context("start the server to fill it")?;
    let filled = fill_for_restart(&server, args).await;
    let closed = server
        .shutdown()
        .await
        .context("shut down the filled server");
    let (stored, fill) = filled?;
    closed?;
    let (filled, fill_elapsed) = fill.unwrap_or((0, Duration::ZERO));
    let mut report = RestartReport {
        test: "restart",
        target: "embedded-disk",
        db: args.db.display().to_string(),
        events: stored,
        standard_projections: !args.no_standard_projections,
        filled,
        fill_seconds: seconds(fill_elapsed),
        fill_events_per_sec: per_second(filled, fill_elapsed),
        clean: RestartMeasurement {
            start_ms: 0.0,
            ready_ms: 0.0,
        },
        after_crash: None,
    };

    eprintln!("restart: {stored} events stored, measuring a clean restart");
    let clean = timed_restart(args).await?;
    report.clean = RestartMeasurement {
        start_ms: millis(clean.start),
        ready_ms: millis(clean.ready),
    };
    if args.no_crash {
        clean
            .server
            .shutdown()
            .await
            .context("shut down after the clean restart")?;
        return Ok(report);
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
    clean.server.crash().await.context("crash the server")?;
    eprintln!(
        "restart: crashed after {acknowledged} acknowledged events in {crash_stream}, measuring recovery"
    );
    let recovered = timed_restart(args).await?;
    let recovered_events = stream_length(&recovered.client, &crash_stream).await;
    let closed = recovered
        .server
        .shutdown()
        .await
        .context("shut down after the crash restart");
    let recovered_events = recovered_events?;
    closed?;
    report.after_crash = Some(CrashRestartMeasurement {
        start_ms: millis(recovered.start),
        ready_ms: millis(recovered.ready),
        acknowledged_events: acknowledged,
        recovered_events,
        acknowledged_events_survived: recovered_events >= acknowledged,
    });
    Ok(report)
}

/// Counts the events in the fill streams and appends what is missing. Returns the events stored afterwards and,
/// if it wrote any, how many and how long it took.
async fn fill_for_restart(
    server: &EmbeddedServer,
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
    let clients = connect_warm(&connection_string, args.connections).await?;
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
            batch_append: false,
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

/// Group created by `bench persistent` on its fresh stream.
const PERSISTENT_GROUP: &str = "bench-ps";

/// How often `bench persistent` samples the process's resident memory when the server runs in it.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// Appends a latency run may have in flight at once; past it the pacing falls behind (and catches up after).
const MAX_LATENCY_APPENDS_IN_FLIGHT: usize = 1_024;

/// Latency mode waits at most this long after the last append for the consumers to receive every event.
const MAX_LATENCY_DRAIN: Duration = Duration::from_secs(30);

/// The group's settings: round robin, 30 s message timeout, checkpoints after 1 s and between 100 and 10,000
/// messages, reads of 500 events ahead into 2,000-message history and live buffers.
fn bench_group_options(start_from: StreamPosition<u64>) -> PersistentSubscriptionOptions {
    PersistentSubscriptionOptions::default()
        .start_from(start_from)
        .consumer_strategy_name(SystemConsumerStrategy::RoundRobin)
        .message_timeout(Duration::from_secs(30))
        .max_retry_count(10)
        .checkpoint_after(Duration::from_secs(1))
        .checkpoint_lower_bound(100)
        .checkpoint_upper_bound(10_000)
        .read_batch_size(500)
        .history_buffer_size(2_000)
        .live_buffer_size(2_000)
}

/// One line of `bench persistent` output, by mode.
#[derive(Serialize, Debug)]
#[serde(untagged)]
enum PersistentReport {
    Throughput(PersistentThroughputReport),
    Latency(PersistentLatencyReport),
}

#[derive(Serialize, Debug)]
struct PersistentThroughputReport {
    test: &'static str,
    target: &'static str,
    mode: &'static str,
    /// Events in the stream, every one acked by some consumer.
    events: u64,
    consumers: u64,
    connections: u64,
    buffer_size: u64,
    size: usize,
    /// From the first consumer's subscription until the last event was first acked.
    seconds: f64,
    messages_per_sec: f64,
    /// Messages received (and acked) by each consumer, duplicates included.
    per_consumer: Vec<u64>,
    /// Deliveries of an event some consumer had already received.
    duplicates: u64,
    /// Deliveries the server marked as retries (retry count above 0).
    retried: u64,
    prewrite_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mb: Option<RssReport>,
}

#[derive(Serialize, Debug)]
struct PersistentLatencyReport {
    test: &'static str,
    target: &'static str,
    mode: &'static str,
    /// Events per second asked for.
    rate: u64,
    /// Events per second appended.
    events_per_sec: f64,
    /// Of the appending phase.
    seconds: f64,
    /// Events appended (acknowledged by the server).
    events: u64,
    /// Of those, events received by a consumer.
    delivered: u64,
    consumers: u64,
    connections: u64,
    buffer_size: u64,
    size: usize,
    /// From the send timestamp in the event to its first delivery to a consumer.
    latency_us: LatencySummary,
    /// Of the appends themselves, for comparison.
    append_latency_us: LatencySummary,
    per_consumer: Vec<u64>,
    duplicates: u64,
    retried: u64,
    append_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_mb: Option<RssReport>,
}

/// Resident memory (`VmRSS`) of this process, server and load together, in MiB: when the consumers start
/// (after the pre-write), when the last event is acked, and the most seen in between (sampled every 500 ms).
#[derive(Serialize, Debug)]
struct RssReport {
    start: f64,
    end: f64,
    max: f64,
}

/// `VmRSS` of this process in KiB, where `/proc` has it.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss_kib(&status)
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Samples this process's resident memory every [`RSS_SAMPLE_INTERVAL`] until [`RssSampler::finish`]; only
/// meaningful when the server runs in this process.
struct RssSampler {
    start_kib: u64,
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// `None` unless the server is embedded and `/proc/self/status` is readable.
    fn start(target: &Target) -> Option<Self> {
        target.server.as_ref()?;
        let start_kib = resident_kib()?;
        let max_kib = Arc::new(AtomicU64::new(start_kib));
        let task = {
            let max_kib = max_kib.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(RSS_SAMPLE_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                // `finish` (or dropping the sampler) aborts this task; the bound only keeps the loop finite.
                for _tick in 0..u32::MAX {
                    ticks.tick().await;
                    if let Some(kib) = resident_kib() {
                        max_kib.fetch_max(kib, Ordering::Relaxed);
                    }
                }
            })
        };
        Some(Self {
            start_kib,
            max_kib,
            task,
        })
    }

    fn finish(self) -> RssReport {
        self.task.abort();
        let end_kib = resident_kib().unwrap_or(0);
        let max_kib = self.max_kib.load(Ordering::Relaxed).max(end_kib);
        let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
        eprintln!(
            "persistent: resident memory {} MiB at start, {} MiB at end, {} MiB at most",
            mib(self.start_kib),
            mib(end_kib),
            mib(max_kib)
        );
        RssReport {
            start: mib(self.start_kib),
            end: mib(end_kib),
            max: mib(max_kib),
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One bit per stream revision, shared by the consumers: which events some consumer has received.
struct SeenRevisions {
    bits: Vec<AtomicU64>,
    /// Distinct revisions seen so far.
    unique: Arc<AtomicU64>,
}

enum Seen {
    /// The first delivery of this revision.
    First,
    Again,
    /// Beyond the revisions the test wrote.
    OutOfRange,
}

impl SeenRevisions {
    fn new(revisions: u64) -> Self {
        let words = usize::try_from(revisions.div_ceil(64)).unwrap_or(usize::MAX);
        Self {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            unique: Arc::new(AtomicU64::new(0)),
        }
    }

    fn mark(&self, revision: u64) -> Seen {
        let Some(word) = usize::try_from(revision / 64)
            .ok()
            .and_then(|index| self.bits.get(index))
        else {
            return Seen::OutOfRange;
        };
        let bit = 1u64 << (revision % 64);
        if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            self.unique.fetch_add(1, Ordering::Relaxed);
            Seen::First
        } else {
            Seen::Again
        }
    }

    fn unique(&self) -> u64 {
        self.unique.load(Ordering::Relaxed)
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Event data carrying its send time: microseconds since the Unix epoch, little-endian, then padding to `size`.
fn timestamped_payload(size: usize) -> Bytes {
    let mut data = BytesMut::with_capacity(size.max(8));
    data.put_u64_le(unix_micros());
    data.resize(size.max(8), b'x');
    data.freeze()
}

fn send_micros(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..8)?.try_into().ok()?))
}

/// What one consumer task does.
struct ConsumerPlan {
    client: Client,
    stream: String,
    buffer_size: usize,
    seen: Arc<SeenRevisions>,
    /// Receives `()` once the server has confirmed the subscription.
    ready: Option<tokio::sync::mpsc::Sender<()>>,
    /// Notified once every one of `wanted` revisions has been received and acked.
    all_seen: Arc<tokio::sync::Notify>,
    wanted: u64,
    record_latency: bool,
    stop: CancellationToken,
}

#[derive(Default)]
struct ConsumerOutcome {
    delivered: u64,
    duplicates: u64,
    retried: u64,
    out_of_range: u64,
    latencies_us: Vec<u32>,
    /// Why the consumer stopped before being told to.
    error: Option<anyhow::Error>,
}

/// Subscribes to the group and acks every message one by one until `stop` is cancelled or the subscription fails.
async fn consume(mut plan: ConsumerPlan) -> ConsumerOutcome {
    let mut outcome = ConsumerOutcome::default();
    let options = SubscribeToPersistentSubscriptionOptions::default().buffer_size(plan.buffer_size);
    let subscribed = tokio::select! {
        _ = plan.stop.cancelled() => return outcome,
        subscribed = plan.client.subscribe_to_persistent_subscription(
            plan.stream.as_str(),
            PERSISTENT_GROUP,
            &options,
        ) => subscribed,
    };
    let mut subscription: PersistentSubscription = match subscribed {
        Ok(subscription) => subscription,
        Err(error) => {
            outcome.error =
                Some(anyhow!(error).context("subscribe to the persistent subscription group"));
            return outcome;
        }
    };
    // Each iteration handles one message; the loop ends when the run stops it or the subscription fails.
    loop {
        let message = tokio::select! {
            biased;
            _ = plan.stop.cancelled() => break,
            message = subscription.next_subscription_event() => message,
        };
        let (retry_count, event) = match message {
            Ok(PersistentSubscriptionEvent::EventAppeared { retry_count, event }) => {
                (retry_count, event)
            }
            Ok(PersistentSubscriptionEvent::Confirmed(_subscription_id)) => {
                if let Some(ready) = plan.ready.take() {
                    // The run may have given up waiting already; nothing to do then.
                    let _ = ready.send(()).await;
                }
                continue;
            }
            Err(error) => {
                if !plan.stop.is_cancelled() {
                    outcome.error =
                        Some(anyhow!(error).context("receive from the persistent subscription"));
                }
                break;
            }
        };
        let received_us = unix_micros();
        let recorded = event.get_original_event();
        let revision = recorded.revision;
        let latency_us = if plan.record_latency {
            send_micros(&recorded.data)
                .map(|sent| u32::try_from(received_us.saturating_sub(sent)).unwrap_or(u32::MAX))
        } else {
            None
        };
        outcome.delivered += 1;
        if retry_count > 0 {
            outcome.retried += 1;
        }
        let first = match plan.seen.mark(revision) {
            Seen::First => {
                outcome.latencies_us.extend(latency_us);
                true
            }
            Seen::Again => {
                outcome.duplicates += 1;
                false
            }
            Seen::OutOfRange => {
                outcome.out_of_range += 1;
                false
            }
        };
        let acked = tokio::select! {
            biased;
            _ = plan.stop.cancelled() => break,
            acked = subscription.ack(event) => acked,
        };
        if let Err(error) = acked {
            if !plan.stop.is_cancelled() {
                outcome.error = Some(anyhow!(error).context("ack a message"));
            }
            break;
        }
        if first && plan.seen.unique() >= plan.wanted {
            plan.all_seen.notify_one();
        }
    }
    outcome
}

/// The consumers of one run, each a task of its own.
struct Consumers {
    tasks: tokio::task::JoinSet<(usize, ConsumerOutcome)>,
    stop: CancellationToken,
    count: usize,
}

impl Consumers {
    /// Starts `count` consumers on `clients` (round-robin); with `ready`, each sends `()` once confirmed.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        clients: &[Client],
        count: u64,
        stream: &str,
        buffer_size: u64,
        seen: &Arc<SeenRevisions>,
        all_seen: &Arc<tokio::sync::Notify>,
        wanted: u64,
        record_latency: bool,
        ready: Option<&tokio::sync::mpsc::Sender<()>>,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        for index in 0..count {
            let plan = ConsumerPlan {
                client: clients[index % clients.len()].clone(),
                stream: stream.to_owned(),
                buffer_size: usize::try_from(buffer_size).unwrap_or(usize::MAX),
                seen: seen.clone(),
                ready: ready.cloned(),
                all_seen: all_seen.clone(),
                wanted,
                record_latency,
                stop: stop.clone(),
            };
            tasks.spawn(async move { (index, consume(plan).await) });
        }
        Self { tasks, stop, count }
    }

    /// Waits until `all_seen` is notified, failing if a consumer stops first or `timeout` passes.
    async fn wait_for_all(
        &mut self,
        all_seen: &tokio::sync::Notify,
        timeout: Duration,
        seen: &SeenRevisions,
    ) -> anyhow::Result<()> {
        let waited = tokio::time::timeout(timeout, async {
            tokio::select! {
                _ = all_seen.notified() => Ok(()),
                early = self.tasks.join_next() => Err(early_stop(early)),
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => bail!(
                "the consumers had received {} distinct events after {timeout:?}",
                seen.unique()
            ),
        }
    }

    /// Waits until every consumer has confirmed its subscription, failing if one stops first.
    async fn wait_until_confirmed(
        &mut self,
        ready: &mut tokio::sync::mpsc::Receiver<()>,
    ) -> anyhow::Result<()> {
        let mut confirmed = 0usize;
        let waited = tokio::time::timeout(READY_TIMEOUT, async {
            while confirmed < self.count {
                tokio::select! {
                    signal = ready.recv() => match signal {
                        Some(()) => confirmed += 1,
                        None => bail!("the consumers stopped before confirming their subscriptions"),
                    },
                    early = self.tasks.join_next() => return Err(early_stop(early)),
                }
            }
            Ok(())
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => bail!(
                "{confirmed} of {} subscriptions were confirmed within {READY_TIMEOUT:?}",
                self.count
            ),
        }
    }

    /// Stops the consumers and collects what each saw, in consumer order.
    async fn stop(mut self) -> anyhow::Result<Vec<ConsumerOutcome>> {
        self.stop.cancel();
        let mut outcomes: Vec<Option<ConsumerOutcome>> = (0..self.count).map(|_| None).collect();
        while let Some(joined) = self.tasks.join_next().await {
            let (index, outcome) = joined.context("a consumer panicked")?;
            outcomes[index] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }
}

/// The error a consumer that ended before the run stopped it gives.
fn early_stop(
    joined: Option<Result<(usize, ConsumerOutcome), tokio::task::JoinError>>,
) -> anyhow::Error {
    match joined {
        Some(Ok((index, outcome))) => outcome
            .error
            .unwrap_or_else(|| anyhow!("the subscription ended"))
            .context(format!("consumer {index} stopped early")),
        Some(Err(join_error)) => anyhow!(join_error).context("a consumer panicked"),
        None => anyhow!("no consumer is running"),
    }
}

/// Totals over the consumers; fails if one of them had an error.
struct ConsumerTotals {
    per_consumer: Vec<u64>,
    duplicates: u64,
    retried: u64,
    latencies_us: Vec<u32>,
}

fn sum_consumers(outcomes: Vec<ConsumerOutcome>) -> anyhow::Result<ConsumerTotals> {
    let mut totals = ConsumerTotals {
        per_consumer: Vec::with_capacity(outcomes.len()),
        duplicates: 0,
        retried: 0,
        latencies_us: Vec::new(),
    };
    let mut out_of_range = 0u64;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        if let Some(error) = outcome.error {
            return Err(error.context(format!("consumer {index}")));
        }
        totals.per_consumer.push(outcome.delivered);
        totals.duplicates += outcome.duplicates;
        totals.retried += outcome.retried;
        out_of_range += outcome.out_of_range;
        totals.latencies_us.extend(outcome.latencies_us);
    }
    if out_of_range > 0 {
        eprintln!("persistent: {out_of_range} deliveries of revisions this run did not write");
    }
    if totals.duplicates > 0 || totals.retried > 0 {
        eprintln!(
            "persistent: {} duplicate deliveries, {} marked as retries",
            totals.duplicates, totals.retried
        );
    }
    Ok(totals)
}

/// Prints the group's statistics as the server reports them (GetInfo) on stderr, while the consumers are still
/// connected: what to look at when a run stalls or misbehaves.
async fn describe_group(client: &Client, stream: &str) {
    let info = client
        .get_persistent_subscription_info(
            stream,
            PERSISTENT_GROUP,
            &GetPersistentSubscriptionInfoOptions::default(),
        )
        .await;
    let info = match info {
        Ok(info) => info,
        Err(error) => {
            eprintln!("persistent: could not get the group's info: {error}");
            return;
        }
    };
    let stats = &info.stats;
    eprintln!(
        "persistent: group {} status {:?}: total items {}, in flight {}, outstanding {}, read buffer {}, live buffer {}, \
         retry buffer {}, parked {}, last checkpointed revision {:?}, last known revision {:?}",
        info.group_name,
        info.status,
        stats.total_items,
        stats.total_in_flight_messages,
        stats.outstanding_messages_count,
        stats.read_buffer_count,
        stats.live_buffer_count,
        stats.retry_buffer_count,
        stats.parked_message_count,
        stats.last_checkpointed_event_revision,
        stats.last_known_event_revision,
    );
    for connection in &info.connections {
        eprintln!(
            "persistent:   connection {} {:?}: total items {}, in flight {}, available slots {}",
            connection.from,
            connection.connection_name,
            connection.total_items,
            connection.in_flight_messages,
            connection.available_slots,
        );
    }
}

async fn persistent(target: &Target, args: &PersistentArgs) -> anyhow::Result<PersistentReport> {
    check_append_size(1, args.size)?;
    let writer = wait_until_ready(&target.connection_string, READY_TIMEOUT, false).await?;
    let clients = connect_warm(
        &target.connection_string,
        args.connections.min(args.consumers),
    )
    .await?;
    let stream = format!("bench-ps-{}", uuid::Uuid::new_v4().simple());
    let report = match args.mode {
        PersistentMode::Throughput => {
            persistent_throughput(target, args, &writer, &clients, &stream).await
        }
        PersistentMode::Latency => {
            persistent_latency(target, args, &writer, &clients, &stream).await
        }
    };
    // Leave no group behind on an external server; the embedded one is about to go anyway.
    if let Err(error) = writer
        .delete_persistent_subscription(
            stream.as_str(),
            PERSISTENT_GROUP,
            &DeletePersistentSubscriptionOptions::default(),
        )
        .await
    {
        eprintln!("persistent: could not delete the group: {error}");
    }
    report
}

/// Appends exactly `events` events to `stream` in batches; returns how long it took.
async fn prewrite_exactly(
    writer: &Client,
    stream: &str,
    events: u64,
    size: usize,
) -> anyhow::Result<Duration> {
    let events_per_append = prewrite_events_per_append(size);
    let started = Instant::now();
    let full_appends = events / events_per_append;
    if full_appends > 0 {
        let outcome = run_appends(
            std::slice::from_ref(writer),
            AppendPlan {
                appends: full_appends,
                events_per_append,
                streams: Arc::new(vec![stream.to_owned()]),
                concurrency: 4,
                payload: payload(size),
                record_latency: false,
                label: "prewrite",
                batch_append: false,
            },
        )
        .await?;
        outcome.ensure_no_failure().context("pre-write events")?;
    }
    let rest = events % events_per_append;
    if rest > 0 {
        let data = payload(size);
        let batch: Vec<EventData> = (0..rest)
            .map(|_| EventData::binary(BENCH_EVENT_TYPE, data.clone()))
            .collect();
        writer
            .append_to_stream(
                stream,
                &AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any),
                batch,
            )
            .await
            .context("pre-write the last events")?;
    }
    Ok(started.elapsed())
}

async fn persistent_throughput(
    target: &Target,
    args: &PersistentArgs,
    writer: &Client,
    clients: &[Client],
    stream: &str,
) -> anyhow::Result<PersistentReport> {
    eprintln!("persistent: pre-writing {} events to {stream}", args.events);
    let prewrite_elapsed = prewrite_exactly(writer, stream, args.events, args.size).await?;
    writer
        .create_persistent_subscription(
            stream,
            PERSISTENT_GROUP,
            &bench_group_options(StreamPosition::Start),
        )
        .await
        .context("create the persistent subscription group")?;
    eprintln!(
        "persistent: {} consumers (buffer {}) on {} connections acking {} events one by one",
        args.consumers,
        args.buffer_size,
        clients.len(),
        args.events
    );
    let seen = Arc::new(SeenRevisions::new(args.events));
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let _progress = Progress::spawn(
        "persistent",
        "events acked",
        seen.unique.clone(),
        args.events,
    );
    let rss = RssSampler::start(target);
    let started = Instant::now();
    let mut consumers = Consumers::spawn(
        clients,
        args.consumers,
        stream,
        args.buffer_size,
        &seen,
        &all_seen,
        args.events,
        false,
        None,
    );
    let waited = consumers
        .wait_for_all(&all_seen, Duration::from_secs(args.timeout_secs), &seen)
        .await;
    let elapsed = started.elapsed();
    describe_group(writer, stream).await;
    let stopped = consumers.stop().await;
    waited?;
    let totals = sum_consumers(stopped?)?;
    Ok(PersistentReport::Throughput(PersistentThroughputReport {
        test: "persistent",
        target: target.kind,
        mode: "throughput",
        events: args.events,
        consumers: args.consumers,
        connections: clients.len() as u64,
        buffer_size: args.buffer_size,
        size: args.size,
        seconds: seconds(elapsed),
        messages_per_sec: per_second(args.events, elapsed),
        per_consumer: totals.per_consumer,
        duplicates: totals.duplicates,
        retried: totals.retried,
        prewrite_seconds: seconds(prewrite_elapsed),
        rss_mb: rss.map(RssSampler::finish),
    }))
}

async fn persistent_latency(
    target: &Target,
    args: &PersistentArgs,
    writer: &Client,
    clients: &[Client],
    stream: &str,
) -> anyhow::Result<PersistentReport> {
    let planned = args.rate.saturating_mul(args.duration_secs);
    writer
        .create_persistent_subscription(
            stream,
            PERSISTENT_GROUP,
            &bench_group_options(StreamPosition::End),
        )
        .await
        .context("create the persistent subscription group")?;
    let seen = Arc::new(SeenRevisions::new(planned));
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let (ready_sender, mut ready) = tokio::sync::mpsc::channel(
        usize::try_from(args.consumers)
            .unwrap_or(1024)
            .clamp(1, 1024),
    );
    let mut consumers = Consumers::spawn(
        clients,
        args.consumers,
        stream,
        args.buffer_size,
        &seen,
        &all_seen,
        planned,
        true,
        Some(&ready_sender),
    );
    drop(ready_sender);
    if let Err(error) = consumers.wait_until_confirmed(&mut ready).await {
        let _ = consumers.stop().await;
        return Err(error);
    }
    eprintln!(
        "persistent: {} consumers (buffer {}) confirmed; appending {} events/s for {} s to {stream}",
        args.consumers, args.buffer_size, args.rate, args.duration_secs
    );

    let rss = RssSampler::start(target);
    let appended = Arc::new(AtomicU64::new(0));
    let append_errors = Arc::new(AtomicU64::new(0));
    let progress = Progress::spawn("persistent", "events appended", appended.clone(), planned);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_LATENCY_APPENDS_IN_FLIGHT));
    let mut appends = tokio::task::JoinSet::new();
    let mut append_latencies_us =
        Vec::with_capacity(usize::try_from(planned).unwrap_or(0).min(100_000_000));
    // Periods below the timer's millisecond resolution fire in bursts; Burst keeps the average at `rate`.
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for _event in 0..planned {
        ticks.tick().await;
        while let Some(joined) = appends.try_join_next() {
            append_latencies_us.extend(joined.context("an append task panicked")?);
        }
        if append_errors.load(Ordering::Relaxed) >= MAX_FAILED_APPENDS {
            break;
        }
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .context("the append limiter closed")?;
        let writer = writer.clone();
        let stream = stream.to_owned();
        let (appended, append_errors, size) = (appended.clone(), append_errors.clone(), args.size);
        appends.spawn(async move {
            let event = EventData::binary(BENCH_EVENT_TYPE, timestamped_payload(size));
            let options = AppendToStreamOptions::default().expected_revision(ExpectedRevision::Any);
            let sent = Instant::now();
            let latency_us = match writer
                .append_to_stream(stream.as_str(), &options, event)
                .await
            {
                Ok(_) => {
                    appended.fetch_add(1, Ordering::Relaxed);
                    Some(micros(sent.elapsed()))
                }
                Err(error) => {
                    if append_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("persistent: an append failed: {error}");
                    }
                    None
                }
            };
            drop(permit);
            latency_us
        });
    }
    while let Some(joined) = appends.join_next().await {
        append_latencies_us.extend(joined.context("an append task panicked")?);
    }
    let elapsed = started.elapsed();
    drop(progress);
    let appended = appended.load(Ordering::Relaxed);
    let append_errors = append_errors.load(Ordering::Relaxed);

    // Give the consumers time to receive what was appended, then stop them.
    let drain = Duration::from_secs(args.timeout_secs).min(MAX_LATENCY_DRAIN);
    let drain_started = Instant::now();
    while seen.unique() < appended && drain_started.elapsed() < drain {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            early = consumers.tasks.join_next() => {
                let _ = consumers.stop().await;
                return Err(early_stop(early));
            }
        }
    }
    let delivered = seen.unique();
    describe_group(writer, stream).await;
    if delivered < appended {
        eprintln!(
            "persistent: only {delivered} of {appended} appended events were delivered within {drain:?} of the last append"
        );
    }
    let totals = sum_consumers(consumers.stop().await?)?;
    Ok(PersistentReport::Latency(PersistentLatencyReport {
        test: "persistent",
        target: target.kind,
        mode: "latency",
        rate: args.rate,
        events_per_sec: per_second(appended, elapsed),
        seconds: seconds(elapsed),
        events: appended,
        delivered,
        consumers: args.consumers,
        connections: clients.len() as u64,
        buffer_size: args.buffer_size,
        size: args.size,
        latency_us: LatencySummary::of(totals.latencies_us),
        append_latency_us: LatencySummary::of(append_latencies_us),
        per_consumer: totals.per_consumer,
        duplicates: totals.duplicates,
        retried: totals.retried,
        append_errors,
        rss_mb: rss.map(RssSampler::finish),
    }))
}

/// One line of `bench projection` output.
#[derive(Serialize, Debug)]
struct ProjectionReport {
    test: &'static str,
    target: &'static str,
    kind: ProjectionKind,
    /// Events the projection processed.
    events: u64,
    /// Partitions the projection reported (1 when not partitioned).
    partitions: i64,
    prewrite_seconds: f64,
    /// From the create call to the statistics showing every event processed.
    seconds: f64,
    events_per_sec: f64,
    status: String,
}

const PROJECTION_STREAMS: u64 = 1_000;
const PROJECTION_EVENTS_PER_APPEND: u64 = 500;

fn projection_query(kind: ProjectionKind) -> &'static str {
    match kind {
        ProjectionKind::Count => {
            "fromAll().when({
                $init: function() { return { count: 0 }; },
                $any: function(s, e) { s.count += 1; }
            })"
        }
        ProjectionKind::Partitioned => {
            "fromAll().partitionBy(function(e) { return e.body.account; }).when({
                $init: function() { return { count: 0, total: 0 }; },
                $any: function(s, e) { s.count += 1; s.total += e.body.amount; }
            })"
        }
    }
}

/// Appends `events` JSON events `{"account": "acc-<n % partitions>", "amount": n % 100}` over
/// [`PROJECTION_STREAMS`] streams, 500 per append, 16 appends in flight.
async fn prewrite_accounts(client: &Client, events: u64, partitions: u64) -> anyhow::Result<()> {
    let appends = events.div_ceil(PROJECTION_EVENTS_PER_APPEND);
    let done = Arc::new(AtomicU64::new(0));
    let _progress = Progress::spawn("prewrite", "appends", done.clone(), appends);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let client = client.clone();
        let next = next.clone();
        let done = done.clone();
        tasks.spawn(async move {
            loop {
                let append = next.fetch_add(1, Ordering::Relaxed);
                if append >= appends {
                    return anyhow::Ok(());
                }
                let first = append * PROJECTION_EVENTS_PER_APPEND;
                let last = (first + PROJECTION_EVENTS_PER_APPEND).min(events);
                let batch = (first..last)
                    .map(|n| {
                        EventData::json(
                            BENCH_EVENT_TYPE,
                            &serde_json::json!({"account": format!("acc-{}", n % partitions), "amount": n % 100}),
                        )
                        .map(|e| e.id(uuid::Uuid::new_v4()))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .context("serialise an event")?;
                let stream = format!("bench-proj-{}", append % PROJECTION_STREAMS);
                client
                    .append_to_stream(stream, &AppendToStreamOptions::default(), batch)
                    .await
                    .context("pre-write events")?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a pre-write task panicked")??;
    }
    Ok(())
}

async fn projection(target: &Target, args: &ProjectionArgs) -> anyhow::Result<ProjectionReport> {
    let client = wait_until_ready(&target.connection_string, READY_TIMEOUT, false).await?;
    eprintln!(
        "projection: pre-writing {} events over {} accounts",
        args.events, args.partitions
    );
    let prewrite_started = Instant::now();
    prewrite_accounts(&client, args.events, args.partitions).await?;
    let prewrite = prewrite_started.elapsed();
    let settings: ClientSettings = with_quick_discovery(&target.connection_string)
        .parse()
        .context("parse the connection string")?;
    let projections = eventstore::ProjectionClient::new(settings);
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let options = eventstore::GenericProjectionOptions::default();
    eprintln!(
        "projection: {name} ({:?}) over {} events",
        args.kind, args.events
    );
    let started = Instant::now();
    projections
        .create(
            name.as_str(),
            projection_query(args.kind).to_owned(),
            &eventstore::CreateProjectionOptions::default(),
        )
        .await
        .context("create the projection")?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_report = Instant::now();
    let status = loop {
        let status = projections
            .get_status(name.as_str(), &options)
            .await
            .context("projection statistics")?
            .ok_or_else(|| anyhow!("the projection {name} is not listed"))?;
        if status.status == "Faulted" {
            bail!("the projection faulted: {}", status.state_reason);
        }
        if u64::try_from(status.events_processed_after_restart).unwrap_or(0) >= args.events {
            break status;
        }
        if Instant::now() >= deadline {
            bail!(
                "the projection processed {} of {} events within {:?}",
                status.events_processed_after_restart,
                args.events,
                deadline - started
            );
        }
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            last_report = Instant::now();
            eprintln!(
                "projection: {}/{} events ({:.0}/s)",
                status.events_processed_after_restart,
                args.events,
                per_second(
                    u64::try_from(status.events_processed_after_restart).unwrap_or(0),
                    started.elapsed()
                )
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    let processed = u64::try_from(status.events_processed_after_restart).unwrap_or(0);
    if let Err(error) = projections.disable(name.as_str(), &options).await {
        eprintln!("projection: could not disable {name}: {error}");
    }
    Ok(ProjectionReport {
        test: "projection",
        target: target.kind,
        kind: args.kind,
        events: processed,
        partitions: i64::from(status.partitions_cached.max(1)),
        prewrite_seconds: seconds(prewrite),
        seconds: seconds(elapsed),
        events_per_sec: per_second(processed, elapsed),
        status: status.status,
    })
}

/// One line of `bench system-projections` output.
#[derive(Serialize, Debug)]
struct SystemProjectionsReport {
    test: &'static str,
    target: &'static str,
    requests: u64,
    events_per_append: u64,
    rounds: u64,
    /// events/s of each round.
    without: Vec<f64>,
    with: Vec<f64>,
    /// Medians.
    events_per_sec_without: f64,
    events_per_sec_with: f64,
    /// How much longer an append takes with the system projections: `without / with - 1`, in percent.
    overhead_percent: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

async fn system_projections(
    args: &SystemProjectionsArgs,
) -> anyhow::Result<SystemProjectionsReport> {
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..args.rounds * 2 {
        let standard_projections = round % 2 == 1;
        let target_args = TargetArgs {
            connection_string: None,
            embedded: true,
            db: None,
            mem_db: args.mem_db,
            no_standard_projections: !standard_projections,
            live_read_interval_ms: None,
        };
        let flood = WriteFloodArgs {
            target: target_args.clone(),
            clients: args.clients,
            requests: args.requests,
            streams: args.streams,
            size: args.size,
            events_per_append: args.events_per_append,
            connections: 4,
            batch_append: false,
        };
        let target = Target::open(&target_args).await?;
        let outcome = write_flood(&target, &flood).await;
        let report = target.close_after(outcome).await?;
        if report.errors > 0 {
            bail!("{} appends failed", report.errors);
        }
        eprintln!(
            "system-projections: round {} {}: {:.0} events/s",
            round / 2 + 1,
            if standard_projections { "on" } else { "off" },
            report.events_per_sec
        );
        if standard_projections {
            with.push(report.events_per_sec);
        } else {
            without.push(report.events_per_sec);
        }
    }
    let events_per_sec_without = median(&without);
    let events_per_sec_with = median(&with);
    let overhead_percent = if events_per_sec_with > 0.0 {
        ((events_per_sec_without / events_per_sec_with - 1.0) * 1000.0).round() / 10.0
    } else {
        0.0
    };
    Ok(SystemProjectionsReport {
        test: "system-projections",
        target: if args.mem_db {
            "embedded-memory"
        } else {
            "embedded-disk"
        },
        requests: args.requests,
        events_per_append: args.events_per_append,
        rounds: args.rounds,
        without,
        with,
        events_per_sec_without,
        events_per_sec_with,
        overhead_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_uses_nearest_rank() {
        let expected = [
            ((1..=1000).collect::<Vec<u32>>(), (500, 990, 999, 1000)),
            ((1..=10).rev().collect(), (5, 10, 10, 10)),
            (vec![7], (7, 7, 7, 7)),
            (Vec::new(), (0, 0, 0, 0)),
        ];
        for (samples, (p50, p99, p999, max)) in expected {
            let summary = LatencySummary::of(samples.clone());
            assert_eq!(
                summary,
                LatencySummary {
                    p50,
                    p99,
                    p999,
                    max
                },
                "{samples:?}"
            );
        }
    }

    #[test]
    fn quick_discovery_is_added_once() {
        let cases = [
            (
                "esdb://127.0.0.1:2113?tls=false",
                "esdb://127.0.0.1:2113?tls=false&discoveryInterval=1",
            ),
            (
                "esdb://127.0.0.1:2113",
                "esdb://127.0.0.1:2113?discoveryInterval=1",
            ),
            (
                "esdb://h:1?discoveryinterval=20",
                "esdb://h:1?discoveryinterval=20",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(with_quick_discovery(given), expected);
        }
    }

    #[test]
    fn prewrite_batches_stay_below_the_append_limit() {
        assert_eq!(prewrite_events_per_append(100), 500);
        assert_eq!(prewrite_events_per_append(1024 * 1024), 4);
        assert_eq!(prewrite_events_per_append(64 * 1024 * 1024), 1);
        assert_eq!(prewrite_events_per_append(0), 500);
    }

    #[test]
    fn seen_revisions_count_each_revision_once() {
        let seen = SeenRevisions::new(130);
        assert!(matches!(seen.mark(0), Seen::First));
        assert!(matches!(seen.mark(129), Seen::First));
        assert!(matches!(seen.mark(64), Seen::First));
        assert!(matches!(seen.mark(0), Seen::Again));
        assert!(matches!(seen.mark(192), Seen::OutOfRange));
        assert_eq!(seen.unique(), 3);
    }

    #[test]
    fn send_time_travels_in_the_payload() {
        let before = unix_micros();
        let data = timestamped_payload(100);
        assert_eq!(data.len(), 100);
        let sent = send_micros(&data).expect("a timestamp");
        assert!(sent >= before && sent <= unix_micros());
        assert_eq!(timestamped_payload(0).len(), 8);
        assert_eq!(send_micros(b"short"), None);
    }

    #[test]
    fn vm_rss_is_parsed() {
        let status = "Name:\tbench\nVmPeak:\t  300000 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status), Some(123_456));
        assert_eq!(parse_vm_rss_kib("Name:\tbench\n"), None);
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
        let cli = Cli::try_parse_from(["bench", "persistent", "--embedded"])
            .expect("persistent arguments parse");
        match cli.bench.command {
            BenchCommand::Persistent(args) => {
                assert_eq!(args.mode, PersistentMode::Throughput);
                assert_eq!(
                    (
                        args.events,
                        args.consumers,
                        args.buffer_size,
                        args.rate,
                        args.duration_secs
                    ),
                    (200_000, 4, 100, 5_000, 10)
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "bench",
            "persistent",
            "--mode",
            "latency",
            "--rate",
            "1000",
            "--consumers",
            "2",
        ])
        .expect("persistent latency arguments parse");
        match cli.bench.command {
            BenchCommand::Persistent(args) => {
                assert_eq!(
                    (args.mode, args.rate, args.consumers),
                    (PersistentMode::Latency, 1_000, 2)
                );
                assert_eq!(args.target.live_read_interval_ms, None);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "bench",
            "persistent",
            "--embedded",
            "--live-read-interval-ms",
            "0",
        ])
        .expect("an embedded server's live read interval parses");
        match cli.bench.command {
            BenchCommand::Persistent(args) => {
                assert_eq!(args.target.live_read_interval_ms, Some(0));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            Cli::try_parse_from(["bench", "persistent", "--consumers", "0"]).is_err(),
            "a group needs a consumer"
        );
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
