//! The stream index, kept in redb: stream name → stream id, and (stream id, revision) → log position.
//!
//! Every write batch commits one redb transaction. Most commits are not fsynced (the log is the source of truth
//! and was fsynced first); every checkpoint interval one commit is durable. Each commit also records how far
//! into the log the index reaches (`indexed_to`), so after a crash the index is whatever redb recovered, and the
//! log past its `indexed_to` is replayed.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::log::FIRST_POSITION;

const STREAMS: TableDefinition<&str, u64> = TableDefinition::new("streams");
const ENTRIES: TableDefinition<(u64, u64), u64> = TableDefinition::new("stream_entries");
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");

const INDEXED_TO: &str = "indexed_to";
const NEXT_STREAM_ID: &str = "next_stream_id";

/// An index entry: where a stream's event lives, and whether the stream holds the event itself or points at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The record at this position belongs to the stream.
    Event(u64),
    /// A `$>` link (written by a system projection) to the record at this position.
    Link(u64),
    /// A `$@` stream reference: the record at this position is the first event of the referenced stream.
    StreamRef(u64),
}

const LINK_BIT: u64 = 1 << 63;
const STREAM_REF_BIT: u64 = 1 << 62;

impl Entry {
    fn encode(self) -> u64 {
        match self {
            Entry::Event(p) => p,
            Entry::Link(p) => p | LINK_BIT,
            Entry::StreamRef(p) => p | STREAM_REF_BIT,
        }
    }

    fn decode(v: u64) -> Self {
        if v & LINK_BIT != 0 {
            Entry::Link(v & !LINK_BIT)
        } else if v & STREAM_REF_BIT != 0 {
            Entry::StreamRef(v & !STREAM_REF_BIT)
        } else {
            Entry::Event(v)
        }
    }

    pub fn position(self) -> u64 {
        match self {
            Entry::Event(p) | Entry::Link(p) | Entry::StreamRef(p) => p,
        }
    }
}

pub type IndexResult<T> = Result<T, redb::Error>;

pub struct Index {
    db: Database,
}

impl Index {
    pub fn open(path: &Path) -> IndexResult<Self> {
        let db = Database::builder().create(path)?;
        Self::init(db)
    }

    pub fn in_memory() -> IndexResult<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db)
    }

    fn init(db: Database) -> IndexResult<Self> {
        let txn = db.begin_write()?;
        txn.open_table(STREAMS)?;
        txn.open_table(ENTRIES)?;
        txn.open_table(STATE)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// (indexed_to, next_stream_id) as of the last commit redb kept.
    pub fn progress(&self) -> IndexResult<(u64, u64)> {
        let txn = self.db.begin_read()?;
        let state = txn.open_table(STATE)?;
        let indexed_to = state
            .get(INDEXED_TO)?
            .map(|v| v.value())
            .unwrap_or(FIRST_POSITION);
        let next_id = state.get(NEXT_STREAM_ID)?.map(|v| v.value()).unwrap_or(1);
        Ok((indexed_to, next_id))
    }

    /// Drops everything (used when the log turns out shorter than the index: it is rebuilt from the log).
    pub fn clear(&self) -> IndexResult<()> {
        let txn = self.db.begin_write()?;
        txn.delete_table(STREAMS)?;
        txn.delete_table(ENTRIES)?;
        txn.delete_table(STATE)?;
        txn.open_table(STREAMS)?;
        txn.open_table(ENTRIES)?;
        txn.open_table(STATE)?;
        txn.commit()?;
        Ok(())
    }

    pub fn begin_write(&self) -> IndexResult<IndexWrite> {
        Ok(IndexWrite {
            txn: self.db.begin_write()?,
            pending: Vec::new(),
            new_streams: Vec::new(),
        })
    }

    pub fn reader(&self) -> IndexResult<IndexReader> {
        let txn = self.db.begin_read()?;
        Ok(IndexReader {
            streams: txn.open_table(STREAMS)?,
            entries: txn.open_table(ENTRIES)?,
        })
    }
}

/// One write batch's changes, applied at commit.
pub struct IndexWrite {
    txn: redb::WriteTransaction,
    pending: Vec<((u64, u64), u64)>,
    new_streams: Vec<(String, u64)>,
}

