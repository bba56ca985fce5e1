//! The sanctioned-names list as the service keeps it: the `sanctionedNames` aggregate behind the repository
//! (snapshots every few events), and a cache that screening reads, brought up to date with the events appended
//! since it last looked, so a name added a moment ago is already screened for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use events::sanctions::SanctionedNamesEvent;
use events::streams;
use infrastructure::{Aggregate, Repository, StoreError};
use tokio::sync::Mutex;

use crate::list::SanctionedNames;
use crate::screening::Screening;

impl Aggregate for SanctionedNames {
    type Event = SanctionedNamesEvent;
    type Id = ();

    fn stream_name(_: &()) -> String {
        streams::SANCTIONED_NAMES.to_owned()
    }

    fn apply(&mut self, event: &SanctionedNamesEvent) {
        SanctionedNames::apply(self, event);
    }
}

impl Aggregate for Screening {
    type Event = events::sanctions::ScreeningEvent;
    type Id = events::PaymentId;

    fn stream_name(id: &events::PaymentId) -> String {
        streams::screening(id)
    }

    fn apply(&mut self, event: &Self::Event) {
        Screening::apply(self, event);
    }
}

/// The list as last read, the revision of the last event in it, and which read produced it.
#[derive(Debug, Default)]
struct Cached {
    loaded: bool,
    revision: Option<u64>,
    list: Arc<SanctionedNames>,
    /// The ticket of the read the list comes from (0: none yet).
    read: u64,
}

/// The current list for screening. Cheap to clone: clones share the cache.
///
/// Every caller gets a list read from the store after it called, so a name added a moment ago is screened for —
/// but callers share reads: one read serves everyone who arrived before it started, so screening many payments
/// at once costs one read per batch, not one per payment.
#[derive(Clone)]
pub struct CurrentList {
    repository: Repository<SanctionedNames>,
    cached: Arc<Mutex<Cached>>,
    /// Numbers the reads in the order they start.
    tickets: Arc<AtomicU64>,
}

impl CurrentList {
    pub fn new(repository: Repository<SanctionedNames>) -> Self {
        Self {
            repository,
            cached: Arc::default(),
            tickets: Arc::default(),
        }
    }

    /// The list as the store has it now: loaded through the repository (from its snapshot) the first time, then
    /// only the events appended since.
    pub async fn current(&self) -> Result<Arc<SanctionedNames>, StoreError> {
        let arrived_after = self.tickets.load(Ordering::SeqCst);
        let mut cached = self.cached.lock().await;
        if cached.loaded && cached.read > arrived_after {
            // A read that started after this call did has finished while we waited for the lock.
            return Ok(cached.list.clone());
        }
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        if !cached.loaded {
            let loaded = self.repository.load(&()).await?;
            cached.revision = loaded.revision;
            cached.list = Arc::new(loaded.state);
            cached.loaded = true;
            cached.read = ticket;
            return Ok(cached.list.clone());
        }
        let from = cached.revision.map_or(0, |revision| revision + 1);
        let newer = match self
            .repository
            .store()
            .read_stream_from::<SanctionedNamesEvent>(streams::SANCTIONED_NAMES, from)
            .await
        {
            Ok(newer) => newer,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(error) => return Err(error),
        };
        if let Some(last) = newer.last() {
            let mut list = (*cached.list).clone();
            for stored in &newer {
                list.apply(&stored.event);
            }
            cached.revision = Some(last.revision);
            cached.list = Arc::new(list);
        }
        cached.read = ticket;
        Ok(cached.list.clone())
    }
}
