//! The append-only event log: a file (or, with `--mem-db`, a buffer) of framed records. A record's byte offset is
//! its `$all` position, so positions are stable across restarts and strictly increasing.
//!
//! Only the writer thread appends; readers read below the committed end with positioned reads, so neither side
//! takes a lock on the file. The most recent writes are also kept in memory (the *tail*), as the writer wrote
//! them, so the readers that follow the head of the log — live subscriptions, persistent groups, projections,
//! aggregates read a moment after they were written — decode records from memory instead of copying them out
//! of the page cache one `pread` at a time.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use parking_lot::RwLock;

use super::record::{decode_frame, Frame, FrameError};

/// The file starts with this header; the first record sits right after it.
pub const LOG_HEADER: &[u8; 16] = b"ESLITE-LOG-V1\0\0\0";
pub const FIRST_POSITION: u64 = LOG_HEADER.len() as u64;

enum Backing {
    File(File),
    Memory(RwLock<Vec<u8>>),
}

/// How many bytes of the most recent writes the tail keeps.
const TAIL_CAPACITY: usize = 64 * 1024 * 1024;

/// The most recent write batches, each whole records, in log order and contiguous: `(position, bytes)`.
#[derive(Default)]
struct Tail {
    batches: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl Tail {
    /// The bytes from `position` to the end of the batch holding it (never past `end`), if the tail has them.
    fn from(&self, position: u64, end: u64) -> Option<Bytes> {
        let index = self
            .batches
            .partition_point(|(start, _)| *start <= position)
            .checked_sub(1)?;
        let (start, bytes) = &self.batches[index];
        let offset = usize::try_from(position - start).ok()?;
        let stop = usize::try_from(end.saturating_sub(*start))
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        (offset < stop).then(|| bytes.slice(offset..stop))
    }
}

/// The log's bytes, on disk or in memory.
pub struct Log {
    backing: Backing,
    tail: RwLock<Tail>,
}

impl Log {
    pub fn in_memory() -> Self {
        Self {
            backing: Backing::Memory(RwLock::new(LOG_HEADER.to_vec())),
            tail: RwLock::default(),
        }
    }

    /// Opens or creates the log file and writes the header to a new one.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < FIRST_POSITION {
            file.set_len(0)?;
            file.write_all_at(LOG_HEADER, 0)?;
            file.sync_all()?;
        } else {
            let mut header = [0u8; LOG_HEADER.len()];
            file.read_exact_at(&mut header, 0)?;
            if &header != LOG_HEADER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an eventstore-lite log (bad header)",
                ));
            }
        }
        Ok(Self {
            backing: Backing::File(file),
            tail: RwLock::default(),
        })
    }

    /// Keeps `bytes`, just written at `position` and made durable, in the tail (the oldest batches make room).
    /// Only whole records, and only right after the previous batch: anything else empties the tail first.
    pub fn remember(&self, position: u64, bytes: Bytes) {
        if matches!(self.backing, Backing::Memory(_)) || bytes.len() > TAIL_CAPACITY {
            return;
        }
        let mut tail = self.tail.write();
        if tail
            .batches
            .back()
            .is_some_and(|(start, last)| start + last.len() as u64 != position)
        {
            *tail = Tail::default();
        }
        tail.bytes += bytes.len();
        tail.batches.push_back((position, bytes));
        while tail.bytes > TAIL_CAPACITY {
            match tail.batches.pop_front() {
                Some((_, oldest)) => tail.bytes -= oldest.len(),
                None => break,
            }
        }
    }

    /// Bytes in the log, whole records or not.
    pub fn len(&self) -> io::Result<u64> {
        match &self.backing {
            Backing::File(file) => Ok(file.metadata()?.len()),
            Backing::Memory(buf) => Ok(buf.read().len() as u64),
        }
    }

    /// Writes `bytes` at `offset` (the writer's idea of the end).
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        match &self.backing {
            Backing::File(file) => file.write_all_at(bytes, offset),
            Backing::Memory(buf) => {
                let mut buf = buf.write();
                buf.truncate(offset as usize);
                buf.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        match &self.backing {
            Backing::File(file) => file.sync_data(),
            Backing::Memory(_) => Ok(()),
        }
    }

    /// Cuts the log at `len` (used by recovery to drop a torn tail).
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        *self.tail.write() = Tail::default();
        match &self.backing {
            Backing::File(file) => {
                file.set_len(len)?;
                file.sync_all()
            }
            Backing::Memory(buf) => {
                buf.write().truncate(len as usize);
                Ok(())
            }
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &self.backing {
            Backing::File(file) => {
                let mut done = 0;
                while done < buf.len() {
                    let n = file.read_at(&mut buf[done..], offset + done as u64)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                Ok(done)
            }
            Backing::Memory(mem) => {
                let mem = mem.read();
                let start = (offset as usize).min(mem.len());
                let n = buf.len().min(mem.len() - start);
                buf[..n].copy_from_slice(&mem[start..start + n]);
                Ok(n)
            }
        }
    }

    /// Reads the single record at `position`.
    pub fn read_record(&self, position: u64, end: u64) -> io::Result<Frame> {
        let cached = self.tail.read().from(position, end);
        if let Some(bytes) = cached {
            return decode_frame(&bytes, position).map_err(|e| corrupt(position, e));
        }
        let mut buf = vec![0u8; 4096.min(end.saturating_sub(position) as usize)];
        let n = self.read_at(&mut buf, position)?;
        buf.truncate(n);
        let buf = Bytes::from(buf);
        match decode_frame(&buf, position) {
            Ok(frame) => Ok(frame),
            Err(FrameError::Incomplete { needed }) if position + needed as u64 <= end => {
                let mut buf = vec![0u8; needed];
                let n = self.read_at(&mut buf, position)?;
                buf.truncate(n);
                decode_frame(&Bytes::from(buf), position).map_err(|e| corrupt(position, e))
            }
            Err(e) => Err(corrupt(position, e)),
        }
    }

    /// A forward scan of the records in `[from, end)`, reading in large chunks.
    pub fn scan(&self, from: u64, end: u64) -> Scan<'_> {
        Scan {
            log: self,
            next: from,
            end,
            buf: Bytes::new(),
            buf_start: from,
            chunk: FIRST_SCAN_CHUNK,
        }
    }
}

