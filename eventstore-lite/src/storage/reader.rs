//! Reads: a stream (through the index, honouring `$tb`, `$maxCount`, `$maxAge`, soft delete and tombstones) and
//! `$all` (straight from the log, forwards or backwards, with an optional filter). Links are resolved here.

use std::io;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use uuid::Uuid;

use super::index::{Entry, IndexReader};
use super::log::FIRST_POSITION;
use super::metadata::StreamMetadata;
use super::record::{frame_len_from_trailer, FRAME_TRAILER_LEN};
use super::{now_ticks, EventFilter, FastMap, Store, StoredEvent, TOMBSTONE_REVISION};

/// Namespace of the ids given to the links the system projections keep in the index.
const LINK_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_6e6b_2d69_6473_2d65_736c_6974_6501);
const TICKS_PER_SECOND: i64 = 10_000_000;
/// Reads through the index need no bound: an index entry points at a record the writer put in the log before
/// committing the index, while `committed_end` is published just after that commit and may lag behind a reader's
/// index snapshot.
const INDEX_READ_BOUND: u64 = u64::MAX;

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFrom {
    Start,
    End,
    Revision(u64),
}

/// Where a `$all` read starts. Forwards from a position includes the record there; backwards excludes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllFrom {
    Start,
    End,
    Position(u64),
}

/// One read result: the record in the stream (possibly a link) and, for a link, the event it points to.
#[derive(Debug, Clone)]
pub struct ResolvedItem {
    pub record: StoredEvent,
    pub is_link: bool,
    /// The link's target, when asked for and resolvable.
    pub target: Option<StoredEvent>,
}

#[derive(Debug)]
pub enum StreamRead {
    NotFound,
    Found {
        items: Vec<ResolvedItem>,
        /// The stream's last revision (what EventStoreDB reports as `last_stream_position`).
        last_revision: u64,
        /// The first revision still readable (after `$tb`, `$maxCount`).
        first_revision: u64,
    },
}

#[derive(Debug)]
pub struct AllRead {
    pub items: Vec<ResolvedItem>,
    /// Records looked at, matching the filter or not.
    pub scanned: usize,
    /// Position of the last record looked at.
    pub last_scanned: Option<u64>,
    /// Where a following read in the same direction continues.
    pub next: u64,
    /// True when the read reached the committed end (forwards) or the start (backwards).
    pub reached_end: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("Event stream '{0}' is deleted.")]
    StreamDeleted(String),
    #[error("no event starts at position {0}")]
    InvalidPosition(u64),
    #[error("reading the log failed: {0}")]
    Io(#[from] io::Error),
    #[error("reading the index failed")]
    Index(#[from] redb::Error),
}

fn ix<T, E: Into<redb::Error>>(result: Result<T, E>) -> Result<T, ReadError> {
    result.map_err(|e| ReadError::Index(e.into()))
}

/// What a read needs to know about a stream to apply its metadata.
#[derive(Debug, Clone, Copy)]
struct Window {
    id: u64,
    last: u64,
    first: u64,
    /// Oldest `created` still visible (`$maxAge`).
    min_created: Option<i64>,
}

/// What the store remembers of a stream's visibility between reads (`Shared::visibility`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Remembered {
    SoftDeleted,
    Tombstoned,
    /// Visible from this revision on.
    From(u64),
}

/// Streams remembered at most; past that the memory starts again empty.
const REMEMBERED_STREAMS: usize = 100_000;

enum Visibility {
    Missing,
    SoftDeleted,
    Tombstoned,
    Visible(Window),
}

// The strings of the links materialised from index entries are built by hand: with `format!` they were ~1.6 %
// of the bank's CPU (every `$ce-`/`$et-` read makes one link per event).

/// A materialised link's id: the same for the same link stream and revision on every read.
fn link_id(stream: &str, revision: u64) -> Uuid {
    let mut name = Vec::with_capacity(stream.len() + 21);
    name.extend_from_slice(stream.as_bytes());
    name.push(b':');
    name.extend_from_slice(itoa::Buffer::new().format(revision).as_bytes());
    uuid_v5(&LINK_ID_NAMESPACE, &name)
}

