//! `bank bench`: end-to-end measurements of the inbound pipeline on the embedded, durable store — payments per
//! second from scheme message to final outcome, and received → final latency at a paced rate. Prints one JSON
//! line; progress goes to stderr.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::launcher::{Bank, BankOptions, Ports, StoreChoice};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// `throughput`: submit every payment at once and time until all are final. `latency`: submit at `--rate`
    /// for `--duration-secs` and report received → final latency.
    #[arg(long, default_value = "throughput")]
    pub mode: String,
    /// Payments in throughput mode.
    #[arg(long, default_value_t = 20_000)]
    pub payments: usize,
    /// Payments per second in latency mode.
    #[arg(long, default_value_t = 1_000)]
    pub rate: usize,
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Payments per request to the gateway.
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Competing instances of every consumer group.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Accounts the payments are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub accounts: u32,
    /// Latency mode: how many payments (evenly spread over the run) to read back for received → final
    /// latency; 0 reads every one.
    #[arg(long, default_value_t = 50_000)]
    pub latency_samples: usize,
    /// A running store to use instead of eventstore-lite in this process (e.g. to see the store's CPU apart
    /// from the services'). It must be empty of earlier bench runs' groups and projections.
    #[arg(long)]
    pub eventstore: Option<String>,
}

fn payment(n: usize, account: &data_seeder::SeedAccount, run: &str) -> Value {
    json!({
        "schemeTransactionId": format!("BENCH-{run}-{n}"),
        "payer": { "name": "ACME PAYROLL LTD", "sortCode": "200000", "accountNumber": "55779911" },
        "beneficiary": {
            "name": "BENEFICIARY",
            "sortCode": account.id.sort_code.as_str(),
            "accountNumber": account.id.account_number.as_str(),
        },
        "amount": 100 + (n % 10_000) as i64,
        "reference": format!("BENCH {}", n % 100_000),
    })
}

async fn finished(http: &reqwest::Client, bank: &Bank) -> anyhow::Result<(u64, Value)> {
    let stats: Value = http
        .get(format!("{}/stats", bank.urls.payments))
        .send()
        .await?
        .json()
        .await?;
    let by_stage = &stats["byStage"];
    let done =
        by_stage["credited"].as_u64().unwrap_or(0) + by_stage["returned"].as_u64().unwrap_or(0);
    Ok((done, by_stage.clone()))
}