fn corrupt(position: u64, error: FrameError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("log record at position {position} is unreadable: {error:?}"),
    )
}

/// A scan reads 64 KiB first and doubles its reads up to 4 MiB: short reads stay cheap, long ones stream.
const FIRST_SCAN_CHUNK: usize = 64 * 1024;
const MAX_SCAN_CHUNK: usize = 4 * 1024 * 1024;

/// Iterator over records, yielding `Err` at the first damaged or incomplete one (the caller decides if that is a
/// torn tail or corruption).
pub struct Scan<'a> {
    log: &'a Log,
    next: u64,
    end: u64,
    buf: Bytes,
    buf_start: u64,
    chunk: usize,
}

impl Scan<'_> {
    /// Position of the next record the scan would return.
    pub fn position(&self) -> u64 {
        self.next
    }

    fn fill(&mut self, at_least: usize) -> io::Result<()> {
        let cached = self.log.tail.read().from(self.next, self.end);
        if let Some(bytes) = cached.filter(|bytes| bytes.len() >= at_least) {
            self.buf = bytes;
            self.buf_start = self.next;
            return Ok(());
        }
        let want = at_least
            .max(self.chunk)
            .min((self.end - self.next) as usize);
        self.chunk = (self.chunk * 2).min(MAX_SCAN_CHUNK);
        let mut buf = vec![0u8; want];
        let n = self.log.read_at(&mut buf, self.next)?;
        buf.truncate(n);
        self.buf = Bytes::from(buf);
        self.buf_start = self.next;
        Ok(())
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<Frame, (u64, FrameError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let mut offset = (self.next - self.buf_start) as usize;
        if offset >= self.buf.len() {
            if let Err(_e) = self.fill(0) {
                return Some(Err((self.next, FrameError::Corrupt)));
            }
            offset = 0;
        }
        let result = match decode_frame(&self.buf.slice(offset..), self.next) {
            Err(FrameError::Incomplete { needed }) => {
                if self.fill(needed).is_err() {
                    return Some(Err((self.next, FrameError::Corrupt)));
                }
                decode_frame(&self.buf, self.next)
            }
            other => other,
        };
        match result {
            Ok(frame) => {
                self.next += frame.len as u64;
                Some(Ok(frame))
            }
            Err(e) => {
                let at = self.next;
                self.next = self.end;
                Some(Err((at, e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::storage::StoredEvent;

    fn event(revision: u64, position: u64) -> StoredEvent {
        StoredEvent {
            stream: "account-1".into(),
            revision,
            position,
            id: Uuid::from_u128(u128::from(revision) + 1),
            event_type: "FundsDeposited".into(),
            is_json: true,
            created: 1_234,
            metadata: Bytes::from_static(b"{}"),
            data: Bytes::from(format!("{{\"amount\":{revision}}}")),
        }
    }

    /// Writes `count` events as one batch at the log's end, remembers it, and returns their positions.
    fn write_batch(log: &Log, first_revision: u64, count: u64) -> Vec<u64> {
        let start = log.len().expect("length");
        let mut buf = Vec::new();
        let mut positions = Vec::new();
        for revision in first_revision..first_revision + count {
            let position = start + buf.len() as u64;
            positions.push(position);
            event(revision, position).encode(revision + 1 == first_revision + count, &mut buf);
        }
        log.write_at(&buf, start).expect("write");
        log.remember(start, Bytes::from(buf));
        positions
    }

    #[test]
    fn records_read_from_the_tail_are_the_records_in_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let log = Log::open(&path).expect("open");
        let mut positions = write_batch(&log, 0, 3);
        positions.extend(write_batch(&log, 3, 2));
        let end = log.len().expect("length");
        // Another handle on the same file has no tail: it reads the file.
        let cold = Log::open(&path).expect("reopen");
        for (revision, position) in positions.iter().enumerate() {
            let from_tail = log.read_record(*position, end).expect("from the tail");
            let from_file = cold.read_record(*position, end).expect("from the file");
            assert_eq!(from_tail.event, from_file.event);
            assert_eq!(from_tail.event.revision, revision as u64);
            assert_eq!(from_tail.len, from_file.len);
        }
        let scanned: Vec<u64> = log
            .scan(FIRST_POSITION, end)
            .map(|frame| frame.expect("whole records").event.revision)
            .collect();
        assert_eq!(scanned, vec![0, 1, 2, 3, 4]);
        // A bound below a record keeps the tail from handing it out.
        assert!(log.tail.read().from(positions[4], positions[4]).is_none());
        assert!(log.tail.read().from(positions[3], positions[4]).is_some());
    }

    #[test]
    fn a_gap_or_a_truncation_empties_the_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::open(&dir.path().join("log")).expect("open");
        let positions = write_batch(&log, 0, 2);
        log.remember(
            log.len().expect("length") + 100,
            Bytes::from_static(b"elsewhere"),
        );
        assert!(log.tail.read().from(positions[0], u64::MAX).is_none());
        let positions = write_batch(&log, 2, 1);
        assert!(log.tail.read().from(positions[0], u64::MAX).is_some());
        log.truncate(positions[0]).expect("truncate");
        assert!(log.tail.read().from(positions[0], u64::MAX).is_none());
    }
}