/// `Uuid::new_v5`, hashed with ring's SHA-1 (SHA-NI where the CPU has it) instead of uuid's portable one: every
/// `$ce-`/`$et-` read makes a link id per event.
pub(crate) fn uuid_v5(namespace: &Uuid, name: &[u8]) -> Uuid {
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(namespace.as_bytes());
    context.update(name);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&context.finish().as_ref()[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// A link's data: `<revision>@<stream>` of its target.
pub(crate) fn link_data(revision: u64, stream: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(stream.len() + 21);
    data.extend_from_slice(itoa::Buffer::new().format(revision).as_bytes());
    data.push(b'@');
    data.extend_from_slice(stream.as_bytes());
    data
}

/// A link's metadata: `{"$o":"<target stream>","$causedBy":"<target id>"}`.
fn link_metadata(target_stream: &str, target_id: &Uuid) -> Bytes {
    let mut metadata = Vec::with_capacity(target_stream.len() + 70);
    metadata.extend_from_slice(b"{\"$o\":");
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut metadata, target_stream);
    metadata.extend_from_slice(b",\"$causedBy\":\"");
    metadata.extend_from_slice(
        target_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    metadata.extend_from_slice(b"\"}");
    Bytes::from(metadata)
}

impl Store {
    /// Reads up to `limit` events of `stream`.
    pub fn read_stream(
        &self,
        stream: &str,
        from: StreamFrom,
        backwards: bool,
        limit: usize,
        resolve_links: bool,
    ) -> Result<StreamRead, ReadError> {
        let reader = self.index_reader()?;
        let end = INDEX_READ_BOUND;
        let window = match self.visibility(&reader, stream, end)? {
            Visibility::Missing | Visibility::SoftDeleted => return Ok(StreamRead::NotFound),
            Visibility::Tombstoned => return Err(ReadError::StreamDeleted(stream.to_owned())),
            Visibility::Visible(window) => window,
        };
        let entries = if backwards {
            let from = match from {
                StreamFrom::Start => window.first.min(window.last),
                StreamFrom::End => window.last,
                StreamFrom::Revision(r) => r.min(window.last),
            };
            if from < window.first {
                Vec::new()
            } else {
                ix(reader.range(window.id, window.first, from, true, limit))?
            }
        } else {
            let from = match from {
                StreamFrom::Start => window.first,
                StreamFrom::End => window.last + 1,
                StreamFrom::Revision(r) => r.max(window.first),
            };
            ix(reader.range(window.id, from, window.last, false, limit))?
        };
        let mut cache = FastMap::default();
        let mut items = Vec::with_capacity(entries.len());
        for (revision, entry) in entries {
            let item = self.item(
                &reader,
                stream,
                revision,
                entry,
                end,
                resolve_links,
                &mut cache,
            )?;
            if let Some(min_created) = window.min_created {
                if item.record.created < min_created {
                    continue;
                }
            }
            items.push(item);
        }
        Ok(StreamRead::Found {
            items,
            last_revision: window.last,
            first_revision: window.first,
        })
    }

    /// The stream's metadata (`None` when it has none).
    pub fn stream_metadata(&self, stream: &str) -> Result<Option<StreamMetadata>, ReadError> {
        let reader = self.index_reader()?;
        self.metadata(&reader, stream, INDEX_READ_BOUND)
    }

    /// The stream's last revision, if it has events and is not deleted.
    pub fn last_revision(&self, stream: &str) -> Result<Option<u64>, ReadError> {
        let reader = self.index_reader()?;
        match self.visibility(&reader, stream, INDEX_READ_BOUND)? {
            Visibility::Visible(window) => Ok(Some(window.last)),
            Visibility::Tombstoned => Err(ReadError::StreamDeleted(stream.to_owned())),
            _ => Ok(None),
        }
    }

    /// Reads `$all`: up to `limit` records that pass `filter`, looking at no more than `max_scan` records.
    pub fn read_all(
        &self,
        from: AllFrom,
        backwards: bool,
        limit: usize,
        max_scan: usize,
        filter: Option<&EventFilter>,
        resolve_links: bool,
    ) -> Result<AllRead, ReadError> {
        let end = self.committed_end();
        let log = &self.shared.log;
        let mut read = AllRead {
            items: Vec::new(),
            scanned: 0,
            last_scanned: None,
            next: 0,
            reached_end: false,
        };
        let mut reader = None;
        let mut cache = FastMap::default();
        let mut consider = |event: StoredEvent, read: &mut AllRead| -> Result<(), ReadError> {
            read.scanned += 1;
            read.last_scanned = Some(event.position);
            if filter.is_some_and(|f| !f.matches(&event)) {
                return Ok(());
            }
            let is_link = event.event_type == "$>";
            let target = if is_link && resolve_links {
                if reader.is_none() {
                    reader = Some(self.index_reader()?);
                }
                match &reader {
                    Some(r) => {
                        self.resolve_link_data(r, &event.data, INDEX_READ_BOUND, &mut cache)?
                    }
                    None => None,
                }
            } else {
                None
            };
            read.items.push(ResolvedItem {
                record: event,
                is_link,
                target,
            });
            Ok(())
        };
        if backwards {
            let mut position = match from {
                AllFrom::End => end,
                AllFrom::Start => FIRST_POSITION,
                AllFrom::Position(p) => p.clamp(FIRST_POSITION, end),
            };
            while position > FIRST_POSITION && read.items.len() < limit && read.scanned < max_scan {
                let mut trailer = [0u8; FRAME_TRAILER_LEN];
                log.read_at(&mut trailer, position - FRAME_TRAILER_LEN as u64)?;
                let start = position
                    .checked_sub(frame_len_from_trailer(trailer) as u64)
                    .filter(|s| *s >= FIRST_POSITION)
                    .ok_or(ReadError::InvalidPosition(position))?;
                let frame = log
                    .read_record(start, end)
                    .map_err(|_| ReadError::InvalidPosition(position))?;
                consider(frame.event, &mut read)?;
                position = start;
            }
            read.next = position;
            read.reached_end = position <= FIRST_POSITION;
        } else {
            let start = match from {
                AllFrom::Start => FIRST_POSITION,
                AllFrom::End => end,
                AllFrom::Position(p) => p.max(FIRST_POSITION),
            };
            let mut scan = log.scan(start, end);
            while read.items.len() < limit && read.scanned < max_scan {
                match scan.next() {
                    None => break,
                    Some(Ok(frame)) => consider(frame.event, &mut read)?,
                    Some(Err((at, _))) if read.scanned == 0 && at == start => {
                        return Err(ReadError::InvalidPosition(start))
                    }
                    Some(Err((at, error))) => {
                        return Err(ReadError::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("log record at {at} is unreadable: {error:?}"),
                        )))
                    }
                }
            }
            read.next = scan.position().min(end).max(start);
            read.reached_end = read.next >= end;
        }
        Ok(read)
    }

    fn metadata(
        &self,
        reader: &IndexReader,
        stream: &str,
        end: u64,
    ) -> Result<Option<StreamMetadata>, ReadError> {
        if stream.starts_with("$$") {
            return Ok(Some(StreamMetadata {
                max_count: Some(1),
                ..StreamMetadata::default()
            }));
        }
        let mut metadata_stream = String::with_capacity(stream.len() + 2);
        metadata_stream.push_str("$$");
        metadata_stream.push_str(stream);
        let Some(meta_id) = ix(reader.stream_id(&metadata_stream))? else {
            return Ok(None);
        };
        let Some((_, entry)) = ix(reader.last_entry(meta_id))? else {
            return Ok(None);
        };
        let frame = self.shared.log.read_record(entry.position(), end)?;
        Ok(Some(StreamMetadata::parse(&frame.event.data)))
    }

    /// A snapshot of the index, with the metadata generation it was opened under.
    fn index_reader(&self) -> Result<IndexReader, ReadError> {
        let generation = self.shared.metadata_generation.load(Ordering::Acquire);
        let mut reader = ix(self.shared.index.reader())?;
        reader.generation = Some(generation);
        Ok(reader)
    }

    /// [`Store::visibility`] for an event's stream when only its window matters (not its id or last revision):
    /// remembered across reads while no metadata changes, since most streams have none.
    fn remembered_visibility(
        &self,
        reader: &IndexReader,
        stream: &str,
        end: u64,
    ) -> Result<Visibility, ReadError> {
        // Only what the whole snapshot says is remembered: a read bounded below the index's end may not see
        // metadata that the generation already counts.
        let Some(generation) = reader.generation.filter(|_| end == INDEX_READ_BOUND) else {
            return self.visibility(reader, stream, end);
        };
        let remembered = self.shared.visibility.lock().get(stream).copied();
        if let Some((at, remembered)) = remembered {
            if at == generation {
                return Ok(match remembered {
                    Remembered::SoftDeleted => Visibility::SoftDeleted,
                    Remembered::Tombstoned => Visibility::Tombstoned,
                    Remembered::From(first) => Visibility::Visible(Window {
                        id: 0,
                        last: 0,
                        first,
                        min_created: None,
                    }),
                });
            }
        }
        let (visibility, lasting) = self.visibility_and_whether_lasting(reader, stream, end)?;
        let remembered = match &visibility {
            _ if !lasting => None,
            Visibility::Missing => None,
            Visibility::SoftDeleted => Some(Remembered::SoftDeleted),
            Visibility::Tombstoned => Some(Remembered::Tombstoned),
            Visibility::Visible(window) => Some(Remembered::From(window.first)),
        };
        if let Some(remembered) = remembered {
            let mut memory = self.shared.visibility.lock();
            if memory.len() >= REMEMBERED_STREAMS {
                memory.clear();
            }
            memory.insert(stream.to_owned(), (generation, remembered));
        }
        Ok(visibility)
    }

    fn visibility(
        &self,
        reader: &IndexReader,
        stream: &str,
        end: u64,
    ) -> Result<Visibility, ReadError> {
        Ok(self.visibility_and_whether_lasting(reader, stream, end)?.0)
    }

    /// The stream's visibility, and whether it lasts until its metadata changes (no `$maxAge`, whose window
    /// moves with time, and no `$maxCount`, whose window moves with every append).
    fn visibility_and_whether_lasting(
        &self,
        reader: &IndexReader,
        stream: &str,
        end: u64,
    ) -> Result<(Visibility, bool), ReadError> {
        let Some(id) = ix(reader.stream_id(stream))? else {
            return Ok((Visibility::Missing, false));
        };
        let Some((last, _)) = ix(reader.last_entry(id))? else {
            return Ok((Visibility::Missing, false));
        };
        if last == TOMBSTONE_REVISION {
            return Ok((Visibility::Tombstoned, true));
        }
        let meta = self.metadata(reader, stream, end)?.unwrap_or_default();
        if meta.is_soft_deleted() {
            return Ok((Visibility::SoftDeleted, true));
        }
        let lasting = meta.max_count.is_none() && meta.max_age.is_none();
        let by_count = meta
            .max_count
            .map_or(0, |count| (last + 1).saturating_sub(count));
        let first = meta.truncate_before.unwrap_or(0).max(by_count);
        let min_created = meta
            .max_age
            .map(|age| now_ticks().saturating_sub((age as i64).saturating_mul(TICKS_PER_SECOND)));
        Ok((
            Visibility::Visible(Window {
                id,
                last,
                first,
                min_created,
            }),
            lasting,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn item(
        &self,
        reader: &IndexReader,
        stream: &str,
        revision: u64,
        entry: Entry,
        end: u64,
        resolve_links: bool,
        cache: &mut FastMap<String, Visibility>,
    ) -> Result<ResolvedItem, ReadError> {
        let log = &self.shared.log;
        match entry {
            Entry::Event(position) => {
                let record = log.read_record(position, end)?.event;
                let is_link = record.event_type == "$>";
                let target = if is_link && resolve_links {
                    self.resolve_link_data(reader, &record.data, end, cache)?
                } else {
                    None
                };
                Ok(ResolvedItem {
                    record,
                    is_link,
                    target,
                })
            }
            Entry::Link(position) => {
                let target = log.read_record(position, end)?.event;
                let link = StoredEvent {
                    stream: stream.to_owned(),
                    revision,
                    position,
                    id: link_id(stream, revision),
                    event_type: "$>".to_owned(),
                    is_json: false,
                    created: target.created,
                    metadata: link_metadata(&target.stream, &target.id),
                    data: Bytes::from(link_data(target.revision, &target.stream)),
                };
                let visible = resolve_links && self.is_visible(reader, &target, end, cache)?;
                Ok(ResolvedItem {
                    record: link,
                    is_link: true,
                    target: visible.then_some(target),
                })
            }
            Entry::StreamRef(position) => {
                let first = log.read_record(position, end)?.event;
                let record = StoredEvent {
                    stream: stream.to_owned(),
                    revision,
                    position,
                    id: link_id(stream, revision),
                    event_type: "$@".to_owned(),
                    is_json: false,
                    created: first.created,
                    metadata: Bytes::new(),
                    data: Bytes::from(first.stream),
                };
                Ok(ResolvedItem {
                    record,
                    is_link: false,
                    target: None,
                })
            }
        }
    }

    fn is_visible(
        &self,
        reader: &IndexReader,
        event: &StoredEvent,
        end: u64,
        cache: &mut FastMap<String, Visibility>,
    ) -> Result<bool, ReadError> {
        if !cache.contains_key(&event.stream) {
            let visibility = self.remembered_visibility(reader, &event.stream, end)?;
            cache.insert(event.stream.clone(), visibility);
        }
        Ok(match cache.get(&event.stream) {
            Some(Visibility::Visible(w)) => {
                event.revision >= w.first && w.min_created.is_none_or(|min| event.created >= min)
            }
            _ => false,
        })
    }

    /// Resolves a `$>` link's data (`"<revision>@<stream>"`) to the event, if it is still readable.
    fn resolve_link_data(
        &self,
        reader: &IndexReader,
        data: &[u8],
        end: u64,
        cache: &mut FastMap<String, Visibility>,
    ) -> Result<Option<StoredEvent>, ReadError> {
        let Some((revision, stream)) = std::str::from_utf8(data)
            .ok()
            .and_then(|s| s.split_once('@'))
        else {
            return Ok(None);
        };
        let Ok(revision) = revision.trim().parse::<u64>() else {
            return Ok(None);
        };
        let Some(id) = ix(reader.stream_id(stream))? else {
            return Ok(None);
        };
        let Some(entry) = ix(reader.entry(id, revision))? else {
            return Ok(None);
        };
        let target = match entry {
            Entry::Event(position) => self.shared.log.read_record(position, end)?.event,
            _ => return Ok(None),
        };
        Ok(self
            .is_visible(reader, &target, end, cache)?
            .then_some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Link ids handed out before the change to ring's SHA-1 must still be the ids computed now.
    #[test]
    fn link_ids_are_uuid_v5() {
        for (stream, revision) in [("$ce-account", 0), ("$et-FundsCredited", u64::MAX)] {
            let name = format!("{stream}:{revision}");
            assert_eq!(
                link_id(stream, revision),
                Uuid::new_v5(&LINK_ID_NAMESPACE, name.as_bytes())
            );
        }
    }
}