async fn wait_all_final(
    http: &reqwest::Client,
    bank: &Bank,
    expected: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let (done, by_stage) = finished(http, bank).await?;
        if done >= expected {
            return Ok(());
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("bench: {done}/{expected} payments final; by stage {by_stage}");
            for url in [
                &bank.urls.payments,
                &bank.urls.sanctions,
                &bank.urls.accounts,
            ] {
                let text = http
                    .get(format!("{url}/metrics"))
                    .send()
                    .await?
                    .text()
                    .await?;
                for line in text
                    .lines()
                    .filter(|l| l.starts_with("subscription_events_handled_total"))
                {
                    eprintln!("  {line}");
                }
            }
            last_report = Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {expected} payments finished in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long one batch may go on meeting a busy gateway before the bench gives up: the pipeline finishes
/// thousands of payments a second, so a gateway busy this long has stopped making progress.
const BUSY_FOR_AT_MOST: Duration = Duration::from_secs(120);

/// Posts one batch to the gateway until it is accepted, waiting out each busy answer (503 with `Retry-After`)
/// as a scheme would, for at most [`BUSY_FOR_AT_MOST`]. Returns how many busy answers it got.
async fn submit(http: &reqwest::Client, url: &str, batch: &[Value]) -> anyhow::Result<u64> {
    let mut busy = 0;
    let first_sent = Instant::now();
    loop {
        let response = http
            .post(format!("{url}/scheme/inbound"))
            .json(batch)
            .send()
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(busy);
        }
        match scheme_simulator::retry_after(status, response.headers()) {
            Some(_) if first_sent.elapsed() >= BUSY_FOR_AT_MOST => anyhow::bail!(
                "the gateway has answered busy for {} s ({busy} answers): the pipeline is not finishing payments",
                BUSY_FOR_AT_MOST.as_secs()
            ),
            Some(wait) => {
                busy += 1;
                tokio::time::sleep(wait).await;
            }
            None => anyhow::bail!("gateway answered {status}: {}", response.text().await?),
        }
    }
}

/// Requests to the gateway in flight at once in latency mode, like a scheme's few connections: plenty for
/// well over 5,000 payments/s.
const SENDERS: usize = 8;

/// `value` rounded to `decimals` places, for reports.
fn rounded(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub async fn run(args: BenchArgs) -> anyhow::Result<bool> {
    let calibration_before = tokio::task::spawn_blocking(calibrate).await?;
    let data_dir =
        std::env::temp_dir().join(format!("bank-bench-{}", uuid::Uuid::new_v4().simple()));
    let plan = data_seeder::SeedPlan {
        accounts: args.accounts,
        blocked: 0,
        closed: 0,
        ..Default::default()
    };
    let accounts: Vec<_> = plan.accounts().collect();
    let options = BankOptions {
        store: match &args.eventstore {
            Some(connection) => StoreChoice::External(connection.clone()),
            None => StoreChoice::EmbeddedDisk(data_dir.join("eventstore")),
        },
        data_dir: data_dir.clone(),
        replicas: args.replicas.max(1),
        ports: Ports::ANY,
        seed: Some(plan),
        secure: false,
    };
    let bank = Bank::start(options).await?;
    let http = reqwest::Client::new();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let result = match args.mode.as_str() {
        "throughput" => throughput(&http, &bank, &args, &accounts, &run_id).await,
        "latency" => latency(&http, &bank, &args, &accounts, &run_id).await,
        other => Err(anyhow::anyhow!(
            "unknown mode '{other}' (throughput or latency)"
        )),
    };
    bank.shutdown().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut report = result?;
    let calibration_after = tokio::task::spawn_blocking(calibrate).await?;
    report["machine"] = json!({ "calibrationMs": [calibration_before, calibration_after] });
    println!("{report}");
    Ok(true)
}

/// The store's write counters (`eventstore_lite_*` on its `/metrics`): appends, group commits, fsyncs, and the
/// seconds spent in fsync. Empty against a store that does not publish them.
async fn store_counters(http: &reqwest::Client, bank: &Bank) -> HashMap<String, f64> {
    let Ok(response) = http
        .get(format!("{}/metrics", bank.urls.eventstore))
        .send()
        .await
    else {
        return HashMap::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            let name = name.strip_prefix("eventstore_lite_")?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// What the store did between two [`store_counters`] readings.
fn store_work(before: &HashMap<String, f64>, after: &HashMap<String, f64>, seconds: f64) -> Value {
    let delta = |name: &str| after.get(name).unwrap_or(&0.0) - before.get(name).unwrap_or(&0.0);
    let batches = delta("write_batches_total").max(1.0);
    json!({
        "appends": delta("writes_total"),
        "events": delta("events_written_total"),
        "groupCommits": delta("write_batches_total"),
        "appendsPerGroupCommit": rounded(delta("writes_total") / batches, 1),
        "fsyncBusyFraction": rounded(delta("fsync_seconds_total") / seconds, 3),
        "indexCommitBusyFraction": rounded(delta("index_commit_seconds_total") / seconds, 3),
        "indexCheckpoints": delta("index_checkpoints_total"),
        "longestIndexCheckpointMs": rounded(after.get("index_checkpoint_seconds_max").unwrap_or(&0.0) * 1000.0, 1),
    })
}

async fn throughput(
    http: &reqwest::Client,
    bank: &Bank,
    args: &BenchArgs,
    accounts: &[data_seeder::SeedAccount],
    run_id: &str,
) -> anyhow::Result<Value> {
    let counters_before = store_counters(http, bank).await;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let mut submissions = tokio::task::JoinSet::new();
    let batches: Vec<Vec<Value>> = (0..args.payments)
        .map(|n| payment(n, &accounts[n % accounts.len()], run_id))
        .collect::<Vec<_>>()
        .chunks(args.batch.max(1))
        .map(<[Value]>::to_vec)
        .collect();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for batch in batches {
        let (http, url, permit) = (
            http.clone(),
            bank.urls.payments.clone(),
            semaphore.clone().acquire_owned().await?,
        );
        submissions.spawn(async move {
            let _permit = permit;
            submit(&http, &url, &batch).await
        });
    }
    let mut busy_answers = 0;
    while let Some(done) = submissions.join_next().await {
        busy_answers += done.context("submission task")??;
    }
    let submitted = started.elapsed();
    wait_all_final(http, bank, args.payments as u64, Duration::from_secs(1800)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_used(cpu_before, args.payments);
    let counters_after = store_counters(http, bank).await;
    Ok(json!({
        "test": "bank-pipeline",
        "mode": "throughput",
        "cpu": cpu,
        "store": store_work(&counters_before, &counters_after, seconds),
        "payments": args.payments,
        "replicas": args.replicas,
        "submitSeconds": submitted.as_secs_f64(),
        "busyAnswers": busy_answers,
        "seconds": seconds,
        "paymentsPerSec": (args.payments as f64 / seconds).round(),
    }))
}

async fn latency(
    http: &reqwest::Client,
    bank: &Bank,
    args: &BenchArgs,
    accounts: &[data_seeder::SeedAccount],
    run_id: &str,
) -> anyhow::Result<Value> {
    let counters_before = store_counters(http, bank).await;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let ticks_per_sec = 20;
    let per_tick = (args.rate / ticks_per_sec).max(1);
    let total_ticks = args.duration_secs as usize * ticks_per_sec;
    let mut interval = tokio::time::interval(Duration::from_millis(1000 / ticks_per_sec as u64));
    // The ticker queues each tick's payments as a range of numbers; a few senders build and post them, so a busy
    // gateway makes the queue longer (two numbers a tick), not the number of open requests.
    let (queue, ranges) = tokio::sync::mpsc::unbounded_channel::<std::ops::Range<usize>>();
    let ranges = std::sync::Arc::new(tokio::sync::Mutex::new(ranges));
    let accounts: std::sync::Arc<[data_seeder::SeedAccount]> = accounts.into();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (ranges, accounts, accepted) = (ranges.clone(), accounts.clone(), accepted.clone());
        let (http, bank_url, run_id) =
            (http.clone(), bank.urls.payments.clone(), run_id.to_owned());
        senders.spawn(async move {
            let mut busy_answers = 0;
            loop {
                let Some(range) = ranges.lock().await.recv().await else {
                    return anyhow::Ok(busy_answers);
                };
                let count = range.len();
                let batch: Vec<Value> = range
                    .map(|i| payment(i, &accounts[i % accounts.len()], &run_id))
                    .collect();
                busy_answers += submit(&http, &bank_url, &batch).await?;
                accepted.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let mut n = 0;
    let mut last_report = Instant::now();
    for _ in 0..total_ticks {
        interval.tick().await;
        queue.send(n..n + per_tick)?;
        n += per_tick;
        if last_report.elapsed() >= Duration::from_secs(10) {
            let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!("bench: {n} payments due, {accepted} accepted by the gateway");
            last_report = Instant::now();
        }
    }
    drop(queue);
    let mut busy_answers = 0;
    while let Some(done) = senders.join_next().await {
        busy_answers += done.context("sender task")??;
    }
    // With a busy gateway the last payments are accepted after the run's duration.
    let submitted = started.elapsed();
    wait_all_final(http, bank, n as u64, Duration::from_secs(600)).await?;
    let all_final = started.elapsed();
    let cpu = cpu_used(cpu_before, n);
    let counters_after = store_counters(http, bank).await;
    // Received → final, from the events' own timestamps, of every payment or of an even sample.
    let step = match args.latency_samples {
        0 => 1,
        samples => n.div_ceil(samples).max(1),
    };
    let mut latencies = Vec::with_capacity(n / step + 1);
    let mut stages: HashMap<String, usize> = HashMap::new();
    for i in (0..n).step_by(step) {
        let id = events::ids::payment_id_for_scheme_transaction(&format!("BENCH-{run_id}-{i}"));
        let payment: Value = http
            .get(format!("{}/payments/{id}", bank.urls.payments))
            .send()
            .await?
            .json()
            .await?;
        *stages
            .entry(payment["stage"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        let times: Vec<DateTime<Utc>> = payment["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|e| e["occurredAt"].as_str().or(e["created"].as_str()))
                    .filter_map(|t| t.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if let (Some(first), Some(last)) = (times.first(), times.last()) {
            latencies.push((*last - *first).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "test": "bank-pipeline",
        "mode": "latency",
        "cpu": cpu,
        "rate": args.rate,
        "seconds": args.duration_secs,
        "payments": n,
        "replicas": args.replicas,
        "stagesOfSampled": stages,
        "submitSeconds": submitted.as_secs_f64(),
        "busyAnswers": busy_answers,
        "allFinalSeconds": all_final.as_secs_f64(),
        "store": store_work(&counters_before, &counters_after, all_final.as_secs_f64()),
        "receivedToFinalMs": {
            "p50": percentile(&latencies, 0.5),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(0.0),
            "samples": latencies.len(),
        },
    }))
}

/// The CPU time (user + system, all threads) this process has used so far; `None` where `/proc` is missing.
fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `/proc/<pid>/stat`'s CPU time: `utime` and `stime` (fields 14 and 15, in clock ticks of 1/100 s). The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted from its closing parenthesis.
fn cpu_seconds_of(stat: &str) -> Option<f64> {
    const TICKS_PER_SECOND: f64 = 100.0;
    let mut after_name = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: f64 = after_name.nth(11)?.parse().ok()?;
    let stime: f64 = after_name.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// The CPU the run took, in all and per payment (the whole bank's: store, services, projections and the bench).
fn cpu_used(before: Option<f64>, payments: usize) -> Value {
    match (before, process_cpu_seconds()) {
        (Some(before), Some(after)) => {
            let seconds = after - before;
            json!({
                "seconds": rounded(seconds, 2),
                "msPerPayment": rounded(seconds * 1000.0 / payments.max(1) as f64, 3),
            })
        }
        _ => Value::Null,
    }
}

/// Milliseconds a fixed single-threaded workload takes now (sorting 2 million pseudo-random numbers: memory,
/// branches and arithmetic), the best of three. The development VM's speed drifts by up to ~1.7× within an hour,
/// so a report carries this reading from before and after the run: runs compare when their readings do.
fn calibrate() -> f64 {
    let best = (0..3).map(|_| sort_once()).fold(f64::INFINITY, f64::min);
    rounded(best * 1000.0, 1)
}

fn sort_once() -> f64 {
    let started = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut numbers: Vec<u64> = (0..2_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    numbers.sort_unstable();
    std::hint::black_box(&numbers);
    started.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (bank (bench) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 0 0";
        assert_eq!(cpu_seconds_of(stat), Some(3.25));
        assert_eq!(cpu_seconds_of("garbage"), None);
        if let Some(now) = process_cpu_seconds() {
            let later = {
                let spent = calibrate();
                assert!(spent > 0.0);
                process_cpu_seconds().expect("readable a moment ago")
            };
            assert!(later >= now);
        }
    }
}
