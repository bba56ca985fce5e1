//! The append-only event log: a file (or, with `--mem-db`, a buffer) of framed records. A record's byte offset is
//! its `$all` position, so positions are stable across restarts and strictly increasing.
//!
//! Only the writer thread appends; readers read below the committed end with positioned reads, so neither side
//! takes a lock on the file.

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

/// The log's bytes, on disk or in memory.
pub struct Log {
    backing: Backing,
}

impl Log {
    pub fn in_memory() -> Self {
        Self {
            backing: Backing::Memory(RwLock::new(LOG_HEADER.to_vec())),
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
        })
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
