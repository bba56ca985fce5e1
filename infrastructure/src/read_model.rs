//! Read models and their storage: the redb database (`ReadModelStore`, on disk or in memory), the
//! `ReadModel` trait a service implements to apply events through a write transaction, and the `Checkpoint` a
//! projector stores in that same transaction.

use std::path::Path;
use std::sync::Arc;

use events::DomainEvent;
use eventstore::{Position, ResolvedEvent};
use redb::backends::InMemoryBackend;
use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::projector::{ProjectorError, ProjectorSource};
use crate::store::StoredEvent;

/// Projector name → its JSON-encoded [`Checkpoint`], in every read-model database.
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projector_checkpoints");

/// The last event a projector applied (or, for filtered `$all`, the last position the server said it had
/// scanned past).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Checkpoint {
    All { commit: u64, prepare: u64 },
    Stream { revision: u64 },
}

impl Checkpoint {
    pub(crate) fn of(source: &ProjectorSource, event: &ResolvedEvent) -> Checkpoint {
        let original = event.get_original_event();
        match source {
            ProjectorSource::All { .. } => Checkpoint::All {
                commit: original.position.commit,
                prepare: original.position.prepare,
            },
            ProjectorSource::Stream { .. } => Checkpoint::Stream {
                revision: original.revision,
            },
        }
    }

    /// Whether `self` is at or past `other` (checkpoints of different kinds never are).
    pub fn covers(&self, other: &Checkpoint) -> bool {
        match (self, other) {
            (
                Checkpoint::All { commit, prepare },
                Checkpoint::All {
                    commit: c,
                    prepare: p,
                },
            ) => (commit, prepare) >= (c, p),
            (Checkpoint::Stream { revision }, Checkpoint::Stream { revision: r }) => revision >= r,
            _ => false,
        }
    }

    /// Whether an event at `position` in `$all` has been applied.
    pub fn covers_position(&self, position: Position) -> bool {
        self.covers(&Checkpoint::All {
            commit: position.commit,
            prepare: position.prepare,
        })
    }
}

/// The most memory a read-model database's page cache may hold (redb's own default is 1 GiB per database; with
/// three read models and the store's index that made the bank's memory grow to ~4 GB in long runs).
pub const CACHE_BYTES: usize = 64 << 20;

/// The redb database that holds read models and their checkpoints. Cheap to clone: clones share the database.
#[derive(Debug, Clone)]
pub struct ReadModelStore {
    database: Arc<Database>,
}

impl ReadModelStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, redb::DatabaseError> {
        Ok(Self {
            database: Arc::new(
                Database::builder()
                    .set_cache_size(CACHE_BYTES)
                    .create(path)?,
            ),
        })
    }

    /// A database in memory, for tests and throwaway runs.
    pub fn in_memory() -> Result<Self, redb::DatabaseError> {
        let database = Database::builder().create_with_backend(InMemoryBackend::new())?;
        Ok(Self {
            database: Arc::new(database),
        })
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// A read snapshot for queries: it sees whole batches only, each with its checkpoint.
    pub fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        self.database.begin_read()
    }

    /// The checkpoint stored for the projector `name`.
    pub fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, ProjectorError> {
        let transaction = self.database.begin_read().map_err(redb::Error::from)?;
        let table = match transaction.open_table(CHECKPOINTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(redb::Error::from(error).into()),
        };
        let Some(stored) = table.get(name).map_err(redb::Error::from)? else {
            return Ok(None);
        };
        // Starting over from the beginning would apply every event a second time: refuse instead.
        serde_json::from_slice(stored.value())
            .map(Some)
            .map_err(|error| ProjectorError::CorruptCheckpoint {
                projector: name.to_owned(),
                reason: error.to_string(),
            })
    }
}

pub(crate) fn store_checkpoint(
    transaction: &WriteTransaction,
    name: &str,
    checkpoint: &Checkpoint,
) -> Result<(), redb::Error> {
    let encoded = serde_json::to_vec(checkpoint).unwrap_or_default();
    transaction
        .open_table(CHECKPOINTS)?
        .insert(name, encoded.as_slice())?;
    Ok(())
}

/// Why a read model could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("read model storage failed")]
    Storage(#[from] redb::Error),
    #[error("{0}")]
    Invalid(String),
}

macro_rules! storage_errors {
    ($($error:ty),*) => {
        $(impl From<$error> for ApplyError {
            fn from(error: $error) -> Self {
                ApplyError::Storage(error.into())
            }
        })*
    };
}

storage_errors!(redb::TableError, redb::StorageError);

impl From<serde_json::Error> for ApplyError {
    fn from(error: serde_json::Error) -> Self {
        ApplyError::Invalid(error.to_string())
    }
}

/// A read model kept by a [`Projector`](crate::Projector). `apply` writes through the projector's transaction, which also stores
/// the checkpoint and commits both at once.
pub trait ReadModel: Send + 'static {
    type Event: DomainEvent + Send;

    /// Creates the model's tables, so queries find them before the first event. Runs once per start.
    fn setup(&mut self, transaction: &WriteTransaction) -> Result<(), ApplyError> {
        let _ = transaction;
        Ok(())
    }

    /// Applies one event. Events of types `Self::Event` does not know never reach it.
    fn apply(
        &mut self,
        transaction: &WriteTransaction,
        event: &StoredEvent<Self::Event>,
    ) -> Result<(), ApplyError>;

    /// Applies a batch of events, in order, in one transaction; on failure, says at which event. The default
    /// applies them one by one; a model whose rows several events of a batch touch (a counter, an aggregate's
    /// row) can override it to read and write each row once per batch instead of once per event.
    fn apply_batch(
        &mut self,
        transaction: &WriteTransaction,
        events: &[StoredEvent<Self::Event>],
    ) -> Result<(), (usize, ApplyError)> {
        for (index, event) in events.iter().enumerate() {
            self.apply(transaction, event)
                .map_err(|error| (index, error))?;
        }
        Ok(())
    }
}
