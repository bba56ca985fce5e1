//! The catch-up projector: a read model in redb, stored with its checkpoint in one transaction, so a restart
//! (even of the process, reopening the database file) resumes after the last applied event and never applies an
//! event twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use infrastructure::eventstore::SubscriptionFilter;
use infrastructure::redb::{ReadableTable, TableDefinition, WriteTransaction};
use infrastructure::{
    ApplyError, CancellationToken, Checkpoint, EventStore, Metrics, Projector, ProjectorProgress,
    ProjectorSource, ReadModel, ReadModelStore, StoredEvent,
};

use crate::helpers::*;

/// Stream → its total, and "applications" → how many events the model has ever applied.
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("tally_totals");
const APPLICATIONS: &str = "applications";

/// Totals per stream, counting its applications in the database and in memory (this run only).
struct TotalsModel {
    applied_this_run: Arc<AtomicU64>,
}

impl ReadModel for TotalsModel {
    type Event = TallyEvent;

    fn setup(&mut self, transaction: &WriteTransaction) -> Result<(), ApplyError> {
        transaction.open_table(TOTALS)?;
        Ok(())
    }

    fn apply(
        &mut self,
        transaction: &WriteTransaction,
        event: &StoredEvent<TallyEvent>,
    ) -> Result<(), ApplyError> {
        let mut table = transaction.open_table(TOTALS)?;
        let total = table
            .get(event.stream.as_str())?
            .map(|v| v.value())
            .unwrap_or(0);
        let total = match &event.event {
            TallyEvent::Added(added) => total + added.amount,
            TallyEvent::Cleared(_) => 0,
        };
        table.insert(event.stream.as_str(), total)?;
        let applications = table.get(APPLICATIONS)?.map(|v| v.value()).unwrap_or(0);
        table.insert(APPLICATIONS, applications + 1)?;
        self.applied_this_run.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn read(read_models: &ReadModelStore, key: &str) -> Option<u64> {
    let transaction = read_models.begin_read().ok()?;
    let table = transaction.open_table(TOTALS).ok()?;
    table.get(key).ok()?.map(|v| v.value())
}

struct Running {
    applied_this_run: Arc<AtomicU64>,
    progress: ProjectorProgress,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), infrastructure::ProjectorError>>,
}

fn start_projector(
    store: &EventStore,
    read_models: &ReadModelStore,
    source: ProjectorSource,
) -> Running {
    let applied_this_run = Arc::new(AtomicU64::new(0));
    let model = TotalsModel {
        applied_this_run: applied_this_run.clone(),
    };
    let projector = Projector::new("totals", store.clone(), read_models.clone(), source, model)
        .with_metrics(&Metrics::new());
    let progress = projector.progress();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(projector.run(shutdown.clone()));
    Running {
        applied_this_run,
        progress,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        within("the projector to stop", self.task)
            .await
            .expect("the task runs")
            .expect("the projector stops without error");
    }
}

fn filtered_on(category: &str) -> ProjectorSource {
    ProjectorSource::All {
        filter: Some(SubscriptionFilter::on_stream_name().add_prefix(format!("{category}-"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_projector_resumes_after_its_checkpoint_and_applies_nothing_twice() {
    let app = start_store().await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("read-models.redb");
    let category = format!("tallyp{}", unique_id());
    let first_stream = format!("{category}-a");
    let second_stream = format!("{category}-b");
    append_added(&app.store, &first_stream, &[1, 2, 3]).await;
    append_added(&app.store, &second_stream, &[10]).await;
    // Events of other streams are filtered out on the server.
    append_added(&app.store, &format!("other{}-x", unique_id()), &[1000]).await;

    let read_models = ReadModelStore::open(&path).expect("the database opens");
    let run = start_projector(&app.store, &read_models, filtered_on(&category));
    wait_until("the first run applied the first four events", || async {
        read(&read_models, APPLICATIONS) == Some(4)
    })
    .await;
    wait_until("the first run caught up", || async {
        run.progress.is_caught_up()
    })
    .await;
    assert_eq!(
        (
            read(&read_models, &first_stream),
            read(&read_models, &second_stream)
        ),
        (Some(6), Some(10))
    );
    assert_eq!(run.applied_this_run.load(Ordering::SeqCst), 4);
    assert_eq!(run.progress.applied(), 4);
    run.stop().await;
    let checkpoint = read_models
        .checkpoint("totals")
        .expect("reads")
        .expect("a checkpoint is stored");
    drop(read_models);

    let last = append_added(&app.store, &first_stream, &[4, 5]).await;
    let checkpoint_after = Checkpoint::All {
        commit: last.position.commit,
        prepare: last.position.prepare,
    };
    assert!(!checkpoint.covers(&checkpoint_after));

    // As after a process restart: the same file, opened again.
    let read_models = ReadModelStore::open(&path).expect("the database opens again");
    let run = start_projector(&app.store, &read_models, filtered_on(&category));
    within(
        "the new events to be applied",
        run.progress.wait_for(checkpoint_after),
    )
    .await;
    wait_until("the second run caught up", || async {
        run.progress.is_caught_up()
    })
    .await;
    assert_eq!(read(&read_models, &first_stream), Some(15));
    assert_eq!(
        read(&read_models, APPLICATIONS),
        Some(6),
        "every event applied exactly once overall"
    );
    assert_eq!(
        run.applied_this_run.load(Ordering::SeqCst),
        2,
        "the restart replayed no history"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_projector_follows_a_category_stream_and_a_caller_can_wait_for_its_write() {
    let app = start_store().await;
    let read_models = ReadModelStore::in_memory().expect("an in-memory database");
    let category = format!("tallyc{}", unique_id());
    let stream = format!("{category}-1");
    append_added(&app.store, &stream, &[5]).await;
    let run = start_projector(
        &app.store,
        &read_models,
        ProjectorSource::Stream {
            stream: format!("$ce-{category}"),
            resolve_link_tos: true,
        },
    );
    wait_until("the projector caught up", || async {
        run.progress.is_caught_up()
    })
    .await;
    assert_eq!(read(&read_models, &stream), Some(5));

    // A command handler that just wrote can wait for the read model to include its write.
    append_added(&app.store, &stream, &[6]).await;
    within(
        "the projector to pass revision 1 of the category",
        run.progress.wait_for(Checkpoint::Stream { revision: 1 }),
    )
    .await;
    assert_eq!(read(&read_models, &stream), Some(11));

    // The tables exist from the start (setup), so queries on an empty model find them.
    let empty = ReadModelStore::in_memory().expect("an in-memory database");
    let idle = start_projector(
        &app.store,
        &empty,
        ProjectorSource::Stream {
            stream: format!("nothing-{}", unique_id()),
            resolve_link_tos: false,
        },
    );
    wait_until("the tables are created", || async {
        empty
            .begin_read()
            .map(|t| t.open_table(TOTALS).is_ok())
            .unwrap_or(false)
    })
    .await;
    idle.stop().await;
    run.stop().await;
}