impl IndexWrite {
    pub fn stream_id(&self, name: &str) -> IndexResult<Option<u64>> {
        let streams = self.txn.open_table(STREAMS)?;
        let id = streams.get(name)?.map(|v| v.value());
        Ok(id)
    }

    /// The highest revision recorded for the stream, and its entry.
    pub fn last_entry(&self, stream_id: u64) -> IndexResult<Option<(u64, Entry)>> {
        let entries = self.txn.open_table(ENTRIES)?;
        let last = entries
            .range((stream_id, 0)..=(stream_id, u64::MAX))?
            .next_back()
            .transpose()?;
        Ok(last.map(|(k, v)| (k.value().1, Entry::decode(v.value()))))
    }

    pub fn entry(&self, stream_id: u64, revision: u64) -> IndexResult<Option<Entry>> {
        let entries = self.txn.open_table(ENTRIES)?;
        let entry = entries
            .get((stream_id, revision))?
            .map(|v| Entry::decode(v.value()));
        Ok(entry)
    }

    pub fn add_stream(&mut self, name: String, id: u64) {
        self.new_streams.push((name, id));
    }

    pub fn add_entry(&mut self, stream_id: u64, revision: u64, entry: Entry) {
        self.pending.push(((stream_id, revision), entry.encode()));
    }

    /// Writes the batch. `durable` fsyncs it (a checkpoint); otherwise redb may lose it in a crash, and the log
    /// past the previous durable `indexed_to` is replayed instead.
    pub fn commit(
        mut self,
        indexed_to: u64,
        next_stream_id: u64,
        durable: bool,
    ) -> IndexResult<()> {
        {
            let mut streams = self.txn.open_table(STREAMS)?;
            for (name, id) in &self.new_streams {
                streams.insert(name.as_str(), id)?;
            }
            let mut entries = self.txn.open_table(ENTRIES)?;
            self.pending.sort_unstable_by_key(|(k, _)| *k);
            for (key, value) in &self.pending {
                entries.insert(key, value)?;
            }
            let mut state = self.txn.open_table(STATE)?;
            state.insert(INDEXED_TO, indexed_to)?;
            state.insert(NEXT_STREAM_ID, next_stream_id)?;
        }
        if durable {
            self.txn.set_quick_repair(true);
        } else {
            self.txn
                .set_durability(Durability::None)
                .map_err(redb::Error::from)?;
        }
        self.txn.commit()?;
        Ok(())
    }
}

/// A consistent snapshot of the index for readers.
pub struct IndexReader {
    streams: redb::ReadOnlyTable<&'static str, u64>,
    entries: redb::ReadOnlyTable<(u64, u64), u64>,
}

impl IndexReader {
    pub fn stream_id(&self, name: &str) -> IndexResult<Option<u64>> {
        Ok(self.streams.get(name)?.map(|v| v.value()))
    }

    pub fn last_entry(&self, stream_id: u64) -> IndexResult<Option<(u64, Entry)>> {
        let last = self
            .entries
            .range((stream_id, 0)..=(stream_id, u64::MAX))?
            .next_back()
            .transpose()?;
        Ok(last.map(|(k, v)| (k.value().1, Entry::decode(v.value()))))
    }

    pub fn entry(&self, stream_id: u64, revision: u64) -> IndexResult<Option<Entry>> {
        Ok(self
            .entries
            .get((stream_id, revision))?
            .map(|v| Entry::decode(v.value())))
    }

    /// Up to `limit` entries with revisions in `[from, to]`, ascending or descending.
    pub fn range(
        &self,
        stream_id: u64,
        from: u64,
        to: u64,
        backwards: bool,
        limit: usize,
    ) -> IndexResult<Vec<(u64, Entry)>> {
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        let range = self.entries.range((stream_id, from)..=(stream_id, to))?;
        let decode = |item: Result<
            (redb::AccessGuard<(u64, u64)>, redb::AccessGuard<u64>),
            redb::StorageError,
        >| { item.map(|(k, v)| (k.value().1, Entry::decode(v.value()))) };
        if backwards {
            for item in range.rev().take(limit) {
                out.push(decode(item)?);
            }
        } else {
            for item in range.take(limit) {
                out.push(decode(item)?);
            }
        }
        Ok(out)
    }
}
