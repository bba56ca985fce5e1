//! The Streams and PersistentSubscriptions `ReadResp`s as sent on the wire. Control messages (confirmation,
//! checkpoints, positions, …) use the generated `ReadRespControl`s (same field numbers); events are encoded
//! straight from the stored record, without building the generated message first: no per-event map, `String`s
//! or UUID formatting on the heap. Reads, catch-up subscriptions and persistent groups send one of these per
//! event, so this is the hot path of every consumer. The two services' events differ only in the retry count a
//! persistent group adds.

use bytes::{Buf, BufMut};
use prost::encoding::{
    encode_key, encode_varint, encoded_len_varint, key_len, DecodeContext, WireType,
};
use prost::DecodeError;

use super::UuidFormat;
use crate::storage::{ResolvedItem, StoredEvent};

/// One message of a read response: a control message `C`, or an event.
#[derive(Debug, Clone)]
pub enum Read<C> {
    Control(C),
    Event {
        item: ResolvedItem,
        resolve_links: bool,
        format: UuidFormat,
        /// A persistent group's delivery count (field 5 of its `ReadEvent`); `None` in Streams reads.
        retry_count: Option<i32>,
    },
}

/// One message of a Streams.Read response.
pub type ReadResp = Read<super::proto::streams::ReadRespControl>;
/// One message of a PersistentSubscriptions.Read response.
pub type PersistentReadResp = Read<super::proto::persistent_subscriptions::ReadRespControl>;

impl<C: Default> Default for Read<C> {
    fn default() -> Self {
        Read::Control(C::default())
    }
}

impl<C> From<C> for Read<C> {
    fn from(control: C) -> Self {
        Read::Control(control)
    }
}

