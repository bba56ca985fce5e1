//! The on-disk record: one event, framed as `[u32 length][u32 crc32c][payload][u32 length]`, little-endian.
//! The trailing length lets `$all` be read backwards.
//!
//! The payload starts with a flags byte; `FLAG_COMMIT` marks the last record of a write batch, so recovery can drop
//! a batch that was only partly written.

use bytes::{Buf, BufMut, Bytes};
use uuid::Uuid;

/// Bytes before the payload: length and checksum.
pub const FRAME_HEADER_LEN: usize = 8;
/// Bytes after the payload: the length again.
pub const FRAME_TRAILER_LEN: usize = 4;
/// Largest payload a frame may carry. EventStoreDB's append limit is 16 MiB; a single event stays below it.
pub const MAX_PAYLOAD_LEN: usize = 17 * 1024 * 1024;

const FLAG_JSON: u8 = 1;
const FLAG_COMMIT: u8 = 2;
const FIXED_PAYLOAD_LEN: usize = 1 + 8 + 8 + 16 + 2 + 2 + 4 + 4;

/// An event as stored: everything EventStoreDB returns for it, plus its log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub stream: String,
    pub revision: u64,
    pub position: u64,
    pub id: Uuid,
    pub event_type: String,
    pub is_json: bool,
    /// 100-nanosecond ticks since the Unix epoch, as EventStoreDB's `created` metadata.
    pub created: i64,
    pub metadata: Bytes,
    pub data: Bytes,
}

impl StoredEvent {
    /// The framed size this event takes in the log.
    pub fn framed_len(&self) -> usize {
        FRAME_HEADER_LEN
            + FRAME_TRAILER_LEN
            + FIXED_PAYLOAD_LEN
            + self.stream.len()
            + self.event_type.len()
            + self.metadata.len()
            + self.data.len()
    }

    /// Appends the framed record to `out`. `commit` marks the last record of a write batch.
    pub fn encode(&self, commit: bool, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u32_le(0);
        out.put_u32_le(0);
        let mut flags = 0;
        if self.is_json {
            flags |= FLAG_JSON;
        }
        if commit {
            flags |= FLAG_COMMIT;
        }
        out.put_u8(flags);
        out.put_u64_le(self.revision);
        out.put_i64_le(self.created);
        out.put_slice(self.id.as_bytes());
        out.put_u16_le(self.stream.len() as u16);
        out.put_u16_le(self.event_type.len() as u16);
        out.put_u32_le(self.metadata.len() as u32);
        out.put_u32_le(self.data.len() as u32);
        out.put_slice(self.stream.as_bytes());
        out.put_slice(self.event_type.as_bytes());
        out.put_slice(&self.metadata);
        out.put_slice(&self.data);
        let payload_len = out.len() - start - FRAME_HEADER_LEN;
        let crc = crc32c::crc32c(&out[start + FRAME_HEADER_LEN..]);
        out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        out.put_u32_le(payload_len as u32);
    }
}

/// Why bytes at some offset are not a whole, valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame claims: a torn tail, or a buffer that ends early.
    Incomplete { needed: usize },
    /// The checksum or the layout is wrong.
    Corrupt,
}

/// One decoded frame.
pub struct Frame {
    pub event: StoredEvent,
    pub commit: bool,
    pub len: usize,
}

/// The total frame length of the record that ends where `trailer` (the 4 bytes before some position) ends.
pub fn frame_len_from_trailer(trailer: [u8; 4]) -> usize {
    FRAME_HEADER_LEN + u32::from_le_bytes(trailer) as usize + FRAME_TRAILER_LEN
}

/// Decodes the frame at the start of `buf`, which sits at log `position`.
pub fn decode_frame(buf: &Bytes, position: u64) -> Result<Frame, FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Incomplete {
            needed: FRAME_HEADER_LEN,
        });
    }
    let payload_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(FIXED_PAYLOAD_LEN..=MAX_PAYLOAD_LEN).contains(&payload_len) {
        return Err(FrameError::Corrupt);
    }
    let len = FRAME_HEADER_LEN + payload_len + FRAME_TRAILER_LEN;
    if buf.len() < len {
        return Err(FrameError::Incomplete { needed: len });
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let payload = buf.slice(FRAME_HEADER_LEN..FRAME_HEADER_LEN + payload_len);
    if buf[len - 4..len] != buf[0..4] {
        return Err(FrameError::Corrupt);
    }
    if crc32c::crc32c(&payload) != crc {
        return Err(FrameError::Corrupt);
    }
    let (event, commit) = decode_payload(payload, position).ok_or(FrameError::Corrupt)?;
    Ok(Frame { event, commit, len })
}

/// Decodes a checksummed payload. Data and metadata are slices of `payload`, not copies.
fn decode_payload(payload: Bytes, position: u64) -> Option<(StoredEvent, bool)> {
    let mut p = &payload[..];
    let flags = p.get_u8();
    let revision = p.get_u64_le();
    let created = p.get_i64_le();
    let id = Uuid::from_slice(&p[..16]).ok()?;
    p.advance(16);
    let stream_len = p.get_u16_le() as usize;
    let type_len = p.get_u16_le() as usize;
    let meta_len = p.get_u32_le() as usize;
    let data_len = p.get_u32_le() as usize;
    if p.len() != stream_len + type_len + meta_len + data_len {
        return None;
    }
    let stream = std::str::from_utf8(&p[..stream_len]).ok()?.to_owned();
    p.advance(stream_len);
    let event_type = std::str::from_utf8(&p[..type_len]).ok()?.to_owned();
    let meta_start = FIXED_PAYLOAD_LEN + stream_len + type_len;
    let data_start = meta_start + meta_len;
    let event = StoredEvent {
        stream,
        revision,
        position,
        id,
        event_type,
        is_json: flags & FLAG_JSON != 0,
        created,
        metadata: payload.slice(meta_start..data_start),
        data: payload.slice(data_start..data_start + data_len),
    };
    Some((event, flags & FLAG_COMMIT != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredEvent {
        StoredEvent {
            stream: "account-1".into(),
            revision: 7,
            position: 16,
            id: Uuid::from_u128(42),
            event_type: "FundsDeposited".into(),
            is_json: true,
            created: 1_234,
            metadata: Bytes::from_static(b"{}"),
            data: Bytes::from_static(b"{\"amount\":5}"),
        }
    }

    #[test]
    fn frame_round_trips_and_reports_its_length() {
        let mut buf = Vec::new();
        sample().encode(true, &mut buf);
        assert_eq!(buf.len(), sample().framed_len());
        let frame = decode_frame(&Bytes::from(buf.clone()), 16).expect("valid frame");
        assert_eq!(frame.event, sample());
        assert!(frame.commit);
        assert_eq!(frame.len, buf.len());
    }

    #[test]
    fn torn_and_flipped_frames_are_rejected() {
        let mut buf = Vec::new();
        sample().encode(false, &mut buf);
        for cut in 0..buf.len() {
            assert!(
                matches!(
                    decode_frame(&Bytes::copy_from_slice(&buf[..cut]), 16),
                    Err(FrameError::Incomplete { .. })
                ),
                "cut at {cut}"
            );
        }
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert_eq!(
            decode_frame(&Bytes::from(buf), 16).err(),
            Some(FrameError::Corrupt)
        );
    }
}