fn len_delimited(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A length-delimited value without its key.
fn delimited_body(len: usize) -> usize {
    encoded_len_varint(len as u64) + len
}

fn varint_field(tag: u32, value: u64) -> usize {
    key_len(tag) + encoded_len_varint(value)
}

fn put_len_delimited(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    put_len_delimited(tag, bytes.len(), buf);
    buf.put_slice(bytes);
}

fn put_varint(tag: u32, value: u64, buf: &mut impl BufMut) {
    encode_key(tag, WireType::Varint, buf);
    encode_varint(value, buf);
}

/// `created` as a decimal string, without allocating.
struct Ticks {
    digits: [u8; 20],
    start: usize,
}

impl Ticks {
    fn new(value: i64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut v = value.unsigned_abs();
        loop {
            start -= 1;
            digits[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if value < 0 {
            start -= 1;
            digits[start] = b'-';
        }
        Self { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

const CONTENT_JSON: &[u8] = b"application/json";
const CONTENT_BINARY: &[u8] = b"application/octet-stream";

fn map_entry_len(key: &[u8], value: &[u8]) -> usize {
    len_delimited(1, key.len()) + len_delimited(2, value.len())
}

fn put_map_entry(key: &[u8], value: &[u8], buf: &mut impl BufMut) {
    put_len_delimited(6, map_entry_len(key, value), buf);
    put_bytes(1, key, buf);
    put_bytes(2, value, buf);
}

fn uuid_len(format: UuidFormat, id: &uuid::Uuid) -> usize {
    match format {
        UuidFormat::String => len_delimited(2, 36),
        UuidFormat::Structured => {
            let (msb, lsb) = halves(id);
            let inner = if msb == 0 { 0 } else { varint_field(1, msb) }
                + if lsb == 0 { 0 } else { varint_field(2, lsb) };
            len_delimited(1, inner)
        }
    }
}

fn halves(id: &uuid::Uuid) -> (u64, u64) {
    let bits = id.as_u128();
    ((bits >> 64) as u64, bits as u64)
}

fn put_uuid(format: UuidFormat, id: &uuid::Uuid, buf: &mut impl BufMut) {
    match format {
        UuidFormat::String => {
            let mut text = [0u8; 36];
            id.hyphenated().encode_lower(&mut text);
            put_bytes(2, &text, buf);
        }
        UuidFormat::Structured => {
            let (msb, lsb) = halves(id);
            let inner = if msb == 0 { 0 } else { varint_field(1, msb) }
                + if lsb == 0 { 0 } else { varint_field(2, lsb) };
            put_len_delimited(1, inner, buf);
            if msb != 0 {
                put_varint(1, msb, buf);
            }
            if lsb != 0 {
                put_varint(2, lsb, buf);
            }
        }
    }
}

/// Length of a `RecordedEvent` body.
fn recorded_len(event: &StoredEvent, format: UuidFormat, created: &Ticks) -> usize {
    let content_type = if event.is_json {
        CONTENT_JSON
    } else {
        CONTENT_BINARY
    };
    let scalar = |tag, v: u64| if v == 0 { 0 } else { varint_field(tag, v) };
    let bytes = |tag, len: usize| if len == 0 { 0 } else { len_delimited(tag, len) };
    len_delimited(1, uuid_len(format, &event.id))
        + len_delimited(2, len_delimited(3, event.stream.len()))
        + scalar(3, event.revision)
        + scalar(4, event.position)
        + scalar(5, event.position)
        + len_delimited(6, map_entry_len(b"type", event.event_type.as_bytes()))
        + len_delimited(6, map_entry_len(b"content-type", content_type))
        + len_delimited(6, map_entry_len(b"created", created.as_bytes()))
        + bytes(7, event.metadata.len())
        + bytes(8, event.data.len())
}

fn put_recorded(event: &StoredEvent, format: UuidFormat, created: &Ticks, buf: &mut impl BufMut) {
    let content_type = if event.is_json {
        CONTENT_JSON
    } else {
        CONTENT_BINARY
    };
    put_len_delimited(1, uuid_len(format, &event.id), buf);
    put_uuid(format, &event.id, buf);
    put_len_delimited(2, len_delimited(3, event.stream.len()), buf);
    put_bytes(3, event.stream.as_bytes(), buf);
    for (tag, value) in [
        (3, event.revision),
        (4, event.position),
        (5, event.position),
    ] {
        if value != 0 {
            put_varint(tag, value, buf);
        }
    }
    put_map_entry(b"type", event.event_type.as_bytes(), buf);
    put_map_entry(b"content-type", content_type, buf);
    put_map_entry(b"created", created.as_bytes(), buf);
    if !event.metadata.is_empty() {
        put_bytes(7, &event.metadata, buf);
    }
    if !event.data.is_empty() {
        put_bytes(8, &event.data, buf);
    }
}

/// The (event, link) pair as EventStoreDB sends it: with resolution, `event` is the target and `link` the link.
fn parts(item: &ResolvedItem, resolve_links: bool) -> (Option<&StoredEvent>, Option<&StoredEvent>) {
    if resolve_links && item.is_link {
        (item.target.as_ref(), Some(&item.record))
    } else {
        (Some(&item.record), None)
    }
}

fn read_event_len(
    item: &ResolvedItem,
    resolve_links: bool,
    format: UuidFormat,
    retry_count: Option<i32>,
) -> usize {
    let (event, link) = parts(item, resolve_links);
    let recorded =
        |e: &StoredEvent| delimited_body(recorded_len(e, format, &Ticks::new(e.created)));
    event.map_or(0, |e| key_len(1) + recorded(e))
        + link.map_or(0, |e| key_len(2) + recorded(e))
        + varint_field(3, item.record.position)
        + retry_count.map_or(0, |count| varint_field(5, int32_varint(count)))
}

/// An `int32` as protobuf puts it in a varint: negative values sign-extended to 64 bits.
fn int32_varint(value: i32) -> u64 {
    i64::from(value) as u64
}

impl<C: prost::Message + Default> prost::Message for Read<C> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            Read::Control(control) => control.encode_raw(buf),
            Read::Event {
                item,
                resolve_links,
                format,
                retry_count,
            } => {
                put_len_delimited(
                    1,
                    read_event_len(item, *resolve_links, *format, *retry_count),
                    buf,
                );
                let (event, link) = parts(item, *resolve_links);
                for (tag, e) in [(1, event), (2, link)] {
                    if let Some(e) = e {
                        let created = Ticks::new(e.created);
                        put_len_delimited(tag, recorded_len(e, *format, &created), buf);
                        put_recorded(e, *format, &created, buf);
                    }
                }
                // A oneof member is sent even when zero.
                put_varint(3, item.record.position, buf);
                if let Some(count) = retry_count {
                    put_varint(5, int32_varint(*count), buf);
                }
            }
        }
    }

    fn merge_field(
        &mut self,
        _tag: u32,
        _wire_type: WireType,
        _buf: &mut impl Buf,
        _ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        Err(DecodeError::new("ReadResp is only ever sent by the server"))
    }

    fn encoded_len(&self) -> usize {
        match self {
            Read::Control(control) => control.encoded_len(),
            Read::Event {
                item,
                resolve_links,
                format,
                retry_count,
            } => len_delimited(
                1,
                read_event_len(item, *resolve_links, *format, *retry_count),
            ),
        }
    }

    fn clear(&mut self) {
        *self = Read::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::streams::{read_resp_control, ReadRespControl};
    use crate::grpc::streams::read_event;
    use bytes::Bytes;
    use prost::Message;

    fn event(created: i64, revision: u64, position: u64, metadata: &'static [u8]) -> StoredEvent {
        StoredEvent {
            stream: "account-12345612345678".into(),
            revision,
            position,
            id: uuid::Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            event_type: "FundsDeposited".into(),
            is_json: true,
            created,
            metadata: Bytes::from_static(metadata),
            data: Bytes::from_static(b"{\"amount\":5}"),
        }
    }

    /// Events, unresolved and resolved links, a link whose target is gone.
    fn items() -> Vec<ResolvedItem> {
        let link = StoredEvent {
            stream: "$ce-account".into(),
            event_type: "$>".into(),
            is_json: false,
            ..event(5, 0, 0, b"")
        };
        vec![
            ResolvedItem {
                record: event(17_956_240_590_553_467, 3, 4_096, b"{\"m\":1}"),
                is_link: false,
                target: None,
            },
            ResolvedItem {
                record: event(0, 0, 16, b""),
                is_link: false,
                target: None,
            },
            ResolvedItem {
                record: link.clone(),
                is_link: true,
                target: Some(event(-3, 7, 99, b"")),
            },
            ResolvedItem {
                record: link,
                is_link: true,
                target: None,
            },
        ]
    }

    /// The hand encoding must decode to exactly what the generated message would carry.
    #[test]
    fn hand_encoded_events_decode_like_generated_ones() {
        let items = items();
        for item in &items {
            for resolve_links in [false, true] {
                for format in [UuidFormat::String, UuidFormat::Structured] {
                    let wire = ReadResp::Event {
                        item: item.clone(),
                        resolve_links,
                        format,
                        retry_count: None,
                    };
                    let bytes = wire.encode_to_vec();
                    assert_eq!(bytes.len(), wire.encoded_len());
                    let decoded = ReadRespControl::decode(bytes.as_slice()).expect("decodes");
                    let expected = ReadRespControl {
                        content: Some(read_resp_control::Content::Event(read_event(
                            item,
                            resolve_links,
                            format,
                        ))),
                    };
                    assert_eq!(decoded, expected, "resolve {resolve_links}, {format:?}");
                }
            }
        }
    }

    /// A persistent group's delivery: the same event encoding plus its retry count.
    #[test]
    fn hand_encoded_deliveries_decode_like_generated_ones() {
        use crate::grpc::persistent::persistent_event;
        use crate::grpc::proto::persistent_subscriptions::ReadRespControl as PersistentControl;
        let items = items();
        for item in &items {
            for resolve_links in [false, true] {
                for retry_count in [0, 1, 300] {
                    let format = UuidFormat::Structured;
                    let wire = PersistentReadResp::Event {
                        item: item.clone(),
                        resolve_links,
                        format,
                        retry_count: Some(retry_count),
                    };
                    let bytes = wire.encode_to_vec();
                    assert_eq!(bytes.len(), wire.encoded_len());
                    let decoded = PersistentControl::decode(bytes.as_slice()).expect("decodes");
                    let expected =
                        persistent_event(item, resolve_links, retry_count as u32, format);
                    assert_eq!(
                        decoded, expected,
                        "resolve {resolve_links}, retry {retry_count}"
                    );
                }
            }
        }
    }
}
